//! Serving a stored entry: fresh, stale within the client's or the
//! origin's allowance (refreshed in the background), or sent for
//! revalidation.

use http::header;
use http::{Method, Request, Response};

use crate::error::EdgeError;
use crate::platform::body;
use crate::platform::{Background, Platform};
use crate::semantics::cache_status::{CacheStatus, Forward, Outcome};
use crate::semantics::conditional;
use crate::semantics::policy::{self, RequestDirectives, Reuse};
use crate::Body;

use super::isolate::RefreshClaim;
use super::lookup::StoredEntry;
use super::store::join_vary_generation;
use super::{Pipeline, Trace};

impl<P: Platform + Clone + 'static> Pipeline<P> {
    pub(super) async fn serve_stored(
        &self,
        request: Request<Body>,
        key: String,
        entry: StoredEntry,
        directives: &RequestDirectives,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        let freshness = match self.freshness_after_purges(&entry, trace).await {
            Some(freshness) => freshness,
            None => {
                // The refetched variant joins its index's generation, so the
                // other variants stay reachable (and are judged by their tags).
                let mut request = request;
                join_vary_generation(&mut request, entry.meta.vary_generation);
                let (response, status) = self
                    .fill(
                        request,
                        key,
                        Forward::Stale,
                        None,
                        entry.meta.variant_fields(),
                        trace,
                    )
                    .await;
                return (response, status.with_detail("purged"));
            }
        };
        let ttl = freshness.ttl_secs();
        match policy::reuse(directives, &freshness) {
            Reuse::Fresh => {
                let status = CacheStatus::hit(ttl, entry.tier);
                (
                    self.client_view(&request, entry.response, Some(freshness.age_secs)),
                    status,
                )
            }
            Reuse::StaleAccepted => {
                let status = CacheStatus::stale_hit(ttl, "max-stale");
                (
                    self.client_view(&request, entry.response, Some(freshness.age_secs)),
                    status,
                )
            }
            Reuse::StaleWhileRevalidate if body::streamed(&entry.response).is_some() => {
                // The stream goes to the client; the refresh asks for a whole new
                // response (a 304 would have no body left to store again).
                let view = self.client_view(&request, entry.response, Some(freshness.age_secs));
                let entry_key = entry.key;
                self.refresh_in_background(&request, key, entry_key, None);
                (view, CacheStatus::stale_hit(ttl, "stale-while-revalidate"))
            }
            Reuse::StaleWhileRevalidate => {
                let view = self.client_view(
                    &request,
                    crate::copy_response(&entry.response),
                    Some(freshness.age_secs),
                );
                let entry_key = entry.key.clone();
                self.refresh_in_background(&request, key, entry_key, Some(entry));
                (view, CacheStatus::stale_hit(ttl, "stale-while-revalidate"))
            }
            Reuse::Revalidate if directives.only_if_cached => (
                EdgeError::NotCached.to_response(),
                CacheStatus::forward(Forward::Stale).with_outcome(Outcome::Error),
            ),
            Reuse::Revalidate => {
                let fwd = if freshness.is_fresh() && !freshness.no_cache {
                    Forward::Request
                } else {
                    Forward::Stale
                };
                self.fill(request, key, fwd, Some(entry), Vec::new(), trace)
                    .await
            }
        }
    }

    /// Refreshes a stale entry after the response is sent, once per key at a time.
    pub(super) fn refresh_in_background(
        &self,
        request: &Request<Body>,
        key: String,
        entry_key: String,
        entry: Option<StoredEntry>,
    ) {
        let Some(claim) = RefreshClaim::take(&self.isolate.refreshing, &entry_key) else {
            return;
        };
        let mut refresh = Request::new(Body::new());
        *refresh.method_mut() = Method::GET;
        *refresh.uri_mut() = request.uri().clone();
        *refresh.headers_mut() = request.headers().clone();
        // The refresh is stored under the same cache rules (and country).
        *refresh.extensions_mut() = request.extensions().clone();
        conditional::strip_client_conditionals(refresh.headers_mut());
        refresh.headers_mut().remove(header::RANGE);
        let this = self.clone();
        self.platform.background().spawn(Box::pin(async move {
            let mut trace = Trace::default();
            let (mut refreshed, _) = this
                .fill(refresh, key, Forward::Stale, entry, Vec::new(), &mut trace)
                .await;
            // Only the cache write matters; the client's branch is dropped.
            this.drop_stream(&mut refreshed);
            drop(claim);
        }));
    }
}
