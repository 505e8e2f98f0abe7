//! What a run measured, and the table it prints.
//!
//! Steady-state figures leave out the scenario's warm-up seconds. Counts of
//! sampled requests are exact; network-wide rates (registry calls, KV
//! operations, origin fetches, worker requests) are the sampled counts
//! times their weights (see `engine` and `platform::call_weight`).

use std::collections::HashMap;
use std::fmt::Write as _;

use cachefront::config::Config;

use crate::platform::{KvOps, ShardLoad};
use crate::scenario::Scenario;
use crate::world::{DataCentre, REGIONS};

/// Unit prices, USD (Workers Paid; see docs/scale.md for the sources).
pub mod price {
    /// Worker requests, per million (Workers Standard).
    pub const WORKER_REQUEST_PER_M: f64 = 0.30;
    /// Worker CPU, per million CPU ms.
    pub const WORKER_CPU_PER_M_MS: f64 = 0.02;
    /// CPU time assumed per worker request, ms.
    pub const WORKER_CPU_MS: f64 = 1.0;
    /// Durable Object requests, per million.
    pub const DO_REQUEST_PER_M: f64 = 0.15;
    /// Durable Object duration, per million GB-s (billed at 128 MB).
    pub const DO_GB_S_PER_M: f64 = 12.50;
    /// SQLite-backed Durable Object rows written, per million.
    pub const DO_ROWS_WRITTEN_PER_M: f64 = 1.00;
    /// Rows read, per million.
    pub const DO_ROWS_READ_PER_M: f64 = 0.001;
    pub const KV_READ_PER_M: f64 = 0.50;
    pub const KV_WRITE_PER_M: f64 = 5.00;
    pub const KV_DELETE_PER_M: f64 = 5.00;
    /// Seconds in the 30-day month the estimate is for.
    pub const MONTH_S: f64 = 30.0 * 86_400.0;
}

/// Collects per-request observations during a run.
pub struct Sample {
    warmup_ms: u64,
    duration_s: u64,
    /// Client requests, each counted with its isolate's weight.
    weighted_requests: f64,
    sim_dcs: usize,
    pub all_isolates: usize,
    pub sim_isolates: usize,
    dcs: usize,
    /// Slowest registry round trip of any data centre, ms.
    slowest_rtt_ms: u64,
    requests: u64,
    all_requests: u64,
    hits: u64,
    errors: u64,
    waited: Vec<f64>,
    stale_in_window: u64,
    stale_after_window: u64,
    stale_in_outage: u64,
    /// (data centre, page, version) → latest lag after the ack, ms.
    lags: HashMap<(usize, usize, u32), (usize, u64)>,
    pub herd: Vec<f64>,
    /// Origin fetches per hot-page purge made by the simulated isolates.
    pub herd_sampled: Vec<f64>,
    pub writes: u64,
    pub purge_retries: u64,
    pub lost_purges: u64,
}

impl Sample {
    pub fn new(
        scenario: &Scenario,
        dcs: &[DataCentre],
        sim_dcs: usize,
        all_isolates: usize,
        sim_isolates: usize,
    ) -> Self {
        let slowest_rtt_ms = dcs
            .iter()
            .map(|d| REGIONS[d.region].registry_rtt_ms)
            .max()
            .unwrap_or(0);
        Self {
            warmup_ms: scenario.warmup_s * 1000,
            duration_s: scenario.duration_s,
            weighted_requests: 0.0,
            sim_dcs,
            all_isolates,
            sim_isolates,
            dcs: dcs.len(),
            slowest_rtt_ms,
            requests: 0,
            all_requests: 0,
            hits: 0,
            errors: 0,
            waited: Vec::new(),
            stale_in_window: 0,
            stale_after_window: 0,
            stale_in_outage: 0,
            lags: HashMap::new(),
            herd: Vec::new(),
            herd_sampled: Vec::new(),
            writes: 0,
            purge_retries: 0,
            lost_purges: 0,
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &mut self,
        now_ms: u64,
        weight: f64,
        dc: usize,
        region: usize,
        page: usize,
        version: Option<u32>,
        status: u16,
        origin_fetches: u32,
        registry_wait_ms: f64,
        purged_at: Option<u64>,
        sync_ms: u64,
        registry_trouble: bool,
    ) {
        self.all_requests += 1;
        self.weighted_requests += weight;
        // Staleness counts from the first second: the guarantee has no warm-up.
        if let (Some(v), Some(ack)) = (version, purged_at) {
            if now_ms >= ack {
                let lag = now_ms - ack;
                if lag >= sync_ms && registry_trouble {
                    self.stale_in_outage += 1;
                } else if lag >= sync_ms {
                    self.stale_after_window += 1;
                } else {
                    self.stale_in_window += 1;
                }
                let slot = self.lags.entry((dc, page, v)).or_insert((region, 0));
                slot.1 = slot.1.max(lag);
            }
        }
        if now_ms < self.warmup_ms {
            return;
        }
        self.requests += 1;
        if status >= 500 {
            self.errors += 1;
        } else if origin_fetches == 0 {
            self.hits += 1;
        }
        if registry_wait_ms > 0.0 {
            self.waited.push(registry_wait_ms);
        }
    }

    pub fn finish(
        self,
        load: &ShardLoad,
        kv: KvOps,
        origin_fetches: f64,
        shards: u32,
        config: &Config,
    ) -> Report {
        let steady_s = (self.duration_s.saturating_sub(self.warmup_ms / 1000)).max(1);
        let first = (self.warmup_ms / 1000) as usize;
        let mut shard_mean = Vec::new();
        let mut shard_p99 = Vec::new();
        let mut shard_max = Vec::new();
        let mut calls = 0.0;
        let steady_of = |series: &Vec<f64>| -> Vec<f64> {
            (first..self.duration_s as usize)
                .map(|s| series.get(s).copied().unwrap_or(0.0))
                .collect()
        };
        for series in &load.per_second {
            let mut steady = steady_of(series);
            calls += steady.iter().sum::<f64>();
            shard_mean.push(mean(&steady));
            shard_p99.push(percentile(&mut steady, 0.99));
            shard_max.push(steady.iter().copied().fold(0.0, f64::max));
        }
        let mut legacy_mean = Vec::new();
        let mut legacy_p99 = Vec::new();
        for series in &load.legacy_per_second {
            let mut steady = steady_of(series);
            legacy_mean.push(mean(&steady));
            legacy_p99.push(percentile(&mut steady, 0.99));
        }
        let mut queue: Vec<f64> = load.queue_ms.iter().map(|(q, _)| *q).collect();
        let mut waited = self.waited.clone();
        let mut lags_by_region: Vec<Vec<f64>> = vec![Vec::new(); REGIONS.len()];
        for ((_, _, _), (region, lag)) in &self.lags {
            lags_by_region[*region].push(*lag as f64);
        }
        let purge_to_fresh: Vec<(String, f64, f64)> = lags_by_region
            .iter_mut()
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
            .map(|(r, l)| {
                let p50 = percentile(l, 0.5);
                let max = l.iter().copied().fold(0.0, f64::max);
                (REGIONS[r].name.to_owned(), p50, max)
            })
            .collect();
        let elapsed_s = self.duration_s.max(1) as f64;
        let worker_rps = self.weighted_requests / elapsed_s;
        let do_rps = calls / steady_s as f64;
        let rows_written_ps = load.rows_written / elapsed_s;
        let rows_read_ps = load.rows_read / elapsed_s;
        let m = price::MONTH_S / 1e6;
        let cost_workers = worker_rps
            * m
            * (price::WORKER_REQUEST_PER_M + price::WORKER_CPU_MS * price::WORKER_CPU_PER_M_MS);
        let cost_do_requests = do_rps * m * price::DO_REQUEST_PER_M;
        let cost_do_duration = f64::from(shards) * 0.125 * m * price::DO_GB_S_PER_M;
        let cost_do_rows = rows_written_ps * m * price::DO_ROWS_WRITTEN_PER_M
            + rows_read_ps * m * price::DO_ROWS_READ_PER_M;
        let cost_kv = (kv.reads * price::KV_READ_PER_M
            + kv.writes * price::KV_WRITE_PER_M
            + kv.deletes * price::KV_DELETE_PER_M)
            / elapsed_s
            * m;
        let timeline = load
            .buckets
            .iter()
            .map(|series| {
                series
                    .iter()
                    .map(|b| b.map(|calls| calls / crate::platform::BUCKET_S as f64))
                    .collect()
            })
            .collect();
        Report {
            timeline,
            calls_per_s: (
                load.lookups / elapsed_s,
                load.syncs / elapsed_s,
                load.purges / elapsed_s,
            ),
            shards,
            sync_ms: config.purge.sync_ms,
            dcs: self.dcs,
            all_isolates: self.all_isolates,
            sim_isolates: self.sim_isolates,
            sampled_requests: self.all_requests,
            worker_rps,
            shard_mean,
            shard_p99,
            shard_max,
            legacy_mean,
            legacy_p99,
            queue_mean_ms: mean(&queue),
            queue_p99_ms: percentile(&mut queue, 0.99),
            waited_share: self.waited.len() as f64 / self.requests.max(1) as f64,
            steady_requests: self.requests,
            waited: self.waited.len() as u64,
            waited_p50_ms: percentile(&mut waited, 0.5),
            waited_p99_ms: percentile(&mut waited, 0.99),
            purge_to_fresh,
            window_bound_ms: config.purge.sync_ms + self.slowest_rtt_ms,
            stale_in_window: self.stale_in_window,
            stale_after_window: self.stale_after_window,
            stale_in_outage: self.stale_in_outage,
            overloaded: load.overloaded,
            herd_mean: mean(&self.herd),
            herd_max: self.herd.iter().copied().fold(0.0, f64::max),
            herd_per_sim_dc: mean(&self.herd_sampled) / self.sim_dcs.max(1) as f64,
            hit_ratio: self.hits as f64 / self.requests.max(1) as f64,
            error_share: self.errors as f64 / self.requests.max(1) as f64,
            origin_rps: origin_fetches / elapsed_s,
            writes: self.writes,
            purge_retries: self.purge_retries,
            lost_purges: self.lost_purges,
            cost_workers,
            cost_do_requests,
            cost_do_duration,
            cost_do_rows,
            cost_kv,
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct Report {
    pub shards: u32,
    pub sync_ms: u64,
    pub dcs: usize,
    pub all_isolates: usize,
    pub sim_isolates: usize,
    pub sampled_requests: u64,
    pub worker_rps: f64,
    /// Registry calls per second per shard: mean, p99, max over steady seconds.
    pub shard_mean: Vec<f64>,
    pub shard_p99: Vec<f64>,
    pub shard_max: Vec<f64>,
    /// Mean and p99 per shard with every call counted with one weight, all
    /// isolates / simulated isolates (the accounting before calls were
    /// weighted by kind), for comparison.
    pub legacy_mean: Vec<f64>,
    pub legacy_p99: Vec<f64>,
    pub queue_mean_ms: f64,
    pub queue_p99_ms: f64,
    /// Share of steady-state client requests that waited on a registry lookup.
    pub waited_share: f64,
    /// Steady-state sampled requests, and those that waited on a lookup.
    pub steady_requests: u64,
    pub waited: u64,
    pub waited_p50_ms: f64,
    pub waited_p99_ms: f64,
    /// Per region: (name, p50, max) of the time from a purge's 200 to the
    /// last stale answer in a data centre, ms.
    pub purge_to_fresh: Vec<(String, f64, f64)>,
    /// `PURGE_SYNC_MS` + the slowest data centre's registry round trip.
    pub window_bound_ms: u64,
    /// Registry calls per second over all shards: per-key lookups, syncs, purges.
    pub calls_per_s: (f64, f64, f64),
    /// Per shard, per `BUCKET_S` seconds: calls/s of per-key lookups, syncs,
    /// repeated syncs (included in syncs) and purges.
    pub timeline: Vec<Vec<[f64; 4]>>,
    pub stale_in_window: u64,
    /// Stale answers `PURGE_SYNC_MS` or more after the purge's 200 (must be 0).
    pub stale_after_window: u64,
    /// Stale answers past the window from an isolate whose registry calls
    /// failed within the last 10 windows (allowed: docs/purge.md, point 5).
    pub stale_in_outage: u64,
    /// Registry calls refused as overloaded (queue past `MAX_QUEUE_MS`), weighted.
    pub overloaded: f64,
    /// Origin fetches of a hot page after its purge (network-wide, weighted).
    pub herd_mean: f64,
    pub herd_max: f64,
    /// Origin fetches per hot-page purge by the simulated isolates, per
    /// simulated data centre (1: one refetch per data centre).
    pub herd_per_sim_dc: f64,
    pub hit_ratio: f64,
    pub error_share: f64,
    pub origin_rps: f64,
    pub writes: u64,
    pub purge_retries: u64,
    /// Purges never acknowledged by the end of the run (must be 0).
    pub lost_purges: u64,
    pub cost_workers: f64,
    pub cost_do_requests: f64,
    pub cost_do_duration: f64,
    pub cost_do_rows: f64,
    pub cost_kv: f64,
}

impl Report {
    pub fn cost_total(&self) -> f64 {
        self.cost_workers
            + self.cost_do_requests
            + self.cost_do_duration
            + self.cost_do_rows
            + self.cost_kv
    }

    pub fn busiest_shard_p99(&self) -> f64 {
        self.shard_p99.iter().copied().fold(0.0, f64::max)
    }

    pub fn slowest_purge_to_fresh_ms(&self) -> f64 {
        self.purge_to_fresh
            .iter()
            .map(|(_, _, max)| *max)
            .fold(0.0, f64::max)
    }

    /// The report as a Markdown table of `name | value` rows.
    pub fn table(&self, name: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "### {name}\n");
        let _ = writeln!(out, "| measure | value |\n| --- | --- |");
        let mut row = |k: &str, v: String| {
            let _ = writeln!(out, "| {k} | {v} |");
        };
        row(
            "network",
            format!(
                "{} DCs, {} isolates ({} simulated), {:.0} worker req/s, {} sampled requests",
                self.dcs,
                self.all_isolates,
                self.sim_isolates,
                self.worker_rps,
                self.sampled_requests
            ),
        );
        row(
            "PURGE_SHARDS / PURGE_SYNC_MS",
            format!("{} / {}", self.shards, self.sync_ms),
        );
        row("registry req/s per shard: mean", list(&self.shard_mean));
        let (lookups, syncs, purges) = self.calls_per_s;
        row(
            "registry calls/s, all shards: per-key lookups / syncs / purges",
            format!("{lookups:.0} / {syncs:.0} / {purges:.0}"),
        );
        row(
            "registry req/s per shard: p99 second",
            list(&self.shard_p99),
        );
        row(
            "the same, one weight for every call (old accounting): mean / p99 second",
            format!("{} / {}", list(&self.legacy_mean), list(&self.legacy_p99)),
        );
        row(
            "registry queueing delay mean / p99",
            format!("{:.1} ms / {:.1} ms", self.queue_mean_ms, self.queue_p99_ms),
        );
        row(
            "client requests waiting on a registry lookup",
            format!(
                "{:.2} % ({} of {} sampled; added p50 {:.0} ms, p99 {:.0} ms)",
                self.waited_share * 100.0,
                self.waited,
                self.steady_requests,
                self.waited_p50_ms,
                self.waited_p99_ms
            ),
        );
        let fresh: Vec<String> = self
            .purge_to_fresh
            .iter()
            .map(|(r, p50, max)| format!("{r} {p50:.0}/{max:.0}"))
            .collect();
        row(
            "purge → fresh per region, p50/max ms (bound)",
            format!("{} ({} ms)", fresh.join(", "), self.window_bound_ms),
        );
        row(
            "stale answers: in window / after window / after window in registry trouble",
            format!(
                "{} / **{}** / {}",
                self.stale_in_window, self.stale_after_window, self.stale_in_outage
            ),
        );
        row(
            "registry calls refused as overloaded",
            format!("{:.0}", self.overloaded),
        );
        row(
            "origin requests per hot-page purge mean / max (sampled, per simulated DC)",
            format!(
                "{:.0} / {:.0} ({:.2})",
                self.herd_mean, self.herd_max, self.herd_per_sim_dc
            ),
        );
        row(
            "hit ratio / 5xx share / origin req/s",
            format!(
                "{:.2} % / {:.3} % / {:.0}",
                self.hit_ratio * 100.0,
                self.error_share * 100.0,
                self.origin_rps
            ),
        );
        row(
            "writes / purge retries / lost purges",
            format!(
                "{} / {} / {}",
                self.writes, self.purge_retries, self.lost_purges
            ),
        );
        row(
            "monthly cost (USD)",
            format!(
                "{:.0} = workers {:.0} + DO requests {:.0} + DO duration {:.0} + DO rows {:.0} + KV {:.0}",
                self.cost_total(),
                self.cost_workers,
                self.cost_do_requests,
                self.cost_do_duration,
                self.cost_do_rows,
                self.cost_kv
            ),
        );
        if self.timeline.iter().any(|s| s.len() > 1) {
            let _ = writeln!(
                out,
                "\nRegistry calls/s per shard per {} s (whole run): per-key lookups / syncs (of which repeats within half a window by the same data centre) / purges\n",
                crate::platform::BUCKET_S
            );
            let _ = writeln!(
                out,
                "| from s | {} |\n| --- |{}",
                (0..self.timeline.len())
                    .map(|s| format!("shard {s}"))
                    .collect::<Vec<_>>()
                    .join(" | "),
                " --- |".repeat(self.timeline.len())
            );
            let buckets = self.timeline.iter().map(Vec::len).max().unwrap_or(0);
            for b in 0..buckets {
                let cells: Vec<String> = self
                    .timeline
                    .iter()
                    .map(|s| {
                        let [l, y, r, p] = s.get(b).copied().unwrap_or([0.0; 4]);
                        format!("{l:.0} / {y:.0} ({r:.0}) / {p:.0}")
                    })
                    .collect();
                let _ = writeln!(
                    out,
                    "| {} | {} |",
                    b as u64 * crate::platform::BUCKET_S,
                    cells.join(" | ")
                );
            }
        }
        out
    }
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// The `q` quantile (nearest rank); sorts `values`.
pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}
