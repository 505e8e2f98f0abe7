#![cfg(all(feature = "cache-tags", feature = "metrics"))]
mod support;

use axum::http::HeaderValue;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use cachefront_origin::cache_tags::{CacheTagConfig, CacheTagLayer, CacheTags};
use cachefront_origin::metrics::Metrics;
use support::{http, TestServer};

fn app(layer: CacheTagLayer) -> Router {
    Router::new()
        .route(
            "/product",
            get(|| async {
                (
                    [("cache-tag", HeaderValue::from_static("Legacy-Tag"))],
                    CacheTags::new(["Products", "product:42"]),
                    CacheTags::new(["category:mugs", "products"]),
                    "mug",
                )
            }),
        )
        .route("/plain", get(|| async { "no tags" }))
        .route(
            "/own-surrogate",
            get(|| async {
                (
                    [("surrogate-key", HeaderValue::from_static("stale-key"))],
                    CacheTags::new(["Fresh"]),
                    "own",
                )
            }),
        )
        .route(
            "/oversized",
            get(|| async {
                let mut tags =
                    CacheTags::new(["ok", "é-non-ascii", "has space", "comma,inside", ""]);
                tags.push("x".repeat(1025));
                for i in 0..40 {
                    tags.push(format!("{i:02}-{}", "y".repeat(497)));
                }
                (tags, "big").into_response()
            }),
        )
        .layer(layer)
}

#[tokio::test]
async fn tags_from_handlers_are_merged_lowercased_and_written() {
    let server = TestServer::start(app(CacheTagLayer::new().surrogate_key(true))).await;
    let res = support::get(&http(), server.url("/product")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["cache-tag"],
        "legacy-tag,products,product:42,category:mugs"
    );
    assert_eq!(
        res.headers()["surrogate-key"],
        "legacy-tag products product:42 category:mugs"
    );
    assert_eq!(res.headers().get_all("cache-tag").iter().count(), 1);
}

#[tokio::test]
async fn responses_without_tags_get_no_tag_headers() {
    let server = TestServer::start(app(CacheTagLayer::new().surrogate_key(true))).await;
    let res = support::get(&http(), server.url("/plain")).await;
    assert!(res.headers().get("cache-tag").is_none());
    assert!(res.headers().get("surrogate-key").is_none());
}

#[tokio::test]
async fn over_limit_tags_are_dropped_and_counted_never_fatal() {
    let metrics = Metrics::new();
    let server = TestServer::start(app(CacheTagLayer::new().metrics(&metrics))).await;
    let res = support::get(&http(), server.url("/oversized")).await;
    assert_eq!(res.status(), 200);
    let header = res.headers()["cache-tag"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(header.len() <= 16 * 1024, "{} bytes", header.len());
    let kept: Vec<&str> = header.split(',').collect();
    assert_eq!(kept[0], "ok");
    assert!(kept
        .iter()
        .all(|t| t.len() <= 1024 && t.bytes().all(|b| b.is_ascii_graphic())));
    // 2 + 32 * 501 bytes fit in 16 KiB with separators; the other 8 long tags do not.
    assert_eq!(kept.len(), 1 + 32);
    let text = metrics.render();
    assert!(
        text.contains("cachefront_origin_cache_tags_emitted_total 33"),
        "{text}"
    );
    assert!(
        text.contains(r#"cachefront_origin_cache_tags_dropped_total{reason="header_full"} 8"#),
        "{text}"
    );
    assert!(text.contains(r#"cachefront_origin_cache_tags_dropped_total{reason="too_long"} 1"#));
    assert!(text.contains(r#"cachefront_origin_cache_tags_dropped_total{reason="invalid_char"} 3"#));
    assert!(text.contains(r#"cachefront_origin_cache_tags_dropped_total{reason="empty"} 1"#));
}

#[tokio::test]
async fn default_tags_are_added_to_tagged_responses_only() {
    let layer = CacheTagLayer::with_config(CacheTagConfig {
        default_tags: vec!["site".into()],
        ..Default::default()
    });
    let server = TestServer::start(app(layer)).await;
    let client = http();
    let res = support::get(&client, server.url("/product")).await;
    assert!(res.headers()["cache-tag"]
        .to_str()
        .expect("ascii")
        .ends_with(",site"));
    let res = support::get(&client, server.url("/plain")).await;
    assert!(res.headers().get("cache-tag").is_none());
}

#[tokio::test]
async fn a_handlers_own_surrogate_key_is_replaced_or_removed() {
    let server = TestServer::start(app(CacheTagLayer::new().surrogate_key(true))).await;
    let res = support::get(&http(), server.url("/own-surrogate")).await;
    assert_eq!(res.headers()["cache-tag"], "fresh");
    let keys: Vec<_> = res
        .headers()
        .get_all("surrogate-key")
        .iter()
        .cloned()
        .collect();
    assert_eq!(keys, ["fresh"]);

    let server = TestServer::start(app(CacheTagLayer::new().surrogate_key(false))).await;
    let res = support::get(&http(), server.url("/own-surrogate")).await;
    assert_eq!(res.headers()["cache-tag"], "fresh");
    assert!(res.headers().get("surrogate-key").is_none());
}
