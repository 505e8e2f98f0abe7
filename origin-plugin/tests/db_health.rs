//! The analyzer's database health section against a real PostgreSQL arranged to show each
//! finding: a table and its index bloated by a mass delete, a table overdue for vacuum and
//! analyze (autovacuum off for it), a session idle in a transaction holding a lock, a query
//! blocked behind it (the chain, and a long-running active query), the cache-hit ratio.
#![cfg(feature = "analyze")]
mod support;

use std::time::{Duration, Instant};

use cachefront_origin::db::analyze::db_health::{DbHealth, DbHealthOptions};
use cachefront_origin::db::analyze::{render_text, run_analyzer, AnalyzerConfig};
use sqlx::{Connection, PgConnection};

async fn exec(conn: &mut PgConnection, sql: &str) {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn health(url: &str, options: &DbHealthOptions) -> (DbHealth, String) {
    let config = AnalyzerConfig {
        pg_stat_statements: false,
        index_health: None,
        pool: None,
        db_health: Some(options.clone()),
        ..AnalyzerConfig::default()
    };
    let report = run_analyzer(url, &config).await.expect("analyzer");
    let text = render_text(&report);
    (report.db_health.expect("db health section"), text)
}

#[tokio::test]
async fn health_section_reports_bloat_overdue_maintenance_idle_transactions_and_lock_chains() {
    let Some(url) = support::database_url() else {
        return;
    };
    let s = format!("db_health_{}", std::process::id());
    let mut setup = PgConnection::connect(&url).await.expect("connect");
    for sql in [
        format!("DROP SCHEMA IF EXISTS {s} CASCADE"),
        format!("CREATE SCHEMA {s}"),
        format!("CREATE TABLE {s}.bloated (id int PRIMARY KEY, pad text) WITH (autovacuum_enabled = false)"),
        format!("INSERT INTO {s}.bloated SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g"),
        // Keep every tenth row: pages stay in use, so VACUUM cannot shrink the file.
        format!("DELETE FROM {s}.bloated WHERE id % 10 <> 0"),
        // Flush this backend's row counts first, or they land after VACUUM's reset.
        "SELECT pg_stat_force_next_flush()".to_owned(),
        "SELECT 1".to_owned(),
        format!("VACUUM {s}.bloated"),
        format!("ANALYZE {s}.bloated"),
        format!("CREATE TABLE {s}.neglected (id int, v int) WITH (autovacuum_enabled = false)"),
        format!("INSERT INTO {s}.neglected SELECT g, g FROM generate_series(1, 10000) g"),
        format!("DELETE FROM {s}.neglected WHERE id <= 5000"),
        format!("SELECT count(*) FROM {s}.bloated"),
        // Statistics reach shared memory when this backend next goes idle.
        "SELECT pg_stat_force_next_flush()".to_owned(),
        "SELECT 1".to_owned(),
    ] {
        exec(&mut setup, &sql).await;
    }

    // A session idle in a transaction that holds a lock, and a query waiting for it.
    let mut holder = PgConnection::connect(&url).await.expect("connect holder");
    let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .expect("pid");
    exec(&mut holder, "BEGIN").await;
    exec(
        &mut holder,
        &format!("LOCK TABLE {s}.neglected IN ACCESS EXCLUSIVE MODE"),
    )
    .await;
    let mut waiter = PgConnection::connect(&url).await.expect("connect waiter");
    let waiter_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut waiter)
        .await
        .expect("pid");
    let blocked_sql = format!("SELECT count(*) FROM {s}.neglected");
    let blocked = tokio::spawn(async move {
        let r = sqlx::query(&blocked_sql).execute(&mut waiter).await;
        (waiter, r.is_ok())
    });
    // Wait (bounded) until the server shows the waiter blocked.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: bool = sqlx::query_scalar("SELECT cardinality(pg_blocking_pids($1)) > 0")
            .bind(waiter_pid)
            .fetch_one(&mut setup)
            .await
            .expect("pg_blocking_pids");
        if waiting {
            break;
        }
        assert!(Instant::now() < deadline, "the waiter never blocked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let options = DbHealthOptions {
        long_running_secs: 0.0,
        idle_in_transaction_secs: 0.0,
        min_cache_hit_ratio: 1.01,
        bloat_min_bytes: 64 * 1024,
        bloat_min_ratio: 0.5,
        schemas: vec![s.clone()],
    };
    let (h, text) = health(&url, &options).await;

    // Bloat: 90 % of the rows gone, the pages kept.
    let table = h
        .bloat
        .iter()
        .find(|b| b.name == format!("{s}.bloated"))
        .unwrap_or_else(|| panic!("no table bloat: {:#?}", h.bloat));
    assert_eq!(table.kind, "table");
    assert!(table.ratio > 0.8, "{table:?}");
    let index = h
        .bloat
        .iter()
        .find(|b| b.name == format!("{s}.bloated_pkey"))
        .unwrap_or_else(|| panic!("no index bloat: {:#?}", h.bloat));
    assert_eq!(
        index.table.as_deref(),
        Some(format!("{s}.bloated").as_str())
    );
    assert!(
        !h.bloat.iter().any(|b| b.name.contains("neglected")),
        "a table never analyzed has no width statistics: no guess: {:#?}",
        h.bloat
    );

    // Maintenance: 5000 dead rows and 15000 changes, autovacuum off for the table.
    let due: Vec<(&str, &str)> = h
        .maintenance
        .iter()
        .map(|m| (m.table.as_str(), m.due))
        .collect();
    let neglected = format!("{s}.neglected");
    assert!(due.contains(&(neglected.as_str(), "vacuum")), "{due:?}");
    assert!(due.contains(&(neglected.as_str(), "analyze")), "{due:?}");
    let bloated = format!("{s}.bloated");
    assert!(
        !due.iter().any(|(t, _)| *t == bloated),
        "vacuumed and analyzed: nothing due: {due:?}"
    );

    // Sessions and the lock chain.
    assert!(
        h.idle_in_transaction.iter().any(|x| x.pid == holder_pid),
        "{:#?}",
        h.idle_in_transaction
    );
    assert!(
        h.long_running.iter().any(|x| x.pid == waiter_pid),
        "{:#?}",
        h.long_running
    );
    let chain = h
        .blocking
        .iter()
        .find(|c| c.blocker.pid == holder_pid)
        .unwrap_or_else(|| panic!("no chain under the holder: {:#?}", h.blocking));
    assert_eq!(chain.blocker.state, "idle in transaction");
    assert!(chain
        .waiting
        .iter()
        .any(|w| w.pid == waiter_pid && w.blocked_by == [holder_pid]));

    // Cache hits: blocks were read, so the ratio exists; above 100 % is unreachable.
    assert!(
        h.cache_hit.table_ratio.is_some_and(|r| r > 0.0 && r <= 1.0),
        "{:?}",
        h.cache_hit
    );
    assert!(h.cache_hit.below_target);

    assert!(text.contains("== database health"), "{text}");
    assert!(
        text.contains(&format!("blocking: pid {holder_pid}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("bloat: table {s}.bloated")),
        "{text}"
    );

    // Once the holder commits, the chain and the idle transaction are gone.
    exec(&mut holder, "COMMIT").await;
    let (waiter, ok) = blocked.await.expect("waiter task");
    assert!(ok, "the blocked query finishes once the lock is released");
    let relaxed = DbHealthOptions {
        schemas: vec![s.clone()],
        ..DbHealthOptions::default()
    };
    let (after, _) = health(&url, &relaxed).await;
    assert!(!after.blocking.iter().any(|c| c.blocker.pid == holder_pid));
    assert!(!after
        .idle_in_transaction
        .iter()
        .any(|x| x.pid == holder_pid));

    let _ = waiter.close().await;
    let _ = holder.close().await;
    exec(&mut setup, &format!("DROP SCHEMA IF EXISTS {s} CASCADE")).await;
    let _ = setup.close().await;
}
