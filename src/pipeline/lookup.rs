//! Looking a request up: its primary key, the tiers (memory, Cache API,
//! KV) read in order with promotion, the `Vary` index, freshness, and the
//! tag registry's verdict on the entry.

use std::collections::HashMap;

use futures_util::future::join_all;
use http::header;
use http::{HeaderValue, Request, Response, Uri};

use crate::cache::key::{self as cache_key, KeyRules};
use crate::cache::stored::{self, EntryMeta};
use crate::origin::shaping;
use crate::platform::body;
use crate::platform::{Background, CacheStore, GlobalStore, Platform, StoreError};
use crate::purge::registry::{self, EntryState};
use crate::semantics::cache_status::Tier;
use crate::semantics::policy::Freshness;
use crate::semantics::vary;
use crate::Body;

use super::rules::{rule_of, stored_terms, ClientCountry};
use super::{Pipeline, Trace};
use crate::rules::Matched;

/// A stored response found in one of the tiers.
pub(super) struct StoredEntry {
    pub(super) key: String,
    pub(super) response: Response<Body>,
    pub(super) meta: EntryMeta,
    pub(super) tier: Tier,
}

/// Which tiers a lookup may read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Tiers {
    Memory,
    All,
}

pub(super) enum Lookup {
    Found(Box<StoredEntry>),
    /// The URL is stored, but not for this variant: the fields it varies on,
    /// and the index generation a new variant joins.
    VaryMiss(Vec<String>, Option<u64>),
    Miss,
}

impl<P: Platform + Clone + 'static> Pipeline<P> {
    /// Request fields in the key: `CACHE_KEY_HEADERS`, `Origin` whenever a
    /// request has one (origins reflect it into CORS answers without `Vary`),
    /// and what the request's cache rule keys (fields, cookies, device
    /// class, country).
    pub(super) fn key_headers(&self, request: &Request<Body>) -> Vec<(String, String)> {
        let headers = request.headers();
        let mut keyed: Vec<(String, String)> = self
            .config
            .cache_key_headers
            .iter()
            .map(|name| (name.clone(), vary::field_value(headers, name)))
            .collect();
        let origin = header::ORIGIN.as_str();
        if !self.config.cache_key_headers.iter().any(|n| n == origin) {
            if let Some(value) = shaping::keyed_origin(headers) {
                keyed.push((origin.to_owned(), value));
            }
        }
        if let Some(matched) = request.extensions().get::<Matched>() {
            let country = request
                .extensions()
                .get::<ClientCountry>()
                .map(|c| c.0.as_str());
            keyed.extend(matched.action.key_members(headers, country));
            if matched.chosen_by_fields {
                keyed.push((":rule".to_owned(), matched.label.to_string()));
            }
        }
        keyed
    }

    /// The primary key of `uri` on `host` for `request` (its fields and
    /// rules decide what else is keyed).
    pub(super) fn primary_key(&self, host: &str, uri: &Uri, request: &Request<Body>) -> String {
        let keyed = self.key_headers(request);
        let rules = KeyRules {
            namespace: &self.config.cache_namespace,
            query: self.query_filter(rule_of(request)),
            headers: &keyed,
        };
        cache_key::primary_key(rules, host, uri)
    }

    /// Reads a key from the memory tier, then the Cache API (promoting hits).
    pub(super) async fn read_tiers(
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
        stored::decode(found).map(|(response, meta)| (response, meta, Tier::Kv))
    }

    pub(super) fn kv_tier_on(&self) -> bool {
        self.config.kv_cache_max_object_bytes > 0 && self.platform.global().available()
    }

    pub(super) async fn lookup(
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
        let generation = meta.vary_generation;
        let variant_key = vary::variant_key(key, &values, generation);
        match self.read_tiers(&variant_key, tiers, trace).await {
            Some((response, meta, tier)) if meta.variant.as_ref() == Some(&values) => {
                Lookup::Found(Box::new(StoredEntry {
                    key: variant_key,
                    response,
                    meta,
                    tier,
                }))
            }
            _ => Lookup::VaryMiss(fields, generation),
        }
    }

    /// How fresh an entry is now: by its headers, under the terms a cache
    /// rule gave it when it was stored.
    pub(super) fn freshness(&self, entry_headers: &http::HeaderMap, meta: &EntryMeta) -> Freshness {
        let freshness = Freshness::of(
            entry_headers,
            meta.initial_age_secs,
            meta.times(),
            self.now(),
            &self.config.policy_settings(),
        );
        match stored_terms(meta.rule.as_ref()) {
            Some(terms) => freshness.under_terms(&terms),
            None => freshness,
        }
    }

    /// Whether an entry's tags (or its host, or everything) were purged after
    /// it was fetched. The registry is asked only when this isolate's answers
    /// are older than `PURGE_SYNC_MS`; if it cannot be reached, the memo says
    /// how far its old answers may still be trusted. With
    /// `PURGE_REFRESH_AHEAD`, answers in the second half of their window are
    /// renewed in the background, so a key in steady use never waits.
    pub(super) async fn purge_state(&self, meta: &EntryMeta, trace: &mut Trace) -> EntryState {
        let keys = registry::registry_keys_for_entry(&meta.tags);
        let now = self.now();
        if self.config.purge.refresh_ahead {
            let ahead = self
                .isolate
                .memo
                .borrow_mut()
                .claim_refresh_ahead(&keys, now);
            if !ahead.is_empty() {
                let this = self.clone();
                self.platform.background().spawn(Box::pin(async move {
                    let _ = this.refresh_registry_keys(&ahead, now).await;
                }));
            }
        }
        let stale = self.isolate.memo.borrow_mut().claim_refresh(&keys, now);
        if let Err(e) = self.refresh_registry_keys(&stale, now).await {
            trace
                .warnings
                .push(format!("tag registry unreachable: {e}"));
        }
        let memo = self.isolate.memo.borrow();
        registry::entry_state(&keys, meta.request_time_ms, &memo.answers_at(now))
    }

    /// Refreshes claimed keys: from the data centre's memo in the Cache API
    /// when `PURGE_DC_MEMO` is on and it holds an answer checked less than
    /// the window ago (kept with *its* check time, so the window still runs
    /// from the registry lookup), else from the registry, whose answers are
    /// then left in the data centre's memo for the other isolates.
    async fn refresh_registry_keys(&self, claimed: &[String], now: u64) -> Result<(), StoreError> {
        if claimed.is_empty() {
            return Ok(());
        }
        let window = self.config.purge.sync_ms;
        let mut remaining: Vec<String> = claimed.to_vec();
        if self.config.purge.dc_memo {
            let cache = self.platform.cache();
            let reads = claimed.iter().map(|key| {
                let url = registry::dc_memo_url(&self.config.cache_namespace, key);
                async move { cache.get(&url, u64::MAX).await }
            });
            let found = join_all(reads).await;
            let mut memo = self.isolate.memo.borrow_mut();
            remaining.clear();
            for (key, read) in claimed.iter().zip(found) {
                let shared = read
                    .ok()
                    .flatten()
                    .and_then(|r| registry::DcMemoAnswer::from_body(r.body()))
                    .filter(|a| now.saturating_sub(a.checked_at_ms) < window);
                match shared {
                    Some(answer) => {
                        memo.release(std::slice::from_ref(key));
                        memo.record(
                            HashMap::from([(key.clone(), answer.times())]),
                            answer.checked_at_ms,
                        );
                    }
                    None => remaining.push(key.clone()),
                }
            }
        }
        if remaining.is_empty() {
            return Ok(());
        }
        let (found, error) = registry::lookup_keys_partial(
            self.platform.registry(),
            &remaining,
            self.config.purge.shards,
        )
        .await;
        {
            let mut memo = self.isolate.memo.borrow_mut();
            memo.release(&remaining);
            memo.record(found.clone(), now);
        }
        if self.config.purge.dc_memo && !found.is_empty() {
            let cache = self.platform.cache().clone();
            let namespace = self.config.cache_namespace.clone();
            self.platform.background().spawn(Box::pin(async move {
                for (key, times) in found {
                    let answer = registry::DcMemoAnswer::new(times, now);
                    let url = registry::dc_memo_url(&namespace, &key);
                    let _ = cache.put(&url, answer.to_response(window)).await;
                }
            }));
        }
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
