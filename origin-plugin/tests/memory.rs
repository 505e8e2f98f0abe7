//! Feature `memory` against the real allocator: jemalloc is this test binary's global
//! allocator. Each scenario runs in a child process of its own (this binary again, with
//! `CACHEFRONT_MEMORY_SCENARIO` set) so one scenario's heap never leaks into another's
//! windows, and so the child can start jemalloc's profiler (`_RJEM_MALLOC_CONF`), which
//! is only read at process start. Windows are counted in requests: the verdict depends on
//! how many requests ran, never on how long they took.
#![cfg(feature = "memory")]

use std::io::Read as _;
use std::process::Command;
use std::sync::Mutex;

use axum::body::Body;
use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use cachefront_origin::admin::BearerToken;
use cachefront_origin::memory::{Jemalloc, LeakConfig, MemoryConfig, MemoryMonitor};
use cachefront_origin::metrics::{Metrics, MetricsConfig};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";
const REQUESTS: u64 = 1_000;
const BYTES_PER_REQUEST: usize = 16 * 1024;

static ORDER_CACHE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// The bug under test: every order rendered is kept forever.
#[inline(never)]
fn remember_every_order_forever(id: u64) -> usize {
    let page = std::hint::black_box(vec![id as u8; BYTES_PER_REQUEST]);
    let len = page.len();
    ORDER_CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(page);
    len
}

/// The fixed handler: the same allocation, given back when the request ends.
#[inline(never)]
fn render_order_and_drop_it(id: u64) -> usize {
    let page = std::hint::black_box(vec![id as u8; BYTES_PER_REQUEST]);
    page.len()
}

fn leak_config() -> LeakConfig {
    LeakConfig {
        warmup_requests: 200,
        window_requests: 100,
        windows: 4,
        min_bytes_per_request: 4096.0,
        min_growth_bytes: 1 << 20,
    }
}

async fn body_bytes(res: axum::response::Response) -> Vec<u8> {
    res.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default()
}

async fn get_with_token(app: &Router, path: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::get(path)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    (status, body_bytes(res).await)
}

/// One scenario, in the child: drive the app, then print what the parent checks.
async fn scenario(leaky: bool) -> serde_json::Value {
    let metrics = Metrics::with_config(MetricsConfig {
        process_metrics: false,
        ..Default::default()
    });
    let monitor = MemoryMonitor::new(
        MemoryConfig {
            leak: leak_config(),
            per_route: true,
            debug_token: Some(BearerToken::new(TOKEN).expect("token")),
            ..Default::default()
        },
        &metrics,
    );
    let handler = if leaky {
        remember_every_order_forever
    } else {
        render_order_and_drop_it
    };
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(move |Path(id): Path<u64>| async move { handler(id).to_string() }),
        )
        .layer(monitor.layer());
    let admin = Router::new()
        .merge(monitor.router())
        .merge(metrics.router());

    let mut flagged_at = None;
    for i in 0..REQUESTS {
        let req = Request::get(format!("/orders/{i}"))
            .body(Body::empty())
            .expect("request");
        let res = app.clone().oneshot(req).await.expect("infallible");
        assert_eq!(res.status(), StatusCode::OK);
        let _ = body_bytes(res).await;
        if flagged_at.is_none() && monitor.leak_suspected() {
            flagged_at = Some(i + 1);
        }
    }
    let (status, debug) = get_with_token(&admin, "/debug/memory").await;
    assert_eq!(status, StatusCode::OK);
    let debug: serde_json::Value = serde_json::from_slice(&debug).expect("json");
    let exposition = metrics.render();
    let mut out = serde_json::json!({
        "flagged_at": flagged_at,
        "debug": debug,
        "suspected_metric": exposition
            .lines()
            .find(|l| l.starts_with("cachefront_origin_memory_leak_suspected "))
            .map(str::to_owned),
        "route_bytes_metric": exposition
            .lines()
            .find(|l| l.starts_with("cachefront_origin_http_allocated_bytes_total{route=\"/orders/{id}\"}"))
            .map(str::to_owned),
    });
    if leaky {
        let (svg_status, svg) = get_with_token(&admin, "/debug/pprof/heap?format=svg").await;
        let (pprof_status, pprof) = get_with_token(&admin, "/debug/pprof/heap?format=pprof").await;
        let mut decoded = Vec::new();
        let gunzip = flate2::read::GzDecoder::new(pprof.as_slice()).read_to_end(&mut decoded);
        let names = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            ["remember_every_order_forever", "render_order_and_drop_it"].map(|f| text.contains(f))
        };
        out["heap"] = serde_json::json!({
            "svg_status": svg_status.as_u16(),
            "svg_is_svg": String::from_utf8_lossy(&svg).contains("<svg"),
            "svg_names": names(&svg),
            "pprof_status": pprof_status.as_u16(),
            "pprof_gzip": gunzip.is_ok(),
            "pprof_names": names(&decoded),
        });
    }
    out
}

/// The child side: a no-op unless the parent set `CACHEFRONT_MEMORY_SCENARIO`.
#[test]
fn memory_scenario_child() {
    let Ok(which) = std::env::var("CACHEFRONT_MEMORY_SCENARIO") else {
        return;
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = rt.block_on(scenario(which == "leaky"));
    println!("SCENARIO-RESULT {result}");
}

struct Outcome {
    result: serde_json::Value,
    stderr: String,
}

fn run_scenario(which: &str) -> Outcome {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([
            "memory_scenario_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CACHEFRONT_MEMORY_SCENARIO", which)
        // Sample about one allocation per 16 KiB: every leaked page shows in the profile.
        .env(
            "_RJEM_MALLOC_CONF",
            "prof:true,prof_active:true,lg_prof_sample:14",
        )
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("SCENARIO-RESULT ").map(|(_, json)| json))
        .unwrap_or_else(|| panic!("no result from the child:\n{stdout}\n{stderr}"));
    let result = serde_json::from_str(line).expect("result json");
    eprintln!("{which}: {result}");
    Outcome { result, stderr }
}

#[test]
fn a_route_that_leaks_is_flagged_and_its_heap_profile_names_the_leaking_function() {
    let Outcome { result, stderr } = run_scenario("leaky");
    // Warm-up 200 requests, then 4 growing windows of 100: the first report comes with
    // the sample at request 600.
    assert_eq!(result["flagged_at"], 600, "{result}");
    let leak = &result["debug"]["leak"];
    assert_eq!(leak["suspected"], true);
    let report = &leak["reports"][0];
    assert_eq!(report["requests"], 400);
    let growth = report["growth_bytes"].as_u64().expect("growth");
    // 400 requests keeping 16 KiB each: jemalloc's thread caches make the reading
    // approximate (seen: 97-99 % of it), never double.
    assert!(
        growth >= 400 * BYTES_PER_REQUEST as u64 * 8 / 10,
        "{report}"
    );
    assert!(growth < 2 * 400 * BYTES_PER_REQUEST as u64, "{report}");
    assert_eq!(
        result["suspected_metric"],
        "cachefront_origin_memory_leak_suspected 1"
    );
    assert!(
        stderr.contains("suspected memory leak"),
        "no leak warning logged:\n{stderr}"
    );
    // Per-route accounting saw at least the pages the handler allocated.
    let route_bytes = result["debug"]["allocated_by_route"][0]["bytes"]
        .as_u64()
        .expect("route bytes");
    assert!(
        route_bytes >= REQUESTS * BYTES_PER_REQUEST as u64,
        "{result}"
    );
    assert!(result["route_bytes_metric"].is_string(), "{result}");

    let heap = &result["heap"];
    assert_eq!(heap["svg_status"], 200, "{heap}");
    assert_eq!(heap["svg_is_svg"], true);
    assert_eq!(
        heap["svg_names"][0], true,
        "flamegraph lacks the leaking function"
    );
    assert_eq!(heap["pprof_status"], 200);
    assert_eq!(heap["pprof_gzip"], true);
    assert_eq!(
        heap["pprof_names"][0], true,
        "pprof lacks the leaking function"
    );
}

#[test]
fn the_same_app_without_the_leak_is_not_flagged_under_the_same_load() {
    let Outcome { result, stderr } = run_scenario("tidy");
    assert_eq!(result["flagged_at"], serde_json::Value::Null, "{result}");
    let leak = &result["debug"]["leak"];
    assert_eq!(leak["suspected"], false);
    assert_eq!(leak["reports"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        result["suspected_metric"],
        "cachefront_origin_memory_leak_suspected 0"
    );
    assert!(!stderr.contains("suspected memory leak"), "{stderr}");
    // The same allocation volume went through the route: only retention differs.
    let route_bytes = result["debug"]["allocated_by_route"][0]["bytes"]
        .as_u64()
        .expect("route bytes");
    assert!(
        route_bytes >= REQUESTS * BYTES_PER_REQUEST as u64,
        "{result}"
    );
}

#[tokio::test]
async fn memory_endpoints_are_off_without_a_token_and_refuse_a_wrong_one() {
    let metrics = Metrics::with_config(MetricsConfig {
        process_metrics: false,
        ..Default::default()
    });
    let off = MemoryMonitor::new(MemoryConfig::default(), &metrics).router::<()>();
    let res = off
        .oneshot(
            Request::get("/debug/memory")
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let on = MemoryMonitor::new(
        MemoryConfig {
            debug_token: Some(BearerToken::new(TOKEN).expect("token")),
            ..Default::default()
        },
        &metrics,
    )
    .router::<()>();
    let res = on
        .clone()
        .oneshot(
            Request::get("/debug/pprof/heap")
                .header(
                    "authorization",
                    "Bearer wrong-wrong-wrong-wrong-wrong-wrong",
                )
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = get_with_token(&on, "/debug/pprof/heap?format=gif").await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
}
