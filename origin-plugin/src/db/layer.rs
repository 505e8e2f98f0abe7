//! The tower side: a layer that makes each request's capture state current on the thread
//! while the request is polled and, when the response is ready, reports what it ran.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum::response::Response;
use http::Request;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use super::capture::{DbCapture, QueryTally, RequestQueries, RouteHandles};
use super::findings::NPlusOneError;
use super::tracing_layer::with_request;
use crate::route::{method_label, UNMATCHED};
use crate::stack::PathExcludes;

/// Tower layer made by [`DbCapture::layer`].
#[derive(Clone, Debug)]
pub struct DbCaptureLayer {
    pub(super) capture: DbCapture,
    pub(super) excludes: PathExcludes,
}

impl DbCaptureLayer {
    /// Paths passed through uncaptured (default: [`PathExcludes::DEFAULT`], the probes
    /// and the metrics endpoints): their statements count under `route="none"`, never as
    /// a request's.
    pub fn exclude_paths(mut self, excludes: PathExcludes) -> Self {
        self.excludes = excludes;
        self
    }
}

impl<S> Layer<S> for DbCaptureLayer {
    type Service = DbCaptureService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DbCaptureService {
            inner,
            capture: self.capture.clone(),
            excludes: self.excludes.clone(),
            last_route: Arc::default(),
        }
    }
}

/// Service produced by [`DbCaptureLayer`].
#[derive(Clone, Debug)]
pub struct DbCaptureService<S> {
    inner: S,
    capture: DbCapture,
    excludes: PathExcludes,
    /// `Router::layer` wraps each route's service on its own, so a service nearly always
    /// sees one route: its handles, without the registry lookup per statement.
    last_route: Arc<OnceLock<(Box<str>, Arc<RouteHandles>)>>,
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
        if self.excludes.matches(req.uri().path()) {
            return DbCaptureFuture {
                inner: self.inner.call(req),
                state: None,
                _in_flight: None,
            };
        }
        self.capture.check_setup_once();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED, MatchedPath::as_str);
        let handles = match self.last_route.get() {
            Some((r, h)) if **r == *route => h.clone(),
            _ => {
                let h = self.capture.route_handles(route);
                let _ = self.last_route.set((route.into(), h.clone()));
                h
            }
        };
        let request = Arc::new(RequestQueries {
            owner: Arc::as_ptr(&self.capture.inner) as usize,
            method: method_label(req.method()),
            handles,
            #[cfg(feature = "profiling")]
            profile: req
                .extensions()
                .get::<crate::profiling::RequestProfile>()
                .cloned(),
            tally: Mutex::new(QueryTally::default()),
        });
        #[cfg(feature = "profiling")]
        if request.profile.is_none() {
            self.capture.warn_outside_profiler_once();
        }
        // No span: statements find the request through the thread-local set per poll
        // (sqlx reports a statement from the future that awaited it).
        let future = self.inner.call(req);
        DbCaptureFuture {
            inner: future,
            state: Some((self.capture.clone(), Some(request))),
            _in_flight: Some(InFlight::start(&self.capture)),
        }
    }
}

pin_project! {
    /// Response future of [`DbCaptureService`].
    pub struct DbCaptureFuture<F> {
        #[pin]
        inner: F,
        // The request is always `Some` between polls; moved into the thread-local while
        // the inner future is polled.
        state: Option<(DbCapture, Option<Arc<RequestQueries>>)>,
        _in_flight: Option<InFlight>,
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
        let inner = this.inner;
        let poll = match this.state {
            Some((_, request)) => with_request(request, || inner.poll(cx)),
            None => inner.poll(cx),
        };
        let mut result = std::task::ready!(poll);
        if let Some((capture, Some(request))) = this.state.take() {
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
