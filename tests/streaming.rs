//! Bodies above `STREAM_BODIES_ABOVE_BYTES` stay streams: the pipeline routes
//! them (client, Cache API, range, drop) without ever holding their bytes, on
//! the in-memory platform whose streams a test can read and count.

mod common;

use cachefront::platform::body;
use common::{header, reply, status_of, Harness};
use http::StatusCode;

const THRESHOLD: &str = "1000";

fn big_body() -> String {
    (0..3000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect()
}

/// An origin serving `/big` (3000 bytes, with Content-Length unless told not to).
fn harness(vars: &[(&str, &str)], content_length: bool, cache_control: &'static str) -> Harness {
    let mut all = vec![("STREAM_BODIES_ABOVE_BYTES", THRESHOLD)];
    all.extend_from_slice(vars);
    Harness::with_vars(&all, move |req, _| {
        let body = big_body();
        let len = body.len().to_string();
        let mut headers = vec![
            ("cache-control", cache_control),
            ("content-type", "application/octet-stream"),
            ("etag", "\"v1\""),
        ];
        if req.headers().get("if-none-match").is_some() {
            return reply(304, &headers, "");
        }
        if content_length {
            headers.push(("content-length", len.as_str()));
        }
        reply(200, &headers, &body)
    })
}

#[test]
fn body_above_the_threshold_reaches_the_client_as_a_stream_and_is_stored() {
    let h = harness(&[], true, "max-age=60");
    let first = h.send_streamed("GET", "/big", &[], "");
    let stream = body::streamed(&first.response).expect("streamed, not buffered");
    assert!(
        first.response.body().is_empty(),
        "no bytes held by the core"
    );
    assert_eq!(stream.len, Some(3000));
    assert_eq!(
        status_of(&first),
        "cachefront; fwd=uri-miss; fwd-status=200; stored"
    );
    let bytes = h
        .pipeline
        .platform()
        .streams
        .read(&stream)
        .expect("readable");
    assert_eq!(bytes, big_body().as_bytes());
    assert_eq!(h.open_streams(), 0, "the store's branch was consumed");

    let second = h.send_streamed("GET", "/big", &[], "");
    assert!(status_of(&second).starts_with("cachefront; hit"));
    assert_eq!(second.log.tier, "edge", "served by the Cache API tier");
    assert!(
        !status_of(&second).contains("detail=memory"),
        "never in the memory tier"
    );
    let stream = body::streamed(&second.response).expect("a stored large body streams too");
    assert_eq!(
        stream.len,
        Some(3000),
        "length kept in the entry's metadata"
    );
    assert_eq!(
        h.pipeline
            .platform()
            .streams
            .read(&stream)
            .expect("readable"),
        big_body().as_bytes()
    );
    assert_eq!(h.origin_calls("/big"), 1);
    assert_eq!(h.open_streams(), 0);
}

#[test]
fn body_at_or_below_the_threshold_is_buffered_and_reaches_the_memory_tier() {
    let h = Harness::with_vars(&[("STREAM_BODIES_ABOVE_BYTES", "5000")], |_, _| {
        reply(200, &[("cache-control", "max-age=60")], &big_body())
    });
    let first = h.send_streamed("GET", "/big", &[], "");
    assert_eq!(body::streamed(&first.response), None);
    assert_eq!(first.response.body().len(), 3000);
    let second = h.get("/big");
    assert!(status_of(&second).contains("detail=memory"));
}

#[test]
fn streamed_body_of_unknown_length_is_served_but_not_stored() {
    let h = harness(&[], false, "max-age=60");
    let first = h.get("/big");
    assert_eq!(common::body(&first), big_body());
    assert_eq!(
        status_of(&first),
        "cachefront; fwd=uri-miss; fwd-status=200; detail=unknown-length"
    );
    let second = h.get("/big");
    assert_eq!(common::body(&second), big_body());
    assert_eq!(h.origin_calls("/big"), 2);
    assert_eq!(h.open_streams(), 0);
}

#[test]
fn streamed_body_above_the_object_limit_is_served_but_not_stored() {
    let h = harness(&[("CACHE_MAX_OBJECT_BYTES", "2000")], true, "max-age=60");
    let first = h.get("/big");
    assert_eq!(common::body(&first), big_body());
    assert!(status_of(&first).ends_with("detail=too-large"));
    h.get("/big");
    assert_eq!(h.origin_calls("/big"), 2);
    assert_eq!(h.open_streams(), 0);
}

#[test]
fn range_of_a_streamed_entry_is_cut_from_the_stream() {
    let h = harness(&[], true, "max-age=60");
    h.get("/big");
    let part = h.send_streamed("GET", "/big", &[("range", "bytes=100-199")], "");
    assert_eq!(part.response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&part, "content-range"), "bytes 100-199/3000");
    let stream = body::streamed(&part.response).expect("the range streams");
    assert_eq!(stream.len, Some(100));
    assert_eq!(
        h.pipeline
            .platform()
            .streams
            .read(&stream)
            .expect("readable"),
        big_body().as_bytes()[100..200]
    );

    let suffix = h.get_with("/big", &[("range", "bytes=-10")]);
    assert_eq!(header(&suffix, "content-range"), "bytes 2990-2999/3000");
    assert_eq!(common::body(&suffix), big_body()[2990..]);

    let beyond = h.get_with("/big", &[("range", "bytes=5000-")]);
    assert_eq!(beyond.response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&beyond, "content-range"), "bytes */3000");
    assert_eq!(h.origin_calls("/big"), 1);
    assert_eq!(h.open_streams(), 0, "unused streams are dropped");
}

#[test]
fn head_and_not_modified_answers_drop_the_stream() {
    let h = harness(&[], true, "max-age=60");
    h.get("/big");
    let head = h.send_streamed("HEAD", "/big", &[], "");
    assert_eq!(body::streamed(&head.response), None);
    assert!(head.response.body().is_empty());
    let not_modified = h.send_streamed("GET", "/big", &[("if-none-match", "\"v1\"")], "");
    assert_eq!(not_modified.response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(body::streamed(&not_modified.response), None);
    assert_eq!(h.open_streams(), 0);
}

#[test]
fn revalidated_streamed_entry_keeps_its_body_for_the_client_and_the_store() {
    let h = harness(&[], true, "max-age=1");
    h.get("/big");
    h.advance(5);
    let revalidated = h.get("/big");
    assert_eq!(
        status_of(&revalidated),
        "cachefront; fwd=stale; fwd-status=304; ttl=1; stored"
    );
    assert_eq!(common::body(&revalidated), big_body());
    let hit = h.get("/big");
    assert!(status_of(&hit).starts_with("cachefront; hit"));
    assert_eq!(common::body(&hit), big_body());
    assert_eq!(h.origin_calls("/big"), 2);
    assert_eq!(h.open_streams(), 0);
}

#[test]
fn stale_while_revalidate_on_a_streamed_entry_serves_it_and_refetches_whole() {
    let h = harness(&[], true, "max-age=1, stale-while-revalidate=60");
    h.get("/big");
    h.advance(5);
    let stale = h.get("/big");
    assert!(status_of(&stale).contains("stale-while-revalidate"));
    assert_eq!(common::body(&stale), big_body());
    assert_eq!(h.origin_calls("/big"), 2, "refreshed in the background");
    let fresh = h.get("/big");
    assert!(status_of(&fresh).starts_with("cachefront; hit"));
    assert_eq!(common::body(&fresh), big_body());
    assert_eq!(h.open_streams(), 0);
}

#[test]
fn streamed_html_is_passed_through_without_rewriting() {
    let page = format!(
        "<html><body><img src=\"/a.png\">{}</body></html>",
        "x".repeat(2000)
    );
    let h = Harness::with_vars(
        &[
            ("STREAM_BODIES_ABOVE_BYTES", THRESHOLD),
            ("HTML_REWRITE", "on"),
        ],
        move |_, _| {
            reply(
                200,
                &[("content-type", "text/html"), ("cache-control", "no-store")],
                &page,
            )
        },
    );
    let answer = h.get("/page");
    assert!(!common::body(&answer).contains("loading=\"lazy\""));
    assert!(answer
        .log
        .warnings
        .iter()
        .any(|w| w.contains("streamed without rewriting")));
    assert_eq!(h.open_streams(), 0);
}

#[test]
fn unsafe_method_answers_stream_through_untouched() {
    let h = harness(&[], true, "max-age=60");
    let posted = h.send_streamed("POST", "/big", &[], "payload");
    let stream = body::streamed(&posted.response).expect("streamed");
    assert_eq!(
        h.pipeline
            .platform()
            .streams
            .read(&stream)
            .expect("readable"),
        big_body().as_bytes()
    );
    assert_eq!(h.open_streams(), 0);
}

#[test]
fn streamed_upload_reaches_the_origin_whole_and_is_not_a_cache_key() {
    let h = Harness::with_vars(&[("STREAM_BODIES_ABOVE_BYTES", THRESHOLD)], |req, _| {
        let sum: u64 = req.body().iter().map(|&b| u64::from(b)).sum();
        reply(
            200,
            &[("cache-control", "max-age=60")],
            &format!("{} {} bytes, sum {sum}", req.method(), req.body().len()),
        )
    });
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = bytes.iter().map(|&b| u64::from(b)).sum();
    let posted = h.send_upload("POST", "/upload", bytes.clone());
    assert_eq!(common::body(&posted), format!("POST 5000 bytes, sum {sum}"));
    // A GET carrying a (streamed) body is forwarded, never answered from or stored in the cache.
    let get = h.send_upload("GET", "/upload", bytes);
    assert!(status_of(&get).contains("detail=get-with-body"));
    assert_eq!(h.open_streams(), 0);
}

#[test]
fn streamed_purge_body_is_refused_unread() {
    let h = harness(
        &[("PURGE_TOKEN", "a-long-enough-secret-token")],
        true,
        "max-age=60",
    );
    let refused = h.send_upload("POST", "/__cachefront/purge", vec![b' '; 5000]);
    assert_eq!(refused.response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(common::body(&refused).contains("body_too_large"));
    assert_eq!(h.open_streams(), 0);
}

#[test]
fn without_a_memory_tier_cache_api_hits_stream_the_stored_body() {
    let h = Harness::with_vars(&[("MEMORY_CACHE_BYTES", "0")], |_, _| {
        reply(200, &[("cache-control", "max-age=60")], "small page")
    });
    h.get("/p");
    let hit = h.send_streamed("GET", "/p", &[], "");
    assert!(status_of(&hit).starts_with("cachefront; hit"));
    let stream = body::streamed(&hit.response).expect("not copied out of the store");
    assert_eq!(stream.len, Some(10));
    assert_eq!(header(&hit, "content-length"), "10");
    assert_eq!(
        h.pipeline
            .platform()
            .streams
            .read(&stream)
            .expect("readable"),
        "small page".as_bytes()
    );
    let part = h.get_with("/p", &[("range", "bytes=6-9")]);
    assert_eq!(common::body(&part), "page");
    assert_eq!(h.open_streams(), 0);
}
