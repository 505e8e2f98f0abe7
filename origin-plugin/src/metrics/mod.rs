//! Prometheus metrics: the [`Metrics`] registry, the per-route RED [`MetricsLayer`], process
//! and pool gauges collected at scrape time, and the `/metrics` + `/metrics.json` router.
//!
//! Every label value comes from a bounded set (route template or `unmatched`, known method
//! or `OTHER`, status class), so label cardinality never depends on what clients send.
//! The registry is an instance, not the global `metrics` recorder, so several apps (or
//! tests) in one process keep separate counts. Metric names are listed in [`names`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::MatchedPath;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, Request};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::route::{method_index, status_class_index, METHODS, STATUS_CLASSES, UNMATCHED};

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

const METADATA: Metadata<'static> = Metadata::new("cachefront_origin", Level::INFO, None);

type ScrapeHook = Box<dyn Fn(&Metrics) + Send + Sync>;

/// Options for [`Metrics`].
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Histogram buckets (seconds) for request durations. Default: Prometheus' defaults.
    pub buckets: Vec<f64>,
    /// Export `process_*` metrics (CPU, memory, fds, threads). Default: true.
    pub process_metrics: bool,
    /// How often histograms are folded even when nobody scrapes. Default: 5 s.
    pub upkeep_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            buckets: DEFAULT_BUCKETS.to_vec(),
            process_metrics: true,
            upkeep_interval: Duration::from_secs(5),
        }
    }
}

/// A Prometheus registry with the crate's metrics described. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<MetricsInner>,
}

struct MetricsInner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    process: Option<metrics_process::Collector>,
    hooks: Mutex<Vec<ScrapeHook>>,
    routes: RwLock<HashMap<String, Arc<RouteHandles>>>,
    upkeep_started: AtomicBool,
    upkeep_interval: Duration,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with default options.
    pub fn new() -> Self {
        Self::with_config(MetricsConfig::default())
    }

    /// A registry with the given options. Invalid buckets fall back to the defaults.
    pub fn with_config(config: MetricsConfig) -> Self {
        let buckets = if config.buckets.is_empty() {
            DEFAULT_BUCKETS.to_vec()
        } else {
            config.buckets.clone()
        };
        let builder = PrometheusBuilder::new();
        let builder = match builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &buckets)
        {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let process = config
            .process_metrics
            .then(metrics_process::Collector::default);
        let metrics = Self {
            inner: Arc::new(MetricsInner {
                recorder,
                handle,
                process,
                hooks: Mutex::new(Vec::new()),
                routes: RwLock::new(HashMap::new()),
                upkeep_started: AtomicBool::new(false),
                upkeep_interval: config.upkeep_interval,
            }),
        };
        metrics.describe_all();
        metrics
    }

    fn describe_all(&self) {
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

    /// A counter in this registry. `labels` must come from a bounded set.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        self.inner
            .recorder
            .register_counter(&key(name, labels), &METADATA)
    }

    /// A gauge in this registry. `labels` must come from a bounded set.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        self.inner
            .recorder
            .register_gauge(&key(name, labels), &METADATA)
    }

    /// A histogram in this registry. Names ending in `_seconds` get the configured buckets.
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        self.inner
            .recorder
            .register_histogram(&key(name, labels), &METADATA)
    }

    /// Describe one of your own metrics so `/metrics` carries its `# HELP`.
    pub fn describe_counter(&self, name: &'static str, help: &'static str) {
        self.inner
            .recorder
            .describe_counter(KeyName::from_const_str(name), None, help.into());
    }

    /// Describe one of your own gauges so `/metrics` carries its `# HELP`.
    pub fn describe_gauge(&self, name: &'static str, help: &'static str) {
        self.inner
            .recorder
            .describe_gauge(KeyName::from_const_str(name), None, help.into());
    }

    /// Run `hook` at every scrape, before rendering (for gauges read from elsewhere).
    pub fn on_scrape(&self, hook: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(hook));
    }

    /// Export size / idle / max gauges of a sqlx PostgreSQL pool under `pool="name"`.
    /// (sqlx does not expose the number of waiters, so there is no waiting gauge.)
    #[cfg(feature = "postgres")]
    pub fn observe_pg_pool(&self, name: &str, pool: sqlx::PgPool) {
        let name = name.to_owned();
        self.on_scrape(move |m| {
            let labels = [("pool", name.as_str())];
            m.gauge(names::DB_POOL_CONNECTIONS, &labels)
                .set(f64::from(pool.size()));
            m.gauge(names::DB_POOL_IDLE_CONNECTIONS, &labels)
                .set(pool.num_idle() as f64);
            m.gauge(names::DB_POOL_MAX_CONNECTIONS, &labels)
                .set(f64::from(pool.options().get_max_connections()));
        });
    }

    /// The Prometheus text exposition (format 0.0.4) of everything in the registry.
    pub fn render(&self) -> String {
        if let Some(process) = &self.inner.process {
            metrics::with_local_recorder(&self.inner.recorder, || process.collect());
        }
        {
            let hooks = self
                .inner
                .hooks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for hook in hooks.iter() {
                hook(self);
            }
        }
        self.inner.handle.render()
    }

    /// The registry as JSON: `{"metrics": [{"name", "type", "help", "samples": [{"labels", "value"}]}]}`.
    pub fn render_json(&self) -> serde_json::Value {
        exposition_to_json(&self.render())
    }

    /// The layer that records RED metrics for every request it wraps.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer {
            metrics: self.clone(),
        }
    }

    /// `GET /metrics` (Prometheus text) and `GET /metrics.json` (JSON snapshot).
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let text = self.clone();
        let json = self.clone();
        Router::new()
            .route(
                "/metrics",
                get(move || {
                    let m = text.clone();
                    async move { m.text_response() }
                }),
            )
            .route(
                "/metrics.json",
                get(move || {
                    let m = json.clone();
                    async move {
                        let mut res = axum::Json(m.render_json()).into_response();
                        res.headers_mut()
                            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                        res
                    }
                }),
            )
    }

    fn text_response(&self) -> Response {
        let mut res = self.render().into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }

    fn ensure_upkeep(&self) {
        // A plain load first: the hot path must not write a shared cache line.
        if self.inner.upkeep_started.load(Ordering::Relaxed)
            || self.inner.upkeep_started.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.inner.upkeep_started.store(false, Ordering::Relaxed);
            return;
        };
        // Hold the registry weakly so dropping every `Metrics` ends the task.
        let weak = Arc::downgrade(&self.inner);
        let every = self.inner.upkeep_interval;
        rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(inner) => inner.handle.run_upkeep(),
                    None => break,
                }
            }
        });
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect();
    Key::from_parts(name, labels)
}

/// Tower layer recording per-route request count, duration and in-flight gauge.
///
/// Add it with `Router::layer` so axum's `MatchedPath` is visible; requests no route
/// matched are labelled `route="unmatched"`.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    metrics: Metrics,
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Service produced by [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B> Service<Request<B>> for MetricsService<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.metrics.ensure_upkeep();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED, MatchedPath::as_str);
        let handles = self
            .metrics
            .route_handles(route)
            .method(&self.metrics, route, method_index(req.method()))
            .clone();
        handles.in_flight.increment(1.0);
        MetricsFuture {
            inner: self.inner.call(req),
            state: Some(Pending {
                metrics: self.metrics.clone(),
                in_flight: InFlight(handles),
                start: Instant::now(),
            }),
        }
    }
}

/// Metric handles of one route, registered once and reused by every request, so the hot
/// path neither allocates label sets nor hashes them into the registry.
#[derive(Default)]
struct RouteHandles {
    methods: [OnceLock<Arc<MethodHandles>>; METHODS.len()],
}

struct MethodHandles {
    route: String,
    method: &'static str,
    in_flight: Gauge,
    classes: [OnceLock<(Counter, Histogram)>; STATUS_CLASSES.len()],
}

impl RouteHandles {
    fn method(&self, metrics: &Metrics, route: &str, idx: usize) -> &Arc<MethodHandles> {
        self.methods[idx].get_or_init(|| {
            let method = METHODS[idx];
            Arc::new(MethodHandles {
                route: route.to_owned(),
                method,
                in_flight: metrics.gauge(
                    names::HTTP_REQUESTS_IN_FLIGHT,
                    &[("method", method), ("route", route)],
                ),
                classes: Default::default(),
            })
        })
    }
}

impl MethodHandles {
    fn class(&self, metrics: &Metrics, idx: usize) -> &(Counter, Histogram) {
        self.classes[idx].get_or_init(|| {
            let labels = [
                ("method", self.method),
                ("route", self.route.as_str()),
                ("status_class", STATUS_CLASSES[idx]),
            ];
            (
                metrics.counter(names::HTTP_REQUESTS_TOTAL, &labels),
                metrics.histogram(names::HTTP_REQUEST_DURATION_SECONDS, &labels),
            )
        })
    }
}

impl Metrics {
    /// Handles of `route` (a route template or `unmatched`: a bounded set).
    fn route_handles(&self, route: &str) -> Arc<RouteHandles> {
        if let Some(h) = self
            .inner
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(route)
        {
            return h.clone();
        }
        self.inner
            .routes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(route.to_owned())
            .or_default()
            .clone()
    }
}

struct Pending {
    metrics: Metrics,
    in_flight: InFlight,
    start: Instant,
}

/// Decrements the in-flight gauge even when the request future is dropped (client gone).
struct InFlight(Arc<MethodHandles>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.decrement(1.0);
    }
}

pin_project! {
    /// Response future of [`MetricsService`].
    pub struct MetricsFuture<F> {
        #[pin]
        inner: F,
        state: Option<Pending>,
    }
}

impl<F, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Some(p) = this.state.take() {
            let class = match &result {
                Ok(res) => status_class_index(res.status()),
                Err(_) => 4,
            };
            let (counter, histogram) = p.in_flight.0.class(&p.metrics, class);
            counter.increment(1);
            histogram.record(p.start.elapsed().as_secs_f64());
        }
        Poll::Ready(result)
    }
}

/// Turn our own Prometheus text exposition into a JSON document.
fn exposition_to_json(text: &str) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut families: Vec<(String, Map<String, Value>)> = Vec::new();
    fn family<'a>(
        families: &'a mut Vec<(String, Map<String, Value>)>,
        name: &str,
    ) -> &'a mut Map<String, Value> {
        let idx = match families.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                let mut m = Map::new();
                m.insert("name".into(), json!(name));
                m.insert("samples".into(), json!([]));
                families.push((name.to_owned(), m));
                families.len() - 1
            }
        };
        &mut families[idx].1
    }
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, help)) = rest.split_once(' ') {
                family(&mut families, name).insert("help".into(), json!(help));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, kind)) = rest.split_once(' ') {
                family(&mut families, name).insert("type".into(), json!(kind));
                current = Some(name.to_owned());
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some((series, labels, value)) = parse_sample(line) else {
            continue;
        };
        // Histogram/summary series (`_bucket`, `_sum`, `_count`) belong to the current family.
        let owner = match &current {
            Some(c) if series.starts_with(c.as_str()) => c.clone(),
            _ => series.clone(),
        };
        let fam = family(&mut families, &owner);
        let mut sample = Map::new();
        if series != owner {
            sample.insert("series".into(), json!(series));
        }
        sample.insert("labels".into(), Value::Object(labels));
        sample.insert(
            "value".into(),
            serde_json::Number::from_f64(value)
                .map(Value::Number)
                .unwrap_or_else(|| json!(value.to_string())),
        );
        if let Some(Value::Array(samples)) = fam.get_mut("samples") {
            samples.push(Value::Object(sample));
        }
    }
    json!({ "metrics": families.into_iter().map(|(_, m)| Value::Object(m)).collect::<Vec<_>>() })
}

/// Parse `name{a="x",b="y"} 1.5` into its parts.
fn parse_sample(line: &str) -> Option<(String, serde_json::Map<String, serde_json::Value>, f64)> {
    let mut labels = serde_json::Map::new();
    let (name, rest) = match line.find('{') {
        Some(open) => {
            let name = &line[..open];
            let mut chars = line[open + 1..].char_indices().peekable();
            let base = open + 1;
            let mut end = None;
            loop {
                // label name
                let mut key = String::new();
                loop {
                    match chars.next() {
                        Some((i, '}')) => {
                            end = Some(base + i + 1);
                            break;
                        }
                        Some((_, '=')) => break,
                        Some((_, ',')) | Some((_, ' ')) => continue,
                        Some((_, c)) => key.push(c),
                        None => return None,
                    }
                }
                if end.is_some() {
                    break;
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return None;
                }
                let mut value = String::new();
                loop {
                    match chars.next()? {
                        (_, '\\') => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        },
                        (_, '"') => break,
                        (_, c) => value.push(c),
                    }
                }
                labels.insert(key, serde_json::Value::String(value));
            }
            (name, &line[end?..])
        }
        None => line.split_once(' ')?,
    };
    let value_str = rest.split_whitespace().next()?;
    let value = match value_str {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name.to_owned(), labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_with_escaped_labels_parses() {
        let (name, labels, value) =
            parse_sample(r#"x_total{route="/a\"b",method="GET"} 3"#).expect("parses");
        assert_eq!(name, "x_total");
        assert_eq!(labels["route"], "/a\"b");
        assert_eq!(labels["method"], "GET");
        assert_eq!(value, 3.0);
    }

    #[test]
    fn sample_without_labels_parses() {
        let (name, labels, value) = parse_sample("up 1").expect("parses");
        assert_eq!((name.as_str(), labels.len(), value), ("up", 0, 1.0));
    }

    #[test]
    fn bucket_lines_belong_to_their_histogram() {
        let text = "# HELP d_seconds help\n# TYPE d_seconds histogram\nd_seconds_bucket{le=\"+Inf\"} 2\nd_seconds_sum 0.5\nd_seconds_count 2\n";
        let json = exposition_to_json(text);
        let fam = &json["metrics"][0];
        assert_eq!(fam["name"], "d_seconds");
        assert_eq!(fam["type"], "histogram");
        assert_eq!(fam["samples"].as_array().map(Vec::len), Some(3));
    }
}
