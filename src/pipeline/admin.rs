//! The operator endpoints under `/__cachefront/`: purge, state and health.

use http::{Request, Response};

use crate::admin::auth::{self, TokenCheck};
use crate::admin::state;
use crate::cache::stored;
use crate::error::EdgeError;
use crate::origin::request as forward;
use crate::platform::{Background, Platform};
use crate::purge::api::{self as purge, PurgeContext};
use crate::purge::cloudflare;
use crate::purge::warming;
use crate::semantics::cache_status::{CacheStatus, Forward, Outcome};
use crate::Body;

use super::{Pipeline, Trace};

impl<P: Platform + Clone + 'static> Pipeline<P> {
    /// `POST /__cachefront/purge`: checks, records the purge in the registry,
    /// applies it to this isolate at once, and forwards it to Cloudflare in
    /// the background when configured.
    pub(super) async fn serve_purge(
        &self,
        request: &Request<Body>,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        let host = forward::request_host(request).unwrap_or_default();
        let now = self.now();
        let context = PurgeContext {
            config: &self.config.purge,
            ignored_query_params: &self.config.cache_ignore_query_params,
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
        let Ok(mut outcome) = outcome else {
            return (response, status.with_outcome(Outcome::Error));
        };
        if outcome.receipt.dry_run {
            // What this isolate's memory tier holds that the purge would reach.
            let keys = outcome
                .receipt
                .purged
                .registry_keys(&self.config.cache_ignore_query_params);
            let affected = self
                .isolate
                .hot
                .collect(stored::meta_of)
                .iter()
                .filter(|meta| purge::purge_hits_entry(&keys, &meta.tags))
                .count();
            outcome.receipt.local_entries_affected = u64::try_from(affected).ok();
            return (outcome.receipt.to_response(), status);
        }
        self.isolate.memo.borrow_mut().note_purge(
            &outcome.registry_keys,
            outcome.receipt.soft,
            now,
        );
        if self.config.warming.after_purge {
            let held = self.isolate.hot.collect(stored::meta_of);
            let scheme = request.uri().scheme_str().unwrap_or("https");
            let urls = warming::purged_urls(
                &held,
                &outcome.registry_keys,
                scheme,
                self.config.warming.max_urls,
            );
            if !urls.is_empty() {
                let this = self.clone();
                self.platform.background().spawn(Box::pin(async move {
                    this.warm(urls).await;
                }));
            }
        }
        if let (Some(zone), false) = (
            self.config.purge.cloudflare.clone(),
            outcome.cloudflare_calls.is_empty(),
        ) {
            let api = self.platform.cloudflare().clone();
            let clock = self.platform.clock().clone();
            let calls = outcome.cloudflare_calls;
            self.platform.background().spawn(Box::pin(async move {
                // The report is not surfaced yet: background work has no log
                // sink in the core (a failed call leaves the zone's copies to
                // expire by their TTL).
                let _report = cloudflare::forward(
                    &api,
                    &clock,
                    &zone,
                    cloudflare::API_BASE,
                    &calls,
                    cloudflare::RetryPolicy::default(),
                )
                .await;
            }));
        }
        (response, status)
    }

    /// `GET` / `PUT /__cachefront/state`: export and import (see `state`).
    pub(super) async fn serve_state(
        &self,
        request: &Request<Body>,
    ) -> (Response<Body>, CacheStatus) {
        let context = state::StateContext {
            config: &self.config.purge,
            now_ms: self.now(),
        };
        let platform = &self.platform;
        let response =
            state::serve_state(request, platform.registry(), platform.health(), context).await;
        let status = CacheStatus::forward(Forward::Bypass).with_detail("state");
        if response.status().is_success() {
            (response, status)
        } else {
            (response, status.with_outcome(Outcome::Error))
        }
    }

    /// Method and bearer-token checks of an operator endpoint.
    pub(super) fn operator_check(
        &self,
        request: &Request<Body>,
        method: &'static str,
        what: &'static str,
    ) -> Result<(), EdgeError> {
        let Some(token) = self.config.purge.token.as_ref().map(|t| t.expose()) else {
            return Err(EdgeError::Disabled(what));
        };
        match auth::check_bearer(request.headers(), token) {
            TokenCheck::Valid => {}
            TokenCheck::Missing | TokenCheck::Malformed | TokenCheck::Invalid => {
                return Err(EdgeError::Unauthorized)
            }
        }
        if request.method().as_str() != method {
            return Err(EdgeError::MethodNotAllowed(method));
        }
        Ok(())
    }
}
