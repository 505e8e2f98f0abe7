//! Prometheus metrics: the [`Metrics`] registry, the per-route RED [`MetricsLayer`], process
//! and pool gauges collected at scrape time, and the `/metrics` + `/metrics.json` router.
//!
//! Every label value comes from a bounded set (route template or `unmatched`, known method
//! or `OTHER`, status class), so label cardinality never depends on what clients send.
//! The registry is an instance, not the global `metrics` recorder, so several apps (or
//! tests) in one process keep separate counts. Metric names are listed in [`names`].
//!
//! Files: `registry` owns the [`Metrics`] handle and its upkeep, `describe` the `# HELP`
//! texts, `layer` the per-route RED layer, `router` the scrape endpoints, `exposition` the
//! text-to-JSON conversion of `/metrics.json`.

mod describe;
mod exposition;
mod layer;
mod registry;
mod router;

pub use layer::{MetricsFuture, MetricsLayer, MetricsService};
pub use registry::{Metrics, MetricsConfig};

/// Names of every metric this crate exports. Dashboards and alert rules reference these.
pub mod names {
    /// Counter `{method, route, status_class}`: finished HTTP requests.
    pub const HTTP_REQUESTS_TOTAL: &str = "cachefront_origin_http_requests_total";
    /// Histogram (seconds) `{method, route, status_class}`: time to response headers.
    pub const HTTP_REQUEST_DURATION_SECONDS: &str =
        "cachefront_origin_http_request_duration_seconds";
    /// Gauge `{method, route}`: requests currently being handled.
    pub const HTTP_REQUESTS_IN_FLIGHT: &str = "cachefront_origin_http_requests_in_flight";
    /// Counter `{route}`: requests slower than the profiling threshold.
    pub const SLOW_REQUESTS_TOTAL: &str = "cachefront_origin_slow_requests_total";
    /// Counter: tags written into `Cache-Tag` headers.
    pub const CACHE_TAGS_EMITTED_TOTAL: &str = "cachefront_origin_cache_tags_emitted_total";
    /// Counter `{reason}`: tags dropped (`empty`, `too_long`, `invalid_char`, `header_full`).
    pub const CACHE_TAGS_DROPPED_TOTAL: &str = "cachefront_origin_cache_tags_dropped_total";
    /// Counter `{provider, kind}`: purge items accepted into the queue.
    pub const PURGE_ITEMS_ENQUEUED_TOTAL: &str = "cachefront_origin_purge_items_enqueued_total";
    /// Counter `{provider, kind}`: purge items refused as invalid before queueing.
    pub const PURGE_ITEMS_INVALID_TOTAL: &str = "cachefront_origin_purge_items_invalid_total";
    /// Counter `{provider}`: purge items dropped because the queue was full.
    pub const PURGE_QUEUE_DROPPED_TOTAL: &str = "cachefront_origin_purge_queue_dropped_total";
    /// Gauge `{provider}`: purge items waiting in the queue.
    pub const PURGE_QUEUE_DEPTH: &str = "cachefront_origin_purge_queue_depth";
    /// Counter `{provider, outcome}`: purge API calls (`ok`, `retry`, `failed`, `rejected`).
    pub const PURGE_REQUESTS_TOTAL: &str = "cachefront_origin_purge_requests_total";
    /// Gauge: 1 when `/readyz` last answered ready, 0 otherwise.
    pub const READY: &str = "cachefront_origin_ready";
    /// Gauge `{check}`: 1 when the named health check last passed, 0 otherwise.
    pub const HEALTH_CHECK_UP: &str = "cachefront_origin_health_check_up";
    /// Gauge `{pool}`: connections open in the database pool.
    pub const DB_POOL_CONNECTIONS: &str = "cachefront_origin_db_pool_connections";
    /// Gauge `{pool}`: idle connections in the database pool.
    pub const DB_POOL_IDLE_CONNECTIONS: &str = "cachefront_origin_db_pool_idle_connections";
    /// Gauge `{pool}`: configured maximum connections of the database pool.
    pub const DB_POOL_MAX_CONNECTIONS: &str = "cachefront_origin_db_pool_max_connections";
    /// Counter `{route}`: database queries captured from sqlx's statement events
    /// (`route="none"` outside a request).
    pub const DB_QUERIES_TOTAL: &str = "cachefront_origin_db_queries_total";
    /// Histogram (seconds) `{route}`: duration of captured database queries.
    pub const DB_QUERY_DURATION_SECONDS: &str = "cachefront_origin_db_query_duration_seconds";
    /// Counter `{route}`: N+1 patterns detected (one per repeated fingerprint per request).
    pub const DB_N_PLUS_ONE_TOTAL: &str = "cachefront_origin_db_n_plus_one_total";
    /// Counter `{route, fingerprint}`: queries at least as slow as the slow-query
    /// threshold. `fingerprint` is the statement's fingerprint id for the first
    /// `DbCaptureConfig::slow_query_fingerprint_limit` distinct ones, then `other`.
    pub const DB_SLOW_QUERIES_TOTAL: &str = "cachefront_origin_db_slow_queries_total";
    /// Gauge: 1 when the query capture's subscriber half is installed and sqlx's
    /// statement events reach it, else 0 (evaluated at each scrape).
    pub const DB_CAPTURE_ACTIVE: &str = "cachefront_origin_db_capture_active";
    /// Counter `{kind}`: change notifications the write → purge loop received
    /// (`row`, `table` for TRUNCATE and oversized payloads, `invalid`).
    pub const DB_CHANGE_NOTIFICATIONS_TOTAL: &str =
        "cachefront_origin_db_change_notifications_total";
    /// Counter `{reason}`: tag batches the write → purge loop handed to the purge client
    /// (`changes`, `catch_up` after a reconnect or at start).
    pub const DB_CHANGE_PURGES_TOTAL: &str = "cachefront_origin_db_change_purges_total";
    /// Counter: times the write → purge loop's listener connection was re-established.
    pub const DB_CHANGE_LISTENER_RECONNECTS_TOTAL: &str =
        "cachefront_origin_db_change_listener_reconnects_total";
}

/// Prometheus' default buckets, in seconds.
pub const DEFAULT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
