//! Forwarding purges to Cloudflare's zone cache: a pure planner that turns a
//! [`PurgeRequest`] into `purge_cache` API calls batched to the API's limits,
//! a retry policy with explicit time, and [`forward`], which runs the calls
//! over any [`CloudflareApi`] transport with any [`Clock`].
//!
//! The API, as documented (developers.cloudflare.com, "Purge Cached Content"
//! in the API reference, and the "Purge cache" how-to):
//! `POST https://api.cloudflare.com/client/v4/zones/{zone_id}/purge_cache`,
//! `Authorization: Bearer <token>`, `Content-Type: application/json`, and one
//! of the bodies `{"files":[..]}`, `{"tags":[..]}`, `{"hosts":[..]}`,
//! `{"prefixes":[..]}` (host + path, no scheme) or `{"purge_everything":true}`.
//!
//! Limits per call: the API reference says "you may purge up to 30 tags,
//! hosts, or prefixes in one API call" and, for URLs, 30 (Free/Pro/Business)
//! or 500 (Enterprise); the newer "Purge cache" page gives 100 operations per
//! request on every plan (500 URLs on Enterprise). We default to 30, which
//! every plan and both versions of the docs accept; `CF_PURGE_BATCH` raises it.
//! A 429 is retried after its `Retry-After`, other failures with exponential
//! backoff; the purge rate limits are per account (token bucket).

use http::header::{self, HeaderValue};
use http::{Method, Request};
use serde::Serialize;

use super::request::PurgeRequest;
use crate::admin::auth::SecretToken;
use crate::platform::ports::Clock;

/// Where purges are forwarded on Cloudflare, when configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudflareZone {
    pub zone_id: String,
    pub api_token: SecretToken,
    /// Items per API call (tags, hosts, prefixes or files).
    pub batch_size: usize,
}

/// The API's base URL.
pub const API_BASE: &str = "https://api.cloudflare.com/client/v4";
/// Items per call unless `CF_PURGE_BATCH` says otherwise.
pub const DEFAULT_BATCH: usize = 30;
/// The largest per-call limit any plan documents (Enterprise URLs).
pub const MAX_BATCH: usize = 500;

/// The JSON body of one `purge_cache` call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeBody {
    Files(Vec<String>),
    Tags(Vec<String>),
    Hosts(Vec<String>),
    Prefixes(Vec<String>),
    PurgeEverything(bool),
}

/// One API call: `POST {base}/zones/{zone_id}/purge_cache` with `body`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiCall {
    pub zone_id: String,
    pub body: PurgeBody,
}

impl ApiCall {
    /// The path under the API base.
    pub fn path(&self) -> String {
        format!("/zones/{}/purge_cache", self.zone_id)
    }

    pub fn body_json(&self) -> String {
        serde_json::to_string(&self.body).unwrap_or_default()
    }

    /// The request exactly as sent: method, URL, headers and body. `api_base`
    /// is [`API_BASE`] except in tests.
    pub fn to_request(&self, api_base: &str, zone: &CloudflareZone) -> Option<Request<String>> {
        let url = format!("{}{}", api_base.trim_end_matches('/'), self.path());
        let bearer = HeaderValue::from_str(&format!("Bearer {}", zone.api_token.expose())).ok()?;
        Request::builder()
            .method(Method::POST)
            .uri(url)
            .header(header::AUTHORIZATION, bearer)
            .header(header::CONTENT_TYPE, "application/json")
            .body(self.body_json())
            .ok()
    }
}

/// The calls that purge `request` from the zone's cache. "Everything" is one
/// call and makes the rest moot. Prefixes are qualified with `site_host`
/// (the API wants `host/path`). A soft purge is forwarded as a purge: the
/// zone cache has no soft purge.
pub fn plan(request: &PurgeRequest, site_host: &str, zone: &CloudflareZone) -> Vec<ApiCall> {
    let call = |body| ApiCall {
        zone_id: zone.zone_id.clone(),
        body,
    };
    if request.everything {
        return vec![call(PurgeBody::PurgeEverything(true))];
    }
    let batch = zone.batch_size.clamp(1, MAX_BATCH);
    let host = site_host.trim().to_ascii_lowercase();
    let prefixes: Vec<String> = request
        .prefixes
        .iter()
        .map(|p| format!("{host}{p}"))
        .collect();
    let mut calls = Vec::new();
    for chunk in request.urls.chunks(batch) {
        calls.push(call(PurgeBody::Files(chunk.to_vec())));
    }
    for chunk in request.tags.chunks(batch) {
        calls.push(call(PurgeBody::Tags(chunk.to_vec())));
    }
    for chunk in request.hosts.chunks(batch) {
        calls.push(call(PurgeBody::Hosts(chunk.to_vec())));
    }
    for chunk in prefixes.chunks(batch) {
        calls.push(call(PurgeBody::Prefixes(chunk.to_vec())));
    }
    calls
}

/// When to try a call again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled for each one after.
    pub base_delay_ms: u64,
    /// No wait is longer, whatever `Retry-After` says: on Workers the
    /// forwarding runs under `waitUntil`, which ends 30 s after the answer.
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay_ms: 1_000,
            max_delay_ms: 10_000,
        }
    }
}

/// What one attempt's result calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    Done,
    RetryAfterMs(u64),
    GiveUp,
}

impl RetryPolicy {
    /// Decides after attempt number `attempt` (1-based) ended with `status`
    /// (`None`: no answer, a network error) and `retry_after` (the header).
    pub fn next_step(
        &self,
        attempt: u32,
        status: Option<u16>,
        retry_after: Option<&str>,
        now_ms: u64,
    ) -> NextStep {
        if status.is_some_and(|code| (200..300).contains(&code)) {
            return NextStep::Done;
        }
        if !is_retryable(status) || attempt >= self.max_attempts {
            return NextStep::GiveUp;
        }
        let backoff = self
            .base_delay_ms
            .saturating_mul(1u64 << (attempt.saturating_sub(1)).min(20));
        let wait = match (status, retry_after.and_then(|v| retry_after_ms(v, now_ms))) {
            (Some(429), Some(ms)) => ms,
            _ => backoff,
        };
        NextStep::RetryAfterMs(wait.min(self.max_delay_ms))
    }
}

/// Whether a failed attempt (`None`: no answer) is worth another: a 429, a
/// 5xx, or no answer at all. Other 4xx will not get better.
pub fn is_retryable(status: Option<u16>) -> bool {
    match status {
        Some(429) | None => true,
        Some(code) => code >= 500,
    }
}

/// Checks `CF_API_BASE`: an `https://` URL, or `http://` on a loopback
/// address (a local stand-in of the API), without credentials, query or
/// fragment. The API token is sent there, so nothing else is accepted.
pub fn parse_api_base(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("not an absolute URL ({e})"))?;
    let loopback = matches!(
        url.host(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback()
    ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost");
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err("must be an https:// URL (http:// only on a loopback address)".to_owned()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".to_owned());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `Retry-After` as delay-seconds or an HTTP date, in ms from `now_ms`.
pub fn retry_after_ms(value: &str, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let at_ms = at
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())?;
    Some(at_ms.saturating_sub(now_ms))
}

/// One HTTP answer from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiReply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

/// Sends one request to the API and returns its answer, whatever its status
/// (`Err` only when there was no answer).
#[allow(async_fn_in_trait)]
pub trait CloudflareApi {
    async fn send(&self, request: Request<String>) -> Result<ApiReply, String>;
}

/// A call that did not succeed, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedCall {
    pub index: usize,
    pub status: Option<u16>,
    pub message: String,
}

/// What forwarding did; log it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ForwardReport {
    pub succeeded: usize,
    pub retries: u32,
    pub failed: Vec<FailedCall>,
}

/// Runs `calls` one after the other (the API's limits are per account, so
/// parallel calls would only meet 429 sooner), retrying per `policy`.
pub async fn forward<A: CloudflareApi, C: Clock>(
    api: &A,
    clock: &C,
    zone: &CloudflareZone,
    api_base: &str,
    calls: &[ApiCall],
    policy: RetryPolicy,
) -> ForwardReport {
    let mut report = ForwardReport::default();
    for (index, call) in calls.iter().enumerate() {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(request) = call.to_request(api_base, zone) else {
                report.failed.push(FailedCall {
                    index,
                    status: None,
                    message: "the API token cannot be sent in a header".to_owned(),
                });
                break;
            };
            let (status, retry_after, message) = match api.send(request).await {
                Ok(reply) => {
                    let message = api_error_message(&reply.body);
                    // A 2xx whose body says `"success": false` is a failure, not retried.
                    let status = if (200..300).contains(&reply.status) && message.is_some() {
                        Some(400)
                    } else {
                        Some(reply.status)
                    };
                    let message = message.unwrap_or_else(|| format!("HTTP {}", reply.status));
                    (status, reply.retry_after, message)
                }
                Err(network) => (None, None, network),
            };
            match policy.next_step(attempt, status, retry_after.as_deref(), clock.now_ms()) {
                NextStep::Done => {
                    report.succeeded += 1;
                    break;
                }
                NextStep::RetryAfterMs(ms) => {
                    report.retries += 1;
                    clock.sleep(ms).await;
                }
                NextStep::GiveUp => {
                    report.failed.push(FailedCall {
                        index,
                        status,
                        message,
                    });
                    break;
                }
            }
        }
    }
    report
}

/// The API's error messages when its body says `"success": false`.
fn api_error_message(body: &str) -> Option<String> {
    // from_slice, not from_str: one serde_json reader in the wasm (docs/assets.md).
    let value: serde_json::Value = serde_json::from_slice(body.as_bytes()).ok()?;
    if value.get("success").and_then(serde_json::Value::as_bool) != Some(false) {
        return None;
    }
    let messages: Vec<String> = value
        .get("errors")
        .and_then(serde_json::Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e.get("message").and_then(serde_json::Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Some(if messages.is_empty() {
        "the API answered success: false".to_owned()
    } else {
        messages.join("; ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purge::api::parse_purge_body;
    use futures::executor::block_on;
    use std::cell::RefCell;

    fn zone(batch: usize) -> CloudflareZone {
        CloudflareZone {
            zone_id: "0123456789abcdef0123456789abcdef".to_owned(),
            api_token: SecretToken::new("cf-token"),
            batch_size: batch,
        }
    }

    fn request(json: &str) -> PurgeRequest {
        parse_purge_body(json.as_bytes(), &["/products/".to_owned()]).expect("valid")
    }

    #[test]
    fn plan_batches_each_kind_to_the_per_call_limit() {
        let tags: Vec<String> = (0..65).map(|i| format!("\"t{i}\"")).collect();
        let urls: Vec<String> = (0..31)
            .map(|i| format!("\"https://example.com/{i}\""))
            .collect();
        let request = request(&format!(
            r#"{{"tags":[{}],"urls":[{}],"hosts":["a.com"],"prefixes":["/products/"]}}"#,
            tags.join(","),
            urls.join(",")
        ));
        let calls = plan(&request, "Shop.example.com", &zone(30));
        let shape: Vec<(&str, usize)> = calls
            .iter()
            .map(|c| match &c.body {
                PurgeBody::Files(v) => ("files", v.len()),
                PurgeBody::Tags(v) => ("tags", v.len()),
                PurgeBody::Hosts(v) => ("hosts", v.len()),
                PurgeBody::Prefixes(v) => ("prefixes", v.len()),
                PurgeBody::PurgeEverything(_) => ("everything", 1),
            })
            .collect();
        assert_eq!(
            shape,
            [
                ("files", 30),
                ("files", 1),
                ("tags", 30),
                ("tags", 30),
                ("tags", 5),
                ("hosts", 1),
                ("prefixes", 1)
            ]
        );
        assert_eq!(
            calls[6].body_json(),
            r#"{"prefixes":["shop.example.com/products/"]}"#
        );
        assert_eq!(
            calls[0].path(),
            "/zones/0123456789abcdef0123456789abcdef/purge_cache"
        );
    }

    #[test]
    fn everything_is_one_purge_everything_call() {
        let calls = plan(
            &request(r#"{"everything":true,"tags":["a"]}"#),
            "x",
            &zone(30),
        );
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].body_json(), r#"{"purge_everything":true}"#);
    }

    #[test]
    fn requests_carry_bearer_token_and_json_content_type() {
        let calls = plan(&request(r#"{"tags":["a"]}"#), "x", &zone(30));
        let req = calls[0]
            .to_request("https://api.example/client/v4/", &zone(30))
            .expect("request");
        assert_eq!(req.method(), Method::POST);
        assert_eq!(
            req.uri(),
            "https://api.example/client/v4/zones/0123456789abcdef0123456789abcdef/purge_cache"
        );
        assert_eq!(req.headers()["authorization"], "Bearer cf-token");
        assert_eq!(req.headers()["content-type"], "application/json");
        assert_eq!(req.body(), r#"{"tags":["a"]}"#);
    }

    #[test]
    fn retry_honours_retry_after_on_429_and_backs_off_otherwise() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.next_step(1, Some(200), None, 0), NextStep::Done);
        assert_eq!(
            policy.next_step(1, Some(429), Some("7"), 0),
            NextStep::RetryAfterMs(7_000)
        );
        assert_eq!(
            policy.next_step(1, Some(429), Some("Thu, 01 Jan 1970 00:00:10 GMT"), 4_000),
            NextStep::RetryAfterMs(6_000)
        );
        assert_eq!(
            policy.next_step(1, Some(429), None, 0),
            NextStep::RetryAfterMs(1_000)
        );
        assert_eq!(
            policy.next_step(3, Some(503), None, 0),
            NextStep::RetryAfterMs(4_000)
        );
        assert_eq!(
            policy.next_step(2, None, None, 0),
            NextStep::RetryAfterMs(2_000)
        );
        assert_eq!(
            policy.next_step(1, Some(429), Some("3600"), 0),
            NextStep::RetryAfterMs(10_000),
            "capped"
        );
        assert_eq!(policy.next_step(1, Some(400), None, 0), NextStep::GiveUp);
        assert_eq!(policy.next_step(1, Some(403), None, 0), NextStep::GiveUp);
        assert_eq!(
            policy.next_step(5, Some(429), Some("1"), 0),
            NextStep::GiveUp
        );
    }

    struct ScriptedApi {
        replies: RefCell<Vec<Result<ApiReply, String>>>,
        seen: RefCell<Vec<String>>,
    }

    impl CloudflareApi for ScriptedApi {
        async fn send(&self, request: Request<String>) -> Result<ApiReply, String> {
            self.seen.borrow_mut().push(request.body().clone());
            let mut replies = self.replies.borrow_mut();
            if replies.is_empty() {
                return Ok(ApiReply {
                    status: 200,
                    retry_after: None,
                    body: r#"{"success":true,"errors":[],"messages":[],"result":{"id":"x"}}"#
                        .to_owned(),
                });
            }
            replies.remove(0)
        }
    }

    struct FakeClock {
        now: RefCell<u64>,
        slept: RefCell<Vec<u64>>,
    }

    impl Clock for FakeClock {
        fn now_ms(&self) -> u64 {
            *self.now.borrow()
        }
        async fn sleep(&self, ms: u64) {
            self.slept.borrow_mut().push(ms);
            *self.now.borrow_mut() += ms;
        }
    }

    fn reply(status: u16, retry_after: Option<&str>, body: &str) -> Result<ApiReply, String> {
        Ok(ApiReply {
            status,
            retry_after: retry_after.map(str::to_owned),
            body: body.to_owned(),
        })
    }

    #[test]
    fn forward_retries_429_then_reports_each_call() {
        let api = ScriptedApi {
            replies: RefCell::new(vec![
                reply(
                    429,
                    Some("2"),
                    r#"{"success":false,"errors":[{"code":10000,"message":"rate limited"}]}"#,
                ),
                Err("connection reset".to_owned()),
                reply(200, None, r#"{"success":true}"#),
                reply(
                    200,
                    None,
                    r#"{"success":false,"errors":[{"code":1234,"message":"bad tag"}]}"#,
                ),
            ]),
            seen: RefCell::new(Vec::new()),
        };
        let clock = FakeClock {
            now: RefCell::new(0),
            slept: RefCell::new(Vec::new()),
        };
        let calls = plan(
            &request(r#"{"tags":["a"],"hosts":["b.com"]}"#),
            "x",
            &zone(30),
        );
        let report = block_on(forward(
            &api,
            &clock,
            &zone(30),
            API_BASE,
            &calls,
            RetryPolicy::default(),
        ));
        assert_eq!(report.succeeded, 1);
        assert_eq!(report.retries, 2);
        assert_eq!(*clock.slept.borrow(), [2_000, 2_000]);
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].index, 1);
        assert_eq!(report.failed[0].message, "bad tag");
        assert_eq!(api.seen.borrow().len(), 4);
    }
}
