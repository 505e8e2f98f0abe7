//! The `# HELP` text and unit of every metric in [`names`](super::names).

use metrics::{KeyName, Recorder, Unit};

use super::{names, Metrics};

impl Metrics {
    pub(super) fn describe_all(&self) {
        use names::*;
        let c = |n: &'static str, h: &'static str, u: Option<Unit>| {
            self.inner
                .recorder
                .describe_counter(KeyName::from_const_str(n), u, h.into());
        };
        let g = |n: &'static str, h: &'static str| {
            self.inner
                .recorder
                .describe_gauge(KeyName::from_const_str(n), None, h.into());
        };
        c(
            HTTP_REQUESTS_TOTAL,
            "HTTP requests finished, by method, route template and status class.",
            None,
        );
        self.inner.recorder.describe_histogram(
            KeyName::from_const_str(HTTP_REQUEST_DURATION_SECONDS),
            Some(Unit::Seconds),
            "Time from request to response headers, by method, route template and status class."
                .into(),
        );
        g(
            HTTP_REQUESTS_IN_FLIGHT,
            "HTTP requests being handled, by method and route template.",
        );
        c(
            SLOW_REQUESTS_TOTAL,
            "Requests slower than the slow-request threshold, by route template.",
            None,
        );
        c(
            CACHE_TAGS_EMITTED_TOTAL,
            "Cache tags written into Cache-Tag response headers.",
            None,
        );
        c(
            CACHE_TAGS_DROPPED_TOTAL,
            "Cache tags dropped for breaking the edge's limits, by reason.",
            None,
        );
        c(
            PURGE_ITEMS_ENQUEUED_TOTAL,
            "Purge items accepted into the purge queue, by provider and kind.",
            None,
        );
        c(
            PURGE_ITEMS_INVALID_TOTAL,
            "Purge items refused as invalid before queueing, by provider and kind.",
            None,
        );
        c(
            PURGE_QUEUE_DROPPED_TOTAL,
            "Purge items dropped because the purge queue was full, by provider.",
            None,
        );
        g(
            PURGE_QUEUE_DEPTH,
            "Purge items waiting in the purge queue, by provider.",
        );
        c(
            PURGE_REQUESTS_TOTAL,
            "Purge API calls, by provider and outcome.",
            None,
        );
        g(
            READY,
            "1 when the last readiness probe answered ready, else 0.",
        );
        g(
            HEALTH_CHECK_UP,
            "1 when the named health check last passed, else 0.",
        );
        g(
            DB_POOL_CONNECTIONS,
            "Connections open in the database pool.",
        );
        g(
            DB_POOL_IDLE_CONNECTIONS,
            "Idle connections in the database pool.",
        );
        g(
            DB_POOL_MAX_CONNECTIONS,
            "Configured maximum connections of the database pool.",
        );
        c(
            DB_QUERIES_TOTAL,
            "Database queries captured from sqlx statement events, by route template.",
            None,
        );
        self.inner.recorder.describe_histogram(
            KeyName::from_const_str(DB_QUERY_DURATION_SECONDS),
            Some(Unit::Seconds),
            "Duration of captured database queries, by route template.".into(),
        );
        c(
            DB_N_PLUS_ONE_TOTAL,
            "N+1 query patterns detected (a fingerprint repeated within one request), by route template.",
            None,
        );
        c(
            DB_SLOW_QUERIES_TOTAL,
            "Queries at least as slow as the slow-query threshold, by route template and fingerprint id (bounded; then \"other\").",
            None,
        );
        g(
            DB_CAPTURE_ACTIVE,
            "1 when query capture receives sqlx's statement events (subscriber layer installed, not filtered out), else 0.",
        );
        c(
            DB_CHANGE_NOTIFICATIONS_TOTAL,
            "Change notifications received by the write-to-purge loop, by kind (row, table, invalid).",
            None,
        );
        c(
            DB_CHANGE_PURGES_TOTAL,
            "Tag batches the write-to-purge loop handed to the purge client, by reason (changes, catch_up).",
            None,
        );
        c(
            DB_CHANGE_LISTENER_RECONNECTS_TOTAL,
            "Times the write-to-purge loop re-established its LISTEN connection.",
            None,
        );
        if let Some(process) = &self.inner.process {
            metrics::with_local_recorder(&self.inner.recorder, || process.describe());
        }
    }
}
