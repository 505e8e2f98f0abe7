//! Memory: jemalloc statistics as metrics, allocated bytes per route, a leak detector over
//! windows of requests, and the operator's view of it all (`/debug/memory`, and the heap
//! profile at `/debug/pprof/heap` as pprof or flamegraph SVG).
//!
//! The app chooses the allocator (`#[global_allocator] static A: Jemalloc = Jemalloc;`);
//! without it the statistics read zero and the detector never reports. The heap profile
//! also needs jemalloc's sampling profiler, switched on at process start with
//! `_RJEM_MALLOC_CONF=prof:true,prof_active:true,lg_prof_sample:19`.
//!
//! Files: `detector` holds the pure leak decision; this file the allocator reads, the
//! layer and the endpoints.

mod detector;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, Request};
use metrics::Counter;
use pin_project_lite::pin_project;
use serde::Serialize;
use tower::{Layer, Service};

pub use detector::{LeakConfig, LeakDetector, LeakReport, Sample};
/// jemalloc, to install as the global allocator.
pub use tikv_jemallocator::Jemalloc;

use crate::admin::{authorize_debug, BearerToken};
use crate::metrics::Metrics;
use crate::route::UNMATCHED;
use crate::Error;

/// Names of the metrics this module exports.
pub mod names {
    /// Gauge: bytes allocated by the application (jemalloc `stats.allocated`).
    pub const ALLOCATED_BYTES: &str = "cachefront_origin_memory_allocated_bytes";
    /// Gauge: bytes in active pages (`stats.active`).
    pub const ACTIVE_BYTES: &str = "cachefront_origin_memory_active_bytes";
    /// Gauge: bytes in physically resident pages the allocator maps (`stats.resident`).
    pub const RESIDENT_BYTES: &str = "cachefront_origin_memory_resident_bytes";
    /// Gauge: bytes in extents mapped by the allocator (`stats.mapped`).
    pub const MAPPED_BYTES: &str = "cachefront_origin_memory_mapped_bytes";
    /// Gauge: bytes retained for reuse, not returned to the OS (`stats.retained`).
    pub const RETAINED_BYTES: &str = "cachefront_origin_memory_retained_bytes";
    /// Gauge: bytes of allocator metadata (`stats.metadata`).
    pub const METADATA_BYTES: &str = "cachefront_origin_memory_metadata_bytes";
    /// Counter `{route}`: bytes allocated while handling requests of the route.
    pub const HTTP_ALLOCATED_BYTES_TOTAL: &str = "cachefront_origin_http_allocated_bytes_total";
    /// Gauge: 1 while the leak detector's last verdict is a suspected leak.
    pub const LEAK_SUSPECTED: &str = "cachefront_origin_memory_leak_suspected";
    /// Counter: leak reports (one per run of growing windows).
    pub const LEAK_REPORTS_TOTAL: &str = "cachefront_origin_memory_leak_reports_total";
    /// Gauge: growth of allocated bytes per request over the last window (may be negative).
    pub const GROWTH_BYTES_PER_REQUEST: &str = "cachefront_origin_memory_growth_bytes_per_request";
}

/// Options for [`MemoryMonitor`].
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// Leak detector thresholds.
    pub leak: LeakConfig,
    /// Count bytes allocated per route (two thread-local reads per poll). Default: false.
    pub per_route: bool,
    /// Bearer token for `/debug/memory` and `/debug/pprof/heap`; `None` (default)
    /// disables them (404).
    pub debug_token: Option<BearerToken>,
    /// Leak reports kept for `/debug/memory`. Default: 20.
    pub report_capacity: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            leak: LeakConfig::default(),
            per_route: false,
            debug_token: None,
            report_capacity: 20,
        }
    }
}

/// jemalloc's global statistics, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AllocatorStats {
    /// Bytes allocated by the application.
    pub allocated: u64,
    /// Bytes in active pages.
    pub active: u64,
    /// Bytes in resident pages.
    pub resident: u64,
    /// Bytes mapped.
    pub mapped: u64,
    /// Bytes retained.
    pub retained: u64,
    /// Allocator metadata.
    pub metadata: u64,
}

impl AllocatorStats {
    /// Fresh statistics (advances jemalloc's stats epoch: a few microseconds).
    pub fn read() -> Result<Self, Error> {
        use tikv_jemalloc_ctl::{epoch, stats};
        let e = |e: tikv_jemalloc_ctl::Error| Error::Internal(format!("jemalloc stats: {e}"));
        epoch::advance().map_err(e)?;
        Ok(Self {
            allocated: stats::allocated::read().map_err(e)? as u64,
            active: stats::active::read().map_err(e)? as u64,
            resident: stats::resident::read().map_err(e)? as u64,
            mapped: stats::mapped::read().map_err(e)? as u64,
            retained: stats::retained::read().map_err(e)? as u64,
            metadata: stats::metadata::read().map_err(e)? as u64,
        })
    }
}

thread_local! {
    // The pointer to this thread's allocated-bytes counter, looked up once per thread:
    // reading it is then a plain load.
    static THREAD_ALLOCATED: Option<tikv_jemalloc_ctl::thread::ThreadLocal<u64>> =
        tikv_jemalloc_ctl::thread::allocatedp::read().ok();
}

fn thread_allocated() -> u64 {
    THREAD_ALLOCATED.with(|p| p.map_or(0, |p| p.get()))
}

/// The leak detector's state as `/debug/memory` shows it.
#[derive(Debug, Clone, Serialize)]
struct LeakState {
    suspected: bool,
    growing_windows: usize,
    last_sample: Option<Sample>,
    reports: VecDeque<LeakReport>,
}

/// Shared memory state: allocator reads, per-route counters, the leak detector. Cheap to
/// clone.
#[derive(Clone)]
pub struct MemoryMonitor {
    inner: Arc<MonitorInner>,
}

struct MonitorInner {
    config: MemoryConfig,
    metrics: Metrics,
    requests: AtomicU64,
    detector: Mutex<(LeakDetector, LeakState)>,
    routes: RwLock<HashMap<String, (Counter, Arc<AtomicU64>)>>,
    reports_total: Counter,
}

impl std::fmt::Debug for MemoryMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryMonitor")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl MemoryMonitor {
    /// A monitor exporting into `metrics`: allocator gauges refreshed at every scrape.
    pub fn new(config: MemoryConfig, metrics: &Metrics) -> Self {
        metrics.describe_gauge(
            names::ALLOCATED_BYTES,
            "Bytes allocated by the application (jemalloc stats.allocated).",
        );
        metrics.describe_gauge(names::ACTIVE_BYTES, "Bytes in active pages (jemalloc).");
        metrics.describe_gauge(
            names::RESIDENT_BYTES,
            "Bytes in resident pages mapped by jemalloc.",
        );
        metrics.describe_gauge(names::MAPPED_BYTES, "Bytes mapped by jemalloc.");
        metrics.describe_gauge(
            names::RETAINED_BYTES,
            "Bytes jemalloc retains instead of returning them to the OS.",
        );
        metrics.describe_gauge(names::METADATA_BYTES, "Bytes of jemalloc metadata.");
        metrics.describe_counter(
            names::HTTP_ALLOCATED_BYTES_TOTAL,
            "Bytes allocated while handling requests, per route.",
        );
        metrics.describe_gauge(
            names::LEAK_SUSPECTED,
            "1 while the leak detector suspects a leak (allocated bytes growing with requests).",
        );
        metrics.describe_counter(
            names::LEAK_REPORTS_TOTAL,
            "Leak reports: runs of windows in which allocated bytes grew with requests.",
        );
        metrics.describe_gauge(
            names::GROWTH_BYTES_PER_REQUEST,
            "Growth of allocated bytes per request over the leak detector's last window.",
        );
        metrics.gauge(names::LEAK_SUSPECTED, &[]).set(0.0);
        metrics.on_scrape(|m| {
            if let Ok(s) = AllocatorStats::read() {
                for (name, v) in [
                    (names::ALLOCATED_BYTES, s.allocated),
                    (names::ACTIVE_BYTES, s.active),
                    (names::RESIDENT_BYTES, s.resident),
                    (names::MAPPED_BYTES, s.mapped),
                    (names::RETAINED_BYTES, s.retained),
                    (names::METADATA_BYTES, s.metadata),
                ] {
                    m.gauge(name, &[]).set(v as f64);
                }
            }
        });
        let detector = LeakDetector::new(config.leak.clone());
        Self {
            inner: Arc::new(MonitorInner {
                reports_total: metrics.counter(names::LEAK_REPORTS_TOTAL, &[]),
                metrics: metrics.clone(),
                requests: AtomicU64::new(0),
                detector: Mutex::new((
                    detector,
                    LeakState {
                        suspected: false,
                        growing_windows: 0,
                        last_sample: None,
                        reports: VecDeque::new(),
                    },
                )),
                routes: RwLock::new(HashMap::new()),
                config,
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &MemoryConfig {
        &self.inner.config
    }

    /// The layer that counts requests for the leak windows and, with
    /// [`MemoryConfig::per_route`], the bytes each route allocates.
    pub fn layer(&self) -> MemoryLayer {
        MemoryLayer {
            monitor: self.clone(),
        }
    }

    /// Requests finished through the layer.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Leak reports so far (the last [`MemoryConfig::report_capacity`]).
    pub fn leak_reports(&self) -> Vec<LeakReport> {
        self.lock().1.reports.iter().cloned().collect()
    }

    /// Whether the detector's last verdict is a suspected leak.
    pub fn leak_suspected(&self) -> bool {
        self.lock().1.suspected
    }

    /// Bytes allocated per route so far (empty unless [`MemoryConfig::per_route`]).
    pub fn allocated_by_route(&self) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self
            .inner
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, (_, n))| (k.clone(), n.load(Ordering::Relaxed)))
            .collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.1));
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (LeakDetector, LeakState)> {
        self.inner
            .detector
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self, route: Option<&MatchedPath>, allocated: Option<u64>) {
        if let Some(bytes) = allocated {
            self.count_route(route.map_or(UNMATCHED, MatchedPath::as_str), bytes);
        }
        let n = self.inner.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if n % self.inner.config.leak.window_requests.max(1) == 0 {
            if let Ok(stats) = AllocatorStats::read() {
                self.observe(Sample {
                    requests: n,
                    allocated_bytes: stats.allocated,
                });
            }
        }
    }

    fn count_route(&self, route: &str, bytes: u64) {
        if let Some((c, n)) = self
            .inner
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
        {
            c.increment(bytes);
            n.fetch_add(bytes, Ordering::Relaxed);
            return;
        }
        let mut routes = self
            .inner
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let (c, n) = routes.entry(route.to_owned()).or_insert_with(|| {
            (
                self.inner
                    .metrics
                    .counter(names::HTTP_ALLOCATED_BYTES_TOTAL, &[("route", route)]),
                Arc::new(AtomicU64::new(0)),
            )
        });
        c.increment(bytes);
        n.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Feed one window's sample to the detector and publish its verdict.
    fn observe(&self, sample: Sample) {
        let mut guard = self.lock();
        let (detector, state) = &mut *guard;
        if let Some(last) = state.last_sample {
            let requests = sample.requests.saturating_sub(last.requests).max(1);
            let growth = sample.allocated_bytes as f64 - last.allocated_bytes as f64;
            self.inner
                .metrics
                .gauge(names::GROWTH_BYTES_PER_REQUEST, &[])
                .set(growth / requests as f64);
            if sample.allocated_bytes <= last.allocated_bytes {
                state.suspected = false;
            }
        }
        state.last_sample = Some(sample);
        if let Some(report) = detector.observe(sample) {
            tracing::warn!(
                target: "cachefront_origin::memory",
                growth_bytes = report.growth_bytes,
                requests = report.requests,
                bytes_per_request = report.bytes_per_request.round() as u64,
                windows = report.windows,
                allocated_bytes = report.to.allocated_bytes,
                "suspected memory leak: allocated bytes grew in every window; \
                 see /debug/memory and /debug/pprof/heap"
            );
            self.inner.reports_total.increment(1);
            state.suspected = true;
            if state.reports.len() >= self.inner.config.report_capacity.max(1) {
                state.reports.pop_front();
            }
            state.reports.push_back(report);
        }
        state.growing_windows = detector.growing_windows();
        self.inner
            .metrics
            .gauge(names::LEAK_SUSPECTED, &[])
            .set(if state.suspected { 1.0 } else { 0.0 });
    }

    /// `GET /debug/memory` (JSON) and `GET /debug/pprof/heap?format=svg|pprof`, both
    /// behind [`MemoryConfig::debug_token`] (404 without one).
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let report = self.clone();
        let heap = self.clone();
        Router::new()
            .route(
                "/debug/memory",
                get(move |req: axum::extract::Request| {
                    let m = report.clone();
                    async move {
                        match m.authorize(&req) {
                            Ok(()) => no_store(axum::Json(m.report_json()).into_response()),
                            Err(e) => e.into_response(),
                        }
                    }
                }),
            )
            .route(
                "/debug/pprof/heap",
                get(move |req: axum::extract::Request| {
                    let m = heap.clone();
                    async move {
                        if let Err(e) = m.authorize(&req) {
                            return e.into_response();
                        }
                        match heap_profile(req.uri().query()).await {
                            Ok(res) => no_store(res),
                            Err(e) => e.into_response(),
                        }
                    }
                }),
            )
    }

    fn authorize<B>(&self, req: &Request<B>) -> Result<(), Error> {
        authorize_debug(
            self.inner.config.debug_token.as_ref(),
            req.headers(),
            req.extensions(),
        )
    }

    /// What `/debug/memory` answers.
    pub fn report_json(&self) -> serde_json::Value {
        let stats = AllocatorStats::read().ok();
        let state = self.lock().1.clone();
        let leak = &self.inner.config.leak;
        serde_json::json!({
            "allocator": {
                "jemalloc": stats.is_some_and(|s| s.allocated > 0),
                "stats": stats,
                "heap_profiling": heap_profiling_available(),
            },
            "requests": self.requests(),
            "leak": {
                "suspected": state.suspected,
                "growing_windows": state.growing_windows,
                "last_sample": state.last_sample,
                "reports": state.reports,
                "config": {
                    "warmup_requests": leak.warmup_requests,
                    "window_requests": leak.window_requests,
                    "windows": leak.windows,
                    "min_bytes_per_request": leak.min_bytes_per_request,
                    "min_growth_bytes": leak.min_growth_bytes,
                },
            },
            "allocated_by_route": self.allocated_by_route()
                .into_iter()
                .map(|(route, bytes)| serde_json::json!({"route": route, "bytes": bytes}))
                .collect::<Vec<_>>(),
        })
    }
}

fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// Whether jemalloc was started with its sampling profiler (`prof:true`).
pub fn heap_profiling_available() -> bool {
    jemalloc_pprof::PROF_CTL.is_some()
}

fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Dump jemalloc's sampled heap profile: live allocations by call stack.
async fn heap_profile(query: Option<&str>) -> Result<Response, Error> {
    let svg = match query_value(query, "format") {
        None | Some("svg") => true,
        Some("pprof") | Some("proto") => false,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "unknown format {other:?}; use svg or pprof"
            )))
        }
    };
    let ctl = jemalloc_pprof::PROF_CTL.as_ref().ok_or_else(|| {
        Error::NotFound(
            "heap profiling is off: install cachefront_origin::memory::Jemalloc as the global \
             allocator and start the process with \
             _RJEM_MALLOC_CONF=prof:true,prof_active:true,lg_prof_sample:19"
                .to_owned(),
        )
    })?;
    let ctl = Arc::clone(ctl);
    // Dumping writes a file and symbolizes every stack: keep it off the async workers.
    let body = tokio::task::spawn_blocking(move || {
        let mut ctl = ctl.blocking_lock();
        if !ctl.activated() {
            return Err(Error::Conflict(
                "heap profiling is not active (prof_active:false)".to_owned(),
            ));
        }
        let out = if svg {
            ctl.dump_flamegraph()
        } else {
            ctl.dump_pprof()
        };
        out.map_err(|e| Error::Internal(format!("heap profile: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(format!("heap profile task: {e}")))??;
    let content_type = if svg {
        "image/svg+xml"
    } else {
        // gzip-compressed pprof protobuf, as `go tool pprof` reads it.
        "application/octet-stream"
    };
    let mut res = body.into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(res)
}

/// Tower layer made by [`MemoryMonitor::layer`].
#[derive(Clone, Debug)]
pub struct MemoryLayer {
    monitor: MemoryMonitor,
}

impl<S> Layer<S> for MemoryLayer {
    type Service = MemoryService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MemoryService {
            inner,
            monitor: self.monitor.clone(),
        }
    }
}

/// Service produced by [`MemoryLayer`].
#[derive(Clone, Debug)]
pub struct MemoryService<S> {
    inner: S,
    monitor: MemoryMonitor,
}

impl<S, B> Service<Request<B>> for MemoryService<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = MemoryFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let per_route = self.monitor.inner.config.per_route;
        let route = req.extensions().get::<MatchedPath>().cloned();
        // The handler may allocate in `call` already (axum builds the handler future there).
        let before = per_route.then(thread_allocated);
        let inner = self.inner.call(req);
        let allocated = before.map(|b| thread_allocated().wrapping_sub(b));
        MemoryFuture {
            inner,
            state: Some((self.monitor.clone(), route)),
            allocated,
        }
    }
}

pin_project! {
    /// Response future of [`MemoryService`].
    pub struct MemoryFuture<F> {
        #[pin]
        inner: F,
        state: Option<(MemoryMonitor, Option<MatchedPath>)>,
        allocated: Option<u64>,
    }
}

impl<F, E> Future for MemoryFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Per poll, on whichever thread polls: a task may move between workers.
        let poll = match this.allocated {
            Some(total) => {
                let before = thread_allocated();
                let poll = this.inner.poll(cx);
                *total = total.wrapping_add(thread_allocated().wrapping_sub(before));
                poll
            }
            None => this.inner.poll(cx),
        };
        let result = std::task::ready!(poll);
        if let Some((monitor, route)) = this.state.take() {
            monitor.finish(route.as_ref(), *this.allocated);
        }
        Poll::Ready(result)
    }
}
