//! Where the analyzed queries come from: `--query` arguments, the running app's capture
//! (`GET /debug/queries`), and `pg_stat_statements` when the extension is installed.
//!
//! Statements from the app and from `pg_stat_statements` are normalized: their values
//! are `$1`, `$2`… parameters. [`parameter_count`] finds them (with the SQL tokenizer) so
//! the analyzer can plan them as a prepared statement's generic plan (see `mod.rs`).

use std::ops::ControlFlow;

use serde::Serialize;
use sqlparser::ast::{visit_relations, Statement};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};
use sqlx::{PgConnection, Row};

use super::super::stats::CaptureSnapshot;
use super::super::SqlFingerprint;
use super::quote_ident;

/// Where a query came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuerySource {
    /// A `--query` argument (or the library caller).
    Argument,
    /// The running app's capture.
    App,
    /// `pg_stat_statements`.
    PgStatStatements,
}

impl QuerySource {
    /// Stable name, as in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            QuerySource::Argument => "argument",
            QuerySource::App => "app",
            QuerySource::PgStatStatements => "pg_stat_statements",
        }
    }
}

/// Which queries count as hot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HotQueryOrder {
    /// Most total execution time first (default).
    #[default]
    TotalTime,
    /// Most calls first.
    Calls,
    /// Slowest on average first.
    MeanTime,
}

impl HotQueryOrder {
    /// Parse `total_time`, `calls` or `mean_time`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "total_time" => Some(Self::TotalTime),
            "calls" => Some(Self::Calls),
            "mean_time" => Some(Self::MeanTime),
            _ => None,
        }
    }

    fn pg_stat_statements_column(self) -> &'static str {
        match self {
            HotQueryOrder::TotalTime => "total_exec_time",
            HotQueryOrder::Calls => "calls",
            HotQueryOrder::MeanTime => "mean_exec_time",
        }
    }
}

/// A query to analyze, with what its source knows about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryCandidate {
    /// The statement.
    pub sql: String,
    /// Where it came from.
    pub source: QuerySource,
    /// Executions, when the source counts them.
    pub calls: Option<u64>,
    /// Total execution time, ms.
    pub total_ms: Option<f64>,
    /// Mean execution time, ms.
    pub mean_ms: Option<f64>,
}

impl QueryCandidate {
    /// A query given by the caller.
    pub fn argument(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            source: QuerySource::Argument,
            calls: None,
            total_ms: None,
            mean_ms: None,
        }
    }
}

/// The highest `$n` parameter of `sql` (0 when none), read with the PostgreSQL tokenizer,
/// so `'$1'` in a string literal does not count.
pub fn parameter_count(sql: &str) -> Result<usize, String> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| format!("not tokenizable: {e}"))?;
    Ok(tokens
        .iter()
        .filter_map(|t| match t {
            Token::Placeholder(p) => p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()),
            _ => None,
        })
        .max()
        .unwrap_or(0))
}

/// Is `sql` one statement EXPLAIN can plan (SELECT, INSERT, UPDATE, DELETE, MERGE) that
/// reads at least one table outside the system catalogs? `Err` says why not.
pub fn hot_query_filter(sql: &str) -> Result<(), String> {
    let statements =
        Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| format!("not parseable: {e}"))?;
    let [statement] = statements.as_slice() else {
        return Err(format!("{} statements", statements.len()));
    };
    let plannable = matches!(
        statement,
        Statement::Query(_) | Statement::Insert(_) | Statement::Delete(_)
    ) || matches!(
        statement,
        Statement::Update { .. } | Statement::Merge { .. }
    );
    if !plannable {
        return Err("not a SELECT, INSERT, UPDATE, DELETE or MERGE".to_owned());
    }
    let mut user_table = false;
    let _ = visit_relations(statement, |name| {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(|i| i.value.to_ascii_lowercase())
            .collect();
        let system = match parts.as_slice() {
            [schema, _] | [_, schema, _] => {
                schema == "pg_catalog" || schema == "information_schema"
            }
            [table] => table.starts_with("pg_"),
            _ => false,
        };
        user_table |= !system;
        ControlFlow::<()>::Continue(())
    });
    if user_table {
        Ok(())
    } else {
        Err("reads no user table".to_owned())
    }
}

/// The `limit` hottest statements the app captured, by `order`, skipping what
/// [`hot_query_filter`] refuses.
pub fn app_candidates(
    snapshot: &CaptureSnapshot,
    limit: usize,
    order: HotQueryOrder,
) -> Vec<QueryCandidate> {
    let mut stats = snapshot.fingerprints.clone();
    match order {
        HotQueryOrder::TotalTime => stats.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms)),
        HotQueryOrder::Calls => stats.sort_by_key(|s| std::cmp::Reverse(s.calls)),
        HotQueryOrder::MeanTime => stats.sort_by(|a, b| b.mean_ms.total_cmp(&a.mean_ms)),
    }
    stats
        .into_iter()
        .filter(|s| hot_query_filter(&s.sample).is_ok())
        .take(limit)
        .map(|s| QueryCandidate {
            sql: s.sample,
            source: QuerySource::App,
            calls: Some(s.calls),
            total_ms: Some(s.total_ms),
            mean_ms: Some(s.mean_ms),
        })
        .collect()
}

/// Queries from several sources, each fingerprint once (the first occurrence wins, and
/// keeps the first known stats).
pub fn merge_candidates(lists: Vec<Vec<QueryCandidate>>) -> Vec<QueryCandidate> {
    let mut out: Vec<(String, QueryCandidate)> = Vec::new();
    for candidate in lists.into_iter().flatten() {
        let id = SqlFingerprint::of(&candidate.sql).id();
        match out.iter_mut().find(|(seen, _)| *seen == id) {
            Some((_, kept)) => {
                if kept.calls.is_none() {
                    kept.calls = candidate.calls;
                    kept.total_ms = candidate.total_ms;
                    kept.mean_ms = candidate.mean_ms;
                }
            }
            None => out.push((id, candidate)),
        }
    }
    out.into_iter().map(|(_, c)| c).collect()
}

/// What reading `pg_stat_statements` gave.
#[derive(Debug, Clone, PartialEq)]
pub enum PgStatStatements {
    /// The extension is not installed in this database.
    NotInstalled,
    /// The hottest statements.
    Queries(Vec<QueryCandidate>),
}

/// The `limit` hottest statements of this database in `pg_stat_statements` (PostgreSQL
/// 13+ column names), skipping what [`hot_query_filter`] refuses.
pub async fn read_pg_stat_statements(
    conn: &mut PgConnection,
    limit: usize,
    order: HotQueryOrder,
) -> Result<PgStatStatements, sqlx::Error> {
    let schema: Option<String> = sqlx::query(
        "SELECT n.nspname::text FROM pg_extension e \
         JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'",
    )
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| r.try_get(0))
    .transpose()?;
    let Some(schema) = schema else {
        return Ok(PgStatStatements::NotInstalled);
    };
    // Utility and catalog statements are filtered after reading: read more than asked.
    let fetch = i64::try_from(limit.saturating_mul(10).clamp(50, 1000)).unwrap_or(1000);
    let rows = sqlx::query(&format!(
        "SELECT query, calls, total_exec_time, mean_exec_time \
         FROM {}.pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND query IS NOT NULL \
         ORDER BY {} DESC LIMIT $1",
        quote_ident(&schema),
        order.pg_stat_statements_column()
    ))
    .bind(fetch)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::new();
    for row in rows {
        let sql: String = row.try_get(0)?;
        if hot_query_filter(&sql).is_err() {
            continue;
        }
        let calls: i64 = row.try_get(1)?;
        out.push(QueryCandidate {
            sql,
            source: QuerySource::PgStatStatements,
            calls: Some(u64::try_from(calls).unwrap_or(0)),
            total_ms: Some(row.try_get(2)?),
            mean_ms: Some(row.try_get(3)?),
        });
        if out.len() >= limit {
            break;
        }
    }
    Ok(PgStatStatements::Queries(out))
}

/// `GET {base}/debug/queries` of a running app with the capture's router, with `token` as
/// bearer token when given. `base` may also be the full endpoint URL.
pub async fn fetch_app_snapshot(
    base: &str,
    token: Option<&str>,
) -> Result<CaptureSnapshot, String> {
    let url = if base.trim_end_matches('/').ends_with("/debug/queries") {
        base.to_owned()
    } else {
        format!("{}/debug/queries", base.trim_end_matches('/'))
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut request = client.get(&url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let hint = match status.as_u16() {
            401 => " (wrong or missing --app-token)",
            404 => " (is DbCapture::router() mounted and DbCaptureConfig::debug_token set?)",
            _ => "",
        };
        return Err(format!("GET {url}: HTTP {status}{hint}"));
    }
    response
        .json::<CaptureSnapshot>()
        .await
        .map_err(|e| format!("GET {url}: not a capture snapshot: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::stats::{AcquireStats, ConcurrencyStats, FingerprintStats};

    #[test]
    fn parameters_are_counted_by_the_tokenizer() {
        assert_eq!(parameter_count("SELECT 1").ok(), Some(0));
        assert_eq!(
            parameter_count("SELECT * FROM t WHERE a = $2 AND b = $1 AND c = '$9'").ok(),
            Some(2)
        );
    }

    #[test]
    fn only_plannable_statements_on_user_tables_are_hot_queries() {
        assert!(hot_query_filter("SELECT * FROM orders WHERE id = $1").is_ok());
        assert!(hot_query_filter("UPDATE app.orders SET status = $1 WHERE id = $2").is_ok());
        assert!(hot_query_filter("BEGIN").is_err());
        assert!(hot_query_filter("SELECT $1").is_err());
        assert!(hot_query_filter("SELECT * FROM pg_stat_user_tables").is_err());
        assert!(hot_query_filter("SELECT * FROM pg_catalog.pg_class").is_err());
        assert!(hot_query_filter("EXPLAIN SELECT * FROM orders").is_err());
        assert!(hot_query_filter("SELECT 1; SELECT 2").is_err());
    }

    #[test]
    fn app_candidates_are_the_hottest_fingerprints() {
        let stat = |sql: &str, calls, total_ms: f64| FingerprintStats {
            fingerprint: SqlFingerprint::of(sql).id(),
            normalized: SqlFingerprint::of(sql).normalized().to_owned(),
            sample: sql.to_owned(),
            calls,
            total_ms,
            mean_ms: total_ms / calls as f64,
            max_ms: total_ms,
        };
        let snapshot = CaptureSnapshot {
            uptime_secs: 1.0,
            statements: 0,
            fingerprints: vec![
                stat("SELECT * FROM a WHERE id = $1", 100, 50.0),
                stat("SELECT * FROM b WHERE x = $1", 2, 400.0),
                stat("BEGIN", 1000, 900.0),
            ],
            untracked_statements: 0,
            concurrency: ConcurrencyStats {
                in_flight_requests: 0,
                peak_in_flight_requests: 0,
                peak_concurrent_statements: 0,
                window_statements: 0,
            },
            acquire: AcquireStats::default(),
            pool: None,
        };
        let by_time = app_candidates(&snapshot, 1, HotQueryOrder::TotalTime);
        assert_eq!(by_time.len(), 1);
        assert_eq!(by_time[0].sql, "SELECT * FROM b WHERE x = $1");
        let by_calls = app_candidates(&snapshot, 5, HotQueryOrder::Calls);
        assert_eq!(by_calls[0].sql, "SELECT * FROM a WHERE id = $1");
        assert_eq!(by_calls.len(), 2);
    }

    #[test]
    fn merged_sources_keep_each_fingerprint_once() {
        let merged = merge_candidates(vec![
            vec![QueryCandidate::argument("SELECT * FROM a WHERE id = 7")],
            vec![QueryCandidate {
                sql: "SELECT * FROM a WHERE id = $1".to_owned(),
                source: QuerySource::PgStatStatements,
                calls: Some(9),
                total_ms: Some(1.0),
                mean_ms: Some(0.1),
            }],
        ]);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].source, QuerySource::Argument);
        assert_eq!(merged[0].calls, Some(9));
    }
}
