//! Writing and dropping entries: the store decision for an origin answer,
//! the 304 merge, writes to every tier, and the invalidation that unsafe
//! methods cause.

use http::header::{self, HeaderName};
use http::{Method, Request, Response, StatusCode, Uri};

use crate::cache::stored::{self, EntryMeta};
use crate::origin::request::{forwarded_view, request_host};
use crate::platform::body;
use crate::platform::{Background, BodyStreams, CacheStore, GlobalStore, Platform};
use crate::purge::tags;
use crate::semantics::cache_status::{CacheStatus, Forward, NoStoreReason, Outcome};
use crate::semantics::conditional;
use crate::semantics::policy::{self, EdgeTerms, RequestFacts, ResponseTimes, StoreDecision};
use crate::semantics::reflection;
use crate::semantics::vary;
use crate::Body;

use super::lookup::StoredEntry;
use super::origin::FailedOver;
use super::rules::{rule_of, PreviousEntry};
use super::{Pipeline, Trace};

/// The Vary index generation a request's new variant joins (set when the
/// lookup found an index, or from the stale variant being refreshed).
#[derive(Debug, Clone, Copy)]
pub(super) struct VaryGeneration(pub(super) u64);

/// Files the variant a request stores under `generation`, when its index has one.
pub(super) fn join_vary_generation(request: &mut Request<Body>, generation: Option<u64>) {
    if let Some(generation) = generation {
        request.extensions_mut().insert(VaryGeneration(generation));
    }
}

impl<P: Platform + Clone + 'static> Pipeline<P> {
    /// Keeps an entry in the memory tier now, and in the Cache API (and, when
    /// small, the KV tier) after the response, for `retention_secs`.
    pub(super) fn store(&self, key: String, encoded: Response<Body>, retention_secs: u64) {
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

    /// Folds a 304 into the stored entry and serves it. The merged response
    /// goes through the same store decision as a new 200: if the 304 made it
    /// unstorable (`no-store`, `private`, a different `Vary`…), it is served
    /// once and the old entry is dropped.
    pub(super) fn serve_revalidated(
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
        // A 304 says the entry is unchanged: an adaptive TTL grows.
        let previous = entry
            .meta
            .rule
            .map(|terms| PreviousEntry { terms, etag: None });
        let (terms, kept) = self.edge_terms(
            request,
            response.status(),
            response.headers(),
            None,
            previous.as_ref(),
            true,
        );
        meta.rule = kept;
        let freshness = self.freshness(response.headers(), &meta);
        let status = CacheStatus::forward(fwd)
            .with_outcome(Outcome::Revalidated)
            .with_fwd_status(304)
            .with_ttl(freshness.ttl_secs());
        if let Some(reason) = self.merged_not_storable(request, &response, &meta, &terms) {
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
    pub(super) fn merged_not_storable(
        &self,
        request: &Request<Body>,
        merged: &Response<Body>,
        meta: &EntryMeta,
        terms: &EdgeTerms,
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
            terms,
        );
        if let StoreDecision::Skip(reason) = decision {
            return Some(reason);
        }
        let vary_fields = policy::vary_fields(merged.headers());
        (vary_fields != meta.variant_fields()).then_some(NoStoreReason::VaryChanged)
    }

    /// Drops an entry from every tier: the memory tier now, the others after
    /// the response.
    pub(super) fn forget(&self, key: &str) {
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

    /// Stores a new origin response when allowed and serves it. Returns the
    /// stored form too, for requests waiting on the same key. `varied` names
    /// the fields the origin was sent besides the allow-list.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn store_and_serve(
        &self,
        request: &Request<Body>,
        key: String,
        response: Response<Body>,
        times: ResponseTimes,
        fwd: Forward,
        varied: &[String],
        previous: Option<PreviousEntry>,
        trace: &mut Trace,
    ) -> ((Response<Body>, CacheStatus), Option<Response<Body>>) {
        let status = CacheStatus::forward(fwd).with_fwd_status(response.status().as_u16());
        if response.status() == StatusCode::PARTIAL_CONTENT {
            let status = status.with_detail(NoStoreReason::Partial.as_str());
            return ((response, status), None);
        }
        let stream = body::streamed(&response);
        let body_len = match &stream {
            Some(stream) => stream.len,
            None => u64::try_from(response.body().len()).ok(),
        };
        let body = stream.is_none().then(|| response.body().as_ref());
        let (terms, kept) = self.edge_terms(
            request,
            response.status(),
            response.headers(),
            body,
            previous.as_ref(),
            false,
        );
        let strip_fields = match self.store_decision(request, &response, body_len, &terms) {
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
        if let Some(field) = self.reflected_field(request, &response, varied) {
            trace.warnings.push(format!(
                "not stored: the body shows the request's {field} value, which the key does not hold (send Vary: {field}, or key it in a rule)"
            ));
            let status = status.with_detail(NoStoreReason::Reflected.as_str());
            return ((self.client_view(request, response, None), status), None);
        }
        let mut stored_copy = crate::copy_response(&response);
        for field in &strip_fields {
            if let Ok(name) = HeaderName::from_bytes(field.as_bytes()) {
                stored_copy.headers_mut().remove(name);
            }
        }
        let mut meta = self.new_entry_meta(request, &response, times, body_len, trace);
        meta.rule = kept;
        let freshness = self.freshness(stored_copy.headers(), &meta);
        let retention = freshness.retention_secs(
            policy::has_validators(response.headers()),
            self.config.revalidation_window_secs,
        );
        let entry_key = self.entry_key(request, varied, &response, key, &mut meta, retention);
        let status = status.with_stored(true);
        let mut encoded = stored::encode(&stored_copy, meta, retention);
        if let Some(stream) = stream {
            // One branch to the client, one to the Cache API; no one else can
            // share a stream, so waiting requests fetch for themselves.
            let (to_client, to_store) = self.platform.streams().tee(stream);
            let mut response = response;
            body::mark(&mut response, to_client);
            body::mark(&mut encoded, to_store);
            self.store(entry_key, encoded, retention);
            return ((self.client_view(request, response, None), status), None);
        }
        self.store(entry_key, crate::copy_response(&encoded), retention);
        (
            (self.client_view(request, response, None), status),
            Some(encoded),
        )
    }

    /// The reflection guard ([`reflection`]): the unkeyed request field
    /// whose value a buffered text body shows, if any. A streamed body (above
    /// `STREAM_BODIES_ABOVE_BYTES`) goes to the store as it arrives and is
    /// not scanned.
    fn reflected_field(
        &self,
        request: &Request<Body>,
        response: &Response<Body>,
        varied: &[String],
    ) -> Option<String> {
        if body::streamed(response).is_some() {
            return None;
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !reflection::scannable(content_type) {
            return None;
        }
        let rules = self.forward_rules(request, varied);
        let forwarded = forwarded_view(request.headers(), rules);
        let vary = policy::vary_fields(response.headers());
        let keyed = |name: &str| {
            rules.keyed.iter().any(|k| k == name)
                || rules.rule_keyed.iter().any(|f| f == name)
                || vary.iter().any(|v| v == name)
        };
        let keyed_cookies = rule_of(request).is_some_and(|r| !r.keyed_cookies().is_empty());
        let host = request_host(request);
        let probes = reflection::probes(&forwarded, keyed, keyed_cookies, host.as_deref());
        reflection::reflected(&probes, response.body()).map(str::to_owned)
    }

    /// The policy's store decision under the request's rules, refused
    /// outright for an error page passed on after failover, for a stream of
    /// unknown length, and by deception armor.
    fn store_decision(
        &self,
        request: &Request<Body>,
        response: &Response<Body>,
        body_len: Option<u64>,
        terms: &EdgeTerms,
    ) -> StoreDecision {
        let facts = RequestFacts {
            method: request.method(),
            headers: request.headers(),
        };
        if response.extensions().get::<FailedOver>().is_some() {
            return StoreDecision::Skip(NoStoreReason::ErrorStatus);
        }
        if self.armor_refuses(request, response) {
            return StoreDecision::Skip(NoStoreReason::DeceptionArmor);
        }
        match policy::store_decision(
            facts,
            response.status(),
            response.headers(),
            body_len,
            &self.config.policy_settings(),
            terms,
        ) {
            // A stream of unknown length might outgrow CACHE_MAX_OBJECT_BYTES.
            StoreDecision::Store { .. }
                if body::streamed(response).is_some() && body_len.is_none() =>
            {
                StoreDecision::Skip(NoStoreReason::UnknownLength)
            }
            decision => decision,
        }
    }

    /// The metadata of a new entry: its times, its tags (dropped ones are
    /// reported as warnings) and its body length.
    fn new_entry_meta(
        &self,
        request: &Request<Body>,
        response: &Response<Body>,
        times: ResponseTimes,
        body_len: Option<u64>,
        trace: &mut Trace,
    ) -> EntryMeta {
        let mut meta = EntryMeta::new(
            times,
            policy::corrected_initial_age(response.headers(), times),
        );
        let host = request_host(request).unwrap_or_default();
        let rules = self
            .config
            .purge
            .auto_tag_rules(self.query_filter(rule_of(request)));
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
        if let Some(rule) = rule_of(request) {
            for tag in &rule.tags {
                if !meta.tags.contains(tag) {
                    meta.tags.push(tag.clone());
                }
            }
        }
        meta.body_len = body_len;
        let scheme = request.uri().scheme_str().unwrap_or("https");
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        meta.url = Some(format!("{scheme}://{host}{path}"));
        meta
    }

    /// The key a new entry is filed under: the primary key, or, for a
    /// response with `Vary`, its variant's key (the primary key then holds
    /// the `Vary` index, written here).
    fn entry_key(
        &self,
        request: &Request<Body>,
        varied: &[String],
        response: &Response<Body>,
        key: String,
        meta: &mut EntryMeta,
        retention: u64,
    ) -> String {
        let vary_fields = policy::vary_fields(response.headers());
        if vary_fields.is_empty() {
            return key;
        }
        // The variant is what the origin saw: a field it was not sent counts
        // as absent, so its answer is never filed under a value it did not
        // get (the next request with that value is a vary-miss, which
        // forwards the field).
        let seen = forwarded_view(request.headers(), self.forward_rules(request, varied));
        let values = vary::variant_values(&seen, &vary_fields);
        // The generation of the index this variant was looked up under, or a
        // new one when there was none (first variant, or after an unsafe
        // request dropped the index and with it every older variant).
        let generation = request
            .extensions()
            .get::<VaryGeneration>()
            .map_or_else(|| self.isolate.new_vary_generation(self.now()), |g| g.0);
        let variant_key = vary::variant_key(&key, &values, Some(generation));
        meta.variant = Some(values);
        meta.vary_generation = Some(generation);
        self.store(
            key,
            stored::vary_index(vary_fields, generation, meta.times(), retention),
            retention,
        );
        variant_key
    }

    /// Removes the entries an unsafe request may have changed (RFC 9111 §4.4):
    /// its target URI and same-host `Location`/`Content-Location`.
    pub(super) async fn invalidate(
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
            let key = self.key_of_get(host, &uri, request);
            self.isolate
                .hot
                .remove_where(|k| vary::is_key_or_variant(k, &key));
            // Variants hang off the primary key's Vary index: without it they
            // are unreachable, and the next index starts a new generation.
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
