//! Choosing origins: an ordered list of candidates per request (priority,
//! then weight, healthy first, never empty while an origin exists), and the
//! rules for when a failed attempt may be retried on the next one. The
//! origins themselves ([`OriginConfig`]) are defined here; `config` only
//! reads them from `ORIGINS`.

use http::{Method, StatusCode};
use url::Url;

use crate::origin::health::Availability;

/// One origin server the worker can forward to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginConfig {
    /// Short name shown in headers and logs (`[A-Za-z0-9._-]`, at most 64 bytes).
    pub name: String,
    /// Base URL: scheme, host, optional port and path prefix; no query or fragment.
    pub url: Url,
    /// Lower goes first; defaults to the origin's position in the list.
    pub priority: u32,
    /// Share of traffic among origins of equal priority (1–1000, default 1).
    pub weight: u32,
    /// Time allowed for one attempt (default 10 s).
    pub timeout_ms: u64,
    /// Path the scheduled health check requests; `None`: not actively checked.
    pub health_path: Option<String>,
    /// Status the health check expects (default 200).
    pub health_status: u16,
    /// `Host` sent to this origin instead of the URL's host.
    pub host: Option<String>,
}

/// One origin's place in the selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Index into the configured origins.
    pub index: usize,
    pub availability: Availability,
}

/// Orders the origins for one request.
///
/// Available origins (up, or half-open with the probe slot free) come first,
/// by priority (lower first); origins of equal priority are in a weighted
/// random order drawn from `seed`. If none is available, every origin is
/// listed, the least recently failed first, so a request always has somewhere
/// to go.
pub fn candidates(
    origins: &[OriginConfig],
    availability: &[Availability],
    last_failure_ms: &[Option<u64>],
    seed: u64,
) -> Vec<Candidate> {
    let mut rng = SplitMix(seed);
    let mut available: Vec<(u32, u64, usize)> = origins
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            availability
                .get(*i)
                .is_some_and(|a| *a != Availability::Down)
        })
        .map(|(i, origin)| {
            // Weighted order without replacement: sort by u^(1/w), largest
            // first (Efraimidis–Spirakis), kept in integers as -ln(u)/w.
            let draw = rng.next_unit();
            let key = (-draw.ln() / f64::from(origin.weight.max(1))) * 1e12;
            (origin.priority, key as u64, i)
        })
        .collect();
    available.sort_by_key(|&(priority, key, index)| (priority, key, index));
    if !available.is_empty() {
        return available
            .into_iter()
            .map(|(_, _, index)| Candidate {
                index,
                availability: availability.get(index).copied().unwrap_or(Availability::Up),
            })
            .collect();
    }
    let mut all: Vec<usize> = (0..origins.len()).collect();
    all.sort_by_key(|&i| {
        (
            last_failure_ms.get(i).copied().flatten().unwrap_or(0),
            origins[i].priority,
            i,
        )
    });
    all.into_iter()
        .map(|index| Candidate {
            index,
            availability: Availability::Down,
        })
        .collect()
}

/// Small deterministic generator for the weighted shuffle.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in (0, 1].
    fn next_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
}

/// Retry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Statuses that count as an origin failure (retried, and counted by health).
    pub failure_statuses: Vec<u16>,
    /// Methods retried besides the idempotent GET, HEAD and OPTIONS.
    pub extra_methods: Vec<Method>,
    /// Most attempts per request (first try included).
    pub max_attempts: usize,
    /// Time budget of all attempts together.
    pub deadline_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            failure_statuses: vec![502, 503, 504],
            extra_methods: Vec::new(),
            max_attempts: 3,
            deadline_ms: 30_000,
        }
    }
}

impl RetryPolicy {
    /// Whether a failed attempt of this method may be sent again elsewhere.
    /// A request body of any other method is never sent twice.
    pub fn may_retry(&self, method: &Method) -> bool {
        matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
            || self.extra_methods.contains(method)
    }

    pub fn is_failure_status(&self, status: StatusCode) -> bool {
        self.failure_statuses.contains(&status.as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(name: &str, priority: u32, weight: u32) -> OriginConfig {
        OriginConfig {
            name: name.into(),
            url: "http://127.0.0.1:1".parse().expect("url"),
            priority,
            weight,
            timeout_ms: 1000,
            health_path: None,
            health_status: 200,
            host: None,
        }
    }

    fn names(origins: &[OriginConfig], list: &[Candidate]) -> Vec<String> {
        list.iter().map(|c| origins[c.index].name.clone()).collect()
    }

    #[test]
    fn lower_priority_value_goes_first() {
        let origins = [origin("backup", 1, 1), origin("primary", 0, 1)];
        let up = [Availability::Up, Availability::Up];
        let list = candidates(&origins, &up, &[None, None], 7);
        assert_eq!(names(&origins, &list), ["primary", "backup"]);
    }

    #[test]
    fn equal_priority_is_shared_by_weight() {
        let origins = [origin("heavy", 0, 3), origin("light", 0, 1)];
        let up = [Availability::Up, Availability::Up];
        let first_heavy = (0..4000u64)
            .filter(|seed| candidates(&origins, &up, &[None, None], *seed)[0].index == 0)
            .count();
        // Expect about 75 %: weight 3 of 4.
        assert!((2800..3200).contains(&first_heavy), "{first_heavy}");
    }

    #[test]
    fn down_origins_are_skipped_while_another_is_available() {
        let origins = [origin("primary", 0, 1), origin("backup", 1, 1)];
        let list = candidates(
            &origins,
            &[Availability::Down, Availability::Up],
            &[Some(5), None],
            1,
        );
        assert_eq!(names(&origins, &list), ["backup"]);
    }

    #[test]
    fn half_open_origin_is_tried_as_a_probe_in_its_place() {
        let origins = [origin("primary", 0, 1), origin("backup", 1, 1)];
        let list = candidates(
            &origins,
            &[Availability::Probe, Availability::Up],
            &[Some(5), None],
            1,
        );
        assert_eq!(names(&origins, &list), ["primary", "backup"]);
        assert_eq!(list[0].availability, Availability::Probe);
    }

    #[test]
    fn when_everything_is_down_the_least_recently_failed_goes_first() {
        let origins = [origin("a", 0, 1), origin("b", 1, 1), origin("c", 2, 1)];
        let down = [Availability::Down; 3];
        let list = candidates(&origins, &down, &[Some(300), Some(100), Some(200)], 1);
        assert_eq!(names(&origins, &list), ["b", "c", "a"]);
        assert!(
            candidates(&origins[..1], &down[..1], &[Some(1)], 1).len() == 1,
            "never empty"
        );
    }

    #[test]
    fn only_idempotent_methods_are_retried_unless_configured() {
        let policy = RetryPolicy::default();
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(policy.may_retry(&m), "{m}");
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(!policy.may_retry(&m), "{m}");
        }
        let put_ok = RetryPolicy {
            extra_methods: vec![Method::PUT],
            ..RetryPolicy::default()
        };
        assert!(put_ok.may_retry(&Method::PUT));
    }

    #[test]
    fn failure_statuses_are_configurable() {
        let policy = RetryPolicy::default();
        assert!(policy.is_failure_status(StatusCode::SERVICE_UNAVAILABLE));
        assert!(!policy.is_failure_status(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!policy.is_failure_status(StatusCode::NOT_FOUND));
    }
}
