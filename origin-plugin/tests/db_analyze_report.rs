//! The analyzer's report against a real PostgreSQL with HypoPG (`DATABASE_URL`, see
//! `scripts/with-postgres.sh`): EXPLAIN ANALYZE only on request and always rolled back,
//! plan findings naming table and node, catalog index health, hot queries from
//! `pg_stat_statements`, the command without queries (the app's capture: db_analyze_app.rs).
//!
//! Each test works in a schema (or, for `pg_stat_statements`, a database) of its own.

mod support;

use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

use cachefront_origin::db::analyze::index_health::IndexHealthOptions;
use cachefront_origin::db::analyze::plan::{FindingDetail, FindingKind, PlanFinding};
use cachefront_origin::db::analyze::sources::QuerySource;
use cachefront_origin::db::analyze::{
    analyze_queries, run_analyzer, AnalyzeOptions, AnalyzerConfig, PlanMode,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Row};

/// A schema of its own, created by running `statements` (`{s}` stands for the schema).
async fn schema(database_url: &str, name: &str, statements: &[&str]) -> (PgPool, String) {
    let schema = format!("db_report_{}_{name}", std::process::id());
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .expect("connect to DATABASE_URL");
    let setup = [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ];
    for statement in setup
        .into_iter()
        .chain(statements.iter().map(|s| s.replace("{s}", &schema)))
    {
        sqlx::query(&statement)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    (pool, schema)
}

fn options() -> AnalyzeOptions {
    AnalyzeOptions::default()
}

fn analyzed() -> AnalyzeOptions {
    AnalyzeOptions {
        analyze: true,
        ..AnalyzeOptions::default()
    }
}

fn of_kind(findings: &[PlanFinding], kind: FindingKind) -> Vec<&PlanFinding> {
    findings.iter().filter(|f| f.kind == kind).collect()
}

const ITEMS: &[&str] = &[
    "CREATE TABLE {s}.items (id bigint PRIMARY KEY, qty int NOT NULL)",
    "INSERT INTO {s}.items SELECT g, 1 FROM generate_series(1, 1000) g",
];

async fn item_totals(pool: &PgPool, schema: &str) -> (i64, i64) {
    let row = sqlx::query(&format!(
        "SELECT count(*), sum(qty)::int8 FROM {schema}.items"
    ))
    .fetch_one(pool)
    .await
    .expect("count items");
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn explain_analyze_of_writes_leaves_the_data_unchanged() {
    let Some(url) = support::database_url() else {
        return;
    };
    let (pool, s) = schema(&url, "rollback", ITEMS).await;
    let reports = analyze_queries(
        &url,
        &[
            format!("UPDATE {s}.items SET qty = qty + 41"),
            format!("DELETE FROM {s}.items WHERE id > 10"),
            format!("INSERT INTO {s}.items SELECT g, 5 FROM generate_series(1001, 3000) g"),
        ],
        &analyzed(),
    )
    .await
    .expect("analyze");
    for report in &reports {
        assert_eq!(report.error, None, "{report:#?}");
        assert_eq!(report.plan_mode, Some(PlanMode::ExplainAnalyze));
        assert!(report.execution_ms.is_some(), "{report:#?}");
    }
    assert_eq!(item_totals(&pool, &s).await, (1000, 1000));
    support::drop_schema(pool, &s).await;
}

#[tokio::test]
async fn slow_explain_analyze_is_cut_off_by_statement_timeout() {
    let Some(url) = support::database_url() else {
        return;
    };
    let timeout = AnalyzeOptions {
        statement_timeout: Duration::from_millis(200),
        ..analyzed()
    };
    let slow = "SELECT pg_sleep(30)".to_owned();
    let reports = analyze_queries(&url, std::slice::from_ref(&slow), &timeout)
        .await
        .expect("analyze");
    let error = reports[0].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("EXPLAIN ANALYZE cut off by statement_timeout (200 ms)"),
        "{:#?}",
        reports[0]
    );
    assert_eq!(reports[0].plan_mode, None);

    // Without --analyze the query is only planned, never run: no timeout.
    let planned = analyze_queries(
        &url,
        &[slow],
        &AnalyzeOptions {
            analyze: false,
            ..timeout
        },
    )
    .await
    .expect("analyze");
    assert_eq!(planned[0].error, None, "{:#?}", planned[0]);
    assert_eq!(planned[0].plan_mode, Some(PlanMode::Explain));
    assert_eq!(planned[0].execution_ms, None);
}

const ORDERS: &[&str] = &[
    "CREATE TABLE {s}.customers (id bigint PRIMARY KEY, name text NOT NULL)",
    "INSERT INTO {s}.customers SELECT g, 'customer ' || g FROM generate_series(0, 4999) g",
    "CREATE TABLE {s}.orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, \
     total numeric NOT NULL)",
    "INSERT INTO {s}.orders SELECT g, g % 5000, g % 997 FROM generate_series(1, 20000) g",
    "ANALYZE {s}.customers",
    "ANALYZE {s}.orders",
];

fn small_work_mem() -> AnalyzeOptions {
    AnalyzeOptions {
        settings: vec![("work_mem".to_owned(), "64kB".to_owned())],
        ..analyzed()
    }
}

#[tokio::test]
async fn sort_spilling_to_disk_names_the_sort_and_its_table() {
    let Some(url) = support::database_url() else {
        return;
    };
    let (pool, s) = schema(&url, "sort", ORDERS).await;
    let query = format!("SELECT id, total FROM {s}.orders ORDER BY total DESC, id");
    let reports = analyze_queries(&url, std::slice::from_ref(&query), &small_work_mem())
        .await
        .expect("analyze");
    let spills = of_kind(&reports[0].findings, FindingKind::SortSpill);
    assert_eq!(spills.len(), 1, "{:#?}", reports[0]);
    assert_eq!(spills[0].node, "Sort");
    assert_eq!(spills[0].table, format!("{s}.orders"));
    assert!(
        matches!(spills[0].detail, FindingDetail::Spill { disk_kb: Some(kb), .. } if kb > 0.0),
        "{:#?}",
        spills[0]
    );

    // Spills are only known once the query ran.
    let planned = analyze_queries(&url, &[query], &options())
        .await
        .expect("analyze");
    assert!(of_kind(&planned[0].findings, FindingKind::SortSpill).is_empty());
    support::drop_schema(pool, &s).await;
}

#[tokio::test]
async fn hash_join_over_work_mem_is_a_hash_spill_on_the_hashed_table() {
    let Some(url) = support::database_url() else {
        return;
    };
    let (pool, s) = schema(&url, "hash", ORDERS).await;
    let query = format!(
        "SELECT o.id, c.name FROM {s}.orders o JOIN {s}.customers c ON c.id = o.customer_id"
    );
    let reports = analyze_queries(&url, &[query], &small_work_mem())
        .await
        .expect("analyze");
    let spills = of_kind(&reports[0].findings, FindingKind::HashSpill);
    assert_eq!(spills.len(), 1, "{:#?}", reports[0]);
    assert_eq!(spills[0].node, "Hash");
    assert_eq!(spills[0].table, format!("{s}.customers"));
    assert!(
        matches!(spills[0].detail, FindingDetail::Spill { batches: Some(b), .. } if b > 1.0),
        "{:#?}",
        spills[0]
    );
    support::drop_schema(pool, &s).await;
}

#[tokio::test]
async fn correlated_filter_is_a_row_misestimate_on_the_scanned_table() {
    let Some(url) = support::database_url() else {
        return;
    };
    let (pool, s) = schema(
        &url,
        "misestimate",
        &[
            "CREATE TABLE {s}.events (id bigint PRIMARY KEY, shard int NOT NULL, \
             bucket int NOT NULL)",
            // shard and bucket always agree: the planner multiplies their selectivities.
            "INSERT INTO {s}.events SELECT g, g % 100, g % 100 FROM generate_series(1, 100000) g",
            "ANALYZE {s}.events",
        ],
    )
    .await;
    let query = format!("SELECT count(*) FROM {s}.events WHERE shard = 7 AND bucket = 7");
    let reports = analyze_queries(&url, &[query], &analyzed())
        .await
        .expect("analyze");
    let misestimates = of_kind(&reports[0].findings, FindingKind::RowMisestimate);
    assert_eq!(misestimates.len(), 1, "{:#?}", reports[0]);
    let m = misestimates[0];
    assert!(m.node.ends_with("Seq Scan"), "{m:#?}");
    assert_eq!(m.table, format!("{s}.events"));
    let FindingDetail::Misestimate {
        actual_rows,
        factor,
        ..
    } = m.detail
    else {
        panic!("{m:#?}");
    };
    assert_eq!(actual_rows, 1000.0);
    assert!(factor >= 10.0, "{m:#?}");
    support::drop_schema(pool, &s).await;
}

#[tokio::test]
async fn range_join_is_a_nested_loop_over_big_inputs_naming_both_tables() {
    let Some(url) = support::database_url() else {
        return;
    };
    let mut statements = ORDERS.to_vec();
    statements.extend([
        "CREATE TABLE {s}.bands (lo int NOT NULL, hi int NOT NULL, label text NOT NULL)",
        "INSERT INTO {s}.bands SELECT g * 10, g * 10 + 9, 'band ' || g \
         FROM generate_series(0, 999) g",
        "ANALYZE {s}.bands",
    ]);
    let (pool, s) = schema(&url, "nested", &statements).await;
    // No equality: neither hash nor merge join applies.
    let query = format!(
        "SELECT o.id, b.label FROM {s}.orders o JOIN {s}.bands b ON o.total BETWEEN b.lo AND b.hi"
    );
    let reports = analyze_queries(&url, &[query], &options())
        .await
        .expect("analyze");
    let loops = of_kind(&reports[0].findings, FindingKind::NestedLoopBigInputs);
    assert_eq!(loops.len(), 1, "{:#?}", reports[0]);
    assert_eq!(loops[0].node, "Nested Loop");
    assert_eq!(loops[0].table, format!("{s}.orders, {s}.bands"));
    assert!(
        matches!(
            loops[0].detail,
            FindingDetail::NestedLoop { outer_rows, inner_rows_total, actual: false, .. }
                if outer_rows == 20_000.0 && inner_rows_total >= 1_000_000.0
        ),
        "{:#?}",
        loops[0]
    );
    support::drop_schema(pool, &s).await;
}

#[tokio::test]
async fn index_health_reports_duplicate_unused_invalid_and_missing_but_not_used_indexes() {
    let Some(url) = support::database_url() else {
        return;
    };
    let (pool, s) = schema(
        &url,
        "health",
        &[
            "CREATE TABLE {s}.orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, \
             created_at int NOT NULL, email text NOT NULL, sku text NOT NULL, \
             region text NOT NULL)",
            "INSERT INTO {s}.orders SELECT g, g % 500, g, 'c' || g || '@example.com', \
             'sku-' || g, 'region-' || (g % 7) FROM generate_series(1, 20000) g",
            "CREATE INDEX orders_email_idx ON {s}.orders (email)",
            "CREATE INDEX orders_email_copy_idx ON {s}.orders (email)",
            "CREATE INDEX orders_customer_idx ON {s}.orders (customer_id)",
            "CREATE INDEX orders_customer_created_idx ON {s}.orders (customer_id, created_at)",
            "CREATE INDEX orders_region_idx ON {s}.orders (region)",
            "CREATE INDEX orders_sku_idx ON {s}.orders (sku)",
            // Read by sequential scans only.
            "CREATE TABLE {s}.audit (id bigint NOT NULL, note text NOT NULL)",
            "INSERT INTO {s}.audit SELECT g, 'note ' || g FROM generate_series(1, 20000) g",
            "ANALYZE {s}.orders",
            "ANALYZE {s}.audit",
        ],
    )
    .await;
    // A failed concurrent build leaves an invalid index behind.
    let failed = sqlx::query(&format!(
        "CREATE UNIQUE INDEX CONCURRENTLY orders_region_key ON {s}.orders (region)"
    ))
    .execute(&pool)
    .await;
    assert!(
        failed.is_err(),
        "regions repeat: the unique build must fail"
    );

    for n in 1..=60 {
        sqlx::query(&format!("SELECT id FROM {s}.orders WHERE sku = $1"))
            .bind(format!("sku-{n}"))
            .fetch_optional(&pool)
            .await
            .expect("lookup by sku");
    }
    for _ in 0..15 {
        sqlx::query(&format!(
            "SELECT count(*) FROM {s}.audit WHERE note = 'nothing'"
        ))
        .fetch_one(&pool)
        .await
        .expect("scan audit");
    }
    // Statistics reach shared memory when the backend goes idle after this.
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&pool)
        .await
        .expect("flush statistics");
    sqlx::query("SELECT 1").execute(&pool).await.expect("idle");

    let config = AnalyzerConfig {
        pg_stat_statements: false,
        index_health: Some(IndexHealthOptions {
            schemas: vec![s.clone()],
            ..IndexHealthOptions::default()
        }),
        pool: None,
        ..AnalyzerConfig::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let health = loop {
        let report = run_analyzer(&url, &config).await.expect("analyzer");
        let health = report.index_health.expect("index health section");
        let counted = !health
            .unused_indexes
            .iter()
            .any(|u| u.index == format!("{s}.orders_sku_idx"))
            && !health.missing_index_candidates.is_empty();
        if counted || Instant::now() > deadline {
            break health;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let duplicates: Vec<(&str, &str, &str)> = health
        .duplicate_indexes
        .iter()
        .map(|d| (d.kind, d.index.as_str(), d.covered_by.as_str()))
        .collect();
    assert!(
        duplicates.contains(&(
            "exact",
            &format!("{s}.orders_email_idx"),
            &format!("{s}.orders_email_copy_idx")
        )) || duplicates.contains(&(
            "exact",
            &format!("{s}.orders_email_copy_idx"),
            &format!("{s}.orders_email_idx")
        )),
        "{health:#?}"
    );
    assert!(
        duplicates.contains(&(
            "prefix",
            &format!("{s}.orders_customer_idx"),
            &format!("{s}.orders_customer_created_idx")
        )),
        "{health:#?}"
    );
    assert_eq!(duplicates.len(), 2, "{health:#?}");

    let unused: Vec<&str> = health
        .unused_indexes
        .iter()
        .map(|u| u.index.as_str())
        .collect();
    assert!(
        unused.contains(&format!("{s}.orders_region_idx").as_str()),
        "{health:#?}"
    );
    assert!(
        !unused.contains(&format!("{s}.orders_sku_idx").as_str()),
        "the used index is not unused: {health:#?}"
    );
    assert!(
        !unused.contains(&format!("{s}.orders_pkey").as_str()),
        "{health:#?}"
    );
    let region = health
        .unused_indexes
        .iter()
        .find(|u| u.index == format!("{s}.orders_region_idx"))
        .expect("unused region index");
    assert!(region.size_bytes > 0, "{region:#?}");
    assert_eq!(
        region.drop_statement,
        format!("DROP INDEX CONCURRENTLY \"{s}\".\"orders_region_idx\";")
    );

    assert_eq!(health.invalid_indexes.len(), 1, "{health:#?}");
    assert_eq!(
        health.invalid_indexes[0].index,
        format!("{s}.orders_region_key")
    );

    let missing: Vec<&str> = health
        .missing_index_candidates
        .iter()
        .map(|m| m.table.as_str())
        .collect();
    assert_eq!(missing, vec![format!("{s}.audit").as_str()], "{health:#?}");
    assert!(health.missing_index_candidates[0].seq_scan >= 15);

    support::drop_schema(pool, &s).await;
}

#[tokio::test]
async fn hot_queries_from_pg_stat_statements_are_planned_generically_with_advice() {
    let Some(url) = support::database_url() else {
        return;
    };
    // pg_stat_statements is per database: a database of its own keeps other tests out.
    let database = format!("db_report_pgss_{}", std::process::id());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("connect");
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .execute(&admin)
        .await;
    sqlx::query(&format!("CREATE DATABASE {database}"))
        .execute(&admin)
        .await
        .expect("create database");
    let db_options = PgConnectOptions::from_str(&url)
        .expect("DATABASE_URL parses")
        .database(&database);
    let db_url = {
        let mut parsed = url.parse::<reqwest::Url>().expect("DATABASE_URL is a URL");
        parsed.set_path(&format!("/{database}"));
        parsed.to_string()
    };
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(db_options)
        .await
        .expect("connect to the test database");
    if let Err(e) = sqlx::query("CREATE EXTENSION pg_stat_statements")
        .execute(&pool)
        .await
    {
        let message = format!("pg_stat_statements is not available: {e}");
        if std::env::var_os("CACHEFRONT_TEST_STRICT").is_some() {
            panic!("{message} (scripts/with-postgres.sh preloads it)");
        }
        eprintln!("skipping: {message}");
        return;
    }
    for statement in [
        "CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL)",
        "INSERT INTO customers SELECT g, 'customer-' || g || '@example.com' \
         FROM generate_series(1, 100000) g",
        "ANALYZE customers",
        "SELECT pg_stat_statements_reset()",
    ] {
        sqlx::query(statement).execute(&pool).await.expect("set up");
    }
    for n in 1..=20 {
        sqlx::query("SELECT id FROM customers WHERE email = $1")
            .bind(format!("customer-{n}@example.com"))
            .fetch_optional(&pool)
            .await
            .expect("lookup");
    }

    let report = run_analyzer(
        &db_url,
        &AnalyzerConfig {
            top: 5,
            query_options: analyzed(),
            index_health: None,
            pool: None,
            ..AnalyzerConfig::default()
        },
    )
    .await
    .expect("analyzer");
    let hot = report
        .queries
        .iter()
        .find(|q| q.query.contains("FROM customers WHERE email = $1"))
        .unwrap_or_else(|| panic!("the lookup is a hot query: {report:#?}"));
    assert_eq!(hot.source, QuerySource::PgStatStatements);
    assert_eq!(hot.calls, Some(20));
    assert_eq!(hot.error, None, "{hot:#?}");
    assert_eq!(hot.plan_mode, Some(PlanMode::GenericPlan));
    assert!(
        hot.notes.iter().any(|n| n.contains("not run with ANALYZE")),
        "{hot:#?}"
    );
    assert_eq!(
        of_kind(&hot.findings, FindingKind::SeqScanSelectiveFilter).len(),
        1,
        "{hot:#?}"
    );
    assert_eq!(hot.index_advice.len(), 1, "{hot:#?}");
    let advice = &hot.index_advice[0];
    assert_eq!(
        advice.create_index,
        "CREATE INDEX CONCURRENTLY ON \"public\".\"customers\" (\"email\");"
    );
    assert!(advice.cost_reduction >= 0.5, "{advice:#?}");
    // Only statements on user tables, never the analyzer's own EXPLAINs.
    assert!(report
        .queries
        .iter()
        .all(|q| !q.query.to_ascii_uppercase().starts_with("EXPLAIN")));

    pool.close().await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .execute(&admin)
        .await;
    admin.close().await;
}

#[tokio::test]
async fn analyze_command_reports_index_health_and_pool_without_queries() {
    let Some(url) = support::database_url() else {
        return;
    };
    let (pool, s) = schema(
        &url,
        "command",
        &[
            "CREATE TABLE {s}.t (id bigint PRIMARY KEY, a int NOT NULL)",
            "CREATE INDEX t_a_idx ON {s}.t (a)",
            "CREATE INDEX t_a_again_idx ON {s}.t (a)",
        ],
    )
    .await;
    let run = |json: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cachefront-origin"));
        command.args([
            "analyze",
            "--database-url",
            &url,
            "--no-pg-stat-statements",
            "--schema",
            &s,
            "--app-instances",
            "4",
        ]);
        if json {
            command.arg("--json");
        }
        let output = command.output().expect("run cachefront-origin");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let json: serde_json::Value = serde_json::from_str(&run(true)).expect("JSON output");
    assert_eq!(json["queries"], serde_json::json!([]));
    assert_eq!(
        json["index_health"]["duplicate_indexes"][0]["kind"],
        "exact"
    );
    assert_eq!(json["pool"]["input"]["app_instances"], 4);
    assert!(json["pool"]["recommended_max_connections"].as_u64() >= Some(1));

    let text = run(false);
    assert!(text.contains("== index health"), "{text}");
    assert!(text.contains("[exact]"), "{text}");
    assert!(text.contains("== pool sizing"), "{text}");
    support::drop_schema(pool, &s).await;
}
