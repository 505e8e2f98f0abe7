//! Fuzz entry functions for the Cachefront worker core. Each target is one
//! `fn(&[u8])` that parses the bytes as its input format ([`input`]), calls
//! the code under test and panics when an invariant breaks. The same
//! functions run under libFuzzer (`fuzz_targets/`, feature `libfuzzer`) and
//! in `tests/replay.rs`, which replays the committed corpus and regressions
//! as an ordinary test. docs/fuzzing.md lists the invariants.

pub mod admin;
pub mod assets;
pub mod headers;
pub mod input;
pub mod keys;
pub mod policy;
pub mod reflection;

pub use admin::{config, purge_json, state_json};
pub use assets::{css_min, html_rewrite, origin_minify};
pub use headers::{cache_control, range};
pub use keys::vary_key;

/// The storage decision with the never-store invariants.
pub fn policy(data: &[u8]) {
    policy::run(data);
}

/// The reflection guard: no panic; a shown `User-Agent` is always found.
pub fn reflection(data: &[u8]) {
    reflection::run(data);
}

/// A fuzz entry function: any bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by name: the bins in `fuzz_targets/`, the directories under
/// `corpus/` and `regressions/`, and the replay test agree on these names.
pub const TARGETS: &[(&str, Target)] = &[
    ("cache_control", cache_control),
    ("policy", policy),
    ("range", range),
    ("vary_key", vary_key),
    ("config", config),
    ("purge_json", purge_json),
    ("state_json", state_json),
    ("html_rewrite", html_rewrite),
    ("css_min", css_min),
    ("origin_minify", origin_minify),
    ("reflection", reflection),
];
