//! The Workers adapter: the only code that touches the Workers runtime. It
//! converts between `worker`/`web_sys` values and `http` types, implements the
//! platform traits over the Cache API, `fetch`, the ASSETS binding and
//! `ctx.wait_until`, and hands each request to the core pipeline.
//!
//! Requests and responses are built through `web_sys` directly: the `worker`
//! crate's `Method` maps unknown methods to GET, which a proxy must never do.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use futures_util::future::{select, Either};
use futures_util::StreamExt;

use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{console_log, event, web_sys, Context, Env, Fetcher};

use crate::config::Config;
use crate::origin::health::SharedHealth;
use crate::origin::pool::OriginConfig;
use crate::pipeline::{self, Handled, IsolateState, Pipeline};
use crate::platform::body::{self, BodyPlan, Streamed};
use crate::platform::head;
use crate::platform::workers_registry::{DurableTagRegistry, FetchCloudflareApi};
use crate::platform::{
    Background, BackgroundTask, BodyStreams, CacheStore, Clock, GlobalStore, HealthStore,
    OriginError, OriginFetch, Platform, StaticAssets, StoreError, StreamReadError,
};
use crate::purge::registry::TagRegistryStore;
use crate::Body;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

/// The fetch entry (what `#[event(fetch)]` would export, without its
/// promise). The request is served up to its first wait within this call:
/// one that needs no I/O, such as a memory-tier hit, is answered here with
/// its `Response`, and the runtime gets a promise only for one that waits.
/// That saves such a request wasm-bindgen's future machinery (a `Promise`
/// with its closures, a microtask for the first poll, the task's waker).
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn fetch(req: web_sys::Request, env: Env, ctx: worker::worker_sys::Context) -> JsValue {
    let mut served = Box::pin(serve_fetch(req, env, Context::new(ctx)));
    // A future registers the waker of its latest poll; the executor below
    // polls again first thing, so nothing is lost by this one's doing nothing.
    let mut first = std::task::Context::from_waker(std::task::Waker::noop());
    match served.as_mut().poll(&mut first) {
        Poll::Ready(result) => fetch_answer(result),
        Poll::Pending => worker::wasm_bindgen_futures::future_to_promise(async move {
            Ok(fetch_answer(served.await))
        })
        .into(),
    }
}

/// What the runtime gets for a request: its response, or, as
/// `#[event(fetch)]` answers it, a plain 500 after logging why.
fn fetch_answer(result: worker::Result<web_sys::Response>) -> JsValue {
    let error = match result {
        Ok(response) => return response.into(),
        Err(error) => error,
    };
    worker::console_error!("{}", error);
    match worker::Response::error("INTERNAL SERVER ERROR", 500) {
        Ok(response) => web_sys::Response::from(response).into(),
        Err(error) => JsValue::from_str(&error.to_string()),
    }
}

async fn serve_fetch(
    req: web_sys::Request,
    env: Env,
    ctx: Context,
) -> worker::Result<web_sys::Response> {
    let streams = JsStreams::default();
    let (bindings, env_seen) = bindings(&env);
    // With a broken configuration the request is refused: its body is never read.
    let config = load_config(&env, env_seen);
    let stream_above = config
        .as_ref()
        .map_or(0, |config| config.stream_bodies_above_bytes);
    // The country is read from `request.cf` only when a rule keys on it.
    let wants_country = config
        .as_ref()
        .is_ok_and(|config| config.rules.keys_country());
    let request = match into_http_request(req, &streams, stream_above, wants_country).await {
        Ok(request) => request,
        Err(err) => {
            let response = crate::error::EdgeError::BadRequest(err).to_response();
            return into_worker_response(response, &streams);
        }
    };
    let host = request.uri().host().unwrap_or_default().to_owned();
    let (handled, log_requests) = handle(request, config, &env, &bindings, ctx, &streams).await;
    // One data point per request when the dataset is bound; a no-op otherwise.
    let analytics = bindings.analytics.as_ref().map(|dataset| {
        let point = crate::telemetry::analytics::data_point(&host, &handled.log);
        let indexes: Vec<&str> = point.indexes.iter().map(String::as_str).collect();
        worker::AnalyticsEngineDataPointBuilder::new()
            .indexes(indexes)
            .blobs(point.blobs)
            .doubles(point.doubles)
            .write_to(dataset)
    });
    if let Some(Err(e)) = &analytics {
        console_log!(
            "{}",
            serde_json::json!({"event": "analytics_write_failed", "error": e.to_string()})
        );
    }
    if log_requests {
        // The line says whether this request's data point was written, so
        // a binding that silently stops writing shows in the logs.
        let written = analytics.as_ref().map(Result::is_ok);
        if let Some(line) = crate::telemetry::request_log::line(&handled.log, written) {
            // One console call with one string.
            web_sys::console::log_1(&JsValue::from_str(&line));
        }
    }
    into_worker_response(handled.response, &streams)
}

/// Workers Analytics Engine dataset for per-request data points (optional).
const ANALYTICS_BINDING: &str = "ANALYTICS";

/// Serves a request; also says whether it should be logged.
async fn handle(
    request: Request<Body>,
    config: Result<Rc<Config>, crate::config::ConfigError>,
    env: &Env,
    bindings: &Bindings,
    ctx: Context,
    streams: &JsStreams,
) -> (Handled, bool) {
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            // The operator token alone, so the operator can still read why.
            let token = crate::config::operator_token(|name| read_var(env, name));
            return (
                pipeline::config_error_response(&err, &request, token.as_ref()),
                true,
            );
        }
    };
    let log_requests = config.request_log;
    let ctx = Rc::new(ctx);
    let background = WaitUntil(Rc::new(move |task| ctx.wait_until(task)));
    let platform = workers_platform(bindings, background, streams.clone());
    let isolate = isolate_state(&config);
    let handled = Pipeline::from_shared(config, platform, isolate)
        .handle(request)
        .await;
    (handled, log_requests)
}

fn workers_platform(
    bindings: &Bindings,
    background: WaitUntil,
    streams: JsStreams,
) -> WorkersPlatform {
    WorkersPlatform {
        cache: EdgeCache(streams.clone()),
        origin: FetchOrigin(streams.clone()),
        assets: AssetsBinding(bindings.assets.clone(), streams.clone()),
        clock: JsClock,
        background,
        health: KvHealthStore(bindings.health.clone()),
        global: KvGlobalStore(bindings.global.clone()),
        registry: RegistryBinding(bindings.registry.clone()),
        cloudflare: FetchCloudflareApi,
        streams,
    }
}

/// The `env` bindings a request may use, looked up once per `env` object
/// (each lookup is several calls into the runtime: a KV binding alone is six).
#[derive(Clone)]
struct Bindings {
    assets: Option<Fetcher>,
    health: Option<worker::kv::KvStore>,
    global: Option<worker::kv::KvStore>,
    registry: Option<DurableTagRegistry>,
    analytics: Option<worker::AnalyticsEngineDataset>,
}

impl Bindings {
    fn of(env: &Env) -> Self {
        Self {
            assets: env.assets("ASSETS").ok(),
            health: env.kv(HEALTH_BINDING).ok(),
            global: env.kv(CACHE_KV_BINDING).ok(),
            registry: DurableTagRegistry::from_env(env).ok(),
            analytics: env.analytics_engine(ANALYTICS_BINDING).ok(),
        }
    }
}

thread_local! {
    /// The `env` object of the last request and its bindings.
    static BINDINGS: RefCell<Option<(JsValue, Rc<Bindings>)>> = const { RefCell::new(None) };
}

/// The bindings of `env`, and whether `env` is the object the previous
/// request brought (the runtime passes one per isolate): its bindings are
/// then remembered, not looked up again, and the configuration memo needs
/// no check of its variables.
fn bindings(env: &Env) -> (Rc<Bindings>, bool) {
    let env_value: &JsValue = env.as_ref();
    let seen = BINDINGS.with(|memo| {
        let memo = memo.borrow();
        let (seen, bindings) = memo.as_ref()?;
        worker::js_sys::Object::is(seen, env_value).then(|| Rc::clone(bindings))
    });
    if let Some(bindings) = seen {
        return (bindings, true);
    }
    let bindings = Rc::new(Bindings::of(env));
    BINDINGS.with(|memo| *memo.borrow_mut() = Some((env_value.clone(), Rc::clone(&bindings))));
    (bindings, false)
}

/// KV namespace of the optional global cache tier.
const CACHE_KV_BINDING: &str = "CACHE_KV";

/// KV namespace where the scheduled health check leaves its results.
const HEALTH_BINDING: &str = "HEALTH";

/// The cron trigger: probes every origin with a health path and shares the
/// results with every isolate through KV.
#[event(scheduled)]
async fn scheduled(_event: worker::ScheduledEvent, env: Env, ctx: worker::ScheduleContext) {
    let config = match Config::from_vars(|name| read_var(&env, name)) {
        Ok(config) => config,
        Err(err) => {
            console_log!(
                "{}",
                serde_json::json!({"event": "health_check", "error": err.to_string()})
            );
            return;
        }
    };
    let ctx = Rc::new(ctx);
    let background = WaitUntil(Rc::new(move |task| ctx.wait_until(task)));
    let platform = workers_platform(&Bindings::of(&env), background, JsStreams::default());
    let isolate = isolate_state(&config);
    let pipeline = Pipeline::new(config, platform, isolate);
    let results = pipeline.check_origins().await;
    console_log!(
        "{}",
        serde_json::json!({"event": "health_check", "results": results})
    );
    let warmed = pipeline.warm_configured().await;
    if !warmed.is_empty() {
        console_log!("{}", serde_json::json!({"event": "warm", "warmed": warmed}));
    }
}

thread_local! {
    /// The parsed configuration and the variable values it was parsed from.
    static CONFIG: RefCell<Option<ConfigMemo>> = const { RefCell::new(None) };
}

/// What a configuration was parsed from: the variables read (name, value),
/// and the result.
type ConfigMemo = (Vec<(String, Option<String>)>, Rc<Config>);

/// The configuration, parsed again only when a variable it read has changed
/// (parsing and validating ORIGINS is not cheap). The same `env` object as
/// last time (`env_seen`, see [`bindings`]) needs no check at all;
/// another one has each variable compared.
fn load_config(env: &Env, env_seen: bool) -> Result<Rc<Config>, crate::config::ConfigError> {
    // Checked in place: cloning the memo would copy every variable's value
    // (CACHE_RULES can be kilobytes) on every request.
    let remembered = CONFIG.with(|memo| {
        let mut memo = memo.borrow_mut();
        let (seen, config) = memo.as_mut()?;
        if env_seen
            || seen
                .iter()
                .all(|(name, value)| read_var(env, name) == *value)
        {
            return Some(Rc::clone(config));
        }
        None
    });
    if let Some(config) = remembered {
        return Ok(config);
    }
    let seen = RefCell::new(Vec::new());
    let parsed = Config::from_vars(|name| {
        let value = read_var(env, name);
        seen.borrow_mut().push((name.to_owned(), value.clone()));
        value
    })?;
    let config = Rc::new(parsed);
    CONFIG.with(|memo| {
        *memo.borrow_mut() = Some((seen.into_inner(), Rc::clone(&config)));
    });
    Ok(config)
}

thread_local! {
    /// Lives as long as the isolate: the memory tier and in-flight fetches.
    static ISOLATE: RefCell<Option<IsolateState>> = const { RefCell::new(None) };
}

fn isolate_state(config: &Config) -> IsolateState {
    ISOLATE.with(|cell| {
        let mut slot = cell.borrow_mut();
        match slot.as_ref() {
            Some(state) if state.fits(config) => state.clone(),
            _ => {
                let state = IsolateState::new(config);
                *slot = Some(state.clone());
                state
            }
        }
    })
}

/// Reads a variable whether it was declared as a string or as TOML/JSON data.
fn read_var(env: &Env, name: &str) -> Option<String> {
    let env_value: &JsValue = env.as_ref();
    let value = worker::js_sys::Reflect::get(env_value, &JsValue::from_str(name)).ok()?;
    if value.is_undefined() || value.is_null() {
        return None;
    }
    if let Some(text) = value.as_string() {
        return Some(text);
    }
    worker::js_sys::JSON::stringify(&value).ok()?.as_string()
}

fn js_error(e: impl std::fmt::Debug) -> String {
    format!("{e:?}")
}

// The runtime side of [`crate::platform::head`]: heads cross as one string.
#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export function cf_request_head(request) {
  let head = request.method + "\n" + request.url + "\n";
  for (const [name, value] of request.headers) head += name + "\n" + value + "\n";
  return head;
}
export function cf_response_head(response) {
  let head = response.status + "\n";
  for (const [name, value] of response.headers) head += name + "\n" + value + "\n";
  return head;
}
export function cf_headers(lines) {
  const headers = new Headers();
  const parts = lines.split("\n");
  for (let i = 0; i + 1 < parts.length; i += 2) headers.append(parts[i], parts[i + 1]);
  return headers;
}
export function cf_response(status, lines, body) {
  return new Response(body, { status, headers: cf_headers(lines) });
}
"#)]
extern "C" {
    /// The method, the URL and the header lines of a request.
    fn cf_request_head(request: &web_sys::Request) -> String;
    /// The status and the header lines of a response.
    fn cf_response_head(response: &web_sys::Response) -> String;
    #[wasm_bindgen(catch)]
    fn cf_headers(lines: &str) -> Result<web_sys::Headers, JsValue>;
    /// A response with a body of `null` or a stream.
    #[wasm_bindgen(catch)]
    fn cf_response(status: u16, lines: &str, body: &JsValue) -> Result<web_sys::Response, JsValue>;
    /// A response with these bytes as its body (the constructor copies
    /// them out of the wasm memory).
    #[wasm_bindgen(catch, js_name = cf_response)]
    fn cf_response_bytes(
        status: u16,
        lines: &str,
        body: &[u8],
    ) -> Result<web_sys::Response, JsValue>;
}

/// Converts the incoming request; an upload above `stream_above` bytes stays a
/// stream (see [`crate::platform::body`]), a smaller one is read.
async fn into_http_request(
    raw: web_sys::Request,
    streams: &JsStreams,
    stream_above: u64,
    wants_country: bool,
) -> Result<Request<Body>, String> {
    let country = if wants_country {
        worker::Request::from(<web_sys::Request as Clone>::clone(&raw))
            .cf()
            .and_then(|cf| cf.country())
    } else {
        None
    };
    let head = cf_request_head(&raw);
    let Some((first, headers)) = head::parse(&head, 2) else {
        return Err("the request head cannot be read".to_owned());
    };
    let method = Method::from_bytes(first[0].as_bytes())
        .map_err(|_| "the request method is not a valid HTTP method".to_owned())?;
    let uri: Uri = first[1]
        .parse()
        .map_err(|e| format!("the request URL cannot be parsed: {e}"))?;
    let len = body::content_length(&headers);
    // A GET or HEAD body is never read (nor is the stream asked for).
    let body_stream = if method == Method::GET || method == Method::HEAD {
        None
    } else {
        raw.body()
    };
    let (body, upload) = match body_stream {
        None => (Body::new(), None),
        Some(stream) => match body::plan(len, stream_above) {
            BodyPlan::Buffer => (read_whole(raw.array_buffer()).await?, None),
            BodyPlan::Stream => (Body::new(), Some(streams.keep(stream, len))),
            BodyPlan::ReadUpTo(limit) => read_up_to(stream, limit, streams).await?,
        },
    };
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    if let Some(upload) = upload {
        request.extensions_mut().insert(upload);
    }
    if let Some(country) = country {
        request
            .extensions_mut()
            .insert(crate::pipeline::ClientCountry(country));
    }
    Ok(request)
}

fn into_js_headers(map: &HeaderMap) -> Result<web_sys::Headers, JsValue> {
    cf_headers(&head::lines(map))
}

fn into_js_request(
    request: &Request<Body>,
    streams: &JsStreams,
) -> Result<web_sys::Request, JsValue> {
    let init = web_sys::RequestInit::new();
    init.set_method(request.method().as_str());
    init.set_headers(&into_js_headers(request.headers())?.into());
    init.set_redirect(web_sys::RequestRedirect::Manual);
    let upload = body::streamed_request(request).and_then(|upload| streams.take(&upload));
    if let Some(upload) = upload {
        init.set_body(&upload.into());
    } else if !request.body().is_empty() {
        init.set_body(&Uint8Array::from(request.body().as_ref()).into());
    }
    web_sys::Request::new_with_str_and_init(&request.uri().to_string(), &init)
}

/// The runtime response for `response`: built in one call (status, header
/// lines, body), the body copied once, straight out of the stored bytes.
fn into_js_response(
    mut response: Response<Body>,
    streams: &JsStreams,
) -> Result<web_sys::Response, JsValue> {
    let status = response.status();
    let lines = head::lines(response.headers());
    // 1xx, 204, 205 and 304 responses must not carry a body (Fetch standard).
    let null_body = status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::RESET_CONTENT | StatusCode::NOT_MODIFIED
        );
    if let Some(stream) = body::unmark(&mut response) {
        if null_body {
            streams.cancel(stream);
        } else if let Some(stream) = streams.take(&stream) {
            return cf_response(status.as_u16(), &lines, &stream.into());
        }
    }
    if null_body || response.body().is_empty() {
        cf_response(status.as_u16(), &lines, &JsValue::NULL)
    } else {
        cf_response_bytes(status.as_u16(), &lines, response.body())
    }
}

fn into_worker_response(
    response: Response<Body>,
    streams: &JsStreams,
) -> worker::Result<web_sys::Response> {
    into_js_response(response, streams).map_err(|e| worker::Error::JsError(js_error(e)))
}

/// Converts a runtime response; a body above `stream_above` bytes is left in
/// the runtime as a stream (see [`crate::platform::body`]), a smaller one is read.
async fn from_js_response(
    raw: web_sys::Response,
    stream_above: u64,
    streams: &JsStreams,
) -> Result<Response<Body>, String> {
    let head = cf_response_head(&raw);
    let Some((first, headers)) = head::parse(&head, 1) else {
        return Err("the response head cannot be read".to_owned());
    };
    let status = first[0]
        .parse::<u16>()
        .map_err(|e| e.to_string())
        .and_then(|code| StatusCode::from_u16(code).map_err(|e| e.to_string()))?;
    let len = body::content_length(&headers);
    let (bytes, stream) = match (raw.body(), body::plan(len, stream_above)) {
        (None, _) => (Body::new(), None),
        (Some(_), BodyPlan::Buffer) => (read_whole(raw.array_buffer()).await?, None),
        (Some(stream), BodyPlan::Stream) => (Body::new(), Some(streams.keep(stream, len))),
        (Some(stream), BodyPlan::ReadUpTo(limit)) => read_up_to(stream, limit, streams).await?,
    };
    let mut out = Response::new(bytes);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    if let Some(stream) = stream {
        body::mark(&mut out, stream);
    }
    Ok(out)
}

/// [`from_js_response`] for a response the `worker` crate wrapped.
async fn from_worker_response(
    response: worker::Response,
    stream_above: u64,
    streams: &JsStreams,
) -> Result<Response<Body>, String> {
    from_js_response(response.into(), stream_above, streams).await
}

/// Reads a body known to be small (the `arrayBuffer()` promise of a request
/// or response) in one copy out of the runtime.
async fn read_whole(
    array_buffer: Result<worker::js_sys::Promise, JsValue>,
) -> Result<Body, String> {
    let buffer = worker::wasm_bindgen_futures::JsFuture::from(array_buffer.map_err(js_error)?)
        .await
        .map_err(js_error)?;
    Ok(Body::from(Uint8Array::new(&buffer).to_vec()))
}

/// Reads a body of unknown length: whole if it ends within `limit` bytes,
/// else a stream of what was read followed by the rest. Chunks stay in the
/// runtime until the body is known to fit.
async fn read_up_to(
    stream: web_sys::ReadableStream,
    limit: u64,
    streams: &JsStreams,
) -> Result<(Body, Option<Streamed>), String> {
    let mut chunks = wasm_streams::ReadableStream::from_raw(stream.unchecked_into()).into_stream();
    let mut held: Vec<Uint8Array> = Vec::new();
    let mut total: u64 = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = as_bytes(chunk.map_err(js_error)?);
        total += u64::from(chunk.length());
        held.push(chunk);
        if total > limit {
            let read = futures_util::stream::iter(held.into_iter().map(|c| Ok(JsValue::from(c))));
            let whole = wasm_streams::ReadableStream::from_stream(read.chain(chunks)).into_raw();
            return Ok((
                Body::new(),
                Some(streams.keep(whole.unchecked_into(), None)),
            ));
        }
    }
    let mut bytes = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for chunk in held {
        let at = bytes.len();
        bytes.resize(at + chunk.length() as usize, 0);
        chunk.copy_to(&mut bytes[at..]);
    }
    Ok((Body::from(bytes), None))
}

/// A body chunk as bytes (streams from the runtime yield `Uint8Array`s).
fn as_bytes(chunk: JsValue) -> Uint8Array {
    match chunk.dyn_into::<Uint8Array>() {
        Ok(array) => array,
        Err(other) => Uint8Array::new(&other),
    }
}

/// The streamed bodies of one request (see [`crate::platform::body`]): runtime streams
/// the core routes by id. Dropped with the request's platform, so a stream
/// the core forgot cannot outlive it.
#[derive(Clone, Default)]
pub struct JsStreams(Rc<RefCell<StreamSlots>>);

#[derive(Default)]
struct StreamSlots {
    next_id: u64,
    open: HashMap<u64, web_sys::ReadableStream>,
}

impl JsStreams {
    fn keep(&self, stream: web_sys::ReadableStream, len: Option<u64>) -> Streamed {
        let mut slots = self.0.borrow_mut();
        slots.next_id += 1;
        let id = slots.next_id;
        slots.open.insert(id, stream);
        Streamed { id, len }
    }

    fn take(&self, stream: &Streamed) -> Option<web_sys::ReadableStream> {
        self.0.borrow_mut().open.remove(&stream.id)
    }
}

impl BodyStreams for JsStreams {
    fn tee(&self, stream: Streamed) -> (Streamed, Streamed) {
        let Some(raw) = self.take(&stream) else {
            return (stream.clone(), stream);
        };
        let branches = raw.tee();
        let first: web_sys::ReadableStream = branches.get(0).unchecked_into();
        let second: web_sys::ReadableStream = branches.get(1).unchecked_into();
        (self.keep(first, stream.len), self.keep(second, stream.len))
    }

    fn slice(&self, stream: Streamed, start: u64, end: u64) -> Streamed {
        let Some(raw) = self.take(&stream) else {
            return stream;
        };
        let chunks = wasm_streams::ReadableStream::from_raw(raw.unchecked_into()).into_stream();
        let piece = chunks
            .scan(0u64, move |offset, chunk| {
                let next = match chunk {
                    Err(e) => Some(Some(Err(e))),
                    Ok(chunk) => {
                        let chunk = as_bytes(chunk);
                        let at = *offset;
                        *offset += u64::from(chunk.length());
                        if at >= end {
                            None // past the range: stop reading
                        } else {
                            let part = body::window(at, u64::from(chunk.length()), start, end);
                            Some(part.map(|(from, to)| {
                                // Both bounds lie within the chunk, whose length is a u32.
                                let sub = chunk.subarray(from as u32, to as u32);
                                Ok(JsValue::from(sub))
                            }))
                        }
                    }
                };
                futures_util::future::ready(next)
            })
            .filter_map(futures_util::future::ready);
        let raw = wasm_streams::ReadableStream::from_stream(piece).into_raw();
        self.keep(raw.unchecked_into(), Some(end.saturating_sub(start)))
    }

    fn cancel(&self, stream: Streamed) {
        if let Some(raw) = self.take(&stream) {
            // The promise only reports the cancellation; nothing waits for it.
            let _ = raw.cancel();
        }
    }
    async fn read_to_end(&self, stream: Streamed, limit: u64) -> Result<Body, StreamReadError> {
        if stream.len.is_some_and(|len| len > limit) {
            self.cancel(stream);
            return Err(StreamReadError::TooLarge { limit });
        }
        let Some(raw) = self.take(&stream) else {
            return Err(StreamReadError::Failed(format!(
                "no open stream {}",
                stream.id
            )));
        };
        let mut chunks = wasm_streams::ReadableStream::from_raw(raw.unchecked_into()).into_stream();
        let mut bytes: Vec<u8> = Vec::new();
        while let Some(chunk) = chunks.next().await {
            let chunk = as_bytes(chunk.map_err(|e| StreamReadError::Failed(js_error(e)))?);
            let at = bytes.len();
            let len = chunk.length() as usize;
            if (at as u64).saturating_add(len as u64) > limit {
                // Dropping `chunks` cancels the rest of the stream unread.
                return Err(StreamReadError::TooLarge { limit });
            }
            bytes.resize(at + len, 0);
            chunk.copy_to(&mut bytes[at..]);
        }
        Ok(Body::from(bytes))
    }
}

/// The data centre's Cache API (`caches.default`).
#[derive(Clone)]
pub struct EdgeCache(JsStreams);

thread_local! {
    /// `caches.default`, looked up once per isolate.
    static DEFAULT_CACHE: Option<web_sys::Cache> = {
        let global: web_sys::WorkerGlobalScope = worker::js_sys::global().unchecked_into();
        let caches = global.caches().ok();
        caches.map(|caches| worker::worker_sys::ext::CacheStorageExt::default(&caches))
    };
}

fn default_cache() -> Result<web_sys::Cache, StoreError> {
    DEFAULT_CACHE
        .with(Clone::clone)
        .ok_or_else(|| StoreError("the runtime has no caches.default".into()))
}

async fn settled(promise: worker::js_sys::Promise) -> Result<JsValue, StoreError> {
    worker::wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(|e| StoreError(js_error(e)))
}

impl CacheStore for EdgeCache {
    async fn get(
        &self,
        key: &str,
        stream_above: u64,
    ) -> Result<Option<Response<Body>>, StoreError> {
        let found = settled(default_cache()?.match_with_str(key)).await?;
        if found.is_undefined() || found.is_null() {
            return Ok(None);
        }
        from_js_response(found.unchecked_into(), stream_above, &self.0)
            .await
            .map(Some)
            .map_err(StoreError)
    }

    async fn put(&self, key: &str, response: Response<Body>) -> Result<(), StoreError> {
        let response = into_js_response(response, &self.0).map_err(|e| StoreError(js_error(e)))?;
        settled(default_cache()?.put_with_str(key, &response))
            .await
            .map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let deleted = settled(default_cache()?.delete_with_str(key)).await?;
        Ok(deleted.as_bool() == Some(true))
    }
}

/// Origins reached with the runtime's `fetch`.
#[derive(Clone)]
pub struct FetchOrigin(JsStreams);

impl OriginFetch for FetchOrigin {
    async fn fetch(
        &self,
        _origin: &OriginConfig,
        request: Request<Body>,
        timeout_ms: u64,
        stream_above: u64,
    ) -> Result<Response<Body>, OriginError> {
        let js_request =
            into_js_request(&request, &self.0).map_err(|e| OriginError::Connect(js_error(e)))?;
        let controller = worker::AbortController::default();
        let signal = controller.signal();
        let attempt = async {
            let fetch = worker::Fetch::Request(worker::Request::from(js_request));
            let response = fetch
                .send_with_signal(&signal)
                .await
                .map_err(|e| OriginError::Connect(e.to_string()))?;
            // A body read here is read inside the deadline too: a stalled body is
            // a timeout. A streamed body is the client's to wait for.
            from_worker_response(response, stream_above, &self.0)
                .await
                .map_err(OriginError::Connect)
        };
        let timer = worker::Delay::from(std::time::Duration::from_millis(timeout_ms));
        let outcome = match select(pin!(attempt), pin!(timer)).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => {
                controller.abort();
                Err(OriginError::Timeout(format!(
                    "no answer within {timeout_ms} ms"
                )))
            }
        };
        outcome
    }
}

/// The static assets binding (`[assets] binding = "ASSETS"`), if configured.
#[derive(Clone)]
pub struct AssetsBinding(Option<Fetcher>, JsStreams);

impl StaticAssets for AssetsBinding {
    async fn fetch(
        &self,
        request: &Request<Body>,
        stream_above: u64,
    ) -> Result<Response<Body>, StoreError> {
        let Some(fetcher) = &self.0 else {
            let mut none = Response::new(Body::new());
            *none.status_mut() = StatusCode::NOT_FOUND;
            return Ok(none);
        };
        let mut asset_request = Request::new(Body::new());
        *asset_request.method_mut() = request.method().clone();
        *asset_request.uri_mut() = request.uri().clone();
        *asset_request.headers_mut() = request.headers().clone();
        let js_request =
            into_js_request(&asset_request, &self.1).map_err(|e| StoreError(js_error(e)))?;
        let response = fetcher
            .fetch_request(worker::Request::from(js_request))
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        from_worker_response(response, stream_above, &self.1)
            .await
            .map_err(StoreError)
    }
}

/// `Date.now()`; it advances only across I/O inside the Workers runtime.
#[derive(Clone, Copy)]
pub struct JsClock;

impl Clock for JsClock {
    fn now_ms(&self) -> u64 {
        worker::Date::now().as_millis()
    }

    async fn sleep(&self, ms: u64) {
        worker::Delay::from(std::time::Duration::from_millis(ms)).await;
    }
}

/// Background work kept alive with `waitUntil` of the fetch or scheduled event.
#[derive(Clone)]
pub struct WaitUntil(Rc<dyn Fn(BackgroundTask)>);

impl Background for WaitUntil {
    fn spawn(&self, task: BackgroundTask) {
        (self.0)(task);
    }
}

/// The tag registry's Durable Objects, if the `TAG_REGISTRY` binding exists.
#[derive(Clone)]
pub struct RegistryBinding(Option<DurableTagRegistry>);

impl RegistryBinding {
    /// The registry, or the error every call answers without the binding.
    fn bound(&self) -> Result<&DurableTagRegistry, StoreError> {
        self.0
            .as_ref()
            .ok_or_else(|| StoreError("the TAG_REGISTRY binding is missing".into()))
    }
}

impl TagRegistryStore for RegistryBinding {
    async fn purge(
        &self,
        shard: u32,
        keys: &[String],
        soft: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.bound()?.purge(shard, keys, soft, now_ms).await
    }

    async fn lookup(
        &self,
        shard: u32,
        keys: &[String],
    ) -> Result<std::collections::HashMap<String, crate::purge::registry::TagPurgeTimes>, StoreError>
    {
        self.bound()?.lookup(shard, keys).await
    }

    async fn entries(
        &self,
        shard: u32,
        after: &str,
        limit: usize,
    ) -> Result<Vec<crate::purge::registry::RegistryEntry>, StoreError> {
        self.bound()?.entries(shard, after, limit).await
    }

    async fn merge(
        &self,
        shard: u32,
        entries: &[crate::purge::registry::RegistryEntry],
    ) -> Result<(), StoreError> {
        self.bound()?.merge(shard, entries).await
    }

    async fn sync(
        &self,
        shard: u32,
        after: Option<u64>,
        limit: usize,
    ) -> Result<crate::purge::sync::SyncPage, StoreError> {
        self.bound()?.sync(shard, after, limit).await
    }
}

/// The global cache tier in the `CACHE_KV` namespace, if bound.
#[derive(Clone)]
pub struct KvGlobalStore(Option<worker::kv::KvStore>);

impl GlobalStore for KvGlobalStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(kv) = &self.0 else { return Ok(None) };
        kv.get(key)
            .bytes()
            .await
            .map_err(|e| StoreError(e.to_string()))
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl_secs: u64) -> Result<(), StoreError> {
        let Some(kv) = &self.0 else { return Ok(()) };
        kv.put_bytes(key, &value)
            .map_err(|e| StoreError(e.to_string()))?
            // KV refuses expirations under 60 s.
            .expiration_ttl(ttl_secs.max(60))
            .execute()
            .await
            .map_err(|e| StoreError(e.to_string()))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let Some(kv) = &self.0 else { return Ok(()) };
        kv.delete(key).await.map_err(|e| StoreError(e.to_string()))
    }

    fn available(&self) -> bool {
        self.0.is_some()
    }
}

/// Active health check results in the `HEALTH` KV namespace, if bound: one
/// JSON document, so a reader needs one KV read.
#[derive(Clone)]
pub struct KvHealthStore(Option<worker::kv::KvStore>);

const HEALTH_KEY: &str = "origin-health";

impl HealthStore for KvHealthStore {
    async fn load(&self) -> Result<Vec<SharedHealth>, StoreError> {
        let Some(kv) = &self.0 else {
            return Ok(Vec::new());
        };
        let text = kv
            .get(HEALTH_KEY)
            .text()
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        match text {
            // from_slice, not from_str: one serde_json reader in the wasm (docs/assets.md).
            Some(json) => {
                serde_json::from_slice(json.as_bytes()).map_err(|e| StoreError(e.to_string()))
            }
            None => Ok(Vec::new()),
        }
    }

    async fn save(&self, results: &[SharedHealth]) -> Result<(), StoreError> {
        let Some(kv) = &self.0 else { return Ok(()) };
        let json = serde_json::to_string(results).map_err(|e| StoreError(e.to_string()))?;
        kv.put(HEALTH_KEY, json)
            .map_err(|e| StoreError(e.to_string()))?
            .execute()
            .await
            .map_err(|e| StoreError(e.to_string()))
    }
}

#[derive(Clone)]
pub struct WorkersPlatform {
    cache: EdgeCache,
    origin: FetchOrigin,
    assets: AssetsBinding,
    clock: JsClock,
    background: WaitUntil,
    health: KvHealthStore,
    global: KvGlobalStore,
    registry: RegistryBinding,
    cloudflare: FetchCloudflareApi,
    streams: JsStreams,
}

impl Platform for WorkersPlatform {
    type Cache = EdgeCache;
    type Origin = FetchOrigin;
    type Assets = AssetsBinding;
    type Clock = JsClock;
    type Background = WaitUntil;
    type Health = KvHealthStore;
    type Global = KvGlobalStore;
    type Registry = RegistryBinding;
    type Cloudflare = FetchCloudflareApi;
    type Streams = JsStreams;

    fn cache(&self) -> &EdgeCache {
        &self.cache
    }
    fn origin(&self) -> &FetchOrigin {
        &self.origin
    }
    fn assets(&self) -> &AssetsBinding {
        &self.assets
    }
    fn clock(&self) -> &JsClock {
        &self.clock
    }
    fn background(&self) -> &WaitUntil {
        &self.background
    }
    fn health(&self) -> &KvHealthStore {
        &self.health
    }
    fn global(&self) -> &KvGlobalStore {
        &self.global
    }
    fn registry(&self) -> &RegistryBinding {
        &self.registry
    }
    fn cloudflare(&self) -> &FetchCloudflareApi {
        &self.cloudflare
    }
    fn streams(&self) -> &JsStreams {
        &self.streams
    }
}
