//! The request id on log lines under the documented logging setup
//! (`DbCapture::init_logging`, and a JSON `fmt` layer with `RequestIdFormat`), with no
//! span per request, and work spawned with `in_current_request` kept in its request (id
//! and profile): each test re-runs this binary as its child (the setup installs the
//! global subscriber and logs to stdout), which serves requests through
//! `Cachefront::builder()`; the parent reads its log.
#![cfg(all(feature = "db", feature = "profiling"))]

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use cachefront_origin::db::DbCapture;
use cachefront_origin::hygiene::{current_request_id, RequestIdFormat};
use cachefront_origin::in_current_request;
use cachefront_origin::profiling::{Profiler, ProfilingConfig, SpanProfileLayer};
use cachefront_origin::Cachefront;
use http::Request;
use tower::ServiceExt as _;
use tracing_subscriber::prelude::*;

/// Set in the child's environment: serve the requests instead of spawning.
const CHILD: &str = "CACHEFRONT_TEST_REQUEST_ID_LOGGING_CHILD";
const TEST_NAME: &str =
    "log_lines_of_a_request_carry_its_id_under_init_logging_without_a_request_span";

/// The first line of the child's `stdout` containing `needle`.
fn line_with<'a>(stdout: &'a str, needle: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no log line with {needle:?}:\n{stdout}"))
}

#[test]
fn log_lines_of_a_request_carry_its_id_under_init_logging_without_a_request_span() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let (stdout, _) = support::rerun_as_child(TEST_NAME, CHILD, &[]);
    let line = |needle: &str| line_with(&stdout, needle);

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

    // Work spawned with `in_current_request` keeps the id; a line outside any request
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
                tokio::spawn(in_current_request(async move {
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

/// The child's marker for the JSON test.
const JSON_CHILD: &str = "CACHEFRONT_TEST_REQUEST_ID_JSON_CHILD";
const JSON_TEST_NAME: &str = "json_log_lines_of_a_request_carry_its_id_as_a_member";

#[test]
fn json_log_lines_of_a_request_carry_its_id_as_a_member() {
    if std::env::var_os(JSON_CHILD).is_some() {
        json_child();
        return;
    }
    let (stdout, _) = support::rerun_as_child(JSON_TEST_NAME, JSON_CHILD, &[]);
    // Every log line is one JSON object (the harness's `test … ...` may precede the first).
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| l.find("{\"timestamp\"").map(|at| &l[at..]))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 4, "{stdout}");
    let line = |needle: &str| -> &serde_json::Value {
        lines
            .iter()
            .find(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(needle))
            })
            .unwrap_or_else(|| panic!("no JSON line with {needle:?}:\n{stdout}"))
    };
    let handler = line("handler says hello from json-id-1");
    assert_eq!(handler["request_id"], "json-id-1", "{handler}");
    assert_eq!(
        handler["level"], "INFO",
        "the format's own members stay: {handler}"
    );
    let slow = line("slow request");
    assert_eq!(slow["request_id"], "json-id-1", "{slow}");
    assert_eq!(slow["fields"]["route"], "/hello/{who}", "{slow}");
    let spawned = line("spawned work for json-id-1");
    assert_eq!(spawned["request_id"], "json-id-1", "{spawned}");
    let outside = line("outside any request");
    assert!(outside.get("request_id").is_none(), "{outside}");
}

fn json_child() {
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .event_format(RequestIdFormat::new(
                    tracing_subscriber::fmt::format().json(),
                ))
                .with_ansi(false),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        get_with_id(app(false), "/hello/json-id-1", Some("json-id-1")).await;
        tracing::info!("outside any request");
    });
}

/// The child's marker for the spawned-work test.
const SPAWN_CHILD: &str = "CACHEFRONT_TEST_IN_CURRENT_REQUEST_CHILD";
const SPAWN_TEST_NAME: &str =
    "work_spawned_with_in_current_request_records_into_the_profile_and_logs_the_id";

#[test]
fn work_spawned_with_in_current_request_records_into_the_profile_and_logs_the_id() {
    if std::env::var_os(SPAWN_CHILD).is_some() {
        spawn_child();
        return;
    }
    let (stdout, _) = support::rerun_as_child(SPAWN_TEST_NAME, SPAWN_CHILD, &[]);
    let line = |needle: &str| line_with(&stdout, needle);
    // On another worker thread of the runtime, after the handler's poll returned.
    let spawned = line("spawned work done");
    assert!(spawned.ends_with(" request_id=spawn-id-1"), "{spawned}");
    // The request's profile (the report's span tree and `Server-Timing`) has the
    // spawned work's span and its `Timer`-like record.
    let report = line("profile of spawn-id-1: ");
    assert!(
        report.contains("spans=[handle, spawned_work]"),
        "the spawned span is in the request's tree: {report}"
    );
    assert!(report.contains("spawned_work;dur="), "{report}");
    // Unwrapped, the same work is outside the request: no id, nothing in the profile.
    let bare = line("bare spawned work done");
    assert!(!bare.contains("request_id="), "{bare}");
    let report = line("profile of spawn-id-2: ");
    assert!(report.contains("spans=[handle]"), "{report}");
}

fn spawn_child() {
    tracing_subscriber::registry()
        .with(SpanProfileLayer::new())
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(RequestIdFormat::default())
                .with_ansi(false)
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for (mode, id) in [("wrapped", "spawn-id-1"), ("bare", "spawn-id-2")] {
            // A profiler per request: its report holds that request alone.
            let profiler = Profiler::new(ProfilingConfig::default());
            let app = Cachefront::builder()
                .profiling(&profiler)
                .apply(spawning_routes());
            let req = Request::get(format!("/work/{mode}"))
                .header("x-request-id", id)
                .body(Body::empty())
                .expect("request");
            let res = app.oneshot(req).await.expect("response");
            assert_eq!(res.status(), 200);
            let timing = res
                .headers()
                .get("server-timing")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let spans: Vec<&str> = profiler
                .slowest(1)
                .first()
                .map(|s| s.spans.iter().map(|n| n.name).collect())
                .unwrap_or_default();
            println!(
                "profile of {id}: spans=[{}] timing={timing}",
                spans.join(", ")
            );
        }
    });
}

/// A handler that spawns its work, wrapped in `in_current_request` or (`/work/bare`) not.
fn spawning_routes() -> Router {
    Router::new().route(
        "/work/{mode}",
        get(
            |axum::extract::Path(mode): axum::extract::Path<String>| async move {
                let bare = mode == "bare";
                let task = {
                    let _handle = tracing::info_span!("handle").entered();
                    let work = async move {
                        // Yield first: the task goes on after the handler's poll returned.
                        tokio::task::yield_now().await;
                        let _span = tracing::info_span!("spawned_work").entered();
                        tracing::info!("{}spawned work done", if bare { "bare " } else { "" });
                    };
                    if bare {
                        tokio::spawn(work)
                    } else {
                        tokio::spawn(in_current_request(work))
                    }
                };
                task.await.expect("spawned task");
                "done"
            },
        ),
    )
}
