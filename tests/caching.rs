//! Native tests of the whole pipeline over the in-memory platform: the same
//! decisions the worker makes in workerd, with time and the origin under the
//! test's control. Each test names the behaviour it proves.

mod common;

use cachefront::pipeline::Handled;
use cachefront::platform::OriginError;
use cachefront::Body;
use common::{absent, body, header, reply, status_of, Harness, Reply};
use futures::executor::block_on;
use http::Request;

/// An origin that numbers its answers per path and caches them for 60 s.
fn counting(
    cache_control: &'static str,
) -> impl Fn(&Request<Body>, u32) -> Result<Reply, OriginError> {
    move |_, n| reply(200, &[("cache-control", cache_control)], &format!("v{n}"))
}

#[test]
fn static_asset_is_served_without_touching_the_origin() {
    let h = Harness::new(counting("max-age=60"));
    let r = h.get("/");
    assert_eq!(r.response.status(), 200);
    assert_eq!(body(&r), "<h1>home</h1>");
    assert_eq!(status_of(&r), "cachefront; hit; detail=assets");
    assert_eq!(h.origin().hits(), 0);
}

#[test]
fn cacheable_miss_is_stored_then_served_from_memory_with_age() {
    let h = Harness::new(counting("public, max-age=60"));
    let miss = h.get("/products/1");
    assert_eq!(
        status_of(&miss),
        "cachefront; fwd=uri-miss; fwd-status=200; stored"
    );
    assert!(header(&miss, "server-timing").contains("origin;dur="));
    assert_eq!(header(&miss, "cachefront-origin"), "primary");

    h.advance(10);
    let hit = h.get("/products/1");
    assert_eq!(status_of(&hit), "cachefront; hit; ttl=50; detail=memory");
    assert_eq!(header(&hit, "age"), "10");
    assert_eq!(body(&hit), "v1");
    assert_eq!(
        header(&hit, "cache-control"),
        "public, max-age=60",
        "origin header restored"
    );
    assert!(
        absent(&hit, "x-cachefront-meta"),
        "internal metadata never leaks"
    );
    assert_eq!(h.origin_calls("/products/1"), 1);
}

#[test]
fn edge_tier_answers_once_the_memory_tier_lets_go() {
    let h = Harness::new(counting("max-age=300"));
    h.get("/p");
    h.advance(31); // memory residence is 30 s by default
    let hit = h.get("/p");
    assert_eq!(status_of(&hit), "cachefront; hit; ttl=269");
    let again = h.get("/p");
    assert_eq!(
        status_of(&again),
        "cachefront; hit; ttl=269; detail=memory",
        "edge hits are promoted"
    );
}

#[test]
fn asset_store_is_asked_once_per_path_that_is_not_an_asset() {
    let h = Harness::with_vars(&[("MEMORY_CACHE_BYTES", "0")], counting("max-age=300"));
    let assets = || h.pipeline.platform().assets.asked();
    h.get("/p");
    let after_miss = assets();
    let hit = h.get("/p");
    assert_eq!(status_of(&hit), "cachefront; hit; ttl=300");
    h.get("/p?page=2");
    assert_eq!(assets(), after_miss, "its 404 is remembered for the path");
    h.get("/"); // also loads the asset manifest, once per isolate
    let before = assets();
    h.get("/");
    assert_eq!(
        assets(),
        before + 1,
        "real assets are always served by the store"
    );
}

#[test]
fn expired_entry_without_validators_is_fetched_again() {
    let h = Harness::new(counting("max-age=5"));
    h.get("/x");
    h.advance(6);
    let r = h.get("/x");
    assert_eq!(
        status_of(&r),
        "cachefront; fwd=stale; fwd-status=200; stored"
    );
    assert_eq!(r.log.cache, "expired");
    assert_eq!(body(&r), "v2");
}

#[test]
fn no_store_response_is_never_a_hit() {
    let h = Harness::new(counting("no-store"));
    for _ in 0..3 {
        let r = h.get("/x");
        assert_eq!(
            status_of(&r),
            "cachefront; fwd=uri-miss; fwd-status=200; detail=no-store"
        );
    }
    assert_eq!(h.origin_calls("/x"), 3);
    assert_eq!(client_entries(&h), 0);
}

#[test]
fn set_cookie_response_is_not_stored() {
    let h = Harness::new(|_, n| {
        reply(
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "sid=1")],
            &format!("v{n}"),
        )
    });
    h.get("/account");
    let r = h.get("/account");
    assert_eq!(
        status_of(&r),
        "cachefront; fwd=uri-miss; fwd-status=200; detail=set-cookie"
    );
    assert_eq!(
        header(&r, "set-cookie"),
        "sid=1",
        "the client still gets its cookie"
    );
}

#[test]
fn set_cookie_named_in_no_cache_is_stored_without_the_cookie() {
    let h = Harness::new(|_, n| {
        reply(
            200,
            &[
                ("cache-control", "max-age=60, no-cache=\"set-cookie\""),
                ("set-cookie", "sid=1"),
            ],
            &format!("v{n}"),
        )
    });
    let first = h.get("/page");
    assert_eq!(header(&first, "set-cookie"), "sid=1");
    let second = h.get("/page");
    assert!(status_of(&second).starts_with("cachefront; hit"));
    assert!(
        absent(&second, "set-cookie"),
        "a stored cookie would leak to everyone"
    );
}

#[test]
fn query_order_and_ignored_parameters_share_one_entry() {
    let h = Harness::new(counting("max-age=60"));
    h.get("/search?b=2&a=1&utm_source=mail");
    let r = h.get("/search?a=1&b=2&fbclid=xyz");
    assert!(status_of(&r).starts_with("cachefront; hit"));
}

#[test]
fn head_is_served_from_a_cached_get_without_a_body() {
    let h = Harness::new(counting("max-age=60"));
    h.get("/page");
    let r = h.send("HEAD", "/page", &[], "");
    assert!(status_of(&r).starts_with("cachefront; hit"));
    assert!(r.response.body().is_empty());
    assert_eq!(h.origin_calls("/page"), 1);
}

#[test]
fn stale_entry_is_revalidated_and_a_304_refreshes_its_headers() {
    let h = Harness::new(|req, n| {
        if n > 1 {
            assert_eq!(
                req.headers()["if-none-match"],
                "\"v1\"",
                "revalidation sends the stored validator"
            );
            return reply(
                304,
                &[
                    ("etag", "\"v1\""),
                    ("cache-control", "max-age=120"),
                    ("x-build", "2"),
                ],
                "",
            );
        }
        reply(
            200,
            &[
                ("etag", "\"v1\""),
                ("cache-control", "max-age=10"),
                ("x-build", "1"),
            ],
            "body-v1",
        )
    });
    h.get("/doc");
    h.advance(11);
    let r = h.get("/doc");
    assert_eq!(
        status_of(&r),
        "cachefront; fwd=stale; fwd-status=304; ttl=120; stored"
    );
    assert_eq!(r.log.cache, "revalidated");
    assert_eq!(r.response.status(), 200);
    assert_eq!(body(&r), "body-v1");
    assert_eq!(header(&r, "x-build"), "2");
    assert_eq!(header(&r, "cache-control"), "max-age=120");
    h.advance(60);
    let fresh = h.get("/doc");
    assert!(
        status_of(&fresh).starts_with("cachefront; hit"),
        "{}",
        status_of(&fresh)
    );
    assert_eq!(header(&fresh, "x-build"), "2");
}

#[test]
fn revalidation_that_returns_a_new_body_replaces_the_entry() {
    let h = Harness::new(|_, n| {
        reply(
            200,
            &[
                ("etag", &format!("\"v{n}\"")),
                ("cache-control", "max-age=10"),
            ],
            &format!("v{n}"),
        )
    });
    h.get("/doc");
    h.advance(11);
    let r = h.get("/doc");
    assert_eq!(body(&r), "v2");
    assert_eq!(body(&h.get("/doc")), "v2");
}

#[test]
fn client_conditional_is_answered_304_from_a_fresh_entry() {
    let h = Harness::new(|_, n| {
        reply(
            200,
            &[("etag", "\"abc\""), ("cache-control", "max-age=60")],
            &format!("v{n}"),
        )
    });
    h.get("/doc");
    let r = h.get_with("/doc", &[("if-none-match", "\"abc\"")]);
    assert_eq!(r.response.status(), 304);
    assert!(r.response.body().is_empty());
    assert_eq!(header(&r, "etag"), "\"abc\"");
    assert!(status_of(&r).starts_with("cachefront; hit"));
    let other = h.get_with("/doc", &[("if-none-match", "\"zzz\"")]);
    assert_eq!(other.response.status(), 200);
}

#[test]
fn client_conditional_on_a_miss_still_fills_the_cache() {
    let h = Harness::new(|req, n| {
        assert!(
            req.headers().get("if-none-match").is_none(),
            "the client's validator must not reach the origin"
        );
        reply(
            200,
            &[("etag", "\"abc\""), ("cache-control", "max-age=60")],
            &format!("v{n}"),
        )
    });
    let r = h.get_with("/doc", &[("if-none-match", "\"abc\"")]);
    assert_eq!(r.response.status(), 304);
    assert!(status_of(&r).contains("stored"));
    assert_eq!(body(&h.get("/doc")), "v1");
}

#[test]
fn stale_while_revalidate_serves_stale_and_refreshes_in_the_background() {
    let h = Harness::new(counting("max-age=10, stale-while-revalidate=60"));
    h.get("/feed");
    h.advance(20);
    let stale = h.get("/feed");
    assert_eq!(
        status_of(&stale),
        "cachefront; hit; ttl=-10; detail=stale-while-revalidate"
    );
    assert_eq!(body(&stale), "v1");
    // The background refresh ran after the response (run_all in `send`).
    assert_eq!(h.origin_calls("/feed"), 2);
    let fresh = h.get("/feed");
    assert!(
        status_of(&fresh).starts_with("cachefront; hit; ttl="),
        "{}",
        status_of(&fresh)
    );
    assert_eq!(body(&fresh), "v2");
}

#[test]
fn stale_while_revalidate_window_ends() {
    let h = Harness::new(counting("max-age=10, stale-while-revalidate=5"));
    h.get("/feed");
    h.advance(30);
    let r = h.get("/feed");
    assert!(status_of(&r).starts_with("cachefront; fwd=stale"));
    assert_eq!(body(&r), "v2");
}

#[test]
fn stale_if_error_serves_stale_when_the_origin_returns_500() {
    let h = Harness::new(|_, n| {
        if n == 1 {
            reply(
                200,
                &[("cache-control", "max-age=10, stale-if-error=300")],
                "good",
            )
        } else {
            reply(500, &[], "boom")
        }
    });
    h.get("/p");
    h.advance(60);
    let r = h.get("/p");
    assert_eq!(r.response.status(), 200);
    assert_eq!(body(&r), "good");
    assert_eq!(
        status_of(&r),
        "cachefront; fwd=stale; fwd-status=500; ttl=-50; detail=stale-if-error"
    );
    assert_eq!(r.log.cache, "stale");
}

/// An origin that answers once with `cache_control`, then is unreachable
/// (or answers 500 when `fails_with_500`).
fn goes_away(
    cache_control: &'static str,
    fails_with_500: bool,
) -> impl Fn(&Request<Body>, u32) -> Result<Reply, OriginError> {
    move |_, n| match n {
        1 => reply(200, &[("cache-control", cache_control)], "good"),
        _ if fails_with_500 => reply(500, &[], "broken"),
        _ => Err(OriginError::Connect("connection refused".into())),
    }
}

#[test]
fn stale_entry_stands_in_while_no_origin_can_be_reached() {
    let h = Harness::with_vars(
        &[("STALE_IF_DISCONNECTED_SECS", "300")],
        goes_away("max-age=10", false),
    );
    h.get("/p");
    h.advance(100);
    let r = h.get("/p");
    assert_eq!(body(&r), "good");
    assert_eq!(
        status_of(&r),
        "cachefront; fwd=stale; ttl=-90; detail=stale-if-disconnected"
    );
    h.advance(300);
    assert_eq!(h.get("/p").response.status(), 502, "past the grace");
}

#[test]
fn disconnected_grace_does_not_cover_origin_errors_or_forbidding_directives() {
    let grace = [("STALE_IF_DISCONNECTED_SECS", "300")];
    let h = Harness::with_vars(&grace, goes_away("max-age=10", true));
    h.get("/p");
    h.advance(100);
    assert_eq!(
        h.get("/p").response.status(),
        500,
        "an answer is not a disconnection"
    );

    for cc in [
        "max-age=10, must-revalidate",
        "max-age=10, proxy-revalidate",
        "s-maxage=10",
        "max-age=10, no-cache",
    ] {
        let h = Harness::with_vars(&grace, goes_away(cc, false));
        h.get("/p");
        h.advance(100);
        assert_eq!(h.get("/p").response.status(), 502, "{cc}");
    }

    let h = Harness::with_vars(&grace, goes_away("max-age=10", false));
    h.get("/p");
    h.advance(100);
    let r = h.get_with("/p", &[("cache-control", "max-age=0")]);
    assert_eq!(
        r.response.status(),
        502,
        "the client asked for a fresh answer"
    );
}

#[test]
fn stale_if_error_grace_serves_stale_when_the_origin_is_unreachable() {
    // The origin gives no stale-if-error: the operator's default grace applies.
    let h = Harness::with_vars(
        &[
            ("STALE_IF_ERROR_SECS", "120"),
            ("STALE_IF_DISCONNECTED_SECS", "0"),
        ],
        |_, n| {
            if n == 1 {
                reply(200, &[("cache-control", "max-age=10")], "good")
            } else {
                Err(OriginError::Connect("connection refused".into()))
            }
        },
    );
    h.get("/p");
    h.advance(60);
    let r = h.get("/p");
    assert_eq!(body(&r), "good");
    assert_eq!(
        status_of(&r),
        "cachefront; fwd=stale; ttl=-50; detail=stale-if-error"
    );
    h.advance(200);
    let gone = h.get("/p");
    assert_eq!(
        gone.response.status(),
        502,
        "past the grace the error shows"
    );
}

#[test]
fn unreachable_origin_gets_a_json_502_that_is_not_cached() {
    let h = Harness::new(|_, _| Err(OriginError::Connect("connection refused".into())));
    let r = h.get("/down");
    assert_eq!(r.response.status(), 502);
    assert_eq!(header(&r, "content-type"), "application/json");
    assert_eq!(header(&r, "cache-control"), "no-store");
    assert_eq!(
        status_of(&r),
        "cachefront; fwd=uri-miss; detail=origin_unreachable"
    );
    let json: serde_json::Value = serde_json::from_slice(r.response.body()).expect("json body");
    assert_eq!(json["error"], "origin_unreachable");
    assert_eq!(json["origin"], "primary");
    assert_eq!(r.log.cache, "error");
    assert_eq!(client_entries(&h), 0);
}

#[test]
fn vary_keeps_one_variant_per_normalized_header_value() {
    let h = Harness::new(|req, _| {
        let lang = req
            .headers()
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        reply(
            200,
            &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
            &format!("hello in {lang}"),
        )
    });
    let en = h.get_with("/greet", &[("accept-language", "en")]);
    let de = h.get_with("/greet", &[("accept-language", "de")]);
    assert_eq!(body(&en), "hello in en");
    assert_eq!(body(&de), "hello in de");
    assert!(
        status_of(&de).starts_with("cachefront; fwd=vary-miss"),
        "{}",
        status_of(&de)
    );
    let en_again = h.get_with("/greet", &[("accept-language", "EN")]);
    assert!(status_of(&en_again).starts_with("cachefront; hit"));
    assert_eq!(body(&en_again), "hello in en");
    let de_again = h.get_with("/greet", &[("accept-language", "de")]);
    assert_eq!(body(&de_again), "hello in de");
    assert_eq!(h.origin_calls("/greet"), 2);
}

#[test]
fn successful_unsafe_methods_invalidate_the_uri_and_same_host_locations() {
    let h = Harness::new(|req, n| {
        if req.method() == http::Method::POST {
            return reply(
                201,
                &[
                    ("location", "/items/7"),
                    ("content-location", "https://elsewhere.example/items"),
                ],
                "created",
            );
        }
        reply(200, &[("cache-control", "max-age=600")], &format!("v{n}"))
    });
    h.get("/items");
    h.get("/items/7");
    h.get("/other");
    let post = h.send("POST", "/items", &[], "{\"name\":\"tent\"}");
    assert_eq!(status_of(&post), "cachefront; fwd=method; fwd-status=201");
    assert!(status_of(&h.get("/items")).starts_with("cachefront; fwd=uri-miss"));
    assert!(status_of(&h.get("/items/7")).starts_with("cachefront; fwd=uri-miss"));
    assert!(status_of(&h.get("/other")).starts_with("cachefront; hit"));
}

#[test]
fn failed_unsafe_methods_invalidate_nothing() {
    let h = Harness::new(|req, n| {
        if req.method() == http::Method::DELETE {
            return reply(500, &[], "nope");
        }
        reply(200, &[("cache-control", "max-age=600")], &format!("v{n}"))
    });
    h.get("/items");
    h.send("DELETE", "/items", &[], "");
    assert!(status_of(&h.get("/items")).starts_with("cachefront; hit"));
}

#[test]
fn range_request_is_served_as_206_from_a_cached_full_response() {
    let h = Harness::new(|_, _| {
        reply(
            200,
            &[("cache-control", "max-age=60"), ("etag", "\"r\"")],
            "0123456789",
        )
    });
    h.get("/file");
    let r = h.get_with("/file", &[("range", "bytes=2-5")]);
    assert_eq!(r.response.status(), 206);
    assert_eq!(header(&r, "content-range"), "bytes 2-5/10");
    assert_eq!(body(&r), "2345");
    assert!(status_of(&r).starts_with("cachefront; hit"));
    let bad = h.get_with("/file", &[("range", "bytes=50-")]);
    assert_eq!(bad.response.status(), 416);
}

#[test]
fn partial_content_from_the_origin_passes_through_uncached() {
    let h = Harness::new(|req, _| {
        assert_eq!(
            req.headers()["range"],
            "bytes=0-1",
            "a range miss is forwarded as it is"
        );
        reply(
            206,
            &[
                ("cache-control", "max-age=60"),
                ("content-range", "bytes 0-1/10"),
            ],
            "01",
        )
    });
    let r = h.get_with("/file", &[("range", "bytes=0-1")]);
    assert_eq!(r.response.status(), 206);
    assert_eq!(
        status_of(&r),
        "cachefront; fwd=partial; fwd-status=206; detail=partial"
    );
    assert_eq!(client_entries(&h), 0);
}

#[test]
fn cdn_cache_control_takes_precedence_and_is_not_forwarded() {
    let h = Harness::new(|_, n| {
        reply(
            200,
            &[
                ("cache-control", "private, max-age=5"),
                ("cdn-cache-control", "max-age=300"),
            ],
            &format!("v{n}"),
        )
    });
    let first = h.get("/page");
    assert!(
        status_of(&first).contains("stored"),
        "{}",
        status_of(&first)
    );
    assert!(
        absent(&first, "cdn-cache-control"),
        "targeted fields stop here"
    );
    assert_eq!(
        header(&first, "cache-control"),
        "private, max-age=5",
        "the browser keeps its own rules"
    );
    h.advance(100);
    let hit = h.get("/page");
    assert!(
        status_of(&hit).starts_with("cachefront; hit; ttl=200"),
        "{}",
        status_of(&hit)
    );
}

#[test]
fn cloudflare_cdn_cache_control_beats_cdn_cache_control() {
    let h = Harness::new(|_, n| {
        reply(
            200,
            &[
                ("cdn-cache-control", "no-store"),
                ("cloudflare-cdn-cache-control", "max-age=60"),
            ],
            &format!("v{n}"),
        )
    });
    h.get("/page");
    assert!(status_of(&h.get("/page")).starts_with("cachefront; hit"));
}

#[test]
fn concurrent_misses_share_one_origin_fetch() {
    let h = Harness::new(counting("max-age=60"));
    let release = h.origin().hold();
    let requests: Vec<_> = (0..5)
        .map(|_| {
            let req = Request::builder()
                .uri("https://shop.example/hot")
                .body(Body::new())
                .expect("request");
            h.pipeline.handle(req)
        })
        .collect();
    let all = futures::future::join_all(requests);
    let releaser = async move {
        let _ = release.send(());
    };
    let (answers, ()) = block_on(futures::future::join(all, releaser));
    assert_eq!(
        h.origin_calls("/hot"),
        1,
        "one fetch for five concurrent misses"
    );
    let collapsed = answers
        .iter()
        .filter(|a| a.log.cache_status.contains("collapsed"))
        .count();
    assert_eq!(collapsed, 4);
    assert!(answers.iter().all(|a| body_bytes(a) == b"v1"));
}

fn body_bytes(h: &Handled) -> &[u8] {
    h.response.body().as_ref()
}

#[test]
fn uncacheable_answers_are_not_shared_between_concurrent_requests() {
    let h = Harness::new(|_, n| {
        reply(
            200,
            &[("cache-control", "private")],
            &format!("user data {n}"),
        )
    });
    let release = h.origin().hold();
    let requests: Vec<_> = (0..3)
        .map(|_| {
            h.pipeline.handle(
                Request::builder()
                    .uri("https://shop.example/me")
                    .body(Body::new())
                    .expect("request"),
            )
        })
        .collect();
    let (answers, ()) = block_on(futures::future::join(
        futures::future::join_all(requests),
        async move {
            let _ = release.send(());
        },
    ));
    assert_eq!(
        h.origin_calls("/me"),
        3,
        "private answers are fetched per request"
    );
    let bodies: std::collections::HashSet<_> =
        answers.iter().map(|a| body_bytes(a).to_vec()).collect();
    assert_eq!(bodies.len(), 3);
}

#[test]
fn only_if_cached_miss_is_a_504() {
    let h = Harness::new(counting("max-age=60"));
    let r = h.get_with("/never", &[("cache-control", "only-if-cached")]);
    assert_eq!(r.response.status(), 504);
    assert_eq!(h.origin_calls("/never"), 0);
    h.get("/known");
    let hit = h.get_with("/known", &[("cache-control", "only-if-cached")]);
    assert_eq!(hit.response.status(), 200);
}

#[test]
fn request_directives_force_revalidation() {
    let h = Harness::new(counting("max-age=600"));
    h.get("/page");
    h.advance(100);
    let r = h.get_with("/page", &[("cache-control", "max-age=50")]);
    assert_eq!(
        status_of(&r),
        "cachefront; fwd=request; fwd-status=200; stored"
    );
    let nc = h.get_with("/page", &[("pragma", "no-cache")]);
    assert!(status_of(&nc).starts_with("cachefront; fwd=request"));
    assert_eq!(body(&nc), "v3");
}

#[test]
fn max_stale_accepts_a_stale_entry() {
    let h = Harness::new(counting("max-age=10"));
    h.get("/page");
    h.advance(30);
    let r = h.get_with("/page", &[("cache-control", "max-stale=60")]);
    assert_eq!(status_of(&r), "cachefront; hit; ttl=-20; detail=max-stale");
    assert_eq!(h.origin_calls("/page"), 1);
}

#[test]
fn get_with_a_body_bypasses_the_cache() {
    let h = Harness::new(counting("max-age=60"));
    let r = h.send("GET", "/search", &[], "{\"q\":\"tent\"}");
    assert_eq!(
        status_of(&r),
        "cachefront; fwd=bypass; fwd-status=200; detail=get-with-body"
    );
    assert_eq!(client_entries(&h), 0);
}

#[test]
fn authorized_request_is_not_stored_without_public() {
    let h = Harness::new(counting("max-age=60"));
    h.get_with("/me", &[("authorization", "Bearer t")]);
    let r = h.get_with("/me", &[("authorization", "Bearer t")]);
    assert!(
        status_of(&r).contains("detail=authorization"),
        "{}",
        status_of(&r)
    );
}

#[test]
fn poisoning_headers_do_not_reach_the_origin() {
    let h = Harness::new(counting("max-age=60"));
    h.get_with(
        "/page",
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-original-url", "/admin"),
            ("x-http-method-override", "DELETE"),
        ],
    );
    let received = h.origin().received();
    let (_, uri, headers) = &received[0];
    assert_eq!(uri.to_string(), "http://127.0.0.1:3000/page");
    assert_eq!(headers["x-forwarded-host"], "shop.example");
    assert!(headers.get("x-original-url").is_none());
    assert!(headers.get("x-http-method-override").is_none());
}

#[test]
fn keyed_override_header_is_forwarded_and_splits_the_cache() {
    let h = Harness::with_vars(&[("CACHE_KEY_HEADERS", "x-forwarded-host")], |req, _| {
        let host = req
            .headers()
            .get("x-forwarded-host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        reply(200, &[("cache-control", "max-age=60")], &host)
    });
    let a = h.get_with("/tenant", &[("x-forwarded-host", "a.example")]);
    let b = h.get_with("/tenant", &[("x-forwarded-host", "b.example")]);
    assert_eq!(body(&a), "a.example");
    assert_eq!(body(&b), "b.example");
    assert!(
        status_of(&h.get_with("/tenant", &[("x-forwarded-host", "a.example")]))
            .starts_with("cachefront; hit")
    );
}

#[test]
fn log_line_describes_the_request() {
    let h = Harness::new(counting("max-age=60"));
    let r = h.get("/products/2");
    assert_eq!(r.log.method, "GET");
    assert_eq!(r.log.path, "/products/2");
    assert_eq!(r.log.status, 200);
    assert_eq!(r.log.cache, "miss");
    assert_eq!(r.log.origin.as_deref(), Some("primary"));
    let line = serde_json::to_string(&r.log).expect("serializes");
    assert!(line.contains("\"cache_status\":\"cachefront; fwd=uri-miss; fwd-status=200; stored\""));
}

#[test]
fn small_entries_are_answered_from_the_kv_tier_in_another_data_centre() {
    let h = Harness::with_vars(
        &[("KV_CACHE_MAX_OBJECT_BYTES", "65536")],
        counting("max-age=600"),
    );
    h.get("/global");
    assert_eq!(
        h.pipeline.platform().global.len(),
        1,
        "small entries go to KV too"
    );
    // Another data centre: an empty Cache API and a new isolate, same KV.
    let elsewhere = h.pipeline.with_fresh_isolate();
    for key in h.pipeline.platform().cache.keys() {
        futures::executor::block_on(cachefront::platform::CacheStore::delete(
            &h.pipeline.platform().cache,
            &key,
        ))
        .expect("delete");
    }
    let request = || {
        Request::builder()
            .uri("https://shop.example/global")
            .body(Body::new())
            .expect("request")
    };
    let first = block_on(elsewhere.handle(request()));
    block_on(h.pipeline.platform().tasks.run_all());
    assert_eq!(
        first.log.cache_status,
        "cachefront; hit; ttl=600; detail=kv"
    );
    assert_eq!(first.log.tier, "kv");
    assert_eq!(String::from_utf8_lossy(first.response.body()), "v1");
    assert_eq!(
        client_entries(&h),
        1,
        "a KV hit is promoted to the Cache API"
    );
    let second = block_on(elsewhere.handle(request()));
    assert_eq!(second.log.tier, "memory");
    assert_eq!(h.origin_calls("/global"), 1);
}

#[test]
fn kv_tier_is_off_by_default_and_skips_large_entries() {
    let h = Harness::new(counting("max-age=600"));
    h.get("/x");
    assert!(
        h.pipeline.platform().global.is_empty(),
        "off unless KV_CACHE_MAX_OBJECT_BYTES is set"
    );
    let small_only = Harness::with_vars(
        &[("KV_CACHE_MAX_OBJECT_BYTES", "1")],
        counting("max-age=600"),
    );
    small_only.get("/x");
    assert!(
        small_only.pipeline.platform().global.is_empty(),
        "bodies over the limit stay out of KV"
    );
}

#[test]
fn unsafe_methods_also_invalidate_the_kv_tier() {
    let h = Harness::with_vars(&[("KV_CACHE_MAX_OBJECT_BYTES", "65536")], |req, n| {
        if req.method() == http::Method::POST {
            return reply(204, &[], "");
        }
        reply(200, &[("cache-control", "max-age=600")], &format!("v{n}"))
    });
    h.get("/doc");
    assert_eq!(h.pipeline.platform().global.len(), 1);
    h.send("POST", "/doc", &[], "{}");
    assert!(h.pipeline.platform().global.is_empty());
}

/// Responses in the Cache API, leaving out the tag registry's records (its
/// shard views and shared answers live there too).
fn client_entries(h: &Harness) -> usize {
    h.pipeline
        .platform()
        .cache
        .keys()
        .iter()
        .filter(|key| {
            !cachefront::purge::registry::is_registry_record(key)
                && !cachefront::cache::collapse::is_claim(key)
        })
        .count()
}
