//! The per-isolate memory tier: a small LRU of stored entries, bounded by
//! bytes, in front of the Cache API. It is handed entries in their stored
//! form, as every tier is, and holds each one as [`stored::decode`] reads it
//! back, decoded once when it is put rather than on every hit; what does not
//! decode is not kept. It keeps each entry only for a short residence time,
//! because it cannot see invalidations made by other isolates.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use http::Response;

use crate::cache::stored::{self, EntryMeta};
use crate::Body;

struct HotEntry {
    /// The stored entry as `stored::decode` gives it back.
    response: Response<Body>,
    meta: EntryMeta,
    /// Its stored form's size, what it counts against the budget.
    size: usize,
    tick: u64,
    inserted_ms: u64,
}

struct HotInner {
    budget_bytes: usize,
    max_residence_ms: u64,
    used_bytes: usize,
    tick: u64,
    entries: HashMap<String, HotEntry>,
    /// Use order: tick → key, oldest first.
    order: BTreeMap<u64, String>,
}

/// A byte-bounded LRU shared by every request of one isolate (clones share it).
#[derive(Clone)]
pub struct HotCache {
    inner: Rc<RefCell<HotInner>>,
}

fn entry_size(key: &str, response: &Response<Body>) -> usize {
    let headers: usize = response
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    key.len() + headers + response.body().len() + 64
}

impl HotCache {
    /// `budget_bytes = 0` disables the tier.
    pub fn new(budget_bytes: usize, max_residence_secs: u64) -> Self {
        Self {
            inner: Rc::new(RefCell::new(HotInner {
                budget_bytes,
                max_residence_ms: max_residence_secs.saturating_mul(1000),
                used_bytes: 0,
                tick: 0,
                entries: HashMap::new(),
                order: BTreeMap::new(),
            })),
        }
    }

    /// Whether this cache was built with these limits (the adapter rebuilds it when config changes).
    /// The largest entry the tier takes (an eighth of the budget; 0 when off).
    pub fn max_entry_bytes(&self) -> u64 {
        (self.inner.borrow().budget_bytes / 8) as u64
    }

    pub fn has_limits(&self, budget_bytes: usize, max_residence_secs: u64) -> bool {
        let inner = self.inner.borrow();
        inner.budget_bytes == budget_bytes
            && inner.max_residence_ms == max_residence_secs.saturating_mul(1000)
    }

    /// The entry at `key` as [`stored::decode`] gives it back, unless its
    /// residence has ended; marks it as the most recently used.
    pub fn get(&self, key: &str, now_ms: u64) -> Option<(Response<Body>, EntryMeta)> {
        let mut inner = self.inner.borrow_mut();
        let expired = {
            let entry = inner.entries.get(key)?;
            now_ms.saturating_sub(entry.inserted_ms) >= inner.max_residence_ms
        };
        if expired {
            inner.remove(key);
            return None;
        }
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(key)?;
        let old_tick = std::mem::replace(&mut entry.tick, tick);
        let found = (crate::copy_response(&entry.response), entry.meta.clone());
        // The key's string moves to its new place in the use order.
        let owned = inner.order.remove(&old_tick);
        inner
            .order
            .insert(tick, owned.unwrap_or_else(|| key.to_owned()));
        Some(found)
    }

    /// Keeps the stored entry `response` at `key` (replacing what was
    /// there), unless it is too large, streamed or does not decode.
    pub fn put(&self, key: &str, response: &Response<Body>, now_ms: u64) {
        let mut inner = self.inner.borrow_mut();
        inner.remove(key);
        let size = entry_size(key, response);
        // Entries larger than an eighth of the budget would evict too much; a
        // streamed body (crate::platform::body) is not in memory at all.
        let streamed = response
            .extensions()
            .get::<crate::platform::body::Streamed>()
            .is_some();
        if streamed || inner.budget_bytes == 0 || size > inner.budget_bytes / 8 {
            return;
        }
        let Some((decoded, meta)) = stored::decode(crate::copy_response(response)) else {
            return;
        };
        inner.tick += 1;
        let tick = inner.tick;
        inner.used_bytes += size;
        inner.order.insert(tick, key.to_owned());
        inner.entries.insert(
            key.to_owned(),
            HotEntry {
                response: decoded,
                meta,
                size,
                tick,
                inserted_ms: now_ms,
            },
        );
        while inner.used_bytes > inner.budget_bytes {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(entry) = inner.entries.remove(&oldest) {
                inner.used_bytes -= entry.size;
            }
        }
    }

    pub fn remove(&self, key: &str) -> bool {
        self.inner.borrow_mut().remove(key)
    }

    /// Removes every entry whose key matches (e.g. a primary key and its variants).
    pub fn remove_where(&self, matches: impl Fn(&str) -> bool) -> usize {
        let mut inner = self.inner.borrow_mut();
        let keys: Vec<String> = inner
            .entries
            .keys()
            .filter(|k| matches(k))
            .cloned()
            .collect();
        keys.iter().filter(|k| inner.remove(k)).count()
    }

    /// The metadata of every entry held (read as it was decoded at `put`,
    /// not parsed again).
    pub fn metas(&self) -> Vec<EntryMeta> {
        self.inner
            .borrow()
            .entries
            .values()
            .map(|e| e.meta.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.borrow().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn used_bytes(&self) -> usize {
        self.inner.borrow().used_bytes
    }
}

impl HotInner {
    fn remove(&mut self, key: &str) -> bool {
        match self.entries.remove(key) {
            Some(entry) => {
                self.used_bytes -= entry.size;
                self.order.remove(&entry.tick);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored entry whose body is `len` bytes.
    fn stored_entry(len: usize) -> Response<Body> {
        let origin = Response::builder()
            .header("cache-control", "public, max-age=60")
            .header("content-type", "text/plain")
            .body(Body::from(vec![b'x'; len]))
            .expect("response");
        let times = crate::semantics::policy::ResponseTimes {
            request_time_ms: 1,
            response_time_ms: 2,
        };
        stored::encode(&origin, EntryMeta::new(times, 0), 60)
    }

    #[test]
    fn entries_come_back_until_their_residence_ends() {
        let hot = HotCache::new(1 << 20, 30);
        hot.put("a", &stored_entry(10), 0);
        assert!(hot.get("a", 29_999).is_some());
        assert!(hot.get("a", 30_000).is_none());
        assert!(hot.is_empty());
    }

    #[test]
    fn least_recently_used_entries_are_evicted_by_bytes() {
        let hot = HotCache::new(8_000, 60);
        for key in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            hot.put(key, &stored_entry(700), 0);
        }
        assert!(hot.get("a", 1).is_some(), "touch a so b is the oldest");
        hot.put("i", &stored_entry(700), 1);
        hot.put("j", &stored_entry(700), 1);
        assert!(hot.used_bytes() <= 8_000);
        assert!(hot.get("b", 1).is_none());
        assert!(hot.get("a", 1).is_some());
        assert!(hot.get("j", 1).is_some());
    }

    #[test]
    fn large_entries_and_a_zero_budget_are_not_kept() {
        let hot = HotCache::new(8_000, 60);
        hot.put("big", &stored_entry(5_000), 0);
        assert!(hot.get("big", 0).is_none());
        let off = HotCache::new(0, 60);
        off.put("a", &stored_entry(1), 0);
        assert!(off.is_empty());
    }

    #[test]
    fn a_hit_is_what_decode_gives_for_the_stored_entry() {
        let hot = HotCache::new(1 << 20, 60);
        hot.put("k", &stored_entry(5), 0);
        let (response, meta) = hot.get("k", 1).expect("a hit");
        let (expected, expected_meta) = stored::decode(stored_entry(5)).expect("decodes");
        assert_eq!(response.status(), expected.status());
        assert_eq!(response.headers(), expected.headers());
        assert_eq!(response.body(), expected.body());
        assert_eq!(meta, expected_meta);
        assert_eq!(hot.metas(), vec![expected_meta]);
        // Twice: a hit hands out a copy and leaves the entry as it was.
        let (again, _) = hot.get("k", 2).expect("a second hit");
        assert_eq!(again.headers(), expected.headers());
    }

    #[test]
    fn an_entry_that_does_not_decode_is_not_kept_and_replaces_nothing_stale() {
        let hot = HotCache::new(1 << 20, 30);
        hot.put("k", &stored_entry(3), 0);
        // A put that is refused still drops what the key held before.
        hot.put("k", &Response::new(Body::from_static(b"not stored")), 1);
        assert!(hot.get("k", 2).is_none());
        assert!(hot.is_empty());
        assert_eq!(hot.used_bytes(), 0);
    }

    #[test]
    fn removal_by_predicate_drops_a_key_and_its_variants() {
        let hot = HotCache::new(1 << 20, 60);
        hot.put("k/p", &stored_entry(1), 0);
        hot.put("k/p?cachefront-variant=1", &stored_entry(1), 0);
        hot.put("k/q", &stored_entry(1), 0);
        assert_eq!(hot.remove_where(|k| k.starts_with("k/p")), 2);
        assert_eq!(hot.len(), 1);
    }
}
