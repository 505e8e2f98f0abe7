//! Operator input: the worker's variables (`ORIGINS` and the rest), purge
//! request bodies and state import documents.

use std::collections::{HashMap, HashSet};

use cachefront::admin::state::{self, MAX_FUTURE_MS};
use cachefront::config::Config;
use cachefront::purge::api::{self as purge, PurgeConfig};
use cachefront::purge::request::purge_hits_entry;

use crate::input::Lines;

/// The worker's clock for imports (times are inputs, never read).
const NOW_MS: u64 = 1_700_000_000_000;

/// Input: `NAME=VALUE` lines (the first `=` splits), e.g.
/// `ORIGINS=[{"name":"a","url":"http://127.0.0.1:3000"}]`.
pub fn config(data: &[u8]) {
    let mut vars = HashMap::new();
    let mut lines = Lines::new(data);
    while let Some(line) = lines.next_line() {
        let line = String::from_utf8_lossy(line);
        if let Some((name, value)) = line.split_once('=') {
            vars.insert(name.trim().to_owned(), value.to_owned());
        }
    }
    let lookup = |name: &str| vars.get(name).cloned();
    match Config::from_vars(lookup) {
        Ok(config) => {
            assert!(!config.origins.is_empty(), "a config without origins");
            let _ = config.primary_origin();
            let _ = config.policy_settings();
            let again = Config::from_vars(lookup).ok();
            assert_eq!(again.as_ref(), Some(&config), "deterministic");
        }
        Err(e) => assert!(!e.variable.is_empty(), "an error naming no variable: {e}"),
    }
    let _ = PurgeConfig::from_vars(lookup);
}

/// Input: a purge request body (JSON), with `/blog/` as a configured prefix.
pub fn purge_json(data: &[u8]) {
    let prefixes = vec!["/blog/".to_owned(), "/shop".to_owned()];
    let Ok(request) = purge::parse_purge_body(data, &prefixes) else {
        return;
    };
    let keying = cachefront::purge::tags::IgnoredParams(vec!["utm_*".to_owned()]);
    let keys = request.registry_keys(&keying);
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "duplicate registry keys");
    assert!(
        !keys.is_empty(),
        "an accepted purge {request:?} writes no registry key (it would purge nothing)"
    );
    for url in &request.urls {
        assert!(
            url.starts_with("http://") || url.starts_with("https://"),
            "accepted a non-http URL {url:?}"
        );
    }
    assert!(purge_hits_entry(&keys, &keys));
}

/// Input: a state import document (JSON).
pub fn state_json(data: &[u8]) {
    let Ok(document) = state::parse_document(data, NOW_MS) else {
        return;
    };
    assert!(state::validate(&document, NOW_MS).is_ok());
    let latest = NOW_MS + MAX_FUTURE_MS;
    for entry in &document.tags {
        assert!(
            entry.hard_ms <= latest && entry.soft_ms <= latest,
            "imported a purge time in the future: {entry:?}"
        );
    }
    for health in &document.origin_health {
        assert!(
            health.checked_ms <= latest,
            "imported a health time in the future: {health:?}"
        );
    }
    // What a worker exports, it can import again unchanged.
    let exported = serde_json::to_vec(&document).expect("a StateDocument serializes");
    let reimported = state::parse_document(&exported, NOW_MS);
    assert_eq!(reimported.as_ref().ok(), Some(&document), "round trip");
    let _ = state::merge_health(&document.origin_health, &document.origin_health);
}
