//! `DbCapture::init_logging`, the documented logging setup, in a process of its own (it
//! installs the global subscriber and logs to stdout): this test binary re-runs itself as
//! the child, which runs statements against a real PostgreSQL; the parent reads the
//! child's log. sqlx's per-statement `DEBUG` lines never reach it, not even the first
//! statement's, while the capture still sees every statement.
#![cfg(all(feature = "db", feature = "postgres"))]
mod support;

use cachefront_origin::db::DbCapture;
use cachefront_origin::sqlx::{self, postgres::PgPoolOptions};

/// Set in the child's environment: run the statements instead of spawning.
const CHILD: &str = "CACHEFRONT_TEST_INIT_LOGGING_CHILD";
const TEST_NAME: &str = "init_logging_keeps_every_sqlx_statement_line_out_of_the_log";
/// Statements the child runs (the pool's own connection setup adds none it logs).
const STATEMENTS: usize = 4;

#[test]
fn init_logging_keeps_every_sqlx_statement_line_out_of_the_log() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let Some(database_url) = support::database_url() else {
        return;
    };
    let (stdout, stderr) =
        support::rerun_as_child(TEST_NAME, CHILD, &[("DATABASE_URL", &database_url)]);
    assert!(
        stdout.contains(&format!("child: {STATEMENTS} statements captured")),
        "the child ran and captured its statements:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("child: log max level INFO"),
        "`log` asks for no more than the output shows (RUST_LOG default info):\n{stdout}"
    );
    assert!(
        stdout.contains("an info record through log"),
        "`log` records reach the output:\n{stdout}"
    );
    assert!(
        !stdout.contains("a debug record through log"),
        "below the output's level:\n{stdout}"
    );
    let leaked: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("DEBUG") && l.contains("sqlx::query"))
        .collect();
    assert!(
        leaked.is_empty(),
        "sqlx statement lines reached the log:\n{}",
        leaked.join("\n")
    );
}

fn child() {
    let capture = DbCapture::default();
    capture.init_logging().expect("install the subscriber");
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("connect");
        sqlx::query("SELECT 1")
            .execute(&pool)
            .await
            .expect("first statement");
        for id in 0..STATEMENTS - 1 {
            sqlx::query("SELECT $1::bigint AS id, 'a longer statement' AS label")
                .bind(id as i64)
                .execute(&pool)
                .await
                .expect("statement");
        }
        pool.close().await;
    });
    println!(
        "child: {} statements captured",
        capture.snapshot().statements
    );
    // `log` records still reach the output up to its level, and `log` asks for no more
    // (sqlx's per-statement `log_enabled!` check stops at the level comparison).
    log::info!(target: "child_log", "an info record through log");
    log::debug!(target: "child_log", "a debug record through log");
    println!("child: log max level {}", log::max_level());
}
