//! The query analyzer against a real PostgreSQL with HypoPG (`DATABASE_URL`, see
//! `scripts/with-postgres.sh`): a selective filter on an unindexed column of a 100k-row
//! table is found, the index HypoPG confirms is advised, and once created the plan uses it.

mod support;

use std::process::Command;

use cachefront_origin::db::analyze::plan::{FindingDetail, FindingKind};
use cachefront_origin::db::analyze::{analyze_queries, AnalyzeOptions};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

/// A schema of its own with `customers`: `rows` rows, `email` unique but unindexed.
async fn customers(database_url: &str, name: &str, rows: i64) -> (PgPool, String) {
    let schema = format!("db_analyze_{}_{name}", std::process::id());
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .expect("connect to DATABASE_URL");
    for statement in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
        format!(
            "CREATE TABLE {schema}.customers (id bigint PRIMARY KEY, email text NOT NULL, \
             region text NOT NULL)"
        ),
        format!(
            "INSERT INTO {schema}.customers \
             SELECT g, 'customer-' || g || '@example.com', 'region-' || (g % 20) \
             FROM generate_series(1, {rows}) g"
        ),
        format!("ANALYZE {schema}.customers"),
    ] {
        sqlx::query(&statement)
            .execute(&pool)
            .await
            .expect("create the test table");
    }
    (pool, schema)
}

fn by_email(schema: &str) -> String {
    format!("SELECT id, region FROM {schema}.customers WHERE email = 'customer-4242@example.com'")
}

#[tokio::test]
async fn selective_filter_on_unindexed_column_gets_hypopg_verified_index_advice() {
    let Some(url) = support::database_url() else {
        return;
    };
    let (pool, schema) = customers(&url, "advice", 100_000).await;
    let query = by_email(&schema);

    let reports = analyze_queries(
        &url,
        std::slice::from_ref(&query),
        &AnalyzeOptions::default(),
    )
    .await
    .expect("analyze");
    let report = &reports[0];
    assert_eq!(report.error, None);

    assert_eq!(report.findings.len(), 1, "{report:#?}");
    let finding = &report.findings[0];
    assert_eq!(finding.kind, FindingKind::SeqScanSelectiveFilter);
    assert!(finding.node.ends_with("Seq Scan"), "{finding:#?}");
    assert_eq!(finding.table, format!("{schema}.customers"));
    let FindingDetail::SeqScan {
        filter_columns,
        table_rows,
        ..
    } = &finding.detail
    else {
        panic!("{finding:#?}");
    };
    assert_eq!(filter_columns, &vec!["email".to_owned()]);
    assert!(*table_rows >= 100_000.0 * 0.9, "{finding:#?}");

    assert_eq!(report.index_advice.len(), 1, "{report:#?}");
    let advice = &report.index_advice[0];
    assert_eq!(advice.columns, vec!["email".to_owned()]);
    assert_eq!(
        advice.create_index,
        format!("CREATE INDEX CONCURRENTLY ON \"{schema}\".\"customers\" (\"email\");")
    );
    assert!(advice.cost_reduction >= 0.5, "{advice:#?}");
    assert!(advice.cost_after < advice.cost_before);

    // Creating the advised index for real: the planner uses it and the finding is gone.
    sqlx::query(&advice.create_index)
        .execute(&pool)
        .await
        .expect("create the advised index");
    sqlx::query(&format!("ANALYZE {schema}.customers"))
        .execute(&pool)
        .await
        .expect("analyze");
    let plan: String = sqlx::query(&format!("EXPLAIN (FORMAT JSON) {query}"))
        .fetch_one(&pool)
        .await
        .expect("explain")
        .try_get_unchecked(0)
        .expect("plan text");
    assert!(plan.contains("\"Index Name\""), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");

    let after = analyze_queries(&url, &[query], &AnalyzeOptions::default())
        .await
        .expect("analyze");
    assert!(after[0].findings.is_empty(), "{:#?}", after[0]);
    assert!(after[0].index_advice.is_empty(), "{:#?}", after[0]);

    support::drop_schema(pool, &schema).await;
}

#[tokio::test]
async fn small_tables_are_not_reported() {
    let Some(url) = support::database_url() else {
        return;
    };
    let (pool, schema) = customers(&url, "small", 500).await;
    let reports = analyze_queries(&url, &[by_email(&schema)], &AnalyzeOptions::default())
        .await
        .expect("analyze");
    assert!(reports[0].findings.is_empty(), "{:#?}", reports[0]);
    assert!(reports[0].index_advice.is_empty(), "{:#?}", reports[0]);
    support::drop_schema(pool, &schema).await;
}

#[tokio::test]
async fn more_than_one_statement_is_refused() {
    let Some(url) = support::database_url() else {
        return;
    };
    let reports = analyze_queries(
        &url,
        &["SELECT 1; DROP TABLE nothing".to_owned()],
        &AnalyzeOptions::default(),
    )
    .await
    .expect("analyze");
    assert!(
        reports[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("one statement")),
        "{:#?}",
        reports[0]
    );
}

#[tokio::test]
async fn analyze_command_prints_the_advice_as_json() {
    let Some(url) = support::database_url() else {
        return;
    };
    let (pool, schema) = customers(&url, "command", 100_000).await;
    let output = Command::new(env!("CARGO_BIN_EXE_cachefront-origin"))
        .args([
            "analyze",
            "--database-url",
            &url,
            "--query",
            &by_email(&schema),
            "--json",
        ])
        .output()
        .expect("run cachefront-origin");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    let query = &json["queries"][0];
    assert_eq!(query["findings"][0]["kind"], "seq_scan_selective_filter");
    assert_eq!(
        query["index_advice"][0]["create_index"],
        format!("CREATE INDEX CONCURRENTLY ON \"{schema}\".\"customers\" (\"email\");")
    );

    let text = Command::new(env!("CARGO_BIN_EXE_cachefront-origin"))
        .args([
            "analyze",
            "--database-url",
            &url,
            "--query",
            &by_email(&schema),
        ])
        .output()
        .expect("run cachefront-origin");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("finding [seq_scan_selective_filter]"),
        "{text}"
    );
    assert!(text.contains("advice: CREATE INDEX CONCURRENTLY"), "{text}");

    let usage = Command::new(env!("CARGO_BIN_EXE_cachefront-origin"))
        .args(["analyze", "--bogus"])
        .output()
        .expect("run cachefront-origin");
    assert_eq!(usage.status.code(), Some(2));

    support::drop_schema(pool, &schema).await;
}
