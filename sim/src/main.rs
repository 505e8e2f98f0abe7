//! `cachefront-sim`: runs the named scenarios and prints their tables.
//!
//! ```text
//! cachefront-sim [--scenario smoke|steady|storm|origin-outage|shard-outage|all]
//!                [--design before|per-key|after|collapse|both|herd|all] [--duration-s N] [--sim-dcs N]
//!                [--warmup-s N] [--sim-isolates N] [--ramp-s N] [--rps N] [--seed N]
//! ```

use std::process::ExitCode;

use cachefront_sim::scenario::Storm;
use cachefront_sim::{run, Scenario};

fn main() -> ExitCode {
    match main_inner() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cachefront-sim: {e}");
            ExitCode::from(2)
        }
    }
}

/// The full scenarios at the "Done when" point.
fn scenarios(which: &str) -> Result<Vec<Scenario>, String> {
    let steady = Scenario::internet("steady");
    let storm = Scenario {
        storm: Some(Storm {
            start_s: 1800,
            duration_s: 60,
            purges_per_s: 1000.0,
        }),
        ..Scenario::internet("purge-storm")
    };
    let origin = Scenario {
        origin_outage: Some((1800, 120)),
        ..Scenario::internet("origin-outage")
    };
    let shard = Scenario {
        shard_outage: Some((1, 1800, 120)),
        ..Scenario::internet("shard-outage")
    };
    Ok(match which {
        "smoke" => vec![Scenario::smoke()],
        "steady" => vec![steady],
        "storm" => vec![storm],
        "origin-outage" => vec![origin],
        "shard-outage" => vec![shard],
        "all" => vec![steady, storm, origin, shard],
        other => return Err(format!("unknown scenario {other:?}")),
    })
}

fn main_inner() -> Result<(), String> {
    let mut which = "smoke".to_owned();
    let mut design = "both".to_owned();
    let mut overrides: Vec<(String, String)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--scenario" => which = value()?,
            "--design" => design = value()?,
            "--duration-s" | "--warmup-s" | "--sim-dcs" | "--sim-isolates" | "--ramp-s"
            | "--rps" | "--seed" | "--var" => overrides.push((arg.clone(), value()?)),
            "-h" | "--help" => {
                println!("usage: cachefront-sim [--scenario smoke|steady|storm|origin-outage|shard-outage|all] [--design before|per-key|after|collapse|both|herd|all] [--duration-s N] [--warmup-s N] [--sim-dcs N] [--sim-isolates N] [--ramp-s N] [--rps N] [--seed N] [--var NAME=VALUE]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    for mut scenario in scenarios(&which)? {
        for (flag, value) in &overrides {
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{flag}: not a number: {value}"))
            };
            match flag.as_str() {
                "--duration-s" => {
                    scenario.duration_s = number()?;
                    scenario.warmup_s = scenario.warmup_s.min(scenario.duration_s / 4);
                    // Events stay in the middle of the run.
                    let middle = scenario.duration_s / 2;
                    let short = scenario.duration_s / 10;
                    if let Some(storm) = &mut scenario.storm {
                        storm.start_s = middle;
                        storm.duration_s = storm.duration_s.min(short.max(1));
                    }
                    if let Some(outage) = &mut scenario.origin_outage {
                        *outage = (middle, outage.1.min(short.max(1)));
                    }
                    if let Some(outage) = &mut scenario.shard_outage {
                        *outage = (outage.0, middle, outage.2.min(short.max(1)));
                    }
                }
                // Seconds left out of the steady-state figures (after
                // --duration-s, which sets it to a quarter at most).
                "--warmup-s" => scenario.warmup_s = number()?.min(scenario.duration_s),
                "--sim-dcs" => scenario.sim_dcs = number()? as usize,
                "--sim-isolates" => scenario.sim_isolates_per_dc = Some(number()? as usize),
                // Isolates start at random times in the first N seconds.
                "--ramp-s" => scenario.ramp_s = number()?.min(scenario.duration_s),
                "--rps" => scenario.total_rps = number()? as f64,
                "--seed" => scenario.seed = number()?,
                _ => {
                    let (k, v) = value
                        .split_once('=')
                        .ok_or_else(|| format!("--var wants NAME=VALUE, got {value}"))?;
                    scenario = scenario.with_var(k, v);
                }
            }
        }
        let designs: Vec<(&str, Scenario)> = match design.as_str() {
            "before" => vec![("before", scenario.clone().before())],
            "per-key" => vec![("per-key", scenario.clone().per_key())],
            "after" => vec![("after", scenario.clone().after())],
            "collapse" => vec![("collapse", scenario.clone().collapse())],
            "both" => vec![
                ("before", scenario.clone().before()),
                ("collapse", scenario.clone().collapse()),
            ],
            "herd" => vec![
                ("after", scenario.clone().after()),
                ("collapse", scenario.clone().collapse()),
            ],
            "all" => vec![
                ("before", scenario.clone().before()),
                ("per-key", scenario.clone().per_key()),
                ("after", scenario.clone().after()),
                ("collapse", scenario.clone().collapse()),
            ],
            other => return Err(format!("unknown design {other:?}")),
        };
        for (label, s) in designs {
            let started = std::time::Instant::now();
            let report = run(&s)?;
            println!("{}", report.table(&format!("{} ({label})", s.name)));
            eprintln!(
                "{} ({label}): {} sampled requests in {:.1} s",
                s.name,
                report.sampled_requests,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
