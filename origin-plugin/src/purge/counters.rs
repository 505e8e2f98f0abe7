//! The purge client's metric handles, registered once per client (no-ops without metrics).

use metrics::{Counter, Gauge};

use super::item::Kind;

#[derive(Clone)]
pub(super) struct PurgeCounters {
    enqueued: [Counter; 5],
    invalid: [Counter; 5],
    pub(super) dropped: Counter,
    pub(super) depth: Gauge,
    pub(super) ok: Counter,
    pub(super) retry: Counter,
    pub(super) failed: Counter,
    pub(super) rejected: Counter,
}

impl PurgeCounters {
    pub(super) fn noop() -> Self {
        Self {
            enqueued: std::array::from_fn(|_| Counter::noop()),
            invalid: std::array::from_fn(|_| Counter::noop()),
            dropped: Counter::noop(),
            depth: Gauge::noop(),
            ok: Counter::noop(),
            retry: Counter::noop(),
            failed: Counter::noop(),
            rejected: Counter::noop(),
        }
    }

    #[cfg(feature = "metrics")]
    pub(super) fn from_metrics(m: &crate::metrics::Metrics, provider: &'static str) -> Self {
        use crate::metrics::names;
        let kinds = [
            Kind::Tag,
            Kind::Url,
            Kind::Prefix,
            Kind::Host,
            Kind::Everything,
        ];
        let outcome = |o: &str| {
            m.counter(
                names::PURGE_REQUESTS_TOTAL,
                &[("provider", provider), ("outcome", o)],
            )
        };
        Self {
            enqueued: kinds.map(|k| {
                m.counter(
                    names::PURGE_ITEMS_ENQUEUED_TOTAL,
                    &[("provider", provider), ("kind", k.as_str())],
                )
            }),
            invalid: kinds.map(|k| {
                m.counter(
                    names::PURGE_ITEMS_INVALID_TOTAL,
                    &[("provider", provider), ("kind", k.as_str())],
                )
            }),
            dropped: m.counter(names::PURGE_QUEUE_DROPPED_TOTAL, &[("provider", provider)]),
            depth: m.gauge(names::PURGE_QUEUE_DEPTH, &[("provider", provider)]),
            ok: outcome("ok"),
            retry: outcome("retry"),
            failed: outcome("failed"),
            rejected: outcome("rejected"),
        }
    }

    pub(super) fn enqueued(&self, k: Kind) -> &Counter {
        &self.enqueued[k as usize]
    }

    pub(super) fn invalid(&self, k: Kind) -> &Counter {
        &self.invalid[k as usize]
    }
}
