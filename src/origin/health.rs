//! Origin health: a circuit per origin that opens after N consecutive
//! failures, lets one probe through after a cool-down (half-open) and closes
//! on success; plus the shared view written by the active health check. Pure
//! state machines with explicit `now`.

use serde::{Deserialize, Serialize};

/// Thresholds of the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit waits before letting a probe through.
    pub cooldown_ms: u64,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 3,
            cooldown_ms: 30_000,
        }
    }
}

/// The circuit of one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Taking traffic; counts consecutive failures.
    Closed { failures: u32 },
    /// Not taking traffic since `since_ms`.
    Open { since_ms: u64 },
    /// Cool-down over: one probe may go through (`probe_since_ms` when one is out).
    HalfOpen { probe_since_ms: Option<u64> },
}

/// Whether an origin may take a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Up,
    /// Half-open: this request would be the probe.
    Probe,
    Down,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Probe => "probe",
            Self::Down => "down",
        }
    }
}

/// Health of one origin as this isolate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginHealth {
    pub circuit: Circuit,
    pub last_failure_ms: Option<u64>,
    pub last_success_ms: Option<u64>,
}

impl Default for OriginHealth {
    fn default() -> Self {
        Self {
            circuit: Circuit::Closed { failures: 0 },
            last_failure_ms: None,
            last_success_ms: None,
        }
    }
}

impl OriginHealth {
    /// Moves an open circuit to half-open once its cool-down is over, and
    /// frees a probe slot whose probe never reported back.
    fn settle(&mut self, now_ms: u64, policy: &HealthPolicy) {
        match self.circuit {
            Circuit::Open { since_ms } if now_ms.saturating_sub(since_ms) >= policy.cooldown_ms => {
                self.circuit = Circuit::HalfOpen {
                    probe_since_ms: None,
                };
            }
            Circuit::HalfOpen {
                probe_since_ms: Some(started),
            } if now_ms.saturating_sub(started) >= policy.cooldown_ms => {
                self.circuit = Circuit::HalfOpen {
                    probe_since_ms: None,
                };
            }
            _ => {}
        }
    }

    pub fn availability(&mut self, now_ms: u64, policy: &HealthPolicy) -> Availability {
        self.settle(now_ms, policy);
        match self.circuit {
            Circuit::Closed { .. } => Availability::Up,
            Circuit::HalfOpen {
                probe_since_ms: None,
            } => Availability::Probe,
            Circuit::HalfOpen {
                probe_since_ms: Some(_),
            }
            | Circuit::Open { .. } => Availability::Down,
        }
    }

    /// Marks the probe slot taken by the request about to be sent.
    pub fn begin_probe(&mut self, now_ms: u64) {
        if let Circuit::HalfOpen {
            probe_since_ms: None,
        } = self.circuit
        {
            self.circuit = Circuit::HalfOpen {
                probe_since_ms: Some(now_ms),
            };
        }
    }

    pub fn record_success(&mut self, now_ms: u64) {
        self.last_success_ms = Some(now_ms);
        self.circuit = Circuit::Closed { failures: 0 };
    }

    pub fn record_failure(&mut self, now_ms: u64, policy: &HealthPolicy) {
        self.last_failure_ms = Some(now_ms);
        self.circuit = match self.circuit {
            Circuit::Closed { failures } if failures + 1 < policy.failure_threshold => {
                Circuit::Closed {
                    failures: failures + 1,
                }
            }
            // The threshold is reached, or a probe (or a late request) failed.
            _ => Circuit::Open { since_ms: now_ms },
        };
    }

    /// Applies what the active health check (shared across isolates) saw,
    /// unless this isolate has seen a newer result of its own.
    pub fn apply_shared(&mut self, shared: &SharedHealth) {
        let newest_local = self.last_failure_ms.max(self.last_success_ms).unwrap_or(0);
        if shared.checked_ms < newest_local {
            return;
        }
        if shared.up {
            if matches!(self.circuit, Circuit::Open { .. }) {
                // Let live traffic confirm it through the usual probe.
                self.circuit = Circuit::HalfOpen {
                    probe_since_ms: None,
                };
            }
        } else if !matches!(self.circuit, Circuit::Open { .. }) {
            self.last_failure_ms = Some(shared.checked_ms);
            self.circuit = Circuit::Open {
                since_ms: shared.checked_ms,
            };
        }
    }
}

/// One origin's result from the active health check, as stored for every isolate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedHealth {
    pub origin: String,
    pub up: bool,
    pub checked_ms: u64,
    /// What the probe saw: a status code or an error.
    pub detail: String,
}

/// Whether a health probe's answer counts as healthy.
pub fn probe_is_healthy(status: Option<u16>, expected: u16) -> bool {
    status == Some(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: HealthPolicy = HealthPolicy {
        failure_threshold: 3,
        cooldown_ms: 10_000,
    };

    #[test]
    fn origin_goes_down_after_n_consecutive_failures() {
        let mut h = OriginHealth::default();
        h.record_failure(1, &POLICY);
        h.record_failure(2, &POLICY);
        assert_eq!(h.availability(2, &POLICY), Availability::Up);
        h.record_failure(3, &POLICY);
        assert_eq!(h.availability(3, &POLICY), Availability::Down);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let mut h = OriginHealth::default();
        h.record_failure(1, &POLICY);
        h.record_failure(2, &POLICY);
        h.record_success(3);
        h.record_failure(4, &POLICY);
        h.record_failure(5, &POLICY);
        assert_eq!(h.availability(5, &POLICY), Availability::Up);
    }

    #[test]
    fn after_cooldown_exactly_one_probe_goes_through() {
        let mut h = OriginHealth::default();
        for t in 0..3 {
            h.record_failure(t, &POLICY);
        }
        assert_eq!(h.availability(9_000, &POLICY), Availability::Down);
        assert_eq!(h.availability(10_002, &POLICY), Availability::Probe);
        h.begin_probe(10_002);
        assert_eq!(
            h.availability(10_003, &POLICY),
            Availability::Down,
            "one probe at a time"
        );
    }

    #[test]
    fn successful_probe_closes_and_failed_probe_reopens() {
        let mut h = OriginHealth::default();
        for t in 0..3 {
            h.record_failure(t, &POLICY);
        }
        let mut failed = h;
        assert_eq!(h.availability(20_000, &POLICY), Availability::Probe);
        h.begin_probe(20_000);
        h.record_success(20_050);
        assert_eq!(h.availability(20_051, &POLICY), Availability::Up);

        assert_eq!(failed.availability(20_000, &POLICY), Availability::Probe);
        failed.begin_probe(20_000);
        failed.record_failure(20_050, &POLICY);
        assert_eq!(failed.availability(25_000, &POLICY), Availability::Down);
        assert_eq!(failed.availability(30_050, &POLICY), Availability::Probe);
    }

    #[test]
    fn a_probe_that_never_reports_frees_its_slot_after_a_cooldown() {
        let mut h = OriginHealth {
            circuit: Circuit::HalfOpen {
                probe_since_ms: Some(1_000),
            },
            ..OriginHealth::default()
        };
        assert_eq!(h.availability(5_000, &POLICY), Availability::Down);
        assert_eq!(h.availability(11_000, &POLICY), Availability::Probe);
    }

    #[test]
    fn shared_down_result_opens_the_circuit_unless_local_news_is_newer() {
        let down = SharedHealth {
            origin: "a".into(),
            up: false,
            checked_ms: 5_000,
            detail: "connection refused".into(),
        };
        let mut fresh_isolate = OriginHealth::default();
        fresh_isolate.apply_shared(&down);
        assert_eq!(
            fresh_isolate.availability(6_000, &POLICY),
            Availability::Down
        );

        let mut seen_success_later = OriginHealth::default();
        seen_success_later.record_success(7_000);
        seen_success_later.apply_shared(&down);
        assert_eq!(
            seen_success_later.availability(7_001, &POLICY),
            Availability::Up
        );
    }

    #[test]
    fn a_shared_result_as_recent_as_the_isolates_own_applies() {
        // Only a newer local result wins; one from the same millisecond
        // is not newer.
        let mut h = OriginHealth::default();
        h.record_success(5_000);
        h.apply_shared(&SharedHealth {
            origin: "a".into(),
            up: false,
            checked_ms: 5_000,
            detail: "connection refused".into(),
        });
        assert_eq!(h.availability(5_001, &POLICY), Availability::Down);
    }

    #[test]
    fn availability_names_are_the_health_reports_states() {
        // The `state` words of GET /__cachefront/health (docs/origins.md).
        assert_eq!(Availability::Up.as_str(), "up");
        assert_eq!(Availability::Probe.as_str(), "probe");
        assert_eq!(Availability::Down.as_str(), "down");
    }

    #[test]
    fn shared_up_result_lets_an_open_circuit_probe() {
        let mut h = OriginHealth::default();
        for t in 0..3 {
            h.record_failure(t, &POLICY);
        }
        let up = SharedHealth {
            origin: "a".into(),
            up: true,
            checked_ms: 100,
            detail: "200".into(),
        };
        h.apply_shared(&up);
        assert_eq!(h.availability(101, &POLICY), Availability::Probe);
    }

    #[test]
    fn probe_health_is_the_expected_status() {
        assert!(probe_is_healthy(Some(200), 200));
        assert!(!probe_is_healthy(Some(503), 200));
        assert!(!probe_is_healthy(None, 200));
    }
}
