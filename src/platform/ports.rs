//! The small traits (ports) the core uses to touch the platform, and their
//! errors. Everything behind them is I/O; everything in front of them is
//! plain, testable Rust. The ports of the purge machinery (the tag registry,
//! Cloudflare's API) are defined with their logic in `purge`.

use std::future::Future;
use std::pin::Pin;

use http::{Request, Response};

use crate::origin::health::SharedHealth;
use crate::origin::pool::OriginConfig;
use crate::platform::body::Streamed;
use crate::Body;

/// A task to finish after the response is sent (`ctx.wait_until` on Workers).
pub type BackgroundTask = Pin<Box<dyn Future<Output = ()> + 'static>>;

/// A storage or binding failure; the pipeline degrades (e.g. treats it as a miss).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Why an origin fetch produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

/// A dumb response store keyed by URL (the Cache API). It keeps what it is
/// given; freshness is decided by the pipeline, not the store.
#[allow(async_fn_in_trait)] // Workers futures are !Send; callers are generic, not dyn.
pub trait CacheStore {
    /// A body above `stream_above` bytes comes back as a stream (see [`crate::platform::body`]).
    async fn get(&self, key: &str, stream_above: u64)
        -> Result<Option<Response<Body>>, StoreError>;
    /// Stores `response`; a streamed body is read from its stream.
    async fn put(&self, key: &str, response: Response<Body>) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;
}

/// Sends a request to an origin and returns its response as received
/// (redirects are not followed).
#[allow(async_fn_in_trait)]
pub trait OriginFetch {
    /// Gives up (and aborts the subrequest) after `timeout_ms`. A body above
    /// `stream_above` bytes is left as a stream (see [`crate::platform::body`]).
    async fn fetch(
        &self,
        origin: &OriginConfig,
        request: Request<Body>,
        timeout_ms: u64,
        stream_above: u64,
    ) -> Result<Response<Body>, OriginError>;
}

/// An optional global store for small entries (Workers KV): slower than the
/// Cache API but shared by every data centre. Values are whole byte strings.
#[allow(async_fn_in_trait)]
pub trait GlobalStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn put(&self, key: &str, value: Vec<u8>, ttl_secs: u64) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// False when no store is bound (every call is then a no-op).
    fn available(&self) -> bool;
}

/// Where the active health check leaves its results for every isolate.
#[allow(async_fn_in_trait)]
pub trait HealthStore {
    async fn load(&self) -> Result<Vec<SharedHealth>, StoreError>;
    async fn save(&self, results: &[SharedHealth]) -> Result<(), StoreError>;
}

/// The static asset store (`www/` behind the ASSETS binding). Answers 404 for
/// paths that are not assets.
#[allow(async_fn_in_trait)]
pub trait StaticAssets {
    /// A body above `stream_above` bytes is left as a stream (see [`crate::platform::body`]).
    async fn fetch(
        &self,
        request: &Request<Body>,
        stream_above: u64,
    ) -> Result<Response<Body>, StoreError>;
}

/// Why a stream was not read whole ([`BodyStreams::read_to_end`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamReadError {
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the body could not be read: {0}")]
    Failed(String),
}

/// What the core may do with a streamed body (see [`crate::platform::body`]).
/// Every stream handed to the core ends in exactly one place: a response, a
/// cache write, or one of these calls.
#[allow(async_fn_in_trait)] // Workers futures are !Send; callers are generic, not dyn.
pub trait BodyStreams {
    /// Splits a stream into two that each yield every byte (client and store).
    fn tee(&self, stream: Streamed) -> (Streamed, Streamed);
    /// The bytes `start..end` (end exclusive) of a stream; the rest is dropped.
    fn slice(&self, stream: Streamed, start: u64, end: u64) -> Streamed;
    /// Drops a stream that will not be read.
    fn cancel(&self, stream: Streamed);
    /// Reads a stream whole, for a body the core must parse (a state
    /// import). One longer than `limit` bytes is refused as soon as that is
    /// known (from its announced length, or once more than `limit` bytes
    /// came), and the rest of it is dropped unread.
    async fn read_to_end(&self, stream: Streamed, limit: u64) -> Result<Body, StreamReadError>;
}

/// Wall-clock time, in milliseconds since the Unix epoch, and waiting.
#[allow(async_fn_in_trait)]
pub trait Clock {
    fn now_ms(&self) -> u64;
    /// Waits about `ms` milliseconds (a timer of the current request).
    async fn sleep(&self, ms: u64);
}

/// Runs work after the response has been returned.
pub trait Background {
    fn spawn(&self, task: BackgroundTask);
}
