//! The request pipeline: static assets, then the cache tiers, then the origin.
//! Plain Rust over `http` types, generic over the [`Platform`]; it reads time
//! only through the platform clock and does I/O only through platform traits.
//! Every cache decision is delegated to the pure modules (`policy`,
//! `conditional`, `range`, `vary`); this module only sequences them.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use http::header::{self, HeaderName};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use serde::Serialize;

use crate::admin::auth::{self, TokenCheck};
use crate::admin::state;
use crate::assets::edge::{self as edge_assets, HtmlOutcome};
use crate::assets::origin_minify::MinifyOutcome;
use crate::assets::Manifest;
use crate::cache::coalesce::{Coalescer, Role};
use crate::cache::hot::HotCache;
use crate::cache::key::{self as cache_key, KeyRules};
use crate::cache::stored::{self, EntryMeta};
use crate::config::{Config, ConfigError};
use crate::error::{json_response, AttemptFailure, EdgeError};
use crate::origin::health::{self, Availability, OriginHealth, SharedHealth};
use crate::origin::pool::{self as origin_pool, Candidate};
use crate::origin::request as forward;
use crate::origin::shaping;
use crate::platform::body::{self, Streamed};
use crate::platform::{
    Background, BodyStreams, CacheStore, Clock, GlobalStore, HealthStore, OriginError, OriginFetch,
    Platform, StaticAssets,
};
use crate::purge::api::{self as purge, PurgeContext, PurgeRateLimiter};
use crate::purge::cloudflare;
use crate::purge::registry::{self, EntryState, RegistryMemo};
use crate::purge::tags;
use crate::purge::warming;
use crate::semantics::cache_status::{CacheStatus, Forward, NoStoreReason, Outcome, Tier};
use crate::semantics::conditional;
use crate::semantics::policy::{
    self, Freshness, RequestDirectives, RequestFacts, ResponseTimes, Reuse, StoreDecision,
};
use crate::semantics::range;
use crate::semantics::vary;
use crate::telemetry::server_timing::{self, Metric};
use crate::Body;

/// How often a coalesced request checks whether the leader has finished.
const COALESCE_POLL_MS: u64 = 5;
/// How long it waits for the leader before fetching by itself.
const COALESCE_MAX_WAIT_MS: u64 = 30_000;

/// Registry answers one isolate keeps at most.
const MEMO_MAX_KEYS: usize = 10_000;

/// Marks an origin's failure answer passed on after every candidate failed:
/// the store decision refuses it whatever its headers say.
#[derive(Debug, Clone, Copy)]
struct FailedOver;

/// The operator endpoint reporting origin health.
pub const HEALTH_PATH: &str = "/__cachefront/health";

/// Response header naming the origin that produced a forwarded response.
pub const ORIGIN_HEADER: &str = "cachefront-origin";

/// One structured log line per request (what Logpush/tail consumers read).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RequestLog {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Short outcome: `asset`, `hit`, `stale`, `revalidated`, `miss`, `expired`, `bypass`, `error`.
    pub cache: &'static str,
    pub cache_status: String,
    /// Where the answer came from: `memory`, `edge`, `assets` or `origin`.
    pub tier: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_ms: Option<u64>,
    pub edge_ms: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// For purge requests: what was purged (never the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge: Option<serde_json::Value>,
}

/// What warming one URL did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WarmResult {
    pub url: String,
    pub status: u16,
    pub cache: &'static str,
}

/// A finished request: the response to send and what to log about it.
#[derive(Debug)]
pub struct Handled {
    pub response: Response<Body>,
    pub log: RequestLog,
}

/// Details gathered while serving, folded into headers and the log.
#[derive(Default)]
struct Trace {
    /// What a purge request did (for the log line).
    purge: Option<serde_json::Value>,
    origin: Option<String>,
    origin_ms: Option<u64>,
    /// Failed attempts before the answer: (origin, what failed, ms).
    failed_attempts: Vec<(String, String, u64)>,
    warnings: Vec<String>,
}

/// What this isolate knows about its origins' health.
#[derive(Default)]
pub struct OriginBook {
    health: HashMap<String, OriginHealth>,
    /// When the shared (active check) results were last read.
    shared_loaded_ms: Option<u64>,
    shared: Vec<SharedHealth>,
}

/// State that lives as long as the isolate and is shared by its requests.
#[derive(Clone)]
pub struct IsolateState {
    pub hot: HotCache,
    pub coalescer: Coalescer,
    /// Keys being refreshed in the background, so each is refreshed once.
    refreshing: Rc<RefCell<HashSet<String>>>,
    origins: Rc<RefCell<OriginBook>>,
    /// The asset build's manifest, read once per isolate (`None` inside: absent).
    manifest: Rc<RefCell<Option<Option<Rc<Manifest>>>>>,
    /// Tag registry answers, trusted for `PURGE_SYNC_MS`.
    memo: Rc<RefCell<RegistryMemo>>,
    purge_limiter: Rc<RefCell<PurgeRateLimiter>>,
    /// Paths the asset store answered 404 for. Assets change only with a
    /// deploy, which starts new isolates, so the answer holds for this one.
    not_assets: Rc<RefCell<BoundedPathSet>>,
}

/// Paths remembered as "not an asset" per isolate: entries and bytes are both
/// capped (the set restarts when full), and long paths are not remembered, so
/// anonymous traffic cannot grow it past a few hundred KB.
const NOT_ASSETS_MAX: usize = 10_000;
const NOT_ASSETS_MAX_BYTES: usize = 512 * 1024;
const NOT_ASSETS_MAX_PATH_BYTES: usize = 1024;
/// Background refreshes one isolate runs at once; past this, stale answers
/// wait for a client's own revalidation.
const REFRESHING_MAX: usize = 256;

/// A set of paths bounded in entries and bytes.
#[derive(Default)]
pub struct BoundedPathSet {
    paths: HashSet<String>,
    bytes: usize,
}

impl BoundedPathSet {
    pub fn contains(&self, path: &str) -> bool {
        self.paths.contains(path)
    }

    /// Remembers `path` unless it is too long; starts over when a cap is hit.
    pub fn insert(&mut self, path: &str) {
        if path.len() > NOT_ASSETS_MAX_PATH_BYTES || self.paths.contains(path) {
            return;
        }
        if self.paths.len() >= NOT_ASSETS_MAX || self.bytes + path.len() > NOT_ASSETS_MAX_BYTES {
            self.paths.clear();
            self.bytes = 0;
        }
        self.bytes += path.len();
        self.paths.insert(path.to_owned());
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Holds a key in the `refreshing` set for as long as its refresh runs: if
/// the runtime drops the background task, the key is released all the same.
struct RefreshClaim {
    set: Rc<RefCell<HashSet<String>>>,
    key: String,
}

impl RefreshClaim {
    fn take(set: &Rc<RefCell<HashSet<String>>>, key: &str) -> Option<Self> {
        let mut keys = set.borrow_mut();
        if keys.len() >= REFRESHING_MAX || !keys.insert(key.to_owned()) {
            return None;
        }
        Some(Self {
            set: Rc::clone(set),
            key: key.to_owned(),
        })
    }
}

impl Drop for RefreshClaim {
    fn drop(&mut self) {
        self.set.borrow_mut().remove(&self.key);
    }
}

impl IsolateState {
    pub fn new(config: &Config) -> Self {
        Self {
            hot: HotCache::new(config.memory_cache_bytes, config.memory_cache_max_secs),
            coalescer: Coalescer::default(),
            refreshing: Rc::default(),
            origins: Rc::default(),
            manifest: Rc::default(),
            memo: Rc::new(RefCell::new(RegistryMemo::new(
                config.purge.sync_ms,
                MEMO_MAX_KEYS,
            ))),
            purge_limiter: Rc::new(RefCell::new(PurgeRateLimiter::new(
                config.purge.rate_per_min,
                0,
            ))),
            not_assets: Rc::default(),
        }
    }

    /// Whether the asset store already said `path` is not an asset.
    fn known_not_asset(&self, path: &str) -> bool {
        self.not_assets.borrow().contains(path)
    }

    fn remember_not_asset(&self, path: &str) {
        self.not_assets.borrow_mut().insert(path);
    }

    /// Entries and bytes of the "not an asset" set (for tests and reports).
    pub fn not_asset_paths(&self) -> (usize, usize) {
        let paths = self.not_assets.borrow();
        (paths.len(), paths.bytes())
    }

    /// Keys being refreshed in the background right now.
    pub fn refreshing(&self) -> usize {
        self.refreshing.borrow().len()
    }

    /// Whether this state was built for the same memory-tier limits.
    pub fn fits(&self, config: &Config) -> bool {
        self.hot
            .has_limits(config.memory_cache_bytes, config.memory_cache_max_secs)
    }
}

/// A stored response found in one of the tiers.
struct StoredEntry {
    key: String,
    response: Response<Body>,
    meta: EntryMeta,
    tier: Tier,
}

/// Which tiers a lookup may read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tiers {
    Memory,
    All,
}

enum Lookup {
    Found(Box<StoredEntry>),
    VaryMiss,
    Miss,
}

/// Fields of RFC 9213 meant for this cache only: never sent downstream.
fn strip_targeted_fields(headers: &mut http::HeaderMap) {
    for name in policy::TARGETED_FIELDS {
        headers.remove(name);
    }
}

/// The answer to every request while the configuration is invalid.
pub fn config_error_response(err: &ConfigError, method: &Method, path: &str) -> Handled {
    let error = EdgeError::Config(err.clone());
    let mut response = error.to_response();
    let status = CacheStatus::forward(Forward::Bypass)
        .with_outcome(Outcome::Error)
        .with_detail("config-error");
    status.apply(response.headers_mut());
    Handled {
        log: RequestLog {
            method: method.to_string(),
            path: path.to_owned(),
            status: response.status().as_u16(),
            cache: status.outcome(),
            cache_status: status.member(),
            tier: status.tier(),
            origin: None,
            origin_ms: None,
            edge_ms: 0,
            warnings: vec![error.to_string()],
            purge: None,
        },
        response,
    }
}

fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

pub struct Pipeline<P: Platform> {
    config: Rc<Config>,
    platform: P,
    isolate: IsolateState,
}

impl<P: Platform + Clone> Clone for Pipeline<P> {
    fn clone(&self) -> Self {
        Self {
            config: Rc::clone(&self.config),
            platform: self.platform.clone(),
            isolate: self.isolate.clone(),
        }
    }
}

impl<P: Platform + Clone + 'static> Pipeline<P> {
    pub fn new(config: Config, platform: P, isolate: IsolateState) -> Self {
        Self {
            config: Rc::new(config),
            platform,
            isolate,
        }
    }

    /// Like [`Pipeline::new`], for a configuration shared across requests.
    pub fn from_shared(config: Rc<Config>, platform: P, isolate: IsolateState) -> Self {
        Self {
            config,
            platform,
            isolate,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn platform(&self) -> &P {
        &self.platform
    }

    pub fn isolate(&self) -> &IsolateState {
        &self.isolate
    }

    /// The same configuration and platform as a newly started isolate sees them.
    pub fn with_fresh_isolate(&self) -> Self {
        Self {
            config: Rc::clone(&self.config),
            platform: self.platform.clone(),
            isolate: IsolateState::new(&self.config),
        }
    }

    fn now(&self) -> u64 {
        self.platform.clock().now_ms()
    }

    /// Serves one request. Never fails: errors become JSON error responses.
    pub async fn handle(&self, request: Request<Body>) -> Handled {
        let started = self.now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let mut trace = Trace::default();

        let (mut response, status) = self.serve(request, &mut trace).await;

        let edge_ms = self.now().saturating_sub(started);
        let headers = response.headers_mut();
        strip_targeted_fields(headers);
        if self.config.purge.strip_tag_headers {
            tags::strip_tag_headers(headers);
        }
        status.apply(headers);
        let mut timings = vec![Metric::new("cachefront", edge_ms).with_desc(status.outcome())];
        for (origin, failure, ms) in &trace.failed_attempts {
            timings
                .push(Metric::new("origin-failed", *ms).with_desc(format!("{origin}: {failure}")));
        }
        if let (Some(origin), Some(ms)) = (&trace.origin, trace.origin_ms) {
            timings.push(Metric::new("origin", ms).with_desc(origin.clone()));
        }
        server_timing::append(headers, &timings);

        Handled {
            log: RequestLog {
                method: method.to_string(),
                path,
                status: response.status().as_u16(),
                cache: status.outcome(),
                cache_status: status.member(),
                tier: status.tier(),
                origin: trace.origin,
                origin_ms: trace.origin_ms,
                edge_ms,
                warnings: trace.warnings,
                purge: trace.purge,
            },
            response,
        }
    }

    async fn serve(
        &self,
        mut request: Request<Body>,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        if request.uri().path() == purge::PURGE_PATH {
            if let Some(stream) = body::streamed_request(&request) {
                // Purge bodies are small; one big enough to stream is refused unread.
                self.platform.streams().cancel(stream);
                let err = purge::PurgeError::BodyTooLarge {
                    limit: purge::MAX_BODY_BYTES,
                };
                let status = CacheStatus::forward(Forward::Bypass).with_detail("purge");
                return (err.to_response(), status.with_outcome(Outcome::Error));
            }
            return self.serve_purge(&request, trace).await;
        }
        if request.uri().path() == state::STATE_PATH {
            return self.serve_state(&request).await;
        }
        if request.uri().path() == HEALTH_PATH {
            let bypass = CacheStatus::forward(Forward::Bypass).with_detail("operator");
            return match self.operator_check(&request, "GET", "the health endpoint") {
                Ok(()) => (json_response(StatusCode::OK, &self.origin_report()), bypass),
                Err(err) => (err.to_response(), bypass.with_outcome(Outcome::Error)),
            };
        }
        // From here on the key, the asset store and the origin all see the
        // shaped URI: normalised path, keyed query (see `shaping`).
        if let Some(shaped) =
            shaping::shaped_uri(request.uri(), &self.config.cache_ignore_query_params)
        {
            *request.uri_mut() = shaped;
        }
        let method = request.method().clone();
        let readable = method == Method::GET || method == Method::HEAD;
        let host = forward::request_host(&request);
        let bypass_cookie = readable
            && shaping::has_matching_cookie(request.headers(), &self.config.bypass_cookies);
        let key = match &host {
            Some(host)
                if readable
                    && !bypass_cookie
                    && request.body().is_empty()
                    && body::streamed_request(&request).is_none() =>
            {
                Some(self.primary_key(host, request.uri(), request.headers()))
            }
            _ => None,
        };
        let directives = RequestDirectives::from_headers(request.headers());

        // A memory-tier entry was stored moments ago by this isolate, after the
        // asset store had said "not an asset": it may answer before that store
        // is asked again, which keeps the hottest hits free of subrequests.
        if let Some(key) = &key {
            if let Lookup::Found(entry) = self
                .lookup(key, request.headers(), Tiers::Memory, trace)
                .await
            {
                return self
                    .serve_stored(request, key.clone(), *entry, &directives, trace)
                    .await;
            }
        }

        // The asset store is asked once per path and isolate: its 404s are
        // remembered, so repeated origin paths skip that subrequest.
        if readable && !self.isolate.known_not_asset(request.uri().path()) {
            let stream_above = self.config.stream_bodies_above_bytes;
            match self.platform.assets().fetch(&request, stream_above).await {
                Ok(asset) if asset.status() != StatusCode::NOT_FOUND => {
                    let manifest = self.manifest(&request, trace).await;
                    let path = request.uri().path();
                    let rules = self
                        .config
                        .purge
                        .auto_tag_rules(&self.config.cache_ignore_query_params);
                    let tagging = host.as_deref().map(|host| edge_assets::PageTagging {
                        host,
                        uri: request.uri(),
                        rules,
                    });
                    let asset = edge_assets::decorate_asset(
                        path,
                        asset,
                        manifest.as_deref(),
                        &self.config.assets,
                        tagging,
                    );
                    return (asset, CacheStatus::asset());
                }
                Ok(mut not_found) => {
                    self.drop_stream(&mut not_found);
                    self.isolate.remember_not_asset(request.uri().path());
                }
                Err(e) => trace.warnings.push(format!("asset store failed: {e}")),
            }
        }

        let Some(host) = host else {
            let err = EdgeError::BadRequest("the request has no host".into());
            return (
                err.to_response(),
                CacheStatus::forward(Forward::Bypass).with_outcome(Outcome::Error),
            );
        };

        if bypass_cookie {
            // A logged-in user's request: neither read nor written (BYPASS_COOKIES).
            let (response, status) = self
                .forward_uncached(&request, Forward::Bypass, trace)
                .await;
            return (response, status.with_detail("bypass-cookie"));
        }
        if !readable {
            let (response, status) = self
                .forward_uncached(&request, Forward::Method, trace)
                .await;
            if is_unsafe(&method)
                && (response.status().is_success() || response.status().is_redirection())
            {
                self.invalidate(&request, &host, response.headers()).await;
            }
            return (response, status);
        }
        let Some(key) = key else {
            // A GET with a body may mean anything to the origin; never share its answer.
            let (response, status) = self
                .forward_uncached(&request, Forward::Bypass, trace)
                .await;
            return (response, status.with_detail("get-with-body"));
        };

        match self
            .lookup(&key, request.headers(), Tiers::All, trace)
            .await
        {
            Lookup::Found(entry) => {
                self.serve_stored(request, key, *entry, &directives, trace)
                    .await
            }
            Lookup::VaryMiss | Lookup::Miss if directives.only_if_cached => (
                EdgeError::NotCached.to_response(),
                CacheStatus::forward(Forward::UriMiss).with_outcome(Outcome::Error),
            ),
            Lookup::VaryMiss => {
                self.fetch(request, key, Forward::VaryMiss, None, trace)
                    .await
            }
            Lookup::Miss => {
                let fwd = if request.headers().contains_key(header::RANGE) {
                    Forward::Partial
                } else {
                    Forward::UriMiss
                };
                self.fetch(request, key, fwd, None, trace).await
            }
        }
    }

    /// Request fields in the key: `CACHE_KEY_HEADERS`, and `Origin` whenever a
    /// request has one (origins reflect it into CORS answers without `Vary`).
    fn key_headers(&self, headers: &http::HeaderMap) -> Vec<(String, String)> {
        let mut keyed: Vec<(String, String)> = self
            .config
            .cache_key_headers
            .iter()
            .map(|name| {
                let value = headers
                    .get_all(name.as_str())
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect::<Vec<_>>()
                    .join(",");
                (name.clone(), value)
            })
            .collect();
        let origin = header::ORIGIN.as_str();
        if !self.config.cache_key_headers.iter().any(|n| n == origin) {
            if let Some(value) = shaping::keyed_origin(headers) {
                keyed.push((origin.to_owned(), value));
            }
        }
        keyed
    }

    fn primary_key(&self, host: &str, uri: &Uri, headers: &http::HeaderMap) -> String {
        let keyed = self.key_headers(headers);
        let rules = KeyRules {
            namespace: &self.config.cache_namespace,
            ignored_params: &self.config.cache_ignore_query_params,
            headers: &keyed,
        };
        cache_key::primary_key(rules, host, uri)
    }

    /// Reads a key from the memory tier, then the Cache API (promoting hits).
    async fn read_tiers(
        &self,
        key: &str,
        tiers: Tiers,
        trace: &mut Trace,
    ) -> Option<(Response<Body>, EntryMeta, Tier)> {
        let now = self.now();
        if let Some(found) = self.isolate.hot.get(key, now) {
            if let Some((response, meta)) = stored::decode(found) {
                return Some((response, meta, Tier::Memory));
            }
        }
        if tiers == Tiers::Memory {
            return None;
        }
        // A body is read out of the Cache API only if the memory tier could
        // keep it; any other is handed to the client as the store's stream.
        let stream_above = self
            .config
            .stream_bodies_above_bytes
            .min(self.isolate.hot.max_entry_bytes());
        match self.platform.cache().get(key, stream_above).await {
            Ok(Some(found)) => {
                // A streamed body stays out of the memory tier (hot_cache skips it).
                self.isolate.hot.put(key, &found, now);
                let stream = body::streamed(&found);
                let (mut response, meta) = stored::decode(found)?;
                if let Some(mut stream) = stream {
                    stream.len = stream.len.or(meta.body_len);
                    if let Some(len) = stream.len {
                        response
                            .headers_mut()
                            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                    }
                    response.extensions_mut().insert(stream);
                }
                return Some((response, meta, Tier::Edge));
            }
            Ok(None) => {}
            Err(e) => trace.warnings.push(format!("cache read failed: {e}")),
        }
        if !self.kv_tier_on() {
            return None;
        }
        let bytes = match self.platform.global().get(&stored::short_key(key)).await {
            Ok(found) => found?,
            Err(e) => {
                trace.warnings.push(format!("KV tier read failed: {e}"));
                return None;
            }
        };
        let found = stored::from_bytes(key, &bytes)?;
        // Promote: this data centre and this isolate keep it from now on.
        self.isolate.hot.put(key, &found, now);
        let cache = self.platform.cache().clone();
        let (promoted_key, promoted) = (key.to_owned(), crate::copy_response(&found));
        self.platform.background().spawn(Box::pin(async move {
            let _ = cache.put(&promoted_key, promoted).await;
        }));
        stored::decode(found).map(|(response, meta)| (response, meta, Tier::Global))
    }

    fn kv_tier_on(&self) -> bool {
        self.config.kv_cache_max_object_bytes > 0 && self.platform.global().available()
    }

    async fn lookup(
        &self,
        key: &str,
        request_headers: &http::HeaderMap,
        tiers: Tiers,
        trace: &mut Trace,
    ) -> Lookup {
        let Some((response, meta, tier)) = self.read_tiers(key, tiers, trace).await else {
            return Lookup::Miss;
        };
        let Some(fields) = meta.vary_index.clone() else {
            return Lookup::Found(Box::new(StoredEntry {
                key: key.to_owned(),
                response,
                meta,
                tier,
            }));
        };
        let values = vary::variant_values(request_headers, &fields);
        let variant_key = vary::variant_key(key, &values);
        match self.read_tiers(&variant_key, tiers, trace).await {
            Some((response, meta, tier)) if meta.variant.as_ref() == Some(&values) => {
                Lookup::Found(Box::new(StoredEntry {
                    key: variant_key,
                    response,
                    meta,
                    tier,
                }))
            }
            _ => Lookup::VaryMiss,
        }
    }

    fn freshness(&self, entry_headers: &http::HeaderMap, meta: &EntryMeta) -> Freshness {
        Freshness::of(
            entry_headers,
            meta.initial_age_secs,
            meta.times(),
            self.now(),
            &self.config.policy_settings(),
        )
    }

    async fn serve_stored(
        &self,
        request: Request<Body>,
        key: String,
        entry: StoredEntry,
        directives: &RequestDirectives,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        let mut freshness = self.freshness(entry.response.headers(), &entry.meta);
        match self.purge_state(&entry.meta, trace).await {
            EntryState::Live => {}
            EntryState::SoftPurged => {
                // Usable only as stale: stale-while-revalidate / -if-error rules apply.
                freshness.age_secs = freshness.age_secs.max(freshness.lifetime_secs);
            }
            EntryState::HardPurged => {
                let (response, status) =
                    self.fetch(request, key, Forward::Stale, None, trace).await;
                return (response, status.with_detail("purged"));
            }
        }
        let ttl = freshness.ttl_secs();
        match policy::reuse(directives, &freshness) {
            Reuse::Fresh => {
                let status = CacheStatus::hit(ttl, entry.tier);
                (
                    self.client_view(&request, entry.response, Some(freshness.age_secs)),
                    status,
                )
            }
            Reuse::StaleAccepted => {
                let status = CacheStatus::stale_hit(ttl, "max-stale");
                (
                    self.client_view(&request, entry.response, Some(freshness.age_secs)),
                    status,
                )
            }
            Reuse::StaleWhileRevalidate if body::streamed(&entry.response).is_some() => {
                // The stream goes to the client; the refresh asks for a whole new
                // response (a 304 would have no body left to store again).
                let view = self.client_view(&request, entry.response, Some(freshness.age_secs));
                let entry_key = entry.key;
                self.refresh_in_background(&request, key, entry_key, None);
                (view, CacheStatus::stale_hit(ttl, "stale-while-revalidate"))
            }
            Reuse::StaleWhileRevalidate => {
                let view = self.client_view(
                    &request,
                    crate::copy_response(&entry.response),
                    Some(freshness.age_secs),
                );
                let entry_key = entry.key.clone();
                self.refresh_in_background(&request, key, entry_key, Some(entry));
                (view, CacheStatus::stale_hit(ttl, "stale-while-revalidate"))
            }
            Reuse::Revalidate if directives.only_if_cached => (
                EdgeError::NotCached.to_response(),
                CacheStatus::forward(Forward::Stale).with_outcome(Outcome::Error),
            ),
            Reuse::Revalidate => {
                let fwd = if freshness.is_fresh() && !freshness.no_cache {
                    Forward::Request
                } else {
                    Forward::Stale
                };
                self.fetch(request, key, fwd, Some(entry), trace).await
            }
        }
    }

    /// Refreshes a stale entry after the response is sent, once per key at a time.
    fn refresh_in_background(
        &self,
        request: &Request<Body>,
        key: String,
        entry_key: String,
        entry: Option<StoredEntry>,
    ) {
        let Some(claim) = RefreshClaim::take(&self.isolate.refreshing, &entry_key) else {
            return;
        };
        let mut refresh = Request::new(Body::new());
        *refresh.method_mut() = Method::GET;
        *refresh.uri_mut() = request.uri().clone();
        *refresh.headers_mut() = request.headers().clone();
        conditional::strip_client_conditionals(refresh.headers_mut());
        refresh.headers_mut().remove(header::RANGE);
        let this = self.clone();
        self.platform.background().spawn(Box::pin(async move {
            let mut trace = Trace::default();
            let (mut refreshed, _) = this
                .fetch(refresh, key, Forward::Stale, entry, &mut trace)
                .await;
            // Only the cache write matters; the client's branch is dropped.
            this.drop_stream(&mut refreshed);
            drop(claim);
        }));
    }

    /// Keeps an entry in the memory tier now, and in the Cache API (and, when
    /// small, the KV tier) after the response, for `retention_secs`.
    fn store(&self, key: String, encoded: Response<Body>, retention_secs: u64) {
        self.isolate.hot.put(&key, &encoded, self.now());
        let small = body::streamed(&encoded).is_none()
            && u64::try_from(encoded.body().len())
                .is_ok_and(|len| len <= self.config.kv_cache_max_object_bytes);
        let global = (self.kv_tier_on() && small).then(|| {
            (
                self.platform.global().clone(),
                stored::to_bytes(&key, &encoded),
            )
        });
        let cache = self.platform.cache().clone();
        self.platform.background().spawn(Box::pin(async move {
            // A failed write only costs a future miss.
            if let Some((global, bytes)) = global {
                let _ = global
                    .put(&stored::short_key(&key), bytes, retention_secs)
                    .await;
            }
            let _ = cache.put(&key, encoded).await;
        }));
    }

    /// Sends a request the cache does not answer (unsafe methods, GET with a body).
    async fn forward_uncached(
        &self,
        request: &Request<Body>,
        fwd: Forward,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        match self.send(request, |_| {}, trace).await {
            Ok(response) => {
                let status = CacheStatus::forward(fwd).with_fwd_status(response.status().as_u16());
                (response, status)
            }
            Err(err) => error_answer(err, fwd, trace),
        }
    }

    /// The asset build's manifest from the asset store, read on first use.
    /// Assets only change with a deploy, which starts new isolates.
    async fn manifest(&self, request: &Request<Body>, trace: &mut Trace) -> Option<Rc<Manifest>> {
        if let Some(loaded) = self.isolate.manifest.borrow().as_ref() {
            return loaded.clone();
        }
        let mut url = request.uri().clone().into_parts();
        url.path_and_query = self.config.assets.manifest_path.parse().ok();
        let mut fetch = Request::new(Body::new());
        if let Ok(uri) = Uri::from_parts(url) {
            *fetch.uri_mut() = uri;
        }
        // The manifest is parsed, so it is always read whole.
        let loaded = match self.platform.assets().fetch(&fetch, u64::MAX).await {
            Ok(response) if response.status() == StatusCode::OK => {
                match Manifest::from_json(response.body()) {
                    Ok(manifest) => Some(Rc::new(manifest)),
                    Err(e) => {
                        trace
                            .warnings
                            .push(format!("asset manifest unreadable: {e}"));
                        None
                    }
                }
            }
            Ok(_) => None,
            Err(e) => {
                trace
                    .warnings
                    .push(format!("asset manifest not loaded: {e}"));
                return None;
            }
        };
        *self.isolate.manifest.borrow_mut() = Some(loaded.clone());
        loaded
    }

    /// Whether an entry's tags (or its host, or everything) were purged after
    /// it was fetched. The registry is asked only when this isolate's answers
    /// are older than `PURGE_SYNC_MS`; if it cannot be reached, the memo says
    /// how far its old answers may still be trusted.
    async fn purge_state(&self, meta: &EntryMeta, trace: &mut Trace) -> EntryState {
        let keys = registry::registry_keys_for_entry(&meta.tags);
        let now = self.now();
        let refreshed = registry::refresh_memo(
            &self.isolate.memo,
            self.platform.registry(),
            &keys,
            self.config.purge.shards,
            now,
        )
        .await;
        if let Err(e) = refreshed {
            trace
                .warnings
                .push(format!("tag registry unreachable: {e}"));
        }
        let memo = self.isolate.memo.borrow();
        registry::entry_state(&keys, meta.request_time_ms, &memo.answers_at(now))
    }

    /// `POST /__cachefront/purge`: checks, records the purge in the registry,
    /// applies it to this isolate at once, and forwards it to Cloudflare in
    /// the background when configured.
    async fn serve_purge(
        &self,
        request: &Request<Body>,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        let host = forward::request_host(request).unwrap_or_default();
        let now = self.now();
        let context = PurgeContext {
            config: &self.config.purge,
            ignored_query_params: &self.config.cache_ignore_query_params,
            site_host: &host,
            now_ms: now,
        };
        let (response, outcome) = purge::serve_purge(
            request,
            self.platform.registry(),
            &self.isolate.purge_limiter,
            context,
        )
        .await;
        trace.purge = Some(purge::purge_log_fields(&outcome));
        let status = CacheStatus::forward(Forward::Bypass).with_detail("purge");
        let Ok(mut outcome) = outcome else {
            return (response, status.with_outcome(Outcome::Error));
        };
        if outcome.receipt.dry_run {
            // What this isolate's memory tier holds that the purge would reach.
            let keys = outcome
                .receipt
                .purged
                .registry_keys(&self.config.cache_ignore_query_params);
            let affected = self
                .isolate
                .hot
                .collect(stored::meta_of)
                .iter()
                .filter(|meta| purge::purge_hits_entry(&keys, &meta.tags))
                .count();
            outcome.receipt.local_entries_affected = u64::try_from(affected).ok();
            return (outcome.receipt.to_response(), status);
        }
        self.isolate.memo.borrow_mut().note_purge(
            &outcome.registry_keys,
            outcome.receipt.soft,
            now,
        );
        if self.config.warming.after_purge {
            let held = self.isolate.hot.collect(stored::meta_of);
            let scheme = request.uri().scheme_str().unwrap_or("https");
            let urls = warming::purged_urls(
                &held,
                &outcome.registry_keys,
                scheme,
                self.config.warming.max_urls,
            );
            if !urls.is_empty() {
                let this = self.clone();
                self.platform.background().spawn(Box::pin(async move {
                    this.warm(urls).await;
                }));
            }
        }
        if let (Some(zone), false) = (
            self.config.purge.cloudflare.clone(),
            outcome.cloudflare_calls.is_empty(),
        ) {
            let api = self.platform.cloudflare().clone();
            let clock = self.platform.clock().clone();
            let calls = outcome.cloudflare_calls;
            self.platform.background().spawn(Box::pin(async move {
                // The report is not surfaced yet: background work has no log
                // sink in the core (a failed call leaves the zone's copies to
                // expire by their TTL).
                let _report = cloudflare::forward(
                    &api,
                    &clock,
                    &zone,
                    cloudflare::API_BASE,
                    &calls,
                    cloudflare::RetryPolicy::default(),
                )
                .await;
            }));
        }
        (response, status)
    }

    /// `GET` / `PUT /__cachefront/state`: export and import (see `state`).
    async fn serve_state(&self, request: &Request<Body>) -> (Response<Body>, CacheStatus) {
        let context = state::StateContext {
            config: &self.config.purge,
            now_ms: self.now(),
        };
        let platform = &self.platform;
        let response =
            state::serve_state(request, platform.registry(), platform.health(), context).await;
        let status = CacheStatus::forward(Forward::Bypass).with_detail("state");
        if response.status().is_success() {
            (response, status)
        } else {
            (response, status.with_outcome(Outcome::Error))
        }
    }

    /// Fetches `urls` through the pipeline one after another, `WARM_INTERVAL_MS`
    /// apart, so each lands in the cache as a client's request would.
    pub async fn warm(&self, urls: Vec<String>) -> Vec<WarmResult> {
        let mut results = Vec::with_capacity(urls.len());
        for url in urls {
            // Paced, and never in the same millisecond as the purge that
            // asked for it (an entry fetched then would count as purged).
            self.platform
                .clock()
                .sleep(self.config.warming.interval_ms.max(1))
                .await;
            let Ok(uri) = url.parse::<Uri>() else {
                results.push(WarmResult {
                    url,
                    status: 0,
                    cache: "error",
                });
                continue;
            };
            let mut request = Request::new(Body::new());
            *request.uri_mut() = uri;
            request.headers_mut().insert(
                header::USER_AGENT,
                HeaderValue::from_static("cachefront-warmer"),
            );
            let mut handled = Box::pin(self.handle(request)).await;
            // Only the cache write matters; a streamed body is not read here.
            self.drop_stream(&mut handled.response);
            results.push(WarmResult {
                url,
                status: handled.log.status,
                cache: handled.log.cache,
            });
        }
        results
    }

    /// The cron trigger's warming: `WARM_URLS`, then the pages of `WARM_SITEMAP`,
    /// at most `WARM_MAX_URLS` in all.
    pub async fn warm_configured(&self) -> Vec<WarmResult> {
        let settings = &self.config.warming;
        let mut urls: Vec<String> = settings
            .urls
            .iter()
            .take(settings.max_urls)
            .cloned()
            .collect();
        if let Some(sitemap) = settings
            .sitemap
            .as_ref()
            .and_then(|s| s.parse::<Uri>().ok())
        {
            let mut request = Request::new(Body::new());
            *request.uri_mut() = sitemap;
            let mut handled = Box::pin(self.handle(request)).await;
            // A sitemap above STREAM_BODIES_ABOVE_BYTES is streamed, not parsed.
            self.drop_stream(&mut handled.response);
            if handled.response.status() == StatusCode::OK {
                let xml = String::from_utf8_lossy(handled.response.body());
                for url in warming::sitemap_urls(&xml, settings.max_urls) {
                    if urls.len() < settings.max_urls && !urls.contains(&url) {
                        urls.push(url);
                    }
                }
            }
        }
        self.warm(urls).await
    }

    /// Method and bearer-token checks of an operator endpoint.
    fn operator_check(
        &self,
        request: &Request<Body>,
        method: &'static str,
        what: &'static str,
    ) -> Result<(), EdgeError> {
        let Some(token) = self.config.purge.token.as_ref().map(|t| t.expose()) else {
            return Err(EdgeError::Disabled(what));
        };
        match auth::check_bearer(request.headers(), token) {
            TokenCheck::Valid => {}
            TokenCheck::Missing | TokenCheck::Malformed | TokenCheck::Invalid => {
                return Err(EdgeError::Unauthorized)
            }
        }
        if request.method().as_str() != method {
            return Err(EdgeError::MethodNotAllowed(method));
        }
        Ok(())
    }

    /// Reads the active health check's results when this isolate's copy is
    /// older than `HEALTH_SYNC_SECS` (one storage read per window, misses only).
    async fn sync_shared_health(&self, trace: &mut Trace) {
        let now = self.now();
        let window_ms = self.config.health_sync_secs.saturating_mul(1000);
        {
            let mut book = self.isolate.origins.borrow_mut();
            if book
                .shared_loaded_ms
                .is_some_and(|t| now.saturating_sub(t) < window_ms)
            {
                return;
            }
            // Claimed before the read, so concurrent requests do not all read.
            book.shared_loaded_ms = Some(now);
        }
        match self.platform.health().load().await {
            Ok(results) => {
                let mut book = self.isolate.origins.borrow_mut();
                for shared in &results {
                    if self.config.origins.iter().any(|o| o.name == shared.origin) {
                        book.health
                            .entry(shared.origin.clone())
                            .or_default()
                            .apply_shared(shared);
                    }
                }
                book.shared = results;
            }
            Err(e) => trace
                .warnings
                .push(format!("health store read failed: {e}")),
        }
    }

    fn record_health(&self, origin: &str, healthy: bool) {
        let now = self.now();
        let mut book = self.isolate.origins.borrow_mut();
        let health = book.health.entry(origin.to_owned()).or_default();
        if healthy {
            health.record_success(now);
        } else {
            health.record_failure(now, &self.config.health);
        }
    }

    /// The candidates for one request, in the order they will be tried.
    fn plan(&self, now: u64, path: &str) -> Vec<Candidate> {
        let mut book = self.isolate.origins.borrow_mut();
        let mut availability = Vec::with_capacity(self.config.origins.len());
        let mut last_failures = Vec::with_capacity(self.config.origins.len());
        for origin in &self.config.origins {
            let health = book.health.entry(origin.name.clone()).or_default();
            availability.push(health.availability(now, &self.config.health));
            last_failures.push(health.last_failure_ms);
        }
        let seed = now ^ tags::stable_hash(path.as_bytes());
        origin_pool::candidates(&self.config.origins, &availability, &last_failures, seed)
    }

    /// Sends `request` (after `adjust` edits its headers) to the origins in
    /// failover order: the next candidate is tried after a connection error,
    /// a timeout or a failure status, for methods that may be retried, within
    /// the attempt and time budgets. A request body is sent at most once for
    /// any other method.
    async fn send(
        &self,
        request: &Request<Body>,
        adjust: impl FnOnce(&mut http::HeaderMap),
        trace: &mut Trace,
    ) -> Result<Response<Body>, EdgeError> {
        let mut base = Request::new(request.body().clone());
        *base.method_mut() = request.method().clone();
        *base.uri_mut() = request.uri().clone();
        *base.headers_mut() = request.headers().clone();
        adjust(base.headers_mut());
        // A streamed upload can be sent once: it is not there for a retry.
        let upload = body::streamed_request(request);

        self.sync_shared_health(trace).await;
        let policy = &self.config.retry;
        let retryable = policy.may_retry(request.method()) && upload.is_none();
        let started = self.now();
        let plan = self.plan(started, request.uri().path());
        let mut failures = Vec::new();
        let mut failed_response: Option<(Response<Body>, String, u64)> = None;
        for (attempt, candidate) in plan.iter().enumerate() {
            let elapsed = self.now().saturating_sub(started);
            if attempt > 0
                && (!retryable || attempt >= policy.max_attempts || elapsed >= policy.deadline_ms)
            {
                break;
            }
            let origin = &self.config.origins[candidate.index];
            if candidate.availability == Availability::Probe {
                let now = self.now();
                let mut book = self.isolate.origins.borrow_mut();
                book.health
                    .entry(origin.name.clone())
                    .or_default()
                    .begin_probe(now);
            }
            let timeout_ms = origin
                .timeout_ms
                .min(policy.deadline_ms.saturating_sub(elapsed))
                .max(1);
            let rules = forward::ForwardRules {
                keyed: &self.config.cache_key_headers,
                extra: &self.config.forward_request_headers,
            };
            let mut origin_request = forward::origin_request(&base, origin, rules)?;
            if let Some(upload) = &upload {
                origin_request.extensions_mut().insert(upload.clone());
            }
            let sent_at = self.now();
            let result = self
                .platform
                .origin()
                .fetch(
                    origin,
                    origin_request,
                    timeout_ms,
                    self.config.stream_bodies_above_bytes,
                )
                .await;
            let took = self.now().saturating_sub(sent_at);
            match result {
                Ok(mut response) => {
                    forward::strip_hop_by_hop(response.headers_mut());
                    if let Ok(name) = HeaderValue::from_str(&origin.name) {
                        response.headers_mut().insert(ORIGIN_HEADER, name);
                    }
                    if policy.is_failure_status(response.status()) {
                        self.record_health(&origin.name, false);
                        let what = format!("status {}", response.status().as_u16());
                        trace
                            .failed_attempts
                            .push((origin.name.clone(), what, took));
                        if let Some((mut replaced, _, _)) =
                            failed_response.replace((response, origin.name.clone(), took))
                        {
                            self.drop_stream(&mut replaced);
                        }
                        continue;
                    }
                    self.record_health(&origin.name, true);
                    trace.origin = Some(origin.name.clone());
                    trace.origin_ms = Some(took);
                    return Ok(response);
                }
                Err(error) => {
                    self.record_health(&origin.name, false);
                    let what = match error {
                        OriginError::Connect(_) => "connect",
                        OriginError::Timeout(_) => "timeout",
                    };
                    trace
                        .failed_attempts
                        .push((origin.name.clone(), what.to_owned(), took));
                    trace.origin = Some(origin.name.clone());
                    failures.push(AttemptFailure {
                        origin: origin.name.clone(),
                        error,
                    });
                }
            }
        }
        if let Some((mut response, origin, took)) = failed_response {
            // Every candidate failed, and the last answer was an origin's own
            // error page: pass it on rather than inventing one, never to be stored.
            response.extensions_mut().insert(FailedOver);
            trace
                .failed_attempts
                .retain(|(name, _, ms)| !(name == &origin && *ms == took));
            trace.origin = Some(origin);
            trace.origin_ms = Some(took);
            return Ok(response);
        }
        Err(EdgeError::OriginsFailed { attempts: failures })
    }

    /// Probes every origin that has a health path, updates this isolate's
    /// view, and stores the results for every other isolate (the cron job).
    pub async fn check_origins(&self) -> Vec<SharedHealth> {
        let mut results = Vec::new();
        for origin in &self.config.origins {
            let Some(path) = &origin.health_path else {
                continue;
            };
            let probe = forward::health_probe(origin, path);
            let outcome = match probe {
                // Only the status matters: the body is left unread and dropped.
                Ok(request) => self
                    .platform
                    .origin()
                    .fetch(origin, request, origin.timeout_ms, 0)
                    .await
                    .map(|mut response| {
                        self.drop_stream(&mut response);
                        response
                    }),
                Err(e) => Err(OriginError::Connect(e.to_string())),
            };
            let (status, detail) = match &outcome {
                Ok(response) => (
                    Some(response.status().as_u16()),
                    response.status().as_u16().to_string(),
                ),
                Err(e) => (None, e.to_string()),
            };
            let result = SharedHealth {
                origin: origin.name.clone(),
                up: health::probe_is_healthy(status, origin.health_status),
                checked_ms: self.now(),
                detail,
            };
            // A failed probe marks the origin down at once (no threshold): it
            // is a deliberate check of the origin's own health endpoint.
            let mut book = self.isolate.origins.borrow_mut();
            book.health
                .entry(origin.name.clone())
                .or_default()
                .apply_shared(&result);
            drop(book);
            results.push(result);
        }
        self.isolate.origins.borrow_mut().shared = results.clone();
        if let Err(e) = self.platform.health().save(&results).await {
            results.push(SharedHealth {
                origin: String::new(),
                up: false,
                checked_ms: self.now(),
                detail: format!("saving results failed: {e}"),
            });
        }
        results
    }

    /// Each origin's state as this isolate sees it, for the health endpoint.
    pub fn origin_report(&self) -> serde_json::Value {
        let now = self.now();
        let mut book = self.isolate.origins.borrow_mut();
        let shared = book.shared.clone();
        let origins: Vec<serde_json::Value> = self
            .config
            .origins
            .iter()
            .map(|origin| {
                let health = book.health.entry(origin.name.clone()).or_default();
                let availability = health.availability(now, &self.config.health);
                let check = shared.iter().find(|s| s.origin == origin.name);
                serde_json::json!({
                    "name": origin.name,
                    "url": origin.url.as_str(),
                    "priority": origin.priority,
                    "weight": origin.weight,
                    "state": availability.as_str(),
                    "last_failure_ms": health.last_failure_ms,
                    "last_success_ms": health.last_success_ms,
                    "active_check": check.map(|c| serde_json::json!({"up": c.up, "checked_ms": c.checked_ms, "detail": c.detail})),
                })
            })
            .collect();
        serde_json::json!({ "origins": origins, "now_ms": now })
    }

    /// Fetches a cacheable request from the origin (revalidating `stale` when
    /// given), stores what may be stored, and shares the answer with requests
    /// for the same key that arrive meanwhile.
    async fn fetch(
        &self,
        request: Request<Body>,
        key: String,
        fwd: Forward,
        stale: Option<StoredEntry>,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        let is_get = request.method() == Method::GET;
        let is_range = request.headers().contains_key(header::RANGE);
        // Range misses go through as they are; their 206 is never stored.
        let coalescing = is_get && (!is_range || stale.is_some());
        let leader = if coalescing {
            match self.isolate.coalescer.join(&key) {
                Role::Leader(guard) => Some(guard),
                Role::Follower(waiter) => {
                    let deadline = self.now().saturating_add(COALESCE_MAX_WAIT_MS);
                    loop {
                        if let Some(outcome) = waiter.try_take() {
                            if let Some(shared) = outcome {
                                if let Some(answer) = self.answer_from_shared(&request, shared, fwd)
                                {
                                    return answer;
                                }
                            }
                            break;
                        }
                        if self.now() >= deadline {
                            trace
                                .warnings
                                .push("gave up waiting for a coalesced fetch".into());
                            break;
                        }
                        self.platform.clock().sleep(COALESCE_POLL_MS).await;
                    }
                    None
                }
            }
        } else {
            None
        };

        let stored_validators = stale.as_ref().map(|e| e.response.headers().clone());
        let request_time = self.now();
        let result = self
            .send(
                &request,
                |headers| match &stored_validators {
                    Some(validators) => {
                        conditional::add_revalidation_headers(headers, validators);
                        headers.remove(header::RANGE);
                    }
                    None if is_get && !is_range => conditional::strip_client_conditionals(headers),
                    None => {}
                },
                trace,
            )
            .await;
        let times = ResponseTimes {
            request_time_ms: request_time,
            response_time_ms: self.now(),
        };
        let directives = RequestDirectives::from_headers(request.headers());

        let response = match result {
            Ok(response) => response,
            Err(err) => {
                // No origin answered at all: the cache is disconnected.
                if let Some(entry) = stale {
                    let freshness = self.freshness(entry.response.headers(), &entry.meta);
                    if policy::may_serve_stale_when_disconnected(&directives, &freshness) {
                        trace.warnings.push(err.to_string());
                        let detail = if policy::may_serve_stale_on_error(&directives, &freshness) {
                            "stale-if-error"
                        } else {
                            "stale-if-disconnected"
                        };
                        return self.serve_stale_on_error(&request, entry, fwd, None, detail);
                    }
                }
                return error_answer(err, fwd, trace);
            }
        };

        if let Some(entry) = stale {
            if response.status() == StatusCode::NOT_MODIFIED
                && conditional::revalidation_matches(response.headers(), entry.response.headers())
            {
                let (answer, encoded) = self.revalidated(&request, entry, &response, times, fwd);
                if let Some(guard) = leader {
                    guard.finish(encoded.as_ref());
                }
                return answer;
            }
            if policy::is_error_status(response.status()) {
                let freshness = self.freshness(entry.response.headers(), &entry.meta);
                if policy::may_serve_stale_on_error(&directives, &freshness) {
                    let mut error_page = response;
                    self.drop_stream(&mut error_page);
                    return self.serve_stale_on_error(
                        &request,
                        entry,
                        fwd,
                        Some(error_page.status().as_u16()),
                        "stale-if-error",
                    );
                }
            }
            // A new full response replaces the entry; its stream is not needed.
            let mut old = entry.response;
            self.drop_stream(&mut old);
        }
        if body::streamed(&response).is_some()
            && self.config.assets.html_rewrite
            && edge_assets::is_html(response.headers())
        {
            trace.warnings.push(format!(
                "HTML above STREAM_BODIES_ABOVE_BYTES ({} bytes) streamed without rewriting",
                self.config.stream_bodies_above_bytes
            ));
        }
        let response = if edge_assets::should_rewrite(&response, &self.config.assets) {
            let manifest = self.manifest(&request, trace).await;
            let page = request.uri().path().to_owned();
            let (rewritten, outcome) = edge_assets::rewrite_origin_html(
                response,
                &page,
                manifest.as_deref(),
                &self.config.assets,
            );
            if let HtmlOutcome::Kept(why) = outcome {
                trace
                    .warnings
                    .push(format!("HTML served as the origin sent it: {why}"));
            }
            rewritten
        } else {
            response
        };
        let (response, minified) =
            edge_assets::minify_origin_script(response, request.uri().path(), &self.config.assets);
        if let MinifyOutcome::Skipped { detail, .. } = minified {
            if !detail.is_empty() {
                trace
                    .warnings
                    .push(format!("script or stylesheet served as sent: {detail}"));
            }
        }
        let (answer, encoded) = self.take_response(&request, key, response, times, fwd, trace);
        if let Some(guard) = leader {
            guard.finish(encoded.as_ref());
        }
        answer
    }

    /// A follower's answer from the leader's stored-form response, if it fits this request.
    fn answer_from_shared(
        &self,
        request: &Request<Body>,
        shared: Response<Body>,
        fwd: Forward,
    ) -> Option<(Response<Body>, CacheStatus)> {
        let (response, meta) = stored::decode(shared)?;
        if let Some(values) = &meta.variant {
            let fields: Vec<String> = values.iter().map(|(f, _)| f.clone()).collect();
            if &vary::variant_values(request.headers(), &fields) != values {
                return None;
            }
        }
        let status = response.status().as_u16();
        let freshness = self.freshness(response.headers(), &meta);
        // The waiter's own request decides whether a shared answer may serve
        // it, exactly as for a stored one (e.g. `no-cache` or `max-age=0`).
        let directives = RequestDirectives::from_headers(request.headers());
        if policy::reuse(&directives, &freshness) != Reuse::Fresh {
            return None;
        }
        let view = self.client_view(request, response, None);
        let status = CacheStatus::forward(fwd)
            .with_fwd_status(status)
            .with_ttl(freshness.ttl_secs())
            .with_collapsed(true);
        Some((view, status))
    }

    fn serve_stale_on_error(
        &self,
        request: &Request<Body>,
        entry: StoredEntry,
        fwd: Forward,
        fwd_status: Option<u16>,
        detail: &'static str,
    ) -> (Response<Body>, CacheStatus) {
        let freshness = self.freshness(entry.response.headers(), &entry.meta);
        let mut status = CacheStatus::forward(fwd)
            .with_outcome(Outcome::Stale)
            .with_ttl(freshness.ttl_secs())
            .with_detail(detail);
        status.fwd_status = fwd_status;
        (
            self.client_view(request, entry.response, Some(freshness.age_secs)),
            status,
        )
    }

    /// Folds a 304 into the stored entry and serves it. The merged response
    /// goes through the same store decision as a new 200: if the 304 made it
    /// unstorable (`no-store`, `private`, a different `Vary`…), it is served
    /// once and the old entry is dropped.
    fn revalidated(
        &self,
        request: &Request<Body>,
        entry: StoredEntry,
        not_modified: &Response<Body>,
        times: ResponseTimes,
        fwd: Forward,
    ) -> ((Response<Body>, CacheStatus), Option<Response<Body>>) {
        let mut response = entry.response;
        conditional::merge_not_modified(response.headers_mut(), not_modified.headers());
        let mut meta = EntryMeta::new(
            times,
            policy::corrected_initial_age(not_modified.headers(), times),
        );
        meta.variant = entry.meta.variant;
        meta.tags = entry.meta.tags;
        meta.body_len = entry.meta.body_len;
        let freshness = self.freshness(response.headers(), &meta);
        let status = CacheStatus::forward(fwd)
            .with_outcome(Outcome::Revalidated)
            .with_fwd_status(304)
            .with_ttl(freshness.ttl_secs());
        if let Some(reason) = self.merged_not_storable(request, &response, &meta) {
            // A response that says no more (`no-store`, `private`, new `Vary`)
            // takes the old entry with it; a credentialed request only leaves
            // it as it was (its 304 may carry per-user fields).
            if !matches!(reason, NoStoreReason::Authorization | NoStoreReason::Cookie) {
                self.forget(&entry.key);
            }
            let view = self.client_view(request, response, Some(freshness.age_secs));
            return ((view, status.with_detail(reason.as_str())), None);
        }
        let stream = body::unmark(&mut response);
        let retention = freshness.retention_secs(true, self.config.revalidation_window_secs);
        let mut encoded = stored::encode(&response, meta, retention);
        let shared = match stream {
            Some(stream) => {
                // The stored body goes both to the client and back into the store.
                let (to_client, to_store) = self.platform.streams().tee(stream);
                body::mark(&mut response, to_client);
                body::mark(&mut encoded, to_store);
                self.store(entry.key, encoded, retention);
                None
            }
            None => {
                self.store(entry.key, crate::copy_response(&encoded), retention);
                Some(encoded)
            }
        };
        (
            (
                self.client_view(request, response, Some(freshness.age_secs)),
                status.with_stored(true),
            ),
            shared,
        )
    }

    /// Why a stored response updated by a 304 may no longer be stored: the
    /// store decision says no, or its `Vary` no longer matches the entry's.
    fn merged_not_storable(
        &self,
        request: &Request<Body>,
        merged: &Response<Body>,
        meta: &EntryMeta,
    ) -> Option<NoStoreReason> {
        let facts = RequestFacts {
            method: &Method::GET,
            headers: request.headers(),
        };
        let decision = policy::store_decision(
            facts,
            merged.status(),
            merged.headers(),
            meta.body_len,
            &self.config.policy_settings(),
        );
        if let StoreDecision::Skip(reason) = decision {
            return Some(reason);
        }
        let vary_fields = policy::vary_fields(merged.headers());
        let stored_fields: Vec<String> = meta
            .variant
            .iter()
            .flatten()
            .map(|(field, _)| field.clone())
            .collect();
        (vary_fields != stored_fields).then_some(NoStoreReason::VaryChanged)
    }

    /// Drops an entry from every tier: the memory tier now, the others after
    /// the response.
    fn forget(&self, key: &str) {
        self.isolate.hot.remove_where(|k| k == key);
        let cache = self.platform.cache().clone();
        let global = self.kv_tier_on().then(|| self.platform.global().clone());
        let key = key.to_owned();
        self.platform.background().spawn(Box::pin(async move {
            let _ = cache.delete(&key).await;
            if let Some(global) = global {
                let _ = global.delete(&stored::short_key(&key)).await;
            }
        }));
    }

    /// A response as this client should see it: a 304 for a satisfied
    /// conditional, a 206 for a range of a full response, no body for HEAD, and
    /// the current `Age` for stored responses. A streamed body is cut or
    /// dropped through the platform, never read.
    fn client_view(
        &self,
        request: &Request<Body>,
        mut response: Response<Body>,
        age_secs: Option<u64>,
    ) -> Response<Body> {
        if let Some(age) = age_secs {
            if let Ok(value) = HeaderValue::from_str(&age.to_string()) {
                response.headers_mut().insert(header::AGE, value);
            }
        }
        let success = response.status().is_success();
        if success
            && conditional::is_conditional(request.headers())
            && conditional::not_modified(request.headers(), response.headers())
        {
            self.drop_stream(&mut response);
            let mut not_modified = conditional::not_modified_response(&response);
            if let Some(age) = response.headers().get(header::AGE) {
                not_modified.headers_mut().insert(header::AGE, age.clone());
            }
            if let Some(origin) = response.headers().get(ORIGIN_HEADER) {
                not_modified
                    .headers_mut()
                    .insert(ORIGIN_HEADER, origin.clone());
            }
            return not_modified;
        }
        if request.method() == Method::HEAD {
            self.drop_stream(&mut response);
            *response.body_mut() = Body::new();
            return response;
        }
        if request.method() == Method::GET && response.status() == StatusCode::OK {
            response = match body::streamed(&response) {
                None => range::apply(request.headers(), response),
                Some(stream) => self.stream_range(request.headers(), response, stream),
            };
        }
        response
    }

    /// Applies a client's `Range` to a full 200 whose body is streamed. A body
    /// of unknown length is served whole (RFC 9110 lets a server ignore Range).
    fn stream_range(
        &self,
        request: &http::HeaderMap,
        response: Response<Body>,
        stream: Streamed,
    ) -> Response<Body> {
        let Some(len) = stream.len else {
            return response;
        };
        let answer = range::requested(request, response.status(), response.headers(), len);
        let (mut parts, _) = response.into_parts();
        match answer {
            range::RangeAnswer::Full => Response::from_parts(parts, Body::new()),
            range::RangeAnswer::Partial { start, end } => {
                range::to_partial(&mut parts, start, end, len);
                let piece = self.platform.streams().slice(stream, start, end + 1);
                let mut out = Response::from_parts(parts, Body::new());
                body::mark(
                    &mut out,
                    Streamed {
                        len: Some(end + 1 - start),
                        ..piece
                    },
                );
                out
            }
            range::RangeAnswer::Unsatisfiable => {
                parts.extensions.remove::<Streamed>();
                self.platform.streams().cancel(stream);
                range::to_unsatisfiable(&mut parts, len);
                Response::from_parts(parts, Body::new())
            }
        }
    }

    /// Drops the streamed body of a response that will not be sent whole.
    fn drop_stream(&self, response: &mut Response<Body>) {
        if let Some(stream) = body::unmark(response) {
            self.platform.streams().cancel(stream);
        }
    }

    /// Stores a fresh origin response when allowed and serves it. Returns the
    /// stored form too, for requests waiting on the same key.
    fn take_response(
        &self,
        request: &Request<Body>,
        key: String,
        response: Response<Body>,
        times: ResponseTimes,
        fwd: Forward,
        trace: &mut Trace,
    ) -> ((Response<Body>, CacheStatus), Option<Response<Body>>) {
        let fwd_status = response.status().as_u16();
        let status = CacheStatus::forward(fwd).with_fwd_status(fwd_status);
        if response.status() == StatusCode::PARTIAL_CONTENT {
            return (
                (
                    response,
                    status.with_detail(NoStoreReason::Partial.as_str()),
                ),
                None,
            );
        }
        let facts = RequestFacts {
            method: request.method(),
            headers: request.headers(),
        };
        let stream = body::streamed(&response);
        let body_len = match &stream {
            Some(stream) => stream.len,
            None => u64::try_from(response.body().len()).ok(),
        };
        let decision = match policy::store_decision(
            facts,
            response.status(),
            response.headers(),
            body_len,
            &self.config.policy_settings(),
        ) {
            _ if response.extensions().get::<FailedOver>().is_some() => {
                StoreDecision::Skip(NoStoreReason::ErrorStatus)
            }
            // A stream of unknown length might outgrow CACHE_MAX_OBJECT_BYTES.
            StoreDecision::Store { .. } if stream.is_some() && body_len.is_none() => {
                StoreDecision::Skip(NoStoreReason::UnknownLength)
            }
            decision => decision,
        };
        let strip_fields = match decision {
            StoreDecision::Store { strip_fields } => strip_fields,
            StoreDecision::Skip(reason) => {
                let status = if reason == NoStoreReason::Method {
                    status
                } else {
                    status.with_detail(reason.as_str())
                };
                return ((self.client_view(request, response, None), status), None);
            }
        };

        let mut stored_copy = crate::copy_response(&response);
        for field in &strip_fields {
            if let Ok(name) = HeaderName::from_bytes(field.as_bytes()) {
                stored_copy.headers_mut().remove(name);
            }
        }
        let mut meta = EntryMeta::new(
            times,
            policy::corrected_initial_age(response.headers(), times),
        );
        let host = forward::request_host(request).unwrap_or_default();
        let rules = self
            .config
            .purge
            .auto_tag_rules(&self.config.cache_ignore_query_params);
        let tagged = tags::entry_tags(response.headers(), &host, request.uri(), rules);
        if tagged.dropped_total > 0 {
            let dropped: Vec<String> = tagged
                .dropped
                .iter()
                .map(|d| format!("{} ({})", d.tag, d.reason.as_str()))
                .collect();
            trace.warnings.push(format!(
                "{} cache tags dropped: {}",
                tagged.dropped_total,
                dropped.join(", ")
            ));
        }
        meta.tags = tagged.tags;
        meta.body_len = body_len;
        let vary_fields = policy::vary_fields(response.headers());
        let freshness = self.freshness(stored_copy.headers(), &meta);
        let retention = freshness.retention_secs(
            policy::has_validators(response.headers()),
            self.config.revalidation_window_secs,
        );
        let entry_key = if vary_fields.is_empty() {
            key
        } else {
            let values = vary::variant_values(request.headers(), &vary_fields);
            let variant_key = vary::variant_key(&key, &values);
            meta.variant = Some(values);
            self.store(
                key,
                stored::vary_index(vary_fields, times, retention),
                retention,
            );
            variant_key
        };
        let status = status.with_stored(true);
        if let Some(stream) = stream {
            // One branch to the client, one to the Cache API; no one else can
            // share a stream, so waiting requests fetch for themselves.
            let (to_client, to_store) = self.platform.streams().tee(stream);
            let mut response = response;
            body::mark(&mut response, to_client);
            let mut encoded = stored::encode(&stored_copy, meta, retention);
            body::mark(&mut encoded, to_store);
            self.store(entry_key, encoded, retention);
            return ((self.client_view(request, response, None), status), None);
        }
        let encoded = stored::encode(&stored_copy, meta, retention);
        self.store(entry_key, crate::copy_response(&encoded), retention);
        (
            (self.client_view(request, response, None), status),
            Some(encoded),
        )
    }

    /// Removes the entries an unsafe request may have changed (RFC 9111 §4.4):
    /// its target URI and same-host `Location`/`Content-Location`.
    async fn invalidate(
        &self,
        request: &Request<Body>,
        host: &str,
        response_headers: &http::HeaderMap,
    ) {
        let mut targets = vec![request.uri().clone()];
        let base = url::Url::parse(&request.uri().to_string())
            .or_else(|_| url::Url::parse(&format!("https://{host}{}", request.uri())));
        if let Ok(base) = base {
            for name in [header::LOCATION, header::CONTENT_LOCATION] {
                let Some(value) = response_headers.get(name).and_then(|v| v.to_str().ok()) else {
                    continue;
                };
                let Ok(resolved) = base.join(value) else {
                    continue;
                };
                if resolved.host_str() == base.host_str()
                    && resolved.port_or_known_default() == base.port_or_known_default()
                {
                    if let Ok(uri) = resolved.as_str().parse::<Uri>() {
                        targets.push(uri);
                    }
                }
            }
        }
        for uri in targets {
            let key = self.primary_key(host, &uri, request.headers());
            self.isolate
                .hot
                .remove_where(|k| vary::is_key_or_variant(k, &key));
            // Variants hang off the primary key's Vary index: removing it is enough.
            let _ = self.platform.cache().delete(&key).await;
            if self.kv_tier_on() {
                let _ = self
                    .platform
                    .global()
                    .delete(&stored::short_key(&key))
                    .await;
            }
        }
    }
}

fn error_answer(err: EdgeError, fwd: Forward, trace: &mut Trace) -> (Response<Body>, CacheStatus) {
    trace.warnings.push(err.to_string());
    let status = CacheStatus::forward(fwd)
        .with_outcome(Outcome::Error)
        .with_detail(err.code());
    (err.to_response(), status)
}
