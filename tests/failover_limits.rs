//! Native tests of the failover budgets (`ORIGIN_MAX_ATTEMPTS`,
//! `ORIGIN_DEADLINE_MS`) and of the answer when every origin answered a
//! failure status, with the clock moved by the stand-in origins themselves.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use cachefront::platform::memory::ManualClock;
use cachefront::platform::OriginError;
use common::{body, header, reply, Harness};

const THREE: &str = r#"[{"name":"a","url":"http://10.0.0.1"},{"name":"b","url":"http://10.0.0.2"},{"name":"c","url":"http://10.0.0.3"}]"#;
const TWO: &str =
    r#"[{"name":"primary","url":"http://10.0.0.1"},{"name":"backup","url":"http://10.0.0.2"}]"#;

fn asked(h: &Harness) -> Vec<String> {
    h.origin()
        .received()
        .iter()
        .map(|(_, uri, _)| uri.host().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn origin_max_attempts_caps_how_many_origins_one_request_tries() {
    let h = Harness::with_origins(THREE, &[("ORIGIN_MAX_ATTEMPTS", "2")], |_, _, _| {
        Err(OriginError::Connect("refused".into()))
    });
    let r = h.get("/x");
    assert_eq!(r.response.status(), 502);
    assert_eq!(
        asked(&h),
        ["10.0.0.1", "10.0.0.2"],
        "the third origin is never tried"
    );
    let json: serde_json::Value = serde_json::from_slice(r.response.body()).expect("json");
    assert_eq!(json["attempts"].as_array().map(Vec::len), Some(2), "{json}");
}

#[test]
fn without_a_cap_every_origin_is_tried() {
    let h = Harness::with_origins(THREE, &[], |_, _, _| {
        Err(OriginError::Connect("refused".into()))
    });
    h.get("/x");
    assert_eq!(asked(&h), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
}

/// The primary uses up `spent_secs` of the clock, then times out; the backup answers.
fn slow_primary(deadline_ms: &str, spent_secs: u64) -> Harness {
    let clock: Rc<RefCell<Option<ManualClock>>> = Rc::default();
    let seen = Rc::clone(&clock);
    let h = Harness::with_origins(
        TWO,
        &[("ORIGIN_DEADLINE_MS", deadline_ms)],
        move |origin, _, _| {
            if origin.name == "primary" {
                if let Some(clock) = seen.borrow().as_ref() {
                    clock.advance_secs(spent_secs);
                }
                Err(OriginError::Timeout("no answer".into()))
            } else {
                reply(200, &[], "from backup")
            }
        },
    );
    *clock.borrow_mut() = Some(h.pipeline.platform().clock.clone());
    h
}

#[test]
fn no_attempt_starts_once_origin_deadline_ms_is_spent() {
    let h = slow_primary("5000", 5);
    let r = h.get("/slow");
    assert_eq!(r.response.status(), 504, "{}", body(&r));
    assert_eq!(
        asked(&h),
        ["10.0.0.1"],
        "the backup is not tried past the deadline"
    );
}

#[test]
fn the_next_attempt_gets_only_what_is_left_of_origin_deadline_ms() {
    let h = slow_primary("8000", 5);
    let r = h.get("/slow");
    assert_eq!(body(&r), "from backup");
    assert_eq!(
        h.origin().timeouts(),
        [8_000, 3_000],
        "each attempt is cut to the time left (origin timeout 10000)"
    );
}

#[test]
fn when_every_origin_answers_a_failure_status_the_last_origins_own_response_is_passed_on() {
    let h = Harness::with_origins(TWO, &[], |origin, _, _| {
        if origin.name == "primary" {
            reply(503, &[("content-type", "text/plain")], "primary overloaded")
        } else {
            reply(
                500,
                &[("content-type", "text/html"), ("x-from", "backup")],
                "<h1>backup broke</h1>",
            )
        }
    });
    let r = h.get("/page");
    assert_eq!(r.response.status(), 500);
    assert_eq!(body(&r), "<h1>backup broke</h1>");
    assert_eq!(header(&r, "x-from"), "backup");
    assert_eq!(header(&r, "content-type"), "text/html");
    assert_eq!(asked(&h), ["10.0.0.1", "10.0.0.2"]);
}
