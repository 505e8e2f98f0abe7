//! [`MetricsLayer`]: per-route request count, duration and in-flight gauge, with the
//! handles of each route registered once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::response::Response;
use http::Request;
use metrics::{Counter, Gauge, Histogram};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::{names, Metrics};
use crate::route::{method_index, status_class_index, METHODS, STATUS_CLASSES, UNMATCHED};
use crate::stack::PathExcludes;

/// Tower layer recording per-route request count, duration and in-flight gauge.
///
/// Add it with `Router::layer` so axum's `MatchedPath` is visible; requests no route
/// matched are labelled `route="unmatched"`.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    pub(super) metrics: Metrics,
    pub(super) excludes: PathExcludes,
}

impl MetricsLayer {
    /// Paths passed through uncounted (default: [`PathExcludes::DEFAULT`], the probes and
    /// the metrics endpoints).
    pub fn exclude_paths(mut self, excludes: PathExcludes) -> Self {
        self.excludes = excludes;
        self
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
            last_route: Arc::default(),
            excludes: self.excludes.clone(),
        }
    }
}

/// Service produced by [`MetricsLayer`].
#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    metrics: Metrics,
    /// `Router::layer` wraps each route's service on its own, so a service nearly always
    /// sees one route: its handles, found without the registry's lock and hash (shared
    /// by the clones axum makes per request).
    last_route: Arc<OnceLock<(Box<str>, Arc<RouteHandles>)>>,
    excludes: PathExcludes,
}

impl<S: std::fmt::Debug> std::fmt::Debug for MetricsService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsService")
            .field("inner", &self.inner)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
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
        if self.excludes.matches(req.uri().path()) {
            return MetricsFuture {
                inner: self.inner.call(req),
                state: None,
            };
        }
        self.metrics.ensure_upkeep();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED, MatchedPath::as_str);
        let method = method_index(req.method());
        let handles = match self.last_route.get() {
            Some((r, h)) if **r == *route => h.method(&self.metrics, route, method).clone(),
            _ => {
                let h = self.metrics.route_handles(route);
                let m = h.method(&self.metrics, route, method).clone();
                let _ = self.last_route.set((route.into(), h));
                m
            }
        };
        handles.in_flight.increment(1.0);
        MetricsFuture {
            inner: self.inner.call(req),
            state: Some(Pending {
                in_flight: InFlight(handles),
                start: Instant::now(),
            }),
        }
    }
}

/// Metric handles of one route, registered once and reused by every request, so the hot
/// path neither allocates label sets nor hashes them into the registry.
#[derive(Default)]
pub(super) struct RouteHandles {
    methods: [OnceLock<Arc<MethodHandles>>; METHODS.len()],
}

struct MethodHandles {
    /// Weak: the registry owns these handles; only a first response of a status class
    /// needs it.
    metrics: Weak<super::registry::MetricsInner>,
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
                metrics: Arc::downgrade(&metrics.inner),
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
    fn class(&self, idx: usize) -> &(Counter, Histogram) {
        self.classes[idx].get_or_init(|| {
            let Some(inner) = self.metrics.upgrade() else {
                return (Counter::noop(), Histogram::noop());
            };
            let metrics = Metrics { inner };
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
            let (counter, histogram) = p.in_flight.0.class(class);
            counter.increment(1);
            histogram.record(p.start.elapsed().as_secs_f64());
        }
        Poll::Ready(result)
    }
}
