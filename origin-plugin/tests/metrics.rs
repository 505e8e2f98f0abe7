#![cfg(all(
    feature = "metrics",
    feature = "profiling",
    feature = "health",
    feature = "cache-tags",
    feature = "purge"
))]
mod support;

use std::collections::BTreeMap;

use axum::routing::get;
use axum::Router;
use cachefront_origin::cache_tags::{CacheTagLayer, CacheTags};
use cachefront_origin::health::Health;
use cachefront_origin::metrics::{names, Metrics};
use cachefront_origin::profiling::{Profiler, ProfilingConfig};
use serde_json::Value;
use support::{http, TestServer, XorShift};

fn app(metrics: &Metrics) -> Router {
    let health = Health::builder().metrics(metrics).build();
    let profiler = Profiler::with_metrics(ProfilingConfig::default(), metrics);
    Router::new()
        .route(
            "/",
            get(|| async { (CacheTags::new(["home", "Home", "bad tag"]), "home") }),
        )
        .route("/products/{id}", get(|| async { "product" }))
        .merge(health.router())
        .merge(metrics.router())
        .layer(CacheTagLayer::new().metrics(metrics))
        .layer(profiler.layer())
        .layer(metrics.layer())
}

/// (route, method, status_class) → value of `cachefront_origin_http_requests_total`.
fn request_counts(json: &Value) -> BTreeMap<(String, String, String), f64> {
    let mut out = BTreeMap::new();
    let families = json["metrics"].as_array().expect("metrics array");
    let fam = families
        .iter()
        .find(|f| f["name"] == names::HTTP_REQUESTS_TOTAL)
        .expect("requests family");
    for s in fam["samples"].as_array().expect("samples") {
        let l = &s["labels"];
        let key = (
            l["route"].as_str().unwrap_or_default().to_owned(),
            l["method"].as_str().unwrap_or_default().to_owned(),
            l["status_class"].as_str().unwrap_or_default().to_owned(),
        );
        out.insert(key, s["value"].as_f64().unwrap_or_default());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_labels_stay_bounded_under_1000_random_paths() {
    let metrics = Metrics::new();
    let server = TestServer::start(app(&metrics)).await;
    let client = http();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut matched, mut unmatched, mut other_method) = (0u32, 0u32, 0u32);
    for _ in 0..1000 {
        // Leading letter: URL normalisation must not fold "." / ".." segments away.
        let segment: String = std::iter::once('z')
            .chain((0..(rng.next() % 24)).map(|_| {
                char::from(b"abcdefghijklmnopqrstuvwxyz0123456789-_.~"[(rng.next() % 40) as usize])
            }))
            .collect();
        let (path, is_matched) = match rng.next() % 3 {
            0 => (format!("/products/{segment}"), true),
            1 => (format!("/{segment}/{}", rng.next()), false),
            _ => (format!("/{segment}?q={}", rng.next()), false),
        };
        let method = if rng.next() % 10 == 0 {
            other_method += 1;
            reqwest::Method::from_bytes(b"BREW").expect("method")
        } else {
            reqwest::Method::GET
        };
        let is_get = method == reqwest::Method::GET;
        let res = client
            .request(method, server.url(&path))
            .send()
            .await
            .expect("request");
        if is_matched && is_get {
            assert_eq!(res.status(), 200, "{path}");
            matched += 1;
        } else if !is_matched {
            assert_eq!(res.status(), 404, "{path}");
            if is_get {
                unmatched += 1;
            }
        }
    }
    let json: Value = support::get(&client, server.url("/metrics.json"))
        .await
        .json()
        .await
        .expect("parse");
    let counts = request_counts(&json);
    let routes: std::collections::BTreeSet<&str> =
        counts.keys().map(|(r, _, _)| r.as_str()).collect();
    assert!(
        routes
            .iter()
            .all(|r| ["/products/{id}", "unmatched"].contains(r)),
        "unexpected route labels: {routes:?}"
    );
    let methods: std::collections::BTreeSet<&str> =
        counts.keys().map(|(_, m, _)| m.as_str()).collect();
    assert!(
        methods.iter().all(|m| ["GET", "OTHER"].contains(m)),
        "methods: {methods:?}"
    );
    assert_eq!(
        counts
            .get(&("/products/{id}".into(), "GET".into(), "2xx".into()))
            .copied(),
        Some(f64::from(matched))
    );
    assert_eq!(
        counts
            .get(&("unmatched".into(), "GET".into(), "4xx".into()))
            .copied(),
        Some(f64::from(unmatched))
    );
    let total: f64 = counts.values().sum();
    assert_eq!(total, 1000.0);
    assert!(other_method > 0);
    // However many distinct paths were sent, the exposition stays small.
    let text = metrics.render();
    let series = text
        .lines()
        .filter(|l| l.starts_with("cachefront_origin_http_"))
        .count();
    assert!(series < 100, "{series} series");
}

#[tokio::test]
async fn in_flight_gauge_returns_to_zero_and_histogram_counts_requests() {
    let metrics = Metrics::new();
    let server = TestServer::start(app(&metrics)).await;
    let client = http();
    for _ in 0..5 {
        support::get(&client, server.url("/")).await;
    }
    let text = support::get(&client, server.url("/metrics"))
        .await
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(r#"cachefront_origin_http_requests_in_flight{method="GET",route="/"} 0"#),
        "{text}"
    );
    assert!(text.contains(
        r#"cachefront_origin_http_request_duration_seconds_count{method="GET",route="/",status_class="2xx"} 5"#
    ));
    assert!(text.contains(
        r#"cachefront_origin_http_request_duration_seconds_bucket{method="GET",route="/",status_class="2xx",le="+Inf"} 5"#
    ));
    // Tags: "home" once per response (the duplicate differs only in case), "bad tag" dropped.
    assert!(
        text.contains("cachefront_origin_cache_tags_emitted_total 5"),
        "{text}"
    );
    assert!(text.contains(r#"cachefront_origin_cache_tags_dropped_total{reason="invalid_char"} 5"#));
    assert!(text.contains("process_resident_memory_bytes"));
}

#[tokio::test]
async fn metrics_endpoint_is_prometheus_text_and_uncacheable() {
    let metrics = Metrics::new();
    let server = TestServer::start(app(&metrics)).await;
    let res = support::get(&http(), server.url("/metrics")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(res.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn promtool_accepts_metrics_output() {
    let Some(promtool) = support::promtool() else {
        return;
    };
    let metrics = Metrics::new();
    let server = TestServer::start(app(&metrics)).await;
    let client = http();
    for path in [
        "/",
        "/products/1",
        "/nope",
        "/readyz",
        "/livez",
        "/",
        "/products/x",
    ] {
        support::get(&client, server.url(path)).await;
    }
    // Purge metrics too, so every family this crate exports is in the sample.
    let purge = cachefront_origin::purge::PurgeClient::with_metrics(
        cachefront_origin::purge::EdgePurge::new("http://127.0.0.1:9", "t"),
        cachefront_origin::purge::PurgeConfig {
            max_attempts: 1,
            ..Default::default()
        },
        &metrics,
    );
    purge.purge_tags(["a"]);
    purge.flush().await;
    let text = support::get(&client, server.url("/metrics"))
        .await
        .text()
        .await
        .expect("text");
    let (ok, output) = support::promtool_check_metrics(&promtool, &text);
    assert!(
        ok && output.trim().is_empty(),
        "promtool check metrics:\n{output}\n--- input ---\n{text}"
    );
    for name in [
        names::HTTP_REQUESTS_TOTAL,
        names::HTTP_REQUEST_DURATION_SECONDS,
        names::HTTP_REQUESTS_IN_FLIGHT,
        names::CACHE_TAGS_EMITTED_TOTAL,
        names::READY,
        names::PURGE_REQUESTS_TOTAL,
        names::PURGE_ITEMS_ENQUEUED_TOTAL,
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from\n{text}"
        );
    }
}
