//! No error answer is storable — axum's own rejections and the fallback included — and
//! every request carries an id, kept from the client when sane.
mod support;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use cachefront_origin::hygiene::{NoStoreOnErrorLayer, RequestId, RequestIdLayer};
use support::{http, TestServer};

fn app() -> Router {
    Router::new()
        .route(
            "/products/{id}",
            get(|Path(id): Path<i64>| async move { format!("product {id}") }),
        )
        .route(
            "/orders",
            post(|Json(v): Json<serde_json::Value>| async move { Json(v) }),
        )
        .route(
            "/cached-error",
            get(|| async {
                (
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    [(http::header::CACHE_CONTROL, "public, max-age=600")],
                    "boom",
                )
            }),
        )
        .route(
            "/whoami",
            get(|axum::Extension(id): axum::Extension<RequestId>| async move { id.0 }),
        )
        .route(
            "/seen",
            get(
                |headers: axum::http::HeaderMap,
                 axum::Extension(id): axum::Extension<RequestId>| async move {
                    let seen: Vec<&str> = headers
                        .get_all("x-request-id")
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .collect();
                    format!("{}|{}", seen.join(","), id.0)
                },
            ),
        )
        .layer(NoStoreOnErrorLayer::new())
        .layer(RequestIdLayer::new())
}

/// `GET url` carrying one `x-request-id` header per entry of `ids`, in order.
async fn get_with_ids(client: &reqwest::Client, url: String, ids: &[&str]) -> reqwest::Response {
    let mut req = client.get(&url);
    for id in ids {
        req = req.header("x-request-id", *id);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// The response's (first) `x-request-id`, or "" when it is not text.
fn echoed_id(res: &reqwest::Response) -> String {
    res.headers()["x-request-id"]
        .to_str()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn every_error_answer_is_no_store_including_axum_rejections_and_the_fallback() {
    let server = TestServer::start(app()).await;
    let client = http();
    let cases = [
        (client.get(server.url("/products/not-a-number")), 400),
        (client.post(server.url("/orders")).body("{}"), 415),
        (
            client
                .post(server.url("/orders"))
                .header("content-type", "application/json")
                .body("{not json"),
            400,
        ),
        (client.delete(server.url("/products/1")), 405),
        (client.get(server.url("/no-such-page")), 404),
        (client.get(server.url("/cached-error")), 500),
    ];
    for (req, want) in cases {
        let res = req.send().await.expect("send");
        let url = res.url().clone();
        assert_eq!(res.status().as_u16(), want, "{url}");
        assert_eq!(
            res.headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
            Some("no-store"),
            "{url}"
        );
    }
    let ok = support::get(&client, server.url("/products/1")).await;
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers().get("cache-control").is_none(),
        "successes are left alone"
    );
}

#[tokio::test]
async fn request_id_is_kept_when_sane_replaced_when_not_and_echoed() {
    let server = TestServer::start(app()).await;
    let client = http();
    let res = get_with_ids(&client, server.url("/whoami"), &["abc-123"]).await;
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    assert_eq!(res.text().await.expect("body"), "abc-123");

    let res = get_with_ids(&client, server.url("/whoami"), &["evil value\twith tabs"]).await;
    let echoed = echoed_id(&res);
    assert_ne!(echoed, "evil value\twith tabs");
    assert_eq!(res.text().await.expect("body"), echoed);

    let a = support::get(&client, server.url("/no-such-page")).await;
    let b = support::get(&client, server.url("/no-such-page")).await;
    assert_ne!(
        a.headers()["x-request-id"],
        b.headers()["x-request-id"],
        "errors get ids too"
    );
}

#[tokio::test]
async fn the_handler_sees_one_id_on_the_request_the_same_as_its_extension() {
    let server = TestServer::start(app()).await;
    let client = http();
    // Repeated header: the first sane value counts, the others are dropped.
    let res = get_with_ids(&client, server.url("/seen"), &["first-1", "second-2"]).await;
    let echoed: Vec<_> = res
        .headers()
        .get_all("x-request-id")
        .iter()
        .cloned()
        .collect();
    assert_eq!(echoed, ["first-1"]);
    assert_eq!(res.text().await.expect("body"), "first-1|first-1");

    // A rejected first value is replaced by a new id, everywhere.
    let res = get_with_ids(&client, server.url("/seen"), &["bad value", "second-2"]).await;
    let echoed = echoed_id(&res);
    assert!(!echoed.is_empty() && echoed != "second-2", "{echoed}");
    assert_eq!(
        res.text().await.expect("body"),
        format!("{echoed}|{echoed}")
    );

    // None sent: the generated id is on the request too.
    let res = support::get(&client, server.url("/seen")).await;
    let echoed = echoed_id(&res);
    assert!(echoed.contains('-'), "prefix-sequence: {echoed}");
    assert_eq!(
        res.text().await.expect("body"),
        format!("{echoed}|{echoed}")
    );
}
