//! Health probes and graceful shutdown: [`Health`] owns the process's readiness state,
//! its dependency checks ([`HealthCheck`], with a built-in [`PostgresCheck`]) and the
//! `/livez`, `/readyz`, `/startupz` routers — a status-only one for the public listener,
//! a detailed one (check names, errors) for the admin listener; [`GracefulShutdown`]
//! serves an app (and its admin router) until SIGTERM/SIGINT, flips readiness to 503 at
//! once, drains, and stops within a deadline.
//!
//! Startup semantics: `/readyz` and `/startupz` answer 503 until every startup check has
//! passed once; after that startup checks are never run again.
//!
//! Checks are critical (a failure makes the process unready) or warn-only (reported, never
//! failing readiness), each with its own timeout ([`CheckOptions`]). The public `/readyz`
//! reuses the last result for [`HealthBuilder::cache_ttl`] (one run at a time however many
//! probes arrive), so a load balancer's probes never reach the database on every request;
//! the admin `/readyz` always runs the checks. Built-in disk and memory checks are in
//! [`builtin`]; the admin listener's `/status` is an HTML page of the same report.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "health_builtin.rs"]
pub mod builtin;
#[path = "health_page.rs"]
mod page;

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

/// A boxed, sendable future, as returned by [`HealthCheck::check`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A dependency check run by `/readyz` (or once, at startup).
pub trait HealthCheck: Send + Sync + 'static {
    /// Stable name, shown in the JSON answer and the `check` metric label.
    fn name(&self) -> &str;
    /// `Ok(())` when the dependency is usable; `Err(reason)` otherwise.
    fn check(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// A [`HealthCheck`] from a name and an async closure.
pub struct FnCheck<F> {
    name: String,
    f: F,
}

impl<F, Fut> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    /// A check called `name` that runs `f`.
    pub fn new(name: impl Into<String>, f: F) -> Self {
        Self {
            name: name.into(),
            f,
        }
    }
}

impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin((self.f)())
    }
}

/// Built-in readiness check: `SELECT 1` on a sqlx PostgreSQL pool.
#[cfg(feature = "postgres")]
#[derive(Debug, Clone)]
pub struct PostgresCheck {
    name: String,
    pool: sqlx::PgPool,
}

#[cfg(feature = "postgres")]
impl PostgresCheck {
    /// Check named `postgres` over `pool`.
    pub fn new(pool: sqlx::PgPool) -> Self {
        Self {
            name: "postgres".to_owned(),
            pool,
        }
    }
    /// Same check under another name (several databases).
    pub fn named(name: impl Into<String>, pool: sqlx::PgPool) -> Self {
        Self {
            name: name.into(),
            pool,
        }
    }
}

#[cfg(feature = "postgres")]
impl HealthCheck for PostgresCheck {
    fn name(&self) -> &str {
        &self.name
    }
    fn check(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&self.pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// Options for [`Health`].
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Default per-check timeout; a check that takes longer fails with `timeout`. Default: 2 s.
    pub check_timeout: Duration,
    /// How long the public `/readyz` (and `/status`) reuse a result. Default: 2 s.
    pub cache_ttl: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check_timeout: Duration::from_secs(2),
            cache_ttl: Duration::from_secs(2),
        }
    }
}

/// How one check is run: its own timeout, and whether a failure only warns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOptions {
    /// Overrides [`HealthConfig::check_timeout`] for this check.
    pub timeout: Option<Duration>,
    /// Reported (in `warnings`, `/status`, the metric), never failing readiness.
    pub warn_only: bool,
}

impl CheckOptions {
    /// A critical check with the default timeout.
    pub fn critical() -> Self {
        Self::default()
    }
    /// A warn-only check with the default timeout.
    pub fn warn_only() -> Self {
        Self {
            warn_only: true,
            ..Self::default()
        }
    }
    /// This check's own timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

#[derive(Clone)]
struct Registered {
    check: Arc<dyn HealthCheck>,
    options: CheckOptions,
}

/// Whether a result computed at `computed_at` may still be served at `now`.
fn still_fresh(computed_at: Instant, now: Instant, ttl: Duration) -> bool {
    !ttl.is_zero() && now.saturating_duration_since(computed_at) < ttl
}

/// Readiness state of the process. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Health {
    inner: Arc<HealthInner>,
}

struct HealthInner {
    config: HealthConfig,
    readiness: Vec<Registered>,
    startup: Vec<Registered>,
    /// Last readiness result and when it was computed; the lock also makes concurrent
    /// cached probes wait for one run instead of each running the checks.
    cache: tokio::sync::Mutex<Option<(Instant, ReadinessReport)>>,
    started: AtomicBool,
    shutting_down: AtomicBool,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("started", &self.is_started())
            .field("shutting_down", &self.is_shutting_down())
            .finish_non_exhaustive()
    }
}

/// Builder for [`Health`].
#[derive(Default)]
pub struct HealthBuilder {
    config: HealthConfig,
    readiness: Vec<Registered>,
    startup: Vec<Registered>,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Metrics>,
}

impl HealthBuilder {
    /// Add a check run by every `/readyz`.
    pub fn readiness_check(self, check: impl HealthCheck) -> Self {
        self.readiness_check_with(check, CheckOptions::critical())
    }
    /// Add a readiness check with its own options (timeout, warn-only).
    pub fn readiness_check_with(mut self, check: impl HealthCheck, options: CheckOptions) -> Self {
        self.readiness.push(Registered {
            check: Arc::new(check),
            options,
        });
        self
    }
    /// Add a warn-only check: run with the others, reported, never failing readiness.
    pub fn warn_check(self, check: impl HealthCheck) -> Self {
        self.readiness_check_with(check, CheckOptions::warn_only())
    }
    /// Add a check that must pass once before the process is ready.
    pub fn startup_check(mut self, check: impl HealthCheck) -> Self {
        self.startup.push(Registered {
            check: Arc::new(check),
            options: CheckOptions::critical(),
        });
        self
    }
    /// Default per-check timeout.
    pub fn check_timeout(mut self, timeout: Duration) -> Self {
        self.config.check_timeout = timeout;
        self
    }
    /// How long the public `/readyz` reuses a result (zero: run the checks every time).
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.config.cache_ttl = ttl;
        self
    }
    /// Export `cachefront_origin_ready` and `cachefront_origin_health_check_up{check}`.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }
    /// Finish.
    pub fn build(self) -> Health {
        let started = self.startup.is_empty();
        Health {
            inner: Arc::new(HealthInner {
                config: self.config,
                readiness: self.readiness,
                startup: self.startup,
                cache: tokio::sync::Mutex::new(None),
                started: AtomicBool::new(started),
                shutting_down: AtomicBool::new(false),
                #[cfg(feature = "metrics")]
                metrics: self.metrics,
            }),
        }
    }
}

/// Result of one check, as shown by `/readyz`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckReport {
    /// `ok`, `failed` or `timeout`.
    pub status: &'static str,
    /// `critical` (fails readiness) or `warn` (reported only).
    pub severity: &'static str,
    /// How long the check took, in milliseconds.
    pub duration_ms: f64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `/readyz` answers.
#[derive(Debug, Clone, Serialize)]
pub struct ReadinessReport {
    /// `ready`, `starting`, `unready` or `shutting_down`.
    pub status: &'static str,
    /// Names of the critical checks that failed.
    pub failing: Vec<String>,
    /// Names of the warn-only checks that failed (readiness unaffected).
    pub warnings: Vec<String>,
    /// Every check that ran, by name.
    pub checks: BTreeMap<String, CheckReport>,
}

impl ReadinessReport {
    /// Whether the process should receive traffic.
    pub fn is_ready(&self) -> bool {
        self.status == "ready"
    }
}

impl Health {
    /// A builder for checks and options.
    pub fn builder() -> HealthBuilder {
        HealthBuilder::default()
    }

    /// Whether every startup check has passed once.
    pub fn is_started(&self) -> bool {
        self.inner.started.load(Ordering::Acquire)
    }

    /// Whether shutdown has begun (readiness is 503 from then on).
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Flip readiness to 503 for good. Called by [`GracefulShutdown`] on SIGTERM.
    pub fn begin_shutdown(&self) {
        if !self.inner.shutting_down.swap(true, Ordering::AcqRel) {
            tracing::info!(target: "cachefront_origin::health", "shutdown begun: readiness now 503");
            self.set_ready_gauge(false);
        }
    }

    /// Run the startup checks (until they have passed once) and the readiness checks now;
    /// the result also refreshes the cache [`readiness_cached`](Self::readiness_cached) uses.
    pub async fn readiness(&self) -> ReadinessReport {
        let report = self.compute().await;
        *self.inner.cache.lock().await = Some((Instant::now(), report.clone()));
        report
    }

    async fn compute(&self) -> ReadinessReport {
        if self.is_shutting_down() {
            return ReadinessReport {
                status: "shutting_down",
                failing: Vec::new(),
                warnings: Vec::new(),
                checks: BTreeMap::new(),
            };
        }
        let mut checks = BTreeMap::new();
        let mut failing = Vec::new();
        let mut warnings = Vec::new();
        if !self.is_started() {
            self.run_checks(
                &self.inner.startup,
                &mut checks,
                &mut failing,
                &mut warnings,
            )
            .await;
            if !failing.is_empty() {
                self.set_ready_gauge(false);
                return ReadinessReport {
                    status: "starting",
                    failing,
                    warnings,
                    checks,
                };
            }
            self.inner.started.store(true, Ordering::Release);
            tracing::info!(target: "cachefront_origin::health", "startup checks passed");
        }
        self.run_checks(
            &self.inner.readiness,
            &mut checks,
            &mut failing,
            &mut warnings,
        )
        .await;
        let ready = failing.is_empty() && !self.is_shutting_down();
        self.set_ready_gauge(ready);
        let status = if self.is_shutting_down() {
            "shutting_down"
        } else if ready {
            "ready"
        } else {
            "unready"
        };
        ReadinessReport {
            status,
            failing,
            warnings,
            checks,
        }
    }

    /// The last readiness result if it is younger than the cache TTL, else a fresh one.
    /// Concurrent callers during a refresh wait for that one run. Shutdown is seen at once.
    pub async fn readiness_cached(&self) -> ReadinessReport {
        let ttl = self.inner.config.cache_ttl;
        // Held through the run: probes arriving meanwhile wait for it, then reuse it.
        let mut cache = self.inner.cache.lock().await;
        if let Some((at, report)) = cache.as_ref() {
            if !self.is_shutting_down() && still_fresh(*at, Instant::now(), ttl) {
                return report.clone();
            }
        }
        let report = self.compute().await;
        *cache = Some((Instant::now(), report.clone()));
        report
    }

    async fn run_checks(
        &self,
        list: &[Registered],
        checks: &mut BTreeMap<String, CheckReport>,
        failing: &mut Vec<String>,
        warnings: &mut Vec<String>,
    ) {
        let default_timeout = self.inner.config.check_timeout;
        let runs = list.iter().map(|r| async move {
            let timeout = r.options.timeout.unwrap_or(default_timeout);
            let severity = if r.options.warn_only {
                "warn"
            } else {
                "critical"
            };
            let start = Instant::now();
            let outcome = tokio::time::timeout(timeout, r.check.check()).await;
            let duration_ms = start.elapsed().as_secs_f64() * 1000.0;
            let (status, error) = match outcome {
                Ok(Ok(())) => ("ok", None),
                Ok(Err(e)) => ("failed", Some(e)),
                Err(_) => (
                    "timeout",
                    Some(format!("no answer within {} ms", timeout.as_millis())),
                ),
            };
            let report = CheckReport {
                status,
                severity,
                duration_ms,
                error,
            };
            (r.check.name().to_owned(), r.options.warn_only, report)
        });
        for (name, warn_only, report) in join_all(runs).await {
            let ok = report.status == "ok";
            self.set_check_gauge(&name, ok);
            if !ok {
                tracing::warn!(
                    target: "cachefront_origin::health",
                    check = %name,
                    severity = report.severity,
                    status = report.status,
                    error = report.error.as_deref().unwrap_or(""),
                    "health check failing"
                );
                if warn_only {
                    warnings.push(name.clone());
                } else {
                    failing.push(name.clone());
                }
            }
            checks.insert(name, report);
        }
    }

    #[allow(unused_variables)]
    fn set_ready_gauge(&self, ready: bool) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.inner.metrics {
            m.gauge(crate::metrics::names::READY, &[])
                .set(if ready { 1.0 } else { 0.0 });
        }
    }

    #[allow(unused_variables)]
    fn set_check_gauge(&self, name: &str, ok: bool) {
        #[cfg(feature = "metrics")]
        if let Some(m) = &self.inner.metrics {
            m.gauge(crate::metrics::names::HEALTH_CHECK_UP, &[("check", name)])
                .set(if ok { 1.0 } else { 0.0 });
        }
    }

    /// `GET /livez`, `GET /readyz`, `GET /startupz` for the public listener (load
    /// balancers, the edge): a status and nothing else, `{"status":"ready"}` (200) or
    /// `{"status":"unavailable"}` (503) — no check names, no error strings, which could
    /// carry hostnames, users or driver messages. The details are on [`admin_router`].
    ///
    /// [`admin_router`]: Self::admin_router
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let ready = self.clone();
        let startup = self.clone();
        Router::new()
            .route("/livez", get(livez))
            .route(
                "/readyz",
                get(move || {
                    let h = ready.clone();
                    async move {
                        let report = h.readiness_cached().await;
                        public_status(report.is_ready(), "ready", "unavailable")
                    }
                }),
            )
            .route(
                "/startupz",
                get(move || {
                    let h = startup.clone();
                    async move {
                        if !h.is_started() {
                            // Runs the startup checks; flips `started` when they pass.
                            h.readiness().await;
                        }
                        public_status(h.is_started(), "started", "starting")
                    }
                }),
            )
    }

    /// `GET /livez`, `GET /readyz`, `GET /startupz` for the admin listener: the same
    /// statuses, with every check's name, severity, status, duration and error
    /// ([`ReadinessReport`]); `/readyz` here always runs the checks. `GET /status`: the
    /// cached report as a small HTML page for humans.
    pub fn admin_router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let ready = self.clone();
        let startup = self.clone();
        let status_page = self.clone();
        Router::new()
            .route("/livez", get(livez))
            .route(
                "/status",
                get(move || {
                    let h = status_page.clone();
                    async move {
                        let report = h.readiness_cached().await;
                        no_store((
                            probe_status(report.is_ready()),
                            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                            page::render(&report),
                        ))
                    }
                }),
            )
            .route(
                "/readyz",
                get(move || {
                    let h = ready.clone();
                    async move {
                        let report = h.readiness().await;
                        no_store((probe_status(report.is_ready()), Json(report)))
                    }
                }),
            )
            .route(
                "/startupz",
                get(move || {
                    let h = startup.clone();
                    async move {
                        if !h.is_started() {
                            // Runs the startup checks; flips `started` when they pass.
                            let report = h.readiness().await;
                            if !h.is_started() {
                                return no_store((StatusCode::SERVICE_UNAVAILABLE, Json(report)));
                            }
                        }
                        no_store((
                            StatusCode::OK,
                            Json(serde_json::json!({"status": "started"})),
                        ))
                    }
                }),
            )
    }
}

async fn livez() -> Response {
    no_store(Json(serde_json::json!({"status": "alive"})))
}

/// A probe answer that says only whether: 200 `{"status": yes}` or 503 `{"status": no}`.
fn public_status(ok: bool, yes: &'static str, no: &'static str) -> Response {
    let status = if ok { yes } else { no };
    no_store((
        probe_status(ok),
        Json(serde_json::json!({ "status": status })),
    ))
}

/// 200 when the probe passes, 503 when it does not.
fn probe_status(ok: bool) -> StatusCode {
    if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn no_store(r: impl IntoResponse) -> Response {
    let mut res = r.into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Run futures concurrently and collect their outputs in order.
async fn join_all<F: Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Serves an axum app until a shutdown signal, then drains it.
///
/// On the signal (SIGTERM or SIGINT by default): readiness flips to 503 at once; the
/// listener keeps accepting for `drain_delay` so load balancers see the 503 and stop
/// sending; then new connections stop, in-flight requests get up to `deadline` to finish,
/// and [`GracefulShutdown::serve`] returns.
#[derive(Debug, Clone)]
pub struct GracefulShutdown {
    health: Health,
    drain_delay: Duration,
    deadline: Duration,
}

impl GracefulShutdown {
    /// Defaults: no drain delay, 30 s deadline.
    pub fn new(health: &Health) -> Self {
        Self {
            health: health.clone(),
            drain_delay: Duration::ZERO,
            deadline: Duration::from_secs(30),
        }
    }
    /// Keep accepting (and answering `/readyz` with 503) this long after the signal.
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
        self
    }
    /// Longest wait for in-flight requests once accepting stops.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Serve `app` on `listener` until SIGTERM or SIGINT.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        app: Router,
    ) -> std::io::Result<()> {
        self.serve_until(listener, app, terminate_signal()).await
    }

    /// Serve `app` on `listener` until `signal` resolves (tests, embedding).
    pub async fn serve_until(
        self,
        listener: tokio::net::TcpListener,
        app: Router,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.run(listener, app, None, signal).await
    }

    /// Serve the public `app` on `listener` and the operator routes
    /// ([`AdminRouter`](crate::admin::AdminRouter)) on `admin_listener` until SIGTERM or
    /// SIGINT. The admin listener keeps answering through the drain (metrics and the
    /// detailed `/readyz` show the shutdown) and stops with the public one.
    pub async fn serve_with_admin(
        self,
        listener: tokio::net::TcpListener,
        app: Router,
        admin_listener: tokio::net::TcpListener,
        admin: Router,
    ) -> std::io::Result<()> {
        self.run(
            listener,
            app,
            Some((admin_listener, admin)),
            terminate_signal(),
        )
        .await
    }

    /// [`serve_with_admin`](Self::serve_with_admin) until `signal` resolves.
    pub async fn serve_with_admin_until(
        self,
        listener: tokio::net::TcpListener,
        app: Router,
        admin_listener: tokio::net::TcpListener,
        admin: Router,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.run(listener, app, Some((admin_listener, admin)), signal)
            .await
    }

    async fn run(
        self,
        listener: tokio::net::TcpListener,
        app: Router,
        admin: Option<(tokio::net::TcpListener, Router)>,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let health = self.health.clone();
        let drain = self.drain_delay;
        tokio::spawn(async move {
            signal.await;
            health.begin_shutdown();
            tokio::time::sleep(drain).await;
            tracing::info!(target: "cachefront_origin::health", "no longer accepting connections; draining in-flight requests");
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let admin_task = admin.map(|(admin_listener, admin_app)| {
            tokio::spawn(
                axum::serve(admin_listener, admin_app)
                    .with_graceful_shutdown(stopped(stop_rx.clone()))
                    .into_future(),
            )
        });
        let admin_abort = admin_task
            .as_ref()
            .map(tokio::task::JoinHandle::abort_handle);
        let server = axum::serve(listener, app).with_graceful_shutdown(stopped(stop_rx.clone()));
        let both = async move {
            let public = server.into_future().await;
            let admin = match admin_task {
                Some(task) => task.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
                None => Ok(()),
            };
            public.and(admin)
        };
        tokio::pin!(both);
        let mut deadline_rx = stop_rx;
        let deadline = self.deadline;
        tokio::select! {
            res = &mut both => res,
            _ = async move {
                if deadline_rx.wait_for(|stop| *stop).await.is_err() {
                    std::future::pending::<()>().await;
                }
                tokio::time::sleep(deadline).await;
            } => {
                tracing::warn!(target: "cachefront_origin::health", deadline_ms = deadline.as_millis() as u64, "shutdown deadline passed; abandoning in-flight requests");
                if let Some(abort) = admin_abort {
                    abort.abort();
                }
                Ok(())
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn terminate_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!(target: "cachefront_origin::health", "SIGINT received"),
        _ = term => tracing::info!(target: "cachefront_origin::health", "SIGTERM received"),
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn a_result_is_fresh_only_within_the_ttl() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(2);
        assert!(still_fresh(t0, t0 + Duration::from_millis(1999), ttl));
        assert!(!still_fresh(t0, t0 + ttl, ttl));
        assert!(
            !still_fresh(t0, t0, Duration::ZERO),
            "zero TTL: never reuse"
        );
    }
}
