//! Native tests of the trust guarantees (issue #13), over the in-memory
//! platform: one user's answer never reaches another, and nothing a client
//! sends can change what the origin returns without changing the key.
//! `tests/e2e/poisoning.test.mjs` checks the same classes in workerd.

mod common;

use cachefront::Body;
use common::{body, reply, status_of, Harness};
use futures::executor::block_on;
use http::Request;

const TOKEN: &str = "purge-token-0123456789";

/// A request field as the stand-in origin reads it, or `default`.
fn field(req: &Request<Body>, name: &str, default: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(default)
        .to_owned()
}

/// A careless origin: per-user answers with validators only, as framework
/// defaults send them; the user is whatever the request's credentials say.
fn per_user_origin() -> Harness {
    Harness::with_vars(&[("STALE_IF_DISCONNECTED_SECS", "86400")], |req, _| {
        let user = req
            .headers()
            .get("cookie")
            .or_else(|| req.headers().get("authorization"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous")
            .to_owned();
        reply(
            200,
            &[
                ("etag", "\"v1\""),
                ("last-modified", "Thu, 01 Jan 2015 00:00:00 GMT"),
            ],
            &format!("account of {user}"),
        )
    })
}

#[test]
fn cookie_answer_with_validators_only_is_never_served_to_anyone_else() {
    let h = per_user_origin();
    let a = h.get_with("/api/me", &[("cookie", "session=alice")]);
    assert_eq!(body(&a), "account of session=alice");
    assert!(status_of(&a).contains("detail=cookie"), "{}", status_of(&a));
    for headers in [
        &[][..],
        &[("cache-control", "max-stale")][..],
        &[("cache-control", "max-stale=999999")][..],
    ] {
        let b = h.get_with("/api/me", headers);
        assert_eq!(body(&b), "account of anonymous", "{headers:?}");
    }
}

#[test]
fn authorization_answer_with_must_revalidate_is_not_shared() {
    let h = Harness::new(|req, _| {
        let user = field(req, "authorization", "anonymous");
        reply(
            200,
            &[("cache-control", "max-age=60, must-revalidate")],
            &format!("data of {user}"),
        )
    });
    h.get_with("/api/orders", &[("authorization", "Bearer alice")]);
    let b = h.get("/api/orders");
    assert_eq!(body(&b), "data of anonymous");
}

#[test]
fn a_private_answer_in_flight_is_not_handed_to_a_waiting_anonymous_request() {
    let h = Harness::new(|req, _| {
        let user = field(req, "authorization", "anonymous");
        reply(
            200,
            &[("cache-control", "max-age=60, must-revalidate")],
            &format!("data of {user}"),
        )
    });
    let release = h.origin().hold();
    let leader = Request::builder()
        .uri("https://shop.example/api/slow")
        .header("authorization", "Bearer alice")
        .body(Body::new())
        .expect("request");
    let waiter = Request::builder()
        .uri("https://shop.example/api/slow")
        .body(Body::new())
        .expect("request");
    let (answers, ()) = block_on(futures::future::join(
        futures::future::join(h.pipeline.handle(leader), h.pipeline.handle(waiter)),
        async move {
            let _ = release.send(());
        },
    ));
    let waiter_body = String::from_utf8_lossy(answers.1.response.body()).into_owned();
    assert_eq!(waiter_body, "data of anonymous");
    assert_eq!(h.origin_calls("/api/slow"), 2);
}

#[test]
fn a_waiter_asking_for_a_fresh_answer_fetches_for_itself() {
    let h = Harness::new(|_, n| {
        reply(
            200,
            &[("cache-control", "public, max-age=60")],
            &format!("v{n}"),
        )
    });
    let release = h.origin().hold();
    let leader = Request::builder()
        .uri("https://shop.example/news")
        .body(Body::new())
        .expect("request");
    let waiter = Request::builder()
        .uri("https://shop.example/news")
        .header("cache-control", "no-cache")
        .body(Body::new())
        .expect("request");
    let (answers, ()) = block_on(futures::future::join(
        futures::future::join(h.pipeline.handle(leader), h.pipeline.handle(waiter)),
        async move {
            let _ = release.send(());
        },
    ));
    assert!(
        !status_of(&answers.1).contains("collapsed"),
        "{}",
        status_of(&answers.1)
    );
    assert_eq!(h.origin_calls("/news"), 2);
}

#[test]
fn a_304_that_forbids_storing_drops_the_entry() {
    let h = Harness::new(|req, n| {
        let conditional = req.headers().contains_key("if-none-match");
        match n {
            1 => reply(
                200,
                &[("cache-control", "max-age=1"), ("etag", "\"a\"")],
                "v1",
            ),
            2 => reply(304, &[("cache-control", "no-store"), ("etag", "\"a\"")], ""),
            _ if conditional => reply(200, &[("cache-control", "max-age=60")], "old entry kept"),
            _ => reply(200, &[("cache-control", "max-age=60")], "v3"),
        }
    });
    h.get("/doc");
    h.advance(5);
    let revalidated = h.get("/doc");
    assert_eq!(body(&revalidated), "v1");
    assert!(
        status_of(&revalidated).contains("detail=no-store")
            && !status_of(&revalidated).contains("stored"),
        "{}",
        status_of(&revalidated)
    );
    let next = h.get("/doc");
    assert_eq!(
        body(&next),
        "v3",
        "the old entry is gone: {}",
        status_of(&next)
    );
}

#[test]
fn a_304_that_brings_a_new_vary_is_not_stored() {
    let h = Harness::new(|_, n| match n {
        1 => reply(
            200,
            &[("cache-control", "max-age=1"), ("etag", "\"a\"")],
            "v1",
        ),
        2 => reply(304, &[("vary", "cookie"), ("etag", "\"a\"")], ""),
        _ => reply(200, &[("cache-control", "max-age=60")], "v3"),
    });
    h.get("/doc");
    h.advance(5);
    let revalidated = h.get("/doc");
    assert!(
        status_of(&revalidated).contains("detail=vary-changed"),
        "{}",
        status_of(&revalidated)
    );
    assert_eq!(body(&h.get("/doc")), "v3");
}

#[test]
fn server_errors_with_freshness_are_not_stored() {
    let h = Harness::new(|_, n| {
        reply(
            503,
            &[("cache-control", "public, max-age=600")],
            &format!("down {n}"),
        )
    });
    h.get("/busy");
    let second = h.get("/busy");
    assert_eq!(body(&second), "down 2");
    assert!(
        status_of(&second).contains("detail=error-status"),
        "{}",
        status_of(&second)
    );
}

#[test]
fn an_error_page_passed_on_after_failover_is_not_stored() {
    let origins = r#"[{"name":"a","url":"http://127.0.0.1:3001"},{"name":"b","url":"http://127.0.0.1:3002"}]"#;
    let h = Harness::with_origins(
        origins,
        &[("ORIGIN_FAILURE_STATUSES", "404,503")],
        |_, _, n| {
            reply(
                404,
                &[("cache-control", "public, max-age=600")],
                &format!("missing {n}"),
            )
        },
    );
    h.get("/gone");
    let again = h.get("/gone");
    assert!(
        status_of(&again).contains("detail=error-status"),
        "{}",
        status_of(&again)
    );
    assert_eq!(h.origin_calls("/gone"), 4);
}

#[test]
fn the_only_origins_explicit_error_page_is_stored_only_when_the_operator_allows_it() {
    let answer = |_: &Request<Body>, n: u32| {
        reply(
            503,
            &[("cache-control", "public, max-age=600")],
            &format!("down {n}"),
        )
    };
    // Defaults: a 5xx is never stored.
    let h = Harness::with_vars(&[], answer);
    h.get("/down");
    let again = h.get("/down");
    assert!(
        status_of(&again).contains("detail=error-status"),
        "{}",
        status_of(&again)
    );
    assert_eq!(h.origin_calls("/down"), 2);
    // Allowed: one origin asked once, no failover, so its own explicitly
    // fresh 503 is stored like the origin said.
    let h = Harness::with_vars(&[("CACHE_SERVER_ERRORS", "explicit")], answer);
    h.get("/down");
    let again = h.get("/down");
    assert!(status_of(&again).contains("hit"), "{}", status_of(&again));
    assert_eq!(h.origin_calls("/down"), 1);
}

#[test]
fn bypass_cookies_neither_read_nor_write_the_cache() {
    let h = Harness::with_vars(&[("BYPASS_COOKIES", "session*")], |req, n| {
        let who = if req.headers().contains_key("cookie") {
            "member"
        } else {
            "guest"
        };
        reply(
            200,
            &[("cache-control", "public, max-age=600")],
            &format!("{who} {n}"),
        )
    });
    assert_eq!(body(&h.get("/home")), "guest 1");
    let member = h.get_with("/home", &[("cookie", "theme=dark; sessionid=42")]);
    assert_eq!(body(&member), "member 2");
    assert_eq!(
        status_of(&member),
        "cachefront; fwd=bypass; fwd-status=200; detail=bypass-cookie"
    );
    let guest = h.get("/home");
    assert_eq!(body(&guest), "guest 1");
    assert!(status_of(&guest).starts_with("cachefront; hit"));
    let other_cookie = h.get_with("/home", &[("cookie", "theme=dark")]);
    assert_eq!(
        body(&other_cookie),
        "guest 1",
        "other cookies still read the cache"
    );
}

#[test]
fn the_origin_sees_exactly_the_keyed_query() {
    let h = Harness::new(|req, _| {
        let query = req.uri().query().unwrap_or("").to_owned();
        reply(
            200,
            &[("cache-control", "public, max-age=600")],
            &format!("query {query}"),
        )
    });
    let cloaked = h.get("/jsonp?callback=ok&utm_content=x;callback=EVIL");
    assert_eq!(body(&cloaked), "query callback=ok");
    let victim = h.get("/jsonp?callback=ok");
    assert_eq!(body(&victim), "query callback=ok");
    assert!(status_of(&victim).starts_with("cachefront; hit"));
    let received = h.origin().received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].1.query(), Some("callback=ok"));
}

#[test]
fn unkeyed_client_headers_never_reach_the_origin() {
    let h = Harness::new(|req, _| {
        let mut seen: Vec<String> = req
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.to_str().unwrap_or("?")))
            .collect();
        seen.sort();
        reply(
            200,
            &[("cache-control", "public, max-age=600")],
            &seen.join("\n"),
        )
    });
    let attack = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-server", "evil.example"),
        ("x-forwarded-prefix", "/evil"),
        ("x-forwarded-ssl", "off"),
        ("x-forwarded-uri", "/evil"),
        ("x-forwarded-port", "1337"),
        ("x-forwarded-scheme", "http"),
        ("x-forwarded-proto", "http"),
        ("x-original-host", "evil.example"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-http-method-override", "DELETE"),
        ("front-end-https", "off"),
        ("forwarded", "host=evil.example"),
        ("x-real-ip", "6.6.6.6"),
        ("true-client-ip", "6.6.6.6"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-host", "evil.example"),
    ];
    let poisoned = h.get_with("/page", &attack);
    let text = body(&poisoned);
    for marker in ["evil", "6.6.6.6", "/admin", "DELETE", "1337", "=off"] {
        assert!(
            !text.contains(marker),
            "{marker} reached the origin:\n{text}"
        );
    }
    assert!(text.contains("x-forwarded-host=shop.example"), "{text}");
    assert!(
        text.lines().any(|l| l == "x-forwarded-proto=https"),
        "{text}"
    );
}

#[test]
fn origin_is_part_of_the_key() {
    let h = Harness::new(|req, _| {
        let origin = field(req, "origin", "none");
        reply(
            200,
            &[
                ("cache-control", "public, max-age=600"),
                ("access-control-allow-origin", origin.as_str()),
            ],
            "{}",
        )
    });
    h.get_with("/api/catalog", &[("origin", "https://evil.example")]);
    let friendly = h.get_with("/api/catalog", &[("origin", "https://shop.example")]);
    assert_eq!(
        friendly.response.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let no_origin = h.get("/api/catalog");
    assert_eq!(
        no_origin.response.headers()["access-control-allow-origin"],
        "none"
    );
    let same = h.get_with("/api/catalog", &[("origin", "HTTPS://EVIL.example")]);
    assert!(
        status_of(&same).starts_with("cachefront; hit"),
        "normalised: {}",
        status_of(&same)
    );
}

#[test]
fn the_scheme_is_part_of_the_key() {
    let h = Harness::new(|req, _| {
        if req
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v == "http")
        {
            reply(
                301,
                &[
                    ("cache-control", "public, max-age=600"),
                    ("location", "https://shop.example/p"),
                ],
                "",
            )
        } else {
            reply(200, &[("cache-control", "public, max-age=600")], "page")
        }
    });
    let plain = Request::builder()
        .uri("http://shop.example/p")
        .body(Body::new())
        .expect("request");
    let redirect = block_on(h.pipeline.handle(plain));
    block_on(h.pipeline.platform().tasks.run_all());
    assert_eq!(redirect.response.status(), 301);
    let secure = h.get("/p");
    assert_eq!(secure.response.status(), 200);
    assert_eq!(body(&secure), "page");
}

#[test]
fn path_aliases_share_one_entry_and_one_url_purge() {
    let h = Harness::with_vars(&[("PURGE_TOKEN", TOKEN)], |req, n| {
        let path = req.uri().path().to_owned();
        reply(
            200,
            &[("cache-control", "public, max-age=600")],
            &format!("{path} v{n}"),
        )
    });
    assert_eq!(
        body(&h.get("/a%62c")),
        "/abc v1",
        "the origin gets the normal path"
    );
    for alias in ["/abc", "//abc", "/x/../abc"] {
        let r = h.get(alias);
        assert!(
            status_of(&r).starts_with("cachefront; hit"),
            "{alias}: {}",
            status_of(&r)
        );
    }
    h.advance(1);
    let receipt = h.send(
        "POST",
        "/__cachefront/purge",
        &[
            ("authorization", "Bearer purge-token-0123456789"),
            ("content-type", "application/json"),
        ],
        r#"{"urls":["https://shop.example//a%62c"]}"#,
    );
    assert_eq!(receipt.response.status(), 200, "{}", body(&receipt));
    let after = h.get("/abc");
    assert!(
        status_of(&after).contains("purged"),
        "{}",
        status_of(&after)
    );
}

#[test]
fn remembered_non_asset_paths_stay_bounded() {
    let h = Harness::new(|_, _| reply(200, &[("cache-control", "no-store")], ""));
    let long = "x".repeat(2000);
    h.get(&format!("/{long}"));
    assert_eq!(
        h.pipeline.isolate().not_asset_paths().0,
        0,
        "long paths are not remembered"
    );
    for i in 0..1200 {
        h.get(&format!("/{i}/{}", "y".repeat(900)));
    }
    let (entries, bytes) = h.pipeline.isolate().not_asset_paths();
    assert!(entries > 0);
    assert!(bytes <= 512 * 1024, "{bytes} bytes");
}

#[test]
fn a_withheld_vary_field_is_sent_once_the_origin_names_it() {
    let h = Harness::new(|req, _| {
        let seen = field(req, "x-foo", "default");
        reply(
            200,
            &[("cache-control", "public, max-age=600"), ("vary", "x-foo")],
            &format!("variant {seen}"),
        )
    });
    // X-Foo is not on the allow-list: the first answer is made without it, so
    // the edge asks again with it rather than file that answer under "bar".
    let first = h.get_with("/v", &[("x-foo", "bar")]);
    assert_eq!(body(&first), "variant bar");
    assert_eq!(h.origin_calls("/v"), 2);
    let again = h.get_with("/v", &[("x-foo", "bar")]);
    assert!(
        status_of(&again).starts_with("cachefront; hit"),
        "{}",
        status_of(&again)
    );
    assert_eq!(body(&again), "variant bar");
    let plain = h.get("/v");
    assert_eq!(body(&plain), "variant default");
    assert_eq!(
        h.origin_calls("/v"),
        3,
        "no field to withhold, no second ask"
    );
}

#[test]
fn a_variant_is_filed_under_what_the_origin_saw() {
    // The second answer names a field the first did not: it was made
    // without X-Bar, so it must not be filed under the client's X-Bar.
    let h = Harness::new(|req, n| {
        let bar = field(req, "x-bar", "none");
        let vary = if n == 1 { "x-foo" } else { "x-foo, x-bar" };
        reply(
            200,
            &[("cache-control", "public, max-age=600"), ("vary", vary)],
            &format!("bar {bar}"),
        )
    });
    let headers = [("x-foo", "1"), ("x-bar", "2")];
    assert_eq!(body(&h.get_with("/w", &headers)), "bar none");
    let next = h.get_with("/w", &headers);
    assert!(
        status_of(&next).contains("fwd=vary-miss"),
        "{}",
        status_of(&next)
    );
    assert_eq!(body(&next), "bar 2");
}

#[test]
fn a_revalidation_sends_the_fields_the_entry_varies_on() {
    let h = Harness::new(|req, n| {
        let seen = field(req, "x-foo", "none");
        if n > 2 && req.headers().contains_key("if-none-match") {
            return reply(304, &[("etag", "\"e\"")], "");
        }
        reply(
            200,
            &[
                ("cache-control", "max-age=1"),
                ("vary", "x-foo"),
                ("etag", "\"e\""),
            ],
            &format!("saw {seen}"),
        )
    });
    h.get_with("/r", &[("x-foo", "1")]);
    assert_eq!(body(&h.get_with("/r", &[("x-foo", "1")])), "saw 1");
    h.advance(5);
    let revalidated = h.get_with("/r", &[("x-foo", "1")]);
    assert!(
        status_of(&revalidated).contains("fwd-status=304"),
        "{}",
        status_of(&revalidated)
    );
    let last = h.origin().received().pop().expect("a request");
    assert_eq!(last.2["x-foo"], "1");
    assert!(last.2.contains_key("if-none-match"));
}

/// An origin that writes request fields into public pages without `Vary`.
fn reflecting_origin() -> Harness {
    Harness::new(|req, _| {
        let shown = [
            "user-agent",
            "referer",
            "accept",
            "x-requested-with",
            "cookie",
        ]
        .iter()
        .map(|name| format!("{name}: {}", field(req, name, "-")))
        .collect::<Vec<_>>()
        .join("<br>");
        reply(
            200,
            &[
                ("cache-control", "public, max-age=600"),
                ("content-type", "text/html"),
            ],
            &format!("<p>{shown}</p>"),
        )
    })
}

#[test]
fn a_page_showing_an_unkeyed_request_value_is_not_stored() {
    let h = reflecting_origin();
    for (n, (name, value)) in [
        ("user-agent", "EVIL-agent"),
        ("referer", "https://EVIL-referer.example/"),
        ("accept", "EVIL/accept"),
        ("x-requested-with", "EVIL-xhr"),
        ("cookie", "lang=EVIL-cookie"),
    ]
    .into_iter()
    .enumerate()
    {
        let path = format!("/shown/{n}");
        let first = h.get_with(&path, &[(name, value)]);
        assert!(
            status_of(&first).contains("detail=reflected"),
            "{name}: {}",
            status_of(&first)
        );
        let victim = h.get_with(&path, &[(name, "ordinary")]);
        assert!(!body(&victim).contains("EVIL"), "{name}: {}", body(&victim));
    }
}

#[test]
fn a_page_not_showing_request_values_is_stored_as_before() {
    let h = reflecting_origin();
    // Short values and a same-site plain referer are not reflections.
    let headers = [
        ("user-agent", "curl"),
        ("referer", "https://shop.example/from"),
    ];
    let first = h.get_with("/plain", &headers);
    assert!(
        !status_of(&first).contains("reflected"),
        "{}",
        status_of(&first)
    );
    let second = h.get_with("/plain", &headers);
    assert!(status_of(&second).contains("hit"), "{}", status_of(&second));
}

#[test]
fn a_reflected_field_the_origin_varies_on_is_keyed_and_stored() {
    let h = Harness::new(|req, _| {
        reply(
            200,
            &[
                ("cache-control", "public, max-age=600"),
                ("vary", "User-Agent"),
            ],
            &format!("agent {}", field(req, "user-agent", "-")),
        )
    });
    let first = h.get_with("/varied", &[("user-agent", "Agent-one/1.0")]);
    assert!(
        status_of(&first).contains("stored"),
        "{}",
        status_of(&first)
    );
    let other = h.get_with("/varied", &[("user-agent", "Agent-two/2.0")]);
    assert_eq!(body(&other), "agent Agent-two/2.0");
    let again = h.get_with("/varied", &[("user-agent", "Agent-one/1.0")]);
    assert!(status_of(&again).contains("hit"), "{}", status_of(&again));
}
