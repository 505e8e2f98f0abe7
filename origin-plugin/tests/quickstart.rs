//! The quick start of docs/origin-plugin.md, built exactly as written (it is
//! `examples/quickstart.rs`, and the docs' block must equal that file), run as a real
//! process against a real PostgreSQL: every feature it promises is live.
#![cfg(feature = "full")]
mod support;

use std::time::{Duration, Instant};

use support::{http, spawn_example};

const EXAMPLE: &str = include_str!("../examples/quickstart.rs");
const DOCS: &str = include_str!("../../docs/origin-plugin.md");
/// The line before the quick start's code block in the docs.
const MARKER: &str = "<!-- quickstart: origin-plugin/examples/quickstart.rs -->";

#[test]
fn docs_quick_start_is_the_example_file_verbatim() {
    let after = DOCS
        .split_once(MARKER)
        .map(|(_, rest)| rest)
        .expect("docs/origin-plugin.md has the quick-start marker");
    let block = after
        .trim_start()
        .strip_prefix("```rust\n")
        .and_then(|b| b.split_once("\n```\n"))
        .map(|(code, _)| code)
        .expect("a ```rust block follows the marker");
    assert_eq!(
        block,
        EXAMPLE.trim_end(),
        "docs/origin-plugin.md's quick start differs from examples/quickstart.rs: copy the file into the docs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_app_has_every_feature_live() {
    let Some(database_url) = support::database_url() else {
        return;
    };
    let (child, addrs) = spawn_example("quickstart", &[("DATABASE_URL", &database_url)]);
    let base = format!("http://{}", addrs.public);
    let admin = format!("http://{}", addrs.admin);
    let client = http();

    // Health: ready once PostgreSQL answers (it does at start: the pool connects eagerly).
    let res = support::get(&client, format!("{base}/readyz")).await;
    assert_eq!(res.status(), 200);

    // A product: db entry in Server-Timing (capture inside the profiler), tag, request id.
    let res = client
        .get(format!("{base}/products/7"))
        .header("x-request-id", "quickstart-test-1")
        .send()
        .await
        .expect("product");
    assert_eq!(res.status(), 200);
    let timing = res.headers()["server-timing"].to_str().expect("ascii");
    assert!(
        timing.contains("db;dur=") && timing.contains("desc=\"1 query\""),
        "Server-Timing has the captured query: {timing}"
    );
    assert_eq!(res.headers()["cache-tag"], "product:7");
    assert_eq!(res.headers()["x-request-id"], "quickstart-test-1");

    // Errors: axum's own rejection and the fallback 404 are never storable.
    for (path, status) in [("/products/abc", 400), ("/no/such/page", 404)] {
        let res = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect(path);
        assert_eq!(res.status(), status, "{path}");
        assert_eq!(res.headers()["cache-control"], "no-store", "{path}");
        assert!(res.headers().contains_key("x-request-id"), "{path}");
    }

    // N+1: five single-row queries in one request are reported in the log.
    let res = support::get(&client, format!("{base}/products/1/related")).await;
    assert_eq!(res.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut off_warning = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = child
            .lines
            .recv_timeout(left)
            .expect("the N+1 warning is logged on stdout");
        off_warning |= line.contains("query capture is OFF");
        if line.contains("N+1 query") && line.contains("/products/{id}/related") {
            break;
        }
    }
    assert!(!off_warning, "the quick start's capture is on");

    // Metrics: requests by route, captured queries, the detection, capture switched on;
    // probes are not counted as requests.
    for _ in 0..3 {
        support::get(&client, format!("{base}/livez")).await;
    }
    let text = support::get(&client, format!("{admin}/metrics"))
        .await
        .text()
        .await
        .expect("text");
    for expected in [
        "cachefront_origin_http_requests_total{method=\"GET\",route=\"/products/{id}\",status_class=\"2xx\"} 1",
        "cachefront_origin_db_queries_total{route=\"/products/{id}\"} 1",
        "cachefront_origin_db_queries_total{route=\"/products/{id}/related\"} 5",
        "cachefront_origin_db_n_plus_one_total{route=\"/products/{id}/related\"} 1",
        "cachefront_origin_db_capture_active 1",
    ] {
        assert!(text.contains(expected), "/metrics lacks {expected}:\n{text}");
    }
    for probe in ["/livez", "/readyz", "/metrics"] {
        assert!(
            !text.contains(&format!("route=\"{probe}\"")),
            "{probe} is excluded from request metrics:\n{text}"
        );
    }

    // The admin readiness report carries the capture's own check, passing.
    let report: serde_json::Value = support::get(&client, format!("{admin}/readyz"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(report["checks"]["db_capture"]["status"], "ok", "{report}");
    assert_eq!(
        report["checks"]["db_capture"]["severity"], "warn",
        "{report}"
    );
}
