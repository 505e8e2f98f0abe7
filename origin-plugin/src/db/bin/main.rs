//! `cachefront-origin`: command-line tools of the origin plugin.
//!
//! `cachefront-origin analyze [--database-url URL] [--query SQL]... [--json]` plans each
//! query with `EXPLAIN (FORMAT JSON)`, reports sequential scans with selective filters on
//! large tables, and advises indexes verified with HypoPG (see `docs/database.md`).

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = cachefront_origin::db::analyze::run_cli(&args).await;
    std::process::exit(code);
}
