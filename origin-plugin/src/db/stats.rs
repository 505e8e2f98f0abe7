//! What the capture saw since the process started, for the analyzer: per-fingerprint
//! statement stats, concurrency (requests in flight, statements overlapping) and the time
//! requests waited for a pool connection.
//!
//! [`DbCapture::snapshot`](super::DbCapture::snapshot) returns a [`CaptureSnapshot`];
//! `GET /debug/queries` serves it as JSON and `cachefront-origin analyze --from-app URL`
//! reads it back. Everything is bounded: at most [`FINGERPRINTS_KEPT`] fingerprints, the
//! last [`WINDOW`] statements and acquires for peaks and percentiles.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::SqlFingerprint;

/// Fingerprints tracked; statements of further fingerprints are only counted.
pub const FINGERPRINTS_KEPT: usize = 2048;
/// Statements (and connection acquires) kept for peaks and percentiles.
pub const WINDOW: usize = 4096;

/// Everything the capture knows, as served by `GET /debug/queries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptureSnapshot {
    /// Seconds since the capture was created.
    pub uptime_secs: f64,
    /// Statements seen.
    pub statements: u64,
    /// Per fingerprint, most total time first.
    pub fingerprints: Vec<FingerprintStats>,
    /// Statements of fingerprints beyond the first 2048 (counted, not tracked).
    pub untracked_statements: u64,
    /// Requests and statements in flight.
    pub concurrency: ConcurrencyStats,
    /// Time spent waiting for a pool connection (needs sqlx's acquire events, see
    /// `docs/database.md`); `count` 0 when none were seen.
    pub acquire: AcquireStats,
    /// The pool given to `DbCapture::watch_pg_pool`, if any.
    pub pool: Option<PoolGauges>,
}

/// One statement shape, over the whole process lifetime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FingerprintStats {
    /// [`SqlFingerprint::id`].
    pub fingerprint: String,
    /// [`SqlFingerprint::normalized`].
    pub normalized: String,
    /// The first statement seen with this fingerprint, as sqlx logged it (`$1` parameters
    /// stay `$1`), truncated to 2048 characters.
    pub sample: String,
    /// Executions.
    pub calls: u64,
    /// Their total time, ms.
    pub total_ms: f64,
    /// Mean time, ms.
    pub mean_ms: f64,
    /// Slowest execution, ms.
    pub max_ms: f64,
}

/// Observed concurrency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConcurrencyStats {
    /// Requests inside the capture layer right now.
    pub in_flight_requests: u64,
    /// Most requests inside the capture layer at once.
    pub peak_in_flight_requests: u64,
    /// Most statements running at once among the last 4096 (each statement spans
    /// `[finish - elapsed, finish]`).
    pub peak_concurrent_statements: u64,
    /// Statements in that window.
    pub window_statements: u64,
}

/// Connection acquire wait times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AcquireStats {
    /// Acquires seen.
    pub count: u64,
    /// Their total wait, ms.
    pub total_ms: f64,
    /// Longest wait, ms.
    pub max_ms: f64,
    /// Median of the last 4096 waits, ms.
    pub p50_ms: f64,
    /// 95th percentile of the last 4096 waits, ms.
    pub p95_ms: f64,
}

/// Gauges of a sqlx pool at snapshot time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PoolGauges {
    /// Connections open.
    pub size: u32,
    /// Idle connections.
    pub idle: u32,
    /// Configured maximum.
    pub max_connections: u32,
}

/// Most intervals `[start, end)` overlapping at one instant.
pub fn peak_overlap(intervals: &[(u64, u64)]) -> u64 {
    // Ends sort before starts at the same instant: back-to-back is not overlap.
    let mut edges: Vec<(u64, i8)> = intervals
        .iter()
        .flat_map(|&(start, end)| [(start, 1), (end.max(start), -1)])
        .collect();
    edges.sort_unstable();
    let (mut now, mut peak) = (0i64, 0i64);
    for (_, delta) in edges {
        now += i64::from(delta);
        peak = peak.max(now);
    }
    u64::try_from(peak).unwrap_or(0)
}

/// The `q` quantile (0..=1, nearest rank) of `values`; 0 when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}

/// The capture's lifetime statistics; lives in `DbCapture`.
pub(crate) struct CaptureStats {
    started: Instant,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    state: Mutex<StatsState>,
}

#[derive(Default)]
struct StatsState {
    statements: u64,
    /// Keyed by [`SqlFingerprint::hash`], already a hash: used as is.
    fingerprints: HashMap<u64, Tracked, std::hash::BuildHasherDefault<HashIsKey>>,
    untracked: u64,
    /// `(start, end)` in µs since `started`.
    intervals: VecDeque<(u64, u64)>,
    acquires: u64,
    acquire_total: Duration,
    acquire_max: Duration,
    acquire_window: VecDeque<f64>,
}

/// Hasher for keys that are hashes already.
#[derive(Default)]
struct HashIsKey(u64);

impl std::hash::Hasher for HashIsKey {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Tracked {
    fingerprint: Arc<SqlFingerprint>,
    sample: String,
    calls: u64,
    total: Duration,
    max: Duration,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl CaptureStats {
    pub(crate) fn new(started: Instant) -> Self {
        Self {
            started,
            in_flight: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
            state: Mutex::new(StatsState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatsState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn request_started(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
    }

    pub(crate) fn request_finished(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// A statement that finished at `finished` after running `elapsed`.
    pub(crate) fn statement(
        &self,
        fingerprint: &Arc<SqlFingerprint>,
        sample: &str,
        elapsed: Duration,
        finished: Instant,
    ) {
        let end = finished.saturating_duration_since(self.started);
        let start = end.saturating_sub(elapsed);
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let mut state = self.lock();
        state.statements += 1;
        if state.intervals.len() >= WINDOW {
            state.intervals.pop_front();
        }
        state.intervals.push_back((micros(start), micros(end)));
        let tracked = state.fingerprints.len();
        match state.fingerprints.get_mut(&fingerprint.hash()) {
            Some(t) => {
                t.calls += 1;
                t.total += elapsed;
                t.max = t.max.max(elapsed);
            }
            None if tracked < FINGERPRINTS_KEPT => {
                state.fingerprints.insert(
                    fingerprint.hash(),
                    Tracked {
                        fingerprint: fingerprint.clone(),
                        sample: sample.to_owned(),
                        calls: 1,
                        total: elapsed,
                        max: elapsed,
                    },
                );
            }
            None => state.untracked += 1,
        }
    }

    /// A pool connection was handed out after waiting `wait`.
    pub(crate) fn acquire(&self, wait: Duration) {
        let mut state = self.lock();
        state.acquires += 1;
        state.acquire_total += wait;
        state.acquire_max = state.acquire_max.max(wait);
        if state.acquire_window.len() >= WINDOW {
            state.acquire_window.pop_front();
        }
        state.acquire_window.push_back(ms(wait));
    }

    pub(crate) fn snapshot(&self, now: Instant, pool: Option<PoolGauges>) -> CaptureSnapshot {
        let state = self.lock();
        let mut fingerprints: Vec<FingerprintStats> = state
            .fingerprints
            .values()
            .map(|t| FingerprintStats {
                fingerprint: t.fingerprint.id(),
                normalized: t.fingerprint.normalized().to_owned(),
                sample: t.sample.clone(),
                calls: t.calls,
                total_ms: ms(t.total),
                mean_ms: ms(t.total) / t.calls.max(1) as f64,
                max_ms: ms(t.max),
            })
            .collect();
        fingerprints.sort_by(|a, b| {
            b.total_ms
                .total_cmp(&a.total_ms)
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        });
        let intervals: Vec<(u64, u64)> = state.intervals.iter().copied().collect();
        let waits: Vec<f64> = state.acquire_window.iter().copied().collect();
        CaptureSnapshot {
            uptime_secs: now.saturating_duration_since(self.started).as_secs_f64(),
            statements: state.statements,
            fingerprints,
            untracked_statements: state.untracked,
            concurrency: ConcurrencyStats {
                in_flight_requests: self.in_flight.load(Ordering::SeqCst),
                peak_in_flight_requests: self.peak_in_flight.load(Ordering::SeqCst),
                peak_concurrent_statements: peak_overlap(&intervals),
                window_statements: intervals.len() as u64,
            },
            acquire: AcquireStats {
                count: state.acquires,
                total_ms: ms(state.acquire_total),
                max_ms: ms(state.acquire_max),
                p50_ms: quantile(&waits, 0.5),
                p95_ms: quantile(&waits, 0.95),
            },
            pool,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_overlap_counts_intervals_open_at_once() {
        assert_eq!(peak_overlap(&[]), 0);
        assert_eq!(peak_overlap(&[(0, 10), (5, 15), (7, 8), (20, 30)]), 3);
        // Back to back is one at a time.
        assert_eq!(peak_overlap(&[(0, 10), (10, 20)]), 1);
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 50.0);
        assert_eq!(quantile(&values, 0.95), 95.0);
        assert_eq!(quantile(&values, 1.0), 100.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn statements_are_grouped_by_fingerprint_with_a_sample() {
        let t0 = Instant::now();
        let stats = CaptureStats::new(t0);
        let fp = Arc::new(SqlFingerprint::of("SELECT * FROM t WHERE id = $1"));
        let other = Arc::new(SqlFingerprint::of("SELECT 1"));
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        stats.statement(
            &fp,
            "SELECT * FROM t WHERE id = $1",
            Duration::from_millis(4),
            at(10),
        );
        stats.statement(&fp, "ignored", Duration::from_millis(6), at(12));
        stats.statement(&other, "SELECT 1", Duration::from_millis(1), at(30));
        stats.acquire(Duration::from_millis(2));
        stats.request_started();
        stats.request_started();
        stats.request_finished();
        let snap = stats.snapshot(at(40), None);
        assert_eq!(snap.statements, 3);
        assert_eq!(snap.fingerprints[0].fingerprint, fp.id());
        assert_eq!(snap.fingerprints[0].calls, 2);
        assert_eq!(snap.fingerprints[0].sample, "SELECT * FROM t WHERE id = $1");
        assert!((snap.fingerprints[0].total_ms - 10.0).abs() < 1e-9);
        assert!((snap.fingerprints[0].max_ms - 6.0).abs() < 1e-9);
        // [6,10] and [6,12] overlap.
        assert_eq!(snap.concurrency.peak_concurrent_statements, 2);
        assert_eq!(snap.concurrency.in_flight_requests, 1);
        assert_eq!(snap.concurrency.peak_in_flight_requests, 2);
        assert_eq!(snap.acquire.count, 1);
        assert!((snap.acquire.max_ms - 2.0).abs() < 1e-9);
        let json = serde_json::to_string(&snap).expect("serialize");
        let back: CaptureSnapshot = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, snap);
    }
}
