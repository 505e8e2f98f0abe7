//! Collapsing refills across the isolates of one data centre
//! (`DC_COLLAPSE`): two isolate states share one Cache API store, as the
//! isolates of a data centre do on Workers.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use cachefront::cache::collapse::{self, ClaimMarker};
use cachefront::pipeline::Pipeline;
use cachefront::platform::memory::MemoryPlatform;
use cachefront::platform::CacheStore;
use cachefront::purge::sync;
use cachefront::Body;
use common::{body, cached_pages, reply, status_of, Handled, Harness, T0};
use futures::executor::block_on;
use http::Request;

const TOKEN: &str = "purge-token-0123456789";

fn request(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().uri(format!("https://shop.example{path}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(Body::new()).expect("request")
}

fn get_from(pipeline: &Pipeline<MemoryPlatform>, path: &str) -> Handled {
    let handled = block_on(pipeline.handle(request(path, &[])));
    block_on(pipeline.platform().tasks.run_all());
    handled
}

/// Pending once, then ready: lets the other futures of a join run.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Runs two isolates' requests side by side while the origin is held: the
/// first to reach the origin waits there; then the origin is released and
/// the background work (Cache API writes) runs between polls, as
/// `waitUntil` work does on Workers.
fn side_by_side(
    h: &Harness,
    first: (&Pipeline<MemoryPlatform>, Request<Body>),
    second: (&Pipeline<MemoryPlatform>, Request<Body>),
) -> (Handled, Handled) {
    let release = h.origin().hold();
    let tasks = h.pipeline.platform().tasks.clone();
    let a = first.0.handle(first.1);
    let b = second.0.handle(second.1);
    let driver = async move {
        // Both requests get as far as they can before the origin answers.
        for _ in 0..3 {
            YieldOnce(false).await;
        }
        let _ = release.send(());
        for _ in 0..400 {
            tasks.run_all().await;
            YieldOnce(false).await;
        }
    };
    let (a, b, ()) = block_on(futures::future::join3(a, b, driver));
    block_on(h.pipeline.platform().tasks.run_all());
    (a, b)
}

fn gave_up_waiting(h: &Handled) -> bool {
    h.log.warnings.iter().any(|w| w.contains("gave up waiting"))
}

#[test]
fn a_second_isolate_waits_for_the_claimed_fill_and_serves_the_stored_answer() {
    let h = cached_pages(&[]);
    let other = h.pipeline.with_fresh_isolate();
    let (first, second) = side_by_side(
        &h,
        (&h.pipeline, request("/hot", &[])),
        (&other, request("/hot", &[])),
    );
    assert_eq!(
        h.origin_calls("/hot"),
        1,
        "one origin fetch for the data centre"
    );
    assert_eq!(body(&first), "/hot v1");
    assert_eq!(body(&second), "/hot v1");
    assert!(
        status_of(&second).contains("collapsed"),
        "{}",
        status_of(&second)
    );
    assert!(!gave_up_waiting(&second));
}

#[test]
fn with_dc_collapse_off_each_isolate_fetches_for_itself() {
    let h = cached_pages(&[("DC_COLLAPSE", "off")]);
    let other = h.pipeline.with_fresh_isolate();
    side_by_side(
        &h,
        (&h.pipeline, request("/hot", &[])),
        (&other, request("/hot", &[])),
    );
    assert_eq!(h.origin_calls("/hot"), 2);
    let cache = &h.pipeline.platform().cache;
    assert!(
        cache.keys().iter().all(|k| !collapse::is_claim(k)),
        "no claim is left when collapsing is off"
    );
}

#[test]
fn a_private_answer_sends_the_waiter_to_the_origin_at_once_and_is_never_shared() {
    let h = Harness::new(|_, n| reply(200, &[("cache-control", "private")], &format!("user {n}")));
    let other = h.pipeline.with_fresh_isolate();
    let (first, second) = side_by_side(
        &h,
        (&h.pipeline, request("/me", &[])),
        (&other, request("/me", &[])),
    );
    assert_eq!(h.origin_calls("/me"), 2, "each isolate fetched its own");
    assert_eq!(body(&first), "user 1");
    assert_eq!(
        body(&second),
        "user 2",
        "the waiter never gets the claimer's answer"
    );
    // The claim lives DC_COLLAPSE_MAX_WAIT_MS (3 s); told not to wait, the
    // waiter stopped long before (the test clock moves only when it sleeps).
    let slept = cachefront::platform::Clock::now_ms(&h.pipeline.platform().clock) - T0;
    assert!(slept < 1_000, "the waiter waited out the claim: {slept} ms");
    assert!(!gave_up_waiting(&second));
}

#[test]
fn a_waiter_for_another_variant_fetches_its_own() {
    let h = Harness::new(|req, _| {
        let lang = req
            .headers()
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        reply(
            200,
            &[
                ("cache-control", "max-age=600"),
                ("vary", "accept-language"),
            ],
            &lang,
        )
    });
    let other = h.pipeline.with_fresh_isolate();
    let (first, second) = side_by_side(
        &h,
        (&h.pipeline, request("/home", &[("accept-language", "en")])),
        (&other, request("/home", &[("accept-language", "fr")])),
    );
    assert_eq!(body(&first), "en");
    assert_eq!(body(&second), "fr");
    assert_eq!(h.origin_calls("/home"), 2);
    assert!(!gave_up_waiting(&second));
}

fn leave_claim(h: &Harness, marker: ClaimMarker) {
    let key = "https://shop.example/.cachefront/v1/https/page";
    let url = collapse::claim_url("v1", key);
    let response = sync::record_response(&marker, marker.keep_secs());
    block_on(h.pipeline.platform().cache.put(&url, response)).expect("put");
}

#[test]
fn an_expired_claim_is_ignored_and_an_abandoned_one_is_waited_out_then_fetched() {
    let settings = collapse::CollapseSettings {
        enabled: true,
        max_wait_ms: 100,
    };
    let h = cached_pages(&[("DC_COLLAPSE_MAX_WAIT_MS", "100")]);
    leave_claim(&h, collapse::claim(T0 - 1_000, &settings));
    let r = h.get("/page");
    assert_eq!(h.origin_calls("/page"), 1);
    assert!(!gave_up_waiting(&r), "an expired claim is not waited on");

    let h = cached_pages(&[("DC_COLLAPSE_MAX_WAIT_MS", "100")]);
    // A claim that outlives this data centre's wait (its claimer has a
    // longer DC_COLLAPSE_MAX_WAIT_MS, or died).
    leave_claim(
        &h,
        ClaimMarker {
            state: collapse::ClaimState::Filling,
            at_ms: T0,
            until_ms: T0 + 30_000,
        },
    );
    let r = h.get("/page");
    assert!(gave_up_waiting(&r), "a live claim is waited on, boundedly");
    assert_eq!(h.origin_calls("/page"), 1);
    assert_eq!(body(&r), "/page v1");
}

#[test]
fn after_a_purge_an_isolate_holding_the_old_entry_serves_the_refill_of_another() {
    let h = cached_pages(&[("PURGE_TOKEN", TOKEN)]);
    let other = h.pipeline.with_fresh_isolate();
    for pipeline in [&h.pipeline, &other] {
        get_from(pipeline, "/warm-up");
        get_from(pipeline, "/warm-up");
    }
    h.advance(1);
    get_from(&h.pipeline, "/x");
    h.advance(1);
    assert!(status_of(&get_from(&other, "/x")).contains("hit"));
    let purged = h.send(
        "POST",
        "/__cachefront/purge",
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("content-type", "application/json"),
        ],
        r#"{"tags":["pages"]}"#,
    );
    assert_eq!(purged.response.status(), 200);
    h.advance(2);
    let refill = get_from(&h.pipeline, "/x");
    assert_eq!(body(&refill), "/x v2");
    // The other isolate still holds v1 in its memory tier; it learns of the
    // purge, and finds the refill in the shared cache instead of fetching.
    let after = get_from(&other, "/x");
    assert_eq!(body(&after), "/x v2");
    assert!(
        status_of(&after).contains("collapsed"),
        "{}",
        status_of(&after)
    );
    assert_eq!(h.origin_calls("/x"), 2, "one refill for the data centre");
}

#[test]
fn a_request_that_refuses_stored_answers_neither_waits_nor_claims() {
    let h = cached_pages(&[]);
    let other = h.pipeline.with_fresh_isolate();
    let (_, second) = side_by_side(
        &h,
        (&h.pipeline, request("/hot", &[])),
        (&other, request("/hot", &[("cache-control", "no-cache")])),
    );
    assert_eq!(h.origin_calls("/hot"), 2);
    assert!(!status_of(&second).contains("collapsed"));
    assert!(!gave_up_waiting(&second));
}
