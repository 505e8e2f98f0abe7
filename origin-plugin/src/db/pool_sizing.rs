//! Pool sizing: how many connections one application instance's pool should have, from
//! what the server allows and what the capture observed. A pure function of its inputs.
//!
//! The server's budget is `max_connections − reserved − connections kept for others`,
//! split across the instances. The demand is the peak of statements running at once
//! (plus headroom); when requests waited for a connection while the pool was at its
//! maximum, the pool was the bottleneck and the observed peak is capped by it, so the
//! demand is at least the current maximum plus half. The recommendation is the demand
//! clamped to `[min_connections, budget]`; demand above the budget is a warning (more
//! server connections, fewer instances, or a transaction-mode pooler such as PgBouncer).

use serde::{Deserialize, Serialize};

use super::stats::CaptureSnapshot;

/// What the recommendation is computed from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSizingInput {
    /// The server's `max_connections`.
    pub server_max_connections: u32,
    /// Connections only superusers / reserved roles may use
    /// (`superuser_reserved_connections`, + `reserved_connections` from PostgreSQL 16).
    pub reserved_connections: u32,
    /// Connections to leave for everything else (migrations, cron jobs, psql, replicas).
    pub other_connections: u32,
    /// Application instances sharing the server, each with its own pool.
    pub app_instances: u32,
    /// Most statements observed running at once in one instance, if observed.
    pub peak_concurrent_statements: Option<u64>,
    /// Most requests observed in flight at once in one instance, if observed.
    pub peak_in_flight_requests: Option<u64>,
    /// 95th percentile of connection acquire waits, ms, if observed.
    pub acquire_p95_ms: Option<f64>,
    /// The pool's current maximum, if known.
    pub current_pool_max: Option<u32>,
}

impl PoolSizingInput {
    /// Fill the observed fields from a capture snapshot.
    pub fn observe(mut self, snapshot: &CaptureSnapshot) -> Self {
        if snapshot.concurrency.window_statements > 0 {
            self.peak_concurrent_statements = Some(snapshot.concurrency.peak_concurrent_statements);
        }
        if snapshot.concurrency.peak_in_flight_requests > 0 {
            self.peak_in_flight_requests = Some(snapshot.concurrency.peak_in_flight_requests);
        }
        if snapshot.acquire.count > 0 {
            self.acquire_p95_ms = Some(snapshot.acquire.p95_ms);
        }
        if let Some(pool) = snapshot.pool {
            self.current_pool_max = Some(pool.max_connections);
        }
        self
    }
}

/// Knobs of the recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSizingOptions {
    /// Multiplier over the observed peak. Default: 1.25.
    pub headroom: f64,
    /// Acquire waits at or above this p95 mean the pool was a bottleneck. Default: 10 ms.
    pub slow_acquire_ms: f64,
    /// Never recommend fewer connections. Default: 2.
    pub min_connections: u32,
    /// Recommendation when nothing was observed (capped by the budget). Default: 10.
    pub unobserved_default: u32,
}

impl Default for PoolSizingOptions {
    fn default() -> Self {
        Self {
            headroom: 1.25,
            slow_acquire_ms: 10.0,
            min_connections: 2,
            unobserved_default: 10,
        }
    }
}

/// The recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSizing {
    /// `max_connections` for each instance's pool.
    pub recommended_max_connections: u32,
    /// What the server leaves each instance.
    pub per_instance_budget: u32,
    /// Connections the observations call for (`None` when nothing was observed).
    pub demand: Option<u32>,
    /// Why, step by step.
    pub reasons: Vec<String>,
    /// Problems the recommendation cannot fix by itself.
    pub warnings: Vec<String>,
    /// The inputs, for the record.
    pub input: PoolSizingInput,
}

/// Recommend a pool size.
pub fn recommend_pool_size(input: &PoolSizingInput, options: &PoolSizingOptions) -> PoolSizing {
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();
    let instances = input.app_instances.max(1);
    let available = input
        .server_max_connections
        .saturating_sub(input.reserved_connections)
        .saturating_sub(input.other_connections);
    let budget = available / instances;
    reasons.push(format!(
        "server: max_connections {} − {} reserved − {} for other clients = {available}, \
         / {instances} instance(s) = {budget} per instance",
        input.server_max_connections, input.reserved_connections, input.other_connections
    ));

    let mut demand = input.peak_concurrent_statements.map(|peak| {
        let wanted = (peak as f64 * options.headroom).ceil() as u32;
        reasons.push(format!(
            "observed: at most {peak} statement(s) at once; × {} headroom = {wanted}",
            options.headroom
        ));
        wanted
    });
    if let Some(requests) = input.peak_in_flight_requests {
        reasons.push(format!("observed: at most {requests} request(s) in flight"));
    }
    if let (Some(p95), Some(max)) = (input.acquire_p95_ms, input.current_pool_max) {
        let saturated = input
            .peak_concurrent_statements
            .is_none_or(|peak| peak >= u64::from(max));
        if p95 >= options.slow_acquire_ms && saturated {
            let wanted = max.saturating_add(max.div_ceil(2));
            reasons.push(format!(
                "acquire waits p95 {p95:.1} ms with the pool at its maximum {max}: the pool \
                 was the bottleneck, so at least {wanted}"
            ));
            demand = Some(demand.map_or(wanted, |d| d.max(wanted)));
        } else if p95 >= options.slow_acquire_ms {
            reasons.push(format!(
                "acquire waits p95 {p95:.1} ms while the pool was below its maximum {max}: \
                 connections are slow to open (network, TLS, authentication), not too few"
            ));
        } else {
            reasons.push(format!("acquire waits p95 {p95:.1} ms: no contention"));
        }
    }

    let floor = options.min_connections.min(budget.max(1));
    let recommended = match demand {
        Some(d) => d.clamp(floor, budget.max(floor)),
        None => {
            reasons.push(format!(
                "no observed concurrency: default {} (observe the app with --from-app)",
                options.unobserved_default
            ));
            options.unobserved_default.clamp(floor, budget.max(floor))
        }
    };
    if budget == 0 {
        warnings.push(format!(
            "the server leaves no connection per instance ({available} available for \
             {instances} instance(s))"
        ));
    }
    if let Some(d) = demand.filter(|d| *d > budget) {
        warnings.push(format!(
            "demand {d} exceeds the budget of {budget} per instance: raise max_connections, \
             run fewer instances, or put a transaction-mode pooler (PgBouncer) in front"
        ));
    }
    if let Some(max) = input.current_pool_max {
        if u64::from(max) * u64::from(instances) > u64::from(available) {
            warnings.push(format!(
                "current pool max {max} × {instances} instance(s) exceeds the {available} \
                 connections the server allows: under load, connects will fail"
            ));
        }
    }
    PoolSizing {
        recommended_max_connections: recommended,
        per_instance_budget: budget,
        demand,
        reasons,
        warnings,
        input: input.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> PoolSizingInput {
        PoolSizingInput {
            server_max_connections: 100,
            reserved_connections: 3,
            other_connections: 7,
            app_instances: 3,
            peak_concurrent_statements: None,
            peak_in_flight_requests: None,
            acquire_p95_ms: None,
            current_pool_max: None,
        }
    }

    #[test]
    fn budget_splits_the_server_across_instances() {
        let sizing = recommend_pool_size(&input(), &PoolSizingOptions::default());
        assert_eq!(sizing.per_instance_budget, 30);
        assert_eq!(sizing.demand, None);
        assert_eq!(sizing.recommended_max_connections, 10);
    }

    #[test]
    fn observed_peak_with_headroom_is_recommended() {
        let sizing = recommend_pool_size(
            &PoolSizingInput {
                peak_concurrent_statements: Some(8),
                acquire_p95_ms: Some(0.2),
                current_pool_max: Some(20),
                ..input()
            },
            &PoolSizingOptions::default(),
        );
        assert_eq!(sizing.demand, Some(10));
        assert_eq!(sizing.recommended_max_connections, 10);
        assert!(sizing.warnings.is_empty(), "{sizing:#?}");
    }

    #[test]
    fn waits_at_a_saturated_pool_call_for_a_bigger_pool() {
        let sizing = recommend_pool_size(
            &PoolSizingInput {
                peak_concurrent_statements: Some(4),
                acquire_p95_ms: Some(45.0),
                current_pool_max: Some(4),
                ..input()
            },
            &PoolSizingOptions::default(),
        );
        assert_eq!(sizing.demand, Some(6));
        assert_eq!(sizing.recommended_max_connections, 6);
    }

    #[test]
    fn waits_below_the_maximum_do_not_grow_the_pool() {
        let sizing = recommend_pool_size(
            &PoolSizingInput {
                peak_concurrent_statements: Some(2),
                acquire_p95_ms: Some(45.0),
                current_pool_max: Some(10),
                ..input()
            },
            &PoolSizingOptions::default(),
        );
        assert_eq!(sizing.demand, Some(3));
        assert_eq!(sizing.recommended_max_connections, 3);
    }

    #[test]
    fn demand_above_the_budget_is_capped_and_warned_about() {
        let sizing = recommend_pool_size(
            &PoolSizingInput {
                peak_concurrent_statements: Some(80),
                current_pool_max: Some(50),
                ..input()
            },
            &PoolSizingOptions::default(),
        );
        assert_eq!(sizing.recommended_max_connections, 30);
        assert_eq!(sizing.demand, Some(100));
        assert_eq!(sizing.warnings.len(), 2, "{sizing:#?}");
    }

    #[test]
    fn a_server_without_room_still_recommends_one() {
        let sizing = recommend_pool_size(
            &PoolSizingInput {
                server_max_connections: 5,
                reserved_connections: 3,
                other_connections: 2,
                ..input()
            },
            &PoolSizingOptions::default(),
        );
        assert_eq!(sizing.per_instance_budget, 0);
        assert_eq!(sizing.recommended_max_connections, 1);
        assert!(!sizing.warnings.is_empty());
    }
}
