//! The operator endpoints under `/__cachefront/` (purge, state, health):
//! one router, one operator check, and what a purge does to this isolate
//! and to Cloudflare's zone cache.

use http::{Request, Response, StatusCode};

use crate::admin::auth::{self, OperatorAccess};
use crate::admin::state;
use crate::error::EdgeError;
use crate::origin::request::request_host;
use crate::platform::body;
use crate::platform::{Background, BodyStreams, Clock, Platform};
use crate::purge::api::{self as purge, CloudflareForwarding, PurgeContext, PurgeOutcome};
use crate::purge::cloudflare::{self, ApiCall};
use crate::purge::request::purge_hits_entry;
use crate::purge::warming;
use crate::responses::json_response;
use crate::semantics::cache_status::{CacheStatus, Forward, Outcome};
use crate::Body;

use super::{Pipeline, Trace, HEALTH_PATH};

impl<P: Platform + Clone + 'static> Pipeline<P> {
    /// The answer of an operator endpoint, or `None` when `request` is for
    /// another path.
    pub(super) async fn serve_operator(
        &self,
        request: &Request<Body>,
        trace: &mut Trace,
    ) -> Option<(Response<Body>, CacheStatus)> {
        let path = request.uri().path();
        if path == purge::PURGE_PATH {
            if let Some(stream) = body::streamed_request(request) {
                // Purge bodies are small; one big enough to stream is refused unread.
                self.platform.streams().cancel(stream);
                let err = purge::PurgeError::BodyTooLarge {
                    limit: purge::MAX_BODY_BYTES,
                };
                let status = CacheStatus::forward(Forward::Bypass).with_detail("purge");
                return Some((err.to_response(), status.with_outcome(Outcome::Error)));
            }
            return Some(self.serve_purge(request, trace).await);
        }
        if path == state::STATE_PATH {
            return Some(self.serve_state(request).await);
        }
        if path == HEALTH_PATH {
            return Some(self.serve_health(request));
        }
        None
    }

    /// `GET /__cachefront/health`: each origin as this isolate sees it, and
    /// its views of the tag registry.
    fn serve_health(&self, request: &Request<Body>) -> (Response<Body>, CacheStatus) {
        let bypass = CacheStatus::forward(Forward::Bypass).with_detail("operator");
        match self.operator_check(request, "GET") {
            Ok(()) => {
                let mut report = self.origin_report();
                report["purge_views"] = self.isolate.views.borrow().report(self.now());
                (json_response(StatusCode::OK, &report), bypass)
            }
            Err(err) => (err.to_response(), bypass.with_outcome(Outcome::Error)),
        }
    }

    /// `POST /__cachefront/purge`: checks, records the purge in the registry,
    /// applies it to this isolate at once, and forwards it to Cloudflare in
    /// the background when configured.
    async fn serve_purge(
        &self,
        request: &Request<Body>,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        let host = request_host(request).unwrap_or_default();
        let now = self.now();
        let context = PurgeContext {
            config: &self.config.purge,
            keying: &*self.config,
            site_host: &host,
            now_ms: now,
        };
        let (response, outcome) = purge::serve_purge(
            request,
            self.platform.registry(),
            &self.isolate.purge_limiter,
            context,
        )
        .await;
        trace.purge = Some(purge::purge_log_fields(&outcome));
        let status = CacheStatus::forward(Forward::Bypass).with_detail("purge");
        let Ok(outcome) = outcome else {
            return (response, status.with_outcome(Outcome::Error));
        };
        if outcome.receipt.dry_run {
            return (self.dry_run_receipt(outcome).to_response(), status);
        }
        self.isolate.memo.borrow_mut().note_purge(
            &outcome.registry_keys,
            outcome.receipt.soft,
            now,
        );
        if self.config.warming.after_purge {
            let scheme = request.uri().scheme_str().unwrap_or("https");
            self.warm_purged(&outcome.registry_keys, scheme);
        }
        let Some(forwarding) = self
            .forward_purge_to_cloudflare(outcome.cloudflare_calls)
            .await
        else {
            return (response, status);
        };
        let fields = trace
            .purge
            .as_mut()
            .and_then(serde_json::Value::as_object_mut);
        if let (Some(fields), Ok(value)) = (fields, serde_json::to_value(&forwarding)) {
            fields.insert("cloudflare".to_owned(), value);
        }
        let mut receipt = outcome.receipt;
        receipt.cloudflare = forwarding;
        (receipt.to_response(), status)
    }

    /// A dry run's receipt, with what this isolate's memory tier holds that
    /// the purge would reach.
    fn dry_run_receipt(&self, outcome: PurgeOutcome) -> purge::PurgeReceipt {
        let mut receipt = outcome.receipt;
        let keys = receipt.purged.registry_keys(&*self.config);
        let affected = self
            .isolate
            .hot
            .metas()
            .iter()
            .filter(|meta| purge_hits_entry(&keys, &meta.tags))
            .count();
        receipt.local_entries_affected = u64::try_from(affected).ok();
        receipt
    }

    /// Warms again, after the response, the purged pages this isolate held.
    fn warm_purged(&self, registry_keys: &[String], scheme: &str) {
        let held = self.isolate.hot.metas();
        let urls = warming::purged_urls(&held, registry_keys, scheme, self.config.warming.max_urls);
        if urls.is_empty() {
            return;
        }
        let this = self.clone();
        self.platform.background().spawn(Box::pin(async move {
            this.warm(urls).await;
        }));
    }

    /// Sends a purge's zone calls to Cloudflare, when a zone is configured:
    /// each call once before the answer, so the receipt and the request log
    /// say what the API answered; calls that failed with a retryable answer
    /// are tried again (the rest of the retry policy) in the background.
    async fn forward_purge_to_cloudflare(
        &self,
        calls: Vec<ApiCall>,
    ) -> Option<CloudflareForwarding> {
        let zone = self.config.purge.cloudflare.clone()?;
        if calls.is_empty() {
            return None;
        }
        let api = self.platform.cloudflare().clone();
        let clock = self.platform.clock().clone();
        let base = self.config.purge.cloudflare_api_base.clone();
        let policy = cloudflare::RetryPolicy::default();
        let once = cloudflare::RetryPolicy {
            max_attempts: 1,
            ..policy
        };
        let report = cloudflare::forward(&api, &clock, &zone, &base, &calls, once).await;
        let again: Vec<ApiCall> = report
            .failed
            .iter()
            .filter(|failed| cloudflare::is_retryable(failed.status))
            .filter_map(|failed| calls.get(failed.index).cloned())
            .collect();
        let forwarding = CloudflareForwarding::Sent {
            calls: calls.len(),
            ok: report.failed.is_empty(),
            succeeded: report.succeeded,
            failed: report.failed,
            retrying: again.len(),
        };
        if !again.is_empty() {
            let rest = cloudflare::RetryPolicy {
                max_attempts: policy.max_attempts.saturating_sub(1).max(1),
                ..policy
            };
            self.platform.background().spawn(Box::pin(async move {
                // Wait as the policy would have after the first failure.
                clock.sleep(policy.base_delay_ms).await;
                // A call that still fails leaves the zone's copies to expire
                // by their TTL; the first attempt's answer is in the receipt.
                let _report = cloudflare::forward(&api, &clock, &zone, &base, &again, rest).await;
            }));
        }
        Some(forwarding)
    }

    /// `GET` / `PUT /__cachefront/state`: export and import (see `state`).
    async fn serve_state(&self, request: &Request<Body>) -> (Response<Body>, CacheStatus) {
        let context = state::StateContext {
            config: &self.config.purge,
            token: self.config.state_token(),
            now_ms: self.now(),
        };
        let platform = &self.platform;
        let stores = state::StateStores {
            registry: platform.registry(),
            health: platform.health(),
            streams: platform.streams(),
        };
        let response = state::serve_state(request, stores, context).await;
        let status = CacheStatus::forward(Forward::Bypass).with_detail("state");
        if response.status().is_success() {
            (response, status)
        } else {
            (response, status.with_outcome(Outcome::Error))
        }
    }

    /// Token, then method, checks of the health endpoint (guarded by the
    /// operator token, `PURGE_TOKEN`).
    fn operator_check(
        &self,
        request: &Request<Body>,
        method: &'static str,
    ) -> Result<(), EdgeError> {
        match auth::operator_access(request.headers(), self.config.purge.token.as_ref()) {
            OperatorAccess::Granted => {}
            OperatorAccess::Disabled => {
                return Err(EdgeError::Disabled {
                    endpoint: "the health endpoint",
                    token_variable: purge::VAR_PURGE_TOKEN,
                })
            }
            OperatorAccess::Denied => return Err(EdgeError::Unauthorized),
        }
        if request.method().as_str() != method {
            return Err(EdgeError::MethodNotAllowed(method));
        }
        Ok(())
    }
}
