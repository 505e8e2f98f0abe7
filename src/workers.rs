//! The Workers adapter: the only code that touches the Workers runtime. It
//! converts between `worker`/`web_sys` values and `http` types, implements the
//! platform traits over the Cache API, `fetch`, the ASSETS binding and
//! `ctx.wait_until`, and hands each request to the core pipeline.
//!
//! Requests and responses are built through `web_sys` directly: the `worker`
//! crate's `Method` maps unknown methods to GET, which a proxy must never do.

use std::cell::RefCell;
use std::pin::pin;
use std::rc::Rc;

use futures_util::future::{select, Either};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use worker::js_sys::Uint8Array;
use worker::wasm_bindgen::JsValue;
use worker::{console_log, event, web_sys, Context, Env, Fetcher};

use crate::config::{Config, OriginConfig};
use crate::health::SharedHealth;
use crate::pipeline::{self, Handled, IsolateState, Pipeline};
use crate::platform::{
    Background, BackgroundTask, CacheStore, Clock, GlobalStore, HealthStore, OriginError,
    OriginFetch, Platform, StaticAssets, StoreError,
};
use crate::registry::TagRegistryStore;
use crate::workers_registry::{DurableTagRegistry, FetchCloudflareApi};
use crate::Body;

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: worker::Request, env: Env, ctx: Context) -> worker::Result<worker::Response> {
    let host = req
        .url()
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let (handled, log_requests) = match into_http_request(req).await {
        Ok(request) => handle(request, &env, ctx).await,
        Err(err) => {
            let response = crate::error::EdgeError::BadRequest(err).to_response();
            return into_worker_response(response);
        }
    };
    if log_requests {
        if let Ok(line) = serde_json::to_string(&handled.log) {
            console_log!("{line}");
        }
    }
    // One data point per request when the dataset is bound; a no-op otherwise.
    if let Ok(dataset) = env.analytics_engine(ANALYTICS_BINDING) {
        let point = crate::analytics::data_point(&host, &handled.log);
        let indexes: Vec<&str> = point.indexes.iter().map(String::as_str).collect();
        let written = worker::AnalyticsEngineDataPointBuilder::new()
            .indexes(indexes)
            .blobs(point.blobs)
            .doubles(point.doubles)
            .write_to(&dataset);
        if let Err(e) = written {
            console_log!(
                "{}",
                serde_json::json!({"event": "analytics_write_failed", "error": e.to_string()})
            );
        }
    }
    into_worker_response(handled.response)
}

/// Workers Analytics Engine dataset for per-request data points (optional).
const ANALYTICS_BINDING: &str = "ANALYTICS";

/// Serves a request; also says whether it should be logged.
async fn handle(request: Request<Body>, env: &Env, ctx: Context) -> (Handled, bool) {
    let config = match load_config(env) {
        Ok(config) => config,
        Err(err) => {
            let path = request.uri().path();
            return (
                pipeline::config_error_response(&err, request.method(), path),
                true,
            );
        }
    };
    let log_requests = config.request_log;
    let ctx = Rc::new(ctx);
    let platform = workers_platform(env, WaitUntil(Rc::new(move |task| ctx.wait_until(task))));
    let isolate = isolate_state(&config);
    let handled = Pipeline::from_shared(config, platform, isolate)
        .handle(request)
        .await;
    (handled, log_requests)
}

fn workers_platform(env: &Env, background: WaitUntil) -> WorkersPlatform {
    WorkersPlatform {
        cache: EdgeCache,
        origin: FetchOrigin,
        assets: AssetsBinding(env.assets("ASSETS").ok()),
        clock: JsClock,
        background,
        health: KvHealthStore(env.kv(HEALTH_BINDING).ok()),
        global: KvGlobalStore(env.kv(CACHE_KV_BINDING).ok()),
        registry: RegistryBinding(DurableTagRegistry::from_env(env).ok()),
        cloudflare: FetchCloudflareApi,
    }
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
    let platform = workers_platform(&env, WaitUntil(Rc::new(move |task| ctx.wait_until(task))));
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

/// The variables a configuration was parsed from (name, value) and the result.
type ConfigMemo = (Vec<(String, Option<String>)>, Rc<Config>);

/// The configuration, parsed again only when a variable it read has changed
/// (reading a variable is cheap; parsing and validating ORIGINS is not).
fn load_config(env: &Env) -> Result<Rc<Config>, crate::config::ConfigError> {
    if let Some((seen, config)) = CONFIG.with(|memo| memo.borrow().clone()) {
        if seen
            .iter()
            .all(|(name, value)| read_var(env, name) == *value)
        {
            return Ok(config);
        }
    }
    let seen = RefCell::new(Vec::new());
    let parsed = Config::from_vars(|name| {
        let value = read_var(env, name);
        seen.borrow_mut().push((name.to_owned(), value.clone()));
        value
    })?;
    let config = Rc::new(parsed);
    CONFIG.with(|memo| *memo.borrow_mut() = Some((seen.into_inner(), Rc::clone(&config))));
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

async fn into_http_request(mut req: worker::Request) -> Result<Request<Body>, String> {
    let method = Method::from_bytes(req.inner().method().as_bytes())
        .map_err(|_| "the request method is not a valid HTTP method".to_owned())?;
    let uri: Uri = req
        .inner()
        .url()
        .parse()
        .map_err(|e| format!("the request URL cannot be parsed: {e}"))?;
    let headers = into_header_map(req.headers());
    let body = if method == Method::GET || method == Method::HEAD {
        Body::new()
    } else {
        Body::from(req.bytes().await.map_err(js_error)?)
    };
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

fn into_header_map(headers: &worker::Headers) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers.entries() {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            map.append(name, value);
        }
    }
    map
}

fn into_js_headers(map: &HeaderMap) -> Result<web_sys::Headers, JsValue> {
    let headers = web_sys::Headers::new()?;
    for (name, value) in map {
        if let Ok(value) = value.to_str() {
            headers.append(name.as_str(), value)?;
        }
    }
    Ok(headers)
}

fn into_js_request(request: &Request<Body>) -> Result<web_sys::Request, JsValue> {
    let init = web_sys::RequestInit::new();
    init.set_method(request.method().as_str());
    init.set_headers(&into_js_headers(request.headers())?.into());
    init.set_redirect(web_sys::RequestRedirect::Manual);
    if !request.body().is_empty() {
        init.set_body(&Uint8Array::from(request.body().as_ref()).into());
    }
    web_sys::Request::new_with_str_and_init(&request.uri().to_string(), &init)
}

fn into_js_response(response: Response<Body>) -> Result<web_sys::Response, JsValue> {
    let init = web_sys::ResponseInit::new();
    init.set_status(response.status().as_u16());
    init.set_headers(&into_js_headers(response.headers())?.into());
    let status = response.status();
    // 1xx, 204, 205 and 304 responses must not carry a body (Fetch standard).
    let null_body = status.is_informational()
        || matches!(
            status,
            StatusCode::NO_CONTENT | StatusCode::RESET_CONTENT | StatusCode::NOT_MODIFIED
        );
    if null_body || response.body().is_empty() {
        web_sys::Response::new_with_opt_str_and_init(None, &init)
    } else {
        let mut bytes = response.into_body().to_vec();
        web_sys::Response::new_with_opt_u8_array_and_init(Some(&mut bytes), &init)
    }
}

fn into_worker_response(response: Response<Body>) -> worker::Result<worker::Response> {
    into_js_response(response)
        .map(worker::Response::from)
        .map_err(|e| worker::Error::JsError(js_error(e)))
}

async fn from_worker_response(mut response: worker::Response) -> Result<Response<Body>, String> {
    let status = StatusCode::from_u16(response.status_code()).map_err(|e| e.to_string())?;
    let headers = into_header_map(response.headers());
    let body = response.bytes().await.map(Body::from).unwrap_or_default();
    let mut out = Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// The data centre's Cache API (`caches.default`).
#[derive(Clone, Copy)]
pub struct EdgeCache;

impl CacheStore for EdgeCache {
    async fn get(&self, key: &str) -> Result<Option<Response<Body>>, StoreError> {
        let found = worker::Cache::default()
            .get(key, false)
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        match found {
            Some(response) => from_worker_response(response)
                .await
                .map(Some)
                .map_err(StoreError),
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, response: Response<Body>) -> Result<(), StoreError> {
        let response = into_worker_response(response).map_err(|e| StoreError(e.to_string()))?;
        worker::Cache::default()
            .put(key, response)
            .await
            .map_err(|e| StoreError(e.to_string()))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let outcome = worker::Cache::default()
            .delete(key, false)
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(matches!(outcome, worker::CacheDeletionOutcome::Success))
    }
}

/// Origins reached with the runtime's `fetch`.
#[derive(Clone, Copy)]
pub struct FetchOrigin;

impl OriginFetch for FetchOrigin {
    async fn fetch(
        &self,
        _origin: &OriginConfig,
        request: Request<Body>,
        timeout_ms: u64,
    ) -> Result<Response<Body>, OriginError> {
        let js_request =
            into_js_request(&request).map_err(|e| OriginError::Connect(js_error(e)))?;
        let controller = worker::AbortController::default();
        let signal = controller.signal();
        let attempt = async {
            let fetch = worker::Fetch::Request(worker::Request::from(js_request));
            let response = fetch
                .send_with_signal(&signal)
                .await
                .map_err(|e| OriginError::Connect(e.to_string()))?;
            // The body is read inside the deadline too: a stalled body is a timeout.
            from_worker_response(response)
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
pub struct AssetsBinding(Option<Fetcher>);

impl StaticAssets for AssetsBinding {
    async fn fetch(&self, request: &Request<Body>) -> Result<Response<Body>, StoreError> {
        let Some(fetcher) = &self.0 else {
            let mut none = Response::new(Body::new());
            *none.status_mut() = StatusCode::NOT_FOUND;
            return Ok(none);
        };
        let mut asset_request = Request::new(Body::new());
        *asset_request.method_mut() = request.method().clone();
        *asset_request.uri_mut() = request.uri().clone();
        *asset_request.headers_mut() = request.headers().clone();
        let js_request = into_js_request(&asset_request).map_err(|e| StoreError(js_error(e)))?;
        let response = fetcher
            .fetch_request(worker::Request::from(js_request))
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        from_worker_response(response).await.map_err(StoreError)
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

impl TagRegistryStore for RegistryBinding {
    async fn purge(
        &self,
        shard: u32,
        keys: &[String],
        soft: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        match &self.0 {
            Some(registry) => registry.purge(shard, keys, soft, now_ms).await,
            None => Err(StoreError("the TAG_REGISTRY binding is missing".into())),
        }
    }

    async fn lookup(
        &self,
        shard: u32,
        keys: &[String],
    ) -> Result<std::collections::HashMap<String, crate::registry::TagPurgeTimes>, StoreError> {
        match &self.0 {
            Some(registry) => registry.lookup(shard, keys).await,
            None => Err(StoreError("the TAG_REGISTRY binding is missing".into())),
        }
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
            Some(json) => serde_json::from_str(&json).map_err(|e| StoreError(e.to_string())),
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
}
