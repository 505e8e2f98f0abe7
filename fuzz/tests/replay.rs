//! Replays every committed input (`seeds/`, `corpus/` and `regressions/<target>/`)
//! through its target's entry function, so what the fuzzer once found, and
//! the coverage it built up, stays a plain `cargo test`.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["seeds", "corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        files.extend(entries.filter_map(Result::ok).map(|e| e.path()));
    }
    files.retain(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"));
    files.sort();
    files
}

/// Runs every input; the failures, named by file, fail the test together.
fn replay(target: &str) {
    let run = cachefront_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, run)| *run)
        .unwrap_or_else(|| panic!("no target {target}"));
    let files = inputs(target);
    assert!(!files.is_empty(), "no corpus for {target}");
    let failures: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let data = std::fs::read(path).ok()?;
            std::panic::catch_unwind(|| run(&data))
                .err()
                .map(|_| path.display().to_string())
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs broke an invariant or panicked:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

macro_rules! replay_tests {
    ($($test:ident => $target:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            replay($target);
        }
    )*};
}

replay_tests! {
    cache_control_corpus_replays_without_panics => "cache_control",
    policy_corpus_never_stores_what_the_trust_rules_forbid => "policy",
    range_corpus_gives_exact_slices_and_content_ranges => "range",
    vary_key_corpus_keys_are_order_and_ignored_param_independent => "vary_key",
    config_corpus_replays_without_panics => "config",
    purge_json_corpus_accepted_purges_write_registry_keys => "purge_json",
    state_json_corpus_imports_no_future_times_and_round_trips => "state_json",
    html_rewrite_corpus_replays_without_panics => "html_rewrite",
    css_min_corpus_never_grows_and_accepts_its_own_output => "css_min",
    origin_minify_corpus_respects_no_transform_and_weakens_etags => "origin_minify",
    reflection_corpus_finds_every_shown_user_agent => "reflection",
}

#[test]
fn every_target_has_a_replay_test() {
    let source = include_str!("replay.rs");
    for (name, _) in cachefront_fuzz::TARGETS {
        assert!(
            source.contains(&format!("=> \"{name}\"")),
            "{name} is not replayed"
        );
    }
}
