//! Native tests of the purge guarantees in docs/purge.md that depend on
//! time, tiers and isolates: a purge in the same millisecond as the fetch,
//! the purging isolate, every Vary variant, entries read back from the
//! Cache API and KV tiers, a registry outage, and the purge rate limit.

mod common;

use cachefront::Body;
use common::{body, header, reply, status_of, Harness};
use futures::executor::block_on;
use http::Request;

const TOKEN: &str = "purge-token-0123456789";

fn tagged(extra: &[(&'static str, &'static str)]) -> Harness {
    let mut vars = vec![("PURGE_TOKEN", TOKEN)];
    vars.extend_from_slice(extra);
    Harness::with_vars(&vars, |req, n| {
        let lang = req
            .headers()
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let mut headers = vec![("cache-control", "max-age=600"), ("cache-tag", "pages")];
        if req.uri().path().starts_with("/varied") {
            headers.push(("vary", "accept-language"));
        }
        reply(200, &headers, &format!("{} {lang} v{n}", req.uri().path()))
    })
}

fn purge(h: &Harness, json: &'static str) -> common::Handled {
    h.send(
        "POST",
        "/__cachefront/purge",
        &[("authorization", "Bearer purge-token-0123456789")],
        json,
    )
}

fn get_on(
    pipeline: &cachefront::pipeline::Pipeline<cachefront::platform::memory::MemoryPlatform>,
    path: &str,
) -> common::Handled {
    let request = Request::builder()
        .uri(format!("https://shop.example{path}"))
        .body(Body::new())
        .expect("request");
    let handled = block_on(pipeline.handle(request));
    block_on(pipeline.platform().tasks.run_all());
    handled
}

#[test]
fn a_purge_in_the_same_millisecond_as_the_fetch_counts_as_after_it() {
    let h = tagged(&[]);
    h.get("/page");
    // No time passes: the purge time equals the time the fetch was sent.
    assert_eq!(purge(&h, r#"{"tags":["pages"]}"#).response.status(), 200);
    let after = h.get("/page");
    assert!(
        status_of(&after).contains("detail=purged"),
        "{}",
        status_of(&after)
    );
    assert_eq!(body(&after), "/page - v2");
}

#[test]
fn a_purge_applies_at_once_in_the_purging_isolate_without_asking_the_registry() {
    let h = tagged(&[]);
    h.get("/page");
    assert!(
        status_of(&h.get("/page")).starts_with("cachefront; hit"),
        "the registry answer is remembered"
    );
    h.advance(1);
    assert_eq!(purge(&h, r#"{"tags":["pages"]}"#).response.status(), 200);
    // From here the registry cannot be asked: only the isolate's own record
    // of its purge can make the next request a miss.
    h.pipeline.platform().registry.set_failing(true);
    let after = h.get("/page");
    assert!(
        status_of(&after).contains("detail=purged"),
        "{}",
        status_of(&after)
    );
}

#[test]
fn a_purge_reaches_every_vary_variant() {
    let h = tagged(&[]);
    for lang in ["en", "fr", "de"] {
        h.get_with("/varied", &[("accept-language", lang)]);
        let hit = h.get_with("/varied", &[("accept-language", lang)]);
        assert!(
            status_of(&hit).starts_with("cachefront; hit"),
            "{lang}: {}",
            status_of(&hit)
        );
    }
    h.advance(1);
    purge(&h, r#"{"tags":["pages"]}"#);
    for lang in ["en", "fr", "de"] {
        let after = h.get_with("/varied", &[("accept-language", lang)]);
        assert!(
            status_of(&after).contains("detail=purged"),
            "{lang}: {}",
            status_of(&after)
        );
        assert!(
            body(&after).starts_with(&format!("/varied {lang} v")),
            "{}",
            body(&after)
        );
    }
}

// The invalidation drops the Vary index at the primary key; the variants in
// the Cache API cannot be listed, so the next index starts a new generation
// of variant keys and the ones from before the POST are never read again.
#[test]
fn a_post_invalidates_every_vary_variant_of_its_uri() {
    let h = tagged(&[]);
    for lang in ["en", "fr"] {
        h.get_with("/varied", &[("accept-language", lang)]);
        assert!(
            status_of(&h.get_with("/varied", &[("accept-language", lang)]))
                .starts_with("cachefront; hit")
        );
    }
    let post = h.send("POST", "/varied", &[], "{}");
    assert_eq!(post.response.status(), 200);
    // The first request after the POST finds no index (a URI miss); the
    // next finds the new index but not its own variant (a Vary miss): both
    // go to the origin, neither is served from before the POST.
    for (lang, miss) in [("en", "fwd=uri-miss"), ("fr", "fwd=vary-miss")] {
        let after = h.get_with("/varied", &[("accept-language", lang)]);
        assert!(
            status_of(&after).starts_with(&format!("cachefront; {miss}")),
            "{lang}: {}",
            status_of(&after)
        );
        assert_eq!(
            body(&after),
            format!("/varied {lang} v{}", if lang == "en" { 4 } else { 5 })
        );
    }
}

#[test]
fn a_purge_reaches_an_entry_read_back_from_the_cache_api_after_memory_residence() {
    let h = tagged(&[]);
    h.get("/page");
    assert_eq!(h.get("/page").log.tier, "memory");
    // A new isolate in the same data centre: its memory is empty, the Cache
    // API holds the entry with its tags.
    let other = h.pipeline.with_fresh_isolate();
    let read_back = get_on(&other, "/page");
    assert_eq!(read_back.log.tier, "edge", "{}", read_back.log.cache_status);
    h.advance(1);
    let receipt = block_on(
        other.handle(
            Request::builder()
                .method("POST")
                .uri("https://shop.example/__cachefront/purge")
                .header("authorization", "Bearer purge-token-0123456789")
                .body(Body::from_static(br#"{"tags":["pages"]}"#))
                .expect("request"),
        ),
    );
    assert_eq!(receipt.response.status(), 200);
    let after = get_on(&other, "/page");
    assert!(
        after.log.cache_status.contains("detail=purged"),
        "{}",
        after.log.cache_status
    );
}

#[test]
fn a_purge_reaches_an_entry_read_from_kv_in_a_fresh_isolate() {
    let h = tagged(&[("KV_CACHE_MAX_OBJECT_BYTES", "65536")]);
    h.get("/page");
    assert_eq!(h.pipeline.platform().global.len(), 1);
    // Another data centre: no Cache API copy, a new isolate, the same KV.
    for key in h.pipeline.platform().cache.keys() {
        block_on(cachefront::platform::CacheStore::delete(
            &h.pipeline.platform().cache,
            &key,
        ))
        .expect("delete");
    }
    let elsewhere = h.pipeline.with_fresh_isolate();
    let from_kv = get_on(&elsewhere, "/page");
    assert_eq!(from_kv.log.tier, "kv", "{}", from_kv.log.cache_status);
    h.advance(1);
    purge(&h, r#"{"tags":["pages"]}"#);
    // The purge came from another isolate: this one learns it from the
    // registry once its remembered answer is PURGE_SYNC_MS old.
    h.advance(1);
    let after = get_on(&elsewhere, "/page");
    assert!(
        after.log.cache_status.contains("detail=purged"),
        "{}",
        after.log.cache_status
    );
}

#[test]
fn while_the_registry_is_down_entries_are_served_then_revalidated_past_ten_sync_windows() {
    let h = tagged(&[("PURGE_SYNC_MS", "1000")]);
    h.get("/page");
    assert!(
        status_of(&h.get("/page")).starts_with("cachefront; hit"),
        "a hit: the registry answered for the entry's tags"
    );
    h.pipeline.platform().registry.set_failing(true);
    h.advance(2);
    let within = h.get("/page");
    assert!(
        status_of(&within).starts_with("cachefront; hit"),
        "a recent answer is still used: {}",
        status_of(&within)
    );
    h.advance(10);
    let past = h.get("/page");
    assert!(
        !status_of(&past).starts_with("cachefront; hit"),
        "past 10 x PURGE_SYNC_MS (at least 10 s) the entry is not trusted: {}",
        status_of(&past)
    );
    assert_eq!(h.origin_calls("/page"), 2, "it went back to the origin");
    let receipt = purge(&h, r#"{"tags":["pages"]}"#);
    assert_eq!(
        receipt.response.status(),
        503,
        "a purge cannot be acknowledged"
    );
    let json: serde_json::Value = serde_json::from_slice(receipt.response.body()).expect("json");
    assert_eq!(json["error"]["code"], "registry_unavailable");
}

#[test]
fn over_purge_rate_per_min_a_purge_is_refused_with_429_and_retry_after() {
    let h = tagged(&[("PURGE_RATE_PER_MIN", "2")]);
    h.get("/page");
    for _ in 0..2 {
        assert_eq!(purge(&h, r#"{"tags":["other"]}"#).response.status(), 200);
    }
    let refused = purge(&h, r#"{"tags":["pages"]}"#);
    assert_eq!(refused.response.status(), 429);
    let retry_after: u64 = header(&refused, "retry-after")
        .parse()
        .expect("delay-seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let json: serde_json::Value = serde_json::from_slice(refused.response.body()).expect("json");
    assert_eq!(json["error"]["code"], "rate_limited");
    h.advance(1);
    assert!(
        status_of(&h.get("/page")).starts_with("cachefront; hit"),
        "the refused purge changed nothing"
    );
    h.advance(u64::from(retry_after as u32));
    assert_eq!(
        purge(&h, r#"{"tags":["pages"]}"#).response.status(),
        200,
        "allowed again after Retry-After"
    );
}
