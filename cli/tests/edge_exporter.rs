//! `cachefront edge-exporter --once` against a loopback stand-in for the
//! Workers Analytics Engine SQL API: the request must be what Cloudflare
//! documents (POST to /accounts/{id}/analytics_engine/sql, bearer token, SQL
//! body), and the documented `FORMAT JSON` answer must become the metrics.

use std::process::{Command, Output};

mod common;
use common::{stand_in, StandIn};
#[path = "common/ae_sql.rs"]
mod ae_sql;

const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
const TOKEN: &str = "analytics-read-token";

fn exporter(base: &str, token: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachefront"))
        .args([
            "edge-exporter",
            "--once",
            "--account-id",
            ACCOUNT,
            "--api-base",
            base,
            "--lag",
            "0",
            "--backfill",
            "60",
        ])
        .env("CF_API_TOKEN", token)
        .env_remove("CACHEFRONT_CF_API_BASE")
        .output()
        .expect("run cachefront")
}

const ANSWER: &str = r#"{"meta":[{"name":"cache","type":"String"},{"name":"tier","type":"String"},{"name":"origin","type":"String"},{"name":"status_class","type":"String"},{"name":"purge","type":"UInt8"},{"name":"requests","type":"UInt64"},{"name":"worker_ms","type":"Float64"},{"name":"origin_ms","type":"Float64"}],
"data":[{"cache":"hit","tier":"memory","origin":"","status_class":"2xx","purge":0,"requests":"90","worker_ms":90,"origin_ms":0},
{"cache":"miss","tier":"origin","origin":"primary","status_class":"2xx","purge":0,"requests":10,"worker_ms":500,"origin_ms":"450"},
{"cache":"bypass","tier":"origin","origin":"","status_class":"2xx","purge":1,"requests":2,"worker_ms":4,"origin_ms":0}],
"rows":3}"#;

#[test]
fn one_documented_sql_request_becomes_prometheus_counters() {
    let StandIn { base, seen } = stand_in(vec![(200, Vec::new(), ANSWER.to_owned())]);
    let base = format!("{base}/client/v4");
    let output = exporter(&base, TOKEN);
    assert!(output.status.success(), "{output:?}");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        format!("/client/v4/accounts/{ACCOUNT}/analytics_engine/sql")
    );
    assert_eq!(
        request.header("authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
    let sql = &request.body;
    // Judged by the documented grammar, not compared with the exporter's text.
    assert_eq!(ae_sql::check(sql, "cachefront"), Ok(()), "{sql}");
    assert!(
        sql.ends_with("FORMAT JSON"),
        "the answer is read as JSON: {sql}"
    );
    // The window is one backfill long and ends now (lag 0).
    let bounds: Vec<u64> = sql
        .match_indices("toDateTime(")
        .filter_map(|(at, _)| {
            let rest = &sql[at + "toDateTime(".len()..];
            rest[..rest.find(')')?].parse().ok()
        })
        .collect();
    assert_eq!(bounds.len(), 2);
    assert_eq!(bounds[1] - bounds[0], 60);

    let metrics = String::from_utf8_lossy(&output.stdout);
    for line in [
        r#"cachefront_edge_requests_total{cache="hit",tier="memory",status_class="2xx"} 90"#,
        r#"cachefront_edge_requests_total{cache="miss",tier="origin",status_class="2xx"} 10"#,
        r#"cachefront_edge_origin_requests_total{origin="primary",status_class="2xx"} 10"#,
        r#"cachefront_edge_origin_wait_seconds_total{origin="primary"} 0.45"#,
        r#"cachefront_edge_purge_requests_total{status_class="2xx"} 2"#,
        "cachefront_edge_exporter_up 1",
        r#"cachefront_edge_exporter_queries_total{result="ok"} 1"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing in:\n{metrics}"
        );
    }
}

#[test]
fn a_refused_query_reports_the_exporter_down_and_exits_4() {
    let StandIn { base, .. } = stand_in(vec![(
        401,
        Vec::new(),
        r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}"#
            .to_owned(),
    )]);
    let base = format!("{base}/client/v4");
    let output = exporter(&base, "wrong");
    assert_eq!(output.status.code(), Some(4));
    let metrics = String::from_utf8_lossy(&output.stdout);
    assert!(
        metrics.contains("cachefront_edge_exporter_up 0"),
        "{metrics}"
    );
    assert!(metrics.contains(r#"cachefront_edge_exporter_queries_total{result="error"} 1"#));
    assert!(String::from_utf8_lossy(&output.stderr).contains("HTTP 401"));
}

#[test]
fn an_account_id_that_is_not_one_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_cachefront"))
        .args(["edge-exporter", "--once", "--account-id", "../zones"])
        .env("CF_API_TOKEN", TOKEN)
        .output()
        .expect("run cachefront");
    assert_eq!(output.status.code(), Some(2));
}
