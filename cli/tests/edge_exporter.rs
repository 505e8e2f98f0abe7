//! `cachefront edge-exporter --once` against a loopback stand-in for the
//! Workers Analytics Engine SQL API: the request must be what Cloudflare
//! documents (POST to /accounts/{id}/analytics_engine/sql, bearer token, SQL
//! body), and the documented `FORMAT JSON` answer must become the metrics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::thread;

const ACCOUNT: &str = "0123456789abcdef0123456789abcdef";
const TOKEN: &str = "analytics-read-token";

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    body: String,
}

fn stand_in(status: u16, answer: &'static str) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let base = format!("http://{}/client/v4", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&seen);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let Ok(clone) = stream.try_clone() else { break };
            let mut reader = BufReader::new(clone);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_owned();
            let path = parts.next().unwrap_or_default().to_owned();
            let (mut length, mut authorization) = (0usize, None);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.trim_end().split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    if name.eq_ignore_ascii_case("authorization") {
                        authorization = Some(value.trim().to_owned());
                    }
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            recorded.lock().expect("lock").push(Seen {
                method,
                path,
                authorization,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (base, seen)
}

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
    let (base, seen) = stand_in(200, ANSWER);
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
        request.authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    let sql = &request.body;
    assert!(
        sql.starts_with(
            "SELECT blob1 AS cache, blob2 AS tier, blob3 AS origin, blob4 AS status_class"
        ),
        "{sql}"
    );
    assert!(sql.contains("SUM(_sample_interval) AS requests"), "{sql}");
    assert!(
        sql.contains("FROM cachefront WHERE timestamp >= toDateTime("),
        "{sql}"
    );
    assert!(sql.ends_with("FORMAT JSON"), "{sql}");
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
    let (base, _seen) = stand_in(
        401,
        r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}"#,
    );
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
