#![cfg(all(feature = "purge", feature = "metrics"))]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use cachefront_origin::metrics::Metrics;
use cachefront_origin::purge::{
    CloudflarePurge, EdgePurge, Enqueued, FastlyPurge, PurgeClient, PurgeConfig,
};
use serde_json::{json, Value};
use support::{edge_contract, PurgeStandIn, Received, Reply};

fn fast_retries() -> PurgeConfig {
    PurgeConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_secs(5),
        ..Default::default()
    }
}

/// A client of the edge stand-in with `token`, counting in `metrics`.
fn edge_client(
    edge: &PurgeStandIn,
    token: &str,
    config: PurgeConfig,
    metrics: &Metrics,
) -> PurgeClient {
    PurgeClient::with_metrics(EdgePurge::new(&edge.base(), token), config, metrics)
}

/// Asserts that `metrics` renders `line`, showing the whole rendering when it does not.
fn assert_rendered(metrics: &Metrics, line: &str) {
    let text = metrics.render();
    assert!(text.contains(line), "{line} missing from:\n{text}");
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

// Current-thread runtime: the client's sender task cannot run while the test enqueues
// synchronously, so everything is queued before the first batch is cut — no timing involved.
#[tokio::test(flavor = "current_thread")]
async fn edge_purges_are_batched_and_deduplicated() {
    let edge = PurgeStandIn::start(edge_contract, vec![]).await;
    let client = PurgeClient::new(
        EdgePurge::new(&edge.base(), "edge-secret").max_batch(100),
        fast_retries(),
    );
    let tags: Vec<String> = (0..250).map(|i| format!("Product:{i}")).collect();
    assert_eq!(
        client.purge_tags(&tags),
        Enqueued {
            accepted: 250,
            dropped: 0,
            invalid: 0
        }
    );
    assert_eq!(
        client.purge_tags(["product:7"]).accepted,
        1,
        "duplicates are accepted, then merged"
    );
    client.flush().await;

    assert!(edge.violations().is_empty(), "{:?}", edge.violations());
    let got = edge.received();
    let sizes: Vec<usize> = got.iter().map(|r| strings(&r.body["tags"]).len()).collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    let all: BTreeSet<String> = got.iter().flat_map(|r| strings(&r.body["tags"])).collect();
    let want: BTreeSet<String> = (0..250).map(|i| format!("product:{i}")).collect();
    assert_eq!(all, want);
    assert_eq!(client.stats().queued, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn soft_everything_and_each_kind_use_the_edge_body_shape() {
    let edge = PurgeStandIn::start(edge_contract, vec![]).await;
    let client = PurgeClient::new(EdgePurge::new(&edge.base(), "edge-secret"), fast_retries());
    client.soft_purge_tags(["a", "B"]);
    client.flush().await;
    client.purge_urls(["https://shop.example/products/1"]);
    client.purge_prefixes(["/products/"]);
    client.purge_hosts(["Shop.Example"]);
    client.flush().await;
    client.purge_everything();
    client.flush().await;
    assert!(edge.violations().is_empty(), "{:?}", edge.violations());
    let bodies: Vec<Value> = edge.received().into_iter().map(|r| r.body).collect();
    // One kind per call: the edge refuses a whole request for one bad item.
    assert_eq!(
        bodies,
        vec![
            json!({"tags": ["a", "b"], "soft": true}),
            json!({"urls": ["https://shop.example/products/1"]}),
            json!({"prefixes": ["/products/"]}),
            json!({"hosts": ["shop.example"]}),
            json!({"everything": true}),
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn items_the_edge_would_refuse_are_never_sent_and_cannot_sink_a_batch() {
    let metrics = Metrics::new();
    let edge = PurgeStandIn::start(edge_contract, vec![]).await;
    let client = edge_client(&edge, "edge-secret", fast_retries(), &metrics);
    let long = "x".repeat(1025);
    let got = client.purge_tags([
        "Product:9",
        "has space",
        "url:shop.example/",
        "*",
        "é",
        long.as_str(),
        "",
    ]);
    assert_eq!(
        got,
        Enqueued {
            accepted: 1,
            dropped: 0,
            invalid: 6
        }
    );
    assert_eq!(
        client
            .purge_urls(["/relative", "ftp://x/y", "https://ok.example/a"])
            .invalid,
        2
    );
    assert_eq!(client.purge_hosts(["bad host", "Good.Example"]).invalid, 1);
    client.flush().await;
    assert!(edge.violations().is_empty(), "{:?}", edge.violations());
    let bodies: Vec<Value> = edge.received().into_iter().map(|r| r.body).collect();
    assert_eq!(
        bodies,
        vec![
            json!({"tags": ["product:9"]}),
            json!({"urls": ["https://ok.example/a"]}),
            json!({"hosts": ["good.example"]}),
        ]
    );
    assert_rendered(
        &metrics,
        r#"cachefront_origin_purge_items_invalid_total{provider="edge",kind="tag"} 6"#,
    );
}

#[tokio::test(flavor = "current_thread")]
async fn edge_calls_stay_within_the_body_limit() {
    let edge = PurgeStandIn::start(edge_contract, vec![]).await;
    let client = PurgeClient::new(EdgePurge::new(&edge.base(), "edge-secret"), fast_retries());
    // 100 tags of 1000 bytes: one 100-item call would be ~100 KiB, over the edge's 64 KiB.
    let tags: Vec<String> = (0..100)
        .map(|i| format!("{i:03}-{}", "t".repeat(996)))
        .collect();
    assert_eq!(client.purge_tags(&tags).accepted, 100);
    client.flush().await;
    assert!(edge.violations().is_empty(), "{:?}", edge.violations());
    let got = edge.received();
    assert!(got.len() >= 2);
    assert!(got
        .iter()
        .all(|r| serde_json::to_vec(&r.body).map_or(usize::MAX, |b| b.len()) <= 64 * 1024));
    let sent: usize = got.iter().map(|r| strings(&r.body["tags"]).len()).sum();
    assert_eq!(sent, 100);
}

#[tokio::test(flavor = "current_thread")]
async fn retries_429_and_5xx_honouring_retry_after() {
    let metrics = Metrics::new();
    let edge =
        PurgeStandIn::start(edge_contract, vec![Reply(429, Some(1)), Reply(503, None)]).await;
    let client = edge_client(&edge, "edge-secret", fast_retries(), &metrics);
    client.purge_tags(["product:1"]);
    client.flush().await;
    let got: Vec<Received> = edge.received();
    assert_eq!(got.len(), 3, "429, 503, then success");
    assert!(got.iter().all(|r| r.body == json!({"tags": ["product:1"]})));
    // Retry-After: 1 was honoured (a lower bound: the client cannot have come back sooner).
    assert!(got[1].at.duration_since(got[0].at) >= Duration::from_millis(950));
    assert_rendered(
        &metrics,
        r#"cachefront_origin_purge_requests_total{provider="edge",outcome="retry"} 2"#,
    );
    assert_rendered(
        &metrics,
        r#"cachefront_origin_purge_requests_total{provider="edge",outcome="ok"} 1"#,
    );
}

#[tokio::test(flavor = "current_thread")]
async fn gives_up_after_max_attempts_and_counts_the_failure() {
    let metrics = Metrics::new();
    let edge = PurgeStandIn::start(
        edge_contract,
        vec![Reply(500, None), Reply(502, None), Reply(500, None)],
    )
    .await;
    let config = PurgeConfig {
        max_attempts: 3,
        ..fast_retries()
    };
    let client = edge_client(&edge, "edge-secret", config, &metrics);
    client.purge_tags(["x"]);
    client.flush().await;
    assert_eq!(edge.received().len(), 3);
    assert_rendered(
        &metrics,
        r#"cachefront_origin_purge_requests_total{provider="edge",outcome="failed"} 1"#,
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_refused_request_is_not_retried() {
    let metrics = Metrics::new();
    let edge = PurgeStandIn::start(edge_contract, vec![]).await;
    let client = edge_client(&edge, "wrong-token", fast_retries(), &metrics);
    client.purge_tags(["x"]);
    client.flush().await;
    assert_eq!(edge.received().len(), 1);
    assert_eq!(
        edge.violations(),
        vec!["missing or wrong bearer token".to_owned()]
    );
    assert_rendered(
        &metrics,
        r#"cachefront_origin_purge_requests_total{provider="edge",outcome="rejected"} 1"#,
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let metrics = Metrics::new();
    let edge = PurgeStandIn::start(edge_contract, vec![]).await;
    let config = PurgeConfig {
        queue_capacity: 10,
        ..fast_retries()
    };
    let client = edge_client(&edge, "edge-secret", config, &metrics);
    let tags: Vec<String> = (0..25).map(|i| format!("t{i}")).collect();
    assert_eq!(
        client.purge_tags(&tags),
        Enqueued {
            accepted: 10,
            dropped: 15,
            invalid: 0
        }
    );
    assert_rendered(
        &metrics,
        r#"cachefront_origin_purge_queue_dropped_total{provider="edge"} 15"#,
    );
    assert_rendered(
        &metrics,
        r#"cachefront_origin_purge_queue_depth{provider="edge"} 10"#,
    );
    client.flush().await;
    let sent: usize = edge
        .received()
        .iter()
        .map(|r| strings(&r.body["tags"]).len())
        .sum();
    assert_eq!(sent, 10);
    assert_rendered(
        &metrics,
        r#"cachefront_origin_purge_queue_depth{provider="edge"} 0"#,
    );
}

/// Cloudflare's documented purge call: `POST /client/v4/zones/{zone}/purge_cache`, bearer
/// API token, JSON with exactly one of tags / files / prefixes / hosts / purge_everything,
/// at most 30 items.
fn cloudflare_contract(r: &Received) -> Result<Value, String> {
    if r.method != "POST" || r.path != "/client/v4/zones/zone-123/purge_cache" {
        return Err(format!("unexpected {} {}", r.method, r.path));
    }
    if r.headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer cf-token") {
        return Err("bad Authorization".into());
    }
    if !r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return Err("content-type must be application/json".into());
    }
    let obj = r.body.as_object().ok_or("body must be an object")?;
    if obj.len() != 1 {
        return Err(format!(
            "exactly one purge kind per call, got {:?}",
            obj.keys().collect::<Vec<_>>()
        ));
    }
    let (k, v) = obj.iter().next().ok_or("empty body")?;
    match k.as_str() {
        "purge_everything" if v == &Value::Bool(true) => {}
        "tags" | "files" | "prefixes" | "hosts" => {
            let items = v.as_array().ok_or("must be an array")?;
            let n = items.len();
            if n == 0 || n > 30 {
                return Err(format!("{k}: {n} items (1..=30 allowed)"));
            }
            for item in items {
                let item = item.as_str().ok_or(format!("{k}: items must be strings"))?;
                match k.as_str() {
                    // `files` are full URLs, scheme included.
                    "files" if !(item.starts_with("https://") || item.starts_with("http://")) => {
                        return Err(format!("files: {item:?} is not an absolute http(s) URL"));
                    }
                    // `prefixes` are `host/path`, without a scheme.
                    "prefixes"
                        if item.contains("://") || !item.contains('/') || item.starts_with('/') =>
                    {
                        return Err(format!(
                            "prefixes: {item:?} must be host/path without a scheme"
                        ));
                    }
                    _ => {}
                }
            }
        }
        other => return Err(format!("unknown field {other}")),
    }
    Ok(json!({"success": true, "errors": [], "messages": [], "result": {"id": "zone-123"}}))
}

#[tokio::test(flavor = "current_thread")]
async fn cloudflare_provider_calls_the_zone_purge_api_as_documented() {
    let api = PurgeStandIn::start(cloudflare_contract, vec![Reply(429, Some(0))]).await;
    let provider =
        CloudflarePurge::new("zone-123", "cf-token").api_base(&format!("{}/client/v4", api.base()));
    let client = PurgeClient::new(provider, fast_retries());
    let tags: Vec<String> = (0..45).map(|i| format!("t{i:02}")).collect();
    client.purge_tags(&tags);
    client.purge_urls(["https://shop.example/a", "https://shop.example/b"]);
    client.flush().await;
    client.purge_everything();
    client.flush().await;
    assert!(api.violations().is_empty(), "{:?}", api.violations());
    let bodies: Vec<Value> = api.received().into_iter().map(|r| r.body).collect();
    // The first call met a 429 and was repeated.
    assert_eq!(bodies[0], bodies[1]);
    let kinds: Vec<(String, usize)> = bodies[1..]
        .iter()
        .map(|b| {
            let (k, v) = b
                .as_object()
                .and_then(|o| o.iter().next())
                .expect("one key");
            (k.clone(), v.as_array().map_or(1, Vec::len))
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("tags".into(), 30),
            ("tags".into(), 15),
            ("files".into(), 2),
            ("purge_everything".into(), 1)
        ]
    );
}

/// Fastly's documented purge calls: `POST /service/{id}/purge` with JSON `surrogate_keys`
/// (at most 256), `POST /service/{id}/purge_all`, `POST /purge/{host}/{path}`; `Fastly-Key`
/// header; `Fastly-Soft-Purge: 1` for soft purges.
fn fastly_contract(r: &Received) -> Result<Value, String> {
    if r.method != "POST" {
        return Err(format!("unexpected method {}", r.method));
    }
    if r.headers.get("fastly-key").and_then(|v| v.to_str().ok()) != Some("fastly-token") {
        return Err("bad Fastly-Key".into());
    }
    if let Some(v) = r.headers.get("fastly-soft-purge") {
        if v != "1" {
            return Err("Fastly-Soft-Purge must be 1".into());
        }
    }
    match r.path.as_str() {
        "/service/svc-1/purge" => {
            if !r
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.starts_with("application/json"))
            {
                return Err("a surrogate-key purge is JSON: content-type application/json".into());
            }
            let keys = r.body["surrogate_keys"]
                .as_array()
                .ok_or("surrogate_keys must be an array")?;
            if keys.is_empty() || keys.len() > 256 {
                return Err(format!("{} keys (1..=256 allowed)", keys.len()));
            }
            Ok(Value::Object(
                keys.iter()
                    .filter_map(|k| k.as_str())
                    .map(|k| (k.to_owned(), json!("purge-id")))
                    .collect(),
            ))
        }
        "/service/svc-1/purge_all" => Ok(json!({"status": "ok"})),
        // A single URL: `/purge/{host}/{path}`, the host without a scheme,
        // the path as cached (never empty, never a second slash after the host).
        p if p.starts_with("/purge/") => {
            let rest = &p["/purge/".len()..];
            let (host, path) = rest.split_once('/').ok_or(format!("no path in {p}"))?;
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
            if !host_ok || path.starts_with('/') {
                return Err(format!("not /purge/{{host}}/{{path}}: {p}"));
            }
            Ok(json!({"status": "ok", "id": "purge-id"}))
        }
        p => Err(format!("unexpected path {p}")),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn fastly_provider_uses_the_purge_api_as_documented() {
    let metrics = Metrics::new();
    let api = PurgeStandIn::start(fastly_contract, vec![]).await;
    let provider = FastlyPurge::new("svc-1", "fastly-token").api_base(&api.base());
    let client = PurgeClient::with_metrics(provider, fast_retries(), &metrics);
    let tags: Vec<String> = (0..300).map(|i| format!("k{i:03}")).collect();
    client.soft_purge_tags(&tags);
    client.flush().await;
    client.purge_urls(["https://shop.example/products/1"]);
    client.flush().await;
    client.purge_prefixes(["shop.example/blog/"]);
    client.flush().await;
    client.purge_everything();
    client.flush().await;
    assert!(api.violations().is_empty(), "{:?}", api.violations());
    let got = api.received();
    let calls: Vec<(String, usize, bool)> = got
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                strings(&r.body["surrogate_keys"]).len(),
                r.headers.contains_key("fastly-soft-purge"),
            )
        })
        .collect();
    assert_eq!(
        calls,
        vec![
            ("/service/svc-1/purge".into(), 256, true),
            ("/service/svc-1/purge".into(), 44, true),
            ("/purge/shop.example/products/1".into(), 0, false),
            ("/service/svc-1/purge_all".into(), 0, false),
        ]
    );
    // Prefix purges have no Fastly equivalent: refused locally and counted, never sent.
    assert_rendered(
        &metrics,
        r#"cachefront_origin_purge_requests_total{provider="fastly",outcome="rejected"} 1"#,
    );
}
