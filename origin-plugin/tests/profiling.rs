#![cfg(all(feature = "profiling", feature = "pprof", feature = "metrics"))]
mod support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use cachefront_origin::admin::BearerToken;
use cachefront_origin::metrics::Metrics;
use cachefront_origin::profiling::{Profiler, ProfilingConfig, RequestProfile};
use support::{http, TestServer};

const DEBUG_TOKEN: &str = "profiling-test-token-0123456789abcdef";

/// Everything logged through `tracing` in this test binary.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("install subscriber");
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// CPU profiles are process-wide: the tests that take one run one after another.
async fn profile_slot() -> tokio::sync::MutexGuard<'static, ()> {
    static SLOT: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    SLOT.get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await
}

fn app(profiler: &Profiler, metrics: &Metrics) -> Router {
    Router::new()
        .route(
            "/work",
            get(|profile: RequestProfile| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                profile.record_query(Duration::from_millis(5));
                profile.record_query(Duration::from_millis(3));
                profile.record("render", Duration::from_millis(2), Some("template"));
                "done"
            }),
        )
        .route(
            "/slow-route",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "slow"
            }),
        )
        .route("/fast-route", get(|| async { "fast" }))
        .merge(profiler.router())
        .layer(profiler.layer())
        .layer(metrics.layer())
}

/// `(name, dur, desc)` entries of a `Server-Timing` value.
fn parse_server_timing(v: &str) -> Vec<(String, f64, Option<String>)> {
    v.split(',')
        .map(|entry| {
            let mut parts = entry.trim().split(';');
            let name = parts.next().unwrap_or_default().to_owned();
            let (mut dur, mut desc) = (f64::NAN, None);
            for p in parts {
                if let Some(d) = p.strip_prefix("dur=") {
                    dur = d.parse().expect("numeric dur");
                } else if let Some(d) = p.strip_prefix("desc=") {
                    desc = Some(d.trim_matches('"').to_owned());
                }
            }
            (name, dur, desc)
        })
        .collect()
}

/// A profiler whose debug routes open with [`DEBUG_TOKEN`].
fn debug_profiler() -> Profiler {
    Profiler::new(ProfilingConfig {
        debug_token: Some(BearerToken::new(DEBUG_TOKEN).expect("long enough")),
        ..Default::default()
    })
}

#[tokio::test]
async fn server_timing_is_present_and_plausible() {
    let metrics = Metrics::new();
    let profiler = Profiler::new(ProfilingConfig::default());
    let server = TestServer::start(app(&profiler, &metrics)).await;
    let res = support::get(&http(), server.url("/work")).await;
    let value = res.headers()["server-timing"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let entries = parse_server_timing(&value);
    assert_eq!(
        entries.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["app", "db", "render"],
        "{value}"
    );
    let app = entries[0].1;
    // The handler slept 20 ms; anything above a minute is not plausible.
    assert!((20.0..60_000.0).contains(&app), "{value}");
    assert_eq!(entries[1].1, 8.0);
    assert_eq!(entries[1].2.as_deref(), Some("2 queries"));
    assert_eq!(entries[2].2.as_deref(), Some("template"));
    assert!(app >= entries[1].1, "app time covers db time");
}

#[tokio::test]
async fn sample_rate_zero_sends_no_server_timing() {
    let metrics = Metrics::new();
    let profiler = Profiler::new(ProfilingConfig {
        sample_rate: 0.0,
        ..Default::default()
    });
    let server = TestServer::start(app(&profiler, &metrics)).await;
    let res = support::get(&http(), server.url("/fast-route")).await;
    assert!(res.headers().get("server-timing").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_log_fires_above_threshold_only() {
    let logs = captured_logs();
    let metrics = Metrics::new();
    // 1 s threshold: the slow handler sleeps 1.5 s, the fast one does nothing.
    let profiler = Profiler::with_metrics(
        ProfilingConfig {
            slow_threshold: Duration::from_secs(1),
            ..Default::default()
        },
        &metrics,
    );
    let server = TestServer::start(app(&profiler, &metrics)).await;
    let client = http();
    for _ in 0..3 {
        support::get(&client, server.url("/fast-route")).await;
    }
    support::get(&client, server.url("/slow-route")).await;

    let text = String::from_utf8(logs.lock().expect("lock").clone()).expect("utf8");
    let slow_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("slow request"))
        .collect();
    assert!(
        slow_lines
            .iter()
            .any(|l| l.contains("route=/slow-route") && l.contains("status=200")),
        "{text}"
    );
    assert!(
        !slow_lines.iter().any(|l| l.contains("route=/fast-route")),
        "{text}"
    );
    let rendered = metrics.render();
    assert!(
        rendered.contains(r#"cachefront_origin_slow_requests_total{route="/slow-route"} 1"#),
        "{rendered}"
    );
    assert!(!rendered.contains(r#"cachefront_origin_slow_requests_total{route="/fast-route"}"#));
}

#[tokio::test]
async fn debug_endpoints_are_off_without_a_configured_token() {
    let metrics = Metrics::new();
    let profiler = Profiler::new(ProfilingConfig::default());
    let server = TestServer::start(app(&profiler, &metrics)).await;
    let client = http();
    for path in ["/debug/requests", "/debug/pprof/profile?seconds=1"] {
        let res = support::get_bearer(&client, server.url(path), "anything").await;
        assert_eq!(res.status(), 404, "{path}");
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(body["error"], "not_found");
    }
}

#[tokio::test]
async fn slowest_requests_report_needs_the_token_and_lists_routes() {
    let metrics = Metrics::new();
    let profiler = debug_profiler();
    let server = TestServer::start(app(&profiler, &metrics)).await;
    let client = http();
    support::get(&client, server.url("/work")).await;
    support::get(&client, server.url("/fast-route")).await;

    let res = support::get(&client, server.url("/debug/requests")).await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let res = support::get_bearer(&client, server.url("/debug/requests"), "wrong").await;
    assert_eq!(res.status(), 401);

    let res = support::get_bearer(&client, server.url("/debug/requests"), DEBUG_TOKEN).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/html"));
    let html = res.text().await.expect("html");
    assert!(
        html.contains("<code>/work</code>") && html.contains("<code>/fast-route</code>"),
        "{html}"
    );

    let json: serde_json::Value = support::get_bearer(
        &client,
        server.url("/debug/requests?format=json"),
        DEBUG_TOKEN,
    )
    .await
    .json()
    .await
    .expect("json");
    let slowest = json["slowest"].as_array().expect("array");
    assert_eq!(slowest[0]["route"], "/work", "slowest first: {json}");
    assert_eq!(slowest[0]["queries"], 2);

    let res = support::get_bearer(
        &client,
        server.url("/debug/requests?format=xml"),
        DEBUG_TOKEN,
    )
    .await;
    assert_eq!(res.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_profile_returns_a_flamegraph_svg_and_rejects_missing_token() {
    let _slot = profile_slot().await;
    let metrics = Metrics::new();
    let profiler = debug_profiler();
    let server = TestServer::start(app(&profiler, &metrics)).await;
    let client = http();

    let res = support::get(&client, server.url("/debug/pprof/profile?seconds=1")).await;
    assert_eq!(res.status(), 401);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["error"], "unauthorized");
    for bad in ["seconds=0", "seconds=61", "seconds=ten", "format=gif"] {
        let res = support::get_bearer(
            &client,
            server.url(&format!("/debug/pprof/profile?{bad}")),
            DEBUG_TOKEN,
        )
        .await;
        assert_eq!(res.status(), 400, "{bad}");
    }

    // Give the profiler something to see.
    let stop = Arc::new(AtomicBool::new(false));
    let burner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for i in 0..100_000u64 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
                }
                std::hint::black_box(x);
            }
        })
    };
    let res = support::get_bearer(
        &client,
        server.url("/debug/pprof/profile?seconds=1"),
        DEBUG_TOKEN,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "image/svg+xml");
    let svg = res.text().await.expect("svg");
    assert!(
        svg.trim_start().starts_with("<?xml"),
        "{}",
        &svg[..svg.len().min(200)]
    );
    assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains("<g") && svg.contains("samples"),
        "a real flamegraph, not the idle placeholder"
    );

    let res = support::get_bearer(
        &client,
        server.url("/debug/pprof/profile?seconds=1&format=pprof"),
        DEBUG_TOKEN,
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    let bytes = res.bytes().await.expect("bytes");
    use pprof::protos::Message;
    let profile = pprof::protos::Profile::decode(bytes.as_ref()).expect("valid pprof protobuf");
    assert!(!profile.sample.is_empty());
    stop.store(true, Ordering::Relaxed);
    burner.join().expect("burner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_cpu_profile_runs_at_a_time() {
    let _slot = profile_slot().await;
    let metrics = Metrics::new();
    let profiler = debug_profiler();
    let server = TestServer::start(app(&profiler, &metrics)).await;
    let first_url = server.url("/debug/pprof/profile?seconds=3");
    let first = tokio::spawn(async move {
        support::get_bearer(&http(), first_url, DEBUG_TOKEN)
            .await
            .status()
    });
    let client = http();
    let mut saw_conflict = false;
    while !first.is_finished() {
        let res = support::get_bearer(
            &client,
            server.url("/debug/pprof/profile?seconds=1"),
            DEBUG_TOKEN,
        )
        .await;
        if res.status() == 409 {
            let body: serde_json::Value = res.json().await.expect("json");
            assert_eq!(body["error"], "conflict");
            saw_conflict = true;
            break;
        }
    }
    // Whichever of the two got the sampler first, the other was refused.
    let first_status = first.await.expect("first task").as_u16();
    assert!(
        saw_conflict || first_status == 409,
        "a second profile was allowed while one was running"
    );
    assert!([200, 409].contains(&first_status), "{first_status}");
}
