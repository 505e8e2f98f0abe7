use super::*;
use crate::purge::registry::{lookup_keys, MemoryTagRegistry};
use crate::purge::request::purge_hits_entry;
use futures::executor::block_on;
use std::collections::HashMap;

const TOKEN: &str = "s3cret-token-0123456789";

fn config() -> PurgeConfig {
    PurgeConfig {
        token: Some(SecretToken::new(TOKEN)),
        prefix_tags: vec!["/products/".to_owned()],
        ..PurgeConfig::default()
    }
}

fn auth(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(value).expect("value"),
    );
    headers
}

fn decide(method: Method, headers: &HeaderMap, body: &str) -> Result<PurgeRequest, PurgeError> {
    let mut limiter = PurgeRateLimiter::new(1000, 0);
    authorize_and_parse(
        &method,
        headers,
        body.as_bytes(),
        &config(),
        &mut limiter,
        0,
    )
}

fn ok_headers() -> HeaderMap {
    auth(&format!("Bearer {TOKEN}"))
}

fn config_from(pairs: &[(&str, &str)]) -> Result<PurgeConfig, PurgeConfigError> {
    let vars: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    PurgeConfig::from_vars(|name| vars.get(name).cloned())
}

#[test]
fn valid_request_is_normalized_and_deduplicated() {
    let request = decide(
        Method::POST,
        &ok_headers(),
        r#"{"tags":["Product:7","product:7"],"urls":["https://Example.com/p?b=1#frag"],
           "prefixes":["/Products/"],"hosts":["WWW.example.com"],"soft":true}"#,
    )
    .expect("valid");
    assert_eq!(request.tags, ["product:7"]);
    assert_eq!(request.urls, ["https://example.com/p?b=1"]);
    assert_eq!(request.prefixes, ["/products/"]);
    assert_eq!(request.hosts, ["www.example.com"]);
    assert!(request.soft && !request.dry_run && !request.everything);
}

#[test]
fn bad_requests_get_their_status_and_code() {
    let too_many_tags = format!(
        r#"{{"tags":[{}]}}"#,
        (0..=MAX_ITEMS)
            .map(|i| format!("\"t{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let oversized = format!(r#"{{"tags":["{}"]}}"#, "a".repeat(MAX_BODY_BYTES));
    let long_tag = format!(r#"{{"tags":["{}"]}}"#, "a".repeat(tags::MAX_TAG_BYTES + 1));
    let cases: Vec<(&str, Method, HeaderMap, &str, u16, &str)> = vec![
        (
            "wrong method",
            Method::GET,
            ok_headers(),
            "",
            405,
            "method_not_allowed",
        ),
        (
            "no token",
            Method::POST,
            HeaderMap::new(),
            "{}",
            401,
            "missing_token",
        ),
        (
            "basic auth",
            Method::POST,
            auth("Basic dXNlcjpwYXNz"),
            "{}",
            401,
            "malformed_authorization",
        ),
        (
            "wrong token",
            Method::POST,
            auth("Bearer s3cret-token-0123456780"),
            "{}",
            401,
            "bad_token",
        ),
        (
            "token prefix",
            Method::POST,
            auth("Bearer s3cret"),
            "{}",
            401,
            "bad_token",
        ),
        (
            "not json",
            Method::POST,
            ok_headers(),
            "tags=a",
            400,
            "malformed_json",
        ),
        (
            "wrong type",
            Method::POST,
            ok_headers(),
            r#"{"tags":"a"}"#,
            400,
            "malformed_json",
        ),
        (
            "unknown field",
            Method::POST,
            ok_headers(),
            r#"{"tag":["a"]}"#,
            400,
            "unknown_field",
        ),
        (
            "empty",
            Method::POST,
            ok_headers(),
            "{}",
            400,
            "empty_request",
        ),
        (
            "only flags",
            Method::POST,
            ok_headers(),
            r#"{"soft":true,"everything":false}"#,
            400,
            "empty_request",
        ),
        (
            "empty tag",
            Method::POST,
            ok_headers(),
            r#"{"tags":[" "]}"#,
            400,
            "invalid_tag",
        ),
        (
            "space in tag",
            Method::POST,
            ok_headers(),
            r#"{"tags":["a b"]}"#,
            400,
            "invalid_tag",
        ),
        (
            "non-ascii tag",
            Method::POST,
            ok_headers(),
            r#"{"tags":["café"]}"#,
            400,
            "invalid_tag",
        ),
        (
            "long tag",
            Method::POST,
            ok_headers(),
            &long_tag,
            400,
            "invalid_tag",
        ),
        (
            "reserved tag",
            Method::POST,
            ok_headers(),
            r#"{"tags":["host:x.com"]}"#,
            400,
            "invalid_tag",
        ),
        (
            "relative url",
            Method::POST,
            ok_headers(),
            r#"{"urls":["/p"]}"#,
            400,
            "invalid_url",
        ),
        (
            "ftp url",
            Method::POST,
            ok_headers(),
            r#"{"urls":["ftp://x.com/p"]}"#,
            400,
            "invalid_url",
        ),
        (
            "url with credentials",
            Method::POST,
            ok_headers(),
            r#"{"urls":["https://u:p@x.com/"]}"#,
            400,
            "invalid_url",
        ),
        (
            "unconfigured prefix",
            Method::POST,
            ok_headers(),
            r#"{"prefixes":["/blog/"]}"#,
            400,
            "invalid_prefix",
        ),
        (
            "bad host",
            Method::POST,
            ok_headers(),
            r#"{"hosts":["x.com/path"]}"#,
            400,
            "invalid_host",
        ),
        (
            "too many items",
            Method::POST,
            ok_headers(),
            &too_many_tags,
            413,
            "too_many_items",
        ),
        (
            "oversized body",
            Method::POST,
            ok_headers(),
            &oversized,
            413,
            "body_too_large",
        ),
    ];
    for (name, method, headers, body, status, code) in cases {
        let err = decide(method, &headers, body).expect_err(name);
        assert_eq!(err.status().as_u16(), status, "{name}: {err}");
        assert_eq!(err.code(), code, "{name}: {err}");
    }
}

#[test]
fn api_without_token_is_disabled_for_every_method() {
    let mut limiter = PurgeRateLimiter::new(10, 0);
    for method in [Method::POST, Method::GET] {
        let err = authorize_and_parse(
            &method,
            &ok_headers(),
            b"{\"everything\":true}",
            &PurgeConfig::default(),
            &mut limiter,
            0,
        )
        .expect_err("disabled");
        assert_eq!(err, PurgeError::Disabled);
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
    }
}

#[test]
fn error_responses_are_json_with_the_right_headers() {
    let response = PurgeError::MethodNotAllowed("GET".to_owned()).to_response();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_slice(response.body()).expect("json");
    assert_eq!(body["ok"], false);
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert_eq!(body["error"]["status"], 405);

    let response = PurgeError::BadToken.to_response();
    assert!(response.headers().contains_key("www-authenticate"));
    let response = PurgeError::RateLimited {
        retry_after_secs: 3,
    }
    .to_response();
    assert_eq!(response.headers()["retry-after"], "3");
}

#[test]
fn token_never_appears_in_errors_or_debug_output() {
    let config = config();
    assert!(!format!("{config:?}").contains(TOKEN));
    let near_miss = format!("Bearer {TOKEN}x");
    let err = decide(Method::POST, &auth(&near_miss), "{}").expect_err("bad");
    let response = err.to_response();
    let body = String::from_utf8_lossy(response.body()).into_owned();
    assert!(!body.contains(TOKEN) && !err.to_string().contains(TOKEN));
    let cf = config_from(&[
        (VAR_CF_ZONE_ID, "0123456789abcdef0123456789abcdef"),
        (VAR_CF_API_TOKEN, "cf-secret-value"),
    ])
    .expect("valid");
    assert!(!format!("{cf:?}").contains("cf-secret-value"));
}

#[test]
fn tokens_match_only_the_exact_token_and_the_bearer_scheme_is_case_insensitive() {
    assert!(crate::admin::auth::tokens_match(b"abcdef", b"abcdef"));
    assert!(!crate::admin::auth::tokens_match(b"abcdeg", b"abcdef"));
    assert!(
        !crate::admin::auth::tokens_match(b"abcde", b"abcdef"),
        "a prefix is not a match"
    );
    assert!(
        !crate::admin::auth::tokens_match(b"abcdefg", b"abcdef"),
        "an extension is not a match"
    );
    assert!(!crate::admin::auth::tokens_match(b"", b"abcdef"));
    // Bearer scheme is case-insensitive; surrounding spaces are ignored.
    assert!(decide(
        Method::POST,
        &auth(&format!("bearer  {TOKEN} ")),
        r#"{"everything":true}"#
    )
    .is_ok());
}

#[test]
fn rate_limiter_allows_a_burst_then_refills_over_time() {
    let mut limiter = PurgeRateLimiter::new(2, 0);
    assert!(limiter.try_acquire(0).is_ok());
    assert!(limiter.try_acquire(0).is_ok());
    assert_eq!(
        limiter.try_acquire(0),
        Err(30),
        "one token per 30 s at 2/min"
    );
    assert_eq!(limiter.try_acquire(20_000), Err(10));
    assert!(limiter.try_acquire(30_000).is_ok());
    assert!(limiter.try_acquire(30_000).is_err());
    // A long pause refills only up to the burst.
    assert!(limiter.try_acquire(10_000_000).is_ok());
    assert!(limiter.try_acquire(10_000_000).is_ok());
    assert!(limiter.try_acquire(10_000_000).is_err());
}

#[test]
fn only_authenticated_requests_spend_the_rate() {
    let mut limiter = PurgeRateLimiter::new(1, 0);
    let config = config();
    for _ in 0..5 {
        let err = authorize_and_parse(
            &Method::POST,
            &auth("Bearer nope"),
            b"{}",
            &config,
            &mut limiter,
            0,
        )
        .expect_err("bad token");
        assert_eq!(err, PurgeError::BadToken);
    }
    let body = br#"{"everything":true}"#;
    assert!(
        authorize_and_parse(&Method::POST, &ok_headers(), body, &config, &mut limiter, 0).is_ok()
    );
    let err = authorize_and_parse(&Method::POST, &ok_headers(), body, &config, &mut limiter, 1)
        .expect_err("limited");
    assert_eq!(err.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[test]
fn purge_kinds_become_registry_keys() {
    let request = decide(
        Method::POST,
        &ok_headers(),
        r#"{"tags":["a"],"urls":["https://example.com/p?utm_source=x&b=1"],
           "prefixes":["/products/"],"hosts":["example.com"],"everything":true}"#,
    )
    .expect("valid");
    let keys = request.registry_keys(&tags::IgnoredParams(vec!["utm_*".to_owned()]));
    assert_eq!(
        keys,
        [
            "a",
            "url:example.com/p?b=1",
            "prefix:/products/",
            "host:example.com",
            "*"
        ]
    );
}

#[test]
fn url_purge_key_matches_the_tag_of_the_cached_entry() {
    let ignored = ["fbclid".to_owned()];
    let request =
        parse_purge_body(br#"{"urls":["http://Shop.example.com/a?y=2&x=1"]}"#, &[]).expect("valid");
    let entry = tags::auto_tags(
        "shop.example.com",
        &"/a?x=1&fbclid=z&y=2".parse().expect("uri"),
        tags::AutoTagRules {
            path_prefixes: &[],
            query: crate::origin::shaping::QueryFilter::Except(&ignored),
        },
    );
    let keys = request.registry_keys(&tags::IgnoredParams(ignored.to_vec()));
    assert!(purge_hits_entry(&keys, &entry), "{keys:?} vs {entry:?}");
}

#[test]
fn execute_writes_the_registry_and_receipts_what_it_did() {
    let registry = MemoryTagRegistry::new();
    let config = config();
    let request = parse_purge_body(br#"{"tags":["a","b"],"hosts":["x.com"]}"#, &[]).expect("valid");
    let ctx = PurgeContext {
        config: &config,
        keying: &tags::IgnoredParams::default(),
        site_host: "x.com",
        now_ms: 9_000,
    };
    let outcome = block_on(execute_purge(&registry, &request, ctx)).expect("purged");
    assert_eq!(outcome.receipt.registry_keys, 3);
    assert!(outcome.receipt.shards_written >= 1);
    assert_eq!(outcome.receipt.cloudflare, CloudflareForwarding::Disabled);
    assert_eq!(outcome.registry_keys, ["a", "b", "host:x.com"]);
    let found = block_on(lookup_keys(
        &registry,
        &outcome.registry_keys,
        config.shards,
    ))
    .expect("lookup");
    assert!(found.values().all(|t| t.hard_ms == 9_000));

    let json: serde_json::Value =
        serde_json::from_slice(outcome.receipt.to_response().body()).expect("json");
    assert_eq!(json["ok"], true);
    assert_eq!(json["purged"]["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(json["cloudflare"]["status"], "disabled");
}

#[test]
fn dry_run_writes_nothing() {
    let registry = MemoryTagRegistry::new();
    let config = config();
    let request = parse_purge_body(br#"{"tags":["a"],"dry_run":true}"#, &[]).expect("valid");
    let ctx = PurgeContext {
        config: &config,
        keying: &tags::IgnoredParams::default(),
        site_host: "x.com",
        now_ms: 9_000,
    };
    let outcome = block_on(execute_purge(&registry, &request, ctx)).expect("dry run");
    assert_eq!(outcome.receipt.shards_written, 0);
    assert!(outcome.registry_keys.is_empty());
    assert!(registry.calls().is_empty());
}

#[test]
fn serve_purge_answers_receipts_and_errors_and_writes_only_valid_purges() {
    let registry = MemoryTagRegistry::new();
    let config = config();
    let limiter = RefCell::new(PurgeRateLimiter::new(config.rate_per_min, 0));
    let ctx = PurgeContext {
        config: &config,
        keying: &tags::IgnoredParams::default(),
        site_host: "x.com",
        now_ms: 5_000,
    };
    let request = |token: &str, body: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri(PURGE_PATH)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::from_static(body.as_bytes()))
            .expect("request")
    };
    let (response, outcome) = block_on(serve_purge(
        &request(TOKEN, r#"{"tags":["a"]}"#),
        &registry,
        &limiter,
        ctx,
    ));
    assert_eq!(response.status(), 200);
    assert_eq!(outcome.expect("purged").registry_keys, ["a"]);

    let (response, outcome) = block_on(serve_purge(
        &request("wrong-token-0000000000", r#"{"tags":["b"]}"#),
        &registry,
        &limiter,
        ctx,
    ));
    assert_eq!(response.status(), 401);
    let log = purge_log_fields(&outcome).to_string();
    assert!(log.contains("bad_token") && !log.contains(TOKEN), "{log}");
    assert_eq!(outcome.expect_err("refused"), PurgeError::BadToken);
    let found = block_on(lookup_keys(&registry, &["b".to_owned()], config.shards)).expect("lookup");
    assert_eq!(found["b"], crate::purge::registry::TagPurgeTimes::default());
}

#[test]
fn registry_failure_is_a_503_not_a_receipt() {
    let registry = MemoryTagRegistry::new();
    registry.set_failing(true);
    let config = config();
    let request = parse_purge_body(br#"{"tags":["a"]}"#, &[]).expect("valid");
    let ctx = PurgeContext {
        config: &config,
        keying: &tags::IgnoredParams::default(),
        site_host: "x.com",
        now_ms: 1,
    };
    let err = block_on(execute_purge(&registry, &request, ctx)).expect_err("fails");
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn config_has_defaults_and_names_the_bad_variable() {
    let defaults = config_from(&[]).expect("valid");
    assert_eq!(defaults, PurgeConfig::default());
    assert!(defaults.token.is_none());
    assert_eq!(defaults.sync_ms, 1000);

    let tuned = config_from(&[
        (VAR_PURGE_TOKEN, " 0123456789abcdef "),
        (VAR_PURGE_SYNC_MS, "250"),
        (VAR_PURGE_SHARDS, "16"),
        (VAR_PURGE_PREFIX_TAGS, "/Products/, /blog/,/products/"),
        (VAR_PURGE_RATE_PER_MIN, "5"),
        (VAR_PURGE_STRIP_TAG_HEADERS, "false"),
        (VAR_CF_ZONE_ID, "0123456789abcdef0123456789ABCDEF"),
        (VAR_CF_API_TOKEN, "cf-token"),
        (VAR_CF_PURGE_BATCH, "100"),
    ])
    .expect("valid");
    assert_eq!(
        tuned.token.as_ref().map(SecretToken::expose),
        Some("0123456789abcdef")
    );
    assert_eq!(tuned.sync_ms, 250);
    assert_eq!(tuned.shards, 16);
    assert_eq!(tuned.prefix_tags, ["/products/", "/blog/"]);
    assert_eq!(tuned.rate_per_min, 5);
    assert!(!tuned.strip_tag_headers);
    assert_eq!(tuned.cloudflare.as_ref().map(|c| c.batch_size), Some(100));

    for (pairs, var) in [
        (vec![(VAR_PURGE_TOKEN, "short")], VAR_PURGE_TOKEN),
        (vec![(VAR_PURGE_SYNC_MS, "fast")], VAR_PURGE_SYNC_MS),
        (vec![(VAR_PURGE_SHARDS, "0")], VAR_PURGE_SHARDS),
        (vec![(VAR_PURGE_SHARDS, "65")], VAR_PURGE_SHARDS),
        (
            vec![(VAR_PURGE_PREFIX_TAGS, "products/")],
            VAR_PURGE_PREFIX_TAGS,
        ),
        (
            vec![(VAR_PURGE_STRIP_TAG_HEADERS, "yes")],
            VAR_PURGE_STRIP_TAG_HEADERS,
        ),
        (
            vec![(VAR_CF_ZONE_ID, "0123456789abcdef0123456789abcdef")],
            VAR_CF_API_TOKEN,
        ),
        (vec![(VAR_CF_API_TOKEN, "t")], VAR_CF_ZONE_ID),
        (
            vec![(VAR_CF_ZONE_ID, "not-a-zone"), (VAR_CF_API_TOKEN, "t")],
            VAR_CF_ZONE_ID,
        ),
    ] {
        let err = config_from(&pairs).expect_err(var);
        assert_eq!(err.variable, var, "{err}");
    }
    let err = config_from(&[(VAR_PURGE_TOKEN, "short-secret")]).expect_err("short");
    assert!(!err.to_string().contains("short-secret"));
}
