//! Scenarios: the workload, the network size, the events (purge storm,
//! origin outage, registry shard outage), the sample, and the worker's
//! configuration (`[vars]`) under test.

/// A burst of group purges.
#[derive(Debug, Clone, Copy)]
pub struct Storm {
    pub start_s: u64,
    pub duration_s: u64,
    pub purges_per_s: f64,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    /// Simulated time, seconds.
    pub duration_s: u64,
    /// Seconds at the start left out of steady-state figures (cold caches).
    pub warmup_s: u64,
    /// Client requests per second over the whole network at the start.
    pub total_rps: f64,
    pub dcs: usize,
    /// Isolates per data centre of average traffic.
    pub mean_isolates: usize,
    /// Data centres simulated (an even stride through the region-interleaved
    /// list); the rest are represented by them.
    pub sim_dcs: usize,
    /// Isolates simulated per simulated data centre (`None`: all of them).
    pub sim_isolates_per_dc: Option<usize>,
    /// Isolates start at random times in the first this many seconds (0:
    /// all at once, the harshest cold start).
    pub ramp_s: u64,
    /// Pages (each with its own `p:` tag, and a `g:` tag per group).
    pub pages: usize,
    pub zipf_s: f64,
    pub group_size: usize,
    /// Single-page writes (each purges its page's tag), per second.
    pub purges_per_s: f64,
    /// A write and purge of one of the 5 most popular pages every this many
    /// seconds (the herd measurement).
    pub hot_purge_every_s: u64,
    pub storm: Option<Storm>,
    /// Origin unreachable: (start, duration) seconds.
    pub origin_outage: Option<(u64, u64)>,
    /// One registry shard unreachable: (shard, start, duration) seconds.
    pub shard_outage: Option<(u32, u64, u64)>,
    /// UTC hour the simulation starts at (sets each region's diurnal rate).
    pub start_utc_hour: f64,
    /// Requests per second one registry shard serves.
    pub shard_capacity: f64,
    /// KV propagation delay, ms.
    pub kv_propagation_ms: u64,
    /// The worker's variables (PURGE_SYNC_MS, PURGE_SHARDS, ...).
    pub vars: Vec<(String, String)>,
}

impl Scenario {
    /// The "Done when" point: 1 M req/s, 300 data centres, 100 purges/s.
    pub fn internet(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            seed: 20,
            duration_s: 3600,
            warmup_s: 300,
            total_rps: 1_000_000.0,
            dcs: 300,
            mean_isolates: 30,
            sim_dcs: 30,
            sim_isolates_per_dc: Some(2),
            ramp_s: 0,
            pages: 200_000,
            zipf_s: 1.0,
            group_size: 50,
            purges_per_s: 100.0,
            hot_purge_every_s: 10,
            storm: None,
            origin_outage: None,
            shard_outage: None,
            start_utc_hour: 18.0,
            shard_capacity: 1000.0,
            kv_propagation_ms: 60_000,
            vars: Vec::new(),
        }
    }

    /// A few seconds of a small network: quick enough for the test command,
    /// with a purge storm, an origin outage and a shard outage in it.
    pub fn smoke() -> Self {
        Self {
            name: "smoke".to_owned(),
            duration_s: 40,
            warmup_s: 5,
            total_rps: 1_000.0,
            dcs: 20,
            mean_isolates: 3,
            sim_dcs: 5,
            sim_isolates_per_dc: None,
            pages: 300,
            purges_per_s: 5.0,
            hot_purge_every_s: 5,
            storm: Some(Storm {
                start_s: 10,
                duration_s: 3,
                purges_per_s: 50.0,
            }),
            origin_outage: Some((18, 4)),
            shard_outage: Some((1, 24, 4)),
            ..Self::internet("smoke")
        }
    }

    pub fn with_var(mut self, name: &str, value: &str) -> Self {
        self.vars.retain(|(k, _)| k != name);
        self.vars.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Scenario {
    /// The same scenario with the design as it was before issue #20's
    /// changes (each is a variable of the worker, so all run from one build):
    /// per-key lookups, per isolate.
    pub fn before(self) -> Self {
        self.with_var("PURGE_REFRESH_AHEAD", "off")
            .with_var("PURGE_DC_MEMO", "off")
            .with_var("PURGE_CHANGE_SYNC", "off")
            .with_var("DC_COLLAPSE", "off")
    }

    /// Issue #20's first changes: per-key lookups renewed ahead and shared
    /// through the data centre's Cache API (what main had before the change
    /// sync).
    pub fn per_key(self) -> Self {
        self.with_var("PURGE_REFRESH_AHEAD", "on")
            .with_var("PURGE_DC_MEMO", "on")
            .with_var("PURGE_CHANGE_SYNC", "off")
            .with_var("DC_COLLAPSE", "off")
    }

    /// Change sync: "purges since a cursor", one sync per shard per data
    /// centre and window, shared through the Cache API; refills still per
    /// isolate.
    pub fn after(self) -> Self {
        self.with_var("PURGE_REFRESH_AHEAD", "on")
            .with_var("PURGE_DC_MEMO", "on")
            .with_var("PURGE_CHANGE_SYNC", "on")
            .with_var("DC_COLLAPSE", "off")
    }

    /// The current design (the defaults): change sync, and one refill per
    /// data centre (`DC_COLLAPSE`: the other isolates wait on its Cache API).
    pub fn collapse(self) -> Self {
        self.after().with_var("DC_COLLAPSE", "on")
    }
}
