//! The simulator's smoke run, in the test command: a small network through a
//! purge storm, an origin outage and a registry shard outage, with the
//! design of issue #20 on and off. What must hold whatever the load: no
//! stale answer after the consistency window (outside the registry-outage
//! allowance of docs/purge.md), and no purge lost.

use cachefront_sim::{run, Report, Scenario};

fn check(scenario: Scenario) -> Report {
    let report = run(&scenario).expect("the scenario runs");
    assert!(report.writes > 100, "the workload wrote and purged");
    assert!(
        report.purge_retries > 0,
        "the shard outage refused some purges, which were retried"
    );
    assert!(
        report.stale_in_window > 0,
        "some answers were stale within the window"
    );
    assert_eq!(
        report.stale_after_window, 0,
        "no stale answer PURGE_SYNC_MS or more after a purge's 200"
    );
    assert_eq!(
        report.lost_purges, 0,
        "every purge was acknowledged in the end"
    );
    assert!(report.hit_ratio > 0.5, "the cache serves most requests");
    report
}

#[test]
fn no_stale_answer_after_the_window_and_no_lost_purge_before_the_changes() {
    check(Scenario::smoke().before());
}

#[test]
fn no_stale_answer_after_the_window_and_no_lost_purge_with_change_sync_and_dc_collapse() {
    check(Scenario::smoke().collapse());
}

#[test]
fn with_dc_collapse_a_hot_page_purge_costs_about_one_origin_request_per_data_centre() {
    // Without outages, whose failed fetches and revalidations would count too.
    let quiet = Scenario {
        duration_s: 30,
        storm: None,
        origin_outage: None,
        shard_outage: None,
        ..Scenario::smoke()
    };
    let per_isolate = run(&quiet.clone().after()).expect("runs");
    let collapsed = run(&quiet.clone().collapse()).expect("runs");
    assert!(
        collapsed.herd_mean <= quiet.dcs as f64,
        "at most one origin request per data centre: {} > {}",
        collapsed.herd_mean,
        quiet.dcs
    );
    assert!(
        per_isolate.herd_mean > 2.0 * collapsed.herd_mean,
        "collapsing is what brings it down: {} without",
        per_isolate.herd_mean
    );
}

#[test]
fn the_same_seed_gives_the_same_figures() {
    let short = Scenario {
        duration_s: 8,
        warmup_s: 2,
        storm: None,
        origin_outage: None,
        shard_outage: None,
        ..Scenario::smoke()
    };
    let a = run(&short).expect("runs");
    let b = run(&short).expect("runs");
    assert_eq!(a.sampled_requests, b.sampled_requests);
    assert_eq!(a.shard_mean, b.shard_mean);
    assert_eq!(a.stale_in_window, b.stale_in_window);
    let other = run(&Scenario { seed: 21, ..short }).expect("runs");
    assert_ne!(a.sampled_requests, other.sampled_requests);
}
