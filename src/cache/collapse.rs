//! Collapsing refills across the isolates of one data centre (`DC_COLLAPSE`):
//! the decisions, as pure functions of a claim marker, the time and the
//! settings. The pipeline (`pipeline::miss`) does the Cache API reads and
//! writes.
//!
//! The isolate that must fetch a key from the origin first leaves a *claim*
//! (a small marker entry under a reserved URL) in its data centre's Cache
//! API. Another isolate of the same data centre that misses on that key
//! while the claim is fresh waits a bounded time, polling the Cache API, and
//! serves what the claimer stored through the ordinary lookup: the same
//! `Vary`, freshness, purge and policy decisions as any hit. A waiter never
//! receives the claimer's response itself, so it can only get what the
//! store decision let into the shared cache.
//!
//! When the claimer's answer was not stored (private, `no-store`, an error,
//! `Set-Cookie`, reflected…) it leaves a *no-wait* marker instead, and
//! waiters fetch for themselves at once (hit-for-miss). The Cache API has no
//! compare-and-set: two isolates may both claim and both fetch. A race costs
//! origin requests, never a wrong answer.

use serde::{Deserialize, Serialize};

/// Where the Cache API keys of fill claims start (a reserved host no client
/// URL can have: `.invalid` never resolves).
pub const CLAIMS_URL: &str = "https://cachefront-fill.invalid/";

/// How long a no-wait marker keeps a data centre's isolates from waiting on
/// a key whose answer could not be shared, unless a later fill is stored.
pub const NO_WAIT_MS: u64 = 10_000;

/// How long a "stored" marker tells arriving isolates to look in the Cache
/// API before claiming (their own memory tier may still hold the old entry).
pub const STORED_HINT_MS: u64 = 10_000;

/// First and longest pause between two polls of a waiter, ms.
const FIRST_POLL_MS: u64 = 10;
const LONGEST_POLL_MS: u64 = 250;

/// `DC_COLLAPSE` and `DC_COLLAPSE_MAX_WAIT_MS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollapseSettings {
    pub enabled: bool,
    /// The longest a request waits for another isolate's fill (and the life
    /// of a claim: one older than this is taken for abandoned).
    pub max_wait_ms: u64,
}

impl Default for CollapseSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_wait_ms: DEFAULT_MAX_WAIT_MS,
        }
    }
}

pub const DEFAULT_MAX_WAIT_MS: u64 = 3_000;
/// Bounds of `DC_COLLAPSE_MAX_WAIT_MS`.
pub const MIN_MAX_WAIT_MS: u64 = 10;
pub const MAX_MAX_WAIT_MS: u64 = 30_000;

/// Whether a Cache API key holds a claim marker, not a client response.
pub fn is_claim(cache_key: &str) -> bool {
    cache_key.starts_with(CLAIMS_URL)
}

/// What a marker says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClaimState {
    /// An isolate is fetching it: wait.
    Filling,
    /// A fill stored it: look in the Cache API before fetching.
    Stored,
    /// The last fill could not be shared: fetch for yourself.
    NoWait,
}

/// The marker left in the Cache API for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimMarker {
    pub state: ClaimState,
    /// When it was written (ms since the epoch).
    pub at_ms: u64,
    /// Past this, it says nothing.
    pub until_ms: u64,
}

impl ClaimMarker {
    fn live(&self, now_ms: u64) -> bool {
        now_ms < self.until_ms && self.at_ms <= now_ms.saturating_add(MAX_MAX_WAIT_MS)
    }

    /// How long the Cache API should keep it, in seconds.
    pub fn keep_secs(&self) -> u64 {
        self.until_ms
            .saturating_sub(self.at_ms)
            .div_ceil(1000)
            .max(1)
    }
}

/// The Cache API key of the claim on a cache key (hex, as keys may hold any
/// character a URL may).
pub fn claim_url(namespace: &str, cache_key: &str) -> String {
    super::key::record_url(CLAIMS_URL, namespace, cache_key)
}

/// What an isolate about to fetch a key does first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Collapsing is off, or the request could not use a shared answer:
    /// fetch, without claiming or releasing anything.
    Skip,
    /// Claim the fill, then fetch.
    Claim,
    /// A fill was just stored: look in the Cache API once; claim if it does
    /// not serve.
    LookThenClaim,
    /// Another isolate is fetching: wait for it.
    Wait,
    /// The last fill could not be shared: fetch (and release) without waiting.
    FetchAlone,
}

/// The first step for a request that must fetch, given the marker found.
/// `shareable_request`: whether a stored answer could serve this request at
/// all (see [`request_may_wait`]).
pub fn on_arrival(
    marker: Option<&ClaimMarker>,
    now_ms: u64,
    settings: &CollapseSettings,
    shareable_request: bool,
) -> Arrival {
    if !settings.enabled || !shareable_request {
        return Arrival::Skip;
    }
    match marker.filter(|m| m.live(now_ms)).map(|m| m.state) {
        None => Arrival::Claim,
        Some(ClaimState::Filling) => Arrival::Wait,
        Some(ClaimState::Stored) => Arrival::LookThenClaim,
        Some(ClaimState::NoWait) => Arrival::FetchAlone,
    }
}

/// Whether a stored answer could serve a request with these directives: one
/// that refuses any stored answer (`no-cache`, `max-age=0`) neither waits
/// nor claims (it still fetches as it always did).
pub fn request_may_wait(no_cache: bool, max_age: Option<u64>) -> bool {
    !no_cache && max_age != Some(0)
}

/// The claim an isolate leaves before fetching.
pub fn claim(now_ms: u64, settings: &CollapseSettings) -> ClaimMarker {
    ClaimMarker {
        state: ClaimState::Filling,
        at_ms: now_ms,
        until_ms: now_ms.saturating_add(settings.max_wait_ms),
    }
}

/// The marker a fill leaves when it is done: "stored" when its answer went
/// into the shared cache (a waiter's own lookup then decides whether it
/// serves; one that would have to be revalidated at once does not, and the
/// waiter fetches), else "no wait".
pub fn release(stored: bool, now_ms: u64) -> ClaimMarker {
    let (state, life) = if stored {
        (ClaimState::Stored, STORED_HINT_MS)
    } else {
        (ClaimState::NoWait, NO_WAIT_MS)
    };
    ClaimMarker {
        state,
        at_ms: now_ms,
        until_ms: now_ms.saturating_add(life),
    }
}

/// How long a waiter pauses before its next poll, having waited `waited_ms`
/// so far (doubling from 10 ms up to 250 ms), or `None` once the wait would
/// pass `max_wait_ms`: it then fetches for itself.
pub fn next_poll(waited_ms: u64, settings: &CollapseSettings) -> Option<u64> {
    let left = settings.max_wait_ms.checked_sub(waited_ms)?;
    if left == 0 {
        return None;
    }
    let mut pause = FIRST_POLL_MS;
    let mut total = 0u64;
    while total < waited_ms && pause < LONGEST_POLL_MS {
        total += pause;
        pause = (pause * 2).min(LONGEST_POLL_MS);
    }
    Some(pause.min(left))
}

/// What a waiter does after a poll in which the Cache API had nothing that
/// serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterPoll {
    /// The claim is still fresh: wait on.
    Wait,
    /// The claimer is done and stored its answer, which may have landed
    /// just after the lookup: look once more, then fetch if it does not
    /// serve (another variant, or an answer to revalidate at once).
    LookOnceMore,
    /// The claimer left a no-wait marker, or its claim expired or vanished:
    /// fetch for yourself now.
    FetchAlone,
}

pub fn after_poll(marker: Option<&ClaimMarker>, now_ms: u64) -> AfterPoll {
    match marker.filter(|m| m.live(now_ms)).map(|m| m.state) {
        Some(ClaimState::Filling) => AfterPoll::Wait,
        Some(ClaimState::Stored) => AfterPoll::LookOnceMore,
        Some(ClaimState::NoWait) | None => AfterPoll::FetchAlone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: CollapseSettings = CollapseSettings {
        enabled: true,
        max_wait_ms: 3_000,
    };

    fn marker(state: ClaimState, at_ms: u64, until_ms: u64) -> ClaimMarker {
        ClaimMarker {
            state,
            at_ms,
            until_ms,
        }
    }

    #[test]
    fn the_first_isolate_claims_and_the_next_waits_while_the_claim_is_fresh() {
        assert_eq!(on_arrival(None, 1_000, &ON, true), Arrival::Claim);
        let claimed = claim(1_000, &ON);
        assert_eq!(claimed.state, ClaimState::Filling);
        assert_eq!(on_arrival(Some(&claimed), 1_500, &ON, true), Arrival::Wait);
        assert_eq!(after_poll(Some(&claimed), 3_999), AfterPoll::Wait);
    }

    #[test]
    fn an_expired_claim_is_taken_for_abandoned() {
        let claimed = claim(1_000, &ON);
        assert_eq!(on_arrival(Some(&claimed), 4_000, &ON, true), Arrival::Claim);
        assert_eq!(after_poll(Some(&claimed), 4_000), AfterPoll::FetchAlone);
        assert_eq!(after_poll(None, 2_000), AfterPoll::FetchAlone);
    }

    #[test]
    fn a_claim_from_the_far_future_is_ignored() {
        let odd = marker(ClaimState::Filling, 1_000_000, 1_003_000);
        assert_eq!(on_arrival(Some(&odd), 1_000, &ON, true), Arrival::Claim);
    }

    #[test]
    fn an_unshareable_fill_sends_waiters_to_the_origin_at_once() {
        let released = release(false, 2_000);
        assert_eq!(released.state, ClaimState::NoWait);
        assert_eq!(after_poll(Some(&released), 2_001), AfterPoll::FetchAlone);
        assert_eq!(
            on_arrival(Some(&released), 2_001, &ON, true),
            Arrival::FetchAlone
        );
        assert_eq!(
            on_arrival(Some(&released), 2_000 + NO_WAIT_MS, &ON, true),
            Arrival::Claim
        );
        let stored = release(true, 2_000);
        assert_eq!(stored.state, ClaimState::Stored);
        assert_eq!(
            on_arrival(Some(&stored), 2_001, &ON, true),
            Arrival::LookThenClaim
        );
        assert_eq!(after_poll(Some(&stored), 2_001), AfterPoll::LookOnceMore);
        assert_eq!(
            on_arrival(Some(&stored), 2_000 + STORED_HINT_MS, &ON, true),
            Arrival::Claim
        );
    }

    #[test]
    fn nothing_is_claimed_when_off_or_when_the_request_refuses_stored_answers() {
        let off = CollapseSettings {
            enabled: false,
            ..ON
        };
        let claimed = claim(1_000, &ON);
        assert_eq!(on_arrival(Some(&claimed), 1_001, &off, true), Arrival::Skip);
        assert_eq!(on_arrival(Some(&claimed), 1_001, &ON, false), Arrival::Skip);
        assert!(request_may_wait(false, None));
        assert!(request_may_wait(false, Some(10)));
        assert!(!request_may_wait(true, None));
        assert!(!request_may_wait(false, Some(0)));
    }

    #[test]
    fn polls_back_off_and_the_total_wait_is_bounded() {
        let mut waited = 0;
        let mut pauses = Vec::new();
        while let Some(pause) = next_poll(waited, &ON) {
            assert!(pause > 0);
            pauses.push(pause);
            waited += pause;
        }
        assert_eq!(waited, ON.max_wait_ms);
        assert_eq!(&pauses[..5], &[10, 20, 40, 80, 160]);
        assert!(pauses.iter().all(|p| *p <= LONGEST_POLL_MS));
        assert!(pauses.len() < 20, "{pauses:?}");
        assert_eq!(next_poll(5_000, &ON), None);
    }

    #[test]
    fn claim_urls_are_reserved_and_distinct_per_key_and_namespace() {
        let a = claim_url("v1", "https://shop.example/cachefront/v1/https/a");
        assert!(is_claim(&a));
        assert!(!is_claim("https://shop.example/.cachefront/v1/https/a"));
        assert_ne!(
            a,
            claim_url("v1", "https://shop.example/cachefront/v1/https/b")
        );
        assert_ne!(
            a,
            claim_url("v2", "https://shop.example/cachefront/v1/https/a")
        );
    }

    #[test]
    fn markers_round_trip_as_json_with_a_cache_lifetime() {
        let m = release(true, 5_000);
        let json = serde_json::to_vec(&m).expect("serializes");
        let back: ClaimMarker = serde_json::from_slice(&json).expect("parses");
        assert_eq!(back, m);
        assert_eq!(m.keep_secs(), STORED_HINT_MS / 1000);
        assert_eq!(claim(0, &ON).keep_secs(), 3);
    }
}
