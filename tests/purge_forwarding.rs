//! Native tests of forwarding purges to Cloudflare's zone API through the
//! whole pipeline: the request as Cloudflare documents it, and what the API
//! answered, in the receipt and the request log.

mod common;

use cachefront::purge::cloudflare::ApiReply;
use common::{body, reply, Harness};

const TOKEN: &str = "purge-token-0123456789";
const ZONE: &str = "0123456789abcdef0123456789abcdef";

fn zone_harness(extra: &[(&'static str, &'static str)]) -> Harness {
    let mut vars = vec![
        ("PURGE_TOKEN", TOKEN),
        ("PURGE_PREFIX_TAGS", "/blog/"),
        ("CF_ZONE_ID", ZONE),
        ("CF_API_TOKEN", "cf-api-token"),
    ];
    vars.extend_from_slice(extra);
    Harness::with_vars(&vars, |_, _| {
        reply(200, &[("cache-control", "max-age=60")], "x")
    })
}

fn purge(h: &Harness, json: &'static str) -> (common::Handled, serde_json::Value) {
    let handled = h.send(
        "POST",
        "/__cachefront/purge",
        &[
            ("authorization", "Bearer purge-token-0123456789"),
            ("content-type", "application/json"),
        ],
        json,
    );
    let receipt = serde_json::from_slice(handled.response.body()).expect("a JSON receipt");
    (handled, receipt)
}

fn api_reply(status: u16, body: &str) -> Result<ApiReply, String> {
    Ok(ApiReply {
        status,
        retry_after: None,
        body: body.to_owned(),
    })
}

#[test]
fn a_forwarded_purge_is_one_documented_purge_cache_call_per_kind() {
    let h = zone_harness(&[]);
    let (handled, receipt) = purge(
        &h,
        r#"{"tags":["product:7"],"urls":["https://shop.example/a"],"prefixes":["/blog/"]}"#,
    );
    assert_eq!(handled.response.status(), 200, "{}", body(&handled));
    let calls = h.pipeline.platform().cloudflare.calls.borrow().clone();
    let bodies: Vec<serde_json::Value> = calls
        .iter()
        .map(|c| serde_json::from_str(c.body()).expect("JSON body"))
        .collect();
    assert_eq!(
        bodies,
        [
            serde_json::json!({"files": ["https://shop.example/a"]}),
            serde_json::json!({"tags": ["product:7"]}),
            serde_json::json!({"prefixes": ["shop.example/blog/"]}),
        ]
    );
    for call in &calls {
        assert_eq!(call.method(), "POST");
        assert_eq!(
            call.uri().to_string(),
            format!("https://api.cloudflare.com/client/v4/zones/{ZONE}/purge_cache")
        );
        assert_eq!(call.headers()["authorization"], "Bearer cf-api-token");
        assert_eq!(call.headers()["content-type"], "application/json");
    }
    assert_eq!(
        receipt["cloudflare"],
        serde_json::json!({"status": "sent", "calls": 3, "ok": true, "succeeded": 3,
                           "failed": [], "retrying": 0}),
        "{receipt}"
    );
}

#[test]
fn a_refused_zone_purge_is_in_the_receipt_and_the_request_log_with_cloudflares_message() {
    let h = zone_harness(&[]);
    h.pipeline
        .platform()
        .cloudflare
        .replies
        .borrow_mut()
        .push_back(api_reply(
            403,
            r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}"#,
        ));
    let (handled, receipt) = purge(&h, r#"{"tags":["a"]}"#);
    assert_eq!(handled.response.status(), 200, "the registry purge stood");
    let cf = &receipt["cloudflare"];
    assert_eq!(cf["status"], "sent", "{receipt}");
    assert_eq!(cf["ok"], false);
    assert_eq!(cf["succeeded"], 0);
    assert_eq!(cf["retrying"], 0, "a 403 is not retried");
    assert_eq!(cf["failed"][0]["status"], 403);
    assert_eq!(cf["failed"][0]["message"], "Authentication error");
    let logged = handled
        .log
        .purge
        .as_ref()
        .expect("purge fields in the request log");
    assert_eq!(&logged["cloudflare"], cf, "the request log says the same");
    assert!(!serde_json::to_string(&handled.log)
        .expect("log")
        .contains("cf-api-token"));
    assert_eq!(h.pipeline.platform().cloudflare.calls.borrow().len(), 1);
}

#[test]
fn a_zone_purge_that_met_a_5xx_is_reported_retrying_and_sent_again_in_the_background() {
    let h = zone_harness(&[]);
    h.pipeline
        .platform()
        .cloudflare
        .replies
        .borrow_mut()
        .push_back(api_reply(503, "unavailable"));
    let (_, receipt) = purge(&h, r#"{"tags":["a"]}"#);
    let cf = &receipt["cloudflare"];
    assert_eq!(cf["ok"], false, "{receipt}");
    assert_eq!(cf["retrying"], 1);
    assert_eq!(cf["failed"][0]["status"], 503);
    // `send` ran the background work: the call went again and succeeded.
    let calls = h.pipeline.platform().cloudflare.calls.borrow().clone();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].body(), calls[1].body());
}

#[test]
fn without_a_zone_nothing_is_forwarded_and_the_receipt_says_disabled() {
    let h = Harness::with_vars(&[("PURGE_TOKEN", TOKEN)], |_, _| reply(200, &[], "x"));
    let (_, receipt) = purge(&h, r#"{"tags":["a"]}"#);
    assert_eq!(
        receipt["cloudflare"],
        serde_json::json!({"status": "disabled"})
    );
    assert!(h.pipeline.platform().cloudflare.calls.borrow().is_empty());
}

#[test]
fn a_dry_run_sends_nothing_to_the_zone() {
    let h = zone_harness(&[]);
    let (_, receipt) = purge(&h, r#"{"tags":["a"],"dry_run":true}"#);
    assert_eq!(
        receipt["cloudflare"],
        serde_json::json!({"status": "would_send", "calls": 1})
    );
    assert!(h.pipeline.platform().cloudflare.calls.borrow().is_empty());
}

#[test]
fn cf_api_base_points_forwarding_at_a_loopback_stand_in() {
    let h = zone_harness(&[("CF_API_BASE", "http://127.0.0.1:9/client/v4/")]);
    purge(&h, r#"{"tags":["a"]}"#);
    let calls = h.pipeline.platform().cloudflare.calls.borrow().clone();
    assert_eq!(
        calls[0].uri().to_string(),
        format!("http://127.0.0.1:9/client/v4/zones/{ZONE}/purge_cache")
    );
}

#[test]
fn cf_api_base_refuses_plain_http_to_a_remote_host_and_urls_with_credentials() {
    for bad in [
        "http://api.example.com/client/v4",
        "https://user:pw@api.example.com/client/v4",
        "not a url",
        "ftp://127.0.0.1/x",
    ] {
        let vars = [
            (
                "ORIGINS".to_owned(),
                r#"[{"name":"a","url":"http://127.0.0.1:1"}]"#.to_owned(),
            ),
            ("CF_API_BASE".to_owned(), bad.to_owned()),
        ];
        let err = cachefront::config::Config::from_vars(|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .expect_err(bad);
        assert!(err.to_string().contains("CF_API_BASE"), "{bad}: {err}");
    }
}
