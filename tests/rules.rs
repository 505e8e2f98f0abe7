//! Cache rules (`CACHE_RULES`) through the whole pipeline on the in-memory
//! platform: every action, and the private-by-default policy holding under
//! `cache = "everything"`.

mod common;

use common::{absent, body, header, reply, status_of, Harness};

fn with_rules(
    rules: &str,
    script: impl Fn(
            &http::Request<cachefront::Body>,
            u32,
        ) -> Result<common::Reply, cachefront::platform::OriginError>
        + 'static,
) -> Harness {
    Harness::with_vars(&[("CACHE_RULES", rules)], script)
}

/// An origin in the style of a CMS: pages with validators only, no freshness.
fn cms_page(
    _: &http::Request<cachefront::Body>,
    n: u32,
) -> Result<common::Reply, cachefront::platform::OriginError> {
    reply(
        200,
        &[("content-type", "text/html"), ("etag", "\"v1\"")],
        &format!("page {n}"),
    )
}

#[test]
fn everything_stores_a_page_the_origin_gave_no_freshness() {
    let h = with_rules(
        r#"[{"name":"blog","match":{"path":"/blog/**"},"cache":"everything","edge_ttl":{"mode":"override","seconds":3600}}]"#,
        cms_page,
    );
    h.get("/blog/post");
    h.advance(1800);
    let again = h.get("/blog/post");
    assert!(status_of(&again).contains("hit"), "{}", status_of(&again));
    assert!(
        status_of(&again).contains("rule=\"blog\""),
        "{}",
        status_of(&again)
    );
    assert_eq!(h.origin_calls("/blog/post"), 1);
    // Outside the rule the origin's headers decide: no freshness, revalidated.
    h.get("/shop/item");
    h.get("/shop/item");
    assert_eq!(h.origin_calls("/shop/item"), 2);
}

#[test]
fn the_edge_ttl_ends_and_the_entry_is_revalidated() {
    let h = with_rules(
        r#"[{"match":{"path":"/**"},"cache":"everything","edge_ttl":{"mode":"override","seconds":60}}]"#,
        cms_page,
    );
    h.get("/p");
    h.advance(61);
    let again = h.get("/p");
    assert!(
        !status_of(&again).contains("; hit"),
        "{}",
        status_of(&again)
    );
    assert_eq!(h.origin_calls("/p"), 2);
}

#[test]
fn bypass_neither_reads_nor_writes() {
    let h = with_rules(
        r#"[{"name":"cart","match":{"path":"/cart"},"cache":"bypass"}]"#,
        |_, n| {
            reply(
                200,
                &[("cache-control", "public, max-age=600")],
                &format!("cart {n}"),
            )
        },
    );
    h.get("/cart");
    let again = h.get("/cart");
    assert_eq!(body(&again), "cart 2");
    let status = status_of(&again);
    assert!(
        status.contains("fwd=bypass") && status.contains("detail=rule; rule=\"cart\""),
        "{status}"
    );
}

#[test]
fn status_ttls_store_404s_briefly_and_5xx_only_when_named() {
    let rules = r#"[{"match":{"path":"/**"},"cache":"everything","edge_ttl":{"mode":"override","seconds":3600,"status":{"404":60}}}]"#;
    let h = with_rules(rules, |req, n| {
        if req.uri().path() == "/gone" {
            reply(
                404,
                &[("content-type", "text/html")],
                &format!("missing {n}"),
            )
        } else {
            reply(
                503,
                &[
                    ("content-type", "text/html"),
                    ("cache-control", "max-age=600"),
                ],
                "down",
            )
        }
    });
    h.get("/gone");
    h.advance(30);
    assert!(status_of(&h.get("/gone")).contains("hit"));
    h.advance(31);
    h.get("/gone");
    assert_eq!(h.origin_calls("/gone"), 2, "the 404 lived 60 s, not 3600");
    h.get("/err");
    let again = h.get("/err");
    assert!(
        status_of(&again).contains("detail=error-status"),
        "{}",
        status_of(&again)
    );

    let named =
        r#"[{"match":{"path":"/**"},"edge_ttl":{"mode":"respect_origin","status":{"5xx":10}}}]"#;
    let h = with_rules(named, |_, _| {
        reply(503, &[("content-type", "text/html")], "down")
    });
    h.get("/err");
    assert!(
        status_of(&h.get("/err")).contains("hit"),
        "a rule naming 5xx stores it"
    );
}

#[test]
fn deception_armor_refuses_a_page_behind_a_static_looking_path() {
    let rules = r#"[{"match":{"extensions":["css"]},"cache":"everything"}]"#;
    let h = with_rules(rules, |_, n| {
        reply(
            200,
            &[("content-type", "text/html")],
            &format!("account of user {n}"),
        )
    });
    h.get("/account.php/x.css");
    let again = h.get("/account.php/x.css");
    assert!(
        status_of(&again).contains("detail=deception-armor"),
        "{}",
        status_of(&again)
    );
    assert_eq!(body(&again), "account of user 2");

    let off = r#"[{"match":{"extensions":["css"]},"cache":"everything","deception_armor":false}]"#;
    let h = with_rules(off, |_, n| {
        reply(200, &[("content-type", "text/html")], &format!("{n}"))
    });
    h.get("/a.css");
    assert!(
        status_of(&h.get("/a.css")).contains("hit"),
        "armor off: stored"
    );

    let h = with_rules(rules, |_, n| {
        reply(200, &[("content-type", "text/css")], &format!("{n}"))
    });
    h.get("/a.css");
    assert!(
        status_of(&h.get("/a.css")).contains("hit"),
        "a real stylesheet is stored"
    );
}

#[test]
fn everything_keeps_private_answers_private() {
    let rules = r#"[{"match":{"path":"/**"},"cache":"everything"}]"#;
    // A request with a session cookie (the rule names no cookies).
    let h = with_rules(rules, cms_page);
    h.get_with("/me", &[("cookie", "session=alice")]);
    let anon = h.get("/me");
    assert_eq!(
        body(&anon),
        "page 2",
        "alice's page never reaches anyone else"
    );
    // Authorization, Set-Cookie, private, no-store.
    let h = with_rules(rules, cms_page);
    h.get_with("/api", &[("authorization", "Bearer alice")]);
    assert_eq!(body(&h.get("/api")), "page 2");
    for (name, value) in [
        ("set-cookie", "sid=1"),
        ("cache-control", "private"),
        ("cache-control", "no-store"),
    ] {
        let h = with_rules(rules, move |_, n| {
            reply(
                200,
                &[("content-type", "text/html"), (name, value)],
                &format!("{n}"),
            )
        });
        h.get("/p");
        assert_eq!(body(&h.get("/p")), "2", "{name}: {value} was stored");
    }
}

#[test]
fn override_private_stores_private_answers_but_never_no_store_or_authorization() {
    let rules = r#"[{"match":{"path":"/**"},"cache":"everything","override_private":true}]"#;
    let h = with_rules(rules, |_, n| {
        reply(
            200,
            &[
                ("content-type", "text/html"),
                ("cache-control", "private"),
                ("set-cookie", "sid=1"),
            ],
            &format!("{n}"),
        )
    });
    let first = h.get("/p");
    assert_eq!(
        header(&first, "set-cookie"),
        "sid=1",
        "the client that filled it gets its cookie"
    );
    let again = h.get("/p");
    assert!(status_of(&again).contains("hit"), "{}", status_of(&again));
    assert!(
        absent(&again, "set-cookie"),
        "a stored copy never carries Set-Cookie"
    );
    let h = with_rules(rules, |_, n| {
        reply(200, &[("cache-control", "no-store")], &format!("{n}"))
    });
    h.get("/p");
    assert_eq!(body(&h.get("/p")), "2");
    let h = with_rules(rules, cms_page);
    h.get_with("/p", &[("authorization", "Bearer a")]);
    assert_eq!(body(&h.get("/p")), "page 2");
}

#[test]
fn a_rule_that_names_its_cookies_keys_them_and_withholds_the_rest() {
    let rules = r#"[{"match":{"path":"/**"},"cache":"everything","cache_key":{"cookies":["lang"]},"bypass_cookies":["wordpress_logged_in_*"]}]"#;
    let h = with_rules(rules, |req, n| {
        let cookie = req
            .headers()
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        reply(
            200,
            &[("content-type", "text/html")],
            &format!("{n} saw {cookie}"),
        )
    });
    let first = h.get_with("/page", &[("cookie", "lang=de; _ga=123; session=alice")]);
    assert_eq!(
        body(&first),
        "1 saw lang=de",
        "only the keyed cookie reaches the origin"
    );
    let other = h.get_with("/page", &[("cookie", "_ga=999; lang=de")]);
    assert!(status_of(&other).contains("hit"), "same lang: shared");
    let fr = h.get_with("/page", &[("cookie", "lang=fr")]);
    assert_eq!(body(&fr), "2 saw lang=fr", "another lang: its own entry");
    let logged_in = h.get_with("/page", &[("cookie", "lang=de; wordpress_logged_in_abc=1")]);
    assert!(
        status_of(&logged_in).contains("detail=bypass-cookie"),
        "{}",
        status_of(&logged_in)
    );
    assert!(
        body(&logged_in).contains("wordpress_logged_in_abc=1"),
        "a bypassed request keeps its cookies"
    );
}

#[test]
fn query_keys_decide_what_the_origin_receives() {
    let rules = r#"[{"match":{"path":"/static/**"},"cache_key":{"query":"none"}},
                    {"match":{"path":"/search"},"cache_key":{"query":{"include":["q"]}}}]"#;
    let h = with_rules(rules, |req, n| {
        reply(
            200,
            &[("cache-control", "public, max-age=600")],
            &format!("{n} {}", req.uri().query().unwrap_or("-")),
        )
    });
    assert_eq!(body(&h.get("/static/app.css?v=1")), "1 -");
    assert!(status_of(&h.get("/static/app.css?v=2")).contains("hit"));
    assert_eq!(
        body(&h.get("/search?q=shoes&sid=9&utm_source=x")),
        "1 q=shoes"
    );
    assert!(status_of(&h.get("/search?sid=1&q=shoes")).contains("hit"));
}

#[test]
fn keyed_headers_and_device_classes_split_entries_and_reach_the_origin() {
    let rules =
        r#"[{"match":{"path":"/**"},"cache_key":{"headers":["accept-language"],"device":true}}]"#;
    let h = with_rules(rules, |req, n| {
        let lang = req
            .headers()
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let device = req
            .headers()
            .get("cf-device-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        reply(
            200,
            &[("cache-control", "public, max-age=600")],
            &format!("{n} {lang} {device}"),
        )
    });
    let phone = "Mozilla/5.0 (iPhone) Mobile/15E148";
    assert_eq!(
        body(&h.get_with("/page", &[("accept-language", "de"), ("user-agent", phone)])),
        "1 de mobile"
    );
    assert!(
        status_of(&h.get_with("/page", &[("accept-language", "de"), ("user-agent", phone)]))
            .contains("hit")
    );
    assert_eq!(
        body(&h.get_with("/page", &[("accept-language", "de")])),
        "2 de desktop"
    );
    assert_eq!(
        body(&h.get_with(
            "/page",
            &[("accept-language", "fr"), ("cf-device-type", "mobile")]
        )),
        "3 fr desktop",
        "a client cannot pick its class"
    );
}

#[test]
fn origin_routes_matching_requests_to_their_origins() {
    let origins = r#"[{"name":"web","url":"http://127.0.0.1:3001"},{"name":"api","url":"http://127.0.0.1:3002"}]"#;
    let rules = r#"[{"match":{"path":"/api/**"},"origin":"api"}]"#;
    let h = Harness::with_origins(origins, &[("CACHE_RULES", rules)], |origin, _, _| {
        reply(200, &[("cache-control", "no-store")], &origin.name)
    });
    assert_eq!(body(&h.get("/api/users")), "api");
    assert_eq!(body(&h.get("/home")), "web");
    assert_eq!(h.calls_to("web", "/api/users"), 0);
}

#[test]
fn browser_ttl_and_response_headers_shape_what_clients_see() {
    let rules = r#"[{"match":{"path":"/**"},"browser_ttl":{"mode":"override","seconds":30},
                     "response_headers":{"set":{"x-frame-options":"DENY"},"remove":["x-powered-by"]}}]"#;
    let h = with_rules(rules, |_, _| {
        reply(
            200,
            &[
                ("cache-control", "public, max-age=600"),
                ("x-powered-by", "php"),
            ],
            "x",
        )
    });
    for answer in [h.get("/p"), h.get("/p")] {
        assert_eq!(header(&answer, "cache-control"), "max-age=30");
        assert_eq!(header(&answer, "x-frame-options"), "DENY");
        assert!(absent(&answer, "x-powered-by"));
    }
    // The edge itself still keeps it for the origin's 600 s.
    h.advance(300);
    assert!(status_of(&h.get("/p")).contains("hit"));
}

#[test]
fn adaptive_ttl_doubles_while_unchanged_and_resets_on_change() {
    let rules =
        r#"[{"match":{"path":"/**"},"cache":"everything","adaptive_ttl":{"min":60,"max":200}}]"#;
    let version = std::rc::Rc::new(std::cell::Cell::new(1));
    let v = std::rc::Rc::clone(&version);
    let h = with_rules(rules, move |req, _| {
        let etag = format!("\"v{}\"", v.get());
        // The edge rewrites HTML, which weakens the stored ETag.
        let sent = req
            .headers()
            .get("if-none-match")
            .and_then(|x| x.to_str().ok());
        if sent.map(|t| t.trim_start_matches("W/")) == Some(etag.as_str()) {
            return reply(304, &[("etag", &etag)], "");
        }
        reply(
            200,
            &[("content-type", "text/html"), ("etag", &etag)],
            &format!("version {}", v.get()),
        )
    });
    let ttl = |h: &Harness| status_of(&h.get("/p")).to_owned();
    h.get("/p");
    assert!(ttl(&h).contains("hit; ttl=60"), "{}", ttl(&h));
    h.advance(61);
    let revalidated = h.get("/p");
    assert!(
        status_of(&revalidated).contains("fwd-status=304"),
        "{}",
        status_of(&revalidated)
    );
    assert!(
        ttl(&h).contains("hit; ttl=120"),
        "unchanged: doubled; {}",
        ttl(&h)
    );
    h.advance(121);
    h.get("/p");
    assert!(
        ttl(&h).contains("hit; ttl=200"),
        "capped at max; {}",
        ttl(&h)
    );
    version.set(2);
    h.advance(201);
    let changed = h.get("/p");
    assert_eq!(body(&changed), "version 2");
    assert!(
        ttl(&h).contains("hit; ttl=60"),
        "changed: back to min; {}",
        ttl(&h)
    );
}

#[test]
fn a_rule_stale_if_error_window_covers_an_origin_outage() {
    let rules = r#"[{"match":{"path":"/**"},"cache":"everything","edge_ttl":{"mode":"override","seconds":60},"stale_if_error":3600}]"#;
    let h = with_rules(rules, |_, n| {
        if n == 1 {
            reply(200, &[("content-type", "text/html")], "fine")
        } else {
            reply(503, &[], "down")
        }
    });
    h.get("/p");
    h.advance(600);
    let answer = h.get("/p");
    assert_eq!(body(&answer), "fine");
    assert!(
        status_of(&answer).contains("stale-if-error"),
        "{}",
        status_of(&answer)
    );
}

#[test]
fn continue_layers_site_defaults_under_a_path_rule() {
    let rules = r#"[{"name":"site","continue":true,"response_headers":{"set":{"x-site":"1"}}},
                    {"name":"blog","match":{"path":"/blog/**"},"cache":"everything"}]"#;
    let h = with_rules(rules, cms_page);
    let blog = h.get("/blog/a");
    assert!(
        status_of(&blog).contains("rule=\"site,blog\""),
        "{}",
        status_of(&blog)
    );
    assert_eq!(header(&blog, "x-site"), "1");
    assert!(status_of(&h.get("/blog/a")).contains("hit"));
    let other = h.get("/x");
    assert!(
        status_of(&other).contains("rule=\"site\""),
        "{}",
        status_of(&other)
    );
}

#[test]
fn a_background_refresh_is_stored_under_the_same_rule() {
    let rules = r#"[{"match":{"path":"/**"},"cache":"everything","edge_ttl":{"mode":"override","seconds":60},"stale_while_revalidate":600}]"#;
    let h = with_rules(rules, |_, n| {
        reply(200, &[("content-type", "text/plain")], &format!("v{n}"))
    });
    h.get("/p");
    h.advance(61);
    let stale = h.get("/p");
    assert!(
        status_of(&stale).contains("stale-while-revalidate"),
        "{}",
        status_of(&stale)
    );
    assert_eq!(h.origin_calls("/p"), 2, "refreshed in the background");
    let fresh = h.get("/p");
    assert!(
        status_of(&fresh).contains("hit; ttl=60"),
        "{}",
        status_of(&fresh)
    );
    assert_eq!(body(&fresh), "v2");
}

#[test]
fn an_unsafe_request_invalidates_the_entry_its_get_rule_keyed() {
    let rules = r#"[{"match":{"path":"/items/**","methods":["GET"]},"cache":"everything","cache_key":{"device":true}}]"#;
    let h = with_rules(rules, |req, n| {
        reply(
            200,
            &[("content-type", "text/plain")],
            &format!("{} {n}", req.method()),
        )
    });
    h.get("/items/1");
    assert!(status_of(&h.get("/items/1")).contains("hit"));
    h.send("POST", "/items/1", &[], "x");
    let after = h.get("/items/1");
    assert!(
        !status_of(&after).contains("; hit"),
        "{}",
        status_of(&after)
    );
}

#[test]
fn a_client_cannot_choose_the_rule_an_entry_is_stored_under_for_others() {
    // The shell rule applies to requests that accept HTML; an attacker sends
    // `Accept: text/html` for a JSON URL to have it stored under that rule.
    let rules = r#"[{"name":"shell","match":{"header":{"accept":"*text/html*"}},"cache":"everything","edge_ttl":{"mode":"override","seconds":3600}}]"#;
    let h = with_rules(rules, |req, n| {
        let accept = req
            .headers()
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        reply(
            200,
            &[
                ("content-type", "application/json"),
                ("cache-control", "no-cache"),
                ("etag", "\"1\""),
            ],
            &format!("{n} for {accept}"),
        )
    });
    h.get_with("/data", &[("accept", "text/html")]);
    let victim = h.get_with("/data", &[("accept", "application/json")]);
    assert!(
        !status_of(&victim).contains("; hit"),
        "{}",
        status_of(&victim)
    );
    assert_eq!(body(&victim), "2 for application/json");
    // The rule's own requests still share their entry.
    assert!(status_of(&h.get_with("/data", &[("accept", "text/html")])).contains("hit"));
}

#[test]
fn a_rule_stale_window_never_overrides_an_origin_that_demands_revalidation() {
    let rules = r#"[{"match":{"path":"/**"},"stale_while_revalidate":600,"stale_if_error":600}]"#;
    let h = with_rules(rules, |_, n| {
        let cc = if n == 1 {
            "public, max-age=10, must-revalidate"
        } else {
            "public, max-age=10"
        };
        reply(
            if n == 1 { 200 } else { 503 },
            &[("cache-control", cc)],
            &format!("v{n}"),
        )
    });
    h.get("/p");
    h.advance(20);
    let answer = h.get("/p");
    assert_eq!(answer.response.status(), 503, "{}", status_of(&answer));
    assert_eq!(h.origin_calls("/p"), 2, "revalidated, not served stale");
}
