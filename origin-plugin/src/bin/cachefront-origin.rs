//! `cachefront-origin`: command-line tools of the origin plugin.
//!
//! `cachefront-origin analyze [--database-url URL] [--query SQL]... [--from-app URL]
//! [--analyze] [--json] …` plans the given and the hot queries (the app's capture,
//! `pg_stat_statements`), reports plan findings, index health, HypoPG-verified index advice
//! and a pool size (`--help` lists every option; see `docs/database.md`).

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = cachefront_origin::db::analyze::run_cli(&args).await;
    std::process::exit(code);
}
