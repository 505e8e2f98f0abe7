//! The tag registry's logic: purges are versions, not deletions. The registry
//! keeps, per key (a tag, `host:`, `url:`, `prefix:` tag, or `*` for
//! "everything"), the time of its last hard and soft purge; a cached entry is
//! dead when any of its keys was purged at or after the time it was fetched.
//!
//! This module owns the decision ([`entry_state`]), the sharding of keys over
//! registry objects ([`shard_of`]), the per-isolate memo of registry answers
//! ([`RegistryMemo`]), the storage trait ([`TagRegistryStore`]) with an
//! in-memory implementation, and the JSON messages the Durable Object speaks.
//! Everything takes an explicit `now`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};

use crate::platform::ports::StoreError;
use crate::purge::sync::{sync_page, SyncPage};
use crate::purge::tags::EVERYTHING_KEY;
use crate::stable_hash::stable_hash;

/// When a key was last purged, in ms since the Unix epoch (0 = never).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagPurgeTimes {
    pub hard_ms: u64,
    pub soft_ms: u64,
}

impl TagPurgeTimes {
    /// Records a purge at `now_ms`. Times never go backwards, so a late or
    /// replayed purge cannot resurrect entries.
    pub fn with_purge(self, soft: bool, now_ms: u64) -> Self {
        if soft {
            Self {
                soft_ms: self.soft_ms.max(now_ms),
                ..self
            }
        } else {
            Self {
                hard_ms: self.hard_ms.max(now_ms),
                ..self
            }
        }
    }
}

/// Whether a cached entry may still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// No key of the entry was purged since it was fetched.
    Live,
    /// Soft-purged (or its registry state is unknown): usable as stale, under
    /// the stale-while-revalidate / stale-if-error rules, while it is refreshed.
    SoftPurged,
    /// Hard-purged: must not be served; fetch from the origin.
    HardPurged,
}

impl EntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryState::Live => "live",
            EntryState::SoftPurged => "soft_purged",
            EntryState::HardPurged => "hard_purged",
        }
    }
}

/// What is known about keys' purge times.
pub trait RegistryAnswers {
    /// `None` when nothing is known about the key (not even "never purged").
    fn times(&self, key: &str) -> Option<TagPurgeTimes>;
}

impl RegistryAnswers for HashMap<String, TagPurgeTimes> {
    fn times(&self, key: &str) -> Option<TagPurgeTimes> {
        self.get(key).copied()
    }
}

/// Decides an entry's state from its tags and the time it was fetched.
///
/// `fetched_at_ms` should be when the request to the origin was *sent*
/// (`EntryMeta::request_time_ms`), not when the response arrived: content the
/// origin produced before a purge must not outlive it. A purge at the very
/// same millisecond counts as after. The `*` ("everything") key is always
/// consulted. An unknown key makes the entry at best [`EntryState::SoftPurged`]:
/// when the registry cannot be asked, entries are revalidated, not trusted.
pub fn entry_state(
    entry_tags: &[String],
    fetched_at_ms: u64,
    answers: &impl RegistryAnswers,
) -> EntryState {
    let mut state = EntryState::Live;
    let keys = entry_tags
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(EVERYTHING_KEY));
    for key in keys {
        match answers.times(key) {
            None => state = EntryState::SoftPurged,
            Some(times) if times.hard_ms != 0 && times.hard_ms >= fetched_at_ms => {
                return EntryState::HardPurged
            }
            Some(times) if times.soft_ms != 0 && times.soft_ms >= fetched_at_ms => {
                state = EntryState::SoftPurged
            }
            Some(_) => {}
        }
    }
    state
}

/// The registry keys an entry depends on: its tags plus `*`.
pub fn registry_keys_for_entry(entry_tags: &[String]) -> Vec<String> {
    let mut keys = entry_tags.to_vec();
    if !keys.iter().any(|k| k == EVERYTHING_KEY) {
        keys.push(EVERYTHING_KEY.to_owned());
    }
    keys
}

/// The shard (registry object) that holds `key`, in `0..shards`.
///
/// Changing the shard count moves keys to other objects, which then know no
/// past purges of them: change `PURGE_SHARDS` together with `CACHE_NAMESPACE`.
pub fn shard_of(key: &str, shards: u32) -> u32 {
    let shards = u64::from(shards.max(1));
    // The remainder is below `shards`, itself a u32.
    u32::try_from(stable_hash(key.as_bytes()) % shards).unwrap_or(0)
}

/// The shards that hold `keys`, ascending, each once.
pub fn shards_of(keys: &[String], shards: u32) -> Vec<u32> {
    let mut held: Vec<u32> = keys.iter().map(|k| shard_of(k, shards)).collect();
    // `sort`, not `sort_unstable`: one sort algorithm in the wasm (docs/assets.md).
    held.sort();
    held.dedup();
    held
}

/// The name of a shard's Durable Object (`idFromName`).
pub fn shard_name(shard: u32) -> String {
    format!("tag-registry-{shard}")
}

/// Groups keys by shard, each shard's keys in the order given, deduplicated.
pub fn keys_by_shard<'a>(
    keys: impl IntoIterator<Item = &'a str>,
    shards: u32,
) -> BTreeMap<u32, Vec<String>> {
    let mut grouped: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for key in keys {
        let group = grouped.entry(shard_of(key, shards)).or_default();
        if !group.iter().any(|k| k == key) {
            group.push(key.to_owned());
        }
    }
    grouped
}

/// The storage of the registry: one object per shard.
#[allow(async_fn_in_trait)] // Workers futures are !Send; callers are generic, not dyn.
pub trait TagRegistryStore {
    /// Records a purge of `keys` (all of one shard) at `now_ms`.
    async fn purge(
        &self,
        shard: u32,
        keys: &[String],
        soft: bool,
        now_ms: u64,
    ) -> Result<(), StoreError>;
    /// The purge times of those `keys` (all of one shard) that were ever purged.
    async fn lookup(
        &self,
        shard: u32,
        keys: &[String],
    ) -> Result<HashMap<String, TagPurgeTimes>, StoreError>;
    /// Up to `limit` entries of one shard whose keys sort after `after`
    /// (`""` for the first page), in key order: a page of an export.
    async fn entries(
        &self,
        shard: u32,
        after: &str,
        limit: usize,
    ) -> Result<Vec<RegistryEntry>, StoreError>;
    /// Merges `entries` (all of one shard) into it: each time only moves
    /// forward, so an import never resurrects entries or loses a later purge.
    /// Every key written gets a new sequence number, like a purge.
    async fn merge(&self, shard: u32, entries: &[RegistryEntry]) -> Result<(), StoreError>;
    /// The keys of one shard written after sequence number `after`, at most
    /// `limit`, in sequence order; with `after = None`, the shard's latest
    /// writes (at most `limit`), its current sequence number and the horizon
    /// over the other rows (see [`crate::purge::sync::sync_page`]).
    async fn sync(
        &self,
        shard: u32,
        after: Option<u64>,
        limit: usize,
    ) -> Result<SyncPage, StoreError>;
}

/// Writes a purge of `keys` to every shard concerned, concurrently. Returns
/// the number of shards written.
pub async fn purge_keys<S: TagRegistryStore>(
    store: &S,
    keys: &[String],
    shards: u32,
    soft: bool,
    now_ms: u64,
) -> Result<usize, StoreError> {
    let grouped = keys_by_shard(keys.iter().map(String::as_str), shards);
    let writes = grouped
        .iter()
        .map(|(shard, keys)| store.purge(*shard, keys, soft, now_ms));
    for outcome in join_all(writes).await {
        outcome?;
    }
    Ok(grouped.len())
}

/// Asks every shard concerned about `keys`, concurrently. Keys missing from
/// the answer were never purged and are answered with zero times.
pub async fn lookup_keys<S: TagRegistryStore>(
    store: &S,
    keys: &[String],
    shards: u32,
) -> Result<HashMap<String, TagPurgeTimes>, StoreError> {
    let grouped = keys_by_shard(keys.iter().map(String::as_str), shards);
    let reads = grouped
        .iter()
        .map(|(shard, keys)| store.lookup(*shard, keys));
    let mut answers: HashMap<String, TagPurgeTimes> = keys
        .iter()
        .map(|k| (k.clone(), TagPurgeTimes::default()))
        .collect();
    for outcome in join_all(reads).await {
        answers.extend(outcome?);
    }
    Ok(answers)
}

/// Asks every shard concerned about `keys`, concurrently, and keeps what
/// the shards that answered said: one unreachable shard must not stop the
/// others' purges from being seen. Returns those answers (keys of answering
/// shards that were never purged get zero times) and the first error.
pub async fn lookup_keys_partial<S: TagRegistryStore>(
    store: &S,
    keys: &[String],
    shards: u32,
) -> (HashMap<String, TagPurgeTimes>, Option<StoreError>) {
    let grouped = keys_by_shard(keys.iter().map(String::as_str), shards);
    let reads = grouped
        .iter()
        .map(|(shard, keys)| store.lookup(*shard, keys));
    let mut answers: HashMap<String, TagPurgeTimes> = HashMap::new();
    let mut error = None;
    for ((_, asked), outcome) in grouped.iter().zip(join_all(reads).await) {
        match outcome {
            Ok(found) => {
                for key in asked {
                    answers.insert(key.clone(), TagPurgeTimes::default());
                }
                answers.extend(found);
            }
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    (answers, error)
}

/// Brings the memo's answers for `keys` up to date: asks the registry about
/// the keys whose answer is missing or older than the window (none, most of
/// the time) and records the answers as of `now_ms`, the time the lookup is
/// sent. The memo is borrowed only around the lookup, never across it. When
/// some shards cannot be reached, the others' answers are still recorded.
pub async fn refresh_memo<S: TagRegistryStore>(
    memo: &RefCell<RegistryMemo>,
    store: &S,
    keys: &[String],
    shards: u32,
    now_ms: u64,
) -> Result<(), StoreError> {
    let stale = memo.borrow_mut().claim_refresh(keys, now_ms);
    refresh_claimed(memo, store, &stale, shards, now_ms).await
}

/// Looks up keys already claimed (by [`RegistryMemo::claim_refresh`] or
/// [`RegistryMemo::claim_refresh_ahead`]), records the answers as of
/// `sent_ms` and releases the claims.
pub async fn refresh_claimed<S: TagRegistryStore>(
    memo: &RefCell<RegistryMemo>,
    store: &S,
    claimed: &[String],
    shards: u32,
    sent_ms: u64,
) -> Result<(), StoreError> {
    if claimed.is_empty() {
        return Ok(());
    }
    let (found, error) = lookup_keys_partial(store, claimed, shards).await;
    let mut memo = memo.borrow_mut();
    memo.release(claimed);
    memo.record(found, sent_ms);
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A registry answer shared by the isolates of one data centre through its
/// Cache API (`PURGE_DC_MEMO`): the times and when the registry was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DcMemoAnswer {
    pub hard_ms: u64,
    pub soft_ms: u64,
    pub checked_at_ms: u64,
}

impl DcMemoAnswer {
    pub fn new(times: TagPurgeTimes, checked_at_ms: u64) -> Self {
        Self {
            hard_ms: times.hard_ms,
            soft_ms: times.soft_ms,
            checked_at_ms,
        }
    }

    pub fn times(&self) -> TagPurgeTimes {
        TagPurgeTimes {
            hard_ms: self.hard_ms,
            soft_ms: self.soft_ms,
        }
    }

    /// `None` for anything that is not such an answer (never trusted).
    pub fn from_body(body: &[u8]) -> Option<Self> {
        crate::purge::sync::record_from_body(body)
    }

    /// The Cache API entry: kept for the window (rounded up to a second).
    pub fn to_response(&self, window_ms: u64) -> http::Response<crate::Body> {
        crate::purge::sync::record_response(self, window_ms.div_ceil(1000))
    }
}

/// Where the Cache API keys of registry answers and shard views start (a
/// reserved host no client URL can have).
pub const REGISTRY_RECORDS_URL: &str = "https://cachefront-registry.invalid/";

/// Whether a Cache API key holds registry data, not a client response.
pub fn is_registry_record(cache_key: &str) -> bool {
    cache_key.starts_with(REGISTRY_RECORDS_URL)
}

/// The Cache API key of a registry key's shared answer: on a reserved host
/// (`.invalid` never resolves, so no client URL can have it), the key in hex
/// (tags may hold any printable character).
pub fn dc_memo_url(namespace: &str, key: &str) -> String {
    crate::cache::key::record_url(REGISTRY_RECORDS_URL, namespace, key)
}

/// Per-isolate memo of registry answers, so the hit path normally makes no
/// subrequest: an answer is trusted for `window_ms` after it was fetched.
///
/// Use: `keys_to_refresh` → (if any) `lookup_keys` → `record(found,
/// sent_at_ms)` with the time the lookup was *sent*; then [`entry_state`]
/// with `answers_at(now_ms)`. When a lookup fails, answers up to
/// [`RegistryMemo::max_answer_age_ms`] old are still trusted; older or missing
/// ones make the entry soft-purged (revalidated), never live.
#[derive(Debug, Clone)]
pub struct RegistryMemo {
    window_ms: u64,
    max_keys: usize,
    known: HashMap<String, MemoEntry>,
    /// Keys a request is refreshing now, and since when.
    refreshing: HashMap<String, u64>,
}

/// The memo's answers as of a time: too-old answers keep their hard purge
/// time but count as soft-purged.
#[derive(Debug, Clone, Copy)]
pub struct MemoAnswers<'a> {
    memo: &'a RegistryMemo,
    now_ms: u64,
}

impl RegistryAnswers for MemoAnswers<'_> {
    fn times(&self, key: &str) -> Option<TagPurgeTimes> {
        let entry = self.memo.known.get(key)?;
        let age = self.now_ms.saturating_sub(entry.checked_at_ms);
        if age > self.memo.max_answer_age_ms() {
            return Some(TagPurgeTimes {
                soft_ms: u64::MAX,
                ..entry.times
            });
        }
        Some(entry.times)
    }
}

#[derive(Debug, Clone, Copy)]
struct MemoEntry {
    times: TagPurgeTimes,
    checked_at_ms: u64,
}

impl RegistryMemo {
    /// `window_ms` is `PURGE_SYNC_MS`; `max_keys` bounds the memory used.
    pub fn new(window_ms: u64, max_keys: usize) -> Self {
        Self {
            window_ms,
            max_keys: max_keys.max(1),
            known: HashMap::new(),
            refreshing: HashMap::new(),
        }
    }

    /// Like [`Self::keys_to_refresh`], but one request at a time refreshes a
    /// key that still has a usable answer: the others go on with that answer
    /// instead of all asking the registry at once when the window ends. The
    /// returned keys are claimed until [`Self::release`] (or for two windows,
    /// in case that request never finishes). Keys without an answer are
    /// always returned.
    pub fn claim_refresh(&mut self, keys: &[String], now_ms: u64) -> Vec<String> {
        let stale = self.keys_to_refresh(keys, now_ms);
        let claim_ms = self.window_ms.saturating_mul(2).max(2_000);
        let usable_ms = self.max_answer_age_ms();
        let mut claimed = Vec::with_capacity(stale.len());
        for key in stale {
            let usable = self
                .known
                .get(&key)
                .is_some_and(|e| now_ms.saturating_sub(e.checked_at_ms) < usable_ms);
            let taken = self
                .refreshing
                .get(&key)
                .is_some_and(|since| now_ms.saturating_sub(*since) < claim_ms);
            if usable && taken {
                continue;
            }
            self.refreshing.insert(key.clone(), now_ms);
            claimed.push(key);
        }
        claimed
    }

    /// Keys whose answer is still inside the window but in its second half,
    /// and that no request is refreshing: the caller refreshes them in the
    /// background (never on the request path) so that, while a key is in
    /// use, its answer is renewed before it expires and no request waits.
    /// Claimed like [`Self::claim_refresh`]; release with [`Self::release`].
    pub fn claim_refresh_ahead(&mut self, keys: &[String], now_ms: u64) -> Vec<String> {
        let claim_ms = self.window_ms.saturating_mul(2).max(2_000);
        let half = self.window_ms / 2;
        let mut claimed: Vec<String> = Vec::new();
        for key in keys {
            let aging = self.known.get(key).is_some_and(|e| {
                let age = now_ms.saturating_sub(e.checked_at_ms);
                e.checked_at_ms != 0 && age >= half && age < self.window_ms
            });
            let taken = self
                .refreshing
                .get(key)
                .is_some_and(|since| now_ms.saturating_sub(*since) < claim_ms);
            if aging && !taken && !claimed.contains(key) {
                self.refreshing.insert(key.clone(), now_ms);
                claimed.push(key.clone());
            }
        }
        claimed
    }

    /// Ends the claims of [`Self::claim_refresh`], whatever the lookup gave.
    pub fn release(&mut self, keys: &[String]) {
        for key in keys {
            self.refreshing.remove(key);
        }
    }

    /// How old an answer may get, while the registry cannot be reached,
    /// before entries depending on it are revalidated: 10 windows, at least 10 s.
    pub fn max_answer_age_ms(&self) -> u64 {
        self.window_ms.saturating_mul(10).max(10_000)
    }

    /// What the memo knows at `now_ms`, for [`entry_state`].
    pub fn answers_at(&self, now_ms: u64) -> MemoAnswers<'_> {
        MemoAnswers { memo: self, now_ms }
    }

    /// The keys whose answer is missing or older than the window at `now_ms`.
    pub fn keys_to_refresh(&self, keys: &[String], now_ms: u64) -> Vec<String> {
        let mut stale: Vec<String> = Vec::new();
        for key in keys {
            let fresh = self
                .known
                .get(key)
                .is_some_and(|e| now_ms.saturating_sub(e.checked_at_ms) < self.window_ms);
            if !fresh && !stale.contains(key) {
                stale.push(key.clone());
            }
        }
        stale
    }

    /// Stores fresh answers checked at `now_ms` (from [`lookup_keys`]).
    pub fn record(&mut self, answers: HashMap<String, TagPurgeTimes>, now_ms: u64) {
        if self.known.len() + answers.len() > self.max_keys {
            let window = self.window_ms;
            self.known
                .retain(|_, e| now_ms.saturating_sub(e.checked_at_ms) < window);
            if self.known.len() + answers.len() > self.max_keys {
                self.known.clear();
            }
        }
        for (key, times) in answers {
            let (times, checked_at_ms) = match self.known.get(&key) {
                // Keep a local purge the registry may not show yet, and the
                // later check: times only move forward, so an answer checked
                // earlier (from a slower lookup, or the data centre's memo)
                // never makes a later one look older.
                Some(old) => (
                    TagPurgeTimes {
                        hard_ms: old.times.hard_ms.max(times.hard_ms),
                        soft_ms: old.times.soft_ms.max(times.soft_ms),
                    },
                    old.checked_at_ms.max(now_ms),
                ),
                None => (times, now_ms),
            };
            self.known.insert(
                key,
                MemoEntry {
                    times,
                    checked_at_ms,
                },
            );
        }
    }

    /// Applies a purge made from this isolate at once, so its own next
    /// request never serves what it just purged.
    pub fn note_purge(&mut self, keys: &[String], soft: bool, now_ms: u64) {
        for key in keys {
            match self.known.get_mut(key) {
                Some(entry) => entry.times = entry.times.with_purge(soft, now_ms),
                None => {
                    let times = TagPurgeTimes::default().with_purge(soft, now_ms);
                    // Not "checked": the registry may know of later purges.
                    self.known.insert(
                        key.clone(),
                        MemoEntry {
                            times,
                            checked_at_ms: 0,
                        },
                    );
                }
            }
        }
    }

    /// When `key`'s answer was asked of the registry (sent), if it was.
    pub fn checked_at(&self, key: &str) -> Option<u64> {
        self.known
            .get(key)
            .map(|e| e.checked_at_ms)
            .filter(|at| *at != 0)
    }

    /// The times known for `key` (answered or purged here), however old.
    pub fn known_times(&self, key: &str) -> Option<TagPurgeTimes> {
        self.known.get(key).map(|e| e.times)
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

/// Most keys one registry message may carry.
pub const MAX_KEYS_PER_MESSAGE: usize = 1000;

/// `POST /purge` to a registry object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeMessage {
    pub tags: Vec<String>,
    #[serde(default)]
    pub soft: bool,
    pub now_ms: u64,
}

/// `POST /lookup` to a registry object; answered with a [`LookupAnswer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupMessage {
    pub tags: Vec<String>,
}

/// The purge times of the asked keys that were ever purged.
pub type LookupAnswer = HashMap<String, TagPurgeTimes>;

/// One key of the registry with its purge times (export and import).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntry {
    pub key: String,
    pub hard_ms: u64,
    pub soft_ms: u64,
}

impl RegistryEntry {
    /// Key order, for `sort_by` (one function for every caller: one copy
    /// of the sort in the wasm).
    pub fn key_order(a: &Self, b: &Self) -> std::cmp::Ordering {
        a.key.cmp(&b.key)
    }

    pub fn times(&self) -> TagPurgeTimes {
        TagPurgeTimes {
            hard_ms: self.hard_ms,
            soft_ms: self.soft_ms,
        }
    }
}

/// `POST /entries` to a registry object; answered with a list of
/// [`RegistryEntry`] in key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntriesMessage {
    pub after: String,
    pub limit: usize,
}

/// `POST /merge` to a registry object; answered with `{"written":n}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeMessage {
    pub entries: Vec<RegistryEntry>,
}

/// One shard's rows: key → (times, sequence number of its last write).
type ShardRows = HashMap<String, (TagPurgeTimes, u64)>;

/// The registry in memory (native tests and benches).
#[derive(Debug, Default)]
pub struct MemoryTagRegistry {
    shards: RefCell<HashMap<u32, ShardRows>>,
    /// Per shard: the last sequence number given.
    seqs: RefCell<HashMap<u32, u64>>,
    /// Every (shard, operation) seen, to check routing in tests.
    calls: RefCell<Vec<(u32, &'static str)>>,
    failing: RefCell<bool>,
}

impl MemoryTagRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later call fail (or succeed again), as an unreachable registry.
    pub fn set_failing(&self, failing: bool) {
        *self.failing.borrow_mut() = failing;
    }

    /// The (shard, "purge" | "lookup" | "entries" | "merge" | "sync") calls made so far.
    pub fn calls(&self) -> Vec<(u32, &'static str)> {
        self.calls.borrow().clone()
    }

    /// Writes `times` into `key` of `shard` with the shard's next sequence number.
    fn write(&self, shard: u32, key: &str, times: TagPurgeTimes) {
        let mut seqs = self.seqs.borrow_mut();
        let seq = seqs.entry(shard).or_default();
        *seq += 1;
        let mut shards = self.shards.borrow_mut();
        let row = shards
            .entry(shard)
            .or_default()
            .entry(key.to_owned())
            .or_default();
        *row = (
            TagPurgeTimes {
                hard_ms: row.0.hard_ms.max(times.hard_ms),
                soft_ms: row.0.soft_ms.max(times.soft_ms),
            },
            *seq,
        );
    }

    fn check(&self, shard: u32, op: &'static str) -> Result<(), StoreError> {
        self.calls.borrow_mut().push((shard, op));
        if *self.failing.borrow() {
            return Err(StoreError("tag registry unavailable".to_owned()));
        }
        Ok(())
    }
}

impl TagRegistryStore for MemoryTagRegistry {
    async fn purge(
        &self,
        shard: u32,
        keys: &[String],
        soft: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.check(shard, "purge")?;
        for key in keys {
            self.write(
                shard,
                key,
                TagPurgeTimes::default().with_purge(soft, now_ms),
            );
        }
        Ok(())
    }

    async fn lookup(
        &self,
        shard: u32,
        keys: &[String],
    ) -> Result<HashMap<String, TagPurgeTimes>, StoreError> {
        self.check(shard, "lookup")?;
        let shards = self.shards.borrow();
        let Some(table) = shards.get(&shard) else {
            return Ok(HashMap::new());
        };
        Ok(keys
            .iter()
            .filter_map(|k| table.get(k).map(|(t, _)| (k.clone(), *t)))
            .collect())
    }

    async fn entries(
        &self,
        shard: u32,
        after: &str,
        limit: usize,
    ) -> Result<Vec<RegistryEntry>, StoreError> {
        self.check(shard, "entries")?;
        let shards = self.shards.borrow();
        let Some(table) = shards.get(&shard) else {
            return Ok(Vec::new());
        };
        let sorted: BTreeMap<&String, &TagPurgeTimes> =
            table.iter().map(|(k, (t, _))| (k, t)).collect();
        Ok(sorted
            .into_iter()
            .filter(|(key, _)| key.as_str() > after)
            .take(limit)
            .map(|(key, times)| RegistryEntry {
                key: key.clone(),
                hard_ms: times.hard_ms,
                soft_ms: times.soft_ms,
            })
            .collect())
    }

    async fn merge(&self, shard: u32, entries: &[RegistryEntry]) -> Result<(), StoreError> {
        self.check(shard, "merge")?;
        for entry in entries {
            self.write(shard, &entry.key, entry.times());
        }
        Ok(())
    }

    async fn sync(
        &self,
        shard: u32,
        after: Option<u64>,
        limit: usize,
    ) -> Result<SyncPage, StoreError> {
        self.check(shard, "sync")?;
        let shards = self.shards.borrow();
        let current = self.seqs.borrow().get(&shard).copied().unwrap_or(0);
        let mut page = match shards.get(&shard) {
            Some(table) => sync_page(table.iter().map(|(k, (t, seq))| (k, t, *seq)), after, limit),
            None => SyncPage::default(),
        };
        if after.is_none() {
            page.cursor = current;
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    #[test]
    fn the_shards_of_keys_are_each_keys_shard_once_ascending() {
        let keys: Vec<String> = (0..40).map(|i| format!("tag-{i}")).collect();
        let held = shards_of(&keys, 4);
        let mut expected: Vec<u32> = keys.iter().map(|k| shard_of(k, 4)).collect();
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(held, expected);
        assert_eq!(held, vec![0, 1, 2, 3], "40 keys reach all four shards");
        assert!(shards_of(&[], 4).is_empty());
    }

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn answers(list: &[(&str, u64, u64)]) -> HashMap<String, TagPurgeTimes> {
        let mut map: HashMap<String, TagPurgeTimes> = list
            .iter()
            .map(|(k, hard_ms, soft_ms)| {
                (
                    (*k).to_owned(),
                    TagPurgeTimes {
                        hard_ms: *hard_ms,
                        soft_ms: *soft_ms,
                    },
                )
            })
            .collect();
        map.entry(EVERYTHING_KEY.to_owned()).or_default();
        map
    }

    #[test]
    fn entry_is_live_when_nothing_was_purged_after_it_was_fetched() {
        let known = answers(&[("a", 500, 600), ("host:x", 0, 0)]);
        assert_eq!(
            entry_state(&tags(&["a", "host:x"]), 1_000, &known),
            EntryState::Live
        );
    }

    #[test]
    fn entry_is_dead_when_any_tag_was_hard_purged_after_it_was_fetched() {
        let known = answers(&[("a", 0, 0), ("b", 1_500, 0)]);
        assert_eq!(
            entry_state(&tags(&["a", "b"]), 1_000, &known),
            EntryState::HardPurged
        );
    }

    #[test]
    fn purge_in_the_same_millisecond_as_the_fetch_counts_as_after() {
        let known = answers(&[("a", 1_000, 0)]);
        assert_eq!(
            entry_state(&tags(&["a"]), 1_000, &known),
            EntryState::HardPurged
        );
    }

    #[test]
    fn soft_purge_makes_the_entry_stale_and_hard_wins_over_soft() {
        let known = answers(&[("a", 0, 2_000), ("b", 3_000, 0)]);
        assert_eq!(
            entry_state(&tags(&["a"]), 1_000, &known),
            EntryState::SoftPurged
        );
        assert_eq!(
            entry_state(&tags(&["a", "b"]), 1_000, &known),
            EntryState::HardPurged
        );
    }

    #[test]
    fn everything_epoch_kills_every_entry_without_being_listed() {
        let mut known = answers(&[("a", 0, 0)]);
        known.insert(
            EVERYTHING_KEY.to_owned(),
            TagPurgeTimes {
                hard_ms: 5_000,
                soft_ms: 0,
            },
        );
        assert_eq!(
            entry_state(&tags(&["a"]), 4_000, &known),
            EntryState::HardPurged
        );
        assert_eq!(entry_state(&tags(&["a"]), 6_000, &known), EntryState::Live);
    }

    #[test]
    fn unknown_registry_state_makes_the_entry_revalidate() {
        let known = answers(&[("a", 0, 0)]);
        assert_eq!(
            entry_state(&tags(&["a", "never-asked"]), 1_000, &known),
            EntryState::SoftPurged
        );
    }

    #[test]
    fn purge_times_never_go_backwards() {
        let times = TagPurgeTimes::default()
            .with_purge(false, 2_000)
            .with_purge(false, 1_000)
            .with_purge(true, 3_000)
            .with_purge(true, 2_500);
        assert_eq!(
            times,
            TagPurgeTimes {
                hard_ms: 2_000,
                soft_ms: 3_000
            }
        );
    }

    #[test]
    fn shards_are_stable_and_within_range() {
        for key in ["a", "product:7", "host:example.com", "*"] {
            let shard = shard_of(key, 8);
            assert!(shard < 8);
            assert_eq!(shard, shard_of(key, 8));
        }
        assert_eq!(shard_of("anything", 1), 0);
        assert_eq!(shard_of("anything", 0), 0, "zero shards is treated as one");
        // FNV-1a("a") = 0xaf63dc4c8601ec8c; mod 8 = 4.
        assert_eq!(shard_of("a", 8), 4);
        let spread: std::collections::HashSet<u32> =
            (0..200).map(|i| shard_of(&format!("tag-{i}"), 8)).collect();
        assert_eq!(spread.len(), 8, "keys spread over every shard");
    }

    #[test]
    fn keys_are_grouped_by_shard_once_each() {
        let grouped = keys_by_shard(["a", "b", "a", "c"], 4);
        let total: usize = grouped.values().map(Vec::len).sum();
        assert_eq!(total, 3);
        for (shard, keys) in &grouped {
            assert!(keys.iter().all(|k| shard_of(k, 4) == *shard));
        }
    }

    #[test]
    fn memo_asks_only_for_missing_or_expired_keys() {
        let mut memo = RegistryMemo::new(1_000, 100);
        let keys = tags(&["a", "b"]);
        assert_eq!(memo.keys_to_refresh(&keys, 10_000), keys);
        memo.record(answers(&[("a", 0, 0), ("b", 0, 0)]), 10_000);
        assert!(memo.keys_to_refresh(&keys, 10_999).is_empty());
        assert_eq!(memo.keys_to_refresh(&keys, 11_000), keys);
        assert_eq!(memo.keys_to_refresh(&tags(&["a", "c", "c"]), 10_500), ["c"]);
    }

    #[test]
    fn memo_applies_local_purges_at_once_and_keeps_them_over_older_answers() {
        let mut memo = RegistryMemo::new(1_000, 100);
        memo.record(answers(&[("a", 0, 0)]), 10_000);
        memo.note_purge(&tags(&["a", "new"]), false, 10_100);
        assert_eq!(
            entry_state(&tags(&["a"]), 10_050, &memo.answers_at(10_100)),
            EntryState::HardPurged
        );
        // A lagging answer from the registry does not undo the local purge.
        memo.record(answers(&[("a", 0, 0)]), 10_200);
        assert_eq!(
            memo.answers_at(10_200).times("a").map(|t| t.hard_ms),
            Some(10_100)
        );
        // A key only purged locally still gets asked about.
        assert_eq!(memo.keys_to_refresh(&tags(&["new"]), 10_200), ["new"]);
    }

    #[test]
    fn memo_stays_within_its_key_budget() {
        let mut memo = RegistryMemo::new(1_000, 3);
        memo.record(answers(&[("a", 0, 0)]), 0); // a and *
        memo.record(answers(&[("b", 0, 0), ("c", 0, 0)]), 5_000);
        assert!(memo.len() <= 3);
        assert!(memo.answers_at(5_000).times("b").is_some());
    }

    #[test]
    fn purge_and_lookup_go_to_the_shard_of_each_key() {
        let registry = MemoryTagRegistry::new();
        let keys = tags(&["a", "b", "c", "d"]);
        let written = block_on(purge_keys(&registry, &keys[..2], 4, false, 7_000)).expect("purge");
        assert_eq!(written, keys_by_shard(["a", "b"], 4).len());
        let found = block_on(lookup_keys(&registry, &keys, 4)).expect("lookup");
        assert_eq!(found["a"].hard_ms, 7_000);
        assert_eq!(found["b"].hard_ms, 7_000);
        assert_eq!(found["c"], TagPurgeTimes::default(), "never purged = zero");
        for (shard, _) in registry.calls() {
            assert!(shard < 4);
        }
    }

    #[test]
    fn memo_refresh_through_the_store_sees_a_purge_from_another_isolate() {
        let registry = MemoryTagRegistry::new();
        let entry = registry_keys_for_entry(&tags(&["product:7", "host:x"]));
        let mut memo = RegistryMemo::new(1_000, 100);
        let refresh = |memo: &mut RegistryMemo, now| {
            let stale = memo.keys_to_refresh(&entry, now);
            if !stale.is_empty() {
                let found = block_on(lookup_keys(&registry, &stale, 4)).expect("lookup");
                memo.record(found, now);
            }
        };
        refresh(&mut memo, 1_000);
        assert_eq!(
            entry_state(&entry, 900, &memo.answers_at(1_000)),
            EntryState::Live
        );
        block_on(purge_keys(
            &registry,
            &tags(&["product:7"]),
            4,
            false,
            1_200,
        ))
        .expect("purge");
        refresh(&mut memo, 1_500);
        // Within the window the memo still answers (no subrequest)...
        let lookups = keys_by_shard(entry.iter().map(String::as_str), 4).len();
        assert_eq!(
            registry.calls().len(),
            lookups + 1,
            "no lookup within the window"
        );
        assert_eq!(
            entry_state(&entry, 900, &memo.answers_at(1_500)),
            EntryState::Live
        );
        // ...and after it the purge is seen.
        refresh(&mut memo, 2_000);
        assert_eq!(
            entry_state(&entry, 900, &memo.answers_at(2_000)),
            EntryState::HardPurged
        );
    }

    #[test]
    fn refresh_memo_asks_the_registry_only_once_per_window() {
        let registry = MemoryTagRegistry::new();
        let memo = RefCell::new(RegistryMemo::new(1_000, 100));
        let keys = registry_keys_for_entry(&tags(&["a", "host:x"]));
        block_on(refresh_memo(&memo, &registry, &keys, 2, 10_000)).expect("refresh");
        let after_first = registry.calls().len();
        assert!(after_first > 0);
        block_on(refresh_memo(&memo, &registry, &keys, 2, 10_900)).expect("refresh");
        assert_eq!(
            registry.calls().len(),
            after_first,
            "hit path: no subrequest"
        );
        registry.set_failing(true);
        assert!(block_on(refresh_memo(&memo, &registry, &keys, 2, 11_000)).is_err());
        assert_eq!(
            entry_state(&keys, 9_000, &memo.borrow().answers_at(11_000)),
            EntryState::Live,
            "a failed refresh keeps the last answers"
        );
    }

    #[test]
    fn answers_too_old_to_trust_make_entries_revalidate_but_keep_hard_purges() {
        let mut memo = RegistryMemo::new(1_000, 100);
        memo.record(answers(&[("a", 0, 0), ("b", 500, 0)]), 1_000);
        let limit = 1_000 + memo.max_answer_age_ms();
        assert_eq!(
            entry_state(&tags(&["a"]), 900, &memo.answers_at(limit)),
            EntryState::Live,
            "a registry outage shorter than the limit changes nothing"
        );
        assert_eq!(
            entry_state(&tags(&["a"]), 900, &memo.answers_at(limit + 1)),
            EntryState::SoftPurged
        );
        assert_eq!(
            entry_state(&tags(&["b"]), 400, &memo.answers_at(limit + 1)),
            EntryState::HardPurged
        );
    }

    #[test]
    fn registry_messages_have_a_fixed_json_shape() {
        let purge: PurgeMessage =
            serde_json::from_str(r#"{"tags":["a"],"soft":true,"now_ms":5}"#).expect("purge");
        assert_eq!(
            purge,
            PurgeMessage {
                tags: tags(&["a"]),
                soft: true,
                now_ms: 5
            }
        );
        assert!(serde_json::from_str::<LookupMessage>(r#"{"tags":[],"x":1}"#).is_err());
        let answer: LookupAnswer =
            serde_json::from_str(r#"{"a":{"hard_ms":1,"soft_ms":2}}"#).expect("answer");
        assert_eq!(answer["a"].soft_ms, 2);
    }

    #[test]
    fn one_request_at_a_time_refreshes_a_key_that_still_has_an_answer() {
        let mut memo = RegistryMemo::new(1_000, 100);
        let keys = vec!["tag:a".to_owned()];
        // No answer yet: every request asks.
        assert_eq!(memo.claim_refresh(&keys, 0), keys);
        assert_eq!(memo.claim_refresh(&keys, 0), keys);
        memo.release(&keys);
        memo.record(
            HashMap::from([("tag:a".to_owned(), TagPurgeTimes::default())]),
            0,
        );
        assert!(memo.claim_refresh(&keys, 500).is_empty(), "fresh");
        // The window ends: the first request refreshes, the others use the answer.
        assert_eq!(memo.claim_refresh(&keys, 1_500), keys);
        assert!(memo.claim_refresh(&keys, 1_501).is_empty());
        // A claim that was never released lapses after two windows.
        assert_eq!(memo.claim_refresh(&keys, 3_600), keys);
        memo.release(&keys);
        // Past the usable age, every request asks again.
        assert_eq!(memo.claim_refresh(&keys, 20_000), keys);
        assert_eq!(memo.claim_refresh(&keys, 20_000), keys);
    }

    #[test]
    fn answers_in_the_second_half_of_their_window_are_claimed_once_for_a_background_refresh() {
        let mut memo = RegistryMemo::new(1_000, 100);
        let keys = tags(&["a"]);
        assert!(
            memo.claim_refresh_ahead(&keys, 0).is_empty(),
            "no answer yet"
        );
        memo.record(answers(&[("a", 0, 0)]), 10_000);
        assert!(
            memo.claim_refresh_ahead(&keys, 10_499).is_empty(),
            "first half"
        );
        assert_eq!(memo.claim_refresh_ahead(&keys, 10_500), keys);
        assert!(
            memo.claim_refresh_ahead(&keys, 10_600).is_empty(),
            "one refresh at a time"
        );
        // The request path does not wait meanwhile: the answer is still fresh.
        assert!(memo.keys_to_refresh(&keys, 10_600).is_empty());
        memo.release(&keys);
        memo.record(answers(&[("a", 0, 0)]), 10_600);
        assert!(
            memo.keys_to_refresh(&keys, 11_500).is_empty(),
            "renewed in time"
        );
        assert!(
            memo.claim_refresh_ahead(&keys, 11_700).is_empty(),
            "expired answers are the request path's, not refreshed ahead"
        );
    }

    #[test]
    fn an_earlier_answer_never_makes_a_later_one_look_older() {
        let mut memo = RegistryMemo::new(1_000, 100);
        memo.record(answers(&[("a", 0, 0)]), 10_000);
        memo.record(answers(&[("a", 0, 0)]), 9_200);
        assert!(memo.keys_to_refresh(&tags(&["a"]), 10_900).is_empty());
    }

    /// One shard down: the registry answers of the others are kept.
    struct OneShardDown(MemoryTagRegistry, u32);

    impl TagRegistryStore for OneShardDown {
        async fn purge(
            &self,
            shard: u32,
            keys: &[String],
            soft: bool,
            now_ms: u64,
        ) -> Result<(), StoreError> {
            self.0.purge(shard, keys, soft, now_ms).await
        }
        async fn lookup(
            &self,
            shard: u32,
            keys: &[String],
        ) -> Result<HashMap<String, TagPurgeTimes>, StoreError> {
            if shard == self.1 {
                return Err(StoreError("down".to_owned()));
            }
            self.0.lookup(shard, keys).await
        }
        async fn entries(
            &self,
            shard: u32,
            after: &str,
            limit: usize,
        ) -> Result<Vec<RegistryEntry>, StoreError> {
            self.0.entries(shard, after, limit).await
        }
        async fn merge(&self, shard: u32, entries: &[RegistryEntry]) -> Result<(), StoreError> {
            self.0.merge(shard, entries).await
        }
        async fn sync(
            &self,
            shard: u32,
            after: Option<u64>,
            limit: usize,
        ) -> Result<SyncPage, StoreError> {
            self.0.sync(shard, after, limit).await
        }
    }

    #[test]
    fn a_purge_on_a_reachable_shard_is_seen_while_another_shard_is_down() {
        let keys = tags(&["a", "b", "c", "d", "e", "f"]);
        let grouped = keys_by_shard(keys.iter().map(String::as_str), 4);
        let (down, _) = grouped.iter().next().expect("a shard");
        let (up, up_keys) = grouped.iter().last().expect("another shard");
        assert_ne!(down, up);
        let store = OneShardDown(MemoryTagRegistry::new(), *down);
        block_on(purge_keys(&store.0, &up_keys[..1], 4, false, 5_000)).expect("purge");
        let memo = RefCell::new(RegistryMemo::new(1_000, 100));
        let outcome = block_on(refresh_memo(&memo, &store, &keys, 4, 6_000));
        assert!(outcome.is_err(), "the failure is reported");
        assert_eq!(
            entry_state(&up_keys[..1], 4_000, &memo.borrow().answers_at(6_000)),
            EntryState::HardPurged
        );
    }

    #[test]
    fn dc_memo_answers_round_trip_and_anything_else_is_ignored() {
        let answer = DcMemoAnswer::new(
            TagPurgeTimes {
                hard_ms: 5,
                soft_ms: 6,
            },
            7,
        );
        let response = answer.to_response(1_500);
        assert_eq!(DcMemoAnswer::from_body(response.body()), Some(answer));
        assert_eq!(response.headers()["cache-control"], "max-age=2");
        assert_eq!(DcMemoAnswer::from_body(b"<html>"), None);
        assert_eq!(
            dc_memo_url("v1", "p:1"),
            "https://cachefront-registry.invalid/v1/703a31"
        );
    }
}
