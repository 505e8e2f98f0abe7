//! Query analyzer: `EXPLAIN (FORMAT JSON)` findings and index advice verified with HypoPG.
//!
//! For each query, [`analyze_queries`] asks PostgreSQL for the plan (never `ANALYZE`: the
//! query is not run) and reports sequential scans with a selective filter on a large
//! table. For each such scan it creates a hypothetical index (HypoPG, per connection,
//! nothing is written) on the columns of the filter, re-plans, and recommends the index
//! only when the plan's total cost drops by at least
//! [`AnalyzeOptions::min_cost_reduction`], printing its `CREATE INDEX CONCURRENTLY`.
//!
//! Filter columns come from parsing the plan's `Filter` expression with `sqlparser`.

use std::ops::ControlFlow;

use serde::Serialize;
use serde_json::Value;
use sqlparser::ast::{Expr, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlx::{Connection, PgConnection, Row};

use super::SqlFingerprint;

/// Thresholds of the analyzer.
#[derive(Debug, Clone, Serialize)]
pub struct AnalyzeOptions {
    /// Tables with at least this many rows (planner estimate) count as large. Default: 10 000.
    pub large_table_rows: f64,
    /// A filter keeping at most this fraction of a table's rows is selective. Default: 0.05.
    pub selective_fraction: f64,
    /// Index advice needs the plan cost to drop by at least this fraction. Default: 0.5.
    pub min_cost_reduction: f64,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        Self {
            large_table_rows: 10_000.0,
            selective_fraction: 0.05,
            min_cost_reduction: 0.5,
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
    /// Total cost of the plan's top node (`None` when it could not be planned).
    pub total_cost: Option<f64>,
    /// Plan findings.
    pub findings: Vec<PlanFinding>,
    /// Index advice, each verified with a hypothetical index.
    pub index_advice: Vec<IndexAdvice>,
    /// Why the query could not be analyzed, if so.
    pub error: Option<String>,
}

/// One problem in a plan.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanFinding {
    /// `seq_scan_selective_filter`.
    pub kind: &'static str,
    /// The plan node type (`Seq Scan`, `Parallel Seq Scan`).
    pub node: String,
    /// `schema.table`.
    pub table: String,
    /// The node's filter as PostgreSQL prints it.
    pub filter: String,
    /// Rows the planner expects the node to return.
    pub estimated_rows: f64,
    /// Rows in the table (planner statistics).
    pub table_rows: f64,
    /// Columns of the table the filter reads.
    pub filter_columns: Vec<String>,
    /// One line for humans.
    pub message: String,
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

/// Analyze `queries` on one connection to `database_url`. Needs the `hypopg` extension to be
/// installable (`CREATE EXTENSION IF NOT EXISTS hypopg`) for index advice; without it the
/// reports have findings but no advice.
pub async fn analyze_queries(
    database_url: &str,
    queries: &[String],
    options: &AnalyzeOptions,
) -> Result<Vec<QueryReport>, sqlx::Error> {
    let mut conn = PgConnection::connect(database_url).await?;
    // Two analyzers creating the extension at once: one of them errors, both then have it.
    let created = sqlx::query("CREATE EXTENSION IF NOT EXISTS hypopg")
        .execute(&mut conn)
        .await
        .is_ok();
    let hypopg = created
        || sqlx::query("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'")
            .fetch_optional(&mut conn)
            .await
            .ok()
            .flatten()
            .is_some();
    let mut reports = Vec::with_capacity(queries.len());
    for query in queries {
        reports.push(analyze_query(&mut conn, query, options, hypopg).await);
    }
    let _ = conn.close().await;
    Ok(reports)
}

async fn analyze_query(
    conn: &mut PgConnection,
    query: &str,
    options: &AnalyzeOptions,
    hypopg: bool,
) -> QueryReport {
    let mut report = QueryReport {
        query: query.to_owned(),
        fingerprint: SqlFingerprint::of(query).id(),
        total_cost: None,
        findings: Vec::new(),
        index_advice: Vec::new(),
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
    let plan = match explain(conn, query, true).await {
        Ok(plan) => plan,
        Err(e) => {
            report.error = Some(format!("EXPLAIN failed: {e}"));
            return report;
        }
    };
    let cost_before = total_cost(&plan);
    report.total_cost = cost_before;

    let mut scans = Vec::new();
    collect_seq_scans(&plan, &mut scans);
    for scan in scans {
        let table_rows = match table_rows(conn, &scan.schema, &scan.table).await {
            Ok(rows) => rows,
            Err(_) => continue,
        };
        if table_rows < options.large_table_rows
            || scan.estimated_rows > table_rows * options.selective_fraction
        {
            continue;
        }
        let columns = filter_columns(&scan.filter);
        let table = format!("{}.{}", scan.schema, scan.table);
        report.findings.push(PlanFinding {
            kind: "seq_scan_selective_filter",
            message: format!(
                "{} on {table} reads all ~{table_rows:.0} rows to keep ~{:.0} (filter {})",
                scan.node, scan.estimated_rows, scan.filter
            ),
            node: scan.node,
            table: table.clone(),
            filter: scan.filter,
            estimated_rows: scan.estimated_rows,
            table_rows,
            filter_columns: columns.clone(),
        });
        if !hypopg || columns.is_empty() {
            continue;
        }
        let Some(cost_before) = cost_before else {
            continue;
        };
        if let Ok(Some(advice)) = try_hypothetical_index(
            conn,
            query,
            &scan.schema,
            &scan.table,
            &columns,
            cost_before,
        )
        .await
        {
            if advice.cost_reduction >= options.min_cost_reduction
                && !report.index_advice.contains(&advice)
            {
                report.index_advice.push(advice);
            }
        }
    }
    report
}

/// Create a hypothetical index, re-plan, drop it again.
async fn try_hypothetical_index(
    conn: &mut PgConnection,
    query: &str,
    schema: &str,
    table: &str,
    columns: &[String],
    cost_before: f64,
) -> Result<Option<IndexAdvice>, sqlx::Error> {
    let column_list = columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let target = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let create = format!("CREATE INDEX ON {target} ({column_list})");
    sqlx::query("SELECT * FROM hypopg_create_index($1)")
        .bind(&create)
        .fetch_all(&mut *conn)
        .await?;
    let plan = explain(conn, query, false).await;
    let _ = sqlx::query("SELECT hypopg_reset()")
        .fetch_all(&mut *conn)
        .await;
    let Some(cost_after) = total_cost(&plan?) else {
        return Ok(None);
    };
    let cost_reduction = if cost_before > 0.0 {
        1.0 - cost_after / cost_before
    } else {
        0.0
    };
    Ok(Some(IndexAdvice {
        table: format!("{schema}.{table}"),
        columns: columns.to_vec(),
        cost_before,
        cost_after,
        cost_reduction,
        create_index: format!("CREATE INDEX CONCURRENTLY ON {target} ({column_list});"),
    }))
}

/// The top plan node of `EXPLAIN (FORMAT JSON[, VERBOSE]) query`.
async fn explain(
    conn: &mut PgConnection,
    query: &str,
    verbose: bool,
) -> Result<Value, sqlx::Error> {
    let options = if verbose {
        "FORMAT JSON, VERBOSE"
    } else {
        "FORMAT JSON"
    };
    let row = sqlx::query(&format!("EXPLAIN ({options}) {query}"))
        .fetch_one(&mut *conn)
        .await?;
    // `json` travels as its text in both formats.
    let text: String = row.try_get_unchecked(0)?;
    let document: Value =
        serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(document
        .get(0)
        .and_then(|d| d.get("Plan"))
        .cloned()
        .unwrap_or(Value::Null))
}

fn total_cost(plan: &Value) -> Option<f64> {
    plan.get("Total Cost").and_then(Value::as_f64)
}

/// Planner row estimate of `schema.table`.
async fn table_rows(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<f64, sqlx::Error> {
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

struct SeqScan {
    node: String,
    schema: String,
    table: String,
    filter: String,
    estimated_rows: f64,
}

fn collect_seq_scans(node: &Value, out: &mut Vec<SeqScan>) {
    let node_type = node.get("Node Type").and_then(Value::as_str).unwrap_or("");
    if matches!(node_type, "Seq Scan" | "Parallel Seq Scan") {
        let text = |key: &str| node.get(key).and_then(Value::as_str).map(str::to_owned);
        if let (Some(table), Some(filter)) = (text("Relation Name"), text("Filter")) {
            out.push(SeqScan {
                node: node_type.to_owned(),
                schema: text("Schema").unwrap_or_else(|| "public".to_owned()),
                table,
                filter,
                estimated_rows: node.get("Plan Rows").and_then(Value::as_f64).unwrap_or(0.0),
            });
        }
    }
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        for child in children {
            collect_seq_scans(child, out);
        }
    }
}

/// Column names a plan `Filter` reads (the last part of each identifier), in order of
/// appearance, deduplicated. Empty when the filter does not parse.
pub fn filter_columns(filter: &str) -> Vec<String> {
    struct Columns(Vec<String>);
    impl Visitor for Columns {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            let name = match expr {
                Expr::Identifier(ident) => Some(ident.value.clone()),
                Expr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.clone()),
                _ => None,
            };
            if let Some(name) = name {
                if !self.0.contains(&name) {
                    self.0.push(name);
                }
            }
            ControlFlow::Continue(())
        }
    }
    let dialect = PostgreSqlDialect {};
    let Ok(expr) = Parser::new(&dialect)
        .try_with_sql(filter)
        .and_then(|mut p| p.parse_expr())
    else {
        return Vec::new();
    };
    let mut columns = Columns(Vec::new());
    let _ = expr.visit(&mut columns);
    columns.0
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Human-readable report.
pub fn render_text(reports: &[QueryReport]) -> String {
    let mut out = String::new();
    for (i, r) in reports.iter().enumerate() {
        out.push_str(&format!(
            "query {}: {}\n  fingerprint {}",
            i + 1,
            r.query,
            r.fingerprint
        ));
        if let Some(cost) = r.total_cost {
            out.push_str(&format!(", plan cost {cost:.2}"));
        }
        out.push('\n');
        if let Some(e) = &r.error {
            out.push_str(&format!("  error: {e}\n"));
        }
        for f in &r.findings {
            out.push_str(&format!("  finding [{}]: {}\n", f.kind, f.message));
        }
        for a in &r.index_advice {
            out.push_str(&format!(
                "  advice: {}  -- HypoPG: cost {:.2} -> {:.2} (-{:.1}%)\n",
                a.create_index,
                a.cost_before,
                a.cost_after,
                a.cost_reduction * 100.0
            ));
        }
        if r.error.is_none() && r.findings.is_empty() {
            out.push_str("  no findings\n");
        }
    }
    out
}

/// The `analyze` command: `analyze --database-url URL [--query SQL]... [--json]`
/// (`DATABASE_URL` when `--database-url` is absent). Returns the process exit code.
pub async fn run_cli(args: &[String]) -> i32 {
    const USAGE: &str =
        "usage: cachefront-origin analyze [--database-url URL] [--query SQL]... [--json]";
    let mut args = args.iter();
    if args.next().map(String::as_str) != Some("analyze") {
        eprintln!("{USAGE}");
        return 2;
    }
    let mut database_url = std::env::var("DATABASE_URL").ok();
    let mut queries = Vec::new();
    let mut json = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--database-url" => database_url = args.next().cloned(),
            "--query" => match args.next() {
                Some(q) => queries.push(q.clone()),
                None => {
                    eprintln!("--query needs a value\n{USAGE}");
                    return 2;
                }
            },
            "--json" => json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return 0;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                return 2;
            }
        }
    }
    let Some(database_url) = database_url.filter(|u| !u.is_empty()) else {
        eprintln!("no database: pass --database-url or set DATABASE_URL\n{USAGE}");
        return 2;
    };
    if queries.is_empty() {
        eprintln!("no queries: pass at least one --query\n{USAGE}");
        return 2;
    }
    match analyze_queries(&database_url, &queries, &AnalyzeOptions::default()).await {
        Ok(reports) => {
            if json {
                println!("{}", serde_json::json!({ "queries": reports }));
            } else {
                print!("{}", render_text(&reports));
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

    #[test]
    fn filter_columns_come_from_the_parsed_filter() {
        assert_eq!(
            filter_columns("((products.email)::text = 'user42@example.com'::text)"),
            vec!["email".to_owned()]
        );
        assert_eq!(
            filter_columns("((a = 1) AND (t.b > 2) AND (a < 9))"),
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert!(filter_columns("((((").is_empty());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
