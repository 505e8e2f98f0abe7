//! [`DbCapture`]: the shared capture state (fingerprint cache, detections, lifetime
//! statistics) and what happens to each statement and each finished request.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, Request};

use super::findings::{CapturedQueries, FingerprintCount, NPlusOne, NPlusOneError};
use super::layer::DbCaptureLayer;
use super::stats::{CaptureSnapshot, CaptureStats};
use super::tracing_layer::{QueryCaptureFiltered, QueryCaptureLayer};
use super::visitors::SqlxStatement;
use super::{SqlFingerprint, NO_REQUEST_ROUTE};
use crate::admin::{authorize_debug, BearerToken};
use crate::error::warn_due;

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
    /// At most one N+1 warning per route and fingerprint in this interval; the next one
    /// says how many were suppressed (the metric and `/debug/queries` still count every
    /// detection). Default: 60 s. Zero warns every time.
    pub n_plus_one_warn_interval: Duration,
    /// Distinct fingerprints that get their own `fingerprint` label on
    /// `cachefront_origin_db_slow_queries_total`; slow queries of any further fingerprint
    /// count as `fingerprint="other"`, so the series stay bounded. Default: 50.
    pub slow_query_fingerprint_limit: usize,
}

impl Default for DbCaptureConfig {
    fn default() -> Self {
        Self {
            n_plus_one_threshold: 5,
            n_plus_one_allow: Vec::new(),
            strict: false,
            slow_query_threshold: Duration::from_millis(100),
            debug_token: None,
            n_plus_one_warn_interval: Duration::from_secs(60),
            slow_query_fingerprint_limit: 50,
        }
    }
}

/// Statement text → fingerprint, hashed a word at a time: the keys are the app's own SQL
/// (parameters are bound, never spliced in), so no flooding defence is needed, and
/// SipHash over a few hundred bytes cost more than the rest of the lookup.
pub(super) type TextMap =
    HashMap<Arc<str>, Arc<SqlFingerprint>, std::hash::BuildHasherDefault<TextHasher>>;

/// Multiply-rotate hasher over 8-byte words (the scheme of rustc's FxHasher).
#[derive(Default)]
pub(super) struct TextHasher(u64);

impl std::hash::Hasher for TextHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Most (route, fingerprint) pairs remembered for N+1 warning rate limiting; past it the
/// memory is cleared (a burst of new pairs then warns once more each, never grows memory).
const WARNED_PAIRS_KEPT: usize = 4096;

/// Shared capture state: configuration, fingerprint cache, detections. Cheap to clone.
#[derive(Clone)]
pub struct DbCapture {
    pub(super) inner: Arc<CaptureInner>,
}

pub(super) struct CaptureInner {
    pub(super) config: DbCaptureConfig,
    pub(super) allow_ids: Vec<String>,
    /// Statement text → fingerprint, bounded: statements repeat, so a statement seen
    /// before costs a hash and a lookup, no parse and no copy.
    pub(super) fingerprints: Mutex<TextMap>,
    pub(super) detections: Mutex<VecDeque<(u64, NPlusOne)>>,
    pub(super) detections_seen: AtomicU64,
    pub(super) setup_checked: AtomicBool,
    /// A [`CapturedPool`](super::CapturedPool) records statements for this capture.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(super) pool_wrapped: AtomicBool,
    #[cfg_attr(not(feature = "profiling"), allow(dead_code))]
    pub(super) warned_outside_profiler: AtomicBool,
    /// Fingerprint ids labelled on the slow-query counter (at most the configured limit).
    pub(super) slow_labelled: Mutex<std::collections::HashSet<String>>,
    /// Last N+1 warning per (route, fingerprint) and the detections suppressed since.
    pub(super) warned_n_plus_one: Mutex<HashMap<(String, String), (Instant, u64)>>,
    pub(super) stats: CaptureStats,
    #[cfg(feature = "postgres")]
    pub(super) pool: Mutex<Option<sqlx::PgPool>>,
    #[cfg(feature = "metrics")]
    pub(super) metrics: Option<crate::metrics::Metrics>,
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
        let capture = Self::build(config, Some(metrics.clone()));
        // Evaluated at each scrape, on the scraper's thread, against the global subscriber:
        // a capture that a logging setup switched off shows as 0 on the dashboard.
        let weak = Arc::downgrade(&capture.inner);
        metrics.on_scrape(move |m| {
            if let Some(inner) = weak.upgrade() {
                let active = DbCapture { inner }.setup().is_active();
                m.gauge(crate::metrics::names::DB_CAPTURE_ACTIVE, &[])
                    .set(if active { 1.0 } else { 0.0 });
            }
        });
        capture
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
                fingerprints: Mutex::new(TextMap::default()),
                detections: Mutex::new(VecDeque::new()),
                detections_seen: AtomicU64::new(0),
                setup_checked: AtomicBool::new(false),
                pool_wrapped: AtomicBool::new(false),
                warned_outside_profiler: AtomicBool::new(false),
                slow_labelled: Mutex::new(std::collections::HashSet::new()),
                warned_n_plus_one: Mutex::new(HashMap::new()),
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
    /// application's subscriber after the output layer
    /// (`registry().with(fmt::layer().with_filter(…)).with(capture.tracing_layer())`, see
    /// [`init_logging`](Self::init_logging) for why last) and put level filters on the
    /// output layer, not globally. It carries its own
    /// per-layer filter ([`CaptureFilter`](super::CaptureFilter)): it wants sqlx's
    /// statement and acquire events only, so it enables nothing else in the process.
    pub fn tracing_layer<S>(&self) -> QueryCaptureFiltered<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_subscriber::filter::Filtered::new(
            QueryCaptureLayer {
                capture: self.clone(),
            },
            super::CaptureFilter,
        )
    }

    /// The tower layer that opens the per-request capture span. Add it with `Router::layer`
    /// *before* (inside) the profiling layer, so the request's `RequestProfile` is visible.
    ///
    /// Requests for the [default excluded paths](crate::stack::PathExcludes::DEFAULT)
    /// (probes, `/metrics`) are not captured; see [`DbCaptureLayer::exclude_paths`].
    /// [`Cachefront::builder`](crate::Cachefront::builder) places it right.
    pub fn layer(&self) -> DbCaptureLayer {
        DbCaptureLayer {
            capture: self.clone(),
            excludes: crate::stack::PathExcludes::default(),
        }
    }

    /// Whether this capture can see sqlx's statements under the current default
    /// subscriber (see [`CaptureSetup`]). Call it after installing the subscriber; the
    /// capture also checks once and warns when it is off: when
    /// [`Cachefront::builder`](crate::Cachefront::builder) applies it with a global
    /// subscriber installed (at start-up), else at its first request.
    pub fn setup(&self) -> CaptureSetup {
        let layer_installed = tracing::dispatcher::get_default(|d| {
            d.downcast_ref::<QueryCaptureLayer>()
                .is_some_and(|l| Arc::ptr_eq(&l.capture.inner, &self.inner))
        });
        CaptureSetup {
            pool_wrapped: self.inner.pool_wrapped.load(Ordering::Relaxed),
            layer_installed,
            statements_enabled: tracing::enabled!(
                target: super::SQLX_QUERY_TARGET,
                tracing::Level::DEBUG
            ),
        }
    }

    /// A health check named `db_capture` failing with [`CaptureSetup::problem`] while the
    /// capture is off. Register it warn-only (`Health::builder().warn_check(…)`): it
    /// shows on the admin `/readyz` and `/status` without failing readiness.
    #[cfg(feature = "health")]
    pub fn health_check(&self) -> impl crate::health::HealthCheck {
        let capture = self.clone();
        crate::health::FnCheck::new("db_capture", move || {
            let problem = capture.setup().problem();
            async move { problem.map_or(Ok(()), Err) }
        })
    }

    /// Installs the global subscriber the capture needs, with log output like
    /// `tracing_subscriber::fmt().init()`: this capture's layer (with its own filter), and the `fmt`
    /// output filtered by [`log_filter`](super::log_filter) (`RUST_LOG`, default `info`,
    /// sqlx's per-statement lines silenced), each line emitted while a request is polled
    /// ending with `request_id=…` ([`RequestIdFormat`](crate::hygiene::RequestIdFormat)).
    /// `log` records reach the output too (through `tracing-log`, when the build has it),
    /// with `log`'s maximum level set to the output's. Fails when a global subscriber is
    /// already set.
    ///
    /// The capture layer goes *outside* the `fmt` layer (added last): a layered
    /// subscriber hands an event to its inner layers first, and the capture's own work on
    /// a statement (parsing a new statement's fingerprint: sqlparser logs through `log`;
    /// a slow-query warning) dispatches other events, which reset the per-thread state in
    /// which per-layer filters leave their verdict on the event being dispatched. Inside
    /// the `fmt` layer, it made `fmt` print the `DEBUG sqlx::query` line of each
    /// statement's first execution; outside, `fmt` has decided before the capture runs.
    pub fn init_logging(&self) -> crate::Result<()> {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::Layer as _;
        // Colour codes only for a terminal: a log file or collector gets plain text, and
        // styling every span field cost ~5k instructions a request. (Never `with_ansi(true)`:
        // it panics when tracing-subscriber is built without its `ansi` feature.)
        // No span per request: the request id comes from the thread, added by the format.
        let output = tracing_subscriber::fmt::layer()
            .event_format(crate::hygiene::RequestIdFormat::default());
        let output = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            output
        } else {
            output.with_ansi(false)
        };
        let output_filter = super::log_filter();
        let shown = output_filter
            .iter()
            .map(|(_, level)| level)
            .chain(output_filter.default_level())
            .max();
        tracing_subscriber::registry()
            .with(output.with_filter(output_filter))
            .with(self.tracing_layer())
            .try_init()
            .map_err(|e| crate::Error::Config(format!("tracing subscriber: {e}")))?;
        // `try_init` gave `log` (its records reach the output through `LogTracer`) the
        // whole subscriber's maximum level, which the capture raises to DEBUG for
        // `sqlx::query`. The capture reads no `log` record (sqlx reports statements
        // through `tracing`), so `log` needs no more than the output shows: sqlx's
        // per-statement `log_enabled!` check then stops at the level comparison instead
        // of asking the subscriber through `LogTracer` (~0.35k instructions a statement).
        if let Some(level) = shown {
            tracing_log::log::set_max_level(tracing_log::AsLog::as_log(&level));
        }
        Ok(())
    }

    /// Checks the setup now, at start-up, if the global subscriber is installed (the
    /// builder calls it when it applies the capture): warns once when the capture cannot
    /// see statements. Without a global subscriber yet (it may come later, or the app
    /// uses scoped ones) the check waits for the first captured request.
    pub(crate) fn check_setup_at_startup(&self) {
        if tracing::dispatcher::has_been_set() {
            self.check_setup_once();
        }
    }

    /// Warns once if the capture cannot see statements (at start-up, see
    /// [`check_setup_at_startup`](Self::check_setup_at_startup), or at the first captured
    /// request when the app's subscriber is surely installed).
    pub(crate) fn check_setup_once(&self) {
        if self.inner.setup_checked.load(Ordering::Relaxed)
            || self.inner.setup_checked.swap(true, Ordering::Relaxed)
        {
            return;
        }
        if let Some(problem) = self.setup().problem() {
            let message = format!(
                "query capture is OFF: {problem}. The db Server-Timing entry, the db_* metrics \
                 and N+1 warnings stay empty. Install it with `capture.init_logging()` or \
                 `registry().with(fmt::layer().with_filter(EnvFilter…)).with(capture.tracing_layer())` \
                 (docs/database.md, Setup)"
            );
            tracing::warn!(target: "cachefront_origin::db", "{message}");
            if !tracing::dispatcher::has_been_set() {
                eprintln!("WARN cachefront_origin::db: {message}");
            }
        }
    }

    #[cfg(feature = "profiling")]
    pub(super) fn warn_outside_profiler_once(&self) {
        if crate::profiling::PROFILING_LAYER_MADE.load(Ordering::Relaxed)
            && !self
                .inner
                .warned_outside_profiler
                .swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                target: "cachefront_origin::db",
                "the query capture layer sees requests without a RequestProfile: it is outside \
                 the profiling layer, so Server-Timing has no db entry. Add `capture.layer()` \
                 before `profiler.layer()`, or build the stack with Cachefront::builder()"
            );
        }
    }

    /// The fingerprint of `sql`, from a bounded cache (statements repeat a lot).
    pub fn fingerprint(&self, sql: &str) -> Arc<SqlFingerprint> {
        self.resolve(sql).1
    }

    /// `sql` as the cache keeps it (shared, not copied) and its fingerprint.
    pub(super) fn resolve(&self, sql: &str) -> (Arc<str>, Arc<SqlFingerprint>) {
        if let Some((text, fingerprint)) = self.lock_fingerprints().get_key_value(sql) {
            return (text.clone(), fingerprint.clone());
        }
        // Parse outside the lock; a concurrent miss on the same text just parses twice.
        let fingerprint = Arc::new(SqlFingerprint::of(sql));
        let text: Arc<str> = sql.into();
        let mut cache = self.lock_fingerprints();
        if cache.len() >= FINGERPRINT_CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(text.clone(), fingerprint.clone());
        (text, fingerprint)
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
            .map(|p| super::stats::PoolGauges {
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

    fn lock_fingerprints(&self) -> std::sync::MutexGuard<'_, TextMap> {
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

    /// A [`CapturedPool`](super::CapturedPool) records statements for this capture.
    #[cfg(feature = "postgres")]
    pub(super) fn mark_pool_wrapped(&self) {
        self.inner.pool_wrapped.store(true, Ordering::Relaxed);
    }

    /// A statement a [`CapturedPool`](super::CapturedPool) ran: recorded like sqlx's event
    /// of it, for the request being polled on this thread.
    #[cfg(feature = "postgres")]
    pub(super) fn record_executed(
        &self,
        sql: &str,
        elapsed: Duration,
        rows_returned: u64,
        rows_affected: u64,
    ) {
        // The event path reads the text trimmed (sqlx wraps long statements in newlines).
        let (sql, fingerprint) = self.resolve(sql.trim());
        super::tracing_layer::record_for_current_request(
            self,
            SqlxStatement {
                sql,
                fingerprint,
                elapsed,
                rows_returned,
                rows_affected,
            },
        );
    }

    /// One statement, from sqlx's event or a [`CapturedPool`](super::CapturedPool).
    pub(super) fn record_statement(
        &self,
        request: Option<&RequestQueries>,
        statement: SqlxStatement,
    ) {
        let fingerprint = &statement.fingerprint;
        let route = request.map_or(NO_REQUEST_ROUTE, |r| &*r.handles.route);

        #[cfg(feature = "metrics")]
        match request.and_then(|r| r.handles.queries.as_ref()) {
            Some((count, duration)) => {
                count.increment(1);
                duration.record(statement.elapsed.as_secs_f64());
            }
            None => {
                if let Some(m) = &self.inner.metrics {
                    let labels = [("route", route)];
                    m.counter(crate::metrics::names::DB_QUERIES_TOTAL, &labels)
                        .increment(1);
                    m.histogram(crate::metrics::names::DB_QUERY_DURATION_SECONDS, &labels)
                        .record(statement.elapsed.as_secs_f64());
                }
            }
        }

        if let Some(request) = request {
            request.add(&statement);
        }
        self.inner.stats.statement(
            fingerprint,
            truncate_chars(&statement.sql, SAMPLE_MAX_CHARS),
            statement.elapsed,
            Instant::now(),
        );

        let threshold = self.inner.config.slow_query_threshold;
        if statement.elapsed >= threshold {
            #[cfg(feature = "metrics")]
            if let Some(m) = &self.inner.metrics {
                let label = self.slow_query_label(fingerprint.id());
                m.counter(
                    crate::metrics::names::DB_SLOW_QUERIES_TOTAL,
                    &[("route", route), ("fingerprint", &label)],
                )
                .increment(1);
            }
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

    /// The `fingerprint` label of a slow query: its id while fewer than the configured
    /// limit of ids are labelled (or it already is one of them), else `other`.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    fn slow_query_label(&self, id: String) -> String {
        let mut labelled = self
            .inner
            .slow_labelled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if labelled.contains(&id) {
            return id;
        }
        if labelled.len() < self.inner.config.slow_query_fingerprint_limit {
            labelled.insert(id.clone());
            return id;
        }
        "other".to_owned()
    }

    /// The request is over: summarize, report N+1 patterns.
    pub(super) fn finish_request(&self, request: &RequestQueries) -> CapturedQueries {
        let mut tally = request.lock();
        if tally.by_fingerprint.len() > 1 {
            tally.by_fingerprint.sort_by(|a, b| {
                b.count
                    .cmp(&a.count)
                    .then_with(|| a.fingerprint.normalized().cmp(b.fingerprint.normalized()))
            });
        }
        let threshold = self.inner.config.n_plus_one_threshold;
        let mut n_plus_one = Vec::new();
        if threshold > 0 {
            for t in &tally.by_fingerprint {
                if t.count < threshold || self.is_allowed(&t.fingerprint) {
                    continue;
                }
                let detection = NPlusOne {
                    method: request.method,
                    route: request.handles.route.to_string(),
                    fingerprint: t.fingerprint.id(),
                    normalized: t.fingerprint.normalized().to_owned(),
                    count: t.count,
                    total_duration: t.total,
                    sample: truncate_chars(&t.sample, SAMPLE_MAX_CHARS).to_owned(),
                };
                self.report(&detection);
                n_plus_one.push(detection);
            }
        }

        // The request is over: its tally is taken, and `collect` reuses the list's
        // allocation for the smaller entries (no second list a request).
        let by_fingerprint: Vec<FingerprintCount> = std::mem::take(&mut tally.by_fingerprint)
            .into_iter()
            .map(|t| FingerprintCount {
                fingerprint: t.fingerprint,
                count: t.count,
                total_duration: t.total,
            })
            .collect();

        CapturedQueries {
            queries: tally.queries,
            db_time: tally.total,
            by_fingerprint,
            n_plus_one,
        }
    }

    fn report(&self, detection: &NPlusOne) {
        let now = Instant::now();
        let key = (detection.route.clone(), detection.fingerprint.clone());
        let suppressed = {
            let mut warned = self
                .inner
                .warned_n_plus_one
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = warned.get(&key).copied();
            if warn_due(
                entry.map(|e| e.0),
                now,
                self.inner.config.n_plus_one_warn_interval,
            ) {
                if warned.len() >= WARNED_PAIRS_KEPT {
                    warned.clear();
                }
                warned.insert(key, (now, 0));
                Some(entry.map_or(0, |e| e.1))
            } else {
                if let Some(e) = warned.get_mut(&key) {
                    e.1 += 1;
                }
                None
            }
        };
        if let Some(suppressed) = suppressed {
            self.warn_n_plus_one(detection, suppressed);
        }
        self.count_detection(detection);
    }

    fn warn_n_plus_one(&self, detection: &NPlusOne, suppressed: u64) {
        tracing::warn!(
            target: "cachefront_origin::n_plus_one",
            suppressed,
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
    }

    fn count_detection(&self, detection: &NPlusOne) {
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
}

/// What [`DbCapture::setup`] found in the current default subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CaptureSetup {
    /// A [`CapturedPool`](super::CapturedPool) records statements for this capture
    /// itself, with or without the tracing layer.
    pub pool_wrapped: bool,
    /// This capture's [`QueryCaptureLayer`] is part of the subscriber.
    pub layer_installed: bool,
    /// sqlx's statement events (target `sqlx::query`, `DEBUG`) pass the subscriber's
    /// filters; a global `info` filter (`fmt().with_env_filter(…)`) drops them.
    pub statements_enabled: bool,
}

impl CaptureSetup {
    /// Statements reach the capture and are attributed to requests.
    pub fn is_active(&self) -> bool {
        self.pool_wrapped || (self.layer_installed && self.statements_enabled)
    }

    /// What is wrong, in words, when not active.
    pub fn problem(&self) -> Option<String> {
        if self.pool_wrapped {
            None
        } else if !self.layer_installed {
            Some("its tracing layer is not in the global subscriber (was `fmt().init()` or `fmt().with_env_filter(…).init()` used?)".to_owned())
        } else if !self.statements_enabled {
            Some("a global filter disables sqlx's DEBUG statement events (target sqlx::query); put the level filter on the fmt layer instead".to_owned())
        } else {
            None
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

/// A route's label and metric handles, looked up once per route (see `DbCaptureService`)
/// instead of once per statement: the registry lookup builds and hashes a label set.
#[derive(Debug)]
pub(super) struct RouteHandles {
    pub(super) route: Arc<str>,
    #[cfg(feature = "metrics")]
    pub(super) queries: Option<(metrics::Counter, metrics::Histogram)>,
}

impl DbCapture {
    pub(super) fn route_handles(&self, route: &str) -> Arc<RouteHandles> {
        Arc::new(RouteHandles {
            route: route.into(),
            #[cfg(feature = "metrics")]
            queries: self.inner.metrics.as_ref().map(|m| {
                let labels = [("route", route)];
                (
                    m.counter(crate::metrics::names::DB_QUERIES_TOTAL, &labels),
                    m.histogram(crate::metrics::names::DB_QUERY_DURATION_SECONDS, &labels),
                )
            }),
        })
    }
}

/// Per-request state, current on the thread while the request is polled (see
/// `tracing_layer::with_request`).
pub(super) struct RequestQueries {
    /// Address of the owning capture's state: a second capture in the process does not
    /// count this request's statements as its own.
    pub(super) owner: usize,
    pub(super) method: &'static str,
    pub(super) handles: Arc<RouteHandles>,
    #[cfg(feature = "profiling")]
    pub(super) profile: Option<crate::profiling::RequestProfile>,
    pub(super) tally: Mutex<QueryTally>,
}

#[derive(Default)]
pub(super) struct QueryTally {
    pub(super) queries: u32,
    pub(super) total: Duration,
    /// Few distinct statements per request: a short list beats a hash map.
    pub(super) by_fingerprint: Vec<FingerprintTally>,
}

pub(super) struct FingerprintTally {
    pub(super) fingerprint: Arc<SqlFingerprint>,
    pub(super) count: u32,
    pub(super) total: Duration,
    pub(super) sample: Arc<str>,
}

impl RequestQueries {
    /// Whether `capture` made this request's state.
    pub(super) fn owned_by(&self, capture: &DbCapture) -> bool {
        self.owner == Arc::as_ptr(&capture.inner) as usize
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueryTally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add(&self, statement: &SqlxStatement) {
        #[cfg(feature = "profiling")]
        if let Some(profile) = &self.profile {
            profile.record_query(statement.elapsed);
            profile.trace_query(&statement.fingerprint, statement.elapsed);
        }
        let mut tally = self.lock();
        tally.queries = tally.queries.saturating_add(1);
        tally.total += statement.elapsed;
        let hash = statement.fingerprint.hash();
        let index = match tally
            .by_fingerprint
            .iter()
            .position(|t| t.fingerprint.hash() == hash)
        {
            Some(i) => i,
            None => {
                tally.by_fingerprint.push(FingerprintTally {
                    fingerprint: statement.fingerprint.clone(),
                    count: 0,
                    total: Duration::ZERO,
                    sample: statement.sql.clone(),
                });
                tally.by_fingerprint.len() - 1
            }
        };
        let entry = &mut tally.by_fingerprint[index];
        entry.count = entry.count.saturating_add(1);
        entry.total += statement.elapsed;
    }
}

/// The first `max` characters of `s`.
fn truncate_chars(s: &str, max: usize) -> &str {
    // No more bytes than `max`: no more chars either (skips walking every statement's chars).
    if s.len() <= max {
        return s;
    }
    match s.char_indices().nth(max) {
        Some((idx, _)) => &s[..idx],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_plus_one_warnings_are_limited_per_interval() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        assert!(warn_due(None, t0, minute));
        assert!(!warn_due(Some(t0), t0 + Duration::from_secs(59), minute));
        assert!(warn_due(Some(t0), t0 + minute, minute));
        assert!(warn_due(Some(t0), t0, Duration::ZERO));
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

    #[cfg(feature = "metrics")]
    #[test]
    fn slow_queries_are_counted_by_fingerprint_with_bounded_labels() {
        let metrics = crate::metrics::Metrics::new();
        let capture = DbCapture::with_metrics(
            DbCaptureConfig {
                slow_query_threshold: Duration::from_millis(50),
                slow_query_fingerprint_limit: 3,
                ..Default::default()
            },
            &metrics,
        );
        let run = |sql: String, ms: u64| {
            capture.record_statement(
                None,
                SqlxStatement {
                    sql: capture.resolve(&sql).0,
                    fingerprint: capture.fingerprint(&sql),
                    elapsed: Duration::from_millis(ms),
                    rows_returned: 0,
                    rows_affected: 0,
                },
            );
        };
        // Ten distinct slow statements (distinct tables: distinct fingerprints), the first
        // one twice with different literals, and one fast statement.
        for table in 0..10 {
            run(format!("SELECT * FROM t{table} WHERE id = 1"), 80);
        }
        run("SELECT * FROM t0 WHERE id = 2".to_owned(), 200);
        run("SELECT * FROM fast WHERE id = 1".to_owned(), 1);

        let text = metrics.render();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(crate::metrics::names::DB_SLOW_QUERIES_TOTAL))
            .collect();
        assert_eq!(series.len(), 4, "3 fingerprints + other:\n{text}");
        let t0 = SqlFingerprint::of("SELECT * FROM t0 WHERE id = 1").id();
        assert!(
            series
                .iter()
                .any(|l| l.contains(&format!("fingerprint=\"{t0}\"")) && l.ends_with(" 2")),
            "{series:?}"
        );
        assert!(
            series
                .iter()
                .any(|l| l.contains("fingerprint=\"other\"") && l.ends_with(" 7")),
            "{series:?}"
        );
        let fast = SqlFingerprint::of("SELECT * FROM fast WHERE id = 1").id();
        assert!(!text.contains(&fast), "a fast query is not counted");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hi", 5), "hi");
    }
}
