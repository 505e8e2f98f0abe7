//! Native tests of the whole pipeline over the in-memory platform: the same
//! decisions the worker makes in workerd, with time and the origin under the
//! test's control.

use cachefront::config::Config;
use cachefront::memory::{MemoryAssets, MemoryOrigin, MemoryPlatform};
use cachefront::pipeline::{Handled, Pipeline};
use cachefront::platform::OriginError;
use cachefront::Body;
use futures::executor::block_on;
use http::{Request, Response};

const T0: u64 = 1_790_000_000_000;

fn config() -> Config {
    Config::from_vars(|name| match name {
        "ORIGINS" => Some(r#"[{"name":"primary","url":"http://127.0.0.1:3000"}]"#.to_owned()),
        _ => None,
    })
    .expect("valid config")
}

/// An origin that answers every path with the cache-control the path asks for:
/// `/cc/<directives>/…` (with `_` for spaces), counting its hits in the body.
fn origin() -> MemoryOrigin {
    let counter = std::cell::Cell::new(0u32);
    MemoryOrigin::new(move |_, req| {
        counter.set(counter.get() + 1);
        let path = req.uri().path();
        if path.starts_with("/down") {
            return Err(OriginError::Connect("connection refused".into()));
        }
        let cc = path
            .strip_prefix("/cc/")
            .and_then(|rest| rest.split('/').next())
            .map(|d| d.replace('_', " "))
            .unwrap_or_else(|| "public, max-age=60".into());
        Ok(Response::builder()
            .status(200)
            .header("cache-control", cc)
            .header("content-type", "text/plain")
            .body(Body::from(format!("response #{}", counter.get())))
            .expect("response"))
    })
}

fn pipeline() -> Pipeline<MemoryPlatform> {
    let assets = MemoryAssets::new([(
        "/index.html",
        "text/html",
        Body::from_static(b"<h1>home</h1>"),
    )]);
    Pipeline::new(config(), MemoryPlatform::new(origin(), assets, T0))
}

fn get(p: &Pipeline<MemoryPlatform>, uri: &str) -> Handled {
    request(p, "GET", uri, &[])
}

fn request(
    p: &Pipeline<MemoryPlatform>,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> Handled {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("https://shop.example{uri}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let handled = block_on(p.handle(builder.body(Body::new()).expect("request")));
    block_on(p.platform().tasks.run_all());
    handled
}

fn header<'a>(h: &'a Handled, name: &str) -> &'a str {
    h.response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn body(h: &Handled) -> String {
    String::from_utf8_lossy(h.response.body()).into_owned()
}

#[test]
fn static_asset_is_served_without_touching_the_origin() {
    let p = pipeline();
    let h = get(&p, "/");
    assert_eq!(h.response.status(), 200);
    assert_eq!(body(&h), "<h1>home</h1>");
    assert_eq!(header(&h, "cache-status"), "cachefront; hit; detail=assets");
    assert_eq!(p.platform().origin.hits(), 0);
}

#[test]
fn cacheable_miss_is_stored_then_served_as_a_hit() {
    let p = pipeline();
    let miss = get(&p, "/products/1");
    assert_eq!(
        header(&miss, "cache-status"),
        "cachefront; fwd=uri-miss; fwd-status=200; stored"
    );
    assert!(header(&miss, "server-timing").contains("origin;dur="));
    assert_eq!(header(&miss, "cachefront-origin"), "primary");

    p.platform().clock.advance_secs(10);
    let hit = get(&p, "/products/1");
    assert_eq!(header(&hit, "cache-status"), "cachefront; hit; ttl=50");
    assert_eq!(header(&hit, "age"), "10");
    assert_eq!(body(&hit), body(&miss));
    assert_eq!(
        header(&hit, "cache-control"),
        "public, max-age=60",
        "origin header restored"
    );
    assert!(
        header(&hit, "x-cachefront-meta").is_empty(),
        "internal metadata never leaks"
    );
    assert_eq!(p.platform().origin.hits(), 1);
}

#[test]
fn expired_entry_goes_forward_as_stale_and_is_replaced() {
    let p = pipeline();
    get(&p, "/cc/max-age=5/x");
    p.platform().clock.advance_secs(6);
    let h = get(&p, "/cc/max-age=5/x");
    assert_eq!(
        header(&h, "cache-status"),
        "cachefront; fwd=stale; fwd-status=200; stored"
    );
    assert_eq!(body(&h), "response #2");
    let again = get(&p, "/cc/max-age=5/x");
    assert!(header(&again, "cache-status").starts_with("cachefront; hit"));
}

#[test]
fn no_store_response_is_never_a_hit() {
    let p = pipeline();
    for _ in 0..3 {
        let h = get(&p, "/cc/no-store/x");
        assert_eq!(
            header(&h, "cache-status"),
            "cachefront; fwd=uri-miss; fwd-status=200; detail=no-store"
        );
    }
    assert_eq!(p.platform().origin.hits(), 3);
    assert!(p.platform().cache.is_empty());
}

#[test]
fn query_order_shares_one_entry() {
    let p = pipeline();
    get(&p, "/search?b=2&a=1");
    let h = get(&p, "/search?a=1&b=2");
    assert!(header(&h, "cache-status").starts_with("cachefront; hit"));
}

#[test]
fn head_is_served_from_a_cached_get_without_a_body() {
    let p = pipeline();
    get(&p, "/page");
    let h = request(&p, "HEAD", "/page", &[]);
    assert!(header(&h, "cache-status").starts_with("cachefront; hit"));
    assert!(h.response.body().is_empty());
    assert_eq!(p.platform().origin.hits(), 1);
}

#[test]
fn unsafe_methods_bypass_the_cache() {
    let p = pipeline();
    let h = request(&p, "POST", "/form", &[]);
    assert_eq!(
        header(&h, "cache-status"),
        "cachefront; fwd=method; fwd-status=200"
    );
    assert!(p.platform().cache.is_empty());
}

#[test]
fn client_no_cache_goes_to_the_origin_and_refreshes_the_entry() {
    let p = pipeline();
    get(&p, "/page");
    let h = request(&p, "GET", "/page", &[("cache-control", "no-cache")]);
    assert_eq!(
        header(&h, "cache-status"),
        "cachefront; fwd=request; fwd-status=200; stored"
    );
    assert_eq!(body(&h), "response #2");
    assert_eq!(body(&get(&p, "/page")), "response #2");
}

#[test]
fn unreachable_origin_gets_a_json_502_that_is_not_cached() {
    let p = pipeline();
    let h = get(&p, "/down");
    assert_eq!(h.response.status(), 502);
    assert_eq!(header(&h, "content-type"), "application/json");
    assert_eq!(header(&h, "cache-control"), "no-store");
    assert_eq!(
        header(&h, "cache-status"),
        "cachefront; fwd=uri-miss; detail=origin_unreachable"
    );
    let json: serde_json::Value = serde_json::from_slice(h.response.body()).expect("json body");
    assert_eq!(json["error"], "origin_unreachable");
    assert_eq!(json["origin"], "primary");
    assert_eq!(h.log.cache, "error");
    assert!(p.platform().cache.is_empty());
}

#[test]
fn poisoning_headers_do_not_reach_the_origin() {
    let p = pipeline();
    request(
        &p,
        "GET",
        "/page",
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-original-url", "/admin"),
        ],
    );
    let received = p.platform().origin.received();
    let (_, uri, headers) = &received[0];
    assert_eq!(uri.to_string(), "http://127.0.0.1:3000/page");
    assert_eq!(headers["x-forwarded-host"], "shop.example");
    assert!(headers.get("x-original-url").is_none());
}

#[test]
fn log_line_describes_the_request() {
    let p = pipeline();
    let h = get(&p, "/products/2");
    assert_eq!(h.log.method, "GET");
    assert_eq!(h.log.path, "/products/2");
    assert_eq!(h.log.status, 200);
    assert_eq!(h.log.cache, "miss");
    assert_eq!(h.log.origin.as_deref(), Some("primary"));
    let line = serde_json::to_string(&h.log).expect("serializes");
    assert!(line.contains("\"cache_status\":\"cachefront; fwd=uri-miss; fwd-status=200; stored\""));
}
