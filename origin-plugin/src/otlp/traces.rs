//! OTLP traces: each sampled request exported as one trace built from what the profiler
//! already collected: a server span for the request (method, route, status), a child per
//! span of its tree ([`SpanProfileLayer`](crate::profiling::SpanProfileLayer), `Timer`)
//! and a client span per database query (fingerprint, not the literal values).
//!
//! The layer does little on the request path: read `traceparent` (W3C trace context; a
//! malformed one is ignored), ask the sampler the SDK configures from
//! `OTEL_TRACES_SAMPLER`/`_ARG`, and at the response copy the profile into a bounded
//! queue. A full queue drops the request's trace and counts it; it never waits. One
//! thread turns queued requests into spans and sends them in batches through the OTLP
//! exporter of `opentelemetry-otlp` (`OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `_HEADERS`, `_TIMEOUT`; `OTEL_SERVICE_NAME`).
//!
//! Spans are built as `SpanData` after the fact rather than through the SDK's tracer: the
//! profile holds the timings already, and the tracer would assign fresh ids and clocks.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::MatchedPath;
use axum::response::Response;
use http::{HeaderMap, Request};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{
    SamplingDecision, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, ShouldSample, SpanData, SpanEvents, SpanExporter as _,
    SpanLinks,
};
use opentelemetry_sdk::Resource;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::ExportFailures;
use crate::profiling::spans::TraceSnapshot;
use crate::profiling::RequestProfile;
use crate::route::method_label;
use crate::stack::PathExcludes;
use crate::Error;

pub use super::names::TRACES_DROPPED_TOTAL;

/// Batching of the export thread, from the `OTEL_BSP_*` variables the SDK's batch span
/// processor reads, with the same defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExportConfig {
    /// Requests waiting for export at most (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048);
    /// past it a request's trace is dropped and counted.
    pub max_queue_size: usize,
    /// Most spans per export call (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, default 512).
    pub max_export_batch_size: usize,
    /// Longest wait before queued spans are sent (`OTEL_BSP_SCHEDULE_DELAY` ms, default 5000).
    pub scheduled_delay: Duration,
}

impl Default for TraceExportConfig {
    fn default() -> Self {
        Self {
            max_queue_size: 2048,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_millis(5000),
        }
    }
}

impl TraceExportConfig {
    /// From the process environment.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// From variables looked up by `get`; missing, unparsable or zero values keep the
    /// default.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Self {
        let num = |name: &str| {
            get(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
        };
        let d = Self::default();
        Self {
            max_queue_size: num("OTEL_BSP_MAX_QUEUE_SIZE").map_or(d.max_queue_size, |n| n as usize),
            max_export_batch_size: num("OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
                .map_or(d.max_export_batch_size, |n| n as usize),
            scheduled_delay: num("OTEL_BSP_SCHEDULE_DELAY")
                .map_or(d.scheduled_delay, Duration::from_millis),
        }
    }
}

/// The trace context of a request being exported, in its extensions: pass
/// [`TraceParent::header_value`] on as `traceparent` to continue the trace downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace (the caller's, when it sent a valid `traceparent`).
    pub trace_id: TraceId,
    /// This request's server span.
    pub span_id: SpanId,
}

impl TraceParent {
    /// `00-<trace id>-<span id>-01`.
    pub fn header_value(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// A finished request as queued for the export thread.
struct FinishedRequest {
    trace: TraceParent,
    remote_parent: Option<SpanId>,
    method: &'static str,
    route: Option<MatchedPath>,
    path: String,
    /// `None`: the service failed instead of answering.
    status: Option<u16>,
    start: SystemTime,
    started: Instant,
    ended: Instant,
    queries: u32,
    profile: TraceSnapshot,
}

enum Msg {
    Request(Box<FinishedRequest>),
    Flush(mpsc::Sender<Result<(), String>>),
    Shutdown(mpsc::Sender<Result<(), String>>),
}

/// The running trace export. Cheap to clone; [`layer`](Self::layer) goes inside the
/// profiling layer (see docs/origin-plugin.md, "OTLP export").
#[derive(Clone)]
pub struct OtlpTraces {
    inner: Arc<Inner>,
}

struct Inner {
    queue: SyncSender<Msg>,
    sampler: Box<dyn ShouldSample>,
    ids: RandomIdGenerator,
    dropped: AtomicU64,
    #[cfg(feature = "metrics")]
    dropped_counter: Option<metrics::Counter>,
}

impl std::fmt::Debug for OtlpTraces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpTraces")
            .field("sampler", &self.inner.sampler)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl OtlpTraces {
    /// Start exporting to the endpoint the `OTEL_EXPORTER_OTLP_*` variables name
    /// (default `http://localhost:4318/v1/traces`), sampling as `OTEL_TRACES_SAMPLER`
    /// says (default `parentbased_always_on`), batching as [`TraceExportConfig::from_env`].
    pub fn install() -> Result<Self, Error> {
        Self::build(TraceExportConfig::from_env(), None, None)
    }

    /// [`install`](Self::install), also counting dropped traces in `metrics`
    /// ([`TRACES_DROPPED_TOTAL`]) and failed export calls
    /// ([`EXPORT_FAILURES_TOTAL`](super::EXPORT_FAILURES_TOTAL), `signal="traces"`).
    #[cfg(feature = "metrics")]
    pub fn install_with_metrics(metrics: &crate::metrics::Metrics) -> Result<Self, Error> {
        Self::build(
            TraceExportConfig::from_env(),
            Some(metrics.counter(TRACES_DROPPED_TOTAL, &[])),
            Some(ExportFailures::new(metrics, "traces")),
        )
    }

    /// With explicit batching (the endpoint and sampler still come from the environment).
    pub fn install_with_config(config: TraceExportConfig) -> Result<Self, Error> {
        Self::build(config, None, None)
    }

    fn build(
        config: TraceExportConfig,
        dropped_counter: Option<DroppedCounter>,
        failures: Option<ExportFailures>,
    ) -> Result<Self, Error> {
        let (queue, rx) = mpsc::sync_channel(config.max_queue_size.max(1));
        let (ready_tx, ready_rx) = mpsc::channel();
        // The exporter's blocking HTTP client is made, used and dropped on this thread
        // only: dropping it inside an async runtime would panic.
        std::thread::Builder::new()
            .name("cachefront-otlp-traces".to_owned())
            .spawn(move || {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .build();
                match exporter {
                    Ok(mut exporter) => {
                        exporter.set_resource(&Resource::builder().build());
                        let _ = ready_tx.send(Ok(()));
                        run_exports(&rx, &exporter, &config, failures.as_ref());
                        let _ = exporter.shutdown();
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                    }
                }
            })
            .map_err(|e| Error::Config(format!("OTLP trace export thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Error::Config(format!("OTLP trace exporter: {e}"))),
            Err(_) => {
                return Err(Error::Config(
                    "OTLP trace exporter did not start".to_owned(),
                ))
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = dropped_counter;
        Ok(Self {
            inner: Arc::new(Inner {
                queue,
                sampler: opentelemetry_sdk::trace::Config::default().sampler,
                ids: RandomIdGenerator::default(),
                dropped: AtomicU64::new(0),
                #[cfg(feature = "metrics")]
                dropped_counter,
            }),
        })
    }

    /// The layer exporting the requests it wraps, except the [default excluded
    /// paths](PathExcludes::DEFAULT).
    pub fn layer(&self) -> OtlpTraceLayer {
        OtlpTraceLayer {
            traces: self.clone(),
            excludes: PathExcludes::default(),
        }
    }

    /// Traces dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Send everything queued now; blocks until the endpoint answered or timed out.
    pub fn force_flush(&self) -> Result<(), Error> {
        self.control(Msg::Flush)
    }

    /// Send what is queued and stop the export thread; later requests are dropped.
    pub fn shutdown(&self) -> Result<(), Error> {
        self.control(Msg::Shutdown)
    }

    fn control(&self, msg: fn(mpsc::Sender<Result<(), String>>) -> Msg) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel();
        self.inner
            .queue
            .send(msg(tx))
            .map_err(|_| Error::Unavailable("OTLP trace export has stopped".to_owned()))?;
        rx.recv()
            .map_err(|_| Error::Unavailable("OTLP trace export has stopped".to_owned()))?
            .map_err(|e| Error::Unavailable(format!("OTLP trace export: {e}")))
    }

    /// The request's trace context if the sampler takes it, `None` otherwise.
    fn sample(&self, headers: &HeaderMap, route: &str) -> Option<(TraceParent, Option<SpanId>)> {
        let remote = remote_parent(headers);
        let trace_id = remote
            .as_ref()
            .map_or_else(|| self.inner.ids.new_trace_id(), SpanContext::trace_id);
        let parent_cx = remote
            .clone()
            .map(|sc| opentelemetry::Context::new().with_remote_span_context(sc));
        let decision = self
            .inner
            .sampler
            .should_sample(
                parent_cx.as_ref(),
                trace_id,
                route,
                &SpanKind::Server,
                &[],
                &[],
            )
            .decision;
        (decision == SamplingDecision::RecordAndSample).then(|| {
            (
                TraceParent {
                    trace_id,
                    span_id: self.inner.ids.new_span_id(),
                },
                remote.map(|sc| sc.span_id()),
            )
        })
    }

    fn enqueue(&self, request: FinishedRequest) {
        match self.inner.queue.try_send(Msg::Request(Box::new(request))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                #[cfg(feature = "metrics")]
                if let Some(c) = &self.inner.dropped_counter {
                    c.increment(1);
                }
            }
        }
    }
}

#[cfg(feature = "metrics")]
type DroppedCounter = metrics::Counter;
#[cfg(not(feature = "metrics"))]
type DroppedCounter = ();

/// `traceparent` (and `tracestate`) as the W3C propagator reads them; invalid → `None`.
fn remote_parent(headers: &HeaderMap) -> Option<SpanContext> {
    if !headers.contains_key("traceparent") {
        return None;
    }
    struct Headers<'a>(&'a HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(http::HeaderName::as_str).collect()
        }
    }
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// The export thread: batches queued requests until the batch is full, the delay is up,
/// or a flush/shutdown asks.
fn run_exports(
    rx: &Receiver<Msg>,
    exporter: &opentelemetry_otlp::SpanExporter,
    config: &TraceExportConfig,
    failures: Option<&ExportFailures>,
) {
    let scope = InstrumentationScope::builder("cachefront_origin")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let ids = RandomIdGenerator::default();
    let mut batch: Vec<SpanData> = Vec::new();
    let mut deadline = Instant::now() + config.scheduled_delay;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Msg::Request(r)) => {
                batch.extend(request_spans(&r, || ids.new_span_id(), &scope));
                if batch.len() >= config.max_export_batch_size {
                    let _ = export(exporter, &mut batch, config.max_export_batch_size, failures);
                }
            }
            Ok(Msg::Flush(reply)) => {
                let _ = reply.send(export(
                    exporter,
                    &mut batch,
                    config.max_export_batch_size,
                    failures,
                ));
            }
            Ok(Msg::Shutdown(reply)) => {
                let _ = reply.send(export(
                    exporter,
                    &mut batch,
                    config.max_export_batch_size,
                    failures,
                ));
                return;
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = export(exporter, &mut batch, config.max_export_batch_size, failures);
                deadline = Instant::now() + config.scheduled_delay;
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = export(exporter, &mut batch, config.max_export_batch_size, failures);
                return;
            }
        }
    }
}

/// Sends `batch` in chunks of at most `max` spans; the first failure is returned, each
/// is logged and counted, the later chunks are still tried.
fn export(
    exporter: &opentelemetry_otlp::SpanExporter,
    batch: &mut Vec<SpanData>,
    max: usize,
    failures: Option<&ExportFailures>,
) -> Result<(), String> {
    let mut result = Ok(());
    while !batch.is_empty() {
        let rest = batch.split_off(batch.len().min(max.max(1)));
        let chunk = std::mem::replace(batch, rest);
        let spans = chunk.len();
        if let Err(e) = futures_executor::block_on(exporter.export(chunk)) {
            if let Some(failures) = failures {
                failures.count(&e);
            }
            tracing::warn!(
                target: "cachefront_origin::otlp",
                spans,
                error = %e,
                "OTLP trace export failed; these spans are lost"
            );
            if result.is_ok() {
                result = Err(e.to_string());
            }
        }
    }
    result
}

/// The spans of one request: the server span, one per profiled span (parents kept), one
/// per query. `new_span_id` names the children. Pure: times come from `r`.
fn request_spans(
    r: &FinishedRequest,
    mut new_span_id: impl FnMut() -> SpanId,
    scope: &InstrumentationScope,
) -> Vec<SpanData> {
    let at = |i: Instant| r.start + i.saturating_duration_since(r.started);
    let end = at(r.ended);
    let context = |span_id| {
        SpanContext::new(
            r.trace.trace_id,
            span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        )
    };
    let span = |span_id, parent, kind, name, start, end, attributes, status| SpanData {
        span_context: context(span_id),
        parent_span_id: parent,
        parent_span_is_remote: false,
        span_kind: kind,
        name,
        start_time: start,
        end_time: end,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    };

    let route = r.route.as_ref().map(MatchedPath::as_str);
    // Semantic conventions: `_OTHER` for a method outside the known set.
    let method = if r.method == "OTHER" {
        "_OTHER"
    } else {
        r.method
    };
    let mut attributes = vec![
        KeyValue::new("http.request.method", method),
        KeyValue::new("url.path", r.path.clone()),
    ];
    if let Some(route) = route {
        attributes.push(KeyValue::new("http.route", route.to_owned()));
    }
    if let Some(status) = r.status {
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
    }
    if r.queries > 0 {
        attributes.push(KeyValue::new("cachefront.db.queries", i64::from(r.queries)));
    }
    if r.profile.dropped > 0 {
        attributes.push(KeyValue::new(
            "cachefront.spans_dropped",
            i64::from(r.profile.dropped),
        ));
    }
    let status = match r.status {
        // A server span is an error for 5xx only: 4xx is the client's.
        Some(s) if s < 500 => Status::Unset,
        Some(s) => Status::error(format!("HTTP {s}")),
        None => Status::error("the service failed"),
    };
    let name = match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    };
    let mut out = Vec::with_capacity(1 + r.profile.spans.len());
    let mut root = span(
        r.trace.span_id,
        r.remote_parent.unwrap_or(SpanId::INVALID),
        SpanKind::Server,
        name.into(),
        r.start,
        end,
        attributes,
        status,
    );
    root.parent_span_is_remote = r.remote_parent.is_some();
    out.push(root);

    let ids: Vec<SpanId> = r.profile.spans.iter().map(|_| new_span_id()).collect();
    let parent_of = |p: Option<usize>| {
        p.and_then(|i| ids.get(i).copied())
            .unwrap_or(r.trace.span_id)
    };
    for (n, id) in r.profile.spans.iter().zip(&ids) {
        let (span_end, attributes) = match n.duration {
            Some(d) => (at(n.start + d), Vec::new()),
            // Still open at the response: it ends with the request, and says so.
            None => (end, vec![KeyValue::new("cachefront.span.unfinished", true)]),
        };
        out.push(span(
            *id,
            parent_of(n.parent),
            SpanKind::Internal,
            n.name.into(),
            at(n.start),
            span_end,
            attributes,
            Status::Unset,
        ));
    }
    #[cfg(feature = "db")]
    for q in &r.profile.queries {
        let text = q.fingerprint.normalized();
        let operation = text
            .split_whitespace()
            .next()
            .unwrap_or("query")
            .to_ascii_uppercase();
        out.push(span(
            new_span_id(),
            parent_of(q.parent),
            SpanKind::Client,
            operation.clone().into(),
            at(q.start),
            at(q.start + q.duration),
            vec![
                KeyValue::new("db.system.name", "postgresql"),
                // The pre-1.26 name, which some backends still read.
                KeyValue::new("db.system", "postgresql"),
                KeyValue::new("db.operation.name", operation),
                // Literals replaced by `?`: no values leave the process.
                KeyValue::new("db.query.text", text.to_owned()),
                KeyValue::new("cachefront.db.fingerprint", q.fingerprint.id()),
            ],
            Status::Unset,
        ));
    }
    out
}

/// Tower layer made by [`OtlpTraces::layer`].
#[derive(Clone, Debug)]
pub struct OtlpTraceLayer {
    traces: OtlpTraces,
    excludes: PathExcludes,
}

impl OtlpTraceLayer {
    /// Paths passed through untraced (default: [`PathExcludes::DEFAULT`]).
    pub fn exclude_paths(mut self, excludes: PathExcludes) -> Self {
        self.excludes = excludes;
        self
    }
}

impl<S> Layer<S> for OtlpTraceLayer {
    type Service = OtlpTraceService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OtlpTraceService {
            inner,
            traces: self.traces.clone(),
            excludes: self.excludes.clone(),
        }
    }
}

/// Service produced by [`OtlpTraceLayer`].
#[derive(Clone, Debug)]
pub struct OtlpTraceService<S> {
    inner: S,
    traces: OtlpTraces,
    excludes: PathExcludes,
}

struct Pending {
    traces: OtlpTraces,
    trace: TraceParent,
    remote_parent: Option<SpanId>,
    method: &'static str,
    route: Option<MatchedPath>,
    path: String,
    profile: Option<RequestProfile>,
    start: SystemTime,
    started: Instant,
}

impl<S, B> Service<Request<B>> for OtlpTraceService<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = OtlpTraceFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        let sampled = if self.excludes.matches(req.uri().path()) {
            None
        } else {
            let name = route.as_ref().map_or("", MatchedPath::as_str);
            self.traces.sample(req.headers(), name)
        };
        let Some((trace, remote_parent)) = sampled else {
            return OtlpTraceFuture {
                inner: self.inner.call(req),
                pending: None,
            };
        };
        let profile = req.extensions().get::<RequestProfile>().cloned();
        if let Some(p) = &profile {
            p.keep_trace_queries();
        }
        req.extensions_mut().insert(trace);
        let pending = Pending {
            traces: self.traces.clone(),
            trace,
            remote_parent,
            method: method_label(req.method()),
            route,
            path: req.uri().path().to_owned(),
            profile,
            start: SystemTime::now(),
            started: Instant::now(),
        };
        OtlpTraceFuture {
            inner: self.inner.call(req),
            pending: Some(pending),
        }
    }
}

pin_project! {
    /// Response future of [`OtlpTraceService`].
    pub struct OtlpTraceFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F, E> Future for OtlpTraceFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Some(p) = this.pending.take() {
            let (profile, queries) = match &p.profile {
                Some(profile) => (profile.trace_snapshot(), profile.queries().0),
                None => (TraceSnapshot::default(), 0),
            };
            // After the snapshot: every span closed in it ends before the request does.
            let ended = Instant::now();
            p.traces.enqueue(FinishedRequest {
                trace: p.trace,
                remote_parent: p.remote_parent,
                method: p.method,
                route: p.route,
                path: p.path,
                status: result.as_ref().ok().map(|r| r.status().as_u16()),
                start: p.start,
                started: p.started,
                ended,
                queries,
                profile,
            });
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batching_reads_the_bsp_variables_and_keeps_defaults_for_bad_values() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            TraceExportConfig::from_vars(vars(&[
                ("OTEL_BSP_MAX_QUEUE_SIZE", "16"),
                ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4"),
                ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ])),
            TraceExportConfig {
                max_queue_size: 16,
                max_export_batch_size: 4,
                scheduled_delay: Duration::from_millis(250),
            }
        );
        assert_eq!(
            TraceExportConfig::from_vars(vars(&[
                ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
                ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
            ])),
            TraceExportConfig::default()
        );
    }

    #[test]
    fn a_full_queue_drops_the_trace_and_counts_it_without_waiting() {
        let (queue, _rx) = mpsc::sync_channel(1);
        let traces = OtlpTraces {
            inner: Arc::new(Inner {
                queue,
                sampler: Box::new(opentelemetry_sdk::trace::Sampler::AlwaysOn),
                ids: RandomIdGenerator::default(),
                dropped: AtomicU64::new(0),
                #[cfg(feature = "metrics")]
                dropped_counter: None,
            }),
        };
        let request = || {
            let now = Instant::now();
            FinishedRequest {
                trace: TraceParent {
                    trace_id: TraceId::from(1u128),
                    span_id: SpanId::from(1u64),
                },
                remote_parent: None,
                method: "GET",
                route: None,
                path: "/".to_owned(),
                status: Some(200),
                start: SystemTime::UNIX_EPOCH,
                started: now,
                ended: now,
                queries: 0,
                profile: TraceSnapshot::default(),
            }
        };
        // Nothing drains the queue: a blocking send would hang this test.
        for _ in 0..3 {
            traces.enqueue(request());
        }
        assert_eq!(traces.dropped(), 2);
    }

    #[test]
    fn a_malformed_traceparent_is_ignored_and_a_valid_one_is_read() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("traceparent", v.parse().expect("header"));
            remote_parent(&h)
        };
        let sc = with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert!(with(bad).is_none(), "{bad} must be ignored");
        }
        assert!(remote_parent(&HeaderMap::new()).is_none());
    }
}
