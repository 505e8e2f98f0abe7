//! Feature `otlp`: failed exports are counted on `/metrics`
//! (`cachefront_origin_otlp_export_failures_total{signal, reason}`), for metrics and for
//! traces, against the loopback receiver answering 503 and against an endpoint nothing
//! listens on; the counters stay at 0 while exports succeed. One test in this binary: the
//! endpoint comes from the process's `OTEL_*` variables, read when an exporter is
//! installed, so each phase sets them and installs its own exporters.
#![cfg(feature = "otlp")]

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use cachefront_origin::metrics::{Metrics, MetricsConfig};
use cachefront_origin::otlp::traces::OtlpTraces;
use cachefront_origin::otlp::OtlpExporter;
use cachefront_origin::profiling::Profiler;
use http::{Request, StatusCode};
use tower::ServiceExt;

#[path = "otlp/receiver.rs"]
mod receiver;
use receiver::{start_receiver, start_receiver_answering, Received};

/// One phase: both exporters installed against `endpoint`, one request served, both
/// flushed; returns whether each flush succeeded and the `/metrics` text.
fn export_once(endpoint: &str) -> (bool, bool, String) {
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
    let metrics = Metrics::with_config(MetricsConfig {
        process_metrics: false,
        ..Default::default()
    });
    let exporter = OtlpExporter::install(&metrics).expect("metric exporter");
    let traces = OtlpTraces::install_with_metrics(&metrics).expect("trace exporter");
    let app = Router::new()
        .route("/products/{id}", get(|| async { "product" }))
        .layer(traces.layer())
        .layer(Profiler::default().layer())
        .layer(metrics.layer());
    let scrape = metrics.router();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let req = Request::get("/products/1")
        .body(Body::empty())
        .expect("request");
    let res = rt.block_on(app.oneshot(req)).expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);

    let metrics_ok = exporter.force_flush().is_ok();
    let traces_ok = traces.force_flush().is_ok();
    let text = rt.block_on(async {
        let req = Request::get("/metrics")
            .body(Body::empty())
            .expect("request");
        let res = scrape.oneshot(req).await.expect("infallible");
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8(body.to_vec()).expect("utf-8")
    });
    let _ = traces.shutdown();
    let _ = exporter.shutdown();
    (metrics_ok, traces_ok, text)
}

/// The value of `cachefront_origin_otlp_export_failures_total{signal, reason}`; the
/// series must be there (registered at install, 0 before any failure).
fn failures(text: &str, signal: &str, reason: &str) -> u64 {
    let series = format!(
        "cachefront_origin_otlp_export_failures_total{{signal=\"{signal}\",reason=\"{reason}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} on /metrics:\n{text}"))
        .trim()
        .parse()
        .expect("a count")
}

#[test]
fn failed_otlp_exports_are_counted_by_signal_and_reason_and_successes_are_not() {
    std::env::set_var("OTEL_METRIC_EXPORT_INTERVAL", "3600000");
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "3600000");
    std::env::set_var("OTEL_EXPORTER_OTLP_TIMEOUT", "5000");
    std::env::remove_var("OTEL_TRACES_SAMPLER");

    // Accepted: both signals arrive, nothing is counted.
    let received = Received::default();
    let ok = start_receiver(received.clone());
    let (metrics_ok, traces_ok, text) = export_once(&format!("http://{ok}"));
    assert!(
        metrics_ok && traces_ok,
        "exports to a healthy receiver failed"
    );
    let paths: Vec<String> = received.exports().into_iter().map(|e| e.0).collect();
    assert!(paths.contains(&"/v1/metrics".to_owned()), "{paths:?}");
    assert!(paths.contains(&"/v1/traces".to_owned()), "{paths:?}");
    for signal in ["metrics", "traces"] {
        for reason in ["rejected", "unreachable", "shutdown", "other"] {
            assert_eq!(failures(&text, signal, reason), 0, "{signal} {reason}");
        }
    }
    assert!(
        text.contains("# HELP cachefront_origin_otlp_export_failures_total "),
        "{text}"
    );

    // Answered 503: each signal's one export call counts once as `rejected`.
    let refused = Received::default();
    let unavailable = start_receiver_answering(refused.clone(), StatusCode::SERVICE_UNAVAILABLE);
    let (metrics_ok, traces_ok, text) = export_once(&format!("http://{unavailable}"));
    assert!(!metrics_ok && !traces_ok, "a 503 must fail the flush");
    let paths: Vec<String> = refused.exports().into_iter().map(|e| e.0).collect();
    assert!(paths.contains(&"/v1/metrics".to_owned()), "{paths:?}");
    assert!(paths.contains(&"/v1/traces".to_owned()), "{paths:?}");
    for signal in ["metrics", "traces"] {
        assert_eq!(failures(&text, signal, "rejected"), 1, "{signal}\n{text}");
        assert_eq!(failures(&text, signal, "unreachable"), 0, "{signal}");
    }

    // Nothing listens: `unreachable`.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let (metrics_ok, traces_ok, text) = export_once(&format!("http://{closed}"));
    assert!(!metrics_ok && !traces_ok);
    for signal in ["metrics", "traces"] {
        assert_eq!(
            failures(&text, signal, "unreachable"),
            1,
            "{signal}\n{text}"
        );
        assert_eq!(failures(&text, signal, "rejected"), 0, "{signal}");
    }
}
