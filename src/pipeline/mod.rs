//! The request pipeline: static assets, then the cache tiers, then the origin.
//! Plain Rust over `http` types, generic over the [`Platform`]; it reads time
//! only through the platform clock and does I/O only through platform traits.
//! Every cache decision is delegated to the pure modules in
//! [`crate::semantics`]; the pipeline only sequences them.
//!
//! One `impl Pipeline` block per stage, in the order a request meets them:
//! this module (entry and decoration: [`Pipeline::handle`]), `route`
//! (admission and routing), `admin` (operator endpoints), `assets` (the
//! asset store, origin bodies), `lookup` (keys and tiers), `hit` (serving a
//! stored entry), `miss` (filling from the origin), `collapse` (one fill
//! per data centre), `store` (writing and
//! invalidating), `origin` (failover and health), `view` (what the client
//! sees), `warm` (warming); `isolate` holds the state an isolate shares.

mod admin;
mod assets;
mod collapse;
mod hit;
mod isolate;
mod lookup;
mod miss;
mod origin;
mod route;
mod rules;
mod store;
mod view;
mod warm;

use std::rc::Rc;

use http::{Method, Request, Response};

use crate::admin::auth::{self, OperatorAccess, SecretToken};
use crate::config::{Config, ConfigError};
use crate::error::EdgeError;
use crate::platform::{Clock, Platform};
use crate::purge::tags;
use crate::semantics::cache_status::{CacheStatus, Forward, Outcome};
use crate::semantics::policy;
use crate::telemetry::request_log::RequestLog;
use crate::telemetry::server_timing::{self, Metric};
use crate::Body;

pub use isolate::{BoundedPathSet, IsolateState};
pub use rules::ClientCountry;
pub use warm::WarmResult;

/// The operator endpoint reporting origin health.
pub const HEALTH_PATH: &str = "/__cachefront/health";

/// Response header naming the origin that produced a forwarded response.
pub const ORIGIN_HEADER: &str = "cachefront-origin";

/// A finished request: the response to send and what to log about it.
#[derive(Debug)]
pub struct Handled {
    pub response: Response<Body>,
    pub log: RequestLog,
}

/// One origin attempt that failed before the answer (a `Server-Timing` metric).
struct FailedAttempt {
    origin: String,
    /// What failed: `connect`, `timeout` or `status 503`.
    what: String,
    ms: u64,
}

/// Details gathered while serving, folded into headers and the log.
#[derive(Default)]
struct Trace {
    /// What a purge request did (for the log line).
    purge: Option<serde_json::Value>,
    origin: Option<String>,
    origin_ms: Option<u64>,
    /// Failed attempts before the answer.
    failed_attempts: Vec<FailedAttempt>,
    warnings: Vec<String>,
    /// The cache rules matched at entry.
    rule: Option<crate::rules::Matched>,
}

/// Fields meant for this cache only (RFC 9213's targeted fields and
/// `Surrogate-Control`): never sent downstream.
fn strip_targeted_fields(headers: &mut http::HeaderMap) {
    for name in policy::TARGETED_FIELDS {
        headers.remove(name);
    }
    headers.remove(crate::semantics::surrogate_control::SURROGATE_CONTROL);
}

/// The answer to every request while the configuration is invalid: a
/// generic 500 that names nothing, except for `GET` [`HEALTH_PATH`] with the
/// operator token (`PURGE_TOKEN`, read on its own by the adapter, see
/// [`crate::config::operator_token`]), which gets the details. The details
/// are always in the log line's warnings.
pub fn config_error_response(
    err: &ConfigError,
    request: &Request<Body>,
    operator_token: Option<&SecretToken>,
) -> Handled {
    let method = request.method();
    let path = request.uri().path();
    let error = EdgeError::Config(err.clone());
    let operator = path == HEALTH_PATH
        && method == Method::GET
        && auth::operator_access(request.headers(), operator_token) == OperatorAccess::Granted;
    let mut response = if operator {
        crate::error::config_details_response(err)
    } else {
        error.to_response()
    };
    let status = CacheStatus::forward(Forward::Bypass)
        .with_outcome(Outcome::Error)
        .with_detail("config-error");
    status.apply(response.headers_mut());
    Handled {
        log: RequestLog {
            method: method.to_string(),
            path: path.to_owned(),
            status: response.status().as_u16(),
            cache: status.outcome(),
            cache_status: status.member(),
            tier: status.tier(),
            origin: None,
            origin_ms: None,
            edge_ms: 0,
            warnings: vec![error.to_string()],
            purge: None,
            rule: None,
        },
        response,
    }
}

pub struct Pipeline<P: Platform> {
    config: Rc<Config>,
    platform: P,
    isolate: IsolateState,
}

impl<P: Platform + Clone> Clone for Pipeline<P> {
    fn clone(&self) -> Self {
        Self {
            config: Rc::clone(&self.config),
            platform: self.platform.clone(),
            isolate: self.isolate.clone(),
        }
    }
}

impl<P: Platform + Clone + 'static> Pipeline<P> {
    pub fn new(config: Config, platform: P, isolate: IsolateState) -> Self {
        Self {
            config: Rc::new(config),
            platform,
            isolate,
        }
    }

    /// Like [`Pipeline::new`], for a configuration shared across requests.
    pub fn from_shared(config: Rc<Config>, platform: P, isolate: IsolateState) -> Self {
        Self {
            config,
            platform,
            isolate,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn platform(&self) -> &P {
        &self.platform
    }

    pub fn isolate(&self) -> &IsolateState {
        &self.isolate
    }

    /// The same configuration and platform as a newly started isolate sees them.
    pub fn with_fresh_isolate(&self) -> Self {
        Self {
            config: Rc::clone(&self.config),
            platform: self.platform.clone(),
            isolate: IsolateState::new(&self.config),
        }
    }

    fn now(&self) -> u64 {
        self.platform.clock().now_ms()
    }

    /// Serves one request. Never fails: errors become JSON error responses.
    pub async fn handle(&self, request: Request<Body>) -> Handled {
        let started = self.now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let mut trace = Trace::default();

        let (mut response, status) = self.serve(request, &mut trace).await;

        let edge_ms = self.now().saturating_sub(started);
        let headers = response.headers_mut();
        strip_targeted_fields(headers);
        if self.config.purge.strip_tag_headers {
            tags::strip_tag_headers(headers);
        }
        let rule = trace.rule.take();
        if let Some(matched) = &rule {
            matched.action.edit_client_headers(headers);
        }
        let rule_label = rule.as_ref().map(|m| &*m.label);
        // One member string for the header and the log line.
        let member = status.member_with_rule(rule_label);
        crate::semantics::cache_status::append_member(headers, &member);
        let mut timings = vec![Metric::new("cachefront", edge_ms).with_desc(status.outcome())];
        for failed in &trace.failed_attempts {
            let desc = format!("{}: {}", failed.origin, failed.what);
            timings.push(Metric::new("origin-failed", failed.ms).with_desc(desc));
        }
        if let (Some(origin), Some(ms)) = (&trace.origin, trace.origin_ms) {
            timings.push(Metric::new("origin", ms).with_desc(origin.clone()));
        }
        server_timing::append(headers, &timings);

        Handled {
            log: RequestLog {
                method: method.to_string(),
                path,
                status: response.status().as_u16(),
                cache: status.outcome(),
                cache_status: member,
                tier: status.tier(),
                origin: trace.origin,
                origin_ms: trace.origin_ms,
                edge_ms,
                warnings: trace.warnings,
                purge: trace.purge,
                rule: rule_label.map(str::to_owned),
            },
            response,
        }
    }
}
