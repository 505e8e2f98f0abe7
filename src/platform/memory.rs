//! In-memory implementations of the platform traits, for native tests and
//! benches. They behave like the Workers ones where it matters (a store that
//! keeps what it is given, an asset store that answers 404, background work
//! that runs after the response) and let a test control time and origins.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use futures_channel::oneshot;
use futures_util::future::{FutureExt, Shared};
use http::{header, HeaderValue, Request, Response, StatusCode};

use crate::origin::health::SharedHealth;
use crate::origin::pool::OriginConfig;
use crate::platform::body::{self, Streamed};
use crate::platform::{
    Background, BackgroundTask, BodyStreams, CacheStore, Clock, CloudflareApi, GlobalStore,
    HealthStore, OriginError, OriginFetch, Platform, StaticAssets, StoreError, StreamReadError,
};
use crate::purge::cloudflare::ApiReply;
use crate::purge::registry::MemoryTagRegistry;
use crate::Body;

/// Streamed bodies (see [`crate::platform::body`]) held as byte strings; clones share
/// the same table. Tests read a streamed response with [`Self::resolve`] and
/// check with [`Self::open`] that no stream was left behind.
#[derive(Clone, Default)]
pub struct MemoryStreams {
    table: Rc<RefCell<StreamTable>>,
}

#[derive(Default)]
struct StreamTable {
    next_id: u64,
    open: HashMap<u64, Bytes>,
    opened: u64,
}

impl MemoryStreams {
    /// Starts a stream over `bytes`, announced as `len` bytes long (as an
    /// adapter knows it: from `Content-Length`, or not at all).
    pub fn start(&self, bytes: Bytes, len: Option<u64>) -> Streamed {
        let mut table = self.table.borrow_mut();
        table.next_id += 1;
        table.opened += 1;
        let id = table.next_id;
        table.open.insert(id, bytes);
        Streamed { id, len }
    }

    /// Reads a whole stream (it is then gone). `None` for an unknown or spent stream.
    pub fn read(&self, stream: &Streamed) -> Option<Bytes> {
        self.table.borrow_mut().open.remove(&stream.id)
    }

    /// `response` with its streamed body (if any) read into its byte buffer.
    pub fn resolve(&self, mut response: Response<Body>) -> Response<Body> {
        if let Some(stream) = body::unmark(&mut response) {
            *response.body_mut() = self.read(&stream).unwrap_or_default();
        }
        response
    }

    /// Streams started and neither read nor cancelled yet.
    pub fn open(&self) -> usize {
        self.table.borrow().open.len()
    }

    /// Streams started so far.
    pub fn started(&self) -> u64 {
        self.table.borrow().opened
    }

    /// The response for `bytes`, streamed when longer than `stream_above`.
    fn respond(&self, mut response: Response<Body>, stream_above: u64) -> Response<Body> {
        if response.body().len() as u64 > stream_above {
            let len = body::content_length(response.headers());
            let bytes = std::mem::take(response.body_mut());
            let stream = self.start(bytes, len);
            body::mark(&mut response, stream);
        }
        response
    }
}

impl BodyStreams for MemoryStreams {
    fn tee(&self, stream: Streamed) -> (Streamed, Streamed) {
        let bytes = self.read(&stream).unwrap_or_default();
        (
            self.start(bytes.clone(), stream.len),
            self.start(bytes, stream.len),
        )
    }

    fn slice(&self, stream: Streamed, start: u64, end: u64) -> Streamed {
        let bytes = self.read(&stream).unwrap_or_default();
        let mut piece = Vec::new();
        if let Some((from, to)) = body::window(0, bytes.len() as u64, start, end) {
            piece.extend_from_slice(&bytes[from..to]);
        }
        let len = Some(piece.len() as u64);
        self.start(Bytes::from(piece), len)
    }

    fn cancel(&self, stream: Streamed) {
        self.table.borrow_mut().open.remove(&stream.id);
    }

    async fn read_to_end(&self, stream: Streamed, limit: u64) -> Result<Body, StreamReadError> {
        let too_large = StreamReadError::TooLarge { limit };
        if stream.len.is_some_and(|len| len > limit) {
            self.cancel(stream);
            return Err(too_large);
        }
        let bytes = self
            .read(&stream)
            .ok_or_else(|| StreamReadError::Failed(format!("no open stream {}", stream.id)))?;
        if bytes.len() as u64 > limit {
            return Err(too_large);
        }
        Ok(bytes)
    }
}

/// A response store in a hash map. Clones share the same map. Streamed bodies
/// are read into it on `put`, and come back streamed from `get` when large.
#[derive(Clone, Default)]
pub struct MemoryCache {
    entries: Rc<RefCell<HashMap<String, Response<Body>>>>,
    streams: MemoryStreams,
}

impl MemoryCache {
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }

    pub fn keys(&self) -> Vec<String> {
        self.entries.borrow().keys().cloned().collect()
    }
}

impl CacheStore for MemoryCache {
    async fn get(
        &self,
        key: &str,
        stream_above: u64,
    ) -> Result<Option<Response<Body>>, StoreError> {
        let found = self.entries.borrow().get(key).map(crate::copy_response);
        Ok(found.map(|response| self.streams.respond(response, stream_above)))
    }

    async fn put(&self, key: &str, response: Response<Body>) -> Result<(), StoreError> {
        let response = self.streams.resolve(response);
        self.entries.borrow_mut().insert(key.to_owned(), response);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.entries.borrow_mut().remove(key).is_some())
    }
}

type OriginHandler = dyn Fn(&OriginConfig, &Request<Body>) -> Result<Response<Body>, OriginError>;

/// An origin answered by a closure; records every request it receives. It can
/// be held, so that requests wait inside it until the test releases them.
#[derive(Clone)]
pub struct MemoryOrigin {
    handler: Rc<OriginHandler>,
    received: Rc<RefCell<Vec<Request<Body>>>>,
    gate: Rc<RefCell<Option<Shared<oneshot::Receiver<()>>>>>,
    streams: MemoryStreams,
    timeouts: Rc<RefCell<Vec<u64>>>,
}

impl MemoryOrigin {
    pub fn new(
        handler: impl Fn(&OriginConfig, &Request<Body>) -> Result<Response<Body>, OriginError> + 'static,
    ) -> Self {
        Self {
            handler: Rc::new(handler),
            received: Rc::default(),
            gate: Rc::default(),
            streams: MemoryStreams::default(),
            timeouts: Rc::default(),
        }
    }

    /// The timeout each request was given, oldest first.
    pub fn timeouts(&self) -> Vec<u64> {
        self.timeouts.borrow().clone()
    }

    /// Holds every request that reaches the origin until the returned sender
    /// is used or dropped.
    pub fn hold(&self) -> oneshot::Sender<()> {
        let (release, held) = oneshot::channel();
        *self.gate.borrow_mut() = Some(held.shared());
        release
    }

    /// How many requests reached the origin.
    pub fn hits(&self) -> usize {
        self.received.borrow().len()
    }

    /// The requests the origin received, oldest first (bodies shared, not copied).
    pub fn received(&self) -> Vec<(http::Method, http::Uri, http::HeaderMap)> {
        self.received
            .borrow()
            .iter()
            .map(|r| (r.method().clone(), r.uri().clone(), r.headers().clone()))
            .collect()
    }
}

impl OriginFetch for MemoryOrigin {
    /// The handler decides what happens; a test simulates a timeout by
    /// returning `OriginError::Timeout`.
    async fn fetch(
        &self,
        origin: &OriginConfig,
        request: Request<Body>,
        timeout_ms: u64,
        stream_above: u64,
    ) -> Result<Response<Body>, OriginError> {
        self.timeouts.borrow_mut().push(timeout_ms);
        let gate = self.gate.borrow().clone();
        // A streamed upload arrives whole at this origin.
        let mut request = request;
        if let Some(upload) = request.extensions_mut().remove::<Streamed>() {
            *request.body_mut() = self.streams.read(&upload).unwrap_or_default();
        }
        let mut record = Request::new(request.body().clone());
        *record.method_mut() = request.method().clone();
        *record.uri_mut() = request.uri().clone();
        *record.headers_mut() = request.headers().clone();
        self.received.borrow_mut().push(record);
        if let Some(gate) = gate {
            // Released or dropped: either way the request proceeds.
            let _ = gate.await;
        }
        (self.handler)(origin, &request).map(|r| self.streams.respond(r, stream_above))
    }
}

/// Static assets by path, with a content type.
#[derive(Clone, Default)]
pub struct MemoryAssets {
    files: Rc<HashMap<String, (&'static str, Body)>>,
    streams: MemoryStreams,
    asked: Rc<Cell<usize>>,
}

impl MemoryAssets {
    pub fn new(files: impl IntoIterator<Item = (&'static str, &'static str, Body)>) -> Self {
        let map = files
            .into_iter()
            .map(|(path, content_type, body)| (path.to_owned(), (content_type, body)))
            .collect();
        Self {
            files: Rc::new(map),
            streams: MemoryStreams::default(),
            asked: Rc::default(),
        }
    }

    /// How many requests the asset store has answered.
    pub fn asked(&self) -> usize {
        self.asked.get()
    }
}

impl StaticAssets for MemoryAssets {
    async fn fetch(
        &self,
        request: &Request<Body>,
        stream_above: u64,
    ) -> Result<Response<Body>, StoreError> {
        self.asked.set(self.asked.get() + 1);
        let path = request.uri().path();
        let path = if path.ends_with('/') {
            format!("{path}index.html")
        } else {
            path.to_owned()
        };
        let mut response = match self.files.get(&path) {
            Some((content_type, body)) => {
                let mut r = Response::new(body.clone());
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                r
            }
            None => {
                let mut r = Response::new(Body::new());
                *r.status_mut() = StatusCode::NOT_FOUND;
                r
            }
        };
        if request.method() == http::Method::HEAD {
            *response.body_mut() = Body::new();
        }
        Ok(self.streams.respond(response, stream_above))
    }
}

/// A clock the test moves by hand. Clones share the same time.
#[derive(Clone, Default)]
pub struct ManualClock {
    now_ms: Rc<Cell<u64>>,
}

impl ManualClock {
    pub fn at(now_ms: u64) -> Self {
        Self {
            now_ms: Rc::new(Cell::new(now_ms)),
        }
    }

    pub fn advance_secs(&self, secs: u64) {
        self.now_ms.set(self.now_ms.get() + secs * 1000);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.get()
    }

    /// Moves the clock by `ms` and yields once, as a timer would.
    async fn sleep(&self, ms: u64) {
        self.now_ms.set(self.now_ms.get() + ms);
        YieldOnce(false).await;
    }
}

/// A future that is pending once, waking itself, then ready.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Background work queued until the test (or bench) runs it.
#[derive(Clone, Default)]
pub struct TaskQueue {
    tasks: Rc<RefCell<Vec<BackgroundTask>>>,
}

impl TaskQueue {
    pub fn pending(&self) -> usize {
        self.tasks.borrow().len()
    }

    /// Runs every queued task (and any they queue) to completion.
    pub async fn run_all(&self) {
        loop {
            let batch: Vec<BackgroundTask> = self.tasks.borrow_mut().drain(..).collect();
            if batch.is_empty() {
                return;
            }
            for task in batch {
                task.await;
            }
        }
    }
}

impl Background for TaskQueue {
    fn spawn(&self, task: BackgroundTask) {
        self.tasks.borrow_mut().push(task);
    }
}

/// Shared health results in memory (what KV holds on Workers).
#[derive(Clone, Default)]
pub struct MemoryHealthStore {
    results: Rc<RefCell<Vec<SharedHealth>>>,
}

impl HealthStore for MemoryHealthStore {
    async fn load(&self) -> Result<Vec<SharedHealth>, StoreError> {
        Ok(self.results.borrow().clone())
    }

    async fn save(&self, results: &[SharedHealth]) -> Result<(), StoreError> {
        *self.results.borrow_mut() = results.to_vec();
        Ok(())
    }
}

/// A global store in a hash map (what KV is on Workers); TTLs are not enforced.
#[derive(Clone, Default)]
pub struct MemoryGlobalStore {
    entries: Rc<RefCell<HashMap<String, Vec<u8>>>>,
}

impl MemoryGlobalStore {
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.borrow().is_empty()
    }
}

impl GlobalStore for MemoryGlobalStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.entries.borrow().get(key).cloned())
    }

    async fn put(&self, key: &str, value: Vec<u8>, _ttl_secs: u64) -> Result<(), StoreError> {
        self.entries.borrow_mut().insert(key.to_owned(), value);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.entries.borrow_mut().remove(key);
        Ok(())
    }

    fn available(&self) -> bool {
        true
    }
}

/// Cloudflare's API as a recorder: every call is kept for the test and
/// answered with the next of `replies` (`Err`: no answer), or a success once
/// they run out.
#[derive(Clone, Default)]
pub struct MemoryCloudflareApi {
    pub calls: Rc<RefCell<Vec<Request<String>>>>,
    pub replies: Rc<RefCell<std::collections::VecDeque<Result<ApiReply, String>>>>,
}

impl CloudflareApi for MemoryCloudflareApi {
    async fn send(&self, request: Request<String>) -> Result<ApiReply, String> {
        self.calls.borrow_mut().push(request);
        if let Some(reply) = self.replies.borrow_mut().pop_front() {
            return reply;
        }
        Ok(ApiReply {
            status: 200,
            retry_after: None,
            body: r#"{"success":true,"errors":[],"messages":[],"result":{"id":"x"}}"#.to_owned(),
        })
    }
}

/// The whole in-memory platform; clones share state.
#[derive(Clone)]
pub struct MemoryPlatform {
    pub cache: MemoryCache,
    pub origin: MemoryOrigin,
    pub assets: MemoryAssets,
    pub clock: ManualClock,
    pub tasks: TaskQueue,
    pub health: MemoryHealthStore,
    pub global: MemoryGlobalStore,
    pub registry: Rc<MemoryTagRegistry>,
    pub cloudflare: MemoryCloudflareApi,
    /// Streamed bodies, shared by the origin, the asset store and the cache.
    pub streams: MemoryStreams,
}

impl MemoryPlatform {
    pub fn new(mut origin: MemoryOrigin, mut assets: MemoryAssets, now_ms: u64) -> Self {
        let streams = MemoryStreams::default();
        origin.streams = streams.clone();
        assets.streams = streams.clone();
        Self {
            cache: MemoryCache {
                entries: Rc::default(),
                streams: streams.clone(),
            },
            origin,
            assets,
            streams,
            clock: ManualClock::at(now_ms),
            tasks: TaskQueue::default(),
            health: MemoryHealthStore::default(),
            global: MemoryGlobalStore::default(),
            registry: Rc::default(),
            cloudflare: MemoryCloudflareApi::default(),
        }
    }
}

impl Platform for MemoryPlatform {
    type Cache = MemoryCache;
    type Origin = MemoryOrigin;
    type Assets = MemoryAssets;
    type Clock = ManualClock;
    type Background = TaskQueue;
    type Health = MemoryHealthStore;
    type Global = MemoryGlobalStore;
    type Registry = MemoryTagRegistry;
    type Cloudflare = MemoryCloudflareApi;
    type Streams = MemoryStreams;

    fn cache(&self) -> &MemoryCache {
        &self.cache
    }
    fn origin(&self) -> &MemoryOrigin {
        &self.origin
    }
    fn assets(&self) -> &MemoryAssets {
        &self.assets
    }
    fn clock(&self) -> &ManualClock {
        &self.clock
    }
    fn background(&self) -> &TaskQueue {
        &self.tasks
    }
    fn health(&self) -> &MemoryHealthStore {
        &self.health
    }
    fn global(&self) -> &MemoryGlobalStore {
        &self.global
    }
    fn registry(&self) -> &MemoryTagRegistry {
        &self.registry
    }
    fn cloudflare(&self) -> &MemoryCloudflareApi {
        &self.cloudflare
    }
    fn streams(&self) -> &MemoryStreams {
        &self.streams
    }
}
