//! Two small layers every origin behind a cache wants, whatever else it uses:
//!
//! * [`NoStoreOnErrorLayer`]: `Cache-Control: no-store` on every 4xx/5xx answer — the
//!   app's own errors, axum's extractor rejections (a bad `Path<i64>`, 415 on a wrong
//!   content type, 422 on bad JSON), 405, and the fallback 404 — so an edge never keeps an
//!   error it was not explicitly told to keep. It replaces any `Cache-Control` an error
//!   carries: caching an error must be a decision made elsewhere, not a leftover header.
//! * [`RequestIdLayer`]: every request gets an `x-request-id` (the client's when it is a
//!   sane token, else a new one), visible to handlers as a [`RequestId`] extension, echoed
//!   on the response, and recorded on a `request` span so every log line of the request
//!   carries it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};

/// Header carrying the request id.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Whether an answer with this status must not be stored by a cache.
pub fn is_error_status(status: http::StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

/// Layer adding `Cache-Control: no-store` to every error answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStoreOnErrorLayer;

impl NoStoreOnErrorLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for NoStoreOnErrorLayer {
    type Service = NoStoreOnError<S>;
    fn layer(&self, inner: S) -> Self::Service {
        NoStoreOnError { inner }
    }
}

/// Service of [`NoStoreOnErrorLayer`].
#[derive(Debug, Clone)]
pub struct NoStoreOnError<S> {
    inner: S,
}

pin_project_lite::pin_project! {
    /// Future of [`NoStoreOnError`].
    pub struct NoStoreOnErrorFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> Future for NoStoreOnErrorFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut res = std::task::ready!(self.project().inner.poll(cx))?;
        if is_error_status(res.status()) {
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Poll::Ready(Ok(res))
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for NoStoreOnError<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = NoStoreOnErrorFuture<S::Future>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        NoStoreOnErrorFuture {
            inner: self.inner.call(req),
        }
    }
}

/// The id of the current request (a request extension set by [`RequestIdLayer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// An incoming id is kept only when it is 1–128 characters of `[A-Za-z0-9._:-]`: anything
/// else (log injection, huge values) is replaced.
pub fn accept_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new id from a per-process prefix and a sequence number: unique within the process,
/// and across restarts and replicas thanks to the prefix (start time and process id).
pub fn new_request_id(prefix: &str, sequence: u64) -> String {
    format!("{prefix}-{sequence:x}")
}

/// Layer giving every request an id (see the module docs).
#[derive(Debug, Clone)]
pub struct RequestIdLayer {
    prefix: Arc<str>,
    sequence: Arc<AtomicU64>,
}

impl Default for RequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIdLayer {
    /// The layer, its id prefix taken from the start time and process id.
    pub fn new() -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Self {
            prefix: format!("{:x}{:x}", started, std::process::id()).into(),
            sequence: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service of [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
    layer: RequestIdLayer,
}

pin_project_lite::pin_project! {
    /// Future of [`RequestIdService`].
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: tracing::instrument::Instrumented<F>,
        id: HeaderValue,
    }
}

impl<F, B, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = std::task::ready!(this.inner.poll(cx))?;
        res.headers_mut().insert(REQUEST_ID_HEADER, this.id.clone());
        Poll::Ready(Ok(res))
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for RequestIdService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        use tracing::Instrument as _;
        let incoming = req
            .headers()
            .get(&REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| accept_request_id(v))
            .map(str::to_owned);
        let id = incoming.unwrap_or_else(|| {
            new_request_id(
                &self.layer.prefix,
                self.layer.sequence.fetch_add(1, Ordering::Relaxed),
            )
        });
        // Only accepted characters reach here, so the header value is always valid.
        let value = HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("invalid"));
        req.headers_mut().insert(REQUEST_ID_HEADER, value.clone());
        let span = tracing::info_span!("request", request_id = %id);
        req.extensions_mut().insert(RequestId(id));
        RequestIdFuture {
            inner: self.inner.call(req).instrument(span),
            id: value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_incoming_ids_are_kept() {
        assert!(accept_request_id("0f3a-17.b:c_d"));
        assert!(!accept_request_id(""));
        assert!(!accept_request_id("a b"));
        assert!(!accept_request_id("x\nFAKE LOG LINE"));
        assert!(!accept_request_id(&"a".repeat(129)));
    }

    #[test]
    fn new_ids_differ_by_sequence() {
        assert_ne!(new_request_id("p", 1), new_request_id("p", 2));
        assert!(accept_request_id(&new_request_id("abc", 255)));
    }
}
