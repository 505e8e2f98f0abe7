//! State that lives as long as the isolate and is shared by its requests.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

use crate::assets::Manifest;
use crate::cache::coalesce::Coalescer;
use crate::cache::hot::HotCache;
use crate::config::Config;
use crate::origin::book::HealthBook;
use crate::purge::api::PurgeRateLimiter;
use crate::purge::registry::RegistryMemo;
use crate::purge::sync::SyncViews;

/// Registry answers one isolate keeps at most.
pub(super) const MEMO_MAX_KEYS: usize = 10_000;
/// Changed keys one isolate keeps per registry shard (past this, its horizon moves).
pub(super) const VIEW_MAX_KEYS: usize = 20_000;

/// State that lives as long as the isolate and is shared by its requests.
#[derive(Clone)]
pub struct IsolateState {
    pub hot: HotCache,
    pub coalescer: Coalescer,
    /// Keys being refreshed in the background, so each is refreshed once.
    pub(super) refreshing: Rc<RefCell<HashSet<String>>>,
    pub(super) origins: Rc<RefCell<HealthBook>>,
    /// The asset build's manifest, read once per isolate (`None` inside: absent).
    pub(super) manifest: Rc<RefCell<Option<Option<Rc<Manifest>>>>>,
    /// Tag registry answers, trusted for `PURGE_SYNC_MS`.
    pub(super) memo: Rc<RefCell<RegistryMemo>>,
    /// The registry shards' changes since this isolate's (or its data
    /// centre's) horizon (`PURGE_CHANGE_SYNC`).
    pub(super) views: Rc<RefCell<SyncViews>>,
    pub(super) purge_limiter: Rc<RefCell<PurgeRateLimiter>>,
    /// Paths the asset store answered 404 for. Assets change only with a
    /// deploy, which starts new isolates, so the answer holds for this one.
    pub(super) not_assets: Rc<RefCell<BoundedPathSet>>,
    /// Vary index generations started by this isolate.
    pub(super) generations: Rc<std::cell::Cell<u64>>,
}

/// Paths remembered as "not an asset" per isolate: entries and bytes are both
/// capped (the set restarts when full), and long paths are not remembered, so
/// anonymous traffic cannot grow it past a few hundred KB.
pub(super) const NOT_ASSETS_MAX: usize = 10_000;
pub(super) const NOT_ASSETS_MAX_BYTES: usize = 512 * 1024;
pub(super) const NOT_ASSETS_MAX_PATH_BYTES: usize = 1024;
/// Background refreshes one isolate runs at once; past this, stale answers
/// wait for a client's own revalidation.
pub(super) const REFRESHING_MAX: usize = 256;

/// A set of paths bounded in entries and bytes.
#[derive(Default)]
pub struct BoundedPathSet {
    pub(super) paths: HashSet<String>,
    pub(super) bytes: usize,
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
pub(super) struct RefreshClaim {
    pub(super) set: Rc<RefCell<HashSet<String>>>,
    pub(super) key: String,
}

impl RefreshClaim {
    pub(super) fn take(set: &Rc<RefCell<HashSet<String>>>, key: &str) -> Option<Self> {
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
            views: Rc::new(RefCell::new(SyncViews::new(
                config.purge.sync_ms,
                VIEW_MAX_KEYS,
            ))),
            purge_limiter: Rc::new(RefCell::new(PurgeRateLimiter::new(
                config.purge.rate_per_min,
                0,
            ))),
            not_assets: Rc::default(),
            generations: Rc::default(),
        }
    }

    /// A new Vary index generation: the time with a per-isolate sequence
    /// number, so an index written again in the millisecond of an unsafe
    /// request still differs from the one that request dropped.
    pub(super) fn new_vary_generation(&self, now_ms: u64) -> u64 {
        let seq = self.generations.get().wrapping_add(1);
        self.generations.set(seq);
        now_ms.saturating_mul(1000).saturating_add(seq % 1000)
    }

    /// Whether the asset store already said `path` is not an asset.
    pub(super) fn known_not_asset(&self, path: &str) -> bool {
        self.not_assets.borrow().contains(path)
    }

    pub(super) fn remember_not_asset(&self, path: &str) {
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
