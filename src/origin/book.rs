//! One isolate's health book: a circuit per origin (see [`health`]), fed by
//! the outcome of every attempt and by the active check's shared results,
//! and read when origins are planned and reported. Pure bookkeeping with
//! explicit `now`; the pipeline decides when to read or write it.

use std::collections::HashMap;

use super::health::{self, Availability, HealthPolicy, OriginHealth, SharedHealth};
use crate::origin::pool::OriginConfig;

/// What this isolate knows about its origins' health.
#[derive(Debug, Default)]
pub struct HealthBook {
    circuits: HashMap<String, OriginHealth>,
    /// When the shared (active check) results were last read.
    shared_loaded_ms: Option<u64>,
    shared: Vec<SharedHealth>,
}

impl HealthBook {
    /// Whether the shared results should be read again (this isolate's copy
    /// is older than `window_ms`). Claims the read when so, so concurrent
    /// requests do not all read.
    pub fn claim_shared_read(&mut self, now_ms: u64, window_ms: u64) -> bool {
        if self
            .shared_loaded_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < window_ms)
        {
            return false;
        }
        self.shared_loaded_ms = Some(now_ms);
        true
    }

    /// Takes in the active check's results for the configured `origins`.
    pub fn apply_shared(&mut self, results: Vec<SharedHealth>, origins: &[OriginConfig]) {
        for shared in &results {
            if origins.iter().any(|o| o.name == shared.origin) {
                self.circuit(&shared.origin).apply_shared(shared);
            }
        }
        self.shared = results;
    }

    /// Records the outcome of one attempt on `origin`.
    pub fn record(&mut self, origin: &str, healthy: bool, now_ms: u64, policy: &HealthPolicy) {
        let circuit = self.circuit(origin);
        if healthy {
            circuit.record_success(now_ms);
        } else {
            circuit.record_failure(now_ms, policy);
        }
    }

    /// Marks the one probe a half-open circuit lets through as sent.
    pub fn begin_probe(&mut self, origin: &str, now_ms: u64) {
        self.circuit(origin).begin_probe(now_ms);
    }

    /// Each origin's availability and last failure, in the order of `origins`.
    pub fn availability(
        &mut self,
        origins: &[OriginConfig],
        now_ms: u64,
        policy: &HealthPolicy,
    ) -> (Vec<Availability>, Vec<Option<u64>>) {
        origins
            .iter()
            .map(|origin| {
                let circuit = self.circuit(&origin.name);
                (
                    circuit.availability(now_ms, policy),
                    circuit.last_failure_ms,
                )
            })
            .unzip()
    }

    /// Each origin's state as this isolate sees it, for the health endpoint.
    pub fn report(
        &mut self,
        origins: &[OriginConfig],
        now_ms: u64,
        policy: &HealthPolicy,
    ) -> serde_json::Value {
        let shared = self.shared.clone();
        let origins: Vec<serde_json::Value> = origins
            .iter()
            .map(|origin| {
                let circuit = self.circuit(&origin.name);
                let availability = circuit.availability(now_ms, policy);
                let check = shared.iter().find(|s| s.origin == origin.name);
                serde_json::json!({
                    "name": origin.name,
                    "url": origin.url.as_str(),
                    "priority": origin.priority,
                    "weight": origin.weight,
                    "state": availability.as_str(),
                    "last_failure_ms": circuit.last_failure_ms,
                    "last_success_ms": circuit.last_success_ms,
                    "active_check": check.map(|c| serde_json::json!({"up": c.up, "checked_ms": c.checked_ms, "detail": c.detail})),
                })
            })
            .collect();
        serde_json::json!({ "origins": origins, "now_ms": now_ms })
    }

    fn circuit(&mut self, origin: &str) -> &mut OriginHealth {
        self.circuits.entry(origin.to_owned()).or_default()
    }
}

/// The result of one active check of `origin`: up when the status is the
/// expected one.
pub fn check_result(
    origin: &OriginConfig,
    status: Option<u16>,
    detail: String,
    now_ms: u64,
) -> SharedHealth {
    SharedHealth {
        origin: origin.name.clone(),
        up: health::probe_is_healthy(status, origin.health_status),
        checked_ms: now_ms,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(name: &str) -> OriginConfig {
        OriginConfig {
            name: name.into(),
            url: url::Url::parse("https://origin.example").expect("static URL"),
            priority: 0,
            weight: 1,
            timeout_ms: 1000,
            health_path: None,
            health_status: 200,
            host: None,
        }
    }

    #[test]
    fn shared_results_are_read_once_per_window() {
        let mut book = HealthBook::default();
        assert!(book.claim_shared_read(1_000, 5_000));
        assert!(!book.claim_shared_read(5_999, 5_000));
        assert!(book.claim_shared_read(6_000, 5_000));
    }

    #[test]
    fn a_shared_down_result_marks_only_configured_origins() {
        let origins = [origin("a")];
        let mut book = HealthBook::default();
        let down = |name: &str| SharedHealth {
            origin: name.into(),
            up: false,
            checked_ms: 10,
            detail: "503".into(),
        };
        book.apply_shared(vec![down("a"), down("stranger")], &origins);
        let (availability, _) = book.availability(&origins, 20, &HealthPolicy::default());
        assert_eq!(availability, vec![Availability::Down]);
        assert!(!book.circuits.contains_key("stranger"));
    }
}
