//! Method-level profiling: spans a handler opens (`#[instrument]`, `info_span!`) and
//! `Timer` blocks reach the request's `Server-Timing`, the slowest-requests report (as a
//! tree), the slow-request log line and a histogram. Each test installs its subscriber
//! for its own thread and drives the app on a current-thread runtime, so spans of one
//! test never land in another's.
#![cfg(all(feature = "profiling", feature = "metrics"))]

mod support;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use cachefront_origin::admin::BearerToken;
use cachefront_origin::metrics::{Metrics, MetricsConfig};
use cachefront_origin::profiling::{Profiler, ProfilingConfig, SpanProfileLayer, Timer};
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use tracing::instrument;
use tracing_subscriber::prelude::*;

use support::LogLines;

const TOKEN: &str = "spans-test-token-0123456789abcdef0123";

#[instrument]
async fn query_rows(n: u32) -> u32 {
    tokio::task::yield_now().await;
    n * 2
}

#[instrument]
async fn load_rows() -> u32 {
    query_rows(3).await + query_rows(4).await
}

#[instrument(skip_all)]
fn render(rows: u32) -> String {
    format!("<p>{rows}</p>")
}

fn app(profiler: &Profiler, metrics: &Metrics) -> Router {
    let m = metrics.clone();
    Router::new()
        .route(
            "/report",
            get(move || {
                let m = m.clone();
                async move {
                    let rows = load_rows().await;
                    let html = render(rows);
                    Timer::time(&m, "format_totals", || html.len());
                    html
                }
            }),
        )
        .route(
            "/many",
            get(|| async {
                for name in ["a1", "a2", "a3", "a4", "a5", "a6", "a7", "a8"] {
                    // Dynamic names are not possible with tracing; one span per callsite.
                    match name {
                        "a1" => drop(tracing::info_span!("step_1").entered()),
                        "a2" => drop(tracing::info_span!("step_2").entered()),
                        "a3" => drop(tracing::info_span!("step_3").entered()),
                        "a4" => drop(tracing::info_span!("step_4").entered()),
                        "a5" => drop(tracing::info_span!("step_5").entered()),
                        "a6" => drop(tracing::info_span!("step_6").entered()),
                        "a7" => drop(tracing::info_span!("step_7").entered()),
                        _ => drop(tracing::info_span!("step_8").entered()),
                    }
                }
                "ok"
            }),
        )
        .layer(profiler.layer())
}

fn profiler(metrics: &Metrics, config: ProfilingConfig) -> Profiler {
    Profiler::with_metrics(
        ProfilingConfig {
            debug_token: Some(BearerToken::new(TOKEN).expect("token")),
            ..config
        },
        metrics,
    )
}

fn metrics() -> Metrics {
    Metrics::with_config(MetricsConfig {
        process_metrics: false,
        ..Default::default()
    })
}

/// Runs `f` on a current-thread runtime under a subscriber with the span layer and a
/// log capture, for this thread only.
fn with_spans<T>(f: impl std::future::Future<Output = T>) -> (T, LogLines) {
    let logs = LogLines::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::registry()
        .with(SpanProfileLayer::new())
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || sink.clone())
                .with_filter(tracing_subscriber::filter::LevelFilter::WARN),
        );
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    (rt.block_on(f), logs)
}

async fn get_path(app: &Router, path: &str) -> http::Response<Body> {
    let req = Request::get(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("request");
    app.clone().oneshot(req).await.expect("infallible")
}

async fn json(res: http::Response<Body>) -> serde_json::Value {
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("json")
}

fn server_timing_names(res: &http::Response<Body>) -> Vec<String> {
    res.headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(", ")
        .filter(|e| !e.is_empty())
        .map(|e| e.split(';').next().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn handler_spans_form_a_tree_in_the_report_and_top_level_ones_reach_server_timing() {
    let m = metrics();
    let p = profiler(&m, ProfilingConfig::default());
    let app = app(&p, &m);
    let admin = p.router::<()>();
    let ((timing, header, report), _) = with_spans(async {
        let res = get_path(&app, "/report").await;
        let header = res
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let timing = server_timing_names(&res);
        let report = json(get_path(&admin, "/debug/requests?format=json").await).await;
        (timing, header, report)
    });
    // Top-level spans only: query_rows is nested in load_rows.
    assert_eq!(
        timing,
        ["app", "load_rows", "render", "format_totals"],
        "{header}"
    );
    let spans = &report["slowest"][0]["spans"];
    let tree: Vec<(String, u64)> = spans
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_owned(),
                s["depth"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    let expected = [
        ("load_rows", 0),
        ("query_rows", 1),
        ("query_rows", 1),
        ("render", 0),
        ("format_totals", 0),
    ]
    .map(|(n, d)| (n.to_owned(), d));
    assert_eq!(tree, expected, "{spans}");
    // A child closes inside its parent: its duration cannot exceed the parent's.
    let d = |i: usize| spans[i]["duration_ms"].as_f64().expect("duration");
    assert!(d(1) <= d(0) && d(2) <= d(0), "{spans}");
    // The Timer's histogram got the block.
    assert!(
        m.render()
            .contains("cachefront_origin_block_duration_seconds_count{block=\"format_totals\"} 1"),
        "{}",
        m.render()
    );
}

#[test]
fn server_timing_and_the_kept_tree_are_bounded() {
    let m = metrics();
    let p = profiler(
        &m,
        ProfilingConfig {
            server_timing_spans: 3,
            max_spans: 5,
            ..Default::default()
        },
    );
    let app = app(&p, &m);
    let admin = p.router::<()>();
    let ((timing, report), _) = with_spans(async {
        let res = get_path(&app, "/many").await;
        let timing = server_timing_names(&res);
        (
            timing,
            json(get_path(&admin, "/debug/requests?format=json").await).await,
        )
    });
    assert_eq!(timing, ["app", "step_1", "step_2", "step_3"]);
    let sample = &report["slowest"][0];
    assert_eq!(
        sample["spans"].as_array().map(Vec::len),
        Some(5),
        "{sample}"
    );
    assert_eq!(sample["spans_dropped"], 3, "{sample}");
}

#[test]
fn unsampled_requests_collect_no_spans() {
    let m = metrics();
    let p = profiler(
        &m,
        ProfilingConfig {
            sample_rate: 0.0,
            slow_threshold: std::time::Duration::ZERO,
            ..Default::default()
        },
    );
    let app = app(&p, &m);
    let (timing, logs) =
        with_spans(async { server_timing_names(&get_path(&app, "/report").await) });
    assert!(timing.is_empty(), "{timing:?}");
    // Slow requests are still logged, without a tree.
    let text = logs.text();
    assert!(text.contains("slow request"), "{text}");
    assert!(!text.contains("load_rows"), "{text}");
}

#[test]
fn the_slow_request_log_carries_the_span_tree() {
    let m = metrics();
    let p = profiler(
        &m,
        ProfilingConfig {
            slow_threshold: std::time::Duration::ZERO,
            ..Default::default()
        },
    );
    let app = app(&p, &m);
    let (_, logs) = with_spans(async { get_path(&app, "/report").await });
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("slow request"))
        .unwrap_or_else(|| panic!("no slow-request line:\n{text}"));
    for part in [
        "load_rows ",
        " > query_rows ",
        "; render ",
        "; format_totals ",
    ] {
        assert!(line.contains(part), "{part:?} missing from {line}");
    }
}

#[test]
fn a_timer_outside_a_request_still_records_its_histogram() {
    let m = metrics();
    let took = Timer::start(&m, "nightly_job").stop();
    assert!(took <= std::time::Duration::from_secs(3600));
    assert!(m
        .render()
        .contains("cachefront_origin_block_duration_seconds_count{block=\"nightly_job\"} 1"));
}
