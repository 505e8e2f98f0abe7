//! "Purges since sequence n": the registry protocol that makes registry load
//! grow with data centres, not with pages served.
//!
//! Every registry shard numbers its writes: each key written (purge or
//! import) gets the shard's next sequence number. A caller keeps, per shard,
//! a [`ShardView`]: a cursor (the highest sequence number it has applied),
//! the purge times of every key changed after its starting cursor, the time
//! its last complete sync was *sent* (`checked_at_ms`) and a horizon. A sync
//! asks for the changes after the cursor ([`SyncMessage`] → [`SyncPage`],
//! paged), so one request per shard per window keeps a whole data centre
//! up to date whatever the number of keys it serves.
//!
//! Soundness for a caller without a cursor: its first sync learns the
//! shard's current cursor `c0`, the latest changes (up to one page, the
//! *backfill*) and the latest purge time among every other row (the
//! horizon). Each row holds its key's latest purge times, so every purge
//! later than the horizon is in the view, whatever its sequence number, and
//! every later write shows up in the next syncs. An entry fetched strictly
//! after the horizon can therefore be decided from the view alone; an entry
//! fetched at or before it is decided by a per-key lookup
//! ([`crate::purge::registry::RegistryMemo`]), as before. The backfill moves
//! the horizon back by the last page of writes (all of them while a shard
//! holds fewer), so entries cached shortly before a data centre took its
//! view (a cold start, a view record evicted from the Cache API) need no
//! per-key lookup. Keeping the
//! view bounded moves the horizon forward the same way (dropping keys whose
//! purges are all at or before the new horizon).
//!
//! The isolates of a data centre share views through the Cache API as
//! [`DcViewRecord`] (a whole view, read once by a new isolate) and
//! [`DcDeltaRecord`] (one sync's changes, read by the others each window).
//! Everything here is pure and takes explicit times; the I/O is in
//! `pipeline::lookup` and the stores.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::purge::registry::{
    shard_of, RegistryAnswers, RegistryEntry, RegistryMemo, TagPurgeTimes,
};

/// Most changes one sync page carries.
pub const SYNC_PAGE_LIMIT: usize = 1000;

/// Most pages one sync reads before it stops (the view is then not caught
/// up, so it stays as old as its last complete sync).
pub const SYNC_MAX_PAGES: usize = 20;

/// `POST /sync` to a registry object: the changes after `after`, at most
/// `limit`, in sequence order (`None`: a first sync, answered with the latest
/// writes, the current cursor and a horizon; see [`SyncPage`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncMessage {
    pub after: Option<u64>,
    pub limit: usize,
}

/// One changed key: its purge times now and the sequence number of its last write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncChange {
    pub key: String,
    pub hard_ms: u64,
    pub soft_ms: u64,
    pub seq: u64,
}

/// The answer to a [`SyncMessage`]: `cursor` is the last sequence number
/// covered (the shard's current one when `more` is false). To a sync without
/// cursor, `changes` are the shard's latest writes (the backfill, at most
/// `limit`) and `latest_ms` is the latest purge time among the other rows
/// (the new view's horizon; 0 when the backfill holds every row); 0 otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncPage {
    pub cursor: u64,
    pub changes: Vec<SyncChange>,
    pub more: bool,
    #[serde(default)]
    pub latest_ms: u64,
}

/// Builds a page from a shard's rows `(key, times, seq)` for a sync after
/// `after` (the store's side of the protocol, shared by every store). Rows
/// with sequence number 0 (written before the protocol) are never changes:
/// a first sync counts them in its horizon.
pub fn sync_page<'a>(
    rows: impl IntoIterator<Item = (&'a String, &'a TagPurgeTimes, u64)>,
    after: Option<u64>,
    limit: usize,
) -> SyncPage {
    let mut all: Vec<(&String, &TagPurgeTimes, u64)> = rows.into_iter().collect();
    let current = all.iter().map(|(_, _, seq)| *seq).max().unwrap_or(0);
    let limit = limit.clamp(1, SYNC_PAGE_LIMIT);
    let change = |(key, times, seq): (&String, &TagPurgeTimes, u64)| SyncChange {
        key: key.clone(),
        hard_ms: times.hard_ms,
        soft_ms: times.soft_ms,
        seq,
    };
    let Some(after) = after else {
        // The backfill: the newest `limit` rows; the horizon: all the others.
        all.sort_by_key(|(_, _, seq)| std::cmp::Reverse(*seq));
        let newest = all
            .iter()
            .take_while(|(_, _, seq)| *seq > 0)
            .count()
            .min(limit);
        let older = all.split_off(newest);
        all.reverse();
        return SyncPage {
            cursor: current,
            changes: all.into_iter().map(change).collect(),
            more: false,
            latest_ms: older
                .iter()
                .map(|(_, t, _)| t.hard_ms.max(t.soft_ms))
                .max()
                .unwrap_or(0),
        };
    };
    all.retain(|(_, _, seq)| *seq > after);
    all.sort_by_key(|(_, _, seq)| *seq);
    let more = all.len() > limit;
    all.truncate(limit);
    SyncPage {
        cursor: all.last().map_or(after.max(current), |(_, _, seq)| *seq),
        changes: all.into_iter().map(change).collect(),
        more,
        latest_ms: 0,
    }
}

fn merged(a: TagPurgeTimes, b: TagPurgeTimes) -> TagPurgeTimes {
    TagPurgeTimes {
        hard_ms: a.hard_ms.max(b.hard_ms),
        soft_ms: a.soft_ms.max(b.soft_ms),
    }
}

/// What a caller knows of one shard (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardView {
    /// Entries fetched at or before this time are not decided by the view.
    pub horizon_ms: u64,
    pub cursor: u64,
    /// When the sync that started the view was answered (`u64::MAX` once
    /// keys were dropped): a per-key answer asked after it, plus the view,
    /// knows every purge of its key (see [`SyncViews::keys_outside`]).
    pub started_ms: u64,
    /// When the last sync that reached the shard's cursor was sent.
    pub checked_at_ms: u64,
    changes: HashMap<String, TagPurgeTimes>,
}

impl ShardView {
    /// A view started from a sync without cursor sent at `sent_ms` and
    /// answered at `received_ms`: its horizon is the latest purge time the
    /// shard held then.
    pub fn start(page: &SyncPage, sent_ms: u64, received_ms: u64) -> Self {
        let mut view = Self {
            horizon_ms: page.latest_ms,
            started_ms: received_ms.max(sent_ms),
            cursor: page.cursor,
            checked_at_ms: 0,
            changes: HashMap::new(),
        };
        view.apply(page, sent_ms, usize::MAX);
        view
    }

    /// Applies a page of a sync sent at `sent_ms` after this view's cursor.
    /// Only a page that reaches the shard's cursor renews `checked_at_ms`.
    /// Keeps at most `max_keys` keys (see [`Self::bound`]).
    pub fn apply(&mut self, page: &SyncPage, sent_ms: u64, max_keys: usize) {
        for change in &page.changes {
            let times = TagPurgeTimes {
                hard_ms: change.hard_ms,
                soft_ms: change.soft_ms,
            };
            self.note(&change.key, times);
        }
        self.cursor = self.cursor.max(page.cursor);
        if !page.more {
            self.checked_at_ms = self.checked_at_ms.max(sent_ms);
        }
        self.bound(max_keys);
    }

    fn note(&mut self, key: &str, times: TagPurgeTimes) {
        let known = self.changes.get(key).copied().unwrap_or_default();
        self.changes.insert(key.to_owned(), merged(known, times));
    }

    /// Keeps the view under `max_keys` keys: drops the keys purged longest
    /// ago (down to half the budget) and moves the horizon to their latest
    /// purge, so an entry the view still decides is never one they could kill.
    pub fn bound(&mut self, max_keys: usize) {
        if self.changes.len() <= max_keys {
            return;
        }
        let mut latest: Vec<u64> = self
            .changes
            .values()
            .map(|t| t.hard_ms.max(t.soft_ms))
            .collect();
        // `sort`, not `sort_unstable`: one sort algorithm in the wasm (docs/assets.md).
        latest.sort();
        let keep = max_keys / 2;
        let cut = latest[latest.len() - keep.min(latest.len()) - 1];
        self.horizon_ms = self.horizon_ms.max(cut);
        self.started_ms = u64::MAX;
        let horizon = self.horizon_ms;
        self.changes
            .retain(|_, t| t.hard_ms.max(t.soft_ms) > horizon);
    }

    /// Whether `memo`'s answer for `key` was asked after this view started
    /// (see [`SyncViews::keys_outside`]).
    pub fn completes(&self, memo: &RegistryMemo, key: &str) -> bool {
        memo.checked_at(key).is_some_and(|at| at > self.started_ms)
    }

    /// Whether the view decides an entry fetched at `fetched_at_ms`.
    pub fn covers(&self, fetched_at_ms: u64) -> bool {
        fetched_at_ms > self.horizon_ms
    }

    /// The purge times of `key` since the horizon (zero: not purged since).
    pub fn times(&self, key: &str) -> TagPurgeTimes {
        self.changes.get(key).copied().unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The whole view, for the data centre's Cache API.
    pub fn to_record(&self) -> DcViewRecord {
        let mut changes: Vec<RegistryEntry> = self
            .changes
            .iter()
            .map(|(key, t)| RegistryEntry {
                key: key.clone(),
                hard_ms: t.hard_ms,
                soft_ms: t.soft_ms,
            })
            .collect();
        changes.sort_by(RegistryEntry::key_order);
        DcViewRecord {
            horizon_ms: self.horizon_ms,
            started_ms: self.started_ms,
            cursor: self.cursor,
            checked_at_ms: self.checked_at_ms,
            changes,
        }
    }

    /// A view read back from the data centre's Cache API.
    pub fn from_record(record: DcViewRecord, max_keys: usize) -> Self {
        let mut view = Self {
            horizon_ms: record.horizon_ms,
            started_ms: record.started_ms,
            cursor: record.cursor,
            checked_at_ms: record.checked_at_ms,
            changes: HashMap::new(),
        };
        for entry in record.changes {
            view.note(&entry.key, entry.times());
        }
        view.bound(max_keys);
        view
    }

    /// Applies another isolate's sync of the same data centre when it is
    /// newer and starts at or before this view's cursor (else it could skip
    /// changes; a delta holds every change the registry gave after its
    /// base, whatever its writer's horizon). Returns whether it applied.
    pub fn apply_delta(&mut self, delta: &DcDeltaRecord, max_keys: usize) -> bool {
        if delta.base > self.cursor || delta.checked_at_ms <= self.checked_at_ms {
            return false;
        }
        for entry in &delta.changes {
            self.note(&entry.key, entry.times());
        }
        self.cursor = self.cursor.max(delta.cursor);
        self.checked_at_ms = delta.checked_at_ms;
        self.bound(max_keys);
        true
    }
}

/// A data centre's whole view of one shard, in its Cache API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DcViewRecord {
    pub horizon_ms: u64,
    #[serde(default = "never")]
    pub started_ms: u64,
    pub cursor: u64,
    pub checked_at_ms: u64,
    pub changes: Vec<RegistryEntry>,
}

fn never() -> u64 {
    u64::MAX
}

/// One sync's changes (after `base`, up to `cursor`), for the other isolates
/// of the data centre.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DcDeltaRecord {
    pub base: u64,
    pub cursor: u64,
    pub checked_at_ms: u64,
    pub changes: Vec<RegistryEntry>,
}

impl DcDeltaRecord {
    /// The delta of a sync from `base` whose pages were `pages`, as applied
    /// to `view` (its resulting cursor and check time).
    pub fn of(base: u64, pages: &[SyncPage], view: &ShardView) -> Self {
        Self {
            base,
            cursor: view.cursor,
            checked_at_ms: view.checked_at_ms,
            // A first sync's backfill (at or before `base`) is in the whole
            // view record, not in the delta.
            changes: pages
                .iter()
                .flat_map(|p| p.changes.iter())
                .filter(|c| c.seq > base)
                .map(|c| RegistryEntry {
                    key: c.key.clone(),
                    hard_ms: c.hard_ms,
                    soft_ms: c.soft_ms,
                })
                .collect(),
        }
    }
}

/// The Cache API key of a data centre's record (`full`, `delta`, `claim`) for
/// one shard (out of `shards`: a view belongs to one sharding).
pub fn dc_view_url(namespace: &str, shards: u32, shard: u32, record: &str) -> String {
    format!(
        "{}{namespace}/view/{shards}/{shard}/{record}",
        crate::purge::registry::REGISTRY_RECORDS_URL
    )
}

/// A JSON record as a Cache API response kept `max_age_secs`.
pub fn record_response<T: Serialize>(record: &T, max_age_secs: u64) -> http::Response<crate::Body> {
    let mut response = http::Response::new(crate::Body::from(
        serde_json::to_vec(record).unwrap_or_default(),
    ));
    if let Ok(value) = http::HeaderValue::from_str(&format!("max-age={}", max_age_secs.max(1))) {
        response
            .headers_mut()
            .insert(http::header::CACHE_CONTROL, value);
    }
    response
}

/// A record read back (`None` for anything else: never trusted).
pub fn record_from_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

/// What one request should do about the views of the shards it needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// Shards to check in the background (no view yet, or older than
    /// [`SyncViews::ahead_ms`]): the request does not wait.
    pub ahead: Vec<u32>,
    /// Shards whose view is past the window: this request syncs and waits.
    pub now: Vec<u32>,
}

/// One isolate's views of every shard, with the claims that keep it to one
/// sync per shard at a time.
///
/// One sync per data centre per shard and window: the isolate that wrote
/// the data centre's current delta (the *syncer*) syncs when its view is
/// [`Self::ahead_ms`] old; the others read its deltas and sync themselves
/// only when the view gets [`Self::late_ms`] old (the syncer is gone). When
/// several race, the Cache API keeps one delta, and only its writer stays
/// the syncer.
#[derive(Debug, Clone)]
pub struct SyncViews {
    window_ms: u64,
    max_keys: usize,
    views: HashMap<u32, ShardView>,
    /// Shard → since when a sync of it runs.
    syncing: HashMap<u32, u64>,
    /// Shard → no background check before this time.
    quiet_until: HashMap<u32, u64>,
    /// Shard → the check time of the last delta this isolate wrote.
    written: HashMap<u32, u64>,
}

/// What a sync task should do once it has read the data centre's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStep {
    /// The view is recent enough: nothing more.
    Done,
    /// Ask the registry.
    Sync,
}

impl SyncViews {
    /// `window_ms` is `PURGE_SYNC_MS`; `max_keys` bounds each view.
    pub fn new(window_ms: u64, max_keys: usize) -> Self {
        Self {
            window_ms,
            max_keys: max_keys.max(2),
            views: HashMap::new(),
            syncing: HashMap::new(),
            quiet_until: HashMap::new(),
            written: HashMap::new(),
        }
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    pub fn max_keys(&self) -> usize {
        self.max_keys
    }

    /// The age at which the syncer renews a view in the background: early
    /// enough that the answer is back before the window ends, late enough
    /// that a data centre asks each shard about once a window (1/0.7 per window).
    pub fn ahead_ms(&self) -> u64 {
        self.window_ms / 10 * 7
    }

    /// The age at which an isolate that is not the syncer asks the registry
    /// itself: late enough for the syncer's delta (sent at [`Self::ahead_ms`])
    /// to come back with most round trips (under 20 % of the window), early
    /// enough that an isolate between requests rarely misses the moment.
    pub fn late_ms(&self) -> u64 {
        self.window_ms / 10 * 9
    }

    /// How old a view may get while syncs fail before entries it decides are
    /// revalidated: as for per-key answers.
    pub fn max_answer_age_ms(&self) -> u64 {
        self.window_ms.saturating_mul(10).max(10_000)
    }

    pub fn view(&self, shard: u32) -> Option<&ShardView> {
        self.views.get(&shard)
    }

    /// Replaces or creates a shard's view.
    pub fn set_view(&mut self, shard: u32, view: ShardView) {
        self.views.insert(shard, view);
    }

    pub fn view_mut(&mut self, shard: u32) -> Option<&mut ShardView> {
        self.views.get_mut(&shard)
    }

    /// This isolate's views as of `now_ms`, by shard, for the operator's
    /// health endpoint: how far each reaches back (horizon), how many keys it
    /// holds and how long ago its last complete sync was sent.
    pub fn report(&self, now_ms: u64) -> serde_json::Value {
        let mut shards: Vec<(&u32, &ShardView)> = self.views.iter().collect();
        shards.sort_by_key(|(shard, _)| **shard);
        let views: Vec<serde_json::Value> = shards
            .into_iter()
            .map(|(shard, view)| {
                serde_json::json!({
                    "shard": shard,
                    "cursor": view.cursor,
                    "horizon_ms": view.horizon_ms,
                    "keys": view.len(),
                    "synced_ms_ago": (view.checked_at_ms > 0)
                        .then(|| now_ms.saturating_sub(view.checked_at_ms)),
                })
            })
            .collect();
        serde_json::Value::Array(views)
    }

    /// The shards (of `0..shards`) this isolate has no view of.
    pub fn missing(&self, shards: u32) -> Vec<u32> {
        (0..shards.max(1))
            .filter(|shard| !self.views.contains_key(shard))
            .collect()
    }

    /// Notes that this isolate wrote the data centre's delta checked at `checked_at_ms`.
    pub fn note_written(&mut self, shard: u32, checked_at_ms: u64) {
        self.written.insert(shard, checked_at_ms);
    }

    /// After reading the data centre's records (`dc_delta_checked_at`: the
    /// check time of its current delta, if any): whether to ask the
    /// registry. `background` tasks renew ahead of the window (the syncer) or
    /// late in it (the others); a request past the window syncs unless the
    /// data centre's records made the view fresh.
    pub fn step(
        &self,
        shard: u32,
        dc_delta_checked_at: Option<u64>,
        background: bool,
        now_ms: u64,
    ) -> SyncStep {
        let Some(view) = self.views.get(&shard) else {
            return SyncStep::Sync;
        };
        let age = now_ms.saturating_sub(view.checked_at_ms);
        let syncer = match (dc_delta_checked_at, self.written.get(&shard)) {
            (None, _) => true,
            (Some(current), Some(mine)) => current == *mine,
            (Some(_), None) => false,
        };
        let due = match (background, syncer) {
            (false, _) => self.window_ms,
            (true, true) => self.ahead_ms(),
            (true, false) => self.late_ms(),
        };
        if age >= due {
            SyncStep::Sync
        } else {
            SyncStep::Done
        }
    }

    /// Plans the syncs of `shards` for a request at `now_ms`, and claims them.
    /// A shard with no view is synced in the background (its entries are
    /// decided by per-key lookups meanwhile); one older than
    /// [`Self::ahead_ms`] is checked in the background; one past the window
    /// by this request, unless another is already syncing it and the view
    /// is still usable.
    pub fn plan(&mut self, shards: &[u32], now_ms: u64) -> SyncPlan {
        let claim_ms = self.window_ms.saturating_mul(2).max(2_000);
        let mut plan = SyncPlan::default();
        for &shard in shards {
            if plan.ahead.contains(&shard) || plan.now.contains(&shard) {
                continue;
            }
            let taken = self
                .syncing
                .get(&shard)
                .is_some_and(|since| now_ms.saturating_sub(*since) < claim_ms);
            let quiet = self.quiet_until.get(&shard).is_some_and(|t| now_ms < *t);
            let age = self
                .views
                .get(&shard)
                .map(|v| now_ms.saturating_sub(v.checked_at_ms));
            let target = match age {
                None if taken || quiet => continue,
                None => &mut plan.ahead,
                Some(age) if age < self.ahead_ms() => continue,
                Some(age) if age < self.window_ms => {
                    if taken || quiet {
                        continue;
                    }
                    &mut plan.ahead
                }
                Some(age) => {
                    if taken && age <= self.max_answer_age_ms() {
                        continue;
                    }
                    &mut plan.now
                }
            };
            target.push(shard);
            self.syncing.insert(shard, now_ms);
        }
        plan
    }

    /// Ends a claim of [`Self::plan`]; `quiet_ms` > 0 keeps background checks
    /// of the shard off for that long (nothing to do yet).
    pub fn release(&mut self, shard: u32, now_ms: u64, quiet_ms: u64) {
        self.syncing.remove(&shard);
        if quiet_ms > 0 {
            self.quiet_until
                .insert(shard, now_ms.saturating_add(quiet_ms));
        } else {
            self.quiet_until.remove(&shard);
        }
    }

    /// The keys (of `keys`) an entry fetched at `fetched_at_ms` needs per-key
    /// answers for: those of shards with no view or whose view does not
    /// cover it, unless `memo` holds an answer for the key asked after the
    /// view started. Such an answer holds every purge committed before it
    /// was processed, and every later one is numbered after the view's
    /// start and so reaches the view: together they stay complete, and the
    /// key is not asked again.
    pub fn keys_outside(
        &self,
        keys: &[String],
        shards: u32,
        fetched_at_ms: u64,
        memo: &RegistryMemo,
    ) -> Vec<String> {
        keys.iter()
            .filter(|key| {
                let view = self.views.get(&shard_of(key, shards));
                !view.is_some_and(|v| v.covers(fetched_at_ms) || v.completes(memo, key))
            })
            .cloned()
            .collect()
    }

    /// What is known for an entry fetched at `fetched_at_ms`, at `now_ms`:
    /// the views where they cover it, the memo's per-key answers elsewhere;
    /// this isolate's own purges (in the memo) always count.
    pub fn answers_for<'a>(
        &'a self,
        memo: &'a RegistryMemo,
        shards: u32,
        fetched_at_ms: u64,
        now_ms: u64,
    ) -> ViewAnswers<'a> {
        ViewAnswers {
            views: self,
            memo,
            shards,
            fetched_at_ms,
            now_ms,
        }
    }
}

/// [`RegistryAnswers`] from the views and the per-key memo.
pub struct ViewAnswers<'a> {
    views: &'a SyncViews,
    memo: &'a RegistryMemo,
    shards: u32,
    fetched_at_ms: u64,
    now_ms: u64,
}

impl RegistryAnswers for ViewAnswers<'_> {
    fn times(&self, key: &str) -> Option<TagPurgeTimes> {
        let shard = shard_of(key, self.shards);
        match self.views.view(shard) {
            Some(view) if view.covers(self.fetched_at_ms) || view.completes(self.memo, key) => {
                let mut times = view.times(key);
                if let Some(local) = self.memo.known_times(key) {
                    times = merged(times, local);
                }
                let age = self.now_ms.saturating_sub(view.checked_at_ms);
                if age > self.views.max_answer_age_ms() {
                    times.soft_ms = u64::MAX;
                }
                Some(times)
            }
            _ => self.memo.answers_at(self.now_ms).times(key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purge::registry::{
        entry_state, lookup_keys, purge_keys, EntryState, MemoryTagRegistry, TagRegistryStore,
    };
    use crate::purge::tags::EVERYTHING_KEY;
    use futures::executor::block_on;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// Syncs one shard of `registry` into `views` as of `now` (no paging limit hit).
    fn sync(views: &mut SyncViews, registry: &MemoryTagRegistry, shard: u32, now: u64) {
        sync_with(views, registry, shard, now, SYNC_PAGE_LIMIT);
    }

    /// [`sync`] with pages (and a first sync's backfill) of `limit` changes.
    fn sync_with(
        views: &mut SyncViews,
        registry: &MemoryTagRegistry,
        shard: u32,
        now: u64,
        limit: usize,
    ) {
        let base = views.view(shard).map(|v| v.cursor);
        let page = block_on(registry.sync(shard, base, limit)).expect("sync");
        let max_keys = views.max_keys();
        match views.view_mut(shard) {
            Some(view) => view.apply(&page, now, max_keys),
            None => views.set_view(shard, ShardView::start(&page, now, now)),
        }
    }

    #[test]
    fn a_first_sync_brings_the_latest_writes_and_a_horizon_over_the_others() {
        let registry = MemoryTagRegistry::new();
        for (key, at) in [("a", 300), ("d", 50), ("b", 100), ("c", 200)] {
            block_on(purge_keys(&registry, &tags(&[key]), 1, false, at)).expect("purge");
        }
        let page = block_on(registry.sync(0, None, 2)).expect("sync");
        assert_eq!(page.cursor, 4);
        let keys: Vec<&str> = page.changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["b", "c"], "the newest writes, in sequence order");
        // "a" was written first but purged latest: the horizon is the latest
        // time of every row left out, not that of the last one by sequence.
        assert_eq!(page.latest_ms, 300);
        assert!(!page.more);
        let page = block_on(registry.sync(0, None, 10)).expect("sync");
        assert_eq!(page.changes.len(), 4);
        assert_eq!(page.latest_ms, 0, "every row is in the backfill");
    }

    #[test]
    fn rows_written_before_the_protocol_are_never_backfilled_but_count_in_the_horizon() {
        let (old, new) = ("old".to_owned(), "new".to_owned());
        let t = |at| TagPurgeTimes {
            hard_ms: at,
            soft_ms: 0,
        };
        let (old_t, new_t) = (t(900), t(100));
        let page = sync_page([(&old, &old_t, 0), (&new, &new_t, 1)], None, 10);
        assert_eq!(page.cursor, 1);
        assert_eq!(page.changes.len(), 1);
        assert_eq!(page.changes[0].key, "new");
        assert_eq!(page.latest_ms, 900);
    }

    #[test]
    fn a_first_syncs_backfill_decides_entries_cached_shortly_before_it() {
        let registry = MemoryTagRegistry::new();
        block_on(purge_keys(&registry, &tags(&["p:1"]), 1, false, 700)).expect("purge");
        let mut views = SyncViews::new(1_000, 100);
        sync(&mut views, &registry, 0, 1_000);
        let keys = tags(&["p:1", EVERYTHING_KEY]);
        let memo = RegistryMemo::new(1_000, 100);
        assert_eq!(views.view(0).map(|v| v.horizon_ms), Some(0));
        assert!(
            views.keys_outside(&keys, 1, 400, &memo).is_empty(),
            "cached before the view, no per-key lookup"
        );
        let answers = views.answers_for(&memo, 1, 400, 1_000);
        assert_eq!(entry_state(&keys, 400, &answers), EntryState::HardPurged);
        let answers = views.answers_for(&memo, 1, 800, 1_000);
        assert_eq!(entry_state(&keys, 800, &answers), EntryState::Live);
        // Another isolate applying this sync's delta gets nothing twice: the
        // backfill is in the whole record.
        let view = views.view(0).expect("view");
        let page = block_on(registry.sync(0, None, SYNC_PAGE_LIMIT)).expect("sync");
        let delta = DcDeltaRecord::of(page.cursor, &[page], view);
        assert!(delta.changes.is_empty());
        assert_eq!(view.to_record().changes.len(), 1);
    }

    #[test]
    fn the_health_report_lists_each_views_reach_size_and_age_by_shard() {
        let registry = MemoryTagRegistry::new();
        block_on(purge_keys(&registry, &tags(&["p:1", "p:2"]), 1, false, 700)).expect("purge");
        let mut views = SyncViews::new(1_000, 100);
        assert_eq!(views.report(1_000), serde_json::json!([]));
        sync(&mut views, &registry, 0, 1_000);
        assert_eq!(
            views.report(1_250),
            serde_json::json!([{"shard": 0, "cursor": 2, "horizon_ms": 0, "keys": 2, "synced_ms_ago": 250}])
        );
    }

    #[test]
    fn changes_come_in_sequence_order_in_pages_and_a_key_purged_again_comes_again() {
        let registry = MemoryTagRegistry::new();
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            block_on(purge_keys(
                &registry,
                &tags(&[key]),
                1,
                false,
                100 + i as u64,
            ))
            .expect("purge");
        }
        let first = block_on(registry.sync(0, Some(0), 2)).expect("sync");
        let keys: Vec<&str> = first.changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(first.more);
        assert_eq!(first.cursor, 2);
        block_on(purge_keys(&registry, &tags(&["a"]), 1, true, 200)).expect("purge");
        let second = block_on(registry.sync(0, Some(first.cursor), 2)).expect("sync");
        let keys: Vec<&str> = second.changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["c", "a"], "a was written again after the cursor");
        assert_eq!(second.changes[1].soft_ms, 200);
        assert_eq!(second.changes[1].hard_ms, 100, "times only move forward");
        assert!(!second.more);
        let none = block_on(registry.sync(0, Some(second.cursor), 2)).expect("sync");
        assert!(none.changes.is_empty());
        assert_eq!(none.cursor, second.cursor);
    }

    #[test]
    fn an_import_merged_into_the_registry_is_seen_by_the_next_sync() {
        let registry = MemoryTagRegistry::new();
        let mut views = SyncViews::new(1_000, 100);
        sync(&mut views, &registry, 0, 1_000);
        let entry = RegistryEntry {
            key: "p:1".to_owned(),
            hard_ms: 1_500,
            soft_ms: 0,
        };
        block_on(registry.merge(0, &[entry])).expect("merge");
        sync(&mut views, &registry, 0, 2_000);
        let view = views.view(0).expect("view");
        assert_eq!(view.times("p:1").hard_ms, 1_500);
    }

    #[test]
    fn an_entry_fetched_at_or_before_the_horizon_is_asked_per_key_and_a_later_one_is_not() {
        let registry = MemoryTagRegistry::new();
        // Purged before this isolate started and left out of its first
        // sync's backfill (one write: "p:2"): only a per-key lookup knows.
        block_on(purge_keys(&registry, &tags(&["p:1"]), 1, false, 500)).expect("purge");
        block_on(purge_keys(&registry, &tags(&["p:2"]), 1, false, 450)).expect("purge");
        let mut views = SyncViews::new(1_000, 100);
        let keys = tags(&["p:1", EVERYTHING_KEY]);
        let no_answers = RegistryMemo::new(1_000, 100);
        assert_eq!(
            views.keys_outside(&keys, 1, 2_000, &no_answers),
            keys,
            "no view yet"
        );
        sync_with(&mut views, &registry, 0, 1_000, 1);
        assert_eq!(
            views.keys_outside(&keys, 1, 400, &no_answers),
            keys,
            "fetched before the horizon"
        );
        assert_eq!(
            views.view(0).map(|v| v.horizon_ms),
            Some(500),
            "the latest purge left out"
        );
        assert_eq!(
            views.keys_outside(&keys, 1, 500, &no_answers),
            keys,
            "at the horizon"
        );
        assert!(views.keys_outside(&keys, 1, 501, &no_answers).is_empty());
        // A purge after the horizon is in the view.
        block_on(purge_keys(&registry, &tags(&["p:1"]), 1, false, 1_200)).expect("purge");
        sync(&mut views, &registry, 0, 1_300);
        let memo = RegistryMemo::new(1_000, 100);
        let answers = views.answers_for(&memo, 1, 1_100, 1_300);
        assert_eq!(entry_state(&keys, 1_100, &answers), EntryState::HardPurged);
        let answers = views.answers_for(&memo, 1, 1_250, 1_300);
        assert_eq!(entry_state(&keys, 1_250, &answers), EntryState::Live);
    }

    #[test]
    fn the_everything_key_purges_every_entry_the_view_decides() {
        let registry = MemoryTagRegistry::new();
        let mut views = SyncViews::new(1_000, 100);
        sync(&mut views, &registry, 0, 1_000);
        block_on(purge_keys(
            &registry,
            &tags(&[EVERYTHING_KEY]),
            1,
            false,
            1_500,
        ))
        .expect("purge");
        sync(&mut views, &registry, 0, 1_600);
        let memo = RegistryMemo::new(1_000, 100);
        let keys = tags(&["host:x", EVERYTHING_KEY]);
        let answers = views.answers_for(&memo, 1, 1_200, 1_600);
        assert_eq!(entry_state(&keys, 1_200, &answers), EntryState::HardPurged);
    }

    #[test]
    fn a_purge_made_in_this_isolate_counts_before_any_sync() {
        let registry = MemoryTagRegistry::new();
        let mut views = SyncViews::new(1_000, 100);
        sync(&mut views, &registry, 0, 1_000);
        let mut memo = RegistryMemo::new(1_000, 100);
        memo.note_purge(&tags(&["p:1"]), false, 1_100);
        let keys = tags(&["p:1", EVERYTHING_KEY]);
        let answers = views.answers_for(&memo, 1, 1_050, 1_100);
        assert_eq!(entry_state(&keys, 1_050, &answers), EntryState::HardPurged);
    }

    #[test]
    fn a_view_too_old_to_trust_makes_entries_revalidate_but_keeps_hard_purges() {
        let registry = MemoryTagRegistry::new();
        let mut views = SyncViews::new(1_000, 100);
        sync(&mut views, &registry, 0, 1_000);
        block_on(purge_keys(&registry, &tags(&["p:1"]), 1, false, 1_500)).expect("purge");
        sync(&mut views, &registry, 0, 2_000);
        let memo = RegistryMemo::new(1_000, 100);
        let limit = 2_000 + views.max_answer_age_ms();
        let live = tags(&["p:2", EVERYTHING_KEY]);
        let dead = tags(&["p:1", EVERYTHING_KEY]);
        let at = |now| views.answers_for(&memo, 1, 1_200, now);
        assert_eq!(entry_state(&live, 1_200, &at(limit)), EntryState::Live);
        assert_eq!(
            entry_state(&live, 1_200, &at(limit + 1)),
            EntryState::SoftPurged
        );
        assert_eq!(
            entry_state(&dead, 1_200, &at(limit + 1)),
            EntryState::HardPurged
        );
    }

    #[test]
    fn a_bounded_view_moves_its_horizon_past_every_key_it_drops() {
        let mut view = ShardView::start(&SyncPage::default(), 0, 0);
        let changes = (1..=10)
            .map(|i| SyncChange {
                key: format!("k{i}"),
                hard_ms: i * 100,
                soft_ms: 0,
                seq: i,
            })
            .collect();
        let page = SyncPage {
            cursor: 10,
            changes,
            ..SyncPage::default()
        };
        view.apply(&page, 1_100, 4);
        assert_eq!(view.len(), 2, "down to half the budget");
        assert_eq!(view.horizon_ms, 800);
        assert!(
            !view.covers(800),
            "entries that k8 could kill are asked per key"
        );
        assert!(view.covers(801));
        assert_eq!(view.times("k10").hard_ms, 1_000);
    }

    #[test]
    fn a_delta_applies_only_when_newer_and_starting_at_or_before_the_cursor() {
        let mut view = ShardView::start(
            &SyncPage {
                cursor: 5,
                ..SyncPage::default()
            },
            1_000,
            1_000,
        );
        let delta = |base, cursor, checked| DcDeltaRecord {
            base,
            cursor,
            checked_at_ms: checked,
            changes: vec![RegistryEntry {
                key: "p:1".to_owned(),
                hard_ms: 1_200,
                soft_ms: 0,
            }],
        };
        assert!(
            !view.apply_delta(&delta(6, 8, 1_500), 100),
            "would skip seq 6"
        );
        assert!(!view.apply_delta(&delta(5, 8, 900), 100), "older");
        assert!(view.apply_delta(&delta(4, 8, 1_500), 100));
        assert_eq!(view.cursor, 8);
        assert_eq!(view.checked_at_ms, 1_500);
        assert_eq!(view.times("p:1").hard_ms, 1_200);
    }

    #[test]
    fn a_whole_view_round_trips_through_its_record_and_anything_else_is_ignored() {
        let mut view = ShardView::start(&SyncPage::default(), 1_000, 1_000);
        view.apply(
            &SyncPage {
                cursor: 3,
                changes: vec![SyncChange {
                    key: "p:1".to_owned(),
                    hard_ms: 1_200,
                    soft_ms: 0,
                    seq: 3,
                }],
                ..SyncPage::default()
            },
            1_300,
            100,
        );
        let response = record_response(&view.to_record(), 60);
        let back: DcViewRecord = record_from_body(response.body()).expect("record");
        assert_eq!(ShardView::from_record(back, 100), view);
        assert_eq!(response.headers()["cache-control"], "max-age=60");
        assert_eq!(record_from_body::<DcViewRecord>(b"<html>"), None);
    }

    #[test]
    fn the_syncer_renews_ahead_of_the_window_and_the_others_only_late() {
        let mut views = SyncViews::new(1_000, 100);
        assert_eq!(views.step(0, None, true, 0), SyncStep::Sync, "no view");
        views.set_view(0, ShardView::start(&SyncPage::default(), 1_000, 1_000));
        // Nobody wrote a delta yet: this isolate is the syncer.
        assert_eq!(views.step(0, None, true, 1_699), SyncStep::Done);
        assert_eq!(views.step(0, None, true, 1_700), SyncStep::Sync);
        // Another isolate's delta is the data centre's: wait for its next one.
        assert_eq!(views.step(0, Some(1_000), true, 1_899), SyncStep::Done);
        assert_eq!(views.step(0, Some(1_000), true, 1_900), SyncStep::Sync);
        // Ours was replaced by another isolate's: that one is the syncer now.
        views.note_written(0, 900);
        assert_eq!(views.step(0, Some(1_000), true, 1_800), SyncStep::Done);
        views.note_written(0, 1_000);
        assert_eq!(
            views.step(0, Some(1_000), true, 1_800),
            SyncStep::Sync,
            "ours"
        );
        // On the request path, only a view past the window is synced.
        assert_eq!(views.step(0, Some(1_000), false, 1_999), SyncStep::Done);
        assert_eq!(views.step(0, Some(1_000), false, 2_000), SyncStep::Sync);
    }

    #[test]
    fn plans_sync_in_the_background_until_the_window_ends_and_once_at_a_time() {
        let mut views = SyncViews::new(1_000, 100);
        let plan = views.plan(&[0, 1, 0], 0);
        assert_eq!(plan.ahead, [0, 1], "no view: in the background, once each");
        assert!(views.plan(&[0], 10).ahead.is_empty(), "claimed");
        views.release(0, 10, 0);
        views.set_view(0, ShardView::start(&SyncPage::default(), 1_000, 1_000));
        assert_eq!(views.plan(&[0], 1_699), SyncPlan::default(), "fresh");
        assert_eq!(views.plan(&[0], 1_700).ahead, [0]);
        views.release(0, 1_700, 50);
        assert_eq!(views.plan(&[0], 1_740), SyncPlan::default(), "resting");
        assert_eq!(views.plan(&[0], 2_000).now, [0], "past the window: waits");
        assert_eq!(
            views.plan(&[0], 2_001),
            SyncPlan::default(),
            "one request at a time; the others use the view"
        );
        views.release(0, 2_001, 0);
        assert_eq!(views.plan(&[0], 20_000).now, [0]);
    }

    #[test]
    fn a_per_key_answer_asked_after_the_view_started_completes_it_for_an_older_entry() {
        let registry = MemoryTagRegistry::new();
        block_on(purge_keys(&registry, &tags(&["p:1"]), 1, false, 500)).expect("purge");
        block_on(purge_keys(&registry, &tags(&["p:2"]), 1, false, 450)).expect("purge");
        let mut views = SyncViews::new(1_000, 100);
        sync_with(&mut views, &registry, 0, 1_000, 1); // started at 1_000, horizon 500
        let keys = tags(&["p:1", EVERYTHING_KEY]);
        let mut memo = RegistryMemo::new(1_000, 100);
        // Asked before the view started: not enough.
        let found = block_on(lookup_keys(&registry, &keys, 1)).expect("lookup");
        memo.record(found, 900);
        assert_eq!(views.keys_outside(&keys, 1, 400, &memo), keys);
        // Asked after: the entry (fetched at 400, before the horizon) needs
        // no more lookups, and a later purge still reaches it through the view.
        let found = block_on(lookup_keys(&registry, &keys, 1)).expect("lookup");
        memo.record(found, 1_100);
        assert!(views.keys_outside(&keys, 1, 400, &memo).is_empty());
        let answers = views.answers_for(&memo, 1, 400, 1_100);
        assert_eq!(entry_state(&keys, 400, &answers), EntryState::HardPurged);
        let answers = views.answers_for(&memo, 1, 600, 1_100);
        assert_eq!(entry_state(&keys, 600, &answers), EntryState::Live);
        block_on(purge_keys(&registry, &tags(&["p:1"]), 1, false, 1_500)).expect("purge");
        sync(&mut views, &registry, 0, 1_600);
        let answers = views.answers_for(&memo, 1, 600, 1_700);
        assert_eq!(entry_state(&keys, 600, &answers), EntryState::HardPurged);
        // Once keys were dropped, the view no longer completes answers.
        let view = views.view_mut(0).expect("view");
        view.bound(0);
        assert_eq!(views.keys_outside(&keys, 1, 400, &memo), keys);
    }
}
