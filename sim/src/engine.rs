//! The event loop: client requests from every simulated isolate (Poisson,
//! at the per-isolate rate of its data centre's real isolate count, with the
//! region's diurnal factor), writes and their purges (through the real purge
//! API of a purging isolate near the origin, retried while a shard is down),
//! outages, and the measurements of [`crate::report::Report`].
//!
//! Sampling: only `sim_dcs` data centres (a prefix of the list, which is a
//! proportional sample of the regions) and `sim_isolates_per_dc` isolates in each run;
//! each simulated isolate receives exactly the request rate a real isolate of
//! its data centre receives, so per-isolate behaviour (memo windows,
//! lookups, the syncer's renewals) is simulated exactly and only counts are
//! scaled. Per-isolate work (client requests, per-key lookups, origin
//! fetches, KV operations) counts with the isolate weight: the real
//! isolates of its data centre per simulated one, times the isolates of the
//! network per isolate of the simulated data centres. A data centre's sync
//! of a shard counts with the data-centre weight, `all data centres /
//! simulated data centres`, whatever its isolates
//! ([`crate::platform::call_weight`]).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;

use cachefront::config::Config;
use cachefront::pipeline::{IsolateState, Pipeline};
use cachefront::platform::memory::{MemoryAssets, MemoryCloudflareApi, MemoryStreams, TaskQueue};
use cachefront::Body;
use futures::executor::block_on;
use http::Request;

use crate::platform::{
    rank_of, Content, Ctx, SimCache, SimClock, SimHealth, SimKv, SimOrigin, SimPlatform,
    SimRegistry,
};
use crate::report::{Report, Sample};
use crate::rng::{Rng, Zipf};
use crate::scenario::Scenario;
use crate::world::{self, DataCentre, REGIONS};

const PURGE_TOKEN: &str = "sim-purge-token-0123456789abcdef";
const HOST: &str = "shop.example";
/// The origin's region (North America East), where purges are sent from.
const ORIGIN_REGION: usize = 0;
/// Purging isolates (each has its own purge rate limit).
const PURGERS: usize = 8;

struct Isolate {
    pipeline: Pipeline<SimPlatform>,
    dc: usize,
    region: usize,
    /// Requests per ms at the daily mean for this isolate.
    base_rate_per_ms: f64,
    /// Real isolates this one stands for (see the module docs).
    weight: f64,
    rng: Rng,
    /// When a registry call of this isolate last failed (ms), if ever.
    registry_failed_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Request(usize),
    Write,
    HotWrite,
    StormWrite,
    /// Retry the pending purges.
    Retry,
}

/// The keys of a purge and the pages whose versions it supersedes.
struct PendingPurge {
    tag: String,
    pages: Vec<usize>,
}

pub fn config_for(scenario: &Scenario) -> Result<Config, String> {
    let mut vars: HashMap<String, String> = HashMap::from([
        (
            "ORIGINS".to_owned(),
            r#"[{"name":"origin","url":"https://origin.example"}]"#.to_owned(),
        ),
        ("PURGE_TOKEN".to_owned(), PURGE_TOKEN.to_owned()),
        ("PURGE_RATE_PER_MIN".to_owned(), "100000".to_owned()),
        ("REQUEST_LOG".to_owned(), "off".to_owned()),
    ]);
    for (k, v) in &scenario.vars {
        vars.insert(k.clone(), v.clone());
    }
    Config::from_vars(|name| vars.get(name).cloned()).map_err(|e| e.to_string())
}

/// Runs `scenario` to the end and measures it.
pub fn run(scenario: &Scenario) -> Result<Report, String> {
    let config = Rc::new(config_for(scenario)?);
    let sync_ms = config.purge.sync_ms;
    let shards = config.purge.shards;
    let clock = SimClock::default();
    let content = Rc::new(RefCell::new(Content {
        versions: vec![0; scenario.pages],
        purged_at: vec![Vec::new(); scenario.pages],
        fetches: vec![0.0; scenario.pages],
        sampled_fetches: vec![0; scenario.pages],
        outage: scenario
            .origin_outage
            .map(|(from, len)| (from * 1000, (from + len) * 1000)),
        group_size: scenario.group_size,
        cache_control: "public, max-age=600, stale-while-revalidate=30, stale-if-error=3600",
        total_fetches: 0.0,
    }));
    let registry = SimRegistry::new(shards, scenario.shard_capacity, clock.clone());
    registry.load.borrow_mut().repeat_gap_ms = config.purge.sync_ms / 2;
    if let Some((shard, from, len)) = scenario.shard_outage {
        registry
            .outages
            .borrow_mut()
            .push((shard, from * 1000, (from + len) * 1000));
    }
    let kv = SimKv::new(scenario.kv_propagation_ms, clock.clone());
    let tasks = TaskQueue::default();
    let origin = SimOrigin::new(Rc::clone(&content), clock.clone());
    let platform_for = |cache: SimCache| SimPlatform {
        cache,
        origin: origin.clone(),
        assets: MemoryAssets::new([]),
        clock: clock.clone(),
        tasks: tasks.clone(),
        health: SimHealth { kv: kv.clone() },
        global: kv.clone(),
        registry: registry.clone(),
        cloudflare: MemoryCloudflareApi::default(),
        streams: MemoryStreams::default(),
    };

    // The network and the sample.
    let dcs: Vec<DataCentre> = world::data_centres(scenario.dcs, scenario.mean_isolates);
    let all_isolates: usize = dcs.iter().map(|d| d.isolates).sum();
    let chosen: Vec<&DataCentre> = dcs.iter().take(scenario.sim_dcs.max(1)).collect();
    let norm: f64 = dcs
        .iter()
        .map(|d| d.traffic * world::diurnal(&REGIONS[d.region], scenario.start_utc_hour))
        .sum();
    let sampled_dc_isolates: usize = chosen.iter().map(|d| d.isolates).sum();
    let dc_sampling = all_isolates as f64 / sampled_dc_isolates.max(1) as f64;
    let dc_weight = dcs.len() as f64 / chosen.len() as f64;
    let mut isolates: Vec<Isolate> = Vec::new();
    for dc in &chosen {
        let cache = SimCache::new(clock.clone());
        let n = scenario
            .sim_isolates_per_dc
            .map_or(dc.isolates, |k| k.min(dc.isolates));
        let dc_rps = scenario.total_rps * dc.traffic / norm;
        for _ in 0..n {
            let id = isolates.len() as u64;
            isolates.push(Isolate {
                pipeline: Pipeline::from_shared(
                    Rc::clone(&config),
                    platform_for(cache.clone()),
                    IsolateState::new(&config),
                ),
                dc: dc.index,
                region: dc.region,
                base_rate_per_ms: dc_rps / dc.isolates as f64 / 1000.0,
                weight: dc.isolates as f64 / n.max(1) as f64 * dc_sampling,
                rng: Rng::derive(scenario.seed, id),
                registry_failed_ms: None,
            });
        }
    }
    let legacy_weight = all_isolates as f64 / isolates.len().max(1) as f64;
    let origin_cache = SimCache::new(clock.clone());
    let purgers: Vec<Pipeline<SimPlatform>> = (0..PURGERS)
        .map(|_| {
            Pipeline::from_shared(
                Rc::clone(&config),
                platform_for(origin_cache.clone()),
                IsolateState::new(&config),
            )
        })
        .collect();

    let zipf = Zipf::new(scenario.pages, scenario.zipf_s);
    let mut writes_rng = Rng::derive(scenario.seed, u64::MAX);
    let mut queue: BinaryHeap<Reverse<(u64, u64, Event)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |queue: &mut BinaryHeap<Reverse<(u64, u64, Event)>>, at_us: u64, e: Event| {
        seq += 1;
        queue.push(Reverse((at_us, seq, e)));
    };
    let rate_at = |iso: &Isolate, t_ms: f64| {
        let hour = scenario.start_utc_hour + t_ms / 3_600_000.0;
        iso.base_rate_per_ms * world::diurnal(&REGIONS[iso.region], hour)
    };
    for (i, iso) in isolates.iter_mut().enumerate() {
        let rate = rate_at(iso, 0.0);
        let start_ms = match scenario.ramp_s {
            0 => 0.0,
            ramp => iso.rng.below(ramp * 1000) as f64,
        };
        let wait = start_ms + iso.rng.exp_ms(rate);
        push(&mut queue, (wait * 1000.0) as u64, Event::Request(i));
    }
    if scenario.purges_per_s > 0.0 {
        let wait = writes_rng.exp_ms(scenario.purges_per_s / 1000.0);
        push(&mut queue, (wait * 1000.0) as u64, Event::Write);
    }
    if scenario.hot_purge_every_s > 0 {
        push(
            &mut queue,
            scenario.hot_purge_every_s * 1_000_000,
            Event::HotWrite,
        );
    }
    if let Some(storm) = scenario.storm {
        push(&mut queue, storm.start_s * 1_000_000, Event::StormWrite);
    }
    push(&mut queue, 1_000_000, Event::Retry);

    let end_us = scenario.duration_s * 1_000_000;
    let mut sample = Sample::new(scenario, &dcs, chosen.len(), all_isolates, isolates.len());
    let mut pending: Vec<PendingPurge> = Vec::new();
    let mut purger_turn = 0usize;
    let mut hot_turn = 0usize;
    // (page, ack ms, weighted and sampled fetches of the page at the ack).
    let mut hot_open: Vec<(usize, u64, f64, u64)> = Vec::new();
    let purge_rtt = REGIONS[ORIGIN_REGION].registry_rtt_ms;

    while let Some(Reverse((at_us, _, event))) = queue.pop() {
        if at_us >= end_us {
            break;
        }
        let now_ms = at_us / 1000;
        clock.now_ms.set(now_ms);
        match event {
            Event::Request(i) => {
                let iso = &mut isolates[i];
                let rank = zipf.sample(&mut iso.rng);
                *clock.ctx.borrow_mut() = Ctx {
                    dc: iso.dc,
                    region: iso.region,
                    weight: iso.weight,
                    dc_weight,
                    legacy_weight,
                    ..Ctx::default()
                };
                let request = Request::builder()
                    .uri(format!("https://{HOST}/p/{rank}"))
                    .body(Body::new())
                    .map_err(|e| e.to_string())?;
                let handled = block_on(iso.pipeline.handle(request));
                let (client_fetches, registry_wait) = {
                    let ctx = clock.ctx.borrow();
                    (ctx.origin_fetches, ctx.registry_wait_ms)
                };
                clock.ctx.borrow_mut().background = true;
                block_on(tasks.run_all());
                if clock.ctx.borrow().registry_failed {
                    iso.registry_failed_ms = Some(now_ms);
                }
                // Guarantee 5 of docs/purge.md: while the registry cannot be
                // reached, answers up to `max_age` old are still used.
                let max_age = sync_ms.saturating_mul(10).max(10_000);
                let excused = iso
                    .registry_failed_ms
                    .is_some_and(|t| now_ms <= t + max_age + sync_ms);
                let version: Option<u32> = handled
                    .response
                    .headers()
                    .get("x-sim-version")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let purged_at = version.and_then(|v| {
                    content.borrow().purged_at[rank]
                        .get(v as usize)
                        .copied()
                        .flatten()
                });
                sample.request(
                    now_ms,
                    iso.weight,
                    iso.dc,
                    iso.region,
                    rank,
                    version,
                    handled.response.status().as_u16(),
                    client_fetches,
                    registry_wait,
                    purged_at,
                    sync_ms,
                    excused,
                );
                let rate = rate_at(iso, now_ms as f64);
                let wait = iso.rng.exp_ms(rate);
                push(
                    &mut queue,
                    at_us + (wait * 1000.0).max(1.0) as u64,
                    Event::Request(i),
                );
            }
            Event::Write | Event::HotWrite | Event::StormWrite => {
                let purge = match event {
                    Event::Write => {
                        let page = writes_rng.below(scenario.pages as u64) as usize;
                        let wait = writes_rng.exp_ms(scenario.purges_per_s / 1000.0);
                        push(
                            &mut queue,
                            at_us + (wait * 1000.0).max(1.0) as u64,
                            Event::Write,
                        );
                        PendingPurge {
                            tag: format!("p:{page}"),
                            pages: vec![page],
                        }
                    }
                    Event::HotWrite => {
                        let page = hot_turn % 5;
                        hot_turn += 1;
                        push(
                            &mut queue,
                            at_us + scenario.hot_purge_every_s * 1_000_000,
                            Event::HotWrite,
                        );
                        PendingPurge {
                            tag: format!("p:{page}"),
                            pages: vec![page],
                        }
                    }
                    _ => {
                        let storm = scenario.storm.unwrap_or(crate::scenario::Storm {
                            start_s: 0,
                            duration_s: 0,
                            purges_per_s: 1.0,
                        });
                        let wait = writes_rng.exp_ms(storm.purges_per_s / 1000.0);
                        let next = at_us + (wait * 1000.0).max(1.0) as u64;
                        if next < (storm.start_s + storm.duration_s) * 1_000_000 {
                            push(&mut queue, next, Event::StormWrite);
                        }
                        let groups = scenario.pages.div_ceil(scenario.group_size.max(1));
                        let group = writes_rng.below(groups as u64) as usize;
                        let first = group * scenario.group_size;
                        let last = (first + scenario.group_size).min(scenario.pages);
                        PendingPurge {
                            tag: format!("g:{group}"),
                            pages: (first..last).collect(),
                        }
                    }
                };
                {
                    let mut content = content.borrow_mut();
                    for page in &purge.pages {
                        let old = content.versions[*page] as usize;
                        content.versions[*page] += 1;
                        let acks = &mut content.purged_at[*page];
                        if acks.len() <= old {
                            acks.resize(old + 1, None);
                        }
                    }
                }
                sample.writes += 1;
                let hot = matches!(event, Event::HotWrite).then(|| purge.pages[0]);
                purger_turn += 1;
                let purger = &purgers[purger_turn % PURGERS];
                match send_purge(purger, &clock, &tasks, &purge.tag) {
                    Ok(()) => {
                        let ack = now_ms + purge_rtt;
                        acknowledge(&content, &purge.pages, ack);
                        if let Some(page) = hot {
                            let content = content.borrow();
                            let (weighted, sampled) =
                                (content.fetches[page], content.sampled_fetches[page]);
                            hot_open.push((page, ack, weighted, sampled));
                        }
                    }
                    Err(()) => {
                        sample.purge_retries += 1;
                        pending.push(purge);
                    }
                }
            }
            Event::Retry => {
                let retry: Vec<PendingPurge> = std::mem::take(&mut pending);
                for purge in retry {
                    purger_turn += 1;
                    let purger = &purgers[purger_turn % PURGERS];
                    match send_purge(purger, &clock, &tasks, &purge.tag) {
                        Ok(()) => acknowledge(&content, &purge.pages, now_ms + purge_rtt),
                        Err(()) => {
                            sample.purge_retries += 1;
                            pending.push(purge);
                        }
                    }
                }
                push(&mut queue, at_us + 1_000_000, Event::Retry);
            }
        }
        // Close herd windows: origin fetches of a hot page in the
        // `hot_purge_every_s` after its purge was acknowledged.
        let horizon = scenario.hot_purge_every_s * 1000;
        hot_open.retain(|(page, ack, before, sampled_before)| {
            if now_ms < ack + horizon {
                return true;
            }
            let content = content.borrow();
            if *ack >= scenario.warmup_s * 1000 {
                sample.herd.push(content.fetches[*page] - before);
                sample
                    .herd_sampled
                    .push((content.sampled_fetches[*page] - sampled_before) as f64);
            }
            false
        });
    }
    sample.lost_purges = pending.len() as u64;
    sample.lost_purges += unacknowledged(&content);
    let load = registry.load.borrow();
    let kv_ops = *kv.ops.borrow();
    let origin_fetches = content.borrow().total_fetches;
    Ok(sample.finish(&load, kv_ops, origin_fetches, shards, &config))
}

/// Sends a purge of `tag` through the purge API of `purger`; `Err` on
/// anything but a 200 (the registry could not record it).
fn send_purge(
    purger: &Pipeline<SimPlatform>,
    clock: &SimClock,
    tasks: &TaskQueue,
    tag: &str,
) -> Result<(), ()> {
    *clock.ctx.borrow_mut() = Ctx {
        dc: usize::MAX,
        region: ORIGIN_REGION,
        weight: 1.0,
        dc_weight: 1.0,
        legacy_weight: 1.0,
        ..Ctx::default()
    };
    let request = Request::builder()
        .method("POST")
        .uri(format!("https://{HOST}/__cachefront/purge"))
        .header("authorization", format!("Bearer {PURGE_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(format!(r#"{{"tags":["{tag}"]}}"#)))
        .map_err(|_| ())?;
    let handled = block_on(purger.handle(request));
    clock.ctx.borrow_mut().background = true;
    block_on(tasks.run_all());
    if handled.response.status() == 200 {
        Ok(())
    } else {
        Err(())
    }
}

/// Records the acknowledgement time of every superseded, not yet
/// acknowledged version of `pages`.
fn acknowledge(content: &RefCell<Content>, pages: &[usize], ack_ms: u64) {
    let mut content = content.borrow_mut();
    for page in pages {
        let current = content.versions[*page] as usize;
        for slot in content.purged_at[*page].iter_mut().take(current) {
            if slot.is_none() {
                *slot = Some(ack_ms);
            }
        }
    }
}

/// Superseded versions whose purge was never acknowledged.
fn unacknowledged(content: &RefCell<Content>) -> u64 {
    let content = content.borrow();
    let mut lost = 0u64;
    for (page, acks) in content.purged_at.iter().enumerate() {
        let current = content.versions[page] as usize;
        lost += acks.iter().take(current).filter(|a| a.is_none()).count() as u64;
    }
    lost
}

/// The page requested, for reports.
pub fn page_of(path: &str) -> Option<usize> {
    rank_of(path)
}
