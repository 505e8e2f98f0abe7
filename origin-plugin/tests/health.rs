#![cfg(all(feature = "health", feature = "postgres"))]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use cachefront_origin::health::{FnCheck, Health, PostgresCheck};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use support::{http, PgCluster, TestServer};

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let res = support::get(client, url).await;
    let status = res.status().as_u16();
    (status, res.json().await.expect("json body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_flips_to_503_when_postgres_stops_and_back_when_it_returns_naming_the_error_only_on_admin(
) {
    if support::pg_bindir().is_none() {
        assert!(
            std::env::var_os("CACHEFRONT_TEST_STRICT").is_none(),
            "PostgreSQL not installed"
        );
        eprintln!("skipping: PostgreSQL not installed");
        return;
    }
    let cluster = PgCluster::start();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&cluster.url())
        .expect("pool");
    let health = Health::builder()
        .readiness_check(PostgresCheck::new(pool))
        .check_timeout(Duration::from_secs(5))
        .build();
    let server = TestServer::start(Router::new().merge(health.admin_router())).await;
    let public = TestServer::start(Router::new().merge(health.router())).await;
    let client = http();

    let (status, body) = get_json(&client, &server.url("/readyz")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["postgres"]["status"], "ok");
    let (status, body) = get_json(&client, &public.url("/readyz")).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"status": "ready"}))
    );

    cluster.stop_server();
    let (status, body) = get_json(&client, &server.url("/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unready");
    assert_eq!(body["failing"], serde_json::json!(["postgres"]));
    assert_ne!(body["checks"]["postgres"]["status"], "ok");
    let error = body["checks"]["postgres"]["error"]
        .as_str()
        .expect("the admin answer carries the driver's error");
    assert!(!error.is_empty());

    // The public answer says only that it is unavailable: no check name, no error text.
    let res = support::get(&client, public.url("/readyz")).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let text = res.text().await.expect("body");
    assert_eq!(text, r#"{"status":"unavailable"}"#);
    assert!(
        !text.contains("postgres") && !text.contains(error),
        "{text}"
    );

    let (status, _) = get_json(&client, &server.url("/livez")).await;
    assert_eq!(status, 200, "liveness must not depend on the database");
    let (status, _) = get_json(&client, &public.url("/livez")).await;
    assert_eq!(status, 200, "liveness must not depend on the database");

    cluster.start_server();
    // The pool reconnects on its own; wait (bounded) for readiness to come back.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get_json(&client, &server.url("/readyz")).await;
        if status == 200 {
            assert_eq!(body["status"], "ready");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness did not recover: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, _) = get_json(&client, &server.url("/livez")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn not_ready_until_startup_checks_pass_once() {
    let migrated = Arc::new(AtomicBool::new(false));
    let flag = migrated.clone();
    let health = Health::builder()
        .startup_check(FnCheck::new("migrations", move || {
            let done = flag.load(Ordering::SeqCst);
            async move {
                if done {
                    Ok(())
                } else {
                    Err("pending".to_owned())
                }
            }
        }))
        .build();
    let server = TestServer::start(health.admin_router()).await;
    let public = TestServer::start(health.router()).await;
    let client = http();

    let (status, body) = get_json(&client, &server.url("/readyz")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("starting")),
        "{body}"
    );
    assert_eq!(body["failing"], serde_json::json!(["migrations"]));
    let (status, body) = get_json(&client, &server.url("/startupz")).await;
    assert_eq!(status, 503);
    assert_eq!(body["checks"]["migrations"]["error"], "pending");
    let (status, body) = get_json(&client, &public.url("/startupz")).await;
    assert_eq!(
        (status, body),
        (503, serde_json::json!({"status": "starting"}))
    );
    let (status, body) = get_json(&client, &public.url("/readyz")).await;
    assert_eq!(
        (status, body),
        (503, serde_json::json!({"status": "unavailable"}))
    );
    let (status, _) = get_json(&client, &server.url("/livez")).await;
    assert_eq!(status, 200);

    migrated.store(true, Ordering::SeqCst);
    let (status, _) = get_json(&client, &server.url("/startupz")).await;
    assert_eq!(status, 200);
    let (status, _) = get_json(&client, &server.url("/readyz")).await;
    assert_eq!(status, 200);
    let (status, body) = get_json(&client, &public.url("/startupz")).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"status": "started"}))
    );

    // Startup checks run until they pass once, never again.
    migrated.store(false, Ordering::SeqCst);
    let (status, _) = get_json(&client, &server.url("/readyz")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_hanging_check_times_out_and_is_named() {
    let health = Health::builder()
        .readiness_check(FnCheck::new("cache", || async {
            std::future::pending::<()>().await;
            Ok(())
        }))
        .readiness_check(FnCheck::new("queue", || async { Ok(()) }))
        .check_timeout(Duration::from_millis(200))
        .build();
    let report = health.readiness().await;
    assert_eq!(report.status, "unready");
    assert_eq!(report.failing, vec!["cache".to_owned()]);
    assert_eq!(report.checks["cache"].status, "timeout");
    assert_eq!(report.checks["queue"].status, "ok");
}

#[tokio::test]
async fn shutdown_makes_readiness_503_but_not_liveness() {
    let health = Health::builder().build();
    let server = TestServer::start(health.admin_router()).await;
    let client = http();
    assert_eq!(get_json(&client, &server.url("/readyz")).await.0, 200);
    health.begin_shutdown();
    let (status, body) = get_json(&client, &server.url("/readyz")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("shutting_down"))
    );
    assert_eq!(get_json(&client, &server.url("/livez")).await.0, 200);
}

#[tokio::test]
async fn readiness_checks_run_concurrently() {
    // Each check waits for the other at a barrier: run one after the other, the first
    // would wait forever and time out; run together, both pass.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let (a, b) = (barrier.clone(), barrier);
    let health = Health::builder()
        .readiness_check(FnCheck::new("a", move || {
            let a = a.clone();
            async move {
                a.wait().await;
                Ok(())
            }
        }))
        .readiness_check(FnCheck::new("b", move || {
            let b = b.clone();
            async move {
                b.wait().await;
                Ok(())
            }
        }))
        .check_timeout(Duration::from_secs(10))
        .build();
    let report = health.readiness().await;
    assert_eq!(report.status, "ready", "{report:?}");
}
