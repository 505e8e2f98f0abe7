//! Talking to origins: the failover loop over the planned candidates, this
//! isolate's health book, the active health check and its report, and
//! requests passed through uncached.

use std::collections::HashMap;

use http::{HeaderValue, Request, Response};

use crate::error::{AttemptFailure, EdgeError};
use crate::origin::health::{self, Availability, OriginHealth, SharedHealth};
use crate::origin::pool::{self as origin_pool, Candidate};
use crate::origin::request as forward;
use crate::platform::body;
use crate::platform::{HealthStore, OriginError, OriginFetch, Platform};
use crate::purge::tags;
use crate::semantics::cache_status::{CacheStatus, Forward, Outcome};
use crate::Body;

use super::{Pipeline, Trace, ORIGIN_HEADER};

/// Marks an origin's failure answer passed on after every candidate failed:
/// the store decision refuses it whatever its headers say.
#[derive(Debug, Clone, Copy)]
pub(super) struct FailedOver;

/// What this isolate knows about its origins' health.
#[derive(Default)]
pub struct OriginBook {
    pub(super) health: HashMap<String, OriginHealth>,
    /// When the shared (active check) results were last read.
    pub(super) shared_loaded_ms: Option<u64>,
    pub(super) shared: Vec<SharedHealth>,
}

impl<P: Platform + Clone + 'static> Pipeline<P> {
    /// Sends a request the cache does not answer (unsafe methods, GET with a body).
    pub(super) async fn forward_uncached(
        &self,
        request: &Request<Body>,
        fwd: Forward,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        match self.send(request, |_| {}, trace).await {
            Ok(response) => {
                let status = CacheStatus::forward(fwd).with_fwd_status(response.status().as_u16());
                (response, status)
            }
            Err(err) => error_answer(err, fwd, trace),
        }
    }

    /// Reads the active health check's results when this isolate's copy is
    /// older than `HEALTH_SYNC_SECS` (one storage read per window, misses only).
    pub(super) async fn sync_shared_health(&self, trace: &mut Trace) {
        let now = self.now();
        let window_ms = self.config.health_sync_secs.saturating_mul(1000);
        {
            let mut book = self.isolate.origins.borrow_mut();
            if book
                .shared_loaded_ms
                .is_some_and(|t| now.saturating_sub(t) < window_ms)
            {
                return;
            }
            // Claimed before the read, so concurrent requests do not all read.
            book.shared_loaded_ms = Some(now);
        }
        match self.platform.health().load().await {
            Ok(results) => {
                let mut book = self.isolate.origins.borrow_mut();
                for shared in &results {
                    if self.config.origins.iter().any(|o| o.name == shared.origin) {
                        book.health
                            .entry(shared.origin.clone())
                            .or_default()
                            .apply_shared(shared);
                    }
                }
                book.shared = results;
            }
            Err(e) => trace
                .warnings
                .push(format!("health store read failed: {e}")),
        }
    }

    pub(super) fn record_health(&self, origin: &str, healthy: bool) {
        let now = self.now();
        let mut book = self.isolate.origins.borrow_mut();
        let health = book.health.entry(origin.to_owned()).or_default();
        if healthy {
            health.record_success(now);
        } else {
            health.record_failure(now, &self.config.health);
        }
    }

    /// The candidates for one request, in the order they will be tried.
    pub(super) fn plan(&self, now: u64, path: &str) -> Vec<Candidate> {
        let mut book = self.isolate.origins.borrow_mut();
        let mut availability = Vec::with_capacity(self.config.origins.len());
        let mut last_failures = Vec::with_capacity(self.config.origins.len());
        for origin in &self.config.origins {
            let health = book.health.entry(origin.name.clone()).or_default();
            availability.push(health.availability(now, &self.config.health));
            last_failures.push(health.last_failure_ms);
        }
        let seed = now ^ tags::stable_hash(path.as_bytes());
        origin_pool::candidates(&self.config.origins, &availability, &last_failures, seed)
    }

    /// Sends `request` (after `adjust` edits its headers) to the origins in
    /// failover order: the next candidate is tried after a connection error,
    /// a timeout or a failure status, for methods that may be retried, within
    /// the attempt and time budgets. A request body is sent at most once for
    /// any other method.
    pub(super) async fn send(
        &self,
        request: &Request<Body>,
        adjust: impl FnOnce(&mut http::HeaderMap),
        trace: &mut Trace,
    ) -> Result<Response<Body>, EdgeError> {
        let mut base = Request::new(request.body().clone());
        *base.method_mut() = request.method().clone();
        *base.uri_mut() = request.uri().clone();
        *base.headers_mut() = request.headers().clone();
        adjust(base.headers_mut());
        // A streamed upload can be sent once: it is not there for a retry.
        let upload = body::streamed_request(request);

        self.sync_shared_health(trace).await;
        let policy = &self.config.retry;
        let retryable = policy.may_retry(request.method()) && upload.is_none();
        let started = self.now();
        let plan = self.plan(started, request.uri().path());
        let mut failures = Vec::new();
        let mut failed_response: Option<(Response<Body>, String, u64)> = None;
        for (attempt, candidate) in plan.iter().enumerate() {
            let elapsed = self.now().saturating_sub(started);
            if attempt > 0
                && (!retryable || attempt >= policy.max_attempts || elapsed >= policy.deadline_ms)
            {
                break;
            }
            let origin = &self.config.origins[candidate.index];
            if candidate.availability == Availability::Probe {
                let now = self.now();
                let mut book = self.isolate.origins.borrow_mut();
                book.health
                    .entry(origin.name.clone())
                    .or_default()
                    .begin_probe(now);
            }
            let timeout_ms = origin
                .timeout_ms
                .min(policy.deadline_ms.saturating_sub(elapsed))
                .max(1);
            let rules = forward::ForwardRules {
                keyed: &self.config.cache_key_headers,
                extra: &self.config.forward_request_headers,
            };
            let mut origin_request = forward::origin_request(&base, origin, rules)?;
            if let Some(upload) = &upload {
                origin_request.extensions_mut().insert(upload.clone());
            }
            let sent_at = self.now();
            let result = self
                .platform
                .origin()
                .fetch(
                    origin,
                    origin_request,
                    timeout_ms,
                    self.config.stream_bodies_above_bytes,
                )
                .await;
            let took = self.now().saturating_sub(sent_at);
            match result {
                Ok(mut response) => {
                    forward::strip_hop_by_hop(response.headers_mut());
                    if let Ok(name) = HeaderValue::from_str(&origin.name) {
                        response.headers_mut().insert(ORIGIN_HEADER, name);
                    }
                    if policy.is_failure_status(response.status()) {
                        self.record_health(&origin.name, false);
                        let what = format!("status {}", response.status().as_u16());
                        trace
                            .failed_attempts
                            .push((origin.name.clone(), what, took));
                        if let Some((mut replaced, _, _)) =
                            failed_response.replace((response, origin.name.clone(), took))
                        {
                            self.drop_stream(&mut replaced);
                        }
                        continue;
                    }
                    self.record_health(&origin.name, true);
                    trace.origin = Some(origin.name.clone());
                    trace.origin_ms = Some(took);
                    return Ok(response);
                }
                Err(error) => {
                    self.record_health(&origin.name, false);
                    let what = match error {
                        OriginError::Connect(_) => "connect",
                        OriginError::Timeout(_) => "timeout",
                    };
                    trace
                        .failed_attempts
                        .push((origin.name.clone(), what.to_owned(), took));
                    trace.origin = Some(origin.name.clone());
                    failures.push(AttemptFailure {
                        origin: origin.name.clone(),
                        error,
                    });
                }
            }
        }
        if let Some((mut response, origin, took)) = failed_response {
            // Every candidate failed, and the last answer was an origin's own
            // error page: pass it on rather than inventing one, never to be stored.
            response.extensions_mut().insert(FailedOver);
            trace
                .failed_attempts
                .retain(|(name, _, ms)| !(name == &origin && *ms == took));
            trace.origin = Some(origin);
            trace.origin_ms = Some(took);
            return Ok(response);
        }
        Err(EdgeError::OriginsFailed { attempts: failures })
    }

    /// Probes every origin that has a health path, updates this isolate's
    /// view, and stores the results for every other isolate (the cron job).
    pub async fn check_origins(&self) -> Vec<SharedHealth> {
        let mut results = Vec::new();
        for origin in &self.config.origins {
            let Some(path) = &origin.health_path else {
                continue;
            };
            let probe = forward::health_probe(origin, path);
            let outcome = match probe {
                // Only the status matters: the body is left unread and dropped.
                Ok(request) => self
                    .platform
                    .origin()
                    .fetch(origin, request, origin.timeout_ms, 0)
                    .await
                    .map(|mut response| {
                        self.drop_stream(&mut response);
                        response
                    }),
                Err(e) => Err(OriginError::Connect(e.to_string())),
            };
            let (status, detail) = match &outcome {
                Ok(response) => (
                    Some(response.status().as_u16()),
                    response.status().as_u16().to_string(),
                ),
                Err(e) => (None, e.to_string()),
            };
            let result = SharedHealth {
                origin: origin.name.clone(),
                up: health::probe_is_healthy(status, origin.health_status),
                checked_ms: self.now(),
                detail,
            };
            // A failed probe marks the origin down at once (no threshold): it
            // is a deliberate check of the origin's own health endpoint.
            let mut book = self.isolate.origins.borrow_mut();
            book.health
                .entry(origin.name.clone())
                .or_default()
                .apply_shared(&result);
            drop(book);
            results.push(result);
        }
        self.isolate.origins.borrow_mut().shared = results.clone();
        if let Err(e) = self.platform.health().save(&results).await {
            results.push(SharedHealth {
                origin: String::new(),
                up: false,
                checked_ms: self.now(),
                detail: format!("saving results failed: {e}"),
            });
        }
        results
    }

    /// Each origin's state as this isolate sees it, for the health endpoint.
    pub fn origin_report(&self) -> serde_json::Value {
        let now = self.now();
        let mut book = self.isolate.origins.borrow_mut();
        let shared = book.shared.clone();
        let origins: Vec<serde_json::Value> = self
            .config
            .origins
            .iter()
            .map(|origin| {
                let health = book.health.entry(origin.name.clone()).or_default();
                let availability = health.availability(now, &self.config.health);
                let check = shared.iter().find(|s| s.origin == origin.name);
                serde_json::json!({
                    "name": origin.name,
                    "url": origin.url.as_str(),
                    "priority": origin.priority,
                    "weight": origin.weight,
                    "state": availability.as_str(),
                    "last_failure_ms": health.last_failure_ms,
                    "last_success_ms": health.last_success_ms,
                    "active_check": check.map(|c| serde_json::json!({"up": c.up, "checked_ms": c.checked_ms, "detail": c.detail})),
                })
            })
            .collect();
        serde_json::json!({ "origins": origins, "now_ms": now })
    }
}

pub(super) fn error_answer(
    err: EdgeError,
    fwd: Forward,
    trace: &mut Trace,
) -> (Response<Body>, CacheStatus) {
    trace.warnings.push(err.to_string());
    let status = CacheStatus::forward(fwd)
        .with_outcome(Outcome::Error)
        .with_detail(err.code());
    (err.to_response(), status)
}
