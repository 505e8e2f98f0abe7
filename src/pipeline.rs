//! The request pipeline: static assets, then the cache tiers, then the origin.
//! Plain Rust over `http` types, generic over the [`Platform`]; it reads time
//! only through the platform clock and does I/O only through platform traits.
//! Every cache decision is delegated to the pure modules (`policy`,
//! `conditional`, `range`, `vary`); this module only sequences them.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use http::header::{self, HeaderName};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use serde::Serialize;

use crate::cache_key::{self, KeyRules};
use crate::cache_status::{CacheStatus, Forward, NoStoreReason, Outcome, Tier};
use crate::coalesce::{Coalescer, Role};
use crate::conditional;
use crate::config::{Config, ConfigError};
use crate::error::EdgeError;
use crate::forward;
use crate::hot_cache::HotCache;
use crate::platform::{Background, CacheStore, Clock, OriginFetch, Platform, StaticAssets};
use crate::policy::{
    self, Freshness, RequestDirectives, RequestFacts, ResponseTimes, Reuse, StoreDecision,
};
use crate::range;
use crate::server_timing::{self, Metric};
use crate::stored::{self, EntryMeta};
use crate::vary;
use crate::Body;

/// How often a coalesced request checks whether the leader has finished.
const COALESCE_POLL_MS: u64 = 5;
/// How long it waits for the leader before fetching by itself.
const COALESCE_MAX_WAIT_MS: u64 = 30_000;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_ms: Option<u64>,
    pub edge_ms: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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
    origin: Option<String>,
    origin_ms: Option<u64>,
    warnings: Vec<String>,
}

/// State that lives as long as the isolate and is shared by its requests.
#[derive(Clone)]
pub struct IsolateState {
    pub hot: HotCache,
    pub coalescer: Coalescer,
    /// Keys being refreshed in the background, so each is refreshed once.
    refreshing: Rc<RefCell<HashSet<String>>>,
}

impl IsolateState {
    pub fn new(config: &Config) -> Self {
        Self {
            hot: HotCache::new(config.memory_cache_bytes, config.memory_cache_max_secs),
            coalescer: Coalescer::default(),
            refreshing: Rc::default(),
        }
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
            origin: None,
            origin_ms: None,
            edge_ms: 0,
            warnings: vec![error.to_string()],
        },
        response,
    }
}

fn copy_response(response: &Response<Body>) -> Response<Body> {
    let mut out = Response::new(response.body().clone());
    *out.status_mut() = response.status();
    *out.headers_mut() = response.headers().clone();
    out
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

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn platform(&self) -> &P {
        &self.platform
    }

    pub fn isolate(&self) -> &IsolateState {
        &self.isolate
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
        status.apply(headers);
        let mut timings = vec![Metric::new("cachefront", edge_ms).with_desc(status.outcome())];
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
                origin: trace.origin,
                origin_ms: trace.origin_ms,
                edge_ms,
                warnings: trace.warnings,
            },
            response,
        }
    }

    async fn serve(
        &self,
        request: Request<Body>,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        let method = request.method().clone();
        let readable = method == Method::GET || method == Method::HEAD;
        let host = forward::request_host(&request);
        let key = match &host {
            Some(host) if readable && request.body().is_empty() => {
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

        if readable {
            match self.platform.assets().fetch(&request).await {
                Ok(asset) if asset.status() != StatusCode::NOT_FOUND => {
                    return (asset, CacheStatus::asset())
                }
                Ok(_) => {}
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

    fn key_headers(&self, headers: &http::HeaderMap) -> Vec<(String, String)> {
        self.config
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
            .collect()
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
        match self.platform.cache().get(key).await {
            Ok(Some(found)) => {
                self.isolate.hot.put(key, &found, now);
                stored::decode(found).map(|(response, meta)| (response, meta, Tier::Edge))
            }
            Ok(None) => None,
            Err(e) => {
                trace.warnings.push(format!("cache read failed: {e}"));
                None
            }
        }
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
        let freshness = self.freshness(entry.response.headers(), &entry.meta);
        let ttl = freshness.ttl_secs();
        match policy::reuse(directives, &freshness) {
            Reuse::Fresh => {
                let status = CacheStatus::hit(ttl, entry.tier);
                (
                    client_view(&request, entry.response, Some(freshness.age_secs)),
                    status,
                )
            }
            Reuse::StaleAccepted => {
                let status = CacheStatus::stale_hit(ttl, "max-stale");
                (
                    client_view(&request, entry.response, Some(freshness.age_secs)),
                    status,
                )
            }
            Reuse::StaleWhileRevalidate => {
                let view = client_view(
                    &request,
                    copy_response(&entry.response),
                    Some(freshness.age_secs),
                );
                self.refresh_in_background(&request, key, entry);
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
    fn refresh_in_background(&self, request: &Request<Body>, key: String, entry: StoredEntry) {
        if !self
            .isolate
            .refreshing
            .borrow_mut()
            .insert(entry.key.clone())
        {
            return;
        }
        let mut refresh = Request::new(Body::new());
        *refresh.method_mut() = Method::GET;
        *refresh.uri_mut() = request.uri().clone();
        *refresh.headers_mut() = request.headers().clone();
        conditional::strip_client_conditionals(refresh.headers_mut());
        refresh.headers_mut().remove(header::RANGE);
        let this = self.clone();
        self.platform.background().spawn(Box::pin(async move {
            let entry_key = entry.key.clone();
            let mut trace = Trace::default();
            let _ = this
                .fetch(refresh, key, Forward::Stale, Some(entry), &mut trace)
                .await;
            this.isolate.refreshing.borrow_mut().remove(&entry_key);
        }));
    }

    /// Keeps an entry in the memory tier now and in the Cache API after the response.
    fn store(&self, key: String, encoded: Response<Body>) {
        self.isolate.hot.put(&key, &encoded, self.now());
        let cache = self.platform.cache().clone();
        self.platform.background().spawn(Box::pin(async move {
            // A failed write only costs a future miss.
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

    /// Sends `request` to the primary origin after `adjust` edits its headers.
    async fn send(
        &self,
        request: &Request<Body>,
        adjust: impl FnOnce(&mut http::HeaderMap),
        trace: &mut Trace,
    ) -> Result<Response<Body>, EdgeError> {
        let origin = self.config.primary_origin();
        trace.origin = Some(origin.name.clone());
        let mut origin_request =
            forward::origin_request(request, origin, &self.config.cache_key_headers)?;
        adjust(origin_request.headers_mut());
        let sent_at = self.now();
        let result = self.platform.origin().fetch(origin, origin_request).await;
        trace.origin_ms = Some(self.now().saturating_sub(sent_at));
        let mut response = result.map_err(|e| EdgeError::from_origin(&origin.name, e))?;
        forward::strip_hop_by_hop(response.headers_mut());
        if let Ok(name) = HeaderValue::from_str(&origin.name) {
            response.headers_mut().insert(ORIGIN_HEADER, name);
        }
        Ok(response)
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
                if let Some(entry) = stale {
                    let freshness = self.freshness(entry.response.headers(), &entry.meta);
                    if policy::may_serve_stale_on_error(&directives, &freshness) {
                        trace.warnings.push(err.to_string());
                        return self.serve_stale_on_error(&request, entry, fwd, None);
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
                    guard.finish(Some(&encoded));
                }
                return answer;
            }
            if policy::is_error_status(response.status()) {
                let freshness = self.freshness(entry.response.headers(), &entry.meta);
                if policy::may_serve_stale_on_error(&directives, &freshness) {
                    return self.serve_stale_on_error(
                        &request,
                        entry,
                        fwd,
                        Some(response.status().as_u16()),
                    );
                }
            }
        }

        let (answer, encoded) = self.take_response(&request, key, response, times, fwd);
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
        let view = client_view(request, response, None);
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
    ) -> (Response<Body>, CacheStatus) {
        let freshness = self.freshness(entry.response.headers(), &entry.meta);
        let mut status = CacheStatus::forward(fwd)
            .with_outcome(Outcome::Stale)
            .with_ttl(freshness.ttl_secs())
            .with_detail("stale-if-error");
        status.fwd_status = fwd_status;
        (
            client_view(request, entry.response, Some(freshness.age_secs)),
            status,
        )
    }

    /// Folds a 304 into the stored entry, stores it again and serves it.
    fn revalidated(
        &self,
        request: &Request<Body>,
        entry: StoredEntry,
        not_modified: &Response<Body>,
        times: ResponseTimes,
        fwd: Forward,
    ) -> ((Response<Body>, CacheStatus), Response<Body>) {
        let mut response = entry.response;
        conditional::merge_not_modified(response.headers_mut(), not_modified.headers());
        let mut meta = EntryMeta::new(
            times,
            policy::corrected_initial_age(not_modified.headers(), times),
        );
        meta.variant = entry.meta.variant;
        let freshness = self.freshness(response.headers(), &meta);
        let retention = freshness.retention_secs(true, self.config.revalidation_window_secs);
        let encoded = stored::encode(&response, meta, retention);
        self.store(entry.key, copy_response(&encoded));
        let status = CacheStatus::forward(fwd)
            .with_outcome(Outcome::Revalidated)
            .with_fwd_status(304)
            .with_ttl(freshness.ttl_secs())
            .with_stored(true);
        (
            (
                client_view(request, response, Some(freshness.age_secs)),
                status,
            ),
            encoded,
        )
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
        let body_len = u64::try_from(response.body().len()).ok();
        let decision = policy::store_decision(
            facts,
            response.status(),
            response.headers(),
            body_len,
            &self.config.policy_settings(),
        );
        let strip_fields = match decision {
            StoreDecision::Store { strip_fields } => strip_fields,
            StoreDecision::Skip(reason) => {
                let status = if reason == NoStoreReason::Method {
                    status
                } else {
                    status.with_detail(reason.as_str())
                };
                return ((client_view(request, response, None), status), None);
            }
        };

        let mut stored_copy = copy_response(&response);
        for field in &strip_fields {
            if let Ok(name) = HeaderName::from_bytes(field.as_bytes()) {
                stored_copy.headers_mut().remove(name);
            }
        }
        let mut meta = EntryMeta::new(
            times,
            policy::corrected_initial_age(response.headers(), times),
        );
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
            self.store(key, stored::vary_index(vary_fields, times, retention));
            variant_key
        };
        let encoded = stored::encode(&stored_copy, meta, retention);
        self.store(entry_key, copy_response(&encoded));
        let status = status.with_stored(true);
        (
            (client_view(request, response, None), status),
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

/// A response as this client should see it: a 304 for a satisfied
/// conditional, a 206 for a range of a full response, no body for HEAD, and
/// the current `Age` for stored responses.
fn client_view(
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
    if request.method() == Method::GET && response.status() == StatusCode::OK {
        response = range::apply(request.headers(), response);
    }
    if request.method() == Method::HEAD {
        *response.body_mut() = Body::new();
    }
    response
}
