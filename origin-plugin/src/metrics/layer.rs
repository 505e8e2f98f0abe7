//! [`MetricsLayer`]: per-route request count, duration and in-flight gauge, with the
//! handles of each route registered once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, PoisonError};
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

/// Tower layer recording per-route request count, duration and in-flight gauge.
///
/// Add it with `Router::layer` so axum's `MatchedPath` is visible; requests no route
/// matched are labelled `route="unmatched"`.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    pub(super) metrics: Metrics,
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
pub(super) struct RouteHandles {
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
