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
use crate::purge::registry::{self, EntryState, TagRegistryStore};
use crate::purge::sync::{self, DcDeltaRecord, DcViewRecord, ShardView, SyncPage, SyncStep};
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
    /// The data centre's Cache API alone: what another isolate stored (a
    /// request waiting on a collapsed fill; its memory tier may hold the
    /// entry being replaced).
    Shared,
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
        if tiers != Tiers::Shared {
            // Decoded when it was put: a hit parses no metadata.
            if let Some((response, meta)) = self.isolate.hot.get_decoded(key, now) {
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
        if tiers == Tiers::Shared || !self.kv_tier_on() {
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
        self.start_views();
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

    /// An entry's freshness as purges leave it (a soft purge makes it stale),
    /// or `None` once it is hard-purged and may not be served at all.
    pub(super) async fn freshness_after_purges(
        &self,
        entry: &StoredEntry,
        trace: &mut Trace,
    ) -> Option<Freshness> {
        let freshness = self.freshness(entry.response.headers(), &entry.meta);
        match self.purge_state(&entry.meta, trace).await {
            EntryState::Live => Some(freshness),
            EntryState::SoftPurged => Some(freshness.soft_purged()),
            EntryState::HardPurged => None,
        }
    }

    /// Whether an entry's tags (or its host, or everything) were purged after
    /// it was fetched. With `PURGE_CHANGE_SYNC` (default), each registry
    /// shard is synced ("purges since my cursor") about once per window per
    /// data centre, in the background: an entry fetched after the view's
    /// horizon is decided without any subrequest. Keys the views do not
    /// cover (no view yet, or the entry is older than the horizon) are asked
    /// per key, through this isolate's memo, when its answers are older
    /// than `PURGE_SYNC_MS`; if the registry cannot be reached, the memo and
    /// the views say how far old answers may still be trusted. With
    /// `PURGE_REFRESH_AHEAD`, per-key answers in the second half of their
    /// window are renewed in the background.
    pub(super) async fn purge_state(&self, meta: &EntryMeta, trace: &mut Trace) -> EntryState {
        let keys = registry::registry_keys_for_entry(&meta.tags);
        let now = self.now();
        let shards = self.config.purge.shards;
        let fetched_at = meta.request_time_ms;
        let per_key = if self.config.purge.change_sync {
            let mut needed: Vec<u32> = keys.iter().map(|k| registry::shard_of(k, shards)).collect();
            // `sort`, not `sort_unstable`: one sort algorithm in the wasm (docs/assets.md).
            needed.sort();
            needed.dedup();
            if self.config.purge.dc_memo {
                // A new isolate starts from its data centre's view (one Cache
                // API read), not from per-key lookups.
                for shard in &needed {
                    if self.isolate.views.borrow().view(*shard).is_none() {
                        self.adopt_dc_view(*shard).await;
                    }
                }
            }
            let plan = self.isolate.views.borrow_mut().plan(&needed, now);
            for shard in plan.ahead {
                let this = self.clone();
                self.platform.background().spawn(Box::pin(async move {
                    let _ = this.sync_shard(shard, true).await;
                }));
            }
            for shard in plan.now {
                if let Err(e) = self.sync_shard(shard, false).await {
                    trace
                        .warnings
                        .push(format!("tag registry unreachable: {e}"));
                }
            }
            let memo = self.isolate.memo.borrow();
            self.isolate
                .views
                .borrow()
                .keys_outside(&keys, shards, fetched_at, &memo)
        } else {
            keys.clone()
        };
        if !per_key.is_empty() {
            if self.config.purge.refresh_ahead {
                let ahead = self
                    .isolate
                    .memo
                    .borrow_mut()
                    .claim_refresh_ahead(&per_key, now);
                if !ahead.is_empty() {
                    let this = self.clone();
                    self.platform.background().spawn(Box::pin(async move {
                        let _ = this.refresh_registry_keys(&ahead, now).await;
                    }));
                }
            }
            let stale = self.isolate.memo.borrow_mut().claim_refresh(&per_key, now);
            if let Err(e) = self.refresh_registry_keys(&stale, now).await {
                trace
                    .warnings
                    .push(format!("tag registry unreachable: {e}"));
            }
        }
        let views = self.isolate.views.borrow();
        let memo = self.isolate.memo.borrow();
        let answers = views.answers_for(&memo, shards, fetched_at, now);
        registry::entry_state(&keys, fetched_at, &answers)
    }

    /// Starts, in the background, the views of the shards this isolate has
    /// none of yet, before it stores anything: an entry fetched after a
    /// view's horizon never needs a per-key lookup.
    fn start_views(&self) {
        if !self.config.purge.change_sync {
            return;
        }
        let shards = self.config.purge.shards;
        let missing = self.isolate.views.borrow().missing(shards);
        if missing.is_empty() {
            return;
        }
        let plan = self.isolate.views.borrow_mut().plan(&missing, self.now());
        for shard in plan.ahead.into_iter().chain(plan.now) {
            let this = self.clone();
            self.platform.background().spawn(Box::pin(async move {
                if this.config.purge.dc_memo {
                    this.adopt_dc_view(shard).await;
                }
                let _ = this.sync_shard(shard, true).await;
            }));
        }
    }

    /// Brings this isolate's view of `shard` up to date (claimed by
    /// `SyncViews::plan`; released here). With `PURGE_DC_MEMO`, first from
    /// the data centre's Cache API (the latest delta, or the whole view when
    /// this isolate has none or is too far behind); then, if the view is
    /// still due (see `SyncViews::step`), from the registry, leaving the
    /// delta and the whole view for the other isolates.
    async fn sync_shard(&self, shard: u32, background: bool) -> Result<(), StoreError> {
        let outcome = self.sync_shard_claimed(shard, background).await;
        let now = self.now();
        // A background check that found nothing to do rests a little, so a
        // busy isolate does not read the Cache API on every request.
        let quiet = match outcome {
            Ok(false) if background => (self.config.purge.sync_ms / 20).max(1),
            // The shard did not answer: the next background try waits a
            // little (an overloaded object is not helped by every request).
            Err(_) if background => (self.config.purge.sync_ms / 4).max(1),
            _ => 0,
        };
        self.isolate.views.borrow_mut().release(shard, now, quiet);
        outcome.map(|_| ())
    }

    /// Takes the data centre's whole view of `shard` when it is newer than
    /// this isolate's (or this isolate has none).
    async fn adopt_dc_view(&self, shard: u32) {
        let purge = &self.config.purge;
        let url = sync::dc_view_url(&self.config.cache_namespace, purge.shards, shard, "full");
        let full: Option<DcViewRecord> = match self.platform.cache().get(&url, u64::MAX).await {
            Ok(Some(found)) => sync::record_from_body(found.body()),
            _ => None,
        };
        let Some(full) = full else { return };
        let mut views = self.isolate.views.borrow_mut();
        let max_keys = views.max_keys();
        // Never for a later horizon than ours: entries fetched in between
        // would need per-key lookups; this isolate syncs itself instead.
        let better = views.view(shard).is_none_or(|v| {
            full.checked_at_ms > v.checked_at_ms && full.horizon_ms <= v.horizon_ms
        });
        if better {
            views.set_view(shard, ShardView::from_record(full, max_keys));
        }
    }

    /// [`Self::sync_shard`] without the release; `Ok(true)` when it asked the registry.
    async fn sync_shard_claimed(&self, shard: u32, background: bool) -> Result<bool, StoreError> {
        let purge = &self.config.purge;
        let namespace = &self.config.cache_namespace;
        let max_keys = self.isolate.views.borrow().max_keys();
        let mut dc_delta_at = None;
        if purge.dc_memo {
            let cache = self.platform.cache();
            let delta_url = sync::dc_view_url(namespace, purge.shards, shard, "delta");
            let delta: Option<DcDeltaRecord> = match cache.get(&delta_url, u64::MAX).await {
                Ok(Some(found)) => sync::record_from_body(found.body()),
                _ => None,
            };
            dc_delta_at = delta.as_ref().map(|d| d.checked_at_ms);
            let applied = {
                let mut views = self.isolate.views.borrow_mut();
                match (views.view_mut(shard), &delta) {
                    (Some(view), Some(delta)) => {
                        view.apply_delta(delta, max_keys)
                            || delta.checked_at_ms <= view.checked_at_ms
                    }
                    (Some(_), None) => true,
                    (None, _) => false,
                }
            };
            if !applied {
                self.adopt_dc_view(shard).await;
            }
        }
        let now = self.now();
        let step = self
            .isolate
            .views
            .borrow()
            .step(shard, dc_delta_at, background, now);
        if step == SyncStep::Done {
            return Ok(false);
        }
        let base = self.isolate.views.borrow().view(shard).map(|v| v.cursor);
        let sent = now;
        let mut pages: Vec<SyncPage> = Vec::new();
        let mut after = base;
        for _ in 0..sync::SYNC_MAX_PAGES {
            let page = self
                .platform
                .registry()
                .sync(shard, after, sync::SYNC_PAGE_LIMIT)
                .await?;
            after = Some(page.cursor);
            let more = page.more;
            pages.push(page);
            if !more {
                break;
            }
        }
        let delta = {
            let mut views = self.isolate.views.borrow_mut();
            let base = match (base, views.view_mut(shard)) {
                // Another task moved the view meanwhile: these pages may
                // start after its cursor, so they are not applied.
                (Some(base), Some(view)) if view.cursor < base => return Ok(true),
                (Some(base), Some(view)) => {
                    for page in &pages {
                        view.apply(page, sent, max_keys);
                    }
                    base
                }
                (Some(_), None) => return Ok(true),
                (None, None) => {
                    let Some((first, rest)) = pages.split_first() else {
                        return Ok(true);
                    };
                    let mut view = ShardView::start(first, sent, self.now());
                    for page in rest {
                        view.apply(page, sent, max_keys);
                    }
                    views.set_view(shard, view);
                    first.cursor
                }
                (None, Some(_)) => return Ok(true),
            };
            let Some(view) = views.view(shard) else {
                return Ok(true);
            };
            let records = (DcDeltaRecord::of(base, &pages, view), view.to_record());
            let checked_at = view.checked_at_ms;
            if purge.dc_memo && !pages.last().is_some_and(|p| p.more) {
                views.note_written(shard, checked_at);
                Some(records)
            } else {
                None
            }
        };
        if let Some((delta, full)) = delta {
            let cache = self.platform.cache().clone();
            let delta_url = sync::dc_view_url(namespace, purge.shards, shard, "delta");
            let full_url = sync::dc_view_url(namespace, purge.shards, shard, "full");
            let keep_secs = (purge.sync_ms / 1000).saturating_mul(10).max(10);
            self.platform.background().spawn(Box::pin(async move {
                let _ = cache
                    .put(&delta_url, sync::record_response(&delta, keep_secs))
                    .await;
                let _ = cache
                    .put(&full_url, sync::record_response(&full, 86_400))
                    .await;
            }));
        }
        Ok(true)
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
