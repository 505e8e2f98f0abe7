//! Request entry: the operator endpoints first, then the shaped request is
//! admitted (host, key, bypass), the memory tier and the asset store are
//! asked, and the request goes to the cache or straight to the origin.

use http::header;
use http::{Method, Request, Response, StatusCode};

use crate::admin::state;
use crate::assets::edge::{self as edge_assets};
use crate::error::{json_response, EdgeError};
use crate::origin::request as forward;
use crate::origin::shaping;
use crate::platform::body;
use crate::platform::{BodyStreams, Platform, StaticAssets};
use crate::purge::api::{self as purge};
use crate::semantics::cache_status::{CacheStatus, Forward, Outcome};
use crate::semantics::policy::RequestDirectives;
use crate::Body;

use super::lookup::{Lookup, Tiers};
use super::{Pipeline, Trace, HEALTH_PATH};

fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

impl<P: Platform + Clone + 'static> Pipeline<P> {
    pub(super) async fn serve(
        &self,
        mut request: Request<Body>,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        if request.uri().path() == purge::PURGE_PATH {
            if let Some(stream) = body::streamed_request(&request) {
                // Purge bodies are small; one big enough to stream is refused unread.
                self.platform.streams().cancel(stream);
                let err = purge::PurgeError::BodyTooLarge {
                    limit: purge::MAX_BODY_BYTES,
                };
                let status = CacheStatus::forward(Forward::Bypass).with_detail("purge");
                return (err.to_response(), status.with_outcome(Outcome::Error));
            }
            return self.serve_purge(&request, trace).await;
        }
        if request.uri().path() == state::STATE_PATH {
            return self.serve_state(&request).await;
        }
        if request.uri().path() == HEALTH_PATH {
            let bypass = CacheStatus::forward(Forward::Bypass).with_detail("operator");
            return match self.operator_check(&request, "GET", "the health endpoint") {
                Ok(()) => (json_response(StatusCode::OK, &self.origin_report()), bypass),
                Err(err) => (err.to_response(), bypass.with_outcome(Outcome::Error)),
            };
        }
        // From here on the key, the asset store and the origin all see the
        // shaped URI: normalised path, keyed query (see `shaping`).
        if let Some(shaped) =
            shaping::shaped_uri(request.uri(), &self.config.cache_ignore_query_params)
        {
            *request.uri_mut() = shaped;
        }
        let method = request.method().clone();
        let readable = method == Method::GET || method == Method::HEAD;
        let host = forward::request_host(&request);
        let bypass_cookie = readable
            && shaping::has_matching_cookie(request.headers(), &self.config.bypass_cookies);
        let key = match &host {
            Some(host)
                if readable
                    && !bypass_cookie
                    && request.body().is_empty()
                    && body::streamed_request(&request).is_none() =>
            {
                Some(self.primary_key(host, request.uri(), request.headers()))
            }
            _ => None,
        };
        let directives = RequestDirectives::from_headers(request.headers());

        // A memory-tier entry was stored moments ago by this isolate, after the
        // asset store had said "not an asset": it may answer before that store
        // is asked again, which keeps the hottest hits free of subrequests.
        if let Some(key) = &key {
            if let Lookup::Found(entry) = self
                .lookup(key, request.headers(), Tiers::Memory, trace)
                .await
            {
                return self
                    .serve_stored(request, key.clone(), *entry, &directives, trace)
                    .await;
            }
        }

        // The asset store is asked once per path and isolate: its 404s are
        // remembered, so repeated origin paths skip that subrequest.
        if readable && !self.isolate.known_not_asset(request.uri().path()) {
            let stream_above = self.config.stream_bodies_above_bytes;
            match self.platform.assets().fetch(&request, stream_above).await {
                Ok(asset) if asset.status() != StatusCode::NOT_FOUND => {
                    let manifest = self.manifest(&request, trace).await;
                    let path = request.uri().path();
                    let rules = self
                        .config
                        .purge
                        .auto_tag_rules(&self.config.cache_ignore_query_params);
                    let tagging = host.as_deref().map(|host| edge_assets::PageTagging {
                        host,
                        uri: request.uri(),
                        rules,
                    });
                    let asset = edge_assets::decorate_asset(
                        path,
                        asset,
                        manifest.as_deref(),
                        &self.config.assets,
                        tagging,
                    );
                    return (asset, CacheStatus::asset());
                }
                Ok(mut not_found) => {
                    self.drop_stream(&mut not_found);
                    self.isolate.remember_not_asset(request.uri().path());
                }
                Err(e) => trace.warnings.push(format!("asset store failed: {e}")),
            }
        }

        let Some(host) = host else {
            let err = EdgeError::BadRequest("the request has no host".into());
            return (
                err.to_response(),
                CacheStatus::forward(Forward::Bypass).with_outcome(Outcome::Error),
            );
        };

        if bypass_cookie {
            // A logged-in user's request: neither read nor written (BYPASS_COOKIES).
            let (response, status) = self
                .forward_uncached(&request, Forward::Bypass, trace)
                .await;
            return (response, status.with_detail("bypass-cookie"));
        }
        if !readable {
            let (response, status) = self
                .forward_uncached(&request, Forward::Method, trace)
                .await;
            if is_unsafe(&method)
                && (response.status().is_success() || response.status().is_redirection())
            {
                self.invalidate(&request, &host, response.headers()).await;
            }
            return (response, status);
        }
        let Some(key) = key else {
            // A GET with a body may mean anything to the origin; never share its answer.
            let (response, status) = self
                .forward_uncached(&request, Forward::Bypass, trace)
                .await;
            return (response, status.with_detail("get-with-body"));
        };

        match self
            .lookup(&key, request.headers(), Tiers::All, trace)
            .await
        {
            Lookup::Found(entry) => {
                self.serve_stored(request, key, *entry, &directives, trace)
                    .await
            }
            Lookup::VaryMiss | Lookup::Miss if directives.only_if_cached => (
                EdgeError::NotCached.to_response(),
                CacheStatus::forward(Forward::UriMiss).with_outcome(Outcome::Error),
            ),
            Lookup::VaryMiss => {
                self.fetch(request, key, Forward::VaryMiss, None, trace)
                    .await
            }
            Lookup::Miss => {
                let fwd = if request.headers().contains_key(header::RANGE) {
                    Forward::Partial
                } else {
                    Forward::UriMiss
                };
                self.fetch(request, key, fwd, None, trace).await
            }
        }
    }
}
