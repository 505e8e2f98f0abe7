//! `cachefront purge --cloudfront` and the fan-out (`--provider a,b,…`) over real HTTP
//! against loopback stand-ins. The CloudFront stand-in judges each request with the
//! origin plugin's independent checker (`origin-plugin/tests/cloudfront/check.rs`): the
//! documented path and XML `InvalidationBatch`, and the SigV4 signature recomputed from
//! the bytes received with its own HMAC-SHA256.

use std::process::{Command, Output};

mod common;
use common::{stand_in, Reply, Seen};

#[path = "../../origin-plugin/tests/cloudfront/check.rs"]
mod cloudfront_check;
use cloudfront_check::{check, Invalidation, ACCESS_KEY, DISTRIBUTION, SECRET_KEY};

const TOKEN: &str = "edge-token-0123456789abcdef";
const ZONE: &str = "0123456789abcdef0123456789abcdef";

fn cachefront(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cachefront"));
    command.args(args);
    for name in [
        "CACHEFRONT_PURGE_TOKEN",
        "CACHEFRONT_ENDPOINT",
        "CF_ZONE_ID",
        "CF_API_TOKEN",
        "CACHEFRONT_CF_API_BASE",
        "CACHEFRONT_CLOUDFRONT_API_BASE",
        "CLOUDFRONT_DISTRIBUTION_ID",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run cachefront")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout_json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The stand-in's verdict on a request the CLI sent.
fn judge(seen: &Seen) -> Result<Invalidation, String> {
    let mut headers = http::HeaderMap::new();
    for (name, value) in &seen.headers {
        headers.append(
            http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).expect("name"),
            http::HeaderValue::from_str(value).expect("value"),
        );
    }
    let method = http::Method::from_bytes(seen.method.as_bytes()).expect("method");
    let uri: http::Uri = seen.path.parse().expect("uri");
    check(&method, &uri, &headers, seen.body.as_bytes())
}

fn created(id: &str) -> Reply {
    (
        201,
        Vec::new(),
        format!("<?xml version=\"1.0\"?><Invalidation><Id>{id}</Id><Status>InProgress</Status></Invalidation>"),
    )
}

fn cf_error(status: u16, code: &str, extra: Vec<(&'static str, &'static str)>) -> Reply {
    (
        status,
        extra,
        format!("<?xml version=\"1.0\"?><ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>scripted</Message></Error></ErrorResponse>"),
    )
}

fn aws_env(base: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ("CACHEFRONT_CLOUDFRONT_API_BASE", base.to_owned()),
        ("CLOUDFRONT_DISTRIBUTION_ID", DISTRIBUTION.to_owned()),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn cloudfront_invalidation_has_the_documented_shape_and_a_signature_the_stand_in_recomputes() {
    let cf = stand_in(vec![created("I2J0I21PCUYOIK")]);
    let mut env = aws_env(&cf.base);
    env.push(("AWS_SESSION_TOKEN", "session-token-example".to_owned()));
    let output = cachefront(
        &[
            "purge",
            "--cloudfront",
            "--url",
            "https://shop.example/products/1?page=2",
            "--prefix",
            "/img/",
        ],
        &env_refs(&env),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let seen = cf.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    let invalidation = judge(&seen[0]).unwrap_or_else(|v| panic!("stand-in refused: {v}"));
    assert_eq!(invalidation.paths, ["/img/*", "/products/1"]);
    assert!(invalidation.caller_reference.starts_with("cachefront-cli-"));
    assert_eq!(
        seen[0].header("x-amz-security-token"),
        Some("session-token-example")
    );
    let receipt = stdout_json(&output);
    assert_eq!(receipt["distribution_id"], DISTRIBUTION);
    assert_eq!(receipt["invalidations"][0]["id"], "I2J0I21PCUYOIK");
    assert_eq!(
        receipt["invalidations"][0]["paths"],
        serde_json::json!(["/img/*", "/products/1"])
    );
}

#[test]
fn a_throttled_invalidation_is_retried_and_an_access_denied_one_exits_3_without_retry() {
    let cf = stand_in(vec![
        cf_error(
            400,
            "TooManyInvalidationsInProgress",
            vec![("Retry-After", "0")],
        ),
        created("I2"),
    ]);
    let env = aws_env(&cf.base);
    let output = cachefront(&["purge", "--cloudfront", "--everything"], &env_refs(&env));
    assert!(output.status.success(), "{}", stderr(&output));
    let seen = cf.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "the throttled call is sent again");
    let first = judge(&seen[0]).expect("first call well-formed");
    let second = judge(&seen[1]).expect("second call well-formed");
    assert_eq!(first.paths, ["/*"]);
    assert_eq!(second.paths, ["/*"]);
    assert_eq!(stdout_json(&output)["retries"], 1);

    let denied = stand_in(vec![cf_error(403, "AccessDenied", Vec::new())]);
    let env = aws_env(&denied.base);
    let output = cachefront(&["purge", "--cloudfront", "--everything"], &env_refs(&env));
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("AccessDenied"),
        "{}",
        stderr(&output)
    );
    assert_eq!(denied.seen.lock().expect("lock").len(), 1);
}

fn edge_receipt() -> Reply {
    (
        200,
        Vec::new(),
        serde_json::json!({
            "ok": true, "dry_run": false, "soft": false, "purged_at_ms": 1_700_000_000_000u64,
            "purged": {"tags": [], "urls": ["https://shop.example/products/1"], "prefixes": [],
                       "hosts": [], "everything": false, "soft": false, "dry_run": false},
            "registry_keys": 1, "shards_written": 1, "local_entries_affected": null,
            "cloudflare": {"status": "disabled"}
        })
        .to_string(),
    )
}

fn cf_zone_ok() -> Reply {
    (
        200,
        Vec::new(),
        r#"{"success":true,"errors":[],"messages":[],"result":{"id":"purge-id"}}"#.to_owned(),
    )
}

#[test]
fn fan_out_purges_every_provider_with_a_receipt_each_and_a_partial_failure_exits_7() {
    let edge = stand_in(vec![edge_receipt()]);
    let cf = stand_in(vec![cf_error(403, "AccessDenied", Vec::new())]);
    let zone = stand_in(vec![cf_zone_ok()]);
    let mut env = aws_env(&cf.base);
    env.extend([
        ("CACHEFRONT_PURGE_TOKEN", TOKEN.to_owned()),
        ("CACHEFRONT_ENDPOINT", edge.base.clone()),
        ("CF_ZONE_ID", ZONE.to_owned()),
        ("CF_API_TOKEN", "cf-token".to_owned()),
        ("CACHEFRONT_CF_API_BASE", zone.base.clone()),
    ]);
    // CloudFront, which fails, comes second: the provider after it is still purged.
    let output = cachefront(
        &[
            "purge",
            "--provider",
            "edge,cloudfront",
            "--provider",
            "cloudflare",
            "--url",
            "https://shop.example/products/1",
        ],
        &env_refs(&env),
    );
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    let edge_seen = edge.seen.lock().expect("lock").clone();
    assert_eq!(edge_seen.len(), 1);
    assert_eq!(edge_seen[0].path, "/__cachefront/purge");
    assert_eq!(
        edge_seen[0].json(),
        serde_json::json!({"urls": ["https://shop.example/products/1"]})
    );
    let cf_seen = cf.seen.lock().expect("lock").clone();
    assert_eq!(cf_seen.len(), 1, "AccessDenied is not retried");
    assert!(judge(&cf_seen[0]).is_ok());
    let zone_seen = zone.seen.lock().expect("lock").clone();
    assert_eq!(zone_seen.len(), 1);
    assert_eq!(zone_seen[0].path, format!("/zones/{ZONE}/purge_cache"));

    let receipts = stdout_json(&output);
    let providers = receipts["providers"].as_array().expect("providers");
    let names: Vec<&str> = providers
        .iter()
        .map(|p| p["provider"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["edge", "cloudfront", "cloudflare"]);
    assert_eq!(providers[0]["ok"], true);
    assert_eq!(providers[0]["receipt"]["ok"], true);
    assert_eq!(providers[1]["ok"], false);
    assert_eq!(providers[1]["exit_code"], 3);
    assert!(providers[1]["error"]
        .as_str()
        .is_some_and(|e| e.contains("AccessDenied")));
    assert_eq!(providers[2]["ok"], true);
    assert_eq!(providers[2]["receipt"]["succeeded"], 1);
    let err = stderr(&output);
    assert!(
        err.contains("partial purge: 1 of 3 providers failed (cloudfront)"),
        "{err}"
    );
}

fn edge_error(status: u16, extra: Vec<(&'static str, &'static str)>) -> Reply {
    (
        status,
        extra,
        serde_json::json!({"ok": false, "error": {"code": "scripted", "message": "scripted failure"}})
            .to_string(),
    )
}

/// The edge and the Cloudflare zone, both on loopback stand-ins.
fn edge_and_zone_env(edge: &str, zone: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CACHEFRONT_PURGE_TOKEN", TOKEN.to_owned()),
        ("CACHEFRONT_ENDPOINT", edge.to_owned()),
        ("CF_ZONE_ID", ZONE.to_owned()),
        ("CF_API_TOKEN", "cf-token".to_owned()),
        ("CACHEFRONT_CF_API_BASE", zone.to_owned()),
    ]
}

/// `cachefront purge --provider edge,cloudflare` of one URL.
fn purge_edge_and_zone(env: &[(&'static str, String)]) -> std::process::Output {
    cachefront(
        &[
            "purge",
            "--provider",
            "edge,cloudflare",
            "--url",
            "https://shop.example/products/1",
        ],
        &env_refs(env),
    )
}

#[test]
fn fan_out_retries_an_edge_that_fails_once_and_its_receipt_counts_the_retry() {
    // A 503 first (retried after the policy's 1 s backoff), then the receipt.
    let edge = stand_in(vec![edge_error(503, Vec::new()), edge_receipt()]);
    let zone = stand_in(vec![cf_zone_ok()]);
    let env = edge_and_zone_env(&edge.base, &zone.base);
    let output = purge_edge_and_zone(&env);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let seen = edge.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "one retry");
    assert_eq!(seen[0].body, seen[1].body, "the same purge sent again");
    let receipts = stdout_json(&output);
    let edge_entry = &receipts["providers"][0];
    assert_eq!(edge_entry["provider"], "edge");
    assert_eq!(edge_entry["ok"], true);
    assert_eq!(edge_entry["retries"], 1);
    assert_eq!(edge_entry["receipt"]["ok"], true);
    assert_eq!(receipts["providers"][1]["ok"], true);
    assert!(
        stderr(&output).contains("edge: attempt 1 failed (HTTP 503); retrying in 1000 ms"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn fan_out_with_an_edge_that_always_fails_exits_7_and_its_receipt_names_it() {
    // Throttled on every attempt (Retry-After: 0, so no waiting): the default policy's
    // 5 attempts, then the edge is reported failed; Cloudflare is still purged.
    let throttled = || edge_error(429, vec![("Retry-After", "0")]);
    let edge = stand_in((0..5).map(|_| throttled()).collect());
    let zone = stand_in(vec![cf_zone_ok()]);
    let env = edge_and_zone_env(&edge.base, &zone.base);
    let output = purge_edge_and_zone(&env);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert_eq!(
        edge.seen.lock().expect("lock").len(),
        5,
        "1 call + 4 retries"
    );
    assert_eq!(zone.seen.lock().expect("lock").len(), 1);
    let receipts = stdout_json(&output);
    let edge_entry = &receipts["providers"][0];
    assert_eq!(edge_entry["provider"], "edge");
    assert_eq!(edge_entry["ok"], false);
    assert_eq!(edge_entry["retries"], 4);
    assert_eq!(edge_entry["exit_code"], 6);
    let error = edge_entry["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("HTTP 429") && error.contains("after 5 attempts"),
        "{error}"
    );
    assert_eq!(receipts["providers"][1]["ok"], true);
    assert!(
        stderr(&output).contains("partial purge: 1 of 2 providers failed (edge)"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn fan_out_checks_every_provider_before_any_call() {
    let edge = stand_in(Vec::new());
    let env = [
        ("CACHEFRONT_PURGE_TOKEN", TOKEN),
        ("CACHEFRONT_ENDPOINT", edge.base.as_str()),
    ];
    // Tags are fine for the edge, not for CloudFront: nothing is sent.
    let output = cachefront(
        &[
            "purge",
            "--provider",
            "edge,cloudfront",
            "--tag",
            "product:1",
        ],
        &env,
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("cloudfront: CloudFront has no cache tags"));
    // Missing AWS keys are found before the edge is called.
    let output = cachefront(
        &[
            "purge",
            "--provider",
            "edge,cloudfront",
            "--url",
            "https://shop.example/a",
            "--distribution-id",
            DISTRIBUTION,
        ],
        &env,
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("AWS_ACCESS_KEY_ID"),
        "{}",
        stderr(&output)
    );
    assert!(edge.seen.lock().expect("lock").is_empty());

    // A dry run needs no keys and prints the invalidation it would create.
    let output = cachefront(
        &[
            "purge",
            "--cloudfront",
            "--dry-run",
            "--prefix",
            "/products/",
            "--distribution-id",
            DISTRIBUTION,
        ],
        &[],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout_json(&output),
        serde_json::json!([{
            "method": "POST",
            "path": format!("/2020-05-31/distribution/{DISTRIBUTION}/invalidation"),
            "paths": ["/products/*"]
        }])
    );
}
