//! Native tests of origin failover through the whole pipeline: candidate
//! order, retries, circuit breaking, the active health check and the last
//! resort, with origins scripted per test and the clock moved by hand.

mod common;

use cachefront::platform::OriginError;
use common::{body, header, reply, status_of, Harness};
use futures::executor::block_on;

const TWO: &str =
    r#"[{"name":"primary","url":"http://10.0.0.1"},{"name":"backup","url":"http://10.0.0.2"}]"#;
const TWO_CHECKED: &str = r#"[{"name":"primary","url":"http://10.0.0.1","health_path":"/healthz"},{"name":"backup","url":"http://10.0.0.2","health_path":"/healthz"}]"#;

fn refused() -> OriginError {
    OriginError::Connect("connection refused".into())
}

/// The primary refuses connections; the backup answers (cacheable for 0 s so
/// every request goes to the origins).
fn primary_down() -> Harness {
    Harness::with_origins(TWO, &[], |origin, _, _| {
        if origin.name == "primary" {
            Err(refused())
        } else {
            reply(200, &[("cache-control", "no-store")], "from backup")
        }
    })
}

#[test]
fn refused_primary_fails_over_to_the_backup() {
    let h = primary_down();
    let r = h.get("/page");
    assert_eq!(r.response.status(), 200);
    assert_eq!(body(&r), "from backup");
    assert_eq!(header(&r, "cachefront-origin"), "backup");
    assert!(header(&r, "server-timing").contains("origin-failed;dur=0;desc=\"primary: connect\""));
    assert!(header(&r, "server-timing").contains("origin;dur=0;desc=\"backup\""));
}

#[test]
fn after_n_failures_the_primary_is_skipped_without_an_attempt() {
    let h = primary_down();
    for _ in 0..3 {
        h.get("/page");
    }
    assert_eq!(h.calls_to("primary", "/page"), 3);
    for _ in 0..5 {
        assert_eq!(body(&h.get("/page")), "from backup");
    }
    assert_eq!(
        h.calls_to("primary", "/page"),
        3,
        "the open circuit sends nothing to the primary"
    );
    assert_eq!(h.calls_to("backup", "/page"), 8);
}

#[test]
fn traffic_returns_to_the_primary_after_the_cooldown_probe() {
    let primary_up = std::rc::Rc::new(std::cell::Cell::new(false));
    let flag = std::rc::Rc::clone(&primary_up);
    let h = Harness::with_origins(
        TWO,
        &[("HEALTH_COOLDOWN_SECS", "10")],
        move |origin, _, _| match (origin.name.as_str(), flag.get()) {
            ("primary", false) => Err(refused()),
            ("primary", true) => reply(200, &[], "from primary"),
            _ => reply(200, &[], "from backup"),
        },
    );
    for _ in 0..3 {
        h.get("/p");
    }
    primary_up.set(true);
    assert_eq!(body(&h.get("/p")), "from backup", "still in cool-down");
    h.advance(11);
    assert_eq!(
        body(&h.get("/p")),
        "from primary",
        "the probe goes to the primary"
    );
    assert_eq!(
        body(&h.get("/p")),
        "from primary",
        "and the circuit is closed again"
    );
}

#[test]
fn timed_out_primary_fails_over_to_the_backup() {
    let h = Harness::with_origins(TWO, &[], |origin, _, _| {
        if origin.name == "primary" {
            Err(OriginError::Timeout("no answer within 10000 ms".into()))
        } else {
            reply(200, &[], "from backup")
        }
    });
    let r = h.get("/slow");
    assert_eq!(body(&r), "from backup");
    assert!(header(&r, "server-timing").contains("primary: timeout"));
}

#[test]
fn a_503_is_retried_on_the_backup_for_get_but_not_for_post() {
    let h = Harness::with_origins(TWO, &[], |origin, _, _| {
        if origin.name == "primary" {
            reply(503, &[], "primary overloaded")
        } else {
            reply(200, &[], "from backup")
        }
    });
    assert_eq!(body(&h.get("/x")), "from backup");
    let post = h.send("POST", "/orders", &[], "{\"sku\":1}");
    assert_eq!(
        post.response.status(),
        503,
        "a request body is never sent twice"
    );
    assert_eq!(h.calls_to("backup", "/orders"), 0);
}

#[test]
fn a_streamed_upload_is_sent_once_even_for_retried_methods() {
    let h = Harness::with_origins(TWO, &[("RETRY_METHODS", "PUT")], |origin, req, _| {
        if origin.name == "primary" {
            Err(refused())
        } else {
            reply(200, &[], &format!("stored {} bytes", req.body().len()))
        }
    });
    let put = h.send_upload("PUT", "/doc", vec![7; 5000]);
    assert_eq!(
        put.response.status(),
        502,
        "the body went to the first attempt"
    );
    assert_eq!(h.calls_to("backup", "/doc"), 0);
    assert_eq!(h.open_streams(), 0);
}

#[test]
fn configured_methods_are_retried_too() {
    let h = Harness::with_origins(TWO, &[("RETRY_METHODS", "PUT")], |origin, _, _| {
        if origin.name == "primary" {
            Err(refused())
        } else {
            reply(200, &[], "stored on backup")
        }
    });
    assert_eq!(body(&h.send("PUT", "/doc", &[], "{}")), "stored on backup");
}

#[test]
fn when_every_origin_refuses_the_answer_is_a_502_naming_each_attempt() {
    let h = Harness::with_origins(TWO, &[], |_, _, _| Err(refused()));
    let r = h.get("/nothing");
    assert_eq!(r.response.status(), 502);
    assert_eq!(header(&r, "cache-control"), "no-store");
    let json: serde_json::Value = serde_json::from_slice(r.response.body()).expect("json");
    assert_eq!(json["error"], "origin_unreachable");
    let attempts: Vec<_> = json["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| {
            (
                a["origin"].as_str().unwrap_or(""),
                a["error"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(attempts, [("primary", "connect"), ("backup", "connect")]);
}

#[test]
fn when_every_origin_times_out_the_answer_is_a_504() {
    let h = Harness::with_origins(TWO, &[], |_, _, _| Err(OriginError::Timeout("slow".into())));
    let r = h.get("/nothing");
    assert_eq!(r.response.status(), 504);
    let json: serde_json::Value = serde_json::from_slice(r.response.body()).expect("json");
    assert_eq!(json["error"], "origin_timeout");
}

#[test]
fn when_every_origin_fails_the_stale_copy_is_served() {
    let healthy = std::rc::Rc::new(std::cell::Cell::new(true));
    let flag = std::rc::Rc::clone(&healthy);
    let h = Harness::with_origins(TWO, &[("STALE_IF_ERROR_SECS", "600")], move |_, _, _| {
        if flag.get() {
            reply(200, &[("cache-control", "max-age=10")], "cached copy")
        } else {
            Err(refused())
        }
    });
    h.get("/page");
    healthy.set(false);
    h.advance(60);
    let r = h.get("/page");
    assert_eq!(r.response.status(), 200);
    assert_eq!(body(&r), "cached copy");
    assert!(
        status_of(&r).contains("detail=stale-if-error"),
        "{}",
        status_of(&r)
    );
}

#[test]
fn with_every_origin_down_the_least_recently_failed_is_still_tried() {
    let h = Harness::with_origins(TWO, &[], |_, _, _| Err(refused()));
    for _ in 0..3 {
        h.get("/x");
    }
    let before = h.origin_calls("/x");
    h.get("/x");
    assert!(
        h.origin_calls("/x") > before,
        "a request always has somewhere to go"
    );
}

#[test]
fn the_health_check_marks_a_dead_origin_down_before_any_user_request() {
    let h = Harness::with_origins(TWO_CHECKED, &[], |origin, req, _| {
        if req.uri().path() == "/healthz" {
            return if origin.name == "primary" {
                Err(refused())
            } else {
                reply(200, &[], "ok")
            };
        }
        reply(200, &[], &format!("from {}", origin.name))
    });
    let results = block_on(h.pipeline.check_origins());
    let states: Vec<_> = results.iter().map(|r| (r.origin.as_str(), r.up)).collect();
    assert_eq!(states, [("primary", false), ("backup", true)]);
    // A fresh isolate reading the shared results (same platform, new state).
    let fresh = h.pipeline.with_fresh_isolate();
    let r = block_on(
        fresh.handle(
            http::Request::builder()
                .uri("https://shop.example/p")
                .body(cachefront::Body::new())
                .expect("request"),
        ),
    );
    assert_eq!(String::from_utf8_lossy(r.response.body()), "from backup");
    assert_eq!(
        h.calls_to("primary", "/p"),
        0,
        "no user request was spent on the dead origin"
    );
}

#[test]
fn equal_priority_origins_share_traffic_by_weight() {
    let h = Harness::with_origins(
        r#"[{"name":"a","url":"http://10.0.0.1","priority":0,"weight":3},{"name":"b","url":"http://10.0.0.2","priority":0,"weight":1}]"#,
        &[],
        |origin, _, _| reply(200, &[("cache-control", "no-store")], &origin.name),
    );
    let mut to_a = 0;
    for i in 0..400 {
        h.advance(1);
        if body(&h.get(&format!("/item/{i}"))) == "a" {
            to_a += 1;
        }
    }
    assert!((240..360).contains(&to_a), "about 3 in 4 to a: {to_a}");
}

#[test]
fn health_endpoint_is_off_without_a_token() {
    let h = primary_down();
    let r = h.get("/__cachefront/health");
    assert_eq!(r.response.status(), 404);
    let json: serde_json::Value = serde_json::from_slice(r.response.body()).expect("json");
    assert_eq!(json["error"], "disabled");
}

#[test]
fn health_endpoint_reports_each_origin_behind_the_token() {
    let h = Harness::with_origins(
        TWO,
        &[("PURGE_TOKEN", "s3cret-operator-token")],
        |origin, _, _| {
            if origin.name == "primary" {
                Err(refused())
            } else {
                reply(200, &[], "ok")
            }
        },
    );
    for _ in 0..3 {
        h.get("/p");
    }
    let denied = h.get("/__cachefront/health");
    assert_eq!(denied.response.status(), 401);
    assert_eq!(header(&denied, "www-authenticate"), "Bearer");
    let wrong = h.get_with("/__cachefront/health", &[("authorization", "Bearer nope")]);
    assert_eq!(wrong.response.status(), 401);
    assert!(
        !body(&wrong).contains("s3cret-operator-token"),
        "the token never appears in answers"
    );
    let r = h.get_with(
        "/__cachefront/health",
        &[("authorization", "Bearer s3cret-operator-token")],
    );
    assert_eq!(r.response.status(), 200);
    let json: serde_json::Value = serde_json::from_slice(r.response.body()).expect("json");
    let states: Vec<_> = json["origins"]
        .as_array()
        .expect("origins")
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap_or(""),
                o["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(states, [("primary", "down"), ("backup", "up")]);
    let post = h.send(
        "POST",
        "/__cachefront/health",
        &[("authorization", "Bearer s3cret-operator-token")],
        "",
    );
    assert_eq!(post.response.status(), 405);
}
