//! The reflection guard (`cachefront::semantics::reflection`): any request
//! fields, any body, never a panic; and a `User-Agent` or foreign `Referer`
//! value long enough to probe that the body shows raw is always found.

use cachefront::semantics::reflection::{self, MIN_PROBE_LEN};
use http::header;

use crate::input::Lines;

/// Input:
/// ```text
/// shop.example         the request's host (first line)
/// user-agent: EVIL-1   forwarded request fields, then an empty line
///
/// <p>EVIL-1</p>        the body (the rest)
/// ```
pub fn run(data: &[u8]) {
    let mut lines = Lines::new(data);
    let host = lines.next_text();
    let forwarded = lines.headers();
    let body = lines.remainder();

    let probes = reflection::probes(&forwarded, |_| false, false, Some(&host));
    let found = reflection::reflected(&probes, body);
    if let Some(field) = found {
        assert!(
            forwarded.contains_key(field),
            "reflected names {field:?}, which the request did not carry"
        );
    }
    // Keyed fields are never probes.
    let keyed = reflection::probes(&forwarded, |_| true, true, Some(&host));
    assert!(keyed.is_empty(), "a keyed field was probed: {keyed:?}");

    // A raw User-Agent long enough to probe is found wherever it is shown.
    if let Some(agent) = forwarded
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        let agent = agent.trim();
        if agent.len() >= MIN_PROBE_LEN && memchr_find(body, agent.as_bytes()) {
            assert!(found.is_some(), "user-agent {agent:?} shown but not found");
        }
    }
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
