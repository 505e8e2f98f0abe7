//! The simulated platform: implementations of the core's ports
//! ([`cachefront::platform::Platform`]) that keep the real semantics (the
//! registry *is* [`MemoryTagRegistry`], the caches keep what they are given)
//! and add what the network adds: round trips, a per-shard queue, outages,
//! KV propagation delay, and when a Cache API write becomes visible.
//!
//! Requests take no simulated time inside the core: each runs to completion
//! at its arrival time, and the ports add up the latency it *would* have
//! seen in a [`Ctx`] (the registry wait is the slowest shard of a lookup, as
//! the core asks the shards concurrently). What a request stores in its data
//! centre's Cache API becomes visible to the other isolates only after that
//! latency, which is what makes concurrent refills (the herd) visible; a
//! read sees the store as it is at the reading request's own time (its
//! arrival plus its latency so far), so a request waiting on another
//! isolate's fill (`DC_COLLAPSE`) sees it land.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use cachefront::origin::health::SharedHealth;
use cachefront::origin::pool::OriginConfig;
use cachefront::platform::memory::{MemoryAssets, MemoryCloudflareApi, MemoryStreams, TaskQueue};
use cachefront::platform::{
    CacheStore, Clock, GlobalStore, HealthStore, OriginError, OriginFetch, Platform, StoreError,
    TagRegistryStore,
};
use cachefront::purge::registry::{MemoryTagRegistry, RegistryEntry, TagPurgeTimes};
use cachefront::purge::sync::SyncPage;
use cachefront::Body;
use http::{Request, Response};

use crate::world::REGIONS;

/// What the request (or background task) being run has met so far.
#[derive(Debug, Default)]
pub struct Ctx {
    /// The data centre running it.
    pub dc: usize,
    pub region: usize,
    /// How many real isolates the running one stands for: per-isolate work
    /// (client requests, per-key lookups, origin fetches, KV operations)
    /// counts with it.
    pub weight: f64,
    /// How many real data centres its data centre stands for: a data
    /// centre's sync of a shard counts with it (see [`call_weight`]).
    pub dc_weight: f64,
    /// The one weight every call had before calls were weighted by kind
    /// (all isolates / simulated isolates), for the comparison row.
    pub legacy_weight: f64,
    /// Background work (after the response): its waits are not the client's.
    pub background: bool,
    /// Latency met so far in this request, ms (origin, Cache API).
    pub elapsed_ms: f64,
    /// Slowest registry lookup on the client's path, ms (0: none).
    pub registry_wait_ms: f64,
    /// Origin fetches made by this request (and its background work).
    pub origin_fetches: u32,
    /// A registry call failed (shard down or overloaded).
    pub registry_failed: bool,
}

/// The simulated clock, shared by everything. `sleep` does not move it
/// (requests take no simulated time); it adds to the request's latency.
#[derive(Clone, Default)]
pub struct SimClock {
    pub now_ms: Rc<Cell<u64>>,
    pub ctx: Rc<RefCell<Ctx>>,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    async fn sleep(&self, ms: u64) {
        self.ctx.borrow_mut().elapsed_ms += ms as f64;
    }
}

/// Latency of one Cache API operation inside a data centre, ms.
pub const CACHE_API_MS: f64 = 2.0;

/// The writes of one key: each becomes visible at its own time (when the
/// writing request would have made it), and a read sees the one that
/// landed last before it. Writes that landed before the latest landed one
/// are dropped.
#[derive(Default)]
struct Slot {
    writes: Vec<(u64, Response<Body>)>,
}

impl Slot {
    /// The index of the write that landed last at `t`, if any did.
    fn landed(&self, t: u64) -> Option<usize> {
        self.writes
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, (visible, _))| *visible <= t)
            .max_by_key(|(_, (visible, _))| *visible)
            .map(|(i, _)| i)
    }

    fn at(&self, t: u64) -> Option<&Response<Body>> {
        self.landed(t).map(|i| &self.writes[i].1)
    }

    fn prune(&mut self, now: u64) {
        if let Some(keep) = self.landed(now) {
            let mut i = 0;
            self.writes.retain(|(visible, _)| {
                let kept = i == keep || *visible > now;
                i += 1;
                kept
            });
        }
    }
}

/// One data centre's Cache API. A write is visible to others only from the
/// moment the writing request would have made it.
#[derive(Clone)]
pub struct SimCache {
    slots: Rc<RefCell<HashMap<String, Slot>>>,
    clock: SimClock,
}

impl SimCache {
    pub fn new(clock: SimClock) -> Self {
        Self {
            slots: Rc::default(),
            clock,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.borrow().is_empty()
    }
}

impl CacheStore for SimCache {
    async fn get(
        &self,
        key: &str,
        _stream_above: u64,
    ) -> Result<Option<Response<Body>>, StoreError> {
        // Read at the request's own time: arrival plus what it has met so
        // far (a request waiting on another isolate's fill sees that fill
        // land).
        let now = {
            let mut ctx = self.clock.ctx.borrow_mut();
            ctx.elapsed_ms += CACHE_API_MS;
            self.clock.now_ms() + ctx.elapsed_ms.floor() as u64
        };
        let slots = self.slots.borrow();
        Ok(slots
            .get(key)
            .and_then(|slot| slot.at(now))
            .map(cachefront::copy_response))
    }

    async fn put(&self, key: &str, response: Response<Body>) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let visible_from_ms = now + self.clock.ctx.borrow().elapsed_ms.ceil() as u64;
        let mut slots = self.slots.borrow_mut();
        let slot = slots.entry(key.to_owned()).or_default();
        slot.prune(now);
        slot.writes.push((visible_from_ms, response));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.slots.borrow_mut().remove(key).is_some())
    }
}

/// The content the origin serves: a version per URL, bumped by writes.
#[derive(Default)]
pub struct Content {
    /// Current version of each page (by rank).
    pub versions: Vec<u32>,
    /// When each version of a page stopped being current, as acknowledged
    /// (the purge's 200): `acked[rank][v]` is when version `v` was purged.
    pub purged_at: Vec<Vec<Option<u64>>>,
    /// Origin fetches per page, weighted (for the herd).
    pub fetches: Vec<f64>,
    /// The same, as made by the simulated isolates (not weighted).
    pub sampled_fetches: Vec<u64>,
    /// Origin is unreachable in `[from, to)`.
    pub outage: Option<(u64, u64)>,
    /// Pages per group tag.
    pub group_size: usize,
    /// `Cache-Control` of every page.
    pub cache_control: &'static str,
    /// Weighted origin fetches in total.
    pub total_fetches: f64,
}

/// The origin: pages `/p/<rank>` tagged `p:<rank>` and `g:<rank / group>`,
/// each carrying its version in `x-sim-version`.
#[derive(Clone)]
pub struct SimOrigin {
    pub content: Rc<RefCell<Content>>,
    clock: SimClock,
}

impl SimOrigin {
    pub fn new(content: Rc<RefCell<Content>>, clock: SimClock) -> Self {
        Self { content, clock }
    }
}

/// The page rank of a path `/p/<rank>`.
pub fn rank_of(path: &str) -> Option<usize> {
    path.strip_prefix("/p/")?.parse().ok()
}

impl OriginFetch for SimOrigin {
    async fn fetch(
        &self,
        _origin: &OriginConfig,
        request: Request<Body>,
        _timeout_ms: u64,
        _stream_above: u64,
    ) -> Result<Response<Body>, OriginError> {
        let now = self.clock.now_ms();
        let (region, weight) = {
            let mut ctx = self.clock.ctx.borrow_mut();
            ctx.origin_fetches += 1;
            (ctx.region, ctx.weight)
        };
        let rtt = REGIONS[region].origin_rtt_ms as f64;
        let mut content = self.content.borrow_mut();
        if content
            .outage
            .is_some_and(|(from, to)| now >= from && now < to)
        {
            // A connect timeout costs the client a while.
            self.clock.ctx.borrow_mut().elapsed_ms += rtt * 3.0;
            return Err(OriginError::Connect("origin outage (simulated)".to_owned()));
        }
        self.clock.ctx.borrow_mut().elapsed_ms += rtt + 20.0;
        let Some(rank) = rank_of(request.uri().path()).filter(|r| *r < content.versions.len())
        else {
            return Ok(Response::builder()
                .status(404)
                .body(Bytes::new())
                .unwrap_or_default());
        };
        content.fetches[rank] += weight;
        content.sampled_fetches[rank] += 1;
        content.total_fetches += weight;
        let version = content.versions[rank];
        let group = rank / content.group_size.max(1);
        Response::builder()
            .status(200)
            .header("content-type", "text/html")
            .header("cache-control", content.cache_control)
            .header("cache-tag", format!("p:{rank}, g:{group}"))
            .header("x-sim-version", version.to_string())
            .body(Bytes::from(format!("<p>page {rank} version {version}</p>")))
            .map_err(|e| OriginError::Connect(e.to_string()))
    }
}

/// Registry calls per shard per simulated second, weighted, plus a
/// single-server queue per shard (service time `1000 / capacity` ms).
#[derive(Debug, Default)]
pub struct ShardLoad {
    /// Calls per second, per shard (lookups and purges), weighted.
    pub per_second: Vec<Vec<f64>>,
    /// The same with every call counted with [`Ctx::legacy_weight`].
    pub legacy_per_second: Vec<Vec<f64>>,
    /// Requests admitted (not refused as overloaded) per second, per shard.
    admitted: Vec<Vec<f64>>,
    /// Requests not yet served at the start of the current second, per shard.
    backlog: Vec<f64>,
    /// Calls refused because the shard's queue was full, weighted.
    pub overloaded: f64,
    rolled_to: Vec<usize>,
    /// Queueing delay of each client-path lookup, ms, with its weight.
    pub queue_ms: Vec<(f64, f64)>,
    /// Per-key lookups, syncs ("purges since n") and purges, weighted.
    pub lookups: f64,
    pub syncs: f64,
    pub purges: f64,
    /// Rows written by purges (one per key).
    pub rows_written: f64,
    pub rows_read: f64,
    /// Per shard, per [`BUCKET_S`] seconds: weighted calls of each kind
    /// ([`KIND_LOOKUP`], [`KIND_SYNC`], [`KIND_REPEAT_SYNC`], [`KIND_PURGE`]),
    /// to tell what a shard's load is made of and whether it decays.
    pub buckets: Vec<Vec<[f64; 4]>>,
    /// Last sync per (simulated data centre, shard), ms: a sync less than
    /// `repeat_gap_ms` after the data centre's previous one to that shard is
    /// a repeat (another isolate of the data centre syncing the same window).
    last_sync: HashMap<(usize, u32), u64>,
    pub repeat_gap_ms: u64,
}

/// Width of the per-shard breakdown over time, seconds.
pub const BUCKET_S: u64 = 10;
pub const KIND_LOOKUP: usize = 0;
pub const KIND_SYNC: usize = 1;
pub const KIND_REPEAT_SYNC: usize = 2;
pub const KIND_PURGE: usize = 3;

impl ShardLoad {
    fn new(shards: usize) -> Self {
        Self {
            per_second: vec![Vec::new(); shards],
            legacy_per_second: vec![Vec::new(); shards],
            admitted: vec![Vec::new(); shards],
            backlog: vec![0.0; shards],
            rolled_to: vec![0; shards],
            buckets: vec![Vec::new(); shards],
            ..Self::default()
        }
    }

    /// Notes a sync of `shard` by data centre `dc` at `now_ms`; whether it
    /// is a repeat (less than `repeat_gap_ms` after that data centre's
    /// previous sync of the shard).
    fn note_sync(&mut self, shard: u32, dc: usize, now_ms: u64) -> bool {
        self.last_sync
            .insert((dc, shard), now_ms)
            .is_some_and(|last| now_ms.saturating_sub(last) < self.repeat_gap_ms)
    }

    fn classify(&mut self, shard: u32, now_ms: u64, weight: f64, kind: usize, repeat: bool) {
        let series = &mut self.buckets[shard as usize];
        let bucket = (now_ms / 1000 / BUCKET_S) as usize;
        if series.len() <= bucket {
            series.resize(bucket + 1, [0.0; 4]);
        }
        series[bucket][kind] += weight;
        if repeat {
            series[bucket][KIND_REPEAT_SYNC] += weight;
        }
    }

    /// Records `weight` calls to `shard` at `now_ms`; returns the queueing
    /// delay they meet (the backlog left by earlier seconds plus the M/D/1
    /// wait at the current second's utilisation so far), or `None` when the
    /// queue is longer than [`MAX_QUEUE_MS`]: the object refuses the call
    /// as overloaded, as Durable Objects do after queueing a while.
    fn arrive(&mut self, shard: usize, now_ms: u64, weight: f64, capacity: f64) -> Option<f64> {
        let second = (now_ms / 1000) as usize;
        cover_second(&mut self.per_second[shard], second);
        cover_second(&mut self.admitted[shard], second);
        while self.rolled_to[shard] < second {
            let s = self.rolled_to[shard];
            let arrived = self.admitted[shard][s];
            self.backlog[shard] = (self.backlog[shard] + arrived - capacity).max(0.0);
            self.rolled_to[shard] += 1;
        }
        self.per_second[shard][second] += weight;
        let elapsed = ((now_ms % 1000) as f64 / 1000.0).max(0.05);
        let admitted = self.admitted[shard][second];
        let backlog_ms =
            (self.backlog[shard] + admitted - capacity * elapsed).max(0.0) / capacity * 1000.0;
        if backlog_ms > MAX_QUEUE_MS {
            self.overloaded += weight;
            return None;
        }
        self.admitted[shard][second] += weight;
        let rho = (admitted / elapsed / capacity).min(0.99);
        let service_ms = 1000.0 / capacity;
        Some(backlog_ms + rho * service_ms / (2.0 * (1.0 - rho)))
    }
}

/// What a registry call is, for its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// A per-key lookup (`POST /lookup`).
    Lookup,
    /// A sync ("purges since n"); `first`: without cursor (a new view).
    Sync {
        first: bool,
    },
    Purge,
}

/// How many real registry calls one simulated call stands for.
///
/// A data centre syncs each shard once per window through its syncer,
/// whatever its isolate count (docs/purge.md, "Sharing within a data
/// centre"): such a sync counts with the data-centre weight. Everything
/// else is per isolate and counts with the isolate weight: per-key lookups
/// (the data centre's memo shares an answer only between isolates that
/// need the same key in the same window, which a sample of fewer isolates
/// sees less often, so scaling by isolates overcounts: the safe side),
/// first syncs (every isolate without a view, at a cold start) and
/// `repeat` syncs (isolates racing the syncer, or a second page). Purges
/// come from unsampled purgers (weight 1).
pub fn call_weight(kind: CallKind, repeat: bool, ctx: &Ctx) -> f64 {
    match kind {
        CallKind::Sync { first: false } if !repeat => ctx.dc_weight,
        _ => ctx.weight,
    }
}

/// Longest queue a registry object holds before refusing calls, ms.
pub const MAX_QUEUE_MS: f64 = 1000.0;

/// The tag registry: the real in-memory registry behind a network.
#[derive(Clone)]
pub struct SimRegistry {
    pub inner: Rc<MemoryTagRegistry>,
    pub load: Rc<RefCell<ShardLoad>>,
    /// Per shard: unreachable in `[from, to)`.
    pub outages: Rc<RefCell<Vec<(u32, u64, u64)>>>,
    /// Requests per second one shard serves (Cloudflare's soft limit: 1000).
    pub capacity: f64,
    clock: SimClock,
}

impl SimRegistry {
    pub fn new(shards: u32, capacity: f64, clock: SimClock) -> Self {
        Self {
            inner: Rc::new(MemoryTagRegistry::new()),
            load: Rc::new(RefCell::new(ShardLoad::new(shards as usize))),
            outages: Rc::default(),
            capacity,
            clock,
        }
    }

    fn call(&self, shard: u32, rows: usize, kind: CallKind) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let queue = {
            let ctx = self.clock.ctx.borrow();
            let mut load = self.load.borrow_mut();
            let repeat =
                matches!(kind, CallKind::Sync { .. }) && load.note_sync(shard, ctx.dc, now);
            let weight = call_weight(kind, repeat, &ctx);
            let bucket = match kind {
                CallKind::Purge => KIND_PURGE,
                CallKind::Sync { .. } => KIND_SYNC,
                CallKind::Lookup => KIND_LOOKUP,
            };
            load.classify(shard, now, weight, bucket, repeat);
            let second = (now / 1000) as usize;
            let legacy = &mut load.legacy_per_second[shard as usize];
            cover_second(legacy, second);
            legacy[second] += ctx.legacy_weight;
            let queue = load.arrive(shard as usize, now, weight, self.capacity);
            match kind {
                CallKind::Purge => {
                    load.purges += weight;
                    load.rows_written += weight * rows as f64;
                }
                CallKind::Sync { .. } | CallKind::Lookup => {
                    if kind == CallKind::Lookup {
                        load.lookups += weight;
                    } else {
                        load.syncs += weight;
                    }
                    load.rows_read += weight * rows as f64;
                    if !ctx.background {
                        load.queue_ms.push((queue.unwrap_or(MAX_QUEUE_MS), weight));
                    }
                }
            }
            queue
        };
        let (region, background) = {
            let ctx = self.clock.ctx.borrow();
            (ctx.region, ctx.background)
        };
        let purge = kind == CallKind::Purge;
        let outage = self
            .outages
            .borrow()
            .iter()
            .any(|(s, from, to)| *s == shard && now >= *from && now < *to);
        let down = outage || queue.is_none();
        let rtt = REGIONS[region].registry_rtt_ms as f64;
        // An unreachable object costs a connect timeout; a full queue, the wait.
        let wait = if outage {
            rtt * 3.0
        } else {
            rtt + queue.unwrap_or(MAX_QUEUE_MS)
        };
        let mut ctx = self.clock.ctx.borrow_mut();
        if !background && !purge {
            ctx.registry_wait_ms = ctx.registry_wait_ms.max(wait);
        }
        ctx.registry_failed |= down;
        drop(ctx);
        if down {
            return Err(StoreError(
                "registry shard unreachable or overloaded (simulated)".to_owned(),
            ));
        }
        Ok(())
    }
}

impl TagRegistryStore for SimRegistry {
    async fn purge(
        &self,
        shard: u32,
        keys: &[String],
        soft: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.call(shard, keys.len(), CallKind::Purge)?;
        self.inner.purge(shard, keys, soft, now_ms).await
    }

    async fn lookup(
        &self,
        shard: u32,
        keys: &[String],
    ) -> Result<HashMap<String, TagPurgeTimes>, StoreError> {
        self.call(shard, keys.len(), CallKind::Lookup)?;
        self.inner.lookup(shard, keys).await
    }

    async fn entries(
        &self,
        shard: u32,
        after: &str,
        limit: usize,
    ) -> Result<Vec<RegistryEntry>, StoreError> {
        self.inner.entries(shard, after, limit).await
    }

    async fn merge(&self, shard: u32, entries: &[RegistryEntry]) -> Result<(), StoreError> {
        self.inner.merge(shard, entries).await
    }

    async fn sync(
        &self,
        shard: u32,
        after: Option<u64>,
        limit: usize,
    ) -> Result<SyncPage, StoreError> {
        let page = self.inner.sync(shard, after, limit).await?;
        self.call(
            shard,
            page.changes.len().max(1),
            CallKind::Sync {
                first: after.is_none(),
            },
        )?;
        Ok(page)
    }
}

/// Counts of KV operations, weighted.
#[derive(Debug, Default, Clone, Copy)]
pub struct KvOps {
    pub reads: f64,
    pub writes: f64,
    pub deletes: f64,
}

/// Workers KV: one global map; a write is seen at once in the data centre
/// that made it and after `propagation_ms` everywhere else.
#[derive(Clone)]
pub struct SimKv {
    entries: Rc<RefCell<HashMap<String, KvValue>>>,
    pub ops: Rc<RefCell<KvOps>>,
    pub propagation_ms: u64,
    clock: SimClock,
}

struct KvValue {
    current: Option<Vec<u8>>,
    written_ms: u64,
    writer_dc: usize,
    previous: Option<Vec<u8>>,
}

impl SimKv {
    pub fn new(propagation_ms: u64, clock: SimClock) -> Self {
        Self {
            entries: Rc::default(),
            ops: Rc::default(),
            propagation_ms,
            clock,
        }
    }

    fn weight(&self) -> f64 {
        self.clock.ctx.borrow().weight
    }

    fn write(&self, key: &str, value: Option<Vec<u8>>) {
        let now = self.clock.now_ms();
        let dc = self.clock.ctx.borrow().dc;
        let mut entries = self.entries.borrow_mut();
        let previous = entries.remove(key).and_then(|old| old.current);
        entries.insert(
            key.to_owned(),
            KvValue {
                current: value,
                written_ms: now,
                writer_dc: dc,
                previous,
            },
        );
    }
}

impl GlobalStore for SimKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.ops.borrow_mut().reads += self.weight();
        let now = self.clock.now_ms();
        let dc = self.clock.ctx.borrow().dc;
        self.clock.ctx.borrow_mut().elapsed_ms += 10.0;
        let entries = self.entries.borrow();
        Ok(entries.get(key).and_then(|v| {
            if v.writer_dc == dc || now >= v.written_ms + self.propagation_ms {
                v.current.clone()
            } else {
                v.previous.clone()
            }
        }))
    }

    async fn put(&self, key: &str, value: Vec<u8>, _ttl_secs: u64) -> Result<(), StoreError> {
        self.ops.borrow_mut().writes += self.weight();
        self.write(key, Some(value));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.ops.borrow_mut().deletes += self.weight();
        self.write(key, None);
        Ok(())
    }

    fn available(&self) -> bool {
        true
    }
}

/// Shared origin health, kept in KV (so read and written like KV).
#[derive(Clone)]
pub struct SimHealth {
    pub kv: SimKv,
}

const HEALTH_KEY: &str = "health";

impl HealthStore for SimHealth {
    async fn load(&self) -> Result<Vec<SharedHealth>, StoreError> {
        // The results are not modelled (no active checks run in the
        // simulation); the read is, for its cost.
        let _ = self.kv.get(HEALTH_KEY).await?;
        Ok(Vec::new())
    }

    async fn save(&self, _results: &[SharedHealth]) -> Result<(), StoreError> {
        self.kv.put(HEALTH_KEY, Vec::new(), 0).await
    }
}

/// Everything one isolate sees. Clones of the shared parts are shared.
#[derive(Clone)]
pub struct SimPlatform {
    pub cache: SimCache,
    pub origin: SimOrigin,
    pub assets: MemoryAssets,
    pub clock: SimClock,
    pub tasks: TaskQueue,
    pub health: SimHealth,
    pub global: SimKv,
    pub registry: SimRegistry,
    pub cloudflare: MemoryCloudflareApi,
    pub streams: MemoryStreams,
}

impl Platform for SimPlatform {
    type Cache = SimCache;
    type Origin = SimOrigin;
    type Assets = MemoryAssets;
    type Clock = SimClock;
    type Background = TaskQueue;
    type Health = SimHealth;
    type Global = SimKv;
    type Registry = SimRegistry;
    type Cloudflare = MemoryCloudflareApi;
    type Streams = MemoryStreams;

    fn cache(&self) -> &SimCache {
        &self.cache
    }
    fn origin(&self) -> &SimOrigin {
        &self.origin
    }
    fn assets(&self) -> &MemoryAssets {
        &self.assets
    }
    fn clock(&self) -> &SimClock {
        &self.clock
    }
    fn background(&self) -> &TaskQueue {
        &self.tasks
    }
    fn health(&self) -> &SimHealth {
        &self.health
    }
    fn global(&self) -> &SimKv {
        &self.global
    }
    fn registry(&self) -> &SimRegistry {
        &self.registry
    }
    fn cloudflare(&self) -> &MemoryCloudflareApi {
        &self.cloudflare
    }
    fn streams(&self) -> &MemoryStreams {
        &self.streams
    }
}

/// Grows a per-second series with zeros so that it has an entry for `second`.
fn cover_second(series: &mut Vec<f64>, second: usize) {
    if series.len() <= second {
        series.resize(second + 1, 0.0);
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    /// A registry seen from one isolate standing for 15 real ones, in a data
    /// centre standing for 2 real ones (the old single weight: 7).
    fn registry() -> SimRegistry {
        let clock = SimClock::default();
        *clock.ctx.borrow_mut() = Ctx {
            dc: 3,
            weight: 15.0,
            dc_weight: 2.0,
            legacy_weight: 7.0,
            background: true,
            ..Ctx::default()
        };
        let registry = SimRegistry::new(4, 1000.0, clock);
        registry.load.borrow_mut().repeat_gap_ms = 500;
        registry
    }

    fn at(registry: &SimRegistry, ms: u64) {
        registry.clock.now_ms.set(ms);
    }

    fn counted(registry: &SimRegistry) -> (f64, f64, f64) {
        let load = registry.load.borrow();
        (load.lookups, load.syncs, load.purges)
    }

    #[test]
    fn a_renewal_sync_counts_for_data_centres_and_first_syncs_repeats_lookups_and_purges_for_isolates(
    ) {
        let registry = registry();
        // A first sync (no view yet): every isolate without a view makes one.
        at(&registry, 0);
        let first = block_on(registry.sync(0, None, 10)).expect("answers");
        assert_eq!(counted(&registry), (0.0, 15.0, 0.0));
        // The syncer's renewal 0.7 s later: once per data centre.
        at(&registry, 700);
        block_on(registry.sync(0, Some(first.cursor), 10)).expect("answers");
        assert_eq!(counted(&registry), (0.0, 17.0, 0.0));
        // Another isolate racing it within half a window: per isolate.
        at(&registry, 900);
        block_on(registry.sync(0, Some(first.cursor), 10)).expect("answers");
        assert_eq!(counted(&registry), (0.0, 32.0, 0.0));
        // A renewal of another shard is that shard's own.
        block_on(registry.sync(1, Some(0), 10)).expect("answers");
        assert_eq!(counted(&registry), (0.0, 34.0, 0.0));
        // Per-key lookups and purges: per isolate.
        block_on(registry.lookup(0, &["p:1".to_owned()])).expect("answers");
        block_on(registry.purge(2, &["p:1".to_owned()], false, 900)).expect("records");
        assert_eq!(counted(&registry), (15.0, 34.0, 15.0));
        let load = registry.load.borrow();
        assert_eq!(load.per_second[0], vec![15.0 + 2.0 + 15.0 + 15.0]);
        assert_eq!(load.buckets[0][0][KIND_REPEAT_SYNC], 15.0);
        // The old accounting counts every call with the one weight.
        assert_eq!(load.legacy_per_second[0], vec![4.0 * 7.0]);
    }
}
