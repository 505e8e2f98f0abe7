//! The pure core of `cachefront edge-exporter` (the command's I/O is in
//! `commands/edge_exporter.rs`): the bridge from Workers Analytics Engine (where
//! the worker writes one data point per request, `src/telemetry/analytics.rs`) to
//! Prometheus. It builds the Analytics Engine SQL API queries
//! (`POST {api}/accounts/{account}/analytics_engine/sql`, bearer token, SQL
//! body, `FORMAT JSON` answer) for consecutive time windows, parses the answers
//! and adds each window's sums to counters rendered for `/metrics`.
//!
//! Windows end `lag` seconds in the past (Analytics Engine ingests with a
//! delay) and follow each other without gaps or overlap: a failed query leaves
//! the window to the next poll, so counters neither skip nor double-count.
//! Counts honour sampling (`SUM(_sample_interval)`, as Cloudflare documents).
//!
//! The data point layout this module reads (keep in step with
//! `src/telemetry/analytics.rs`): `blob1` cache outcome, `blob2` tier, `blob3` origin,
//! `blob4` status class, `blob6` path, `double2` worker ms, `double3` origin ms.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The purge API's path, as `blob6` holds it.
pub const PURGE_PATH: &str = cachefront::purge::api::PURGE_PATH;
/// Cache outcomes the worker writes (`blob1`); anything else is `other`.
pub const CACHE_OUTCOMES: &[&str] = &[
    "hit",
    "miss",
    "stale",
    "revalidated",
    "expired",
    "bypass",
    "asset",
    "error",
];
/// Tiers the worker writes (`blob2`).
pub const TIERS: &[&str] = &["memory", "edge", "assets", "origin"];
pub const STATUS_CLASSES: &[&str] = &["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Distinct origin label values kept; more become `other` (bounded series).
pub const MAX_ORIGINS: usize = 32;
const MAX_ORIGIN_LABEL_BYTES: usize = 64;

/// The exporter's own metric names (also read by docs/ops/grafana/validate.py
/// from a real scrape).
pub mod names {
    pub const REQUESTS: &str = "cachefront_edge_requests_total";
    pub const WORKER_SECONDS: &str = "cachefront_edge_worker_seconds_total";
    pub const ORIGIN_REQUESTS: &str = "cachefront_edge_origin_requests_total";
    pub const ORIGIN_WAIT_SECONDS: &str = "cachefront_edge_origin_wait_seconds_total";
    pub const PURGE_REQUESTS: &str = "cachefront_edge_purge_requests_total";
    pub const UP: &str = "cachefront_edge_exporter_up";
    pub const QUERIES: &str = "cachefront_edge_exporter_queries_total";
    pub const LAST_SUCCESS: &str = "cachefront_edge_exporter_last_success_timestamp_seconds";
    pub const WINDOW_END: &str = "cachefront_edge_exporter_window_end_timestamp_seconds";
}

/// A dataset name goes into SQL: only plain identifiers are accepted.
pub fn check_dataset(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        Ok(())
    } else {
        Err(format!(
            "dataset {name:?} must be a plain identifier (letters, digits, _; at most 64)"
        ))
    }
}

/// A Cloudflare account ID goes into the URL path: 32 hexadecimal characters.
pub fn check_account_id(id: &str) -> Result<(), String> {
    if id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!(
            "account ID {id:?} must be the 32 hexadecimal characters shown in the Cloudflare dashboard"
        ))
    }
}

/// The SQL API's URL under an API base such as `https://api.cloudflare.com/client/v4`.
pub fn sql_url(api_base: &str, account_id: &str) -> String {
    format!(
        "{}/accounts/{account_id}/analytics_engine/sql",
        api_base.trim_end_matches('/')
    )
}

/// A half-open time window `[start_s, end_s)` in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_s: u64,
    pub end_s: u64,
}

/// The next window after `cursor_s`: it ends `lag_s` before `now_s`, and
/// spans at most `max_span_s` (catching up after an outage takes several
/// polls). `None` when there is nothing new yet.
pub fn next_window(cursor_s: u64, now_s: u64, lag_s: u64, max_span_s: u64) -> Option<Window> {
    let settled = now_s.saturating_sub(lag_s);
    let end_s = settled.min(cursor_s.saturating_add(max_span_s.max(1)));
    (end_s > cursor_s).then_some(Window {
        start_s: cursor_s,
        end_s,
    })
}

/// One query per window: every sum the metrics need, grouped by their labels.
pub fn window_sql(dataset: &str, window: Window) -> String {
    format!(
        "SELECT blob1 AS cache, blob2 AS tier, blob3 AS origin, blob4 AS status_class, \
         if(blob6 = '{PURGE_PATH}', 1, 0) AS purge, \
         SUM(_sample_interval) AS requests, \
         SUM(_sample_interval * double2) AS worker_ms, \
         SUM(_sample_interval * double3) AS origin_ms \
         FROM {dataset} \
         WHERE timestamp >= toDateTime({start}) AND timestamp < toDateTime({end}) \
         GROUP BY cache, tier, origin, status_class, purge \
         FORMAT JSON",
        start = window.start_s,
        end = window.end_s,
    )
}

/// One row of the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cache: String,
    pub tier: String,
    pub origin: String,
    pub status_class: String,
    pub purge: bool,
    pub requests: f64,
    pub worker_ms: f64,
    pub origin_ms: f64,
}

/// A number that may come as a JSON number or a string (ClickHouse quotes
/// 64-bit integers in JSON).
fn number(row: &serde_json::Value, column: &str) -> Result<f64, String> {
    let value = row
        .get(column)
        .ok_or_else(|| format!("row has no column {column:?}"))?;
    let parsed = match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    parsed
        .filter(|n| n.is_finite() && *n >= 0.0)
        .ok_or_else(|| format!("column {column:?} is not a non-negative number: {value}"))
}

fn text(row: &serde_json::Value, column: &str) -> Result<String, String> {
    match row.get(column) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(serde_json::Value::Null) => Ok(String::new()),
        Some(other) => Err(format!("column {column:?} is not a string: {other}")),
        None => Err(format!("row has no column {column:?}")),
    }
}

/// Parses a `FORMAT JSON` answer: `{"meta":[..],"data":[{..}],"rows":n}`.
pub fn parse_answer(body: &str) -> Result<Vec<Row>, String> {
    let json: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let data = json
        .get("data")
        .and_then(serde_json::Value::as_array)
        .ok_or("the answer has no \"data\" array")?;
    data.iter()
        .map(|row| {
            Ok(Row {
                cache: text(row, "cache")?,
                tier: text(row, "tier")?,
                origin: text(row, "origin")?,
                status_class: text(row, "status_class")?,
                purge: number(row, "purge")? >= 1.0,
                requests: number(row, "requests")?,
                worker_ms: number(row, "worker_ms")?,
                origin_ms: number(row, "origin_ms")?,
            })
        })
        .collect()
}

fn known_or_other(value: &str, known: &[&str]) -> String {
    if known.contains(&value) {
        value.to_owned()
    } else {
        "other".to_owned()
    }
}

/// The counters, summed over every window read so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EdgeCounters {
    /// (cache, tier, status_class) → requests
    pub requests: BTreeMap<(String, String, String), f64>,
    /// tier → seconds spent in the worker
    pub worker_seconds: BTreeMap<String, f64>,
    /// (origin, status_class) → requests answered with an origin's help
    pub origin_requests: BTreeMap<(String, String), f64>,
    /// origin → seconds spent waiting for it
    pub origin_wait_seconds: BTreeMap<String, f64>,
    /// status_class → purge API requests
    pub purges: BTreeMap<String, f64>,
}

impl EdgeCounters {
    /// The label an origin name gets: bounded in length and in number.
    fn origin_label(&self, origin: &str) -> String {
        let cleaned: String = origin
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_ORIGIN_LABEL_BYTES)
            .collect();
        let known = self.origin_wait_seconds.contains_key(&cleaned);
        if known || self.origin_wait_seconds.len() < MAX_ORIGINS {
            cleaned
        } else {
            "other".to_owned()
        }
    }

    /// Adds one window's rows.
    pub fn add(&mut self, rows: &[Row]) {
        for row in rows {
            let cache = known_or_other(&row.cache, CACHE_OUTCOMES);
            let tier = known_or_other(&row.tier, TIERS);
            let class = known_or_other(&row.status_class, STATUS_CLASSES);
            *self
                .requests
                .entry((cache, tier.clone(), class.clone()))
                .or_default() += row.requests;
            *self.worker_seconds.entry(tier).or_default() += row.worker_ms / 1000.0;
            if !row.origin.is_empty() {
                let origin = self.origin_label(&row.origin);
                *self
                    .origin_requests
                    .entry((origin.clone(), class.clone()))
                    .or_default() += row.requests;
                *self.origin_wait_seconds.entry(origin).or_default() += row.origin_ms / 1000.0;
            }
            if row.purge {
                *self.purges.entry(class).or_default() += row.requests;
            }
        }
    }
}

/// How the exporter's queries have gone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExporterStatus {
    pub last_ok: bool,
    pub queries_ok: u64,
    pub queries_failed: u64,
    pub last_success_s: Option<u64>,
    /// Data is complete up to here (the cursor).
    pub window_end_s: u64,
    pub last_error: Option<String>,
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    let labels: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
    }
}

/// Prometheus text exposition (format 0.0.4).
pub fn render(counters: &EdgeCounters, status: &ExporterStatus) -> String {
    let mut out = String::new();
    family(
        &mut out,
        names::REQUESTS,
        "counter",
        "Requests served by the edge worker, from Workers Analytics Engine (sampling-corrected).",
    );
    for ((cache, tier, class), value) in &counters.requests {
        sample(
            &mut out,
            names::REQUESTS,
            &[("cache", cache), ("tier", tier), ("status_class", class)],
            *value,
        );
    }
    family(
        &mut out,
        names::WORKER_SECONDS,
        "counter",
        "Time spent in the edge worker, by the tier that answered.",
    );
    for (tier, value) in &counters.worker_seconds {
        sample(&mut out, names::WORKER_SECONDS, &[("tier", tier)], *value);
    }
    family(
        &mut out,
        names::ORIGIN_REQUESTS,
        "counter",
        "Edge requests that asked an origin, by origin and status class of the answer.",
    );
    for ((origin, class), value) in &counters.origin_requests {
        sample(
            &mut out,
            names::ORIGIN_REQUESTS,
            &[("origin", origin), ("status_class", class)],
            *value,
        );
    }
    family(
        &mut out,
        names::ORIGIN_WAIT_SECONDS,
        "counter",
        "Time the edge spent waiting for each origin.",
    );
    for (origin, value) in &counters.origin_wait_seconds {
        sample(
            &mut out,
            names::ORIGIN_WAIT_SECONDS,
            &[("origin", origin)],
            *value,
        );
    }
    family(
        &mut out,
        names::PURGE_REQUESTS,
        "counter",
        "Requests to the edge purge API, by status class.",
    );
    for (class, value) in &counters.purges {
        sample(
            &mut out,
            names::PURGE_REQUESTS,
            &[("status_class", class)],
            *value,
        );
    }
    family(
        &mut out,
        names::UP,
        "gauge",
        "1 when the last Analytics Engine query succeeded.",
    );
    sample(
        &mut out,
        names::UP,
        &[],
        if status.last_ok { 1.0 } else { 0.0 },
    );
    family(
        &mut out,
        names::QUERIES,
        "counter",
        "Analytics Engine SQL queries, by result.",
    );
    sample(
        &mut out,
        names::QUERIES,
        &[("result", "ok")],
        status.queries_ok as f64,
    );
    sample(
        &mut out,
        names::QUERIES,
        &[("result", "error")],
        status.queries_failed as f64,
    );
    family(
        &mut out,
        names::LAST_SUCCESS,
        "gauge",
        "Unix time of the last successful query (0 = none yet).",
    );
    sample(
        &mut out,
        names::LAST_SUCCESS,
        &[],
        status.last_success_s.unwrap_or(0) as f64,
    );
    family(
        &mut out,
        names::WINDOW_END,
        "gauge",
        "The edge counters include every data point before this Unix time.",
    );
    sample(&mut out, names::WINDOW_END, &[], status.window_end_s as f64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cache: &str, tier: &str, origin: &str, class: &str, requests: f64) -> Row {
        Row {
            cache: cache.into(),
            tier: tier.into(),
            origin: origin.into(),
            status_class: class.into(),
            purge: false,
            requests,
            worker_ms: requests * 2.0,
            origin_ms: if origin.is_empty() {
                0.0
            } else {
                requests * 40.0
            },
        }
    }

    #[test]
    fn windows_follow_each_other_end_lag_seconds_ago_and_cap_their_span() {
        assert_eq!(
            next_window(1_000, 1_200, 60, 3_600),
            Some(Window {
                start_s: 1_000,
                end_s: 1_140
            })
        );
        assert_eq!(
            next_window(1_140, 1_150, 60, 3_600),
            None,
            "nothing settled yet"
        );
        assert_eq!(
            next_window(0, 100_000, 60, 3_600),
            Some(Window {
                start_s: 0,
                end_s: 3_600
            }),
            "catching up goes one span at a time"
        );
    }

    #[test]
    fn the_query_reads_the_columns_the_worker_writes_and_corrects_for_sampling() {
        let sql = window_sql(
            "cachefront",
            Window {
                start_s: 1_700_000_000,
                end_s: 1_700_000_060,
            },
        );
        for part in [
            "blob1 AS cache",
            "blob2 AS tier",
            "blob3 AS origin",
            "blob4 AS status_class",
            "if(blob6 = '/__cachefront/purge', 1, 0) AS purge",
            "SUM(_sample_interval) AS requests",
            "SUM(_sample_interval * double2) AS worker_ms",
            "SUM(_sample_interval * double3) AS origin_ms",
            "FROM cachefront",
            "timestamp >= toDateTime(1700000000) AND timestamp < toDateTime(1700000060)",
            "FORMAT JSON",
        ] {
            assert!(sql.contains(part), "{part} missing from {sql}");
        }
    }

    #[test]
    fn the_query_matches_the_data_point_layout_of_the_worker() {
        // The worker's own data point for a request: the columns the query
        // reads must hold what the metrics say they hold.
        let log = cachefront::telemetry::request_log::RequestLog {
            method: "GET".into(),
            path: PURGE_PATH.into(),
            status: 502,
            cache: "error",
            cache_status: String::new(),
            tier: "origin",
            origin: Some("eu".into()),
            origin_ms: Some(40),
            edge_ms: 43,
            warnings: vec![],
            purge: None,
            rule: None,
        };
        let point = cachefront::telemetry::analytics::data_point("shop.example", &log);
        assert_eq!(point.blobs[0], "error", "blob1 = cache");
        assert_eq!(point.blobs[1], "origin", "blob2 = tier");
        assert_eq!(point.blobs[2], "eu", "blob3 = origin");
        assert_eq!(point.blobs[3], "5xx", "blob4 = status_class");
        assert_eq!(point.blobs[5], PURGE_PATH, "blob6 = path");
        assert_eq!(point.doubles[1], 43.0, "double2 = worker ms");
        assert_eq!(point.doubles[2], 40.0, "double3 = origin ms");
    }

    #[test]
    fn answers_in_the_documented_json_format_are_parsed_with_quoted_or_plain_numbers() {
        let body = r#"{"meta":[{"name":"cache","type":"String"},{"name":"requests","type":"UInt64"}],
            "data":[{"cache":"hit","tier":"edge","origin":"","status_class":"2xx","purge":0,"requests":"12","worker_ms":24.5,"origin_ms":0},
                    {"cache":"bypass","tier":"origin","origin":"eu","status_class":"2xx","purge":"1","requests":3,"worker_ms":"9","origin_ms":"120"}],
            "rows":2}"#;
        let rows = parse_answer(body).expect("parsed");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].requests, 12.0);
        assert!(rows[1].purge);
        assert_eq!(rows[1].origin_ms, 120.0);
        assert!(parse_answer(r#"{"errors":[{"message":"bad"}]}"#).is_err());
        assert!(parse_answer(r#"{"data":[{"cache":"hit"}]}"#).is_err());
        assert!(parse_answer(r#"{"data":[{"cache":"hit","tier":"edge","origin":"","status_class":"2xx","purge":0,"requests":-1,"worker_ms":0,"origin_ms":0}]}"#).is_err());
    }

    #[test]
    fn counters_add_up_over_windows_and_keep_labels_bounded() {
        let mut counters = EdgeCounters::default();
        counters.add(&[
            row("hit", "memory", "", "2xx", 10.0),
            row("miss", "origin", "eu", "2xx", 2.0),
        ]);
        counters.add(&[
            row("hit", "memory", "", "2xx", 5.0),
            row("weird", "nowhere", "eu", "9xx", 1.0),
        ]);
        assert_eq!(
            counters.requests[&("hit".into(), "memory".into(), "2xx".into())],
            15.0
        );
        assert_eq!(
            counters.requests[&("other".into(), "other".into(), "other".into())],
            1.0
        );
        assert_eq!(counters.origin_requests[&("eu".into(), "2xx".into())], 2.0);
        assert_eq!(counters.origin_wait_seconds["eu"], 0.12);

        let many: Vec<Row> = (0..MAX_ORIGINS + 10)
            .map(|i| row("miss", "origin", &format!("o{i}"), "2xx", 1.0))
            .collect();
        counters.add(&many);
        assert_eq!(
            counters.origin_wait_seconds.len(),
            MAX_ORIGINS + 1,
            "the rest is `other`"
        );
        assert!(counters.origin_wait_seconds.contains_key("other"));
    }

    #[test]
    fn the_exposition_names_every_family_and_escapes_label_values() {
        let mut counters = EdgeCounters::default();
        counters.add(&[row("miss", "origin", "a\"b", "2xx", 1.0)]);
        let text = render(
            &counters,
            &ExporterStatus {
                last_ok: true,
                queries_ok: 3,
                last_success_s: Some(1_700_000_000),
                window_end_s: 1_699_999_940,
                ..ExporterStatus::default()
            },
        );
        assert!(text.contains("# TYPE cachefront_edge_requests_total counter"));
        assert!(text.contains(
            "cachefront_edge_requests_total{cache=\"miss\",tier=\"origin\",status_class=\"2xx\"} 1"
        ));
        assert!(text.contains(
            "cachefront_edge_origin_requests_total{origin=\"a\\\"b\",status_class=\"2xx\"} 1"
        ));
        assert!(text.contains("cachefront_edge_exporter_up 1"));
        assert!(text.contains("cachefront_edge_exporter_queries_total{result=\"ok\"} 3"));
        assert!(text.contains("cachefront_edge_exporter_window_end_timestamp_seconds 1699999940"));
    }

    #[test]
    fn only_plain_dataset_names_and_account_ids_are_accepted() {
        assert!(check_dataset("cachefront").is_ok());
        assert!(check_dataset("x; DROP TABLE y").is_err());
        assert!(check_dataset("1abc").is_err());
        assert!(check_account_id("0123456789abcdef0123456789abcdef").is_ok());
        assert!(check_account_id("../../zones").is_err());
        assert_eq!(
            sql_url("https://api.cloudflare.com/client/v4/", "0123456789abcdef0123456789abcdef"),
            "https://api.cloudflare.com/client/v4/accounts/0123456789abcdef0123456789abcdef/analytics_engine/sql"
        );
    }
}
