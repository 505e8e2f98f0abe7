//! Database query capture without wrapping the application's executor.
//!
//! sqlx already reports every statement it runs as a `tracing` event (target
//! `sqlx::query`, fields `summary`, `db.statement`, `rows_affected`, `rows_returned`,
//! `elapsed`, `elapsed_secs`). [`DbCapture`] listens to those events:
//!
//! * [`DbCapture::tracing_layer`] is a [`tracing_subscriber::Layer`] to add to the
//!   application's subscriber; it attributes each statement event to the request whose
//!   span is current when the statement finishes.
//! * [`DbCapture::layer`] is a tower layer that opens that per-request span (target
//!   `cachefront_origin::db`, name [`REQUEST_SPAN_NAME`]) and, when the response is ready,
//!   counts queries per [fingerprint](SqlFingerprint) and reports N+1 patterns.
//!
//! Per request it feeds the profiling layer's [`RequestProfile`](crate::profiling::RequestProfile)
//! (`Server-Timing: db;dur=…;desc="N queries"`), the metrics
//! [`DB_QUERIES_TOTAL`](crate::metrics::names::DB_QUERIES_TOTAL),
//! [`DB_QUERY_DURATION_SECONDS`](crate::metrics::names::DB_QUERY_DURATION_SECONDS) and
//! [`DB_N_PLUS_ONE_TOTAL`](crate::metrics::names::DB_N_PLUS_ONE_TOTAL), a slow-query log
//! (target `cachefront_origin::slow_query`) and an N+1 warning (target
//! `cachefront_origin::n_plus_one`). The response carries a [`CapturedQueries`] extension.
//!
//! sqlx emits the statement event only when its level is enabled: keep the connection's
//! `log_statements` at its default (`DEBUG`, never `Off`) and do not filter `sqlx::query`
//! or `cachefront_origin::db` out globally; put level filters on the output layer instead
//! (`fmt::layer().with_filter(EnvFilter::…)`). `docs/database.md` shows the setup.
//!
//! The capture also keeps lifetime statistics for the analyzer ([`DbCapture::snapshot`],
//! served by [`DbCapture::router`] as `GET /debug/queries`): per-fingerprint counts and
//! times, peak concurrency and pool acquire waits ([`stats`]); [`pool_sizing`] turns them
//! into a pool size.
//!
//! With the `analyze` feature, [`analyze`] plans queries with `EXPLAIN (FORMAT JSON)`,
//! reports plan and index-health findings and advises indexes verified with HypoPG (also
//! the `cachefront-origin analyze` command).

#[cfg(feature = "analyze")]
pub mod analyze;
pub mod fingerprint;
pub mod pool_sizing;
pub mod stats;

pub use fingerprint::SqlFingerprint;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, Request};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::field::{Field, Visit};
use tracing::instrument::Instrumented;
use tracing::{Instrument, Subscriber};
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use crate::admin::{authorize_debug, BearerToken};
use crate::route::{method_label, UNMATCHED};
use stats::{CaptureSnapshot, CaptureStats};

/// Name of the span [`DbCaptureLayer`] opens around each request (target `cachefront_origin::db`).
pub const REQUEST_SPAN_NAME: &str = "cachefront_origin.db.request";
/// Target of sqlx's statement events.
pub const SQLX_QUERY_TARGET: &str = "sqlx::query";
/// Target of sqlx's pool acquire events (emitted when the pool's `acquire_time_level` is on).
pub const SQLX_ACQUIRE_TARGET: &str = "sqlx::pool::acquire";
/// `route` label of queries run outside any captured request.
pub const NO_REQUEST_ROUTE: &str = "none";

const SAMPLE_MAX_CHARS: usize = 2048;
const FINGERPRINT_CACHE_CAPACITY: usize = 4096;
const DETECTIONS_KEPT: usize = 1024;

/// Options for [`DbCapture`].
#[derive(Debug, Clone)]
pub struct DbCaptureConfig {
    /// A fingerprint executed at least this many times within one request is an N+1
    /// pattern. Default: 5. `0` turns detection off.
    pub n_plus_one_threshold: u32,
    /// Fingerprints never reported as N+1, each given as its [`SqlFingerprint::id`] or its
    /// [`SqlFingerprint::normalized`] text (or raw SQL, which is fingerprinted).
    pub n_plus_one_allow: Vec<String>,
    /// Strict mode, for test suites: a detected N+1 panics in the response future (after
    /// the warning), so the test that made the request fails. Default: false.
    pub strict: bool,
    /// Queries at least this slow are logged (target `cachefront_origin::slow_query`).
    /// Default: 100 ms.
    pub slow_query_threshold: Duration,
    /// Bearer token for `GET /debug/queries` ([`DbCapture::router`]); `None` (default)
    /// disables the endpoint (404).
    pub debug_token: Option<BearerToken>,
}

impl Default for DbCaptureConfig {
    fn default() -> Self {
        Self {
            n_plus_one_threshold: 5,
            n_plus_one_allow: Vec::new(),
            strict: false,
            slow_query_threshold: Duration::from_millis(100),
            debug_token: None,
        }
    }
}

/// One N+1 pattern: the same fingerprint run `count` times by one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NPlusOne {
    /// Method label of the request.
    pub method: &'static str,
    /// Route template of the request (or `unmatched`).
    pub route: String,
    /// [`SqlFingerprint::id`] of the repeated statement.
    pub fingerprint: String,
    /// [`SqlFingerprint::normalized`] text of the repeated statement.
    pub normalized: String,
    /// How many times it ran in the request.
    pub count: u32,
    /// Their total database time.
    pub total_duration: Duration,
    /// One of the statements as sqlx logged it (truncated to 2048 chars).
    pub sample: String,
}

impl fmt::Display for NPlusOne {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "N+1 query on {} {}: fingerprint {} ran {} times ({:.3} ms): {}",
            self.method,
            self.route,
            self.fingerprint,
            self.count,
            self.total_duration.as_secs_f64() * 1000.0,
            self.normalized
        )
    }
}

/// N+1 patterns found while an [`NPlusOneGuard`] was held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NPlusOneError {
    /// Every pattern, in detection order.
    pub detections: Vec<NPlusOne>,
}

impl fmt::Display for NPlusOneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} N+1 query pattern(s) detected", self.detections.len())?;
        for d in &self.detections {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NPlusOneError {}

/// Queries of one statement shape within a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerprintCount {
    /// The statement's fingerprint.
    pub fingerprint: Arc<SqlFingerprint>,
    /// Executions within the request.
    pub count: u32,
    /// Their total database time.
    pub total_duration: Duration,
}

/// What one request ran; [`DbCaptureLayer`] puts it in the response's extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedQueries {
    /// Statements captured.
    pub queries: u32,
    /// Their total database time.
    pub db_time: Duration,
    /// Per fingerprint, most executed first.
    pub by_fingerprint: Vec<FingerprintCount>,
    /// N+1 patterns found in this request.
    pub n_plus_one: Vec<NPlusOne>,
}

/// Shared capture state: configuration, fingerprint cache, detections. Cheap to clone.
#[derive(Clone)]
pub struct DbCapture {
    inner: Arc<CaptureInner>,
}

struct CaptureInner {
    config: DbCaptureConfig,
    allow_ids: Vec<String>,
    /// Requests whose span is being created right now, by capture id (see `on_new_span`).
    opening: Mutex<HashMap<u64, Arc<RequestQueries>>>,
    next_capture_id: AtomicU64,
    fingerprints: Mutex<HashMap<String, Arc<SqlFingerprint>>>,
    detections: Mutex<VecDeque<(u64, NPlusOne)>>,
    detections_seen: AtomicU64,
    warned_span_disabled: AtomicBool,
    stats: CaptureStats,
    #[cfg(feature = "postgres")]
    pool: Mutex<Option<sqlx::PgPool>>,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Metrics>,
}

impl fmt::Debug for DbCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbCapture")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Default for DbCapture {
    fn default() -> Self {
        Self::new(DbCaptureConfig::default())
    }
}

impl DbCapture {
    /// A capture with the given options.
    pub fn new(config: DbCaptureConfig) -> Self {
        Self::build(config, None)
    }

    /// A capture that also records query counts, durations and N+1 detections in `metrics`.
    #[cfg(feature = "metrics")]
    pub fn with_metrics(config: DbCaptureConfig, metrics: &crate::metrics::Metrics) -> Self {
        Self::build(config, Some(metrics.clone()))
    }

    #[allow(unused_variables)]
    fn build(config: DbCaptureConfig, metrics: Option<MetricsOrNothing>) -> Self {
        let allow_ids = config
            .n_plus_one_allow
            .iter()
            .map(|entry| {
                let is_id = entry.len() == 16 && entry.bytes().all(|b| b.is_ascii_hexdigit());
                if is_id {
                    entry.to_ascii_lowercase()
                } else {
                    SqlFingerprint::of(entry).id()
                }
            })
            .collect();
        Self {
            inner: Arc::new(CaptureInner {
                config,
                allow_ids,
                opening: Mutex::new(HashMap::new()),
                next_capture_id: AtomicU64::new(1),
                fingerprints: Mutex::new(HashMap::new()),
                detections: Mutex::new(VecDeque::new()),
                detections_seen: AtomicU64::new(0),
                warned_span_disabled: AtomicBool::new(false),
                stats: CaptureStats::new(Instant::now()),
                #[cfg(feature = "postgres")]
                pool: Mutex::new(None),
                #[cfg(feature = "metrics")]
                metrics,
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &DbCaptureConfig {
        &self.inner.config
    }

    /// The `tracing_subscriber` layer that collects sqlx's statement events. Add it to the
    /// application's subscriber (`tracing_subscriber::registry().with(capture.tracing_layer())`).
    pub fn tracing_layer(&self) -> QueryCaptureLayer {
        QueryCaptureLayer {
            capture: self.clone(),
        }
    }

    /// The tower layer that opens the per-request capture span. Add it with `Router::layer`
    /// *before* (inside) the profiling layer, so the request's `RequestProfile` is visible.
    pub fn layer(&self) -> DbCaptureLayer {
        DbCaptureLayer {
            capture: self.clone(),
        }
    }

    /// The fingerprint of `sql`, from a bounded cache (statements repeat a lot).
    pub fn fingerprint(&self, sql: &str) -> Arc<SqlFingerprint> {
        if let Some(hit) = self.lock_fingerprints().get(sql) {
            return hit.clone();
        }
        // Parse outside the lock; a concurrent miss on the same text just parses twice.
        let fingerprint = Arc::new(SqlFingerprint::of(sql));
        let mut cache = self.lock_fingerprints();
        if cache.len() >= FINGERPRINT_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(sql.to_owned(), fingerprint.clone());
        fingerprint
    }

    /// Every N+1 pattern detected so far (the most recent 1024).
    pub fn detections(&self) -> Vec<NPlusOne> {
        self.lock_detections()
            .iter()
            .map(|(_, d)| d.clone())
            .collect()
    }

    /// A guard for tests: [`NPlusOneGuard::check`] fails with the N+1 patterns detected
    /// after this call.
    pub fn n_plus_one_guard(&self) -> NPlusOneGuard {
        NPlusOneGuard {
            capture: self.clone(),
            after: self.inner.detections_seen.load(Ordering::SeqCst),
        }
    }

    /// Lifetime statistics: per-fingerprint calls and times (with a sample statement),
    /// peak concurrency and pool acquire waits. What `GET /debug/queries` serves and
    /// `cachefront-origin analyze --from-app` reads.
    pub fn snapshot(&self) -> CaptureSnapshot {
        #[cfg(feature = "postgres")]
        let pool = self
            .inner
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|p| stats::PoolGauges {
                size: p.size(),
                idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
                max_connections: p.options().get_max_connections(),
            });
        #[cfg(not(feature = "postgres"))]
        let pool = None;
        self.inner.stats.snapshot(Instant::now(), pool)
    }

    /// Include `pool`'s gauges (size, idle, max) in [`snapshot`](Self::snapshot), for
    /// pool sizing.
    #[cfg(feature = "postgres")]
    pub fn watch_pg_pool(&self, pool: sqlx::PgPool) {
        *self
            .inner
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(pool);
    }

    /// `GET /debug/queries`: [`snapshot`](Self::snapshot) as JSON. Needs
    /// [`DbCaptureConfig::debug_token`] as a bearer token (404 without one configured), or
    /// the admin token when mounted behind [`AdminRouter::token`](crate::admin::AdminRouter::token).
    /// Mount it on the admin listener ([`AdminRouter::db_capture`](crate::admin::AdminRouter::db_capture)).
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let capture = self.clone();
        Router::new().route(
            "/debug/queries",
            get(move |req: axum::extract::Request| {
                let capture = capture.clone();
                async move { capture.snapshot_response(&req) }
            }),
        )
    }

    fn snapshot_response<B>(&self, req: &Request<B>) -> Response {
        let authorized = authorize_debug(
            self.inner.config.debug_token.as_ref(),
            req.headers(),
            req.extensions(),
        );
        if let Err(e) = authorized {
            return e.into_response();
        }
        let mut res = axum::Json(self.snapshot()).into_response();
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }

    fn lock_fingerprints(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SqlFingerprint>>> {
        self.inner
            .fingerprints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_detections(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, NPlusOne)>> {
        self.inner
            .detections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn is_allowed(&self, fingerprint: &SqlFingerprint) -> bool {
        let id = fingerprint.id();
        self.inner.allow_ids.contains(&id)
    }

    /// One statement event from sqlx.
    fn record_statement(&self, request: Option<&RequestQueries>, statement: SqlxStatement) {
        let fingerprint = self.fingerprint(&statement.sql);
        let route = request.map_or(NO_REQUEST_ROUTE, |r| r.route.as_str());

        #[cfg(feature = "metrics")]
        if let Some(m) = &self.inner.metrics {
            let labels = [("route", route)];
            m.counter(crate::metrics::names::DB_QUERIES_TOTAL, &labels)
                .increment(1);
            m.histogram(crate::metrics::names::DB_QUERY_DURATION_SECONDS, &labels)
                .record(statement.elapsed.as_secs_f64());
        }

        if let Some(request) = request {
            request.add(&fingerprint, &statement);
        }
        self.inner.stats.statement(
            &fingerprint,
            truncate_chars(&statement.sql, SAMPLE_MAX_CHARS),
            statement.elapsed,
            Instant::now(),
        );

        let threshold = self.inner.config.slow_query_threshold;
        if statement.elapsed >= threshold {
            tracing::warn!(
                target: "cachefront_origin::slow_query",
                route,
                fingerprint = %fingerprint.id(),
                duration_ms = statement.elapsed.as_secs_f64() * 1000.0,
                threshold_ms = threshold.as_secs_f64() * 1000.0,
                rows_returned = statement.rows_returned,
                rows_affected = statement.rows_affected,
                statement = %truncate_chars(&statement.sql, SAMPLE_MAX_CHARS),
                "slow query"
            );
        }
    }

    /// The request is over: summarize, report N+1 patterns.
    fn finish_request(&self, request: &RequestQueries) -> CapturedQueries {
        let tally = request.lock();
        let mut by_fingerprint: Vec<(&FingerprintTally, FingerprintCount)> = tally
            .by_fingerprint
            .values()
            .map(|t| {
                (
                    t,
                    FingerprintCount {
                        fingerprint: t.fingerprint.clone(),
                        count: t.count,
                        total_duration: t.total,
                    },
                )
            })
            .collect();
        by_fingerprint.sort_by(|a, b| {
            b.1.count.cmp(&a.1.count).then_with(|| {
                a.1.fingerprint
                    .normalized()
                    .cmp(b.1.fingerprint.normalized())
            })
        });

        let threshold = self.inner.config.n_plus_one_threshold;
        let mut n_plus_one = Vec::new();
        if threshold > 0 {
            for (t, _) in &by_fingerprint {
                if t.count < threshold || self.is_allowed(&t.fingerprint) {
                    continue;
                }
                let detection = NPlusOne {
                    method: request.method,
                    route: request.route.clone(),
                    fingerprint: t.fingerprint.id(),
                    normalized: t.fingerprint.normalized().to_owned(),
                    count: t.count,
                    total_duration: t.total,
                    sample: t.sample.clone(),
                };
                self.report(&detection);
                n_plus_one.push(detection);
            }
        }

        CapturedQueries {
            queries: tally.queries,
            db_time: tally.total,
            by_fingerprint: by_fingerprint.into_iter().map(|(_, c)| c).collect(),
            n_plus_one,
        }
    }

    fn report(&self, detection: &NPlusOne) {
        tracing::warn!(
            target: "cachefront_origin::n_plus_one",
            method = detection.method,
            route = %detection.route,
            fingerprint = %detection.fingerprint,
            count = detection.count,
            db_ms = detection.total_duration.as_secs_f64() * 1000.0,
            normalized = %detection.normalized,
            sample = %detection.sample,
            "N+1 query: the same statement ran {} times in one request",
            detection.count
        );
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.inner.metrics {
            m.counter(
                crate::metrics::names::DB_N_PLUS_ONE_TOTAL,
                &[("route", detection.route.as_str())],
            )
            .increment(1);
        }
        let seq = self.inner.detections_seen.fetch_add(1, Ordering::SeqCst) + 1;
        let mut kept = self.lock_detections();
        if kept.len() >= DETECTIONS_KEPT {
            kept.pop_front();
        }
        kept.push_back((seq, detection.clone()));
    }

    fn warn_span_disabled_once(&self) {
        if !self
            .inner
            .warned_span_disabled
            .swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                target: "cachefront_origin::db",
                "the per-request capture span is disabled by the subscriber's filter; \
                 queries are not attributed to requests (enable target cachefront_origin::db at INFO)"
            );
        }
    }
}

/// Stand-in so `build` has one signature with and without the `metrics` feature.
#[cfg(feature = "metrics")]
type MetricsOrNothing = crate::metrics::Metrics;
#[cfg(not(feature = "metrics"))]
type MetricsOrNothing = ();

/// Fails a test when N+1 patterns were detected since it was made.
#[derive(Debug, Clone)]
pub struct NPlusOneGuard {
    capture: DbCapture,
    after: u64,
}

impl NPlusOneGuard {
    /// `Err` with the patterns detected since the guard was made (the 1024 most recent).
    pub fn check(&self) -> Result<(), NPlusOneError> {
        let detections: Vec<NPlusOne> = self
            .capture
            .lock_detections()
            .iter()
            .filter(|(seq, _)| *seq > self.after)
            .map(|(_, d)| d.clone())
            .collect();
        if detections.is_empty() {
            Ok(())
        } else {
            Err(NPlusOneError { detections })
        }
    }
}

/// Per-request state, stored in the request span's extensions.
struct RequestQueries {
    method: &'static str,
    route: String,
    #[cfg(feature = "profiling")]
    profile: Option<crate::profiling::RequestProfile>,
    tally: Mutex<QueryTally>,
}

#[derive(Default)]
struct QueryTally {
    queries: u32,
    total: Duration,
    by_fingerprint: HashMap<u64, FingerprintTally>,
}

struct FingerprintTally {
    fingerprint: Arc<SqlFingerprint>,
    count: u32,
    total: Duration,
    sample: String,
}

impl RequestQueries {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueryTally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, fingerprint: &Arc<SqlFingerprint>, statement: &SqlxStatement) {
        #[cfg(feature = "profiling")]
        if let Some(profile) = &self.profile {
            profile.record_query(statement.elapsed);
        }
        let mut tally = self.lock();
        tally.queries = tally.queries.saturating_add(1);
        tally.total += statement.elapsed;
        let entry = tally
            .by_fingerprint
            .entry(fingerprint.hash())
            .or_insert_with(|| FingerprintTally {
                fingerprint: fingerprint.clone(),
                count: 0,
                total: Duration::ZERO,
                sample: truncate_chars(&statement.sql, SAMPLE_MAX_CHARS).to_owned(),
            });
        entry.count = entry.count.saturating_add(1);
        entry.total += statement.elapsed;
    }
}

/// A finished statement as sqlx reported it.
struct SqlxStatement {
    sql: String,
    elapsed: Duration,
    rows_returned: u64,
    rows_affected: u64,
}

/// Reads the fields of sqlx 0.8's statement event (`sqlx-core/src/logger.rs`): `summary`
/// (the first four words, or the whole statement when it is that short), `db.statement`
/// (the whole statement wrapped in newlines, or empty when `summary` is all of it),
/// `rows_affected`, `rows_returned`, `elapsed` (Debug) and `elapsed_secs` (f64).
#[derive(Default)]
struct SqlxEventFields {
    summary: Option<String>,
    statement: Option<String>,
    rows_affected: u64,
    rows_returned: u64,
    elapsed_secs: Option<f64>,
}

impl SqlxEventFields {
    fn into_statement(self) -> Option<SqlxStatement> {
        let sql = match self.statement {
            Some(s) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => self.summary?.trim().to_owned(),
        };
        if sql.is_empty() {
            return None;
        }
        let elapsed = self
            .elapsed_secs
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or_default();
        Some(SqlxStatement {
            sql,
            elapsed,
            rows_returned: self.rows_returned,
            rows_affected: self.rows_affected,
        })
    }
}

impl Visit for SqlxEventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = Some(value.to_owned()),
            "db.statement" => self.statement = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_affected" => self.rows_affected = value,
            "rows_returned" => self.rows_returned = value,
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn fmt::Debug) {}
}

/// Reads the wait of sqlx 0.8's acquire event (`sqlx-core/src/pool/inner.rs`): the field is
/// spelled `aquired_after_secs` there; the corrected spelling is accepted too.
#[derive(Default)]
struct AcquireEventFields(Option<f64>);

impl Visit for AcquireEventFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if matches!(field.name(), "aquired_after_secs" | "acquired_after_secs") {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn fmt::Debug) {}
}

/// Reads the `capture_id` field of the request span.
#[derive(Default)]
struct CaptureIdField(Option<u64>);

impl Visit for CaptureIdField {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "capture_id" {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn fmt::Debug) {}
}

/// `tracing_subscriber` layer made by [`DbCapture::tracing_layer`].
#[derive(Clone, Debug)]
pub struct QueryCaptureLayer {
    capture: DbCapture,
}

impl<S> tracing_subscriber::Layer<S> for QueryCaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: LayerContext<'_, S>,
    ) {
        if attrs.metadata().name() != REQUEST_SPAN_NAME {
            return;
        }
        let mut capture_id = CaptureIdField::default();
        attrs.record(&mut capture_id);
        let Some(capture_id) = capture_id.0 else {
            return;
        };
        let request = self
            .capture
            .inner
            .opening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&capture_id)
            .cloned();
        if let (Some(request), Some(span)) = (request, ctx.span(id)) {
            span.extensions_mut().insert(request);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
        let target = event.metadata().target();
        if target == SQLX_ACQUIRE_TARGET {
            let mut wait = AcquireEventFields::default();
            event.record(&mut wait);
            if let Some(wait) = wait.0.and_then(|s| Duration::try_from_secs_f64(s).ok()) {
                self.capture.inner.stats.acquire(wait);
            }
            return;
        }
        if target != SQLX_QUERY_TARGET {
            return;
        }
        let mut fields = SqlxEventFields::default();
        event.record(&mut fields);
        let Some(statement) = fields.into_statement() else {
            return;
        };
        let request = ctx.event_scope(event).and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<Arc<RequestQueries>>().cloned())
        });
        self.capture.record_statement(request.as_deref(), statement);
    }
}

/// Tower layer made by [`DbCapture::layer`].
#[derive(Clone, Debug)]
pub struct DbCaptureLayer {
    capture: DbCapture,
}

impl<S> Layer<S> for DbCaptureLayer {
    type Service = DbCaptureService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DbCaptureService {
            inner,
            capture: self.capture.clone(),
        }
    }
}

/// Service produced by [`DbCaptureLayer`].
#[derive(Clone, Debug)]
pub struct DbCaptureService<S> {
    inner: S,
    capture: DbCapture,
}

impl<S, B> Service<Request<B>> for DbCaptureService<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = DbCaptureFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let request = Arc::new(RequestQueries {
            method: method_label(req.method()),
            route: req
                .extensions()
                .get::<MatchedPath>()
                .map_or(UNMATCHED, MatchedPath::as_str)
                .to_owned(),
            #[cfg(feature = "profiling")]
            profile: req
                .extensions()
                .get::<crate::profiling::RequestProfile>()
                .cloned(),
            tally: Mutex::new(QueryTally::default()),
        });
        let inner = &self.capture.inner;
        let capture_id = inner.next_capture_id.fetch_add(1, Ordering::Relaxed);
        inner
            .opening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(capture_id, request.clone());
        // `on_new_span` runs synchronously inside `info_span!` and takes the state from `opening`.
        let span = tracing::info_span!(
            target: "cachefront_origin::db",
            "cachefront_origin.db.request",
            capture_id
        );
        inner
            .opening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&capture_id);
        if span.is_disabled() {
            self.capture.warn_span_disabled_once();
        }
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        DbCaptureFuture {
            inner: future.instrument(span),
            state: Some((self.capture.clone(), request)),
            _in_flight: InFlight::start(&self.capture),
        }
    }
}

pin_project! {
    /// Response future of [`DbCaptureService`].
    pub struct DbCaptureFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        state: Option<(DbCapture, Arc<RequestQueries>)>,
        _in_flight: InFlight,
    }
}

/// Counts a request in flight from `call` until its future completes or is dropped.
struct InFlight(DbCapture);

impl InFlight {
    fn start(capture: &DbCapture) -> Self {
        capture.inner.stats.request_started();
        Self(capture.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inner.stats.request_finished();
    }
}

impl<F, E> Future for DbCaptureFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let Some((capture, request)) = this.state.take() {
            let captured = capture.finish_request(&request);
            let strict_failure = capture.inner.config.strict && !captured.n_plus_one.is_empty();
            if strict_failure {
                let error = NPlusOneError {
                    detections: captured.n_plus_one.clone(),
                };
                panic!("strict N+1 detection: {error}");
            }
            if let Ok(response) = &mut result {
                response.extensions_mut().insert(captured);
            }
        }
        Poll::Ready(result)
    }
}

/// The first `max` characters of `s`.
fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((idx, _)) => &s[..idx],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_statements_come_from_db_statement_and_short_ones_from_summary() {
        let long = SqlxEventFields {
            summary: Some("SELECT id, name FROM …".to_owned()),
            statement: Some("\n\nSELECT id, name FROM categories WHERE id = $1\n".to_owned()),
            elapsed_secs: Some(0.002),
            ..Default::default()
        }
        .into_statement()
        .expect("statement");
        assert_eq!(long.sql, "SELECT id, name FROM categories WHERE id = $1");
        assert_eq!(long.elapsed, Duration::from_millis(2));

        let short = SqlxEventFields {
            summary: Some("SELECT 1".to_owned()),
            statement: Some(String::new()),
            ..Default::default()
        }
        .into_statement()
        .expect("statement");
        assert_eq!(short.sql, "SELECT 1");
    }

    #[test]
    fn events_without_text_are_ignored() {
        assert!(SqlxEventFields::default().into_statement().is_none());
    }

    #[test]
    fn allow_list_accepts_ids_and_sql() {
        let sql = "SELECT * FROM settings WHERE key = $1";
        let id = SqlFingerprint::of(sql).id();
        let by_id = DbCapture::new(DbCaptureConfig {
            n_plus_one_allow: vec![id.to_uppercase()],
            ..Default::default()
        });
        let by_sql = DbCapture::new(DbCaptureConfig {
            n_plus_one_allow: vec!["select * from settings where key = 'theme'".to_owned()],
            ..Default::default()
        });
        let fp = SqlFingerprint::of(sql);
        assert!(by_id.is_allowed(&fp));
        assert!(by_sql.is_allowed(&fp));
        assert!(!DbCapture::default().is_allowed(&fp));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hi", 5), "hi");
    }
}
