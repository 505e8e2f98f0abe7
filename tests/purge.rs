//! Native tests of tag purge through the whole pipeline: tags in, the purge
//! API, hard and soft purges reaching cached entries, and its refusals.

mod common;

use cachefront::purge::registry::{RegistryEntry, TagRegistryStore};
use cachefront::purge::sync::SYNC_PAGE_LIMIT;
use common::{absent, body, cached_pages, reply, status_of, Harness};

const TOKEN: &str = "purge-token-0123456789";

fn tagged_origin() -> Harness {
    Harness::with_vars(
        &[("PURGE_TOKEN", TOKEN), ("PURGE_PREFIX_TAGS", "/blog/")],
        |req, n| {
            let path = req.uri().path();
            let tag = if path.starts_with("/products/") {
                "products, product:1"
            } else {
                "pages"
            };
            let cc = if path.starts_with("/soft") {
                "max-age=600, stale-while-revalidate=60"
            } else {
                "max-age=600"
            };
            reply(
                200,
                &[("cache-control", cc), ("cache-tag", tag)],
                &format!("{path} v{n}"),
            )
        },
    )
}

fn purge(h: &Harness, json: &'static str) -> common::Handled {
    h.send(
        "POST",
        "/__cachefront/purge",
        &[
            ("authorization", "Bearer purge-token-0123456789"),
            ("content-type", "application/json"),
        ],
        json,
    )
}

#[test]
fn purge_by_tag_makes_the_next_request_a_miss_and_leaves_neighbours() {
    let h = tagged_origin();
    h.get("/products/1");
    h.get("/about");
    assert!(status_of(&h.get("/products/1")).starts_with("cachefront; hit"));
    h.advance(1);
    let receipt = purge(&h, r#"{"tags":["product:1"]}"#);
    assert_eq!(receipt.response.status(), 200, "{}", body(&receipt));
    let json: serde_json::Value = serde_json::from_slice(receipt.response.body()).expect("receipt");
    assert!(json.to_string().contains("product:1"), "{json}");
    let after = h.get("/products/1");
    assert!(
        status_of(&after).contains("detail=purged"),
        "{}",
        status_of(&after)
    );
    assert_eq!(body(&after), "/products/1 v2");
    assert!(
        status_of(&h.get("/about")).starts_with("cachefront; hit"),
        "untagged neighbour stays cached"
    );
}

#[test]
fn tag_headers_are_not_sent_to_clients() {
    let h = tagged_origin();
    let r = h.get("/products/1");
    assert!(absent(&r, "cache-tag"), "tags stop at the edge");
}

#[test]
fn purge_by_url_prefix_host_and_everything() {
    let h = tagged_origin();
    for path in ["/a", "/blog/post-1", "/b"] {
        h.get(path);
    }
    h.advance(1);
    purge(&h, r#"{"urls":["https://shop.example/a"]}"#);
    assert!(status_of(&h.get("/a")).contains("purged"));
    assert!(status_of(&h.get("/b")).starts_with("cachefront; hit"));
    h.advance(1);
    purge(&h, r#"{"prefixes":["/blog/"]}"#);
    assert!(status_of(&h.get("/blog/post-1")).contains("purged"));
    h.advance(1);
    purge(&h, r#"{"hosts":["shop.example"]}"#);
    assert!(status_of(&h.get("/b")).contains("purged"));
    h.advance(1);
    purge(&h, r#"{"everything":true}"#);
    assert!(status_of(&h.get("/a")).contains("purged"));
}

#[test]
fn soft_purge_serves_stale_while_refreshing() {
    let h = tagged_origin();
    h.get("/soft/page");
    h.advance(1);
    purge(&h, r#"{"tags":["pages"],"soft":true}"#);
    let r = h.get("/soft/page");
    assert!(
        status_of(&r).contains("detail=stale-while-revalidate"),
        "{}",
        status_of(&r)
    );
    assert_eq!(body(&r), "/soft/page v1", "the stale copy is served");
    // The background refresh ran after that response.
    assert_eq!(body(&h.get("/soft/page")), "/soft/page v2");
}

#[test]
fn dry_run_changes_nothing() {
    let h = tagged_origin();
    h.get("/products/1");
    h.advance(1);
    h.get("/about");
    let r = purge(&h, r#"{"tags":["products"],"dry_run":true}"#);
    assert_eq!(r.response.status(), 200);
    let receipt: serde_json::Value = serde_json::from_slice(r.response.body()).expect("receipt");
    assert_eq!(receipt["local_entries_affected"], 1, "{receipt}");
    assert_eq!(receipt["shards_written"], 0);
    assert!(status_of(&h.get("/products/1")).starts_with("cachefront; hit"));
}

/// (method, headers, body, expected status)
type BadPurge = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    u16,
);

#[test]
fn bad_purge_requests_get_their_status_and_change_nothing() {
    let h = tagged_origin();
    h.get("/products/1");
    h.advance(1);
    let cases: [BadPurge; 5] = [
        ("POST", &[], r#"{"tags":["products"]}"#, 401),
        (
            "POST",
            &[("authorization", "Bearer wrong-token-000000000")],
            r#"{"tags":["products"]}"#,
            401,
        ),
        (
            "GET",
            &[("authorization", "Bearer purge-token-0123456789")],
            "",
            405,
        ),
        (
            "POST",
            &[("authorization", "Bearer purge-token-0123456789")],
            "{not json",
            400,
        ),
        (
            "POST",
            &[("authorization", "Bearer purge-token-0123456789")],
            r#"{"tags":["products"],"colour":"red"}"#,
            400,
        ),
    ];
    for (method, headers, payload, expected) in cases {
        let r = h.send(method, "/__cachefront/purge", headers, payload);
        assert_eq!(
            r.response.status().as_u16(),
            expected,
            "{method} {payload}: {}",
            body(&r)
        );
        let json: serde_json::Value =
            serde_json::from_slice(r.response.body()).expect("json error");
        assert!(json["error"]["code"].is_string(), "{json}");
        assert!(!body(&r).contains("purge-token-0123456789"));
    }
    assert!(
        status_of(&h.get("/products/1")).starts_with("cachefront; hit"),
        "nothing was purged"
    );
}

#[test]
fn several_authorization_headers_are_malformed_authorization_whether_separate_or_joined() {
    let h = tagged_origin();
    let separate: &[(&str, &str)] = &[
        ("authorization", "Bearer purge-token-0123456789"),
        ("authorization", "Bearer purge-token-0123456789"),
    ];
    // What the Workers runtime makes of two headers: one comma-joined value.
    let joined: &[(&str, &str)] = &[(
        "authorization",
        "Bearer purge-token-0123456789, Bearer purge-token-0123456789",
    )];
    let mixed: &[(&str, &str)] = &[(
        "authorization",
        "Bearer wrong-token-000000000, Bearer purge-token-0123456789",
    )];
    for headers in [separate, joined, mixed] {
        let r = h.send(
            "POST",
            "/__cachefront/purge",
            headers,
            r#"{"tags":["products"]}"#,
        );
        assert_eq!(r.response.status(), 401, "{headers:?}");
        let json: serde_json::Value =
            serde_json::from_slice(r.response.body()).expect("json error");
        assert_eq!(
            json["error"]["code"], "malformed_authorization",
            "{headers:?}: {json}"
        );
    }
}

#[test]
fn purge_receipt_lower_cases_scheme_and_host_of_urls_and_keeps_the_path_as_given() {
    let h = tagged_origin();
    let r = purge(
        &h,
        r#"{"urls":["HTTPS://Shop.EXAMPLE/Products/Red-Shoe?Size=9#reviews"],"tags":["Products"],"dry_run":true}"#,
    );
    assert_eq!(r.response.status(), 200, "{}", body(&r));
    let receipt: serde_json::Value = serde_json::from_slice(r.response.body()).expect("receipt");
    assert_eq!(
        receipt["purged"]["urls"][0], "https://shop.example/Products/Red-Shoe?Size=9",
        "{receipt}"
    );
    assert_eq!(receipt["purged"]["tags"][0], "products", "{receipt}");
}

#[test]
fn purge_api_is_off_without_a_token() {
    let h = Harness::new(|_, _| reply(200, &[], "x"));
    let r = h.send("POST", "/__cachefront/purge", &[], r#"{"everything":true}"#);
    assert_eq!(r.response.status(), 404);
}

#[test]
fn warming_after_a_purge_refetches_the_purged_pages_in_the_background() {
    let h = Harness::with_vars(
        &[
            ("PURGE_TOKEN", TOKEN),
            ("WARM_AFTER_PURGE", "on"),
            ("WARM_INTERVAL_MS", "0"),
        ],
        |req, n| {
            let tag = if req.uri().path().starts_with("/products/") {
                "products"
            } else {
                "pages"
            };
            reply(
                200,
                &[("cache-control", "max-age=600"), ("cache-tag", tag)],
                &format!("{} v{n}", req.uri().path()),
            )
        },
    );
    h.get("/products/1");
    h.get("/products/2");
    h.get("/about");
    h.advance(1);
    purge(&h, r#"{"tags":["products"]}"#); // background tasks run inside `send`
    assert_eq!(
        h.origin_calls("/products/1"),
        2,
        "re-fetched without a client asking"
    );
    assert_eq!(h.origin_calls("/products/2"), 2);
    assert_eq!(h.origin_calls("/about"), 1, "not purged, not warmed");
    let next = h.get("/products/1");
    assert!(
        status_of(&next).starts_with("cachefront; hit"),
        "{}",
        status_of(&next)
    );
    assert_eq!(body(&next), "/products/1 v2");
}

#[test]
fn warming_refetches_the_exact_url_a_client_asked_for_port_and_case_included() {
    let h = Harness::with_vars(
        &[
            ("PURGE_TOKEN", TOKEN),
            ("WARM_AFTER_PURGE", "on"),
            ("WARM_INTERVAL_MS", "0"),
        ],
        |req, n| {
            reply(
                200,
                &[("cache-control", "max-age=600"), ("cache-tag", "products")],
                &format!("{} v{n}", req.uri().path()),
            )
        },
    );
    // The harness prefixes `https://shop.example`: this is port 8787.
    h.get(":8787/Products/One?b=2&a=1");
    h.advance(1);
    purge(&h, r#"{"tags":["products"]}"#);
    assert_eq!(
        h.origin_calls("/Products/One?a=1&b=2"),
        2,
        "warmed: the same path, case kept"
    );
    let next = h.get(":8787/Products/One?a=1&b=2");
    assert!(
        status_of(&next).starts_with("cachefront; hit"),
        "the warmed entry has the client's key: {}",
        status_of(&next)
    );
    assert_eq!(body(&next), "/Products/One v2");
}

#[test]
fn the_cron_warms_configured_urls_and_sitemap_pages() {
    let h = Harness::with_vars(
        &[
            ("WARM_URLS", "https://shop.example/landing"),
            ("WARM_SITEMAP", "https://shop.example/sitemap.xml"),
            ("WARM_INTERVAL_MS", "0"),
        ],
        |req, n| {
            if req.uri().path() == "/sitemap.xml" {
                return reply(
                    200,
                    &[("content-type", "application/xml")],
                    "<urlset><url><loc>https://shop.example/a</loc></url><url><loc>https://shop.example/b</loc></url></urlset>",
                );
            }
            reply(
                200,
                &[("cache-control", "max-age=600")],
                &format!("{} v{n}", req.uri().path()),
            )
        },
    );
    let results = futures::executor::block_on(h.pipeline.warm_configured());
    futures::executor::block_on(h.pipeline.platform().tasks.run_all());
    let urls: Vec<_> = results.iter().map(|r| (r.url.as_str(), r.status)).collect();
    assert_eq!(
        urls,
        [
            ("https://shop.example/landing", 200),
            ("https://shop.example/a", 200),
            ("https://shop.example/b", 200)
        ]
    );
    for path in ["/landing", "/a", "/b"] {
        assert!(
            status_of(&h.get(path)).starts_with("cachefront; hit"),
            "{path} was warmed"
        );
    }
}

fn get_from(
    pipeline: &cachefront::pipeline::Pipeline<cachefront::platform::memory::MemoryPlatform>,
    path: &str,
) -> common::Handled {
    let request = http::Request::builder()
        .uri(format!("https://shop.example{path}"))
        .body(cachefront::Body::new())
        .expect("request");
    let handled = futures::executor::block_on(pipeline.handle(request));
    futures::executor::block_on(pipeline.platform().tasks.run_all());
    handled
}

#[test]
fn with_dc_memo_another_isolate_of_the_data_centre_reuses_the_registry_answer() {
    for (dc_memo, expected_new_lookups) in [("on", 0), ("off", 1)] {
        let h = cached_pages(&[("PURGE_DC_MEMO", dc_memo), ("PURGE_CHANGE_SYNC", "off")]);
        h.get("/x");
        h.advance(5);
        assert!(status_of(&h.get("/x")).contains("hit"));
        let registry = &h.pipeline.platform().registry;
        let before = registry.calls().len();
        let other = h.pipeline.with_fresh_isolate();
        let second = get_from(&other, "/x");
        assert!(status_of(&second).contains("hit"), "{}", status_of(&second));
        let lookups = registry.calls().len() - before;
        assert_eq!(
            lookups.min(1),
            expected_new_lookups,
            "PURGE_DC_MEMO={dc_memo}: registry lookups by the second isolate"
        );
    }
}

#[test]
fn with_dc_memo_a_purge_is_still_seen_once_the_shared_answer_is_older_than_the_window() {
    let h = cached_pages(&[
        ("PURGE_DC_MEMO", "on"),
        ("PURGE_TOKEN", TOKEN),
        ("PURGE_CHANGE_SYNC", "off"),
    ]);
    h.get("/x");
    h.advance(5);
    h.get("/x");
    let other = h.pipeline.with_fresh_isolate();
    purge(&h, r#"{"tags":["pages"]}"#);
    // The shared answer predates the purge; once it is older than the
    // window, the other isolate asks the registry and sees the purge.
    h.advance(2);
    let after = get_from(&other, "/x");
    assert!(
        !status_of(&after).contains("hit"),
        "purged entry not served: {}",
        status_of(&after)
    );
}

#[test]
fn refresh_ahead_renews_an_answer_in_the_background_before_it_expires() {
    for (ahead, renewed) in [("on", true), ("off", false)] {
        let h = cached_pages(&[
            ("PURGE_REFRESH_AHEAD", ahead),
            ("PURGE_CHANGE_SYNC", "off"),
            ("PURGE_DC_MEMO", "off"),
        ]);
        h.get("/x");
        h.advance(5);
        h.get("/x"); // asks the registry (answer checked now)
        let clock = &h.pipeline.platform().clock;
        futures::executor::block_on(cachefront::platform::Clock::sleep(clock, 700));
        let calls = h.pipeline.platform().registry.calls().len();
        assert!(status_of(&h.get("/x")).contains("hit"));
        let refreshed = h.pipeline.platform().registry.calls().len() > calls;
        assert_eq!(refreshed, renewed, "PURGE_REFRESH_AHEAD={ahead}");
        // 1.1 s after the first check: past that answer's window but only
        // 0.4 s into the renewed one (before its own refresh-ahead half), so
        // with refresh ahead this request asks nothing.
        futures::executor::block_on(cachefront::platform::Clock::sleep(clock, 400));
        let calls = h.pipeline.platform().registry.calls().len();
        h.get("/x");
        let waited = h.pipeline.platform().registry.calls().len() > calls;
        assert_eq!(
            waited, !renewed,
            "PURGE_REFRESH_AHEAD={ahead}: request path lookup"
        );
    }
}

/// Registry calls of one kind ("lookup", "sync", ...) made so far.
fn registry_calls(h: &Harness, op: &str) -> usize {
    let registry = &h.pipeline.platform().registry;
    registry.calls().iter().filter(|(_, o)| *o == op).count()
}

/// A miss then a hit: the hit starts the isolate's views of the registry
/// shards (in the background); entries fetched from then on are after
/// their horizon.
fn warm_up(
    pipeline: &cachefront::pipeline::Pipeline<cachefront::platform::memory::MemoryPlatform>,
) {
    get_from(pipeline, "/warm-up");
    assert!(status_of(&get_from(pipeline, "/warm-up")).contains("hit"));
}

fn sleep_ms(h: &Harness, ms: u64) {
    let clock = &h.pipeline.platform().clock;
    futures::executor::block_on(cachefront::platform::Clock::sleep(clock, ms));
}

#[test]
fn with_change_sync_hits_ask_no_key_and_each_shard_is_synced_about_once_a_window() {
    let h = cached_pages(&[("PURGE_SHARDS", "1")]);
    warm_up(&h.pipeline);
    h.advance(1);
    h.get("/x"); // fetched after the view's horizon
    let (lookups, syncs) = (registry_calls(&h, "lookup"), registry_calls(&h, "sync"));
    // Ten windows of steady traffic, a request every 100 ms.
    for _ in 0..100 {
        sleep_ms(&h, 100);
        assert!(status_of(&h.get("/x")).contains("hit"));
    }
    assert_eq!(registry_calls(&h, "lookup"), lookups, "no per-key lookup");
    let synced = registry_calls(&h, "sync") - syncs;
    assert!(
        (10..=15).contains(&synced),
        "one sync per shard every 0.7 window: {synced}"
    );
}

#[test]
fn with_change_sync_a_purge_from_another_isolate_is_seen_once_the_window_has_passed() {
    for shards in ["1", "4"] {
        let h = cached_pages(&[("PURGE_TOKEN", TOKEN), ("PURGE_SHARDS", shards)]);
        let other = h.pipeline.with_fresh_isolate();
        warm_up(&other);
        h.advance(1);
        h.get("/x");
        h.advance(1);
        assert!(status_of(&get_from(&other, "/x")).contains("hit"));
        purge(&h, r#"{"tags":["pages"]}"#);
        h.advance(2);
        let after = get_from(&other, "/x");
        assert!(
            !status_of(&after).contains("hit"),
            "PURGE_SHARDS={shards}: purged entry not served: {}",
            status_of(&after)
        );
    }
}

#[test]
fn with_change_sync_an_everything_purge_reaches_another_isolate() {
    let h = cached_pages(&[("PURGE_TOKEN", TOKEN)]);
    let other = h.pipeline.with_fresh_isolate();
    warm_up(&other);
    h.advance(1);
    h.get("/x");
    h.advance(1);
    assert!(status_of(&get_from(&other, "/x")).contains("hit"));
    purge(&h, r#"{"everything":true}"#);
    h.advance(2);
    assert!(!status_of(&get_from(&other, "/x")).contains("hit"));
}

/// A new isolate of a data centre with no view record, after a purge that
/// killed an entry in the data centre's Cache API; `later_writes` keys are
/// written to the registry after the purge (with older times). Returns the
/// entry's answer to that isolate and the per-key lookups it made.
fn cached_before_the_view(later_writes: usize) -> (String, usize) {
    let h = cached_pages(&[
        ("PURGE_TOKEN", TOKEN),
        ("PURGE_SHARDS", "1"),
        ("PURGE_DC_MEMO", "off"),
    ]);
    h.get("/x"); // in the data centre's Cache API
    h.advance(1);
    purge(&h, r#"{"tags":["pages"]}"#);
    let others: Vec<RegistryEntry> = (0..later_writes)
        .map(|i| RegistryEntry {
            key: format!("other:{i}"),
            hard_ms: 1,
            soft_ms: 0,
        })
        .collect();
    futures::executor::block_on(h.pipeline.platform().registry.merge(0, &others)).expect("merge");
    h.advance(1);
    let late = h.pipeline.with_fresh_isolate();
    warm_up(&late);
    sleep_ms(&h, 100);
    let lookups = registry_calls(&h, "lookup");
    let answer = get_from(&late, "/x");
    (
        status_of(&answer).to_string(),
        registry_calls(&h, "lookup") - lookups,
    )
}

#[test]
fn with_change_sync_a_new_views_backfill_decides_an_entry_cached_shortly_before_it() {
    // The view begins after the purge; its first sync brings the shard's
    // latest writes, the purge among them.
    let (answer, lookups) = cached_before_the_view(0);
    assert!(
        !answer.contains("hit"),
        "purged before the view began, not served: {answer}"
    );
    assert_eq!(lookups, 0, "decided by the view, no per-key lookup");
}

#[test]
fn with_change_sync_an_entry_cached_before_the_backfill_reaches_is_checked_per_key() {
    // A page of later writes pushes the purge out of the backfill: the
    // entry is older than the view's horizon and is asked per key.
    let (answer, lookups) = cached_before_the_view(SYNC_PAGE_LIMIT);
    assert!(
        !answer.contains("hit"),
        "purged before the view began, not served: {answer}"
    );
    assert!(lookups > 0);
}

#[test]
fn with_change_sync_a_new_isolate_starts_from_its_data_centres_view_without_asking_the_registry() {
    let h = cached_pages(&[("PURGE_SHARDS", "1")]);
    warm_up(&h.pipeline);
    h.advance(1);
    h.get("/x");
    assert!(status_of(&h.get("/x")).contains("hit")); // renews the view
    sleep_ms(&h, 200);
    let calls = h.pipeline.platform().registry.calls().len();
    let other = h.pipeline.with_fresh_isolate();
    assert!(status_of(&get_from(&other, "/x")).contains("hit"));
    assert_eq!(
        h.pipeline.platform().registry.calls().len(),
        calls,
        "the data centre's view and delta are fresh: no registry call"
    );
}
