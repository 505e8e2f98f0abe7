//! The `cachefront-origin analyze` command line.

use std::str::FromStr;
use std::time::Duration;

use super::index_health::IndexHealthOptions;
use super::sources::{fetch_app_snapshot, HotQueryOrder};
use super::{render_text, run_analyzer, AnalyzerConfig, PoolSizingConfig};

const USAGE: &str = "\
usage: cachefront-origin analyze [--database-url URL] [options]

queries (all sources together, each fingerprint once):
  --query SQL                 analyze this statement (repeatable)
  --from-app URL              the hottest statements a running app captured
                              (GET URL/debug/queries, see DbCapture::router)
  --app-token TOKEN           bearer token for --from-app (or CACHEFRONT_APP_TOKEN)
  --no-pg-stat-statements     do not read pg_stat_statements (read when installed)
  --top N                     hot statements per source (default 10)
  --order total_time|calls|mean_time   what makes a statement hot (default total_time)

planning:
  --analyze                   EXPLAIN ANALYZE: run each query in a rolled-back transaction
  --statement-timeout MS      statement_timeout of each EXPLAIN (default 5000)
  --set NAME=VALUE            a setting for planning, e.g. work_mem=64MB (repeatable)
  --large-table-rows N        large table threshold (default 10000)
  --selective-fraction F      selective filter threshold (default 0.05)
  --min-cost-reduction F      index advice threshold (default 0.5)
  --misestimate-factor F      row misestimate factor (default 10)
  --misestimate-min-rows N    ignore misestimates below this many rows (default 1000)
  --nested-loop-min-rows N    nested loop inner rows threshold (default 1000000)

index health (from the catalog, with or without queries):
  --no-index-health           skip it
  --schema NAME               only this schema (repeatable; default all user schemas)
  --min-seq-scans N           missing-index candidate: sequential scans (default 10)
  --seq-scan-share F          missing-index candidate: share of scans (default 0.5)
  --unused-max-scans N        unused index: fewer scans than this (default 50)

pool sizing:
  --no-pool                   skip it
database health (bloat, long-running/idle-in-transaction sessions, lock chains,
cache hit ratio, vacuum/analyze overdue):
  --no-db-health              skip it
  --long-running-secs S       report active queries older than this (default 60)
  --idle-in-transaction-secs S  report idle-in-transaction sessions older than this (default 30)
  --app-instances N           application instances sharing the server (default 1)
  --other-connections N       connections to leave for other clients (default 0)
  --pool-max N                the pool's current max_connections (else from --from-app)

output:
  --json                      JSON instead of text

DATABASE_URL is used when --database-url is absent. Exit codes: 0 report printed,
1 database or app unreachable, 2 usage error.";

struct Args<'a> {
    rest: std::slice::Iter<'a, String>,
}

impl<'a> Args<'a> {
    fn value(&mut self, flag: &str) -> Result<&'a String, String> {
        self.rest
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))
    }

    fn parsed<T: FromStr>(&mut self, flag: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let value = self.value(flag)?;
        value.parse().map_err(|e| format!("{flag} {value:?}: {e}"))
    }
}

struct Command {
    database_url: Option<String>,
    from_app: Option<String>,
    app_token: Option<String>,
    json: bool,
    config: AnalyzerConfig,
}

fn parse(args: &[String]) -> Result<Option<Command>, String> {
    let mut iter = args.iter();
    if iter.next().map(String::as_str) != Some("analyze") {
        return Err("the command is `analyze`".to_owned());
    }
    let mut args = Args { rest: iter };
    let mut command = Command {
        database_url: std::env::var("DATABASE_URL").ok(),
        from_app: None,
        app_token: std::env::var("CACHEFRONT_APP_TOKEN").ok(),
        json: false,
        config: AnalyzerConfig::default(),
    };
    let c = &mut command.config;
    while let Some(arg) = args.rest.next() {
        match arg.as_str() {
            "--database-url" => command.database_url = Some(args.value(arg)?.clone()),
            "--query" => c.queries.push(args.value(arg)?.clone()),
            "--from-app" => command.from_app = Some(args.value(arg)?.clone()),
            "--app-token" => command.app_token = Some(args.value(arg)?.clone()),
            "--no-pg-stat-statements" => c.pg_stat_statements = false,
            "--top" => c.top = args.parsed(arg)?,
            "--order" => {
                let value = args.value(arg)?;
                c.order = HotQueryOrder::parse(value).ok_or_else(|| {
                    format!("--order {value:?}: use total_time, calls or mean_time")
                })?;
            }
            "--analyze" => c.query_options.analyze = true,
            "--statement-timeout" => {
                let ms: u64 = args.parsed(arg)?;
                if ms == 0 {
                    return Err("--statement-timeout must be at least 1 ms".to_owned());
                }
                c.query_options.statement_timeout = Duration::from_millis(ms);
            }
            "--set" => {
                let value = args.value(arg)?;
                let (name, setting) = value
                    .split_once('=')
                    .filter(|(n, _)| !n.trim().is_empty())
                    .ok_or_else(|| format!("--set {value:?}: use NAME=VALUE"))?;
                c.query_options
                    .settings
                    .push((name.trim().to_owned(), setting.to_owned()));
            }
            "--large-table-rows" => {
                let rows: f64 = args.parsed(arg)?;
                c.query_options.plan.large_table_rows = rows;
                c.index_health = c.index_health.take().map(|h| IndexHealthOptions {
                    large_table_rows: rows,
                    ..h
                });
            }
            "--selective-fraction" => c.query_options.plan.selective_fraction = args.parsed(arg)?,
            "--min-cost-reduction" => c.query_options.min_cost_reduction = args.parsed(arg)?,
            "--misestimate-factor" => c.query_options.plan.misestimate_factor = args.parsed(arg)?,
            "--misestimate-min-rows" => {
                c.query_options.plan.misestimate_min_rows = args.parsed(arg)?;
            }
            "--nested-loop-min-rows" => {
                c.query_options.plan.nested_loop_min_rows = args.parsed(arg)?;
            }
            "--no-index-health" => c.index_health = None,
            "--schema" => health(c).schemas.push(args.value(arg)?.clone()),
            "--min-seq-scans" => health(c).min_seq_scans = args.parsed(arg)?,
            "--seq-scan-share" => health(c).seq_scan_share = args.parsed(arg)?,
            "--unused-max-scans" => health(c).unused_max_scans = args.parsed(arg)?,
            "--no-pool" => c.pool = None,
            "--no-db-health" => c.db_health = None,
            "--long-running-secs" => {
                let v = args.parsed(arg)?;
                if let Some(h) = c.db_health.as_mut() {
                    h.long_running_secs = v;
                }
            }
            "--idle-in-transaction-secs" => {
                let v = args.parsed(arg)?;
                if let Some(h) = c.db_health.as_mut() {
                    h.idle_in_transaction_secs = v;
                }
            }
            "--app-instances" | "--other-connections" | "--pool-max" => {
                let n: u32 = args.parsed(arg)?;
                let mut pool = c.pool.take().unwrap_or_else(|| PoolSizingConfig {
                    app_instances: 1,
                    ..PoolSizingConfig::default()
                });
                match arg.as_str() {
                    "--app-instances" => pool.app_instances = n.max(1),
                    "--other-connections" => pool.other_connections = n,
                    _ => pool.current_pool_max = Some(n),
                }
                c.pool = Some(pool);
            }
            "--json" => command.json = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(pool) = &mut command.config.pool {
        pool.app_instances = pool.app_instances.max(1);
    }
    Ok(Some(command))
}

/// The index health options, turned on if they were off.
fn health(c: &mut AnalyzerConfig) -> &mut IndexHealthOptions {
    c.index_health
        .get_or_insert_with(IndexHealthOptions::default)
}

/// The `analyze` command (see `USAGE` / `docs/database.md`). Returns the process exit code.
pub async fn run_cli(args: &[String]) -> i32 {
    let mut command = match parse(args) {
        Ok(Some(command)) => command,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("{e}\n\n{USAGE}");
            return 2;
        }
    };
    let Some(database_url) = command.database_url.filter(|u| !u.is_empty()) else {
        eprintln!("no database: pass --database-url or set DATABASE_URL\n\n{USAGE}");
        return 2;
    };
    if let Some(url) = &command.from_app {
        match fetch_app_snapshot(url, command.app_token.as_deref()).await {
            Ok(snapshot) => command.config.app = Some(snapshot),
            Err(e) => {
                eprintln!("analyze: --from-app: {e}");
                return 1;
            }
        }
    }
    match run_analyzer(&database_url, &command.config).await {
        Ok(report) => {
            if command.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("analyze: JSON output: {e}");
                        return 1;
                    }
                }
            } else {
                print!("{}", render_text(&report));
            }
            0
        }
        Err(e) => {
            eprintln!("analyze: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flags_fill_the_config() {
        let command = parse(&args(&[
            "analyze",
            "--database-url",
            "postgres://x/y",
            "--query",
            "SELECT 1",
            "--analyze",
            "--statement-timeout",
            "250",
            "--set",
            "work_mem=64kB",
            "--schema",
            "app",
            "--unused-max-scans",
            "5",
            "--app-instances",
            "4",
            "--order",
            "calls",
            "--top",
            "3",
            "--no-pg-stat-statements",
        ]))
        .expect("parses")
        .expect("not help");
        let c = &command.config;
        assert_eq!(command.database_url.as_deref(), Some("postgres://x/y"));
        assert_eq!(c.queries, vec!["SELECT 1".to_owned()]);
        assert!(c.query_options.analyze);
        assert_eq!(
            c.query_options.statement_timeout,
            Duration::from_millis(250)
        );
        assert_eq!(
            c.query_options.settings,
            vec![("work_mem".to_owned(), "64kB".to_owned())]
        );
        let health = c.index_health.as_ref().expect("index health on");
        assert_eq!(health.schemas, vec!["app".to_owned()]);
        assert_eq!(health.unused_max_scans, 5);
        assert_eq!(c.pool.as_ref().map(|p| p.app_instances), Some(4));
        assert_eq!(c.order, HotQueryOrder::Calls);
        assert_eq!(c.top, 3);
        assert!(!c.pg_stat_statements);
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        assert!(parse(&args(&["analyze", "--bogus"])).is_err());
        assert!(parse(&args(&["analyze", "--top", "many"])).is_err());
        assert!(parse(&args(&["analyze", "--set", "novalue"])).is_err());
        assert!(parse(&args(&["analyze", "--statement-timeout", "0"])).is_err());
        assert!(parse(&args(&["analyze", "--query"])).is_err());
        assert!(parse(&args(&["explain"])).is_err());
        assert!(matches!(parse(&args(&["analyze", "--help"])), Ok(None)));
    }
}
