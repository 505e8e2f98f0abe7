//! Method-level profiling: [`SpanProfileLayer`], a `tracing_subscriber` layer that puts
//! the spans a handler opens (`#[instrument]`, `info_span!`) into the profile of the
//! request being polled, and [`Timer`], which times a block into a histogram (and into
//! the request's profile).
//!
//! The request is found through a thread-local the profiling layer sets only while it
//! polls a *sampled* request, so unsampled requests, background tasks and spawned tasks
//! cost one thread-local read per span and record nothing (a task spawned inside
//! [`in_current_request`](crate::in_current_request) records into its request's profile).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Subscriber;
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use super::RequestProfile;

thread_local! {
    static CURRENT: RefCell<Option<RequestProfile>> = const { RefCell::new(None) };
}

/// Runs `f` with `profile` as the thread's current one ([`crate::poll_local`]).
pub(crate) fn with_current<T>(profile: &mut Option<RequestProfile>, f: impl FnOnce() -> T) -> T {
    crate::poll_local::with_current(&CURRENT, profile, f)
}

/// The profile of the sampled request being polled on this thread, if any.
pub fn current_profile() -> Option<RequestProfile> {
    CURRENT.with(|c| c.borrow().clone())
}

/// One timed span of a request: what the report's tree is built from.
#[derive(Debug, Clone)]
pub(crate) struct SpanNode {
    pub(crate) name: &'static str,
    pub(crate) parent: Option<usize>,
    pub(crate) start: Instant,
    pub(crate) duration: Option<Duration>,
}

/// `tracing_subscriber` layer collecting spans into the current request's profile. Add it
/// to the subscriber next to your formatter:
///
/// ```
/// use tracing_subscriber::prelude::*;
/// use cachefront_origin::profiling::SpanProfileLayer;
///
/// tracing_subscriber::registry()
///     .with(SpanProfileLayer::new())
///     .with(tracing_subscriber::fmt::layer())
///     .init();
/// ```
///
/// Spans are recorded whatever their level, as long as the subscriber enables them: a
/// global `EnvFilter` that drops a span's level drops it here too (use per-layer filters).
#[derive(Debug, Clone, Default)]
pub struct SpanProfileLayer {
    _private: (),
}

impl SpanProfileLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

/// What the layer keeps in a span's extensions.
struct SpanSlot {
    profile: RequestProfile,
    index: usize,
}

impl<S> tracing_subscriber::Layer<S> for SpanProfileLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: LayerContext<'_, S>,
    ) {
        let Some(profile) = current_profile() else {
            return;
        };
        let Some(span) = ctx.span(id) else {
            return;
        };
        // The parent in the tree is the nearest enclosing span of the same request.
        let parent = span.parent().and_then(|p| {
            p.extensions()
                .get::<SpanSlot>()
                .filter(|s| Arc::ptr_eq(&s.profile.inner, &profile.inner))
                .map(|s| s.index)
        });
        if let Some(index) = profile.open_span(attrs.metadata().name(), parent) {
            span.extensions_mut().insert(SpanSlot { profile, index });
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: LayerContext<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let slot = span.extensions_mut().remove::<SpanSlot>();
        if let Some(slot) = slot {
            slot.profile.close_span(slot.index, Instant::now());
        }
    }
}

/// Times a block: on drop (or [`Timer::stop`]) records the duration in the histogram
/// `cachefront_origin_block_duration_seconds{block}` and, inside a sampled request, as a
/// node of the request's span tree (under the innermost span still open).
///
/// ```
/// # let metrics = cachefront_origin::metrics::Metrics::new();
/// use cachefront_origin::profiling::Timer;
/// let html = {
///     let _t = Timer::start(&metrics, "render_product");
///     "<h1>…</h1>".to_owned()
/// };
/// ```
#[cfg(feature = "metrics")]
#[derive(Debug)]
#[must_use = "a Timer measures until it is dropped"]
pub struct Timer {
    histogram: metrics::Histogram,
    start: Instant,
    node: Option<(RequestProfile, usize)>,
}

#[cfg(feature = "metrics")]
impl Timer {
    /// Start timing `block` (a name from a bounded set: it becomes a label).
    pub fn start(metrics: &crate::metrics::Metrics, block: &'static str) -> Self {
        Self::with_histogram(
            metrics.histogram(BLOCK_DURATION_SECONDS, &[("block", block)]),
            block,
        )
    }

    /// Start timing into a histogram you registered once (skips the registry lookup).
    pub fn with_histogram(histogram: metrics::Histogram, block: &'static str) -> Self {
        let node = current_profile().and_then(|p| {
            let parent = p.innermost_open_span();
            p.open_span(block, parent).map(|i| (p, i))
        });
        Self {
            histogram,
            start: Instant::now(),
            node,
        }
    }

    /// Time `f`.
    pub fn time<T>(
        metrics: &crate::metrics::Metrics,
        block: &'static str,
        f: impl FnOnce() -> T,
    ) -> T {
        let _t = Self::start(metrics, block);
        f()
    }

    /// Stop now and return the duration.
    pub fn stop(mut self) -> Duration {
        self.finish()
    }

    fn finish(&mut self) -> Duration {
        let now = Instant::now();
        let elapsed = now.duration_since(self.start);
        self.histogram.record(elapsed.as_secs_f64());
        if let Some((p, i)) = self.node.take() {
            p.close_span(i, now);
        }
        // A second call (drop after stop) records nothing: the histogram is spent.
        self.histogram = metrics::Histogram::noop();
        elapsed
    }
}

#[cfg(feature = "metrics")]
impl Drop for Timer {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Histogram (seconds) `{block}`: durations of blocks timed with [`Timer`].
pub const BLOCK_DURATION_SECONDS: &str = "cachefront_origin_block_duration_seconds";

/// What a trace exporter (`crate::otlp::traces`) reads from a request's profile: the
/// database queries as timed nodes, which the profile keeps only once
/// [`RequestProfile::keep_trace_queries`] was called for the request, so requests that
/// are not exported pay nothing for it.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
#[derive(Debug, Default)]
pub(crate) struct TraceHook {
    on: bool,
    #[cfg(feature = "db")]
    queries: Vec<QueryNode>,
}

/// One database statement of a request: its fingerprint, when it ran, under which span.
#[cfg(feature = "db")]
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
#[derive(Debug, Clone)]
pub(crate) struct QueryNode {
    pub(crate) fingerprint: Arc<crate::db::SqlFingerprint>,
    pub(crate) parent: Option<usize>,
    pub(crate) start: Instant,
    pub(crate) duration: Duration,
}

/// A copy of a request's timed nodes, taken when its response is ready.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
#[derive(Debug, Default)]
pub(crate) struct TraceSnapshot {
    pub(crate) spans: Vec<SpanNode>,
    #[cfg(feature = "db")]
    pub(crate) queries: Vec<QueryNode>,
    pub(crate) dropped: u32,
}

#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
impl RequestProfile {
    /// From now on keep each query of this request as a node (bounded like spans).
    pub(crate) fn keep_trace_queries(&self) {
        self.lock().trace.on = true;
    }

    /// A query that just finished after `elapsed`; kept only for a traced request.
    #[cfg(feature = "db")]
    pub(crate) fn trace_query(
        &self,
        fingerprint: &Arc<crate::db::SqlFingerprint>,
        elapsed: Duration,
    ) {
        let mut d = self.lock();
        if !d.trace.on {
            return;
        }
        if d.trace.queries.len() >= d.max_spans {
            d.spans_dropped = d.spans_dropped.saturating_add(1);
            return;
        }
        let parent = d.spans.iter().rposition(|n| n.duration.is_none());
        let start = Instant::now()
            .checked_sub(elapsed)
            .unwrap_or_else(Instant::now);
        d.trace.queries.push(QueryNode {
            fingerprint: fingerprint.clone(),
            parent,
            start,
            duration: elapsed,
        });
    }

    /// The spans and queries recorded so far (spans still open have no duration).
    pub(crate) fn trace_snapshot(&self) -> TraceSnapshot {
        let d = self.lock();
        TraceSnapshot {
            spans: d.spans.clone(),
            #[cfg(feature = "db")]
            queries: d.trace.queries.clone(),
            dropped: d.spans_dropped,
        }
    }
}
