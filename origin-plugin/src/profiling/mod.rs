//! Per-request profiling: [`ProfilingLayer`] times every request, writes `Server-Timing`
//! (sampled), logs and counts slow requests, and keeps the recent requests for the
//! slowest-requests report; [`RequestProfile`] lets handlers and the database capture add
//! their own timings (`db;dur=…;desc="N queries"`). The [`pprof`] submodule serves
//! on-demand CPU profiles.
//!
//! Debug endpoints (`/debug/requests`, `/debug/pprof/profile`) are off unless a bearer
//! token is configured, and then require it.

#[cfg(feature = "pprof")]
pub mod pprof;
pub mod spans;

#[cfg(feature = "metrics")]
pub use spans::Timer;
pub use spans::{current_profile, SpanProfileLayer};

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{FromRequestParts, MatchedPath};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::request::Parts;
use http::{header, HeaderName, HeaderValue, Request};
use pin_project_lite::pin_project;
use serde::Serialize;
use tower::{Layer, Service};

use crate::admin::{authorize_debug, BearerToken};
use crate::route::{method_label, UNMATCHED};
use crate::stack::PathExcludes;
use crate::Error;

/// `Server-Timing` header name.
pub const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Options for [`Profiler`].
#[derive(Debug, Clone)]
pub struct ProfilingConfig {
    /// Requests at least this slow are logged (target `cachefront_origin::slow_request`)
    /// and counted. Default: 500 ms.
    pub slow_threshold: Duration,
    /// Fraction of requests (0.0–1.0) that get a `Server-Timing` header and enter the
    /// report. Slow requests are always logged. Default: 1.0.
    pub sample_rate: f64,
    /// Write `Server-Timing` on sampled responses. Default: true.
    pub server_timing: bool,
    /// How many recent sampled requests the report keeps. Default: 500.
    pub report_capacity: usize,
    /// Bearer token for the debug endpoints; `None` (default) disables them (404).
    pub debug_token: Option<BearerToken>,
    /// Longest CPU profile, in seconds. Default: 60.
    pub pprof_max_seconds: u64,
    /// CPU sampling frequency, in Hz. Default: 99.
    pub pprof_frequency: i32,
    /// Most spans ([`SpanProfileLayer`], [`Timer`]) kept per sampled request; later
    /// ones are counted, not kept. Default: 64.
    pub max_spans: usize,
    /// Most top-level spans written into `Server-Timing` (same-named ones summed).
    /// Default: 5.
    pub server_timing_spans: usize,
}

impl Default for ProfilingConfig {
    fn default() -> Self {
        Self {
            slow_threshold: Duration::from_millis(500),
            sample_rate: 1.0,
            server_timing: true,
            report_capacity: 500,
            debug_token: None,
            pprof_max_seconds: 60,
            pprof_frequency: 99,
            max_spans: 64,
            server_timing_spans: 5,
        }
    }
}

/// One finished request as the report shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestSample {
    /// Method label.
    pub method: &'static str,
    /// Route template (or `unmatched`).
    pub route: String,
    /// Response status.
    pub status: u16,
    /// Wall time to response headers, in milliseconds.
    pub duration_ms: f64,
    /// Database queries recorded on the request's [`RequestProfile`].
    pub queries: u32,
    /// Database time recorded on the request's [`RequestProfile`], in milliseconds.
    pub db_ms: f64,
    /// When it finished, in milliseconds since the Unix epoch.
    pub finished_at_ms: u64,
    /// The request's span tree, depth-first (empty without a [`SpanProfileLayer`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spans: Vec<SpanSample>,
    /// Spans past [`ProfilingConfig::max_spans`], counted but not kept.
    #[serde(skip_serializing_if = "is_zero")]
    pub spans_dropped: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One node of a request's span tree.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SpanSample {
    /// Span name (the function name for `#[instrument]`, the block for [`Timer`]).
    pub name: &'static str,
    /// 0 for a top-level span of the request.
    pub depth: usize,
    /// Start, in milliseconds after the request started.
    pub start_ms: f64,
    /// Duration in milliseconds (until the response if the span was still open).
    pub duration_ms: f64,
}

/// What the layer keeps per request: the route as axum's (shared) `MatchedPath`, so the
/// hot path never copies it.
struct Recorded {
    route: Option<MatchedPath>,
    method: &'static str,
    status: u16,
    duration_ms: f64,
    queries: u32,
    db_ms: f64,
    finished_at_ms: u64,
    started: Instant,
    spans: Vec<spans::SpanNode>,
    spans_dropped: u32,
}

impl Recorded {
    fn route(&self) -> &str {
        self.route.as_ref().map_or(UNMATCHED, MatchedPath::as_str)
    }

    fn to_sample(&self) -> RequestSample {
        RequestSample {
            method: self.method,
            route: self.route().to_owned(),
            status: self.status,
            duration_ms: self.duration_ms,
            queries: self.queries,
            db_ms: self.db_ms,
            finished_at_ms: self.finished_at_ms,
            spans: span_tree(&self.spans, self.started, self.duration_ms),
            spans_dropped: self.spans_dropped,
        }
    }
}

/// Depth-first order of `nodes` (which arrive in opening order, parents first).
fn span_tree(nodes: &[spans::SpanNode], started: Instant, request_ms: f64) -> Vec<SpanSample> {
    fn visit(
        nodes: &[spans::SpanNode],
        parent: Option<usize>,
        depth: usize,
        started: Instant,
        request_ms: f64,
        out: &mut Vec<SpanSample>,
    ) {
        for (i, n) in nodes.iter().enumerate().filter(|(_, n)| n.parent == parent) {
            let start_ms = n.start.saturating_duration_since(started).as_secs_f64() * 1000.0;
            out.push(SpanSample {
                name: n.name,
                depth,
                start_ms,
                duration_ms: n
                    .duration
                    .map_or(request_ms - start_ms, |d| d.as_secs_f64() * 1000.0),
            });
            visit(nodes, Some(i), depth + 1, started, request_ms, out);
        }
    }
    let mut out = Vec::with_capacity(nodes.len());
    visit(nodes, None, 0, started, request_ms, &mut out);
    out
}

/// `name 1.234ms > child 0.500ms; other 0.100ms`: the tree on one log line.
fn span_line(tree: &[SpanSample]) -> String {
    let mut out = String::new();
    for s in tree {
        if !out.is_empty() {
            out.push_str(if s.depth > 0 { " > " } else { "; " });
        }
        let _ = write!(out, "{} {:.3}ms", s.name, s.duration_ms);
    }
    out
}

/// Set once any [`Profiler::layer`] was made: a query capture that then sees requests
/// without a [`RequestProfile`] is outside the profiling layer and says so.
pub(crate) static PROFILING_LAYER_MADE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Shared profiling state: configuration, recent requests, debug endpoints. Cheap to clone.
#[derive(Clone)]
pub struct Profiler {
    inner: Arc<ProfilerInner>,
}

struct ProfilerInner {
    config: ProfilingConfig,
    recent: Mutex<VecDeque<Recorded>>,
    seen: AtomicU64,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Metrics>,
    #[cfg(feature = "pprof")]
    cpu: pprof::CpuProfiler,
}

impl std::fmt::Debug for Profiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiler")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Default for Profiler {
    fn default() -> Self {
        Self::new(ProfilingConfig::default())
    }
}

impl Profiler {
    /// A profiler with the given options.
    pub fn new(config: ProfilingConfig) -> Self {
        Self::build(config, None)
    }

    /// A profiler that also counts slow requests in `metrics`.
    #[cfg(feature = "metrics")]
    pub fn with_metrics(config: ProfilingConfig, metrics: &crate::metrics::Metrics) -> Self {
        Self::build(config, Some(metrics.clone()))
    }

    #[allow(unused_variables)]
    fn build(mut config: ProfilingConfig, metrics: Option<NoMetrics>) -> Self {
        config.sample_rate = if config.sample_rate.is_nan() {
            0.0
        } else {
            config.sample_rate.clamp(0.0, 1.0)
        };
        config.pprof_max_seconds = config.pprof_max_seconds.max(1);
        Self {
            inner: Arc::new(ProfilerInner {
                recent: Mutex::new(VecDeque::with_capacity(config.report_capacity.min(4096))),
                #[cfg(feature = "pprof")]
                cpu: pprof::CpuProfiler::new(config.pprof_frequency, config.pprof_max_seconds),
                config,
                seen: AtomicU64::new(0),
                #[cfg(feature = "metrics")]
                metrics,
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &ProfilingConfig {
        &self.inner.config
    }

    /// The layer that profiles every request it wraps, except the [default excluded
    /// paths](PathExcludes::DEFAULT) (change them with [`ProfilingLayer::exclude_paths`]).
    /// Add it with `Router::layer`, or let [`Cachefront::builder`](crate::Cachefront::builder) place it.
    pub fn layer(&self) -> ProfilingLayer {
        PROFILING_LAYER_MADE.store(true, std::sync::atomic::Ordering::Relaxed);
        ProfilingLayer {
            profiler: self.clone(),
            excludes: PathExcludes::default(),
        }
    }

    /// Recent sampled requests, slowest first, at most `limit`.
    pub fn slowest(&self, limit: usize) -> Vec<RequestSample> {
        let mut all: Vec<RequestSample> = self
            .inner
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(Recorded::to_sample)
            .collect();
        all.sort_by(|a, b| b.duration_ms.total_cmp(&a.duration_ms));
        all.truncate(limit);
        all
    }

    /// `GET /debug/requests` (HTML report, `?format=json` for JSON) and, with the `pprof`
    /// feature, `GET /debug/pprof/profile`. Both need the configured bearer token.
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let report = self.clone();
        let router = Router::new().route(
            "/debug/requests",
            get(move |req: axum::extract::Request| {
                let p = report.clone();
                async move { p.report_response(&req) }
            }),
        );
        #[cfg(feature = "pprof")]
        let router = {
            let cpu = self.clone();
            router.route(
                "/debug/pprof/profile",
                get(move |req: axum::extract::Request| {
                    let p = cpu.clone();
                    async move {
                        match p.authorize(&req) {
                            Ok(()) => p.inner.cpu.serve(req.uri().query()).await,
                            Err(e) => e.into_response(),
                        }
                    }
                }),
            )
        };
        router
    }

    /// Check the debug bearer token: 404 when debug endpoints are off, 401 when wrong.
    pub(crate) fn authorize<B>(&self, req: &Request<B>) -> Result<(), Error> {
        authorize_debug(
            self.inner.config.debug_token.as_ref(),
            req.headers(),
            req.extensions(),
        )
    }

    fn report_response<B>(&self, req: &Request<B>) -> Response {
        if let Err(e) = self.authorize(req) {
            return e.into_response();
        }
        let query = req.uri().query();
        let slowest = self.slowest(50);
        let format = query_param(query, "format").unwrap_or("html");
        let mut res = match format {
            "json" => axum::Json(serde_json::json!({ "slowest": slowest })).into_response(),
            "html" => Html(render_report(&slowest, &self.inner.config)).into_response(),
            other => {
                return Error::BadRequest(format!("unknown format {other:?}; use html or json"))
                    .into_response()
            }
        };
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }

    fn sampled(&self) -> bool {
        let rate = self.inner.config.sample_rate;
        if rate >= 1.0 {
            return true;
        }
        let n = self.inner.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * rate).floor() > (n * rate).floor()
    }

    fn finish(&self, sample: Recorded, elapsed: Duration, sampled: bool) {
        let cfg = &self.inner.config;
        if elapsed >= cfg.slow_threshold {
            let spans = span_line(&span_tree(
                &sample.spans,
                sample.started,
                sample.duration_ms,
            ));
            tracing::warn!(
                target: "cachefront_origin::slow_request",
                method = sample.method,
                route = %sample.route(),
                status = sample.status,
                duration_ms = sample.duration_ms,
                queries = sample.queries,
                db_ms = sample.db_ms,
                spans = %spans,
                threshold_ms = cfg.slow_threshold.as_secs_f64() * 1000.0,
                "slow request"
            );
            #[cfg(feature = "metrics")]
            if let Some(m) = &self.inner.metrics {
                m.counter(
                    crate::metrics::names::SLOW_REQUESTS_TOTAL,
                    &[("route", sample.route())],
                )
                .increment(1);
            }
        }
        if sampled && cfg.report_capacity > 0 {
            let mut recent = self
                .inner
                .recent
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if recent.len() >= cfg.report_capacity {
                recent.pop_front();
            }
            recent.push_back(sample);
        }
    }
}

/// Stand-in type so `build` has one signature with and without the `metrics` feature.
#[cfg(feature = "metrics")]
type NoMetrics = crate::metrics::Metrics;
#[cfg(not(feature = "metrics"))]
type NoMetrics = ();

pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Server-Timing` metric name: `name` reduced to token chars, at most 64 of them
/// (empty when nothing is left).
fn timing_name(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect()
}

fn render_report(slowest: &[RequestSample], cfg: &ProfilingConfig) -> String {
    let mut rows = String::new();
    for s in slowest {
        let spans = s
            .spans
            .iter()
            .map(|n| {
                format!(
                    "<li style=\"margin-left:{}rem\"><code>{}</code> {:.3} ms <small>(+{:.3} ms)</small></li>",
                    n.depth,
                    crate::html::escape(n.name),
                    n.duration_ms,
                    n.start_ms
                )
            })
            .collect::<String>();
        let _ = write!(
            rows,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=n>{:.2}</td><td class=n>{}</td><td class=n>{:.2}</td></tr>",
            s.method,
            crate::html::escape(&s.route),
            s.status,
            s.duration_ms,
            s.queries,
            s.db_ms
        );
        if !spans.is_empty() {
            let _ = write!(
                rows,
                "<tr><td></td><td colspan=5><ul class=spans>{spans}</ul></td></tr>"
            );
        }
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=6>No requests recorded yet.</td></tr>");
    }
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Slowest recent requests</title>\
<style>body{{font:14px system-ui,sans-serif;margin:2rem;color:#1d2330}}table{{border-collapse:collapse}}\
td,th{{padding:.3rem .8rem;border-bottom:1px solid #dde}}th{{text-align:left}}.n{{text-align:right;font-variant-numeric:tabular-nums}}</style></head>\
<body><h1>Slowest recent requests</h1><p>Slow threshold {:.0} ms · sample rate {} · keeping the last {} sampled requests.</p>\
<table><thead><tr><th>Method</th><th>Route</th><th>Status</th><th class=n>Time (ms)</th><th class=n>Queries</th><th class=n>DB (ms)</th></tr></thead>\
<tbody>{rows}</tbody></table></body></html>",
        cfg.slow_threshold.as_secs_f64() * 1000.0,
        cfg.sample_rate,
        cfg.report_capacity,
    )
}

/// Timings of one request, shared between the layer and the handler (and the DB capture).
///
/// Extract it in a handler (`profile: RequestProfile`) and call [`RequestProfile::record`];
/// query capture calls [`RequestProfile::record_query`]. Outside the layer it is detached.
#[derive(Clone, Debug, Default)]
pub struct RequestProfile {
    inner: Arc<Mutex<ProfileData>>,
}

#[derive(Debug, Default)]
struct ProfileData {
    entries: Vec<(String, Duration, Option<String>)>,
    queries: u32,
    db: Duration,
    spans: Vec<spans::SpanNode>,
    spans_dropped: u32,
    /// 0 for a profile outside the layer: spans are then not kept.
    max_spans: usize,
    server_timing_spans: usize,
    /// Each query as a node, kept only when a trace exporter asked (`spans::TraceHook`).
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    trace: spans::TraceHook,
}

impl RequestProfile {
    /// Add a `Server-Timing` entry `name;dur=…;desc="…"`. `name` is reduced to token chars.
    pub fn record(&self, name: &str, duration: Duration, description: Option<&str>) {
        let name = timing_name(name);
        if name.is_empty() {
            return;
        }
        let desc = description.map(|d| {
            d.chars()
                .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
                .take(128)
                .collect()
        });
        self.lock().entries.push((name, duration, desc));
    }

    /// Count one database query that took `duration` (feeds `db;dur=…;desc="N queries"`).
    pub fn record_query(&self, duration: Duration) {
        let mut d = self.lock();
        d.queries = d.queries.saturating_add(1);
        d.db += duration;
    }

    /// Queries recorded so far and their total time.
    pub fn queries(&self) -> (u32, Duration) {
        let d = self.lock();
        (d.queries, d.db)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProfileData> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn for_request(config: &ProfilingConfig) -> Self {
        Self {
            inner: Arc::new(Mutex::new(ProfileData {
                max_spans: config.max_spans,
                server_timing_spans: config.server_timing_spans,
                ..ProfileData::default()
            })),
        }
    }

    /// Open a span node; `None` past the per-request bound.
    pub(crate) fn open_span(&self, name: &'static str, parent: Option<usize>) -> Option<usize> {
        let mut d = self.lock();
        if d.spans.len() >= d.max_spans {
            if d.max_spans > 0 {
                d.spans_dropped = d.spans_dropped.saturating_add(1);
            }
            return None;
        }
        d.spans.push(spans::SpanNode {
            name,
            parent,
            start: Instant::now(),
            duration: None,
        });
        Some(d.spans.len() - 1)
    }

    pub(crate) fn close_span(&self, index: usize, now: Instant) {
        if let Some(n) = self.lock().spans.get_mut(index) {
            n.duration = Some(now.saturating_duration_since(n.start));
        }
    }

    /// Used by `Timer` (feature `metrics`).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn innermost_open_span(&self) -> Option<usize> {
        self.lock().spans.iter().rposition(|n| n.duration.is_none())
    }

    fn take_spans(&self) -> (Vec<spans::SpanNode>, u32) {
        let mut d = self.lock();
        (std::mem::take(&mut d.spans), d.spans_dropped)
    }

    fn server_timing(&self, app: Duration) -> String {
        let d = self.lock();
        let mut out = String::with_capacity(64);
        out.push_str("app;dur=");
        push_millis(&mut out, app);
        if d.queries > 0 {
            out.push_str(", db;dur=");
            push_millis(&mut out, d.db);
            out.push_str(";desc=\"");
            push_u64(&mut out, u64::from(d.queries));
            out.push_str(if d.queries == 1 {
                " query\""
            } else {
                " queries\""
            });
        }
        for (name, dur, desc) in &d.entries {
            let _ = write!(out, ", {name};dur=");
            push_millis(&mut out, *dur);
            if let Some(desc) = desc {
                let _ = write!(out, ";desc=\"{desc}\"");
            }
        }
        if !d.spans.is_empty() && d.server_timing_spans > 0 {
            // Top-level spans, same names summed, in first-seen order, at most N names.
            let mut top: Vec<(&'static str, Duration, u32)> = Vec::new();
            for n in d.spans.iter().filter(|n| n.parent.is_none()) {
                let Some(dur) = n.duration else { continue };
                if let Some(t) = top.iter_mut().find(|(name, _, _)| *name == n.name) {
                    t.1 += dur;
                    t.2 += 1;
                } else if top.len() < d.server_timing_spans {
                    top.push((n.name, dur, 1));
                }
            }
            for (name, dur, calls) in top {
                let name = timing_name(name);
                if name.is_empty() {
                    continue;
                }
                let _ = write!(out, ", {name};dur=");
                push_millis(&mut out, dur);
                if calls > 1 {
                    let _ = write!(out, ";desc=\"{calls} calls\"");
                }
            }
        }
        out
    }
}

/// Appends `d` in milliseconds with three decimals (`12.345`), by integer
/// arithmetic: float formatting costs more than the rest of the header.
fn push_millis(out: &mut String, d: Duration) {
    // u64 microseconds last 584 000 years; u128 formatting is slower.
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    push_u64(out, micros / 1000);
    let frac = micros % 1000;
    out.push('.');
    for digit in [frac / 100, frac / 10 % 10, frac % 10] {
        out.push(char::from(b'0' + digit as u8));
    }
}

/// Decimal digits of `n`, without `core::fmt` (several times its cost per header).
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(buf[i..].iter().map(|&b| char::from(b)));
}

impl<S: Send + Sync> FromRequestParts<S> for RequestProfile {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestProfile>()
            .cloned()
            .unwrap_or_default())
    }
}

/// Tower layer made by [`Profiler::layer`].
#[derive(Clone, Debug)]
pub struct ProfilingLayer {
    profiler: Profiler,
    excludes: PathExcludes,
}

impl ProfilingLayer {
    /// Paths passed through unprofiled (default: [`PathExcludes::DEFAULT`], the probes
    /// and the metrics endpoints).
    pub fn exclude_paths(mut self, excludes: PathExcludes) -> Self {
        self.excludes = excludes;
        self
    }
}

impl<S> Layer<S> for ProfilingLayer {
    type Service = ProfilingService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ProfilingService {
            inner,
            profiler: self.profiler.clone(),
            excludes: self.excludes.clone(),
        }
    }
}

/// Service produced by [`ProfilingLayer`].
#[derive(Clone, Debug)]
pub struct ProfilingService<S> {
    inner: S,
    profiler: Profiler,
    excludes: PathExcludes,
}

impl<S, B> Service<Request<B>> for ProfilingService<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ProfilingFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if self.excludes.matches(req.uri().path()) {
            return ProfilingFuture {
                inner: self.inner.call(req),
                state: None,
            };
        }
        let sampled = self.profiler.sampled();
        let profile = if sampled {
            RequestProfile::for_request(&self.profiler.inner.config)
        } else {
            RequestProfile::default()
        };
        req.extensions_mut().insert(profile.clone());
        let mut state = InFlight {
            profiler: self.profiler.clone(),
            profile: Some(profile),
            route: req.extensions().get::<MatchedPath>().cloned(),
            method: method_label(req.method()),
            start: Instant::now(),
            sampled,
        };
        // axum builds the handler's future in `call`: spans opened there count too.
        let inner = if sampled {
            spans::with_current(&mut state.profile, || self.inner.call(req))
        } else {
            self.inner.call(req)
        };
        ProfilingFuture {
            inner,
            state: Some(state),
        }
    }
}

struct InFlight {
    profiler: Profiler,
    /// Always `Some` between polls; moved into the thread-local while a sampled request
    /// is polled.
    profile: Option<RequestProfile>,
    route: Option<MatchedPath>,
    method: &'static str,
    start: Instant,
    sampled: bool,
}

pin_project! {
    /// Response future of [`ProfilingService`].
    pub struct ProfilingFuture<F> {
        #[pin]
        inner: F,
        state: Option<InFlight>,
    }
}

impl<F, E> Future for ProfilingFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner = this.inner;
        let poll = match this.state {
            Some(s) if s.sampled => spans::with_current(&mut s.profile, || inner.poll(cx)),
            _ => inner.poll(cx),
        };
        let mut result = std::task::ready!(poll);
        if let Some(s) = this.state.take() {
            let elapsed = s.start.elapsed();
            let profile = s.profile.unwrap_or_default();
            let status = match &mut result {
                Ok(res) => {
                    if s.sampled && s.profiler.inner.config.server_timing {
                        // From the String itself: no copy of the value.
                        if let Ok(v) = HeaderValue::try_from(profile.server_timing(elapsed)) {
                            res.headers_mut().append(SERVER_TIMING, v);
                        }
                    }
                    res.status().as_u16()
                }
                Err(_) => 500,
            };
            let (queries, db) = profile.queries();
            let (spans, spans_dropped) = if s.sampled {
                profile.take_spans()
            } else {
                (Vec::new(), 0)
            };
            let finished_at_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            s.profiler.finish(
                Recorded {
                    method: s.method,
                    route: s.route,
                    status,
                    duration_ms: elapsed.as_secs_f64() * 1000.0,
                    queries,
                    db_ms: db.as_secs_f64() * 1000.0,
                    finished_at_ms,
                    started: s.start,
                    spans,
                    spans_dropped,
                },
                elapsed,
                s.sampled,
            );
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_in_milliseconds_with_three_decimals() {
        let ms = |d: Duration| {
            let mut out = String::new();
            push_millis(&mut out, d);
            out
        };
        assert_eq!(ms(Duration::ZERO), "0.000");
        assert_eq!(ms(Duration::from_nanos(1_234_567)), "1.234");
        assert_eq!(ms(Duration::from_micros(5)), "0.005");
        assert_eq!(ms(Duration::from_secs(12)), "12000.000");
        assert_eq!(ms(Duration::from_micros(u64::MAX)), "18446744073709551.615");
    }

    #[test]
    fn server_timing_lists_app_db_and_custom_entries() {
        let p = RequestProfile::default();
        p.record_query(Duration::from_millis(2));
        p.record_query(Duration::from_millis(3));
        p.record("render tpl", Duration::from_millis(1), Some("say \"hi\""));
        let v = p.server_timing(Duration::from_millis(10));
        assert_eq!(
            v,
            "app;dur=10.000, db;dur=5.000;desc=\"2 queries\", rendertpl;dur=1.000;desc=\"say hi\""
        );
    }

    #[test]
    fn server_timing_adds_top_level_spans_summed_by_name_within_the_bound() {
        let p = RequestProfile::for_request(&ProfilingConfig {
            server_timing_spans: 2,
            ..Default::default()
        });
        let t0 = Instant::now();
        let close = |i: Option<usize>, ms: u64| {
            if let Some(i) = i {
                let start = p.lock().spans[i].start;
                p.close_span(i, start + Duration::from_millis(ms));
            }
        };
        let a = p.open_span("load", None);
        close(p.open_span("query", a), 1);
        close(a, 2);
        close(p.open_span("load", None), 3);
        close(p.open_span("render", None), 4);
        close(p.open_span("third", None), 5);
        let v = p.server_timing(Duration::from_millis(20));
        assert_eq!(
            v,
            "app;dur=20.000, load;dur=5.000;desc=\"2 calls\", render;dur=4.000"
        );
        let (nodes, dropped) = p.take_spans();
        assert_eq!(dropped, 0);
        let tree: Vec<(&str, usize)> = span_tree(&nodes, t0, 20.0)
            .iter()
            .map(|s| (s.name, s.depth))
            .collect();
        assert_eq!(
            tree,
            [
                ("load", 0),
                ("query", 1),
                ("load", 0),
                ("render", 0),
                ("third", 0)
            ]
        );
    }

    #[test]
    fn a_detached_profile_keeps_no_spans() {
        let p = RequestProfile::default();
        assert_eq!(p.open_span("x", None), None);
        assert_eq!(p.take_spans().1, 0);
    }

    #[test]
    fn sampling_takes_the_configured_fraction() {
        let p = Profiler::new(ProfilingConfig {
            sample_rate: 0.25,
            ..Default::default()
        });
        let taken = (0..1000).filter(|_| p.sampled()).count();
        assert_eq!(taken, 250);
        let none = Profiler::new(ProfilingConfig {
            sample_rate: 0.0,
            ..Default::default()
        });
        assert_eq!((0..100).filter(|_| none.sampled()).count(), 0);
    }

    #[test]
    fn query_params_are_found() {
        assert_eq!(
            query_param(Some("seconds=3&format=svg"), "format"),
            Some("svg")
        );
        assert_eq!(query_param(Some("x"), "x"), Some(""));
        assert_eq!(query_param(None, "x"), None);
    }
}
