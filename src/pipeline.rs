//! The request pipeline: static assets, then the cache, then the origin.
//! Plain Rust over `http` types, generic over the [`Platform`]; it reads time
//! only through the platform clock and does I/O only through platform traits.

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::cache_key;
use crate::cache_status::{CacheStatus, Forward, NoStoreReason};
use crate::config::{Config, ConfigError};
use crate::error::EdgeError;
use crate::forward;
use crate::platform::{Background, CacheStore, Clock, OriginFetch, Platform, StaticAssets};
use crate::policy::{self, RequestFacts, StoreDecision};
use crate::server_timing::{self, Metric};
use crate::stored::{self, EntryMeta};
use crate::Body;

/// Response header naming the origin that produced a forwarded response.
pub const ORIGIN_HEADER: &str = "cachefront-origin";

/// One structured log line per request (what Logpush/tail consumers read).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RequestLog {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Short outcome: `asset`, `hit`, `miss`, `expired`, `bypass`, `error`.
    pub cache: &'static str,
    pub cache_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_ms: Option<u64>,
    pub edge_ms: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A finished request: the response to send and what to log about it.
#[derive(Debug)]
pub struct Handled {
    pub response: Response<Body>,
    pub log: RequestLog,
}

/// Details gathered while serving, folded into headers and the log.
#[derive(Default)]
struct Trace {
    origin: Option<String>,
    origin_ms: Option<u64>,
    warnings: Vec<String>,
    failed: bool,
}

/// The answer to every request while the configuration is invalid.
pub fn config_error_response(err: &ConfigError, method: &Method, path: &str) -> Handled {
    let error = EdgeError::Config(err.clone());
    let mut response = error.to_response();
    let status = CacheStatus::Forward {
        fwd: Forward::Bypass,
        fwd_status: None,
        stored: false,
        detail: Some("config-error"),
    };
    status.apply(response.headers_mut());
    Handled {
        log: RequestLog {
            method: method.to_string(),
            path: path.to_owned(),
            status: response.status().as_u16(),
            cache: "error",
            cache_status: status.member(),
            origin: None,
            origin_ms: None,
            edge_ms: 0,
            warnings: vec![error.to_string()],
        },
        response,
    }
}

pub struct Pipeline<P: Platform> {
    config: Config,
    platform: P,
}

impl<P: Platform> Pipeline<P> {
    pub fn new(config: Config, platform: P) -> Self {
        Self { config, platform }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// Serves one request. Never fails: errors become JSON error responses.
    pub async fn handle(&self, request: Request<Body>) -> Handled {
        let started = self.platform.clock().now_ms();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let mut trace = Trace::default();

        let (mut response, status) = self.serve(request, &mut trace).await;

        let edge_ms = self.platform.clock().now_ms().saturating_sub(started);
        let headers = response.headers_mut();
        status.apply(headers);
        let mut timings = vec![Metric::new("cachefront", edge_ms).with_desc(status.outcome())];
        if let (Some(origin), Some(ms)) = (&trace.origin, trace.origin_ms) {
            timings.push(Metric::new("origin", ms).with_desc(origin.clone()));
        }
        server_timing::append(headers, &timings);

        let cache = if trace.failed {
            "error"
        } else {
            status.outcome()
        };
        Handled {
            log: RequestLog {
                method: method.to_string(),
                path,
                status: response.status().as_u16(),
                cache,
                cache_status: status.member(),
                origin: trace.origin,
                origin_ms: trace.origin_ms,
                edge_ms,
                warnings: trace.warnings,
            },
            response,
        }
    }

    async fn serve(
        &self,
        request: Request<Body>,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        let method = request.method().clone();
        let cacheable_method = method == Method::GET || method == Method::HEAD;

        if cacheable_method {
            match self.platform.assets().fetch(&request).await {
                Ok(asset) if asset.status() != StatusCode::NOT_FOUND => {
                    return (asset, CacheStatus::asset());
                }
                Ok(_) => {}
                Err(e) => trace.warnings.push(format!("asset store failed: {e}")),
            }
        }

        if !cacheable_method {
            return self.forward(request, Forward::Method, None, trace).await;
        }

        let Some(host) = forward::request_host(&request) else {
            let err = EdgeError::BadRequest("the request has no host".into());
            trace.failed = true;
            return (err.to_response(), bypass_status());
        };
        let key = cache_key::primary_key(&self.config.cache_namespace, &host, request.uri());
        let wants_fresh = policy::request_wants_fresh(request.headers());

        let stored = match self.platform.cache().get(&key).await {
            Ok(found) => found.and_then(stored::decode),
            Err(e) => {
                trace.warnings.push(format!("cache read failed: {e}"));
                None
            }
        };
        let fwd = match stored {
            None => Forward::UriMiss,
            Some(_) if wants_fresh => Forward::Request,
            Some((response, meta)) => {
                let now = self.platform.clock().now_ms();
                let age = policy::current_age_secs(meta.initial_age_secs, meta.stored_at_ms, now);
                let ttl =
                    policy::remaining_ttl_secs(policy::freshness_lifetime(response.headers()), age);
                if ttl > 0 {
                    return (
                        serve_hit(response, &method, age),
                        CacheStatus::Hit { ttl, detail: None },
                    );
                }
                Forward::Stale
            }
        };
        self.forward(request, fwd, Some(key), trace).await
    }

    /// Sends the request to the primary origin; stores the answer when allowed.
    async fn forward(
        &self,
        request: Request<Body>,
        fwd: Forward,
        key: Option<String>,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        let origin = self.config.primary_origin();
        trace.origin = Some(origin.name.clone());
        let origin_request = match forward::origin_request(&request, origin) {
            Ok(r) => r,
            Err(err) => {
                trace.failed = true;
                return (err.to_response(), bypass_status());
            }
        };

        let sent_at = self.platform.clock().now_ms();
        let result = self.platform.origin().fetch(origin, origin_request).await;
        let received_at = self.platform.clock().now_ms();
        trace.origin_ms = Some(received_at.saturating_sub(sent_at));

        let mut response = match result {
            Ok(r) => r,
            Err(e) => {
                let err = EdgeError::from_origin(&origin.name, e);
                trace.failed = true;
                trace.warnings.push(err.to_string());
                let status = CacheStatus::Forward {
                    fwd,
                    fwd_status: None,
                    stored: false,
                    detail: Some(err.code()),
                };
                return (err.to_response(), status);
            }
        };
        forward::strip_hop_by_hop(response.headers_mut());
        if let Ok(name) = HeaderValue::from_str(&origin.name) {
            response.headers_mut().insert(ORIGIN_HEADER, name);
        }

        let facts = RequestFacts {
            method: request.method(),
            headers: request.headers(),
        };
        let body_len = u64::try_from(response.body().len()).unwrap_or(u64::MAX);
        let decision = policy::store_decision(
            facts,
            response.status(),
            response.headers(),
            body_len,
            self.config.cache_max_object_bytes,
        );
        let fwd_status = Some(response.status().as_u16());
        let (stored, detail) = match (decision, key) {
            (StoreDecision::Store { freshness_secs }, Some(key)) => {
                let response_delay_secs = received_at.saturating_sub(sent_at) / 1000;
                let initial_age = policy::age_header_secs(response.headers()) + response_delay_secs;
                let entry = stored::encode(
                    &response,
                    EntryMeta::new(received_at, initial_age),
                    freshness_secs,
                );
                let cache = self.platform.cache().clone();
                self.platform.background().spawn(Box::pin(async move {
                    // A failed write only costs a future miss; nothing to report to the client.
                    let _ = cache.put(&key, entry).await;
                }));
                (true, None)
            }
            (StoreDecision::Store { .. }, None) => (false, None),
            // `fwd=method` already says why a non-GET answer was not stored.
            (StoreDecision::Skip(NoStoreReason::Method), _) if fwd == Forward::Method => {
                (false, None)
            }
            (StoreDecision::Skip(reason), _) => (false, Some(reason.as_str())),
        };
        let status = CacheStatus::Forward {
            fwd,
            fwd_status,
            stored,
            detail,
        };
        (response, status)
    }
}

fn bypass_status() -> CacheStatus {
    CacheStatus::Forward {
        fwd: Forward::Bypass,
        fwd_status: None,
        stored: false,
        detail: None,
    }
}

/// A stored response as served to the client: current `Age`, no body for HEAD.
fn serve_hit(mut response: Response<Body>, method: &Method, age_secs: u64) -> Response<Body> {
    if let Ok(age) = HeaderValue::from_str(&age_secs.to_string()) {
        response.headers_mut().insert(header::AGE, age);
    }
    if method == Method::HEAD {
        *response.body_mut() = Body::new();
    }
    response
}
