//! Query analyzer: plan findings, index health, HypoPG-verified index advice, pool sizing.
//!
//! [`run_analyzer`] builds one [`AnalyzerReport`] over one connection:
//!
//! * **queries** ([`sources`]): `--query` arguments, the hottest statements the running
//!   app captured (a [`CaptureSnapshot`]), and the hottest of `pg_stat_statements` when
//!   the extension is installed. Each is planned with `EXPLAIN (FORMAT JSON, VERBOSE)` —
//!   with `ANALYZE` only when [`AnalyzeOptions::analyze`] is set — inside a transaction
//!   that is always rolled back, under `SET LOCAL statement_timeout`. [`plan`] turns the
//!   plan into findings. For each sequential scan with a selective filter a hypothetical
//!   index (HypoPG, per connection, nothing written) on the filter's columns is created and
//!   the query re-planned; the index is advised only when the plan's total cost drops by
//!   at least [`AnalyzeOptions::min_cost_reduction`], as `CREATE INDEX CONCURRENTLY`.
//! * **normalized statements** (`$1` parameters, as the app and `pg_stat_statements` have
//!   them) cannot be EXPLAINed directly, and `EXPLAIN (GENERIC_PLAN)` needs PostgreSQL 16.
//!   They are `PREPARE`d (PostgreSQL infers the parameter types) and planned with
//!   `EXPLAIN EXECUTE name(NULL, …)` under `SET LOCAL plan_cache_mode =
//!   force_generic_plan`: the generic plan does not look at the NULLs, so it is the plan
//!   for any values (PostgreSQL 12+). They are never run with `ANALYZE` (there are no
//!   values to run them with); the report says so.
//! * **index health** ([`index_health`]), from the catalog, no query needed.
//! * **database health** ([`db_health`]): bloat estimates, long-running and
//!   idle-in-transaction sessions, blocking lock chains, cache-hit ratio, tables overdue
//!   for vacuum/analyze — from the statistics views.
//! * **pool sizing** ([`crate::db::pool_sizing`]) from `max_connections` and what the
//!   app observed.

pub mod db_health;
pub mod index_health;
pub mod plan;
pub mod sources;

mod cli;
mod render;

pub use cli::run_cli;
pub use render::render_text;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlx::{Connection, PgConnection, Row};

use super::pool_sizing::{recommend_pool_size, PoolSizing, PoolSizingInput, PoolSizingOptions};
use super::stats::CaptureSnapshot;
use super::SqlFingerprint;
use index_health::{IndexHealth, IndexHealthOptions};
use plan::{FindingDetail, FindingKind, PlanFinding, PlanThresholds};
use sources::{HotQueryOrder, PgStatStatements, QueryCandidate, QuerySource};

/// How each query is analyzed.
#[derive(Debug, Clone, Serialize)]
pub struct AnalyzeOptions {
    /// Thresholds of the plan findings.
    pub plan: PlanThresholds,
    /// Index advice needs the plan cost to drop by at least this fraction. Default: 0.5.
    pub min_cost_reduction: f64,
    /// Run the queries (`EXPLAIN ANALYZE`, rolled back). Default: false.
    pub analyze: bool,
    /// `statement_timeout` of each EXPLAIN. Default: 5 s.
    pub statement_timeout: Duration,
    /// Settings applied with `set_config(name, value, true)` before planning (e.g.
    /// `work_mem` as the application's role has it). Default: none.
    pub settings: Vec<(String, String)>,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        Self {
            plan: PlanThresholds::default(),
            min_cost_reduction: 0.5,
            analyze: false,
            statement_timeout: Duration::from_secs(5),
            settings: Vec::new(),
        }
    }
}

/// How the plan of a query was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanMode {
    /// `EXPLAIN`: planned, not run.
    Explain,
    /// `EXPLAIN ANALYZE`: run inside a rolled-back transaction.
    ExplainAnalyze,
    /// `PREPARE` + `EXPLAIN EXECUTE` under `plan_cache_mode = force_generic_plan`.
    GenericPlan,
}

impl PlanMode {
    /// Stable name, as in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanMode::Explain => "explain",
            PlanMode::ExplainAnalyze => "explain_analyze",
            PlanMode::GenericPlan => "generic_plan",
        }
    }
}

/// What the analyzer found for one query.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueryReport {
    /// The query as given.
    pub query: String,
    /// Its [`SqlFingerprint::id`].
    pub fingerprint: String,
    /// Where it came from.
    pub source: QuerySource,
    /// Executions its source counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls: Option<u64>,
    /// Total time its source counted, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
    /// Mean time its source counted, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_ms: Option<f64>,
    /// How the plan was obtained (`None` when it could not be).
    pub plan_mode: Option<PlanMode>,
    /// Total cost of the plan's top node (`None` when it could not be planned).
    pub total_cost: Option<f64>,
    /// `Execution Time` of `EXPLAIN ANALYZE`, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_ms: Option<f64>,
    /// Plan findings.
    pub findings: Vec<PlanFinding>,
    /// Index advice, each verified with a hypothetical index.
    pub index_advice: Vec<IndexAdvice>,
    /// Remarks on how the query was analyzed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Why the query could not be analyzed, if so.
    pub error: Option<String>,
}

/// An index worth creating: HypoPG showed the plan cost drop.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IndexAdvice {
    /// `schema.table`.
    pub table: String,
    /// Indexed columns, in order.
    pub columns: Vec<String>,
    /// Plan cost without the index.
    pub cost_before: f64,
    /// Plan cost with the hypothetical index.
    pub cost_after: f64,
    /// `1 - after / before`.
    pub cost_reduction: f64,
    /// The statement to run.
    pub create_index: String,
}

/// Everything [`run_analyzer`] is asked to do.
#[derive(Debug, Clone)]
pub struct AnalyzerConfig {
    /// Queries given explicitly (analyzed first, all of them).
    pub queries: Vec<String>,
    /// What the running app captured (see [`sources::fetch_app_snapshot`]).
    pub app: Option<CaptureSnapshot>,
    /// Read `pg_stat_statements` when the extension is installed. Default: true.
    pub pg_stat_statements: bool,
    /// How many hot queries to take from the app and from `pg_stat_statements` each.
    /// Default: 10.
    pub top: usize,
    /// Which queries are hot. Default: most total time.
    pub order: HotQueryOrder,
    /// How each query is analyzed.
    pub query_options: AnalyzeOptions,
    /// The index health section (`None`: skipped).
    pub index_health: Option<IndexHealthOptions>,
    /// The pool sizing section (`None`: skipped).
    pub pool: Option<PoolSizingConfig>,
    /// The database health section (`None`: skipped).
    pub db_health: Option<db_health::DbHealthOptions>,
}

impl Default for AnalyzerConfig {
    fn default() -> Self {
        Self {
            queries: Vec::new(),
            app: None,
            pg_stat_statements: true,
            top: 10,
            order: HotQueryOrder::TotalTime,
            query_options: AnalyzeOptions::default(),
            index_health: Some(IndexHealthOptions::default()),
            pool: Some(PoolSizingConfig::default()),
            db_health: Some(db_health::DbHealthOptions::default()),
        }
    }
}

/// What pool sizing needs beyond the server's settings and the app's observations.
#[derive(Debug, Clone, Default)]
pub struct PoolSizingConfig {
    /// Application instances sharing the server (0 counts as 1). Default: 1.
    pub app_instances: u32,
    /// Connections to leave for other clients. Default: 0.
    pub other_connections: u32,
    /// The pool's current maximum, when the app does not report it.
    pub current_pool_max: Option<u32>,
    /// Knobs of the recommendation.
    pub options: PoolSizingOptions,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnalyzerReport {
    /// `server_version` of the analyzed server.
    pub server_version: String,
    /// What each query source gave (or why it gave nothing).
    pub sources: Vec<String>,
    /// Per query.
    pub queries: Vec<QueryReport>,
    /// Catalog findings.
    pub index_health: Option<IndexHealth>,
    /// Pool size recommendation.
    pub pool: Option<PoolSizing>,
    /// Database health.
    pub db_health: Option<db_health::DbHealth>,
}

/// Analyze `queries` on one connection to `database_url` (queries only: no catalog
/// report, no pool sizing, no other sources).
pub async fn analyze_queries(
    database_url: &str,
    queries: &[String],
    options: &AnalyzeOptions,
) -> Result<Vec<QueryReport>, sqlx::Error> {
    let config = AnalyzerConfig {
        queries: queries.to_vec(),
        pg_stat_statements: false,
        query_options: options.clone(),
        index_health: None,
        pool: None,
        db_health: None,
        ..AnalyzerConfig::default()
    };
    Ok(run_analyzer(database_url, &config).await?.queries)
}

/// Build the report. Fails only when the database cannot be reached or the catalog not
/// read; a query that cannot be analyzed has its `error` set.
pub async fn run_analyzer(
    database_url: &str,
    config: &AnalyzerConfig,
) -> Result<AnalyzerReport, sqlx::Error> {
    let mut conn = PgConnection::connect(database_url).await?;
    let server_version: String = sqlx::query("SELECT current_setting('server_version')")
        .fetch_one(&mut conn)
        .await?
        .try_get(0)?;

    let mut notes = Vec::new();
    let mut lists = vec![config
        .queries
        .iter()
        .map(QueryCandidate::argument)
        .collect::<Vec<_>>()];
    if let Some(snapshot) = &config.app {
        let hot = sources::app_candidates(snapshot, config.top, config.order);
        notes.push(format!(
            "app: {} of {} captured fingerprints ({} statements)",
            hot.len(),
            snapshot.fingerprints.len(),
            snapshot.statements
        ));
        lists.push(hot);
    }
    if config.pg_stat_statements && config.top > 0 {
        match sources::read_pg_stat_statements(&mut conn, config.top, config.order).await {
            Ok(PgStatStatements::Queries(hot)) => {
                notes.push(format!(
                    "pg_stat_statements: {} hot statement(s)",
                    hot.len()
                ));
                lists.push(hot);
            }
            Ok(PgStatStatements::NotInstalled) => notes.push(
                "pg_stat_statements: not installed in this database (needs \
                 shared_preload_libraries = 'pg_stat_statements' and CREATE EXTENSION \
                 pg_stat_statements)"
                    .to_owned(),
            ),
            Err(e) => notes.push(format!("pg_stat_statements: not readable: {e}")),
        }
    }
    let candidates = sources::merge_candidates(lists);

    let mut queries = Vec::with_capacity(candidates.len());
    if !candidates.is_empty() {
        let hypopg = ensure_hypopg(&mut conn).await;
        if hypopg.is_none() {
            notes.push("hypopg: not available, no index advice".to_owned());
        }
        for candidate in &candidates {
            queries.push(
                analyze_query(
                    &mut conn,
                    candidate,
                    &config.query_options,
                    hypopg.as_deref(),
                )
                .await,
            );
        }
    }

    let index_health = match &config.index_health {
        Some(options) => {
            let catalog = index_health::read_catalog(&mut conn, options).await?;
            Some(index_health::index_health(&catalog, options))
        }
        None => None,
    };
    let pool = match &config.pool {
        Some(pool) => Some(pool_sizing(&mut conn, pool, config.app.as_ref()).await?),
        None => None,
    };
    let db_health = match &config.db_health {
        Some(options) => Some(db_health::read_db_health(&mut conn, options).await?),
        None => None,
    };
    let _ = conn.close().await;
    Ok(AnalyzerReport {
        db_health,
        server_version,
        sources: notes,
        queries,
        index_health,
        pool,
    })
}

/// The schema HypoPG's functions live in, after creating the extension if needed;
/// `None` when it is not available. Its functions are called schema-qualified, so a
/// `search_path` from `--set` cannot hide them.
async fn ensure_hypopg(conn: &mut PgConnection) -> Option<String> {
    // Two analyzers creating the extension at once: one of them errors, both then have it.
    let _ = sqlx::query("CREATE EXTENSION IF NOT EXISTS hypopg")
        .execute(&mut *conn)
        .await;
    sqlx::query(
        "SELECT n.nspname::text FROM pg_extension e \
         JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'hypopg'",
    )
    .fetch_optional(&mut *conn)
    .await
    .ok()
    .flatten()
    .and_then(|row| row.try_get::<String, _>(0).ok())
}

async fn pool_sizing(
    conn: &mut PgConnection,
    config: &PoolSizingConfig,
    app: Option<&CaptureSnapshot>,
) -> Result<PoolSizing, sqlx::Error> {
    // `reserved_connections` exists from PostgreSQL 16; missing_ok gives NULL before.
    let row = sqlx::query(
        "SELECT current_setting('max_connections')::int4, \
                current_setting('superuser_reserved_connections')::int4, \
                COALESCE(current_setting('reserved_connections', true)::int4, 0)",
    )
    .fetch_one(&mut *conn)
    .await?;
    let setting = |i: usize| -> Result<u32, sqlx::Error> {
        Ok(u32::try_from(row.try_get::<i32, _>(i)?).unwrap_or(0))
    };
    let mut input = PoolSizingInput {
        server_max_connections: setting(0)?,
        reserved_connections: setting(1)?.saturating_add(setting(2)?),
        other_connections: config.other_connections,
        app_instances: config.app_instances.max(1),
        peak_concurrent_statements: None,
        peak_in_flight_requests: None,
        acquire_p95_ms: None,
        current_pool_max: None,
    };
    if let Some(snapshot) = app {
        input = input.observe(snapshot);
    }
    if config.current_pool_max.is_some() {
        input.current_pool_max = config.current_pool_max;
    }
    Ok(recommend_pool_size(&input, &config.options))
}

async fn analyze_query(
    conn: &mut PgConnection,
    candidate: &QueryCandidate,
    options: &AnalyzeOptions,
    hypopg: Option<&str>,
) -> QueryReport {
    let query = candidate.sql.as_str();
    let mut report = QueryReport {
        query: query.to_owned(),
        fingerprint: SqlFingerprint::of(query).id(),
        source: candidate.source,
        calls: candidate.calls,
        total_ms: candidate.total_ms,
        mean_ms: candidate.mean_ms,
        plan_mode: None,
        total_cost: None,
        execution_ms: None,
        findings: Vec::new(),
        index_advice: Vec::new(),
        notes: Vec::new(),
        error: None,
    };
    // One statement only: EXPLAIN gets exactly the text that was checked.
    match Parser::parse_sql(&PostgreSqlDialect {}, query) {
        Ok(statements) if statements.len() == 1 => {}
        Ok(statements) => {
            report.error = Some(format!("expected one statement, got {}", statements.len()));
            return report;
        }
        Err(e) => {
            report.error = Some(format!("not parseable as one SQL statement: {e}"));
            return report;
        }
    }
    let parameters = match sources::parameter_count(query) {
        Ok(n) => n,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    let mode = match (parameters, options.analyze) {
        (0, true) => PlanMode::ExplainAnalyze,
        (0, false) => PlanMode::Explain,
        (_, analyze) => {
            if analyze {
                report.notes.push(format!(
                    "not run with ANALYZE: its {parameters} parameter(s) have no values; \
                     planned generically instead"
                ));
            }
            PlanMode::GenericPlan
        }
    };

    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            report.error = Some(format!("BEGIN failed: {e}"));
            return report;
        }
    };
    let outcome = analyze_in_transaction(&mut tx, query, parameters, mode, options, hypopg).await;
    // Always rolled back: EXPLAIN ANALYZE of a write leaves nothing behind.
    let rolled_back = tx.rollback().await;
    match outcome {
        Ok(analysis) => {
            report.plan_mode = Some(mode);
            report.total_cost = analysis.total_cost;
            report.execution_ms = analysis.execution_ms;
            report.findings = analysis.findings;
            report.index_advice = analysis.index_advice;
            report.notes.extend(analysis.notes);
        }
        Err(e) => report.error = Some(explain_error(&e, mode, options)),
    }
    if let Err(e) = rolled_back {
        report.error.get_or_insert(format!("ROLLBACK failed: {e}"));
    }
    report
}

struct QueryAnalysis {
    total_cost: Option<f64>,
    execution_ms: Option<f64>,
    findings: Vec<PlanFinding>,
    index_advice: Vec<IndexAdvice>,
    notes: Vec<String>,
}

async fn analyze_in_transaction(
    conn: &mut PgConnection,
    query: &str,
    parameters: usize,
    mode: PlanMode,
    options: &AnalyzeOptions,
    hypopg: Option<&str>,
) -> Result<QueryAnalysis, sqlx::Error> {
    let timeout_ms = options.statement_timeout.as_millis().max(1).to_string();
    let mut settings: Vec<(&str, &str)> = options
        .settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    settings.push(("statement_timeout", &timeout_ms));
    if mode == PlanMode::GenericPlan {
        settings.push(("plan_cache_mode", "force_generic_plan"));
    }
    for (name, value) in settings {
        sqlx::query("SELECT set_config($1, $2, true)")
            .bind(name)
            .bind(value)
            .execute(&mut *conn)
            .await?;
    }

    let document = explain(conn, query, parameters, mode == PlanMode::ExplainAnalyze).await?;
    let plan = document.get("Plan").cloned().unwrap_or(Value::Null);
    let cost_before = total_cost(&plan);
    let execution_ms = document.get("Execution Time").and_then(Value::as_f64);

    let mut table_rows = HashMap::new();
    for (schema, table) in plan::seq_scanned_tables(&plan) {
        if let Ok(rows) = reltuples(conn, &schema, &table).await {
            table_rows.insert(format!("{schema}.{table}"), rows);
        }
    }
    let findings = plan::plan_findings(&plan, &table_rows, &options.plan);

    let mut index_advice = Vec::new();
    let mut notes = Vec::new();
    for finding in &findings {
        let (FindingKind::SeqScanSelectiveFilter, FindingDetail::SeqScan { filter_columns, .. }) =
            (finding.kind, &finding.detail)
        else {
            continue;
        };
        let (Some(cost_before), Some(hypopg), false) =
            (cost_before, hypopg, filter_columns.is_empty())
        else {
            continue;
        };
        let Some((schema, table)) = finding.table.split_once('.') else {
            continue;
        };
        let candidate = IndexCandidate {
            schema,
            table,
            columns: filter_columns,
        };
        let advice =
            match try_hypothetical_index(conn, hypopg, query, parameters, &candidate, cost_before)
                .await
            {
                Ok(advice) => advice,
                Err(e) => {
                    // The transaction is aborted now: keep the findings, stop here.
                    notes.push(format!("index advice failed: {e}"));
                    break;
                }
            };
        if let Some(advice) = advice {
            if advice.cost_reduction >= options.min_cost_reduction
                && !index_advice.contains(&advice)
            {
                index_advice.push(advice);
            }
        }
    }
    Ok(QueryAnalysis {
        total_cost: cost_before,
        execution_ms,
        findings,
        index_advice,
        notes,
    })
}

/// Say plainly what went wrong, especially a timeout.
fn explain_error(e: &sqlx::Error, mode: PlanMode, options: &AnalyzeOptions) -> String {
    let what = match mode {
        PlanMode::ExplainAnalyze => "EXPLAIN ANALYZE",
        PlanMode::Explain => "EXPLAIN",
        PlanMode::GenericPlan => "EXPLAIN EXECUTE (generic plan)",
    };
    if let sqlx::Error::Database(db) = e {
        if db.code().as_deref() == Some("57014") {
            return format!(
                "{what} cut off by statement_timeout ({} ms): {} (rolled back; raise \
                 --statement-timeout to let it finish)",
                options.statement_timeout.as_millis(),
                db.message()
            );
        }
    }
    format!("{what} failed: {e}")
}

/// An index to try: `schema.table (columns)`.
struct IndexCandidate<'a> {
    schema: &'a str,
    table: &'a str,
    columns: &'a [String],
}

/// Create a hypothetical index, re-plan, drop it again.
async fn try_hypothetical_index(
    conn: &mut PgConnection,
    hypopg: &str,
    query: &str,
    parameters: usize,
    candidate: &IndexCandidate<'_>,
    cost_before: f64,
) -> Result<Option<IndexAdvice>, sqlx::Error> {
    let IndexCandidate {
        schema,
        table,
        columns,
    } = *candidate;
    let column_list = columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let target = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let create = format!("CREATE INDEX ON {target} ({column_list})");
    let hypopg = quote_ident(hypopg);
    sqlx::query(&format!("SELECT * FROM {hypopg}.hypopg_create_index($1)"))
        .bind(&create)
        .fetch_all(&mut *conn)
        .await?;
    let plan = explain(conn, query, parameters, false).await;
    let reset = sqlx::query(&format!("SELECT {hypopg}.hypopg_reset()"))
        .fetch_all(&mut *conn)
        .await;
    let plan = plan?;
    reset?;
    let Some(cost_after) = plan.get("Plan").and_then(total_cost) else {
        return Ok(None);
    };
    Ok(Some(IndexAdvice {
        table: format!("{schema}.{table}"),
        columns: columns.to_vec(),
        cost_before,
        cost_after,
        cost_reduction: cost_reduction(cost_before, cost_after),
        create_index: format!("CREATE INDEX CONCURRENTLY ON {target} ({column_list});"),
    }))
}

/// `1 - after / before`, 0 when `before` is not positive.
fn cost_reduction(before: f64, after: f64) -> f64 {
    if before > 0.0 {
        1.0 - after / before
    } else {
        0.0
    }
}

/// Names of prepared statements; unique per process so a failed `DEALLOCATE` never
/// collides with the next query.
static PREPARED: AtomicU64 = AtomicU64::new(0);

/// The first document of `EXPLAIN (FORMAT JSON, VERBOSE[, ANALYZE, BUFFERS]) query`: its
/// `Plan`, and `Execution Time` with ANALYZE. A query with `$n` parameters is prepared
/// and planned as `EXECUTE name(NULL, …)` (the caller has set `plan_cache_mode`).
async fn explain(
    conn: &mut PgConnection,
    query: &str,
    parameters: usize,
    analyze: bool,
) -> Result<Value, sqlx::Error> {
    let options = if analyze {
        "ANALYZE, BUFFERS, VERBOSE, FORMAT JSON"
    } else {
        "VERBOSE, FORMAT JSON"
    };
    // The simple protocol, so the text (checked to be one statement) is sent as is and
    // never lands in the connection's statement cache.
    let text: String = if parameters == 0 {
        sqlx::raw_sql(&format!("EXPLAIN ({options}) {query}"))
            .fetch_one(&mut *conn)
            .await?
            .try_get_unchecked(0)?
    } else {
        let name = format!(
            "cachefront_analyze_{}",
            PREPARED.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::raw_sql(&format!("PREPARE {name} AS {query}"))
            .execute(&mut *conn)
            .await?;
        let nulls = vec!["NULL"; parameters].join(", ");
        let plan = sqlx::raw_sql(&format!("EXPLAIN ({options}) EXECUTE {name}({nulls})"))
            .fetch_one(&mut *conn)
            .await;
        // Prepared statements outlive transactions: drop it whatever happened.
        let _ = sqlx::raw_sql(&format!("DEALLOCATE {name}"))
            .execute(&mut *conn)
            .await;
        plan?.try_get_unchecked(0)?
    };
    let document: Value =
        serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(document.get(0).cloned().unwrap_or(Value::Null))
}

fn total_cost(plan: &Value) -> Option<f64> {
    plan.get("Total Cost").and_then(Value::as_f64)
}

/// Planner row estimate of `schema.table`.
async fn reltuples(conn: &mut PgConnection, schema: &str, table: &str) -> Result<f64, sqlx::Error> {
    let row = sqlx::query(
        "SELECT c.reltuples::float8 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = $2",
    )
    .bind(schema)
    .bind(table)
    .fetch_one(&mut *conn)
    .await?;
    row.try_get(0)
}

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }

    #[test]
    fn cost_reduction_is_the_dropped_fraction() {
        assert!((cost_reduction(2000.0, 500.0) - 0.75).abs() < 1e-12);
        assert_eq!(cost_reduction(0.0, 5.0), 0.0);
    }

    #[test]
    fn plan_mode_names_match_the_json() {
        for mode in [
            PlanMode::Explain,
            PlanMode::ExplainAnalyze,
            PlanMode::GenericPlan,
        ] {
            assert_eq!(
                serde_json::to_value(mode).expect("serialize"),
                Value::from(mode.as_str())
            );
        }
    }
}
