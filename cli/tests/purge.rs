//! `cachefront purge` over real HTTP against loopback stand-ins: one for the
//! edge's purge API, one for Cloudflare's `purge_cache` API. Each stand-in
//! records every request exactly as received and answers from a script, so
//! the tests check method, path, headers, body shape and batch sizes as the
//! API documents them, and the CLI's exit codes and messages.

use std::net::TcpListener;
use std::process::{Command, Output};

mod common;
use common::{stand_in, Reply};

const TOKEN: &str = "edge-token-0123456789abcdef";
const ZONE: &str = "0123456789abcdef0123456789abcdef";

fn cachefront(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cachefront"));
    command
        .args(args)
        .env_remove("CACHEFRONT_PURGE_TOKEN")
        .env_remove("CACHEFRONT_ENDPOINT")
        .env_remove("CF_ZONE_ID")
        .env_remove("CF_API_TOKEN")
        .env_remove("CACHEFRONT_CF_API_BASE");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run cachefront")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn receipt() -> String {
    serde_json::json!({
        "ok": true, "dry_run": false, "soft": true, "purged_at_ms": 1_700_000_000_000u64,
        "purged": {"tags": ["a", "b"], "urls": [], "prefixes": [], "hosts": [],
                   "everything": false, "soft": true, "dry_run": false},
        "registry_keys": 2, "shards_written": 2, "local_entries_affected": null,
        "cloudflare": {"status": "disabled"}
    })
    .to_string()
}

fn error_body(status: u16, code: &str, message: &str) -> String {
    serde_json::json!({"ok": false, "error": {"status": status, "code": code, "message": message}})
        .to_string()
}

#[test]
fn purge_by_tags_posts_json_with_the_bearer_token_and_prints_the_receipt() {
    let edge = stand_in(vec![(200, Vec::new(), receipt())]);
    let output = cachefront(
        &[
            "purge",
            "--tag",
            "a",
            "--tag",
            "b",
            "--soft",
            "--endpoint",
            &edge.base,
        ],
        &[("CACHEFRONT_PURGE_TOKEN", TOKEN)],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let seen = edge.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/__cachefront/purge");
    assert_eq!(
        request.header("authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.json(),
        serde_json::json!({"tags": ["a", "b"], "soft": true})
    );
    let printed: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the receipt is printed as JSON");
    assert_eq!(printed["shards_written"], 2);
    assert!(
        stderr(&output).contains("soft-purged 2 tags"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn every_purge_kind_and_dry_run_reach_the_api_from_the_environment_endpoint() {
    let edge = stand_in(vec![(200, Vec::new(), receipt())]);
    let output = cachefront(
        &[
            "purge",
            "--url",
            "https://example.com/p?x=1",
            "--prefix",
            "/products/",
            "--host",
            "example.com",
            "--everything",
            "--dry-run",
        ],
        &[
            ("CACHEFRONT_PURGE_TOKEN", TOKEN),
            ("CACHEFRONT_ENDPOINT", &format!("{}/", edge.base)),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let seen = edge.seen.lock().expect("lock").clone();
    assert_eq!(seen[0].path, "/__cachefront/purge");
    assert_eq!(
        seen[0].json(),
        serde_json::json!({
            "urls": ["https://example.com/p?x=1"], "prefixes": ["/products/"],
            "hosts": ["example.com"], "everything": true, "dry_run": true
        })
    );
}

#[test]
fn rejected_token_exits_3_with_the_server_message_and_never_prints_the_token() {
    let edge = stand_in(vec![(
        401,
        vec![("WWW-Authenticate", "Bearer realm=\"cachefront-purge\"")],
        error_body(401, "bad_token", "the bearer token is not valid"),
    )]);
    let output = cachefront(
        &["purge", "--tag", "a", "--endpoint", &edge.base],
        &[("CACHEFRONT_PURGE_TOKEN", TOKEN)],
    );
    assert_eq!(output.status.code(), Some(3));
    let err = stderr(&output);
    assert!(
        err.contains("HTTP 401") && err.contains("the bearer token is not valid"),
        "{err}"
    );
    assert!(!err.contains(TOKEN));
    assert!(!String::from_utf8_lossy(&output.stdout).contains(TOKEN));
}

#[test]
fn refused_requests_exit_6_and_server_errors_exit_5() {
    for (status, code, expected_exit) in [
        (400, "invalid_tag", 6),
        (404, "disabled", 6),
        (413, "too_many_items", 6),
        (429, "rate_limited", 6),
        (503, "registry_unavailable", 5),
    ] {
        let edge = stand_in(vec![(status, Vec::new(), error_body(status, code, "no"))]);
        // No retries: the answer's own exit code (retries: tests/purge_cloudfront.rs).
        let output = cachefront(
            &[
                "purge",
                "--tag",
                "a",
                "--endpoint",
                &edge.base,
                "--retries",
                "0",
            ],
            &[("CACHEFRONT_PURGE_TOKEN", TOKEN)],
        );
        assert_eq!(output.status.code(), Some(expected_exit), "HTTP {status}");
        assert_eq!(edge.seen.lock().expect("lock").len(), 1, "HTTP {status}");
        assert!(stderr(&output).contains(&format!("HTTP {status}")));
    }
}

#[test]
fn an_answer_that_is_not_a_receipt_exits_5() {
    let edge = stand_in(vec![(200, Vec::new(), "<html>hello</html>".to_owned())]);
    let output = cachefront(
        &["purge", "--tag", "a", "--endpoint", &edge.base],
        &[("CACHEFRONT_PURGE_TOKEN", TOKEN)],
    );
    assert_eq!(output.status.code(), Some(5));
    assert!(stderr(&output).contains("without a purge receipt"));
}

#[test]
fn unreachable_endpoint_exits_4() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let output = cachefront(
        &[
            "purge",
            "--tag",
            "a",
            "--endpoint",
            &base,
            "--timeout",
            "5",
            "--retries",
            "0",
        ],
        &[("CACHEFRONT_PURGE_TOKEN", TOKEN)],
    );
    assert_eq!(output.status.code(), Some(4));
    assert!(
        stderr(&output).contains("cannot reach"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn usage_errors_exit_2_before_any_request() {
    let edge = stand_in(Vec::new());
    // (arguments, environment, expected message)
    type UsageCase<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<UsageCase> = vec![
        (
            vec!["purge", "--tag", "a", "--endpoint", &edge.base],
            vec![],
            "CACHEFRONT_PURGE_TOKEN",
        ),
        (
            vec!["purge", "--tag", "a"],
            vec![("CACHEFRONT_PURGE_TOKEN", TOKEN)],
            "no endpoint",
        ),
        (
            vec!["purge", "--endpoint", &edge.base],
            vec![("CACHEFRONT_PURGE_TOKEN", TOKEN)],
            "nothing to purge",
        ),
        (
            vec!["purge", "--tag", "a", "--endpoint", "not a url"],
            vec![("CACHEFRONT_PURGE_TOKEN", TOKEN)],
            "not an absolute URL",
        ),
        (
            vec!["purge", "--tag"],
            vec![("CACHEFRONT_PURGE_TOKEN", TOKEN)],
            "--tag",
        ),
    ];
    for (args, env, expected) in cases {
        let output = cachefront(&args, &env);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(expected),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    assert!(edge.seen.lock().expect("lock").is_empty());
}

fn cf_ok() -> Reply {
    (
        200,
        Vec::new(),
        r#"{"success":true,"errors":[],"messages":[],"result":{"id":"purge-id"}}"#.to_owned(),
    )
}

#[test]
fn cloudflare_forwarding_sends_documented_requests_in_batches_and_retries_429() {
    let tags: Vec<String> = (0..65).map(|i| format!("tag-{i}")).collect();
    let urls: Vec<String> = (0..31)
        .map(|i| format!("https://shop.example.com/p/{i}"))
        .collect();
    // files 30 + 1, tags 30 + 30 + 5, hosts 1, prefixes 1 = 7 calls; the
    // first is refused with 429 once and retried.
    let mut replies = vec![(
        429,
        vec![("Retry-After", "0")],
        r#"{"success":false,"errors":[{"code":1015,"message":"rate limited"}]}"#.to_owned(),
    )];
    replies.extend((0..7).map(|_| cf_ok()));
    let cf = stand_in(replies);
    let mut args = vec!["purge", "--cloudflare", "--site-host", "Shop.example.com"];
    for tag in &tags {
        args.extend(["--tag", tag]);
    }
    for url in &urls {
        args.extend(["--url", url]);
    }
    args.extend(["--host", "shop.example.com", "--prefix", "/products/"]);
    let api_base = format!("{}/client/v4", cf.base);
    let output = cachefront(
        &args,
        &[
            ("CF_ZONE_ID", ZONE),
            ("CF_API_TOKEN", "cf-api-token"),
            ("CACHEFRONT_CF_API_BASE", &api_base),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));

    let seen = cf.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 8);
    for request in &seen {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, format!("/client/v4/zones/{ZONE}/purge_cache"));
        assert_eq!(request.header("authorization"), Some("Bearer cf-api-token"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        let body = request.json();
        let object = body.as_object().expect("a JSON object");
        assert_eq!(object.len(), 1, "one purge kind per call: {body}");
    }
    assert_eq!(seen[0].body, seen[1].body, "the 429'd call is sent again");
    let shape: Vec<(String, usize)> = seen[1..]
        .iter()
        .map(|r| {
            let body = r.json();
            let (key, value) = body
                .as_object()
                .and_then(|o| o.iter().next())
                .expect("one key");
            (key.clone(), value.as_array().map_or(1, Vec::len))
        })
        .collect();
    let expected: Vec<(String, usize)> = [
        ("files", 30),
        ("files", 1),
        ("tags", 30),
        ("tags", 30),
        ("tags", 5),
        ("hosts", 1),
        ("prefixes", 1),
    ]
    .iter()
    .map(|(k, n)| ((*k).to_owned(), *n))
    .collect();
    assert_eq!(shape, expected);
    assert_eq!(seen[1].json()["files"][0], "https://shop.example.com/p/0");
    assert_eq!(seen[7].json()["prefixes"][0], "shop.example.com/products/");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("report JSON");
    assert_eq!(report["succeeded"], 7);
    assert_eq!(report["retries"], 1);
}

#[test]
fn cloudflare_purge_everything_is_one_call() {
    let cf = stand_in(vec![cf_ok()]);
    let api_base = format!("{}/client/v4", cf.base);
    let output = cachefront(
        &["purge", "--cloudflare", "--everything"],
        &[
            ("CF_ZONE_ID", ZONE),
            ("CF_API_TOKEN", "cf-api-token"),
            ("CACHEFRONT_CF_API_BASE", &api_base),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let seen = cf.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].json(),
        serde_json::json!({"purge_everything": true})
    );
}

#[test]
fn cloudflare_refusal_exits_with_auth_or_server_code() {
    for (status, expected_exit) in [(403, 3), (400, 5)] {
        let cf = stand_in(vec![(
            status,
            Vec::new(),
            r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}"#
                .to_owned(),
        )]);
        let api_base = format!("{}/client/v4", cf.base);
        let output = cachefront(
            &["purge", "--cloudflare", "--tag", "a"],
            &[
                ("CF_ZONE_ID", ZONE),
                ("CF_API_TOKEN", "cf-api-token"),
                ("CACHEFRONT_CF_API_BASE", &api_base),
            ],
        );
        assert_eq!(output.status.code(), Some(expected_exit), "HTTP {status}");
        let err = stderr(&output);
        assert!(err.contains("Authentication error"), "{err}");
        assert!(!err.contains("cf-api-token"));
        assert_eq!(cf.seen.lock().expect("lock").len(), 1, "4xx is not retried");
    }
}
