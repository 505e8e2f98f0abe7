//! The operator surface stays off the public listener: the admin router serves it, the
//! token guard refuses anyone without the token, and the examples split the two.
#![cfg(all(
    feature = "metrics",
    feature = "profiling",
    feature = "health",
    feature = "cache-tags"
))]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use cachefront_origin::admin::{AdminRouter, BearerToken, MIN_TOKEN_LEN};
use cachefront_origin::health::{FnCheck, Health};
use cachefront_origin::metrics::Metrics;
use cachefront_origin::profiling::{Profiler, ProfilingConfig};
use support::{example_bin, http, spawn_example, TestServer};

const TOKEN: &str = "admin-test-token-0123456789abcdef";
const DEBUG_TOKEN: &str = "debug-test-token-0123456789abcdef";

struct Parts {
    metrics: Metrics,
    health: Health,
    profiler: Profiler,
}

fn parts() -> Parts {
    let metrics = Metrics::new();
    let health = Health::builder()
        .metrics(&metrics)
        .readiness_check(FnCheck::new("cache", || async {
            Err("connect to 10.1.2.3:6379 refused".to_owned())
        }))
        .build();
    let profiler = Profiler::with_metrics(
        ProfilingConfig {
            debug_token: Some(BearerToken::new(DEBUG_TOKEN).expect("long enough")),
            ..ProfilingConfig::default()
        },
        &metrics,
    );
    Parts {
        metrics,
        health,
        profiler,
    }
}

fn admin(p: &Parts) -> AdminRouter {
    AdminRouter::new()
        .metrics(&p.metrics)
        .health(&p.health)
        .profiler(&p.profiler)
}

async fn status_and_json(res: reqwest::Response) -> (u16, serde_json::Value) {
    let status = res.status().as_u16();
    (status, res.json().await.expect("json body"))
}

#[tokio::test]
async fn admin_router_serves_metrics_detailed_readiness_and_debug_routes() {
    let p = parts();
    let server = TestServer::start(admin(&p).build()).await;
    let client = http();

    let (status, body) = status_and_json(support::get(&client, server.url("/readyz")).await).await;
    assert_eq!(status, 503);
    assert_eq!(
        body["checks"]["cache"]["error"], "connect to 10.1.2.3:6379 refused",
        "the admin listener shows the details: {body}"
    );

    let res = support::get(&client, server.url("/metrics")).await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.expect("text");
    assert!(text.contains("cachefront_origin_ready 0"), "{text}");
    let res = support::get(&client, server.url("/metrics.json")).await;
    assert_eq!(res.status(), 200);

    let res = support::get_bearer(
        &client,
        server.url("/debug/requests?format=json"),
        DEBUG_TOKEN,
    )
    .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn public_health_router_has_no_operator_routes_and_no_error_text() {
    let p = parts();
    let app = Router::new()
        .route("/", get(|| async { "page" }))
        .merge(p.health.router())
        .layer(p.profiler.layer())
        .layer(p.metrics.layer());
    let server = TestServer::start(app).await;
    let client = http();
    for path in support::OPERATOR_PATHS {
        let res = support::get_bearer(&client, server.url(path), DEBUG_TOKEN).await;
        assert_eq!(res.status(), 404, "{path} is public");
    }
    let res = support::get(&client, server.url("/readyz")).await;
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.text().await.expect("body"),
        r#"{"status":"unavailable"}"#,
        "no check name, no error text"
    );
}

#[tokio::test]
async fn token_guard_refuses_missing_wrong_and_short_tokens_with_json_401() {
    let p = parts();
    let token = BearerToken::new(TOKEN).expect("long enough");
    let server = TestServer::start(admin(&p).token(Some(token)).build()).await;
    let client = http();
    let same_length_wrong: String = TOKEN.chars().rev().collect();
    let refused: [(&str, Option<String>); 6] = [
        ("missing", None),
        ("wrong", Some(format!("Bearer {same_length_wrong}"))),
        ("short", Some("Bearer abc".to_owned())),
        (
            "prefix",
            Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        ),
        ("extended", Some(format!("Bearer {TOKEN}x"))),
        ("other scheme", Some(format!("Basic {TOKEN}"))),
    ];
    for path in ["/metrics", "/readyz", "/no-such-admin-route"] {
        for (case, authorization) in &refused {
            let mut req = client.get(server.url(path));
            if let Some(value) = authorization {
                req = req.header("authorization", value);
            }
            let res = req.send().await.expect("request");
            assert_eq!(res.status(), 401, "{case} token on {path}");
            assert_eq!(res.headers()["www-authenticate"], "Bearer");
            assert_eq!(res.headers()["cache-control"], "no-store");
            let body: serde_json::Value = res.json().await.expect("json body");
            assert_eq!(body["error"], "unauthorized", "{case} on {path}");
        }
    }
    let res = support::get_bearer(&client, server.url("/metrics"), TOKEN).await;
    assert_eq!(res.status(), 200);
    let res = support::get_bearer(&client, server.url("/no-such-admin-route"), TOKEN).await;
    assert_eq!(
        res.status(),
        404,
        "with the token, unknown paths are just unknown"
    );

    // One Authorization header cannot carry two tokens: behind the guard, the admin
    // token also opens the debug routes (which stay off without their own token).
    let res = support::get_bearer(&client, server.url("/debug/requests?format=json"), TOKEN).await;
    assert_eq!(res.status(), 200);
    let res = support::get_bearer(
        &client,
        server.url("/debug/requests?format=json"),
        DEBUG_TOKEN,
    )
    .await;
    assert_eq!(res.status(), 401, "the guard wants the admin token");
}

#[tokio::test]
async fn guarded_admin_router_nested_in_the_public_app_needs_the_token() {
    let p = parts();
    let token = BearerToken::new(TOKEN).expect("long enough");
    let app = Router::new()
        .route("/", get(|| async { "page" }))
        .merge(p.health.router())
        .nest("/_admin", admin(&p).token(Some(token)).build());
    let server = TestServer::start(app).await;
    let client = http();
    assert_eq!(support::get(&client, server.url("/")).await.status(), 200);
    let res = support::get(&client, server.url("/_admin/metrics")).await;
    assert_eq!(res.status(), 401);
    let res = support::get_bearer(&client, server.url("/_admin/readyz"), TOKEN).await;
    let (status, body) = status_and_json(res).await;
    assert_eq!(status, 503);
    assert_eq!(body["failing"], serde_json::json!(["cache"]));
}

#[test]
fn short_tokens_are_refused_at_construction() {
    let short = "x".repeat(MIN_TOKEN_LEN - 1);
    let err = BearerToken::new(&short)
        .expect_err("31 characters")
        .to_string();
    assert!(err.contains("at least 32 characters"), "{err}");
    assert!(BearerToken::new("").is_err());
    assert!(BearerToken::new("x".repeat(MIN_TOKEN_LEN)).is_ok());
}

/// Runs an example that must refuse to start; returns its stderr.
fn refused_start(name: &str, envs: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(example_bin(name));
    cmd.env("BIND", "127.0.0.1:0")
        .env("ADMIN_BIND", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn example");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{name} started with {envs:?}");
    };
    assert!(!status.success(), "{name} exited 0 with {envs:?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    stderr
}

#[test]
fn examples_refuse_short_tokens_and_name_the_variable() {
    let stderr = refused_start("minimal", &[("ADMIN_TOKEN", "short")]);
    assert!(
        stderr.contains("ADMIN_TOKEN") && stderr.contains("at least 32"),
        "{stderr}"
    );
    #[cfg(feature = "full")]
    for var in [
        "ADMIN_TOKEN",
        "CATALOG_ADMIN_TOKEN",
        "CACHEFRONT_DEBUG_TOKEN",
    ] {
        // connect_lazy: no database is contacted before the configuration is read.
        let stderr = refused_start(
            "catalog",
            &[
                ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
                (var, "admin-secret"),
            ],
        );
        assert!(
            stderr.contains(var) && stderr.contains("at least 32"),
            "{var}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_example_serves_operator_routes_only_on_the_admin_listener() {
    let (_child, addrs) = spawn_example("minimal", &[("ADMIN_TOKEN", TOKEN)]);
    let (public, admin) = (
        format!("http://{}", addrs.public),
        format!("http://{}", addrs.admin),
    );
    let client = http();
    assert_eq!(
        support::get(&client, format!("{public}/")).await.status(),
        200
    );
    for path in support::OPERATOR_PATHS {
        let res = support::get_bearer(&client, format!("{public}{path}"), TOKEN).await;
        assert_eq!(res.status(), 404, "{path} answered on the public listener");
    }
    let (status, body) =
        status_and_json(support::get(&client, format!("{public}/readyz")).await).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"status": "ready"}))
    );

    let res = support::get(&client, format!("{admin}/metrics")).await;
    assert_eq!(res.status(), 401, "ADMIN_TOKEN guards the admin listener");
    let res = support::get_bearer(&client, format!("{admin}/metrics"), TOKEN).await;
    assert_eq!(res.status(), 200);
    assert!(res
        .text()
        .await
        .expect("text")
        .contains("cachefront_origin_"));
    let (status, body) =
        status_and_json(support::get_bearer(&client, format!("{admin}/readyz"), TOKEN).await).await;
    assert_eq!(status, 200);
    assert!(body["checks"].is_object(), "{body}");
}
