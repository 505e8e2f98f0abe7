//! The request id on log lines under the documented logging setup
//! (`DbCapture::init_logging`), with no span per request: this test binary re-runs
//! itself as the child (the setup installs the global subscriber and logs to stdout),
//! which serves requests through `Cachefront::builder()`; the parent reads its log.
#![cfg(all(feature = "db", feature = "profiling"))]

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use cachefront_origin::db::DbCapture;
use cachefront_origin::hygiene::{current_request_id, in_current_request_id};
use cachefront_origin::profiling::{Profiler, ProfilingConfig};
use cachefront_origin::Cachefront;
use http::Request;
use tower::ServiceExt as _;

/// Set in the child's environment: serve the requests instead of spawning.
const CHILD: &str = "CACHEFRONT_TEST_REQUEST_ID_LOGGING_CHILD";
const TEST_NAME: &str =
    "log_lines_of_a_request_carry_its_id_under_init_logging_without_a_request_span";

#[test]
fn log_lines_of_a_request_carry_its_id_under_init_logging_without_a_request_span() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let (stdout, _) = support::rerun_as_child(TEST_NAME, CHILD, &[]);
    let line = |needle: &str| -> &str {
        stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no log line with {needle:?}:\n{stdout}"))
    };

    // The client's id, on the handler's line, with no span on it.
    let handler = line("handler says hello from client-id-1");
    assert!(
        handler.ends_with(" request_id=client-id-1"),
        "the handler's line carries the request id:\n{handler}"
    );
    assert!(
        !handler.contains("request{"),
        "no request span by default:\n{handler}"
    );
    // The slow-request log of the profiler (threshold 0 here) names it too.
    let slow = line("slow request");
    assert!(slow.ends_with(" request_id=client-id-1"), "{slow}");

    // A generated id: the one echoed on the response is the one on the line.
    let generated = line("echoed id: ")
        .rsplit("echoed id: ")
        .next()
        .unwrap_or("");
    assert!(!generated.is_empty() && generated != "client-id-1");
    let handler = line("handler says hello from 2");
    assert!(
        handler.ends_with(&format!(" request_id={generated}")),
        "the generated id (echoed as {generated}) is on the line:\n{handler}"
    );
    // The handler sees the same id in the thread while it runs.
    line(&format!("current id {generated}"));

    // Work spawned with `in_current_request_id` keeps the id; a line outside any request
    // has none.
    let spawned = line("spawned work for client-id-1");
    assert!(spawned.ends_with(" request_id=client-id-1"), "{spawned}");
    let outside = line("outside any request");
    assert!(!outside.contains("request_id="), "{outside}");

    // The span option: the id once, in the span (the format adds nothing).
    let with_span = line("handler says hello from span-id-3");
    assert!(
        with_span.contains("request{request_id=span-id-3}"),
        "{with_span}"
    );
    assert_eq!(with_span.matches("span-id-3").count(), 2, "{with_span}");
    assert!(!with_span.contains(" request_id=span-id-3"), "{with_span}");
    // Spawned work is outside the span: the format adds the id there.
    let spawned = line("spawned work for span-id-3");
    assert!(spawned.ends_with(" request_id=span-id-3"), "{spawned}");
}

fn app(request_id_span: bool) -> Router {
    let profiler = Profiler::new(ProfilingConfig {
        slow_threshold: Duration::ZERO,
        ..ProfilingConfig::default()
    });
    let routes = Router::new().route(
        "/hello/{who}",
        get(
            |axum::extract::Path(who): axum::extract::Path<String>| async move {
                tracing::info!("handler says hello from {who}");
                if let Some(id) = current_request_id() {
                    tracing::info!("current id {}", id.0);
                }
                tokio::spawn(in_current_request_id(async move {
                    tracing::info!("spawned work for {who}");
                }))
                .await
                .expect("spawned task");
                "hello"
            },
        ),
    );
    Cachefront::builder()
        .profiling(&profiler)
        .request_id_span(request_id_span)
        .apply(routes)
}

async fn get_with_id(app: Router, path: &str, id: Option<&str>) -> String {
    let mut req = Request::get(path);
    if let Some(id) = id {
        req = req.header("x-request-id", id);
    }
    let res = app
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("response");
    assert_eq!(res.status(), 200);
    res.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("x-request-id echoed")
        .to_owned()
}

fn child() {
    let capture = DbCapture::default();
    capture.init_logging().expect("install the subscriber");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let echoed = get_with_id(app(false), "/hello/client-id-1", Some("client-id-1")).await;
        assert_eq!(echoed, "client-id-1");
        let generated = get_with_id(app(false), "/hello/2", None).await;
        tracing::info!("echoed id: {generated}");
        tracing::info!("outside any request");
        get_with_id(app(true), "/hello/span-id-3", Some("span-id-3")).await;
    });
}
