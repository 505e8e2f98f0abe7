//! Plan findings: pure functions over the JSON of `EXPLAIN (FORMAT JSON[, ANALYZE])`.
//!
//! Each finding names the plan node and the table(s) it reads. Findings that need real
//! row counts or memory use (spills, misestimates) only appear in `ANALYZE` plans; the
//! others work on estimates too. Table sizes come in as an explicit map, so nothing here
//! touches the database.

use std::collections::HashMap;
use std::ops::ControlFlow;

use serde::Serialize;
use serde_json::Value;
use sqlparser::ast::{Expr, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Thresholds of the plan findings.
#[derive(Debug, Clone, Serialize)]
pub struct PlanThresholds {
    /// Tables with at least this many rows (planner estimate) count as large. Default: 10 000.
    pub large_table_rows: f64,
    /// A filter keeping at most this fraction of a table's rows is selective. Default: 0.05.
    pub selective_fraction: f64,
    /// Actual and planned rows differing by at least this factor are a misestimate
    /// (`ANALYZE` only). Default: 10.
    pub misestimate_factor: f64,
    /// Misestimates where both numbers stay below this many rows are ignored. Default: 1 000.
    pub misestimate_min_rows: f64,
    /// A nested loop whose inner side yields at least this many rows over all its loops
    /// (outer rows × inner rows per loop) is reported. Default: 1 000 000.
    pub nested_loop_min_rows: f64,
}

impl Default for PlanThresholds {
    fn default() -> Self {
        Self {
            large_table_rows: 10_000.0,
            selective_fraction: 0.05,
            misestimate_factor: 10.0,
            misestimate_min_rows: 1_000.0,
            nested_loop_min_rows: 1_000_000.0,
        }
    }
}

/// What kind of problem a [`PlanFinding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A sequential scan of a large table that keeps few of its rows.
    SeqScanSelectiveFilter,
    /// A sort that did not fit in `work_mem` and went to disk (`ANALYZE` only).
    SortSpill,
    /// A hash (join or aggregate) that needed more than one batch (`ANALYZE` only).
    HashSpill,
    /// Actual rows far from the planner's estimate (`ANALYZE` only).
    RowMisestimate,
    /// A nested loop whose inner side is run over a big input.
    NestedLoopBigInputs,
}

impl FindingKind {
    /// Stable name, as in the JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::SeqScanSelectiveFilter => "seq_scan_selective_filter",
            FindingKind::SortSpill => "sort_spill",
            FindingKind::HashSpill => "hash_spill",
            FindingKind::RowMisestimate => "row_misestimate",
            FindingKind::NestedLoopBigInputs => "nested_loop_big_inputs",
        }
    }
}

/// One problem in a plan.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanFinding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// The plan node type (`Seq Scan`, `Sort`, `Hash`, `HashAggregate`, `Nested Loop`…).
    pub node: String,
    /// The table the node reads (`schema.table`), or the tables below it, comma-separated.
    pub table: String,
    /// One line for humans.
    pub message: String,
    /// Numbers specific to the kind.
    #[serde(flatten)]
    pub detail: FindingDetail,
}

/// The numbers behind a finding; flattened into the finding's JSON object.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum FindingDetail {
    /// [`FindingKind::SeqScanSelectiveFilter`].
    SeqScan {
        /// The node's filter as PostgreSQL prints it.
        filter: String,
        /// Columns of the table the filter reads.
        filter_columns: Vec<String>,
        /// Rows the planner expects the node to return.
        estimated_rows: f64,
        /// Rows in the table (planner statistics).
        table_rows: f64,
    },
    /// [`FindingKind::SortSpill`] and [`FindingKind::HashSpill`].
    Spill {
        /// `Sort Method` for sorts (`external merge`…).
        #[serde(skip_serializing_if = "Option::is_none")]
        method: Option<String>,
        /// Disk used, in kB, when PostgreSQL reports it.
        #[serde(skip_serializing_if = "Option::is_none")]
        disk_kb: Option<f64>,
        /// Batches of a hash / hash aggregate.
        #[serde(skip_serializing_if = "Option::is_none")]
        batches: Option<f64>,
    },
    /// [`FindingKind::RowMisestimate`].
    Misestimate {
        /// Rows per loop the planner expected.
        estimated_rows: f64,
        /// Rows per loop the node returned.
        actual_rows: f64,
        /// `max / min` of the two (the smaller taken as at least 1).
        factor: f64,
    },
    /// [`FindingKind::NestedLoopBigInputs`].
    NestedLoop {
        /// Rows of the outer side (= loops of the inner side).
        outer_rows: f64,
        /// Rows the inner side yields per loop.
        inner_rows_per_loop: f64,
        /// `outer_rows × inner_rows_per_loop`.
        inner_rows_total: f64,
        /// Whether the numbers are actual (`ANALYZE`) or planner estimates.
        actual: bool,
    },
}

/// `(schema, table)` of every sequential scan with a filter, for looking up table sizes.
pub fn seq_scanned_tables(plan: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(plan, &mut |node| {
        if let Some(scan) = SeqScan::of(node) {
            let key = (scan.schema, scan.table);
            if !out.contains(&key) {
                out.push(key);
            }
        }
    });
    out
}

/// Every finding in `plan` (the `Plan` object of EXPLAIN's JSON). `table_rows` maps
/// `schema.table` to the table's row count; scans of tables missing from it are skipped.
pub fn plan_findings(
    plan: &Value,
    table_rows: &HashMap<String, f64>,
    thresholds: &PlanThresholds,
) -> Vec<PlanFinding> {
    let mut findings = Vec::new();
    walk(plan, &mut |node| {
        if let Some(f) = seq_scan_finding(node, table_rows, thresholds) {
            findings.push(f);
        }
        if let Some(f) = sort_spill_finding(node) {
            findings.push(f);
        }
        if let Some(f) = hash_spill_finding(node) {
            findings.push(f);
        }
        if let Some(f) = nested_loop_finding(node, thresholds) {
            findings.push(f);
        }
    });
    misestimate_findings(plan, thresholds, &mut findings);
    findings
}

/// Calls `f` on `node` and every node below it, parents first.
fn walk(node: &Value, f: &mut dyn FnMut(&Value)) {
    f(node);
    for child in children(node) {
        walk(child, f);
    }
}

fn children(node: &Value) -> &[Value] {
    node.get("Plans")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn text<'a>(node: &'a Value, key: &str) -> Option<&'a str> {
    node.get(key).and_then(Value::as_str)
}

fn number(node: &Value, key: &str) -> Option<f64> {
    node.get(key).and_then(Value::as_f64)
}

fn node_type(node: &Value) -> &str {
    text(node, "Node Type").unwrap_or("")
}

/// `schema.table` of a scan node (`public` when EXPLAIN was not VERBOSE).
fn relation(node: &Value) -> Option<String> {
    let table = text(node, "Relation Name")?;
    Some(format!(
        "{}.{table}",
        text(node, "Schema").unwrap_or("public")
    ))
}

/// The node's own relation, or the relations below it, comma-separated.
fn tables_of(node: &Value) -> String {
    let mut tables: Vec<String> = Vec::new();
    walk(node, &mut |n| {
        if let Some(r) = relation(n) {
            if !tables.contains(&r) {
                tables.push(r);
            }
        }
    });
    if tables.is_empty() {
        "(no table)".to_owned()
    } else {
        tables.join(", ")
    }
}

struct SeqScan {
    node: String,
    schema: String,
    table: String,
    filter: String,
    estimated_rows: f64,
}

impl SeqScan {
    fn of(node: &Value) -> Option<Self> {
        let node_type = node_type(node);
        if !matches!(node_type, "Seq Scan" | "Parallel Seq Scan") {
            return None;
        }
        Some(SeqScan {
            node: node_type.to_owned(),
            schema: text(node, "Schema").unwrap_or("public").to_owned(),
            table: text(node, "Relation Name")?.to_owned(),
            filter: text(node, "Filter")?.to_owned(),
            estimated_rows: number(node, "Plan Rows").unwrap_or(0.0),
        })
    }
}

fn seq_scan_finding(
    node: &Value,
    table_rows: &HashMap<String, f64>,
    thresholds: &PlanThresholds,
) -> Option<PlanFinding> {
    let scan = SeqScan::of(node)?;
    let table = format!("{}.{}", scan.schema, scan.table);
    let rows = *table_rows.get(&table)?;
    if rows < thresholds.large_table_rows
        || scan.estimated_rows > rows * thresholds.selective_fraction
    {
        return None;
    }
    Some(PlanFinding {
        kind: FindingKind::SeqScanSelectiveFilter,
        message: format!(
            "{} on {table} reads all ~{rows:.0} rows to keep ~{:.0} (filter {})",
            scan.node, scan.estimated_rows, scan.filter
        ),
        node: scan.node,
        table,
        detail: FindingDetail::SeqScan {
            filter_columns: filter_columns(&scan.filter),
            filter: scan.filter,
            estimated_rows: scan.estimated_rows,
            table_rows: rows,
        },
    })
}

fn sort_spill_finding(node: &Value) -> Option<PlanFinding> {
    if !node_type(node).ends_with("Sort") {
        return None;
    }
    // Parallel sorts report per worker.
    let workers = node
        .get("Workers")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let spilled: Vec<&Value> = std::iter::once(node)
        .chain(workers)
        .filter(|n| text(n, "Sort Space Type") == Some("Disk"))
        .collect();
    if spilled.is_empty() {
        return None;
    }
    let disk_kb: f64 = spilled
        .iter()
        .filter_map(|n| number(n, "Sort Space Used"))
        .sum();
    let method = spilled
        .iter()
        .find_map(|n| text(n, "Sort Method"))
        .map(str::to_owned);
    let table = tables_of(node);
    let keys = node
        .get("Sort Key")
        .and_then(Value::as_array)
        .map(|k| {
            k.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Some(PlanFinding {
        kind: FindingKind::SortSpill,
        node: node_type(node).to_owned(),
        message: format!(
            "{} by ({keys}) over {table} spilled {disk_kb:.0} kB to disk ({}): raise work_mem \
             for this query or sort fewer rows (an index in that order, a LIMIT)",
            node_type(node),
            method.as_deref().unwrap_or("external sort"),
        ),
        table,
        detail: FindingDetail::Spill {
            method,
            disk_kb: Some(disk_kb),
            batches: None,
        },
    })
}

fn hash_spill_finding(node: &Value) -> Option<PlanFinding> {
    let (label, batches, disk_kb) = match node_type(node) {
        "Hash" => {
            let batches = number(node, "Hash Batches")
                .unwrap_or(1.0)
                .max(number(node, "Original Hash Batches").unwrap_or(1.0));
            ("Hash", batches, None)
        }
        "Aggregate" if text(node, "Strategy") == Some("Hashed") => (
            "HashAggregate",
            number(node, "HashAgg Batches").unwrap_or(0.0),
            number(node, "Disk Usage").filter(|kb| *kb > 0.0),
        ),
        _ => return None,
    };
    if batches <= 1.0 && disk_kb.is_none() {
        return None;
    }
    let table = tables_of(node);
    let disk = disk_kb.map_or(String::new(), |kb| format!(", {kb:.0} kB on disk"));
    Some(PlanFinding {
        kind: FindingKind::HashSpill,
        node: label.to_owned(),
        message: format!(
            "{label} over {table} needed {batches:.0} batches{disk}: the hash table did not fit \
             in work_mem (× hash_mem_multiplier)"
        ),
        table,
        detail: FindingDetail::Spill {
            method: None,
            disk_kb,
            batches: Some(batches),
        },
    })
}

/// Rows per loop `(estimated, actual)` of a node that ran (`ANALYZE`).
fn row_counts(node: &Value) -> Option<(f64, f64)> {
    let loops = number(node, "Actual Loops")?;
    if loops <= 0.0 {
        return None; // never executed
    }
    Some((number(node, "Plan Rows")?, number(node, "Actual Rows")?))
}

fn misestimate_factor(estimated: f64, actual: f64) -> f64 {
    estimated.max(actual) / estimated.min(actual).max(1.0)
}

/// A misestimate spreads to every node above it; report only where it starts (nodes
/// with no misestimated node below). Returns whether `node`'s subtree has one.
fn misestimate_findings(
    node: &Value,
    thresholds: &PlanThresholds,
    out: &mut Vec<PlanFinding>,
) -> bool {
    let mut below = false;
    for child in children(node) {
        below |= misestimate_findings(child, thresholds, out);
    }
    let Some((estimated, actual)) = row_counts(node) else {
        return below;
    };
    let factor = misestimate_factor(estimated, actual);
    let misestimated = factor >= thresholds.misestimate_factor
        && estimated.max(actual) >= thresholds.misestimate_min_rows;
    if misestimated && !below {
        let table = tables_of(node);
        let direction = if actual > estimated { "under" } else { "over" };
        out.push(PlanFinding {
            kind: FindingKind::RowMisestimate,
            node: node_type(node).to_owned(),
            message: format!(
                "{} on {table}: planner expected {estimated:.0} rows, got {actual:.0} \
                 ({factor:.0}× {direction}estimate); check statistics (ANALYZE, \
                 CREATE STATISTICS for correlated columns)",
                node_type(node)
            ),
            table,
            detail: FindingDetail::Misestimate {
                estimated_rows: estimated,
                actual_rows: actual,
                factor,
            },
        });
    }
    below || misestimated
}

fn nested_loop_finding(node: &Value, thresholds: &PlanThresholds) -> Option<PlanFinding> {
    if node_type(node) != "Nested Loop" {
        return None;
    }
    let side = |relationship: &str| {
        children(node)
            .iter()
            .find(|c| text(c, "Parent Relationship") == Some(relationship))
    };
    let (outer, inner) = (side("Outer")?, side("Inner")?);
    let actual = row_counts(outer).is_some() && row_counts(inner).is_some();
    let (outer_rows, inner_rows_per_loop) = if actual {
        let outer_rows =
            number(outer, "Actual Rows")? * number(outer, "Actual Loops").unwrap_or(1.0);
        (outer_rows, number(inner, "Actual Rows")?)
    } else {
        (number(outer, "Plan Rows")?, number(inner, "Plan Rows")?)
    };
    let inner_rows_total = outer_rows * inner_rows_per_loop.max(1.0);
    if inner_rows_total < thresholds.nested_loop_min_rows {
        return None;
    }
    let (outer_tables, inner_tables) = (tables_of(outer), tables_of(inner));
    let numbers = if actual { "actual" } else { "estimated" };
    Some(PlanFinding {
        kind: FindingKind::NestedLoopBigInputs,
        node: "Nested Loop".to_owned(),
        message: format!(
            "Nested Loop runs its inner side ({} over {inner_tables}) once per outer row: \
             {outer_rows:.0} rows of {outer_tables} × {inner_rows_per_loop:.0} rows = \
             {inner_rows_total:.0} inner rows ({numbers}); an equality join key (hash/merge \
             join) or an index on the inner side's join column avoids it",
            node_type(inner)
        ),
        table: format!("{outer_tables}, {inner_tables}"),
        detail: FindingDetail::NestedLoop {
            outer_rows,
            inner_rows_per_loop,
            inner_rows_total,
            actual,
        },
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Plans recorded from PostgreSQL 15 (`tests/fixtures/plans/`, schema `fx`).
    fn fixture(name: &str) -> Value {
        let text = match name {
            "sort_spill" => include_str!("../../../tests/fixtures/plans/sort_spill.json"),
            "hash_spill" => include_str!("../../../tests/fixtures/plans/hash_spill.json"),
            "hashagg" => include_str!("../../../tests/fixtures/plans/hashagg.json"),
            "misestimate" => include_str!("../../../tests/fixtures/plans/misestimate.json"),
            "nested_loop" => include_str!("../../../tests/fixtures/plans/nested_loop.json"),
            "nested_loop_analyze" => {
                include_str!("../../../tests/fixtures/plans/nested_loop_analyze.json")
            }
            "index_scan" => include_str!("../../../tests/fixtures/plans/index_scan.json"),
            other => panic!("no fixture {other}"),
        };
        let document: Value = serde_json::from_str(text).expect("fixture JSON");
        document[0]["Plan"].clone()
    }

    fn findings(name: &str) -> Vec<PlanFinding> {
        plan_findings(&fixture(name), &HashMap::new(), &PlanThresholds::default())
    }

    #[test]
    fn kind_names_match_the_json() {
        for kind in [
            FindingKind::SeqScanSelectiveFilter,
            FindingKind::SortSpill,
            FindingKind::HashSpill,
            FindingKind::RowMisestimate,
            FindingKind::NestedLoopBigInputs,
        ] {
            assert_eq!(
                serde_json::to_value(kind).expect("serialize"),
                Value::from(kind.as_str())
            );
        }
    }

    #[test]
    fn sort_on_disk_is_a_spill_naming_the_sorted_table() {
        let found = findings("sort_spill");
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(f.kind, FindingKind::SortSpill);
        assert_eq!(f.node, "Sort");
        assert_eq!(f.table, "fx.orders");
        assert_eq!(
            f.detail,
            FindingDetail::Spill {
                method: Some("external merge".to_owned()),
                disk_kb: Some(2312.0),
                batches: None
            }
        );
        assert!(f.message.contains("orders.total DESC"), "{}", f.message);
    }

    #[test]
    fn hash_with_several_batches_is_a_spill_naming_the_hashed_table() {
        let found = findings("hash_spill");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, FindingKind::HashSpill);
        assert_eq!(found[0].node, "Hash");
        assert_eq!(found[0].table, "fx.customers");
        assert_eq!(
            found[0].detail,
            FindingDetail::Spill {
                method: None,
                disk_kb: None,
                batches: Some(4.0)
            }
        );
    }

    #[test]
    fn hash_aggregate_with_batches_is_a_spill() {
        let found = findings("hashagg");
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, FindingKind::HashSpill);
        assert_eq!(found[0].node, "HashAggregate");
        assert_eq!(found[0].table, "fx.orders");
        assert_eq!(
            found[0].detail,
            FindingDetail::Spill {
                method: None,
                disk_kb: Some(3464.0),
                batches: Some(21.0)
            }
        );
    }

    #[test]
    fn misestimate_is_reported_where_it_starts_not_at_every_parent() {
        let found = findings("misestimate");
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(f.kind, FindingKind::RowMisestimate);
        assert_eq!(f.node, "Seq Scan");
        assert_eq!(f.table, "fx.events");
        assert_eq!(
            f.detail,
            FindingDetail::Misestimate {
                estimated_rows: 9.0,
                actual_rows: 1000.0,
                factor: 1000.0 / 9.0
            }
        );
    }

    #[test]
    fn misestimate_factor_and_minimum_rows_are_configurable() {
        let strict = PlanThresholds {
            misestimate_factor: 200.0,
            ..Default::default()
        };
        assert!(plan_findings(&fixture("misestimate"), &HashMap::new(), &strict).is_empty());
        let big_only = PlanThresholds {
            misestimate_min_rows: 5_000.0,
            ..Default::default()
        };
        assert!(plan_findings(&fixture("misestimate"), &HashMap::new(), &big_only).is_empty());
    }

    #[test]
    fn nested_loop_over_big_inputs_from_estimates() {
        let found = findings("nested_loop");
        assert_eq!(found.len(), 1, "{found:#?}");
        let f = &found[0];
        assert_eq!(f.kind, FindingKind::NestedLoopBigInputs);
        assert_eq!(f.node, "Nested Loop");
        assert_eq!(f.table, "fx.orders, fx.bands");
        assert_eq!(
            f.detail,
            FindingDetail::NestedLoop {
                outer_rows: 100_000.0,
                inner_rows_per_loop: 1000.0,
                inner_rows_total: 100_000_000.0,
                actual: false
            }
        );
    }

    #[test]
    fn nested_loop_over_big_inputs_from_actual_rows() {
        let found = findings("nested_loop_analyze");
        let nested: Vec<_> = found
            .iter()
            .filter(|f| f.kind == FindingKind::NestedLoopBigInputs)
            .collect();
        assert_eq!(nested.len(), 1, "{found:#?}");
        assert_eq!(
            nested[0].detail,
            FindingDetail::NestedLoop {
                outer_rows: 5000.0,
                inner_rows_per_loop: 1000.0,
                inner_rows_total: 5_000_000.0,
                actual: true
            }
        );
        // Its join estimate is off by 111×: the join node itself is where that starts.
        assert!(found
            .iter()
            .any(|f| f.kind == FindingKind::RowMisestimate && f.node == "Nested Loop"));
        let higher = PlanThresholds {
            nested_loop_min_rows: 10_000_000.0,
            ..Default::default()
        };
        assert!(
            !plan_findings(&fixture("nested_loop_analyze"), &HashMap::new(), &higher)
                .iter()
                .any(|f| f.kind == FindingKind::NestedLoopBigInputs)
        );
    }

    #[test]
    fn an_index_scan_has_no_findings() {
        assert!(findings("index_scan").is_empty());
    }

    #[test]
    fn seq_scan_needs_a_large_table_and_a_selective_filter() {
        let plan = fixture("misestimate");
        assert_eq!(
            seq_scanned_tables(&plan),
            vec![("fx".to_owned(), "events".to_owned())]
        );
        let big = HashMap::from([("fx.events".to_owned(), 100_000.0)]);
        let found = plan_findings(&plan, &big, &PlanThresholds::default());
        let scan: Vec<_> = found
            .iter()
            .filter(|f| f.kind == FindingKind::SeqScanSelectiveFilter)
            .collect();
        assert_eq!(scan.len(), 1, "{found:#?}");
        match &scan[0].detail {
            FindingDetail::SeqScan { filter_columns, .. } => {
                assert_eq!(filter_columns, &["shard".to_owned(), "bucket".to_owned()]);
            }
            other => panic!("{other:?}"),
        }
        let small = HashMap::from([("fx.events".to_owned(), 500.0)]);
        assert!(!plan_findings(&plan, &small, &PlanThresholds::default())
            .iter()
            .any(|f| f.kind == FindingKind::SeqScanSelectiveFilter));
    }

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
        assert_eq!(filter_columns("(email = $1)"), vec!["email".to_owned()]);
        assert!(filter_columns("((((").is_empty());
    }
}
