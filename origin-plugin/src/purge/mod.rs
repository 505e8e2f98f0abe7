//! Purge client: [`PurgeClient`] takes purge requests (tags, URLs, prefixes, hosts,
//! everything; hard or soft) without ever blocking the caller, batches them, and sends them
//! through a [`PurgeProvider`] with retries and backoff on 429/5xx (honouring
//! `Retry-After`). Providers: the Cachefront edge ([`EdgePurge`]), the Cloudflare API
//! ([`CloudflarePurge`]) and the Fastly API ([`FastlyPurge`]).
//!
//! The queue is bounded: when it is full new items are dropped and counted
//! (`cachefront_origin_purge_queue_dropped_total`), so a slow or unreachable edge costs
//! freshness, never request latency.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

/// A boxed, sendable future, as returned by [`PurgeProvider::send`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a purge call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum PurgeError {
    /// Worth trying again (429, 5xx, timeouts, connection errors).
    #[error("retryable purge failure ({}): {message}", status.map_or_else(|| "transport".to_owned(), |s| s.to_string()))]
    Retryable {
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// Wait asked for by the server's `Retry-After`.
        retry_after: Option<Duration>,
        /// What went wrong.
        message: String,
    },
    /// The provider refused the request; retrying will not help (4xx, bad answer).
    #[error("purge rejected ({status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// What the provider said.
        message: String,
    },
    /// The request cannot be expressed for this provider (e.g. prefix purge on Fastly).
    #[error("unsupported by {provider}: {what}")]
    Unsupported {
        /// Provider name.
        provider: &'static str,
        /// Which part was unsupported.
        what: &'static str,
    },
}

impl PurgeError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PurgeError::Retryable { .. })
    }
}

/// One batch to purge, in the Cachefront edge's JSON shape
/// (`{"tags": [...], "urls": [...], "prefixes": [...], "hosts": [...], "everything": true, "soft": true}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeRequest {
    /// Cache tags (lowercase).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Absolute URLs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// URL prefixes (`example.com/blog/`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// Hostnames.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Purge everything.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub everything: bool,
    /// Soft purge: keep entries usable as stale while they revalidate.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub soft: bool,
}

impl PurgeRequest {
    /// Number of items (everything counts as one).
    pub fn len(&self) -> usize {
        self.tags.len()
            + self.urls.len()
            + self.prefixes.len()
            + self.hosts.len()
            + usize::from(self.everything)
    }

    /// Whether there is nothing to purge.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Split into requests of at most `max` items each; with `one_kind`, each request
    /// carries a single kind (APIs like Cloudflare's refuse mixed bodies).
    pub fn split(&self, max: usize, one_kind: bool) -> Vec<PurgeRequest> {
        self.split_bounded(max, one_kind, usize::MAX)
    }

    /// Like [`split`](Self::split), also keeping the items of each request within about
    /// `max_item_bytes` (each item counted with 4 bytes of JSON quoting and separators).
    pub fn split_bounded(
        &self,
        max: usize,
        one_kind: bool,
        max_item_bytes: usize,
    ) -> Vec<PurgeRequest> {
        let max = max.max(1);
        let mut bytes = 0usize;
        if self.everything {
            return vec![PurgeRequest {
                everything: true,
                soft: self.soft,
                ..Default::default()
            }];
        }
        let mut out: Vec<PurgeRequest> = Vec::new();
        let mut cur = PurgeRequest {
            soft: self.soft,
            ..Default::default()
        };
        let kinds: [(&Vec<String>, KindField); 4] = [
            (&self.tags, |r| &mut r.tags),
            (&self.urls, |r| &mut r.urls),
            (&self.prefixes, |r| &mut r.prefixes),
            (&self.hosts, |r| &mut r.hosts),
        ];
        for (items, field) in kinds {
            if one_kind && !cur.is_empty() {
                bytes = 0;
                out.push(std::mem::replace(
                    &mut cur,
                    PurgeRequest {
                        soft: self.soft,
                        ..Default::default()
                    },
                ));
            }
            for item in items {
                let cost = item.len() + 4;
                if cur.len() >= max || (!cur.is_empty() && bytes + cost > max_item_bytes) {
                    bytes = 0;
                    out.push(std::mem::replace(
                        &mut cur,
                        PurgeRequest {
                            soft: self.soft,
                            ..Default::default()
                        },
                    ));
                }
                bytes += cost;
                field(&mut cur).push(item.clone());
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }
}

/// Accessor of one item list of a [`PurgeRequest`].
type KindField = fn(&mut PurgeRequest) -> &mut Vec<String>;

/// Where purges go. Implement it to add a CDN.
pub trait PurgeProvider: Send + Sync + 'static {
    /// Stable name for logs and the `provider` metric label.
    fn name(&self) -> &'static str;
    /// Most items one call may carry.
    fn max_batch(&self) -> usize;
    /// Whether one call may mix kinds (tags and URLs…).
    fn mixed_kinds(&self) -> bool {
        true
    }
    /// Most bytes of items one call may carry (the API's body limit, less room for JSON).
    fn max_item_bytes(&self) -> usize {
        usize::MAX
    }
    /// Send one batch of at most [`max_batch`](Self::max_batch) items.
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        req: &'a PurgeRequest,
    ) -> BoxFuture<'a, Result<(), PurgeError>>;
}

/// The Cachefront edge: `POST {base}/__cachefront/purge` with a bearer token. Prefixes are
/// paths the edge was configured with (`PURGE_PREFIX_TAGS`, e.g. `/blog/`).
#[derive(Debug, Clone)]
pub struct EdgePurge {
    endpoint: String,
    token: String,
    max_batch: usize,
}

impl EdgePurge {
    /// `base` is the edge's origin (`https://www.example.com`); the token is the purge secret.
    pub fn new(base: &str, token: impl Into<String>) -> Self {
        Self {
            endpoint: format!("{}/__cachefront/purge", base.trim_end_matches('/')),
            token: token.into(),
            max_batch: 100,
        }
    }
    /// Items per call. Default 100.
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }
}

impl PurgeProvider for EdgePurge {
    fn name(&self) -> &'static str {
        "edge"
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    /// The edge refuses a whole request when one item is invalid (e.g. a prefix it was not
    /// configured with): one kind per call keeps a bad prefix from costing the tags.
    fn mixed_kinds(&self) -> bool {
        false
    }
    /// The edge accepts bodies up to 64 KiB.
    fn max_item_bytes(&self) -> usize {
        60 * 1024
    }
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        req: &'a PurgeRequest,
    ) -> BoxFuture<'a, Result<(), PurgeError>> {
        Box::pin(async move {
            let res = http
                .post(&self.endpoint)
                .bearer_auth(&self.token)
                .json(req)
                .send()
                .await;
            check_response(res, |_| Ok(())).await
        })
    }
}

/// Cloudflare's zone purge API: `POST {api}/zones/{zone_id}/purge_cache`, bearer API token,
/// one kind per call (`tags`, `files`, `prefixes`, `hosts` or `purge_everything`).
/// Cloudflare has no soft purge: soft requests are sent as hard ones.
#[derive(Debug, Clone)]
pub struct CloudflarePurge {
    api_base: String,
    zone_id: String,
    token: String,
    max_batch: usize,
}

impl CloudflarePurge {
    /// Provider for `zone_id` with an API token that has the Cache Purge permission.
    pub fn new(zone_id: impl Into<String>, api_token: impl Into<String>) -> Self {
        Self {
            api_base: "https://api.cloudflare.com/client/v4".to_owned(),
            zone_id: zone_id.into(),
            token: api_token.into(),
            max_batch: 30,
        }
    }
    /// Override the API base URL (tests, proxies).
    pub fn api_base(mut self, base: &str) -> Self {
        self.api_base = base.trim_end_matches('/').to_owned();
        self
    }
    /// Items per call. Default 30 (the limit on most plans).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }
}

impl PurgeProvider for CloudflarePurge {
    fn name(&self) -> &'static str {
        "cloudflare"
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    fn mixed_kinds(&self) -> bool {
        false
    }
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        req: &'a PurgeRequest,
    ) -> BoxFuture<'a, Result<(), PurgeError>> {
        Box::pin(async move {
            let body = if req.everything {
                serde_json::json!({ "purge_everything": true })
            } else if !req.tags.is_empty() {
                serde_json::json!({ "tags": req.tags })
            } else if !req.urls.is_empty() {
                serde_json::json!({ "files": req.urls })
            } else if !req.prefixes.is_empty() {
                serde_json::json!({ "prefixes": req.prefixes })
            } else {
                serde_json::json!({ "hosts": req.hosts })
            };
            let url = format!("{}/zones/{}/purge_cache", self.api_base, self.zone_id);
            let res = http
                .post(url)
                .bearer_auth(&self.token)
                .json(&body)
                .send()
                .await;
            check_response(res, |body| {
                let ok = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v.get("success").and_then(serde_json::Value::as_bool))
                    .unwrap_or(false);
                if ok {
                    Ok(())
                } else {
                    Err(PurgeError::Rejected {
                        status: 200,
                        message: String::from_utf8_lossy(body).into_owned(),
                    })
                }
            })
            .await
        })
    }
}

/// Fastly's purge API: surrogate keys via `POST {api}/service/{id}/purge` (JSON
/// `surrogate_keys`), URLs via `POST {api}/purge/{host}/{path}`, everything via
/// `POST {api}/service/{id}/purge_all`; `Fastly-Key` auth, `Fastly-Soft-Purge: 1` for soft.
/// Prefix and host purges have no Fastly equivalent and are refused.
#[derive(Debug, Clone)]
pub struct FastlyPurge {
    api_base: String,
    service_id: String,
    token: String,
    max_batch: usize,
}

impl FastlyPurge {
    /// Provider for `service_id` with an API token that has the `purge_select` scope.
    pub fn new(service_id: impl Into<String>, api_token: impl Into<String>) -> Self {
        Self {
            api_base: "https://api.fastly.com".to_owned(),
            service_id: service_id.into(),
            token: api_token.into(),
            max_batch: 256,
        }
    }
    /// Override the API base URL (tests, proxies).
    pub fn api_base(mut self, base: &str) -> Self {
        self.api_base = base.trim_end_matches('/').to_owned();
        self
    }
}

impl PurgeProvider for FastlyPurge {
    fn name(&self) -> &'static str {
        "fastly"
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    fn mixed_kinds(&self) -> bool {
        false
    }
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        req: &'a PurgeRequest,
    ) -> BoxFuture<'a, Result<(), PurgeError>> {
        Box::pin(async move {
            if !req.prefixes.is_empty() {
                return Err(PurgeError::Unsupported {
                    provider: "fastly",
                    what: "prefix purge",
                });
            }
            if !req.hosts.is_empty() {
                return Err(PurgeError::Unsupported {
                    provider: "fastly",
                    what: "host purge",
                });
            }
            let with_auth = |b: reqwest::RequestBuilder| {
                let b = b
                    .header("Fastly-Key", &self.token)
                    .header("Accept", "application/json");
                if req.soft {
                    b.header("Fastly-Soft-Purge", "1")
                } else {
                    b
                }
            };
            if req.everything {
                let url = format!("{}/service/{}/purge_all", self.api_base, self.service_id);
                return check_response(with_auth(http.post(url)).send().await, |_| Ok(())).await;
            }
            if !req.tags.is_empty() {
                let url = format!("{}/service/{}/purge", self.api_base, self.service_id);
                let body = serde_json::json!({ "surrogate_keys": req.tags });
                return check_response(with_auth(http.post(url)).json(&body).send().await, |_| {
                    Ok(())
                })
                .await;
            }
            for u in &req.urls {
                let bare = u
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                let url = format!("{}/purge/{}", self.api_base, bare);
                check_response(with_auth(http.post(url)).send().await, |_| Ok(())).await?;
            }
            Ok(())
        })
    }
}

async fn check_response(
    res: Result<reqwest::Response, reqwest::Error>,
    on_success: impl FnOnce(&[u8]) -> Result<(), PurgeError>,
) -> Result<(), PurgeError> {
    let res = res.map_err(|e| PurgeError::Retryable {
        status: None,
        retry_after: None,
        message: e.to_string(),
    })?;
    let status = res.status();
    let retry_after = res
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = res.bytes().await.unwrap_or_default();
    if status.is_success() {
        return on_success(&body);
    }
    let message = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
        Err(PurgeError::Retryable {
            status: Some(status.as_u16()),
            retry_after,
            message,
        })
    } else {
        Err(PurgeError::Rejected {
            status: status.as_u16(),
            message,
        })
    }
}

/// Options for [`PurgeClient`].
#[derive(Debug, Clone)]
pub struct PurgeConfig {
    /// Items the queue holds before new ones are dropped. Default 10 000.
    pub queue_capacity: usize,
    /// How long the sender waits for more items after the first one. Default 50 ms.
    pub batch_window: Duration,
    /// Calls per batch before giving up (first try included). Default 5.
    pub max_attempts: u32,
    /// First backoff; doubles per retry. Default 200 ms.
    pub initial_backoff: Duration,
    /// Longest wait between tries, also caps `Retry-After`. Default 30 s.
    pub max_backoff: Duration,
    /// Per-call HTTP timeout. Default 10 s.
    pub request_timeout: Duration,
}

impl Default for PurgeConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            batch_window: Duration::from_millis(50),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// What happened to items handed to [`PurgeClient`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Items accepted into the queue.
    pub accepted: usize,
    /// Items dropped (queue full or client stopped).
    pub dropped: usize,
    /// Items refused as invalid (a tag the edge would refuse, a URL that is not absolute
    /// http(s), a malformed host): never sent, so they cannot sink a whole batch.
    pub invalid: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tag,
    Url,
    Prefix,
    Host,
    Everything,
}

impl Kind {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            Kind::Tag => "tag",
            Kind::Url => "url",
            Kind::Prefix => "prefix",
            Kind::Host => "host",
            Kind::Everything => "everything",
        }
    }
}

enum Msg {
    Item {
        kind: Kind,
        value: String,
        soft: bool,
    },
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
struct PurgeCounters {
    enqueued: [Counter; 5],
    invalid: [Counter; 5],
    dropped: Counter,
    depth: Gauge,
    ok: Counter,
    retry: Counter,
    failed: Counter,
    rejected: Counter,
}

impl PurgeCounters {
    fn noop() -> Self {
        Self {
            enqueued: std::array::from_fn(|_| Counter::noop()),
            invalid: std::array::from_fn(|_| Counter::noop()),
            dropped: Counter::noop(),
            depth: Gauge::noop(),
            ok: Counter::noop(),
            retry: Counter::noop(),
            failed: Counter::noop(),
            rejected: Counter::noop(),
        }
    }

    #[cfg(feature = "metrics")]
    fn from_metrics(m: &crate::metrics::Metrics, provider: &'static str) -> Self {
        use crate::metrics::names;
        let kinds = [
            Kind::Tag,
            Kind::Url,
            Kind::Prefix,
            Kind::Host,
            Kind::Everything,
        ];
        let outcome = |o: &str| {
            m.counter(
                names::PURGE_REQUESTS_TOTAL,
                &[("provider", provider), ("outcome", o)],
            )
        };
        Self {
            enqueued: kinds.map(|k| {
                m.counter(
                    names::PURGE_ITEMS_ENQUEUED_TOTAL,
                    &[("provider", provider), ("kind", k.as_str())],
                )
            }),
            invalid: kinds.map(|k| {
                m.counter(
                    names::PURGE_ITEMS_INVALID_TOTAL,
                    &[("provider", provider), ("kind", k.as_str())],
                )
            }),
            dropped: m.counter(names::PURGE_QUEUE_DROPPED_TOTAL, &[("provider", provider)]),
            depth: m.gauge(names::PURGE_QUEUE_DEPTH, &[("provider", provider)]),
            ok: outcome("ok"),
            retry: outcome("retry"),
            failed: outcome("failed"),
            rejected: outcome("rejected"),
        }
    }

    fn enqueued(&self, k: Kind) -> &Counter {
        &self.enqueued[k as usize]
    }

    fn invalid(&self, k: Kind) -> &Counter {
        &self.invalid[k as usize]
    }
}

/// Check and normalize one item the way the edge will, so one bad item never makes the
/// edge refuse a batch.
fn validate(kind: Kind, value: String) -> Result<String, &'static str> {
    let v = value.trim();
    match kind {
        Kind::Everything => Ok(String::new()),
        Kind::Tag => crate::tag_rules::normalize_tag(v, &crate::tag_rules::TagLimits::default())
            .map_err(crate::tag_rules::TagRejection::as_str),
        Kind::Url => {
            let ok = v.len() <= 4096
                && (v.starts_with("https://") || v.starts_with("http://"))
                && v.split("://")
                    .nth(1)
                    .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
                && v.bytes().all(|b| b.is_ascii_graphic());
            if ok {
                Ok(v.to_owned())
            } else {
                Err("url must be an absolute http(s) URL of at most 4096 bytes")
            }
        }
        Kind::Prefix => {
            let ok = !v.is_empty() && v.len() <= 1024 && v.bytes().all(|b| b.is_ascii_graphic());
            if ok {
                Ok(v.to_owned())
            } else {
                Err("prefix must be printable ASCII, at most 1024 bytes")
            }
        }
        Kind::Host => {
            let host = v.to_ascii_lowercase();
            let ok = !host.is_empty()
                && host.len() <= 253
                && host.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                });
            if ok {
                Ok(host)
            } else {
                Err("host must be a host name such as www.example.com")
            }
        }
    }
}

/// Statistics of a [`PurgeClient`], for tests and status pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeStats {
    /// Items waiting in the queue.
    pub queued: i64,
}

/// Non-blocking, batching, retrying purge client. Cheap to clone; clones share the queue.
/// Must be created inside a tokio runtime (it spawns its sender task there).
#[derive(Clone)]
pub struct PurgeClient {
    tx: mpsc::Sender<Msg>,
    counters: PurgeCounters,
    depth: Arc<AtomicI64>,
    last_drop_warning: Arc<AtomicU64>,
}

impl std::fmt::Debug for PurgeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgeClient")
            .field("queued", &self.depth.load(Ordering::Relaxed))
            .finish()
    }
}

impl PurgeClient {
    /// A client over `provider`.
    pub fn new(provider: impl PurgeProvider, config: PurgeConfig) -> Self {
        Self::start(Arc::new(provider), config, PurgeCounters::noop())
    }

    /// A client that also counts in `metrics`.
    #[cfg(feature = "metrics")]
    pub fn with_metrics(
        provider: impl PurgeProvider,
        config: PurgeConfig,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        let counters = PurgeCounters::from_metrics(metrics, provider.name());
        Self::start(Arc::new(provider), config, counters)
    }

    fn start(
        provider: Arc<dyn PurgeProvider>,
        config: PurgeConfig,
        counters: PurgeCounters,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let depth = Arc::new(AtomicI64::new(0));
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("cachefront-origin/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let sender = Sender {
            provider,
            config,
            counters: counters.clone(),
            depth: depth.clone(),
            http,
        };
        tokio::spawn(sender.run(rx));
        Self {
            tx,
            counters,
            depth,
            last_drop_warning: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Purge these cache tags (trimmed, lowercased; tags the edge would refuse are counted
    /// in [`Enqueued::invalid`] and never sent).
    pub fn purge_tags<I, T>(&self, tags: I) -> Enqueued
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.enqueue(
            Kind::Tag,
            tags.into_iter().map(|t| t.as_ref().to_owned()),
            false,
        )
    }

    /// Soft-purge these cache tags (stale entries stay usable while they revalidate).
    pub fn soft_purge_tags<I, T>(&self, tags: I) -> Enqueued
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.enqueue(
            Kind::Tag,
            tags.into_iter().map(|t| t.as_ref().to_owned()),
            true,
        )
    }

    /// Purge these absolute URLs.
    pub fn purge_urls<I, T>(&self, urls: I) -> Enqueued
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.enqueue(
            Kind::Url,
            urls.into_iter().map(|u| u.as_ref().trim().to_owned()),
            false,
        )
    }

    /// Purge everything under these URL prefixes.
    pub fn purge_prefixes<I, T>(&self, prefixes: I) -> Enqueued
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.enqueue(
            Kind::Prefix,
            prefixes.into_iter().map(|p| p.as_ref().trim().to_owned()),
            false,
        )
    }

    /// Purge everything served for these hostnames.
    pub fn purge_hosts<I, T>(&self, hosts: I) -> Enqueued
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.enqueue(
            Kind::Host,
            hosts
                .into_iter()
                .map(|h| h.as_ref().trim().to_ascii_lowercase()),
            false,
        )
    }

    /// Purge the whole cache.
    pub fn purge_everything(&self) -> Enqueued {
        self.enqueue(Kind::Everything, std::iter::once(String::new()), false)
    }

    fn enqueue(&self, kind: Kind, values: impl Iterator<Item = String>, soft: bool) -> Enqueued {
        let mut out = Enqueued::default();
        for value in values {
            let value = match validate(kind, value) {
                Ok(v) => v,
                Err(reason) => {
                    out.invalid += 1;
                    self.counters.invalid(kind).increment(1);
                    tracing::warn!(target: "cachefront_origin::purge", kind = kind.as_str(), reason, "invalid purge item refused");
                    continue;
                }
            };
            // Count before sending so the sender's decrement never runs first.
            self.depth.fetch_add(1, Ordering::Relaxed);
            match self.tx.try_send(Msg::Item { kind, value, soft }) {
                Ok(()) => {
                    out.accepted += 1;
                    self.counters.enqueued(kind).increment(1);
                }
                Err(_) => {
                    self.depth.fetch_sub(1, Ordering::Relaxed);
                    out.dropped += 1;
                    self.counters.dropped.increment(1);
                }
            }
        }
        self.counters
            .depth
            .set(self.depth.load(Ordering::Relaxed) as f64);
        if out.dropped > 0 {
            // At most one warning a second: a full queue must not also flood the log.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if self.last_drop_warning.swap(now, Ordering::Relaxed) != now {
                tracing::warn!(target: "cachefront_origin::purge", dropped = out.dropped, "purge queue full; items dropped");
            }
        }
        out
    }

    /// Wait until everything enqueued before this call has been sent (or given up on).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Current statistics.
    pub fn stats(&self) -> PurgeStats {
        PurgeStats {
            queued: self.depth.load(Ordering::Relaxed),
        }
    }
}

struct Sender {
    provider: Arc<dyn PurgeProvider>,
    config: PurgeConfig,
    counters: PurgeCounters,
    depth: Arc<AtomicI64>,
    http: reqwest::Client,
}

#[derive(Default)]
struct Batch {
    hard: Sets,
    soft: Sets,
    items: usize,
}

#[derive(Default)]
struct Sets {
    tags: BTreeSet<String>,
    urls: BTreeSet<String>,
    prefixes: BTreeSet<String>,
    hosts: BTreeSet<String>,
    everything: bool,
}

impl Sets {
    fn into_request(self, soft: bool) -> PurgeRequest {
        if self.everything {
            return PurgeRequest {
                everything: true,
                soft,
                ..Default::default()
            };
        }
        PurgeRequest {
            tags: self.tags.into_iter().collect(),
            urls: self.urls.into_iter().collect(),
            prefixes: self.prefixes.into_iter().collect(),
            hosts: self.hosts.into_iter().collect(),
            everything: false,
            soft,
        }
    }
}

impl Batch {
    fn add(&mut self, kind: Kind, value: String, soft: bool) {
        self.items += 1;
        let sets = if soft { &mut self.soft } else { &mut self.hard };
        match kind {
            Kind::Tag => {
                sets.tags.insert(value);
            }
            Kind::Url => {
                sets.urls.insert(value);
            }
            Kind::Prefix => {
                sets.prefixes.insert(value);
            }
            Kind::Host => {
                sets.hosts.insert(value);
            }
            Kind::Everything => sets.everything = true,
        }
    }
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Msg>) {
        // The largest batch worth collecting before sending: a few provider calls' worth.
        let collect_max = self.provider.max_batch().saturating_mul(4).max(1);
        while let Some(first) = rx.recv().await {
            let mut batch = Batch::default();
            let mut flushes = Vec::new();
            match first {
                Msg::Item { kind, value, soft } => self.take(&mut batch, kind, value, soft),
                Msg::Flush(done) => flushes.push(done),
            }
            if flushes.is_empty() {
                let window = tokio::time::sleep(self.config.batch_window);
                tokio::pin!(window);
                while batch.items < collect_max {
                    tokio::select! {
                        biased;
                        msg = rx.recv() => match msg {
                            Some(Msg::Item { kind, value, soft }) => self.take(&mut batch, kind, value, soft),
                            Some(Msg::Flush(done)) => { flushes.push(done); break; }
                            None => break,
                        },
                        _ = &mut window => break,
                    }
                }
            }
            self.send_batch(batch).await;
            for done in flushes {
                let _ = done.send(());
            }
        }
    }

    fn take(&self, batch: &mut Batch, kind: Kind, value: String, soft: bool) {
        let left = self.depth.fetch_sub(1, Ordering::Relaxed) - 1;
        self.counters.depth.set(left.max(0) as f64);
        batch.add(kind, value, soft);
    }

    async fn send_batch(&self, batch: Batch) {
        let max = self.provider.max_batch();
        let mixed = self.provider.mixed_kinds();
        for req in [
            batch.hard.into_request(false),
            batch.soft.into_request(true),
        ] {
            if req.is_empty() {
                continue;
            }
            for part in req.split_bounded(max, !mixed, self.provider.max_item_bytes()) {
                self.send_with_retries(&part).await;
            }
        }
    }

    async fn send_with_retries(&self, req: &PurgeRequest) {
        let provider = self.provider.name();
        let mut backoff = self.config.initial_backoff;
        let attempts = self.config.max_attempts.max(1);
        for attempt in 1..=attempts {
            match self.provider.send(&self.http, req).await {
                Ok(()) => {
                    self.counters.ok.increment(1);
                    tracing::debug!(target: "cachefront_origin::purge", provider, items = req.len(), attempt, "purge sent");
                    return;
                }
                Err(PurgeError::Retryable {
                    status,
                    retry_after,
                    message,
                }) if attempt < attempts => {
                    self.counters.retry.increment(1);
                    let wait = retry_after.unwrap_or(backoff).min(self.config.max_backoff);
                    tracing::warn!(target: "cachefront_origin::purge", provider, ?status, attempt, wait_ms = wait.as_millis() as u64, %message, "purge failed; retrying");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                }
                Err(e @ PurgeError::Retryable { .. }) => {
                    self.counters.failed.increment(1);
                    tracing::error!(target: "cachefront_origin::purge", provider, attempts, error = %e, items = req.len(), "purge failed; giving up");
                    return;
                }
                Err(e) => {
                    self.counters.rejected.increment(1);
                    tracing::error!(target: "cachefront_origin::purge", provider, error = %e, items = req.len(), "purge rejected");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i}")).collect()
    }

    #[test]
    fn split_respects_max_and_keeps_every_item() {
        let req = PurgeRequest {
            tags: tags(5),
            urls: vec!["https://a/x".into()],
            ..Default::default()
        };
        let parts = req.split(2, false);
        assert!(parts.iter().all(|p| p.len() <= 2));
        assert_eq!(parts.iter().map(PurgeRequest::len).sum::<usize>(), 6);
    }

    #[test]
    fn split_one_kind_never_mixes() {
        let req = PurgeRequest {
            tags: tags(3),
            urls: vec!["https://a/x".into()],
            soft: true,
            ..Default::default()
        };
        let parts = req.split(30, true);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.soft));
        assert_eq!(parts[0].tags.len(), 3);
        assert_eq!(parts[1].urls.len(), 1);
    }

    #[test]
    fn everything_dominates() {
        let req = PurgeRequest {
            tags: tags(3),
            everything: true,
            ..Default::default()
        };
        assert_eq!(
            req.split(1, true),
            vec![PurgeRequest {
                everything: true,
                ..Default::default()
            }]
        );
    }

    #[test]
    fn edge_body_has_documented_shape() {
        let req = PurgeRequest {
            tags: vec!["a".into()],
            soft: true,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&req).ok(),
            Some(serde_json::json!({"tags": ["a"], "soft": true}))
        );
    }
}
