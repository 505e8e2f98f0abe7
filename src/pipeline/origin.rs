//! Talking to origins: the failover loop over the planned candidates, the
//! isolate's health book kept up to date on the way, the active health
//! check, and requests passed through uncached.

use http::{HeaderValue, Request, Response};

use crate::error::{AttemptFailure, EdgeError};
use crate::origin::book;
use crate::origin::health::{Availability, SharedHealth};
use crate::origin::pool::OriginConfig;
use crate::origin::pool::{self as origin_pool, Candidate};
use crate::origin::request::{self as origin_request, ForwardRules};
use crate::platform::body::{self, Streamed};
use crate::platform::{HealthStore, OriginError, OriginFetch, Platform};
use crate::rules::Matched;
use crate::semantics::cache_status::{CacheStatus, Forward, Outcome};
use crate::stable_hash::stable_hash;
use crate::Body;

use super::rules::rule_of;
use super::{FailedAttempt, Pipeline, Trace, ORIGIN_HEADER};

/// Marks an origin's failure answer passed on after every candidate failed:
/// the store decision refuses it whatever its headers say.
#[derive(Debug, Clone, Copy)]
pub(super) struct FailedOver;

/// How one attempt on one origin ended.
enum Attempt {
    /// An answer to pass on.
    Answered(Response<Body>),
    /// The origin answered with a failure status (`ORIGIN_FAILURE_STATUSES`).
    FailureStatus(Response<Body>),
    /// No answer: connection failed or timed out.
    NoAnswer(OriginError),
}

/// The last failure status seen, kept in case every candidate fails.
struct FailurePage {
    response: Response<Body>,
    origin: String,
    ms: u64,
}

impl<P: Platform + Clone + 'static> Pipeline<P> {
    /// Sends a request the cache does not answer (unsafe methods, GET with a
    /// body, bypass cookies).
    pub(super) async fn pass_through(
        &self,
        request: &Request<Body>,
        fwd: Forward,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        match self.send(request, |_| {}, &[], trace).await {
            Ok(response) => {
                let status = CacheStatus::forward(fwd).with_fwd_status(response.status().as_u16());
                (response, status)
            }
            Err(err) => error_answer(err, fwd, trace),
        }
    }

    /// Which request fields reach the origin: the allow-list, the keyed ones,
    /// and the fields this URL is known to vary on.
    pub(super) fn forward_rules<'a>(
        &'a self,
        request: &'a Request<Body>,
        varied: &'a [String],
    ) -> ForwardRules<'a> {
        ForwardRules {
            keyed: &self.config.cache_key_headers,
            extra: &self.config.forward_request_headers,
            rule_keyed: rule_of(request).map_or(&[], |rule| rule.forwarded_fields()),
            varied,
        }
    }

    /// Reads the active health check's results when this isolate's copy is
    /// older than `HEALTH_SYNC_SECS` (one storage read per window, misses only).
    async fn sync_shared_health(&self, trace: &mut Trace) {
        let window_ms = self.config.health_sync_secs.saturating_mul(1000);
        if !self
            .isolate
            .origins
            .borrow_mut()
            .claim_shared_read(self.now(), window_ms)
        {
            return;
        }
        match self.platform.health().load().await {
            Ok(results) => self
                .isolate
                .origins
                .borrow_mut()
                .apply_shared(results, &self.config.origins),
            Err(e) => trace
                .warnings
                .push(format!("health store read failed: {e}")),
        }
    }

    fn record_health(&self, origin: &str, healthy: bool) {
        let now = self.now();
        self.isolate
            .origins
            .borrow_mut()
            .record(origin, healthy, now, &self.config.health);
    }

    /// The candidates for one request, in the order they will be tried:
    /// the whole pool, or the origins its cache rule routes it to.
    fn plan(&self, now: u64, path: &str, routed: Option<&[usize]>) -> Vec<Candidate> {
        let (availability, last_failures) = self.isolate.origins.borrow_mut().availability(
            &self.config.origins,
            now,
            &self.config.health,
        );
        let seed = now ^ stable_hash(path.as_bytes());
        let mut plan =
            origin_pool::candidates(&self.config.origins, &availability, &last_failures, seed);
        if let Some(routed) = routed {
            plan.retain(|candidate| routed.contains(&candidate.index));
        }
        plan
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
        varied: &[String],
        trace: &mut Trace,
    ) -> Result<Response<Body>, EdgeError> {
        let mut base = Request::new(request.body().clone());
        *base.method_mut() = request.method().clone();
        *base.uri_mut() = request.uri().clone();
        *base.headers_mut() = request.headers().clone();
        if let Some(matched) = request.extensions().get::<Matched>() {
            base.extensions_mut().insert(matched.clone());
        }
        adjust(base.headers_mut());
        // A streamed upload can be sent once: it is not there for a retry.
        let upload = body::streamed_request(request);

        self.sync_shared_health(trace).await;
        let policy = &self.config.retry;
        let retryable = policy.may_retry(request.method()) && upload.is_none();
        let started = self.now();
        let routed = rule_of(request).and_then(|rule| rule.origins.as_deref());
        let plan = self.plan(started, request.uri().path(), routed);
        let mut failures = Vec::new();
        let mut failure_page: Option<FailurePage> = None;
        let mut attempts = 0;
        for (attempt, candidate) in plan.iter().enumerate() {
            let elapsed = self.now().saturating_sub(started);
            if attempt > 0
                && (!retryable || attempt >= policy.max_attempts || elapsed >= policy.deadline_ms)
            {
                break;
            }
            let origin = &self.config.origins[candidate.index];
            attempts += 1;
            let sent_at = self.now();
            let result = self
                .attempt(&base, origin, candidate, upload.as_ref(), elapsed, varied)
                .await?;
            let ms = self.now().saturating_sub(sent_at);
            let what = match result {
                Attempt::Answered(response) => {
                    self.record_health(&origin.name, true);
                    trace.origin = Some(origin.name.clone());
                    trace.origin_ms = Some(ms);
                    return Ok(response);
                }
                Attempt::FailureStatus(response) => {
                    let what = format!("status {}", response.status().as_u16());
                    let page = FailurePage {
                        response,
                        origin: origin.name.clone(),
                        ms,
                    };
                    if let Some(mut replaced) = failure_page.replace(page) {
                        self.drop_stream(&mut replaced.response);
                    }
                    what
                }
                Attempt::NoAnswer(error) => {
                    let what = match error {
                        OriginError::Connect(_) => "connect",
                        OriginError::Timeout(_) => "timeout",
                    };
                    trace.origin = Some(origin.name.clone());
                    failures.push(AttemptFailure {
                        origin: origin.name.clone(),
                        error,
                    });
                    what.to_owned()
                }
            };
            self.record_health(&origin.name, false);
            trace.failed_attempts.push(FailedAttempt {
                origin: origin.name.clone(),
                what,
                ms,
            });
        }
        match failure_page {
            Some(page) => Ok(pass_on_failure_page(page, attempts, trace)),
            None => Err(EdgeError::OriginsFailed { attempts: failures }),
        }
    }

    /// One attempt on one origin, within what is left of the deadline.
    async fn attempt(
        &self,
        base: &Request<Body>,
        origin: &OriginConfig,
        candidate: &Candidate,
        upload: Option<&Streamed>,
        elapsed: u64,
        varied: &[String],
    ) -> Result<Attempt, EdgeError> {
        let policy = &self.config.retry;
        if candidate.availability == Availability::Probe {
            let now = self.now();
            self.isolate
                .origins
                .borrow_mut()
                .begin_probe(&origin.name, now);
        }
        let timeout_ms = origin
            .timeout_ms
            .min(policy.deadline_ms.saturating_sub(elapsed))
            .max(1);
        let rules = self.forward_rules(base, varied);
        let mut outgoing = origin_request::origin_request(base, origin, rules)?;
        if let Some(upload) = upload {
            outgoing.extensions_mut().insert(upload.clone());
        }
        let stream_above = self.config.stream_bodies_above_bytes;
        let result = self
            .platform
            .origin()
            .fetch(origin, outgoing, timeout_ms, stream_above)
            .await;
        Ok(match result {
            Ok(mut response) => {
                origin_request::strip_hop_by_hop(response.headers_mut());
                if let Ok(name) = HeaderValue::from_str(&origin.name) {
                    response.headers_mut().insert(ORIGIN_HEADER, name);
                }
                if policy.is_failure_status(response.status()) {
                    Attempt::FailureStatus(response)
                } else {
                    Attempt::Answered(response)
                }
            }
            Err(error) => Attempt::NoAnswer(error),
        })
    }

    /// Probes every origin that has a health path, updates this isolate's
    /// view, and stores the results for every other isolate (the cron job).
    pub async fn check_origins(&self) -> Vec<SharedHealth> {
        let mut results = Vec::new();
        for origin in &self.config.origins {
            let Some(path) = &origin.health_path else {
                continue;
            };
            results.push(self.probe(origin, path).await);
        }
        // A failed probe marks the origin down at once (no threshold): it
        // is a deliberate check of the origin's own health endpoint.
        self.isolate
            .origins
            .borrow_mut()
            .apply_shared(results.clone(), &self.config.origins);
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

    /// One active check of `origin`'s health path.
    async fn probe(&self, origin: &OriginConfig, path: &str) -> SharedHealth {
        let outcome = match origin_request::health_probe(origin, path) {
            // Only the status matters: the body is left unread and dropped.
            Ok(request) => self
                .platform
                .origin()
                .fetch(origin, request, origin.timeout_ms, 0)
                .await
                .map(|mut response| {
                    self.drop_stream(&mut response);
                    response.status().as_u16()
                }),
            Err(e) => Err(OriginError::Connect(e.to_string())),
        };
        let (status, detail) = match outcome {
            Ok(status) => (Some(status), status.to_string()),
            Err(e) => (None, e.to_string()),
        };
        book::check_result(origin, status, detail, self.now())
    }

    /// Each origin's state as this isolate sees it, for the health endpoint.
    pub fn origin_report(&self) -> serde_json::Value {
        let now = self.now();
        self.isolate
            .origins
            .borrow_mut()
            .report(&self.config.origins, now, &self.config.health)
    }
}

/// Every candidate failed, and the last answer was an origin's own error
/// page: it is passed on rather than an invented one, never to be stored.
/// The last failure page as the answer. It is marked [`FailedOver`] (never
/// stored) when more than one origin was asked: it may then come from a
/// fallback that does not own the URL. The only attempt's error page is the
/// origin's own answer, and the store decision judges it like any other 5xx.
fn pass_on_failure_page(page: FailurePage, attempts: usize, trace: &mut Trace) -> Response<Body> {
    let FailurePage {
        mut response,
        origin,
        ms,
    } = page;
    if attempts > 1 {
        response.extensions_mut().insert(FailedOver);
    }
    trace
        .failed_attempts
        .retain(|failed| !(failed.origin == origin && failed.ms == ms));
    trace.origin = Some(origin);
    trace.origin_ms = Some(ms);
    response
}

/// An error as the answer: its JSON response, and a `Cache-Status` naming it.
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
