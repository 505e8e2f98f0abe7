//! The example origin end to end: real PostgreSQL, the real binary, real HTTP.
#![cfg(feature = "full")]
mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{edge_contract, http, spawn_example, PurgeStandIn};

const ADMIN_TOKEN: &str = "catalog-price-token-0123456789abcdef";
const DEBUG_TOKEN: &str = "catalog-debug-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_serves_tagged_pages_purges_on_write_and_stops_on_sigterm() {
    let Some(database_url) = support::database_url() else {
        return;
    };
    let edge = PurgeStandIn::start(edge_contract, vec![]).await;
    let edge_base = edge.base();
    let (mut child, addrs) = spawn_example(
        "catalog",
        &[
            ("DATABASE_URL", &database_url),
            ("CACHEFRONT_EDGE_URL", &edge_base),
            ("CACHEFRONT_PURGE_TOKEN", "edge-secret"),
            ("CATALOG_ADMIN_TOKEN", ADMIN_TOKEN),
            ("CACHEFRONT_DEBUG_TOKEN", DEBUG_TOKEN),
        ],
    );
    let base = format!("http://{}", addrs.public);
    let admin = format!("http://{}", addrs.admin);
    let client = http();

    // Schema creation and seeding happen in the background; readiness waits for them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let res = support::get(&client, format!("{base}/readyz")).await;
        if res.status() == 200 {
            let body: serde_json::Value = res.json().await.expect("json");
            assert_eq!(body, serde_json::json!({"status": "ready"}));
            break;
        }
        assert_eq!(res.status(), 503);
        let body: serde_json::Value = res.json().await.expect("json");
        assert_eq!(
            body,
            serde_json::json!({"status": "unavailable"}),
            "the public /readyz names no check and no error"
        );
        assert!(Instant::now() < deadline, "catalog never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        support::get(&client, format!("{base}/livez"))
            .await
            .status(),
        200
    );

    let res = support::get(&client, format!("{base}/")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-tag"], "products");
    let cc = res.headers()["cache-control"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(cc.contains("public") && cc.contains("s-maxage=60"), "{cc}");
    let timing = res.headers()["server-timing"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        timing.starts_with("app;dur=") && timing.contains(r#"desc="1 query""#),
        "{timing}"
    );
    let html = res.text().await.expect("html");
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("Alpine Two-Person Tent") && html.contains("href=\"/products/1\""));

    let res = support::get(&client, format!("{base}/products/1")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-tag"], "product:1,product-pages");
    let html = res.text().await.expect("html");
    assert!(html.contains(r#"<h1 id="product-title">Alpine Two-Person Tent</h1>"#));
    // Without a manifest, asset URLs are the plain paths the edge serves from www/.
    assert!(
        html.contains(r#"src="/images/products/alpine-tent.png""#),
        "{html}"
    );

    for (path, status, code) in [
        ("/products/abc", 400, "bad_request"),
        ("/products/-3", 400, "bad_request"),
        ("/products/999999", 404, "not_found"),
        ("/no/such/page", 404, "not_found"),
    ] {
        let res = support::get(&client, format!("{base}{path}")).await;
        assert_eq!(res.status(), status, "{path}");
        assert_eq!(
            res.headers()["cache-control"],
            "no-store",
            "errors must never be cached"
        );
        assert!(res.headers().get("cache-tag").is_none());
        let body: serde_json::Value = res.json().await.expect("json error body");
        assert_eq!(body["error"], code, "{path}");
    }

    // A write purges exactly the pages that show the product: the database trigger
    // reports the row, the write → purge loop maps it to the pages' tags.
    let url = format!("{base}/api/products/1/price");
    let res = client
        .post(&url)
        .json(&serde_json::json!({"price_cents": 4999}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 401);
    let res = client
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .body("{oops")
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 400);
    let res = client
        .post(&url)
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"price_cents": 4999}))
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    while edge.received().is_empty() {
        assert!(Instant::now() < deadline, "no purge reached the edge");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(edge.violations().is_empty(), "{:?}", edge.violations());
    let purge = &edge.received()[0];
    assert_eq!(
        purge.body,
        serde_json::json!({"tags": ["product:1", "products"]})
    );
    let html = support::get(&client, format!("{base}/products/1"))
        .await
        .text()
        .await
        .expect("html");
    assert!(html.contains("$49.99"), "new price shown");

    // The public listener (what the edge forwards to) has no operator route, even for a
    // caller holding the debug token.
    for path in support::OPERATOR_PATHS {
        let res = support::get_bearer(&client, format!("{base}{path}"), DEBUG_TOKEN).await;
        assert_eq!(res.status(), 404, "{path} answered on the public listener");
        let text = res.text().await.expect("body");
        assert!(!text.contains("cachefront_origin_"), "{path}: {text}");
    }

    // The admin listener has them: detailed readiness names the checks.
    let readiness: serde_json::Value = support::get(&client, format!("{admin}/readyz"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(readiness["status"], "ready", "{readiness}");
    assert_eq!(
        readiness["checks"]["postgres"]["status"], "ok",
        "{readiness}"
    );

    // Metrics: pool gauges, purge counters; promtool accepts the whole exposition.
    let text = support::get(&client, format!("{admin}/metrics"))
        .await
        .text()
        .await
        .expect("text");
    assert!(
        text.contains(r#"cachefront_origin_db_pool_max_connections{pool="catalog"} 10"#),
        "{text}"
    );
    assert!(
        text.contains(r#"cachefront_origin_purge_requests_total{provider="edge",outcome="ok"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"cachefront_origin_db_change_notifications_total{kind="row"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"route="/products/{id}""#));
    if let Some(promtool) = support::promtool() {
        let (ok, output) = support::promtool_check_metrics(&promtool, &text);
        assert!(ok && output.trim().is_empty(), "{output}");
    }

    let res = support::get(&client, format!("{admin}/metrics.json")).await;
    assert_eq!(res.status(), 200);

    // Debug endpoints on the admin listener still need their own token.
    let res = support::get(&client, format!("{admin}/debug/requests")).await;
    assert_eq!(res.status(), 401);
    let res = support::get_bearer(
        &client,
        format!("{admin}/debug/requests?format=json"),
        DEBUG_TOKEN,
    )
    .await;
    assert_eq!(res.status(), 200);
    let report: serde_json::Value = res.json().await.expect("json");
    assert!(
        report["slowest"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r["route"] == "/products/{id}")),
        "{report}"
    );

    kill(Pid::from_raw(child.pid() as i32), Signal::SIGTERM).expect("SIGTERM");
    let status = child
        .wait_timeout(Duration::from_secs(30))
        .expect("catalog exits");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_links_fingerprinted_assets_from_the_manifest() {
    let Some(database_url) = support::database_url() else {
        return;
    };
    let dir =
        std::env::temp_dir().join(format!("cachefront-catalog-assets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let manifest = dir.join("manifest.json");
    std::fs::write(
        &manifest,
        r#"{"css/site.css": "css/site.5d41402a.css",
            "images/products/alpine-tent.png": "images/products/alpine-tent.9f86d081.png"}"#,
    )
    .expect("write manifest");
    let manifest_path = manifest.to_string_lossy().into_owned();
    let (_child, addrs) = spawn_example(
        "catalog",
        &[
            ("DATABASE_URL", &database_url),
            ("ASSET_MANIFEST", &manifest_path),
            ("ASSET_BASE", "/"),
        ],
    );
    let client = http();
    let deadline = Instant::now() + Duration::from_secs(60);
    let html = loop {
        let res = support::get(&client, format!("http://{}/products/1", addrs.public)).await;
        if res.status() == 200 {
            break res.text().await.expect("html");
        }
        assert!(
            Instant::now() < deadline,
            "catalog never served the product"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        html.contains(r#"<link rel="stylesheet" href="/css/site.5d41402a.css">"#),
        "{html}"
    );
    assert!(
        html.contains(r#"src="/images/products/alpine-tent.9f86d081.png""#),
        "{html}"
    );
}
