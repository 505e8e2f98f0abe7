//! Query capture says when the app's tracing setup switches it off: the common
//! `fmt().with_env_filter(…).init()` (no capture layer in the subscriber), a global level
//! filter (sqlx's DEBUG statements dropped), and a capture layer placed outside the
//! profiler. One global subscriber per test binary: this file installs the trap.
#![cfg(all(
    feature = "db",
    feature = "metrics",
    feature = "profiling",
    feature = "health"
))]

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::{body::Body, routing::get, Router};
use cachefront_origin::db::{DbCapture, DbCaptureConfig};
use cachefront_origin::health::HealthCheck;
use cachefront_origin::metrics::Metrics;
use cachefront_origin::profiling::{Profiler, ProfilingConfig};
use cachefront_origin::Cachefront;
use http::Request;
use tower::ServiceExt;
use tracing_subscriber::{layer::SubscriberExt, EnvFilter, Layer};

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

async fn get_ok(app: &Router, path: &str) {
    let res = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    assert_eq!(res.status(), 200);
}

#[tokio::test(flavor = "current_thread")]
async fn capture_switched_off_by_the_logging_setup_says_so_at_startup_in_log_metrics_and_health() {
    // The trap from the issue: the examples' former logging setup.
    let sink = Sink::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let metrics = Metrics::new();
    let capture = DbCapture::with_metrics(DbCaptureConfig::default(), &metrics);
    let profiler = Profiler::with_metrics(ProfilingConfig::default(), &metrics);
    let app = Cachefront::builder()
        .metrics(&metrics)
        .profiling(&profiler)
        .db_capture(&capture)
        .apply(Router::new().route("/", get(|| async { "ok" })));
    // Start-up: the stack is applied, no request served yet.
    let log = sink.text();
    assert_eq!(
        log.matches("query capture is OFF").count(),
        1,
        "warned when the builder applied the capture, before any request:\n{log}"
    );
    get_ok(&app, "/").await;
    get_ok(&app, "/").await;

    let log = sink.text();
    assert_eq!(
        log.matches("query capture is OFF").count(),
        1,
        "warned once, not again at the first request:\n{log}"
    );
    assert!(log.contains("not in the global subscriber"), "{log}");
    let setup = capture.setup();
    assert!(!setup.layer_installed && !setup.is_active(), "{setup:?}");
    assert!(
        metrics
            .render()
            .contains("cachefront_origin_db_capture_active 0"),
        "{}",
        metrics.render()
    );
    let check = capture.health_check();
    assert_eq!(check.name(), "db_capture");
    let failure = check.check().await.expect_err("capture is off");
    assert!(
        failure.contains("not in the global subscriber"),
        "{failure}"
    );

    // A capture layer that is installed but behind a global `info` filter: statements off.
    let behind_global_filter = tracing_subscriber::registry()
        .with(capture.tracing_layer())
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(EnvFilter::new("info"));
    tracing::subscriber::with_default(behind_global_filter, || {
        let setup = capture.setup();
        assert!(setup.layer_installed, "{setup:?}");
        assert!(!setup.statements_enabled, "{setup:?}");
        assert!(setup.problem().is_some_and(|p| p.contains("global filter")));
    });

    // The documented setup: capture unfiltered, the level filter on the output layer.
    let documented = tracing_subscriber::registry()
        .with(capture.tracing_layer())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(cachefront_origin::db::log_filter()),
        );
    tracing::subscriber::with_default(documented, || {
        let setup = capture.setup();
        assert!(setup.is_active(), "{setup:?}");
        assert_eq!(setup.problem(), None);
        assert!(metrics
            .render()
            .contains("cachefront_origin_db_capture_active 1"));
    });

    // Assembled by hand with the capture outside the profiler: the db Server-Timing entry
    // would be lost; the capture says so once.
    let wrong_order = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(profiler.layer())
        .layer(capture.layer());
    get_ok(&wrong_order, "/").await;
    get_ok(&wrong_order, "/").await;
    let log = sink.text();
    assert_eq!(
        log.matches("outside the profiling layer").count(),
        1,
        "{log}"
    );
}
