//! Collapsing a fill across the isolates of a data centre (`DC_COLLAPSE`):
//! the Cache API reads and writes of the claim protocol whose decisions
//! live in [`crate::cache::collapse`]. A waiter is served only through the
//! ordinary lookup of the shared cache and the same purge and reuse
//! decisions as any hit; it never sees the claimer's response itself.

use http::{Request, Response};

use crate::cache::collapse::{self, AfterPoll, Arrival, ClaimMarker};
use crate::platform::{Background, CacheStore, Clock, Platform};
use crate::purge::sync;
use crate::semantics::cache_status::{CacheStatus, Forward};
use crate::semantics::policy::{self, RequestDirectives, Reuse};
use crate::Body;

use super::lookup::{Lookup, Tiers};
use super::{Pipeline, Trace};

/// Where a request that must fetch stands after the data centre's claim.
pub(super) enum DcFill {
    /// Another isolate's stored answer served it.
    Served((Response<Body>, CacheStatus)),
    /// It fetches; `release`: it then leaves the marker saying whether its
    /// answer was stored.
    Fetch { release: bool },
}

impl<P: Platform + Clone + 'static> Pipeline<P> {
    /// Claims the fill of `key` in the data centre's Cache API, or waits for
    /// the isolate that did and serves what it stored.
    pub(super) async fn join_dc_fill(
        &self,
        request: &Request<Body>,
        key: &str,
        fwd: Forward,
        trace: &mut Trace,
    ) -> DcFill {
        let settings = self.config.collapse;
        if !settings.enabled {
            return DcFill::Fetch { release: false };
        }
        let directives = RequestDirectives::from_headers(request.headers());
        let may_wait = collapse::request_may_wait(directives.no_cache, directives.max_age);
        let url = collapse::claim_url(&self.config.cache_namespace, key);
        let marker = if may_wait {
            self.read_marker(&url).await
        } else {
            None
        };
        match collapse::on_arrival(marker.as_ref(), self.now(), &settings, may_wait) {
            Arrival::Skip => DcFill::Fetch { release: false },
            Arrival::FetchAlone => DcFill::Fetch { release: true },
            Arrival::Claim => {
                self.write_marker(&url, collapse::claim(self.now(), &settings))
                    .await;
                DcFill::Fetch { release: true }
            }
            Arrival::LookThenClaim => {
                if let Some(answer) = self
                    .shared_answer(request, key, fwd, &directives, trace)
                    .await
                {
                    return DcFill::Served(answer);
                }
                self.write_marker(&url, collapse::claim(self.now(), &settings))
                    .await;
                DcFill::Fetch { release: true }
            }
            Arrival::Wait => {
                self.wait_for_fill(request, key, fwd, &directives, &url, trace)
                    .await
            }
        }
    }

    /// Polls the shared cache with backoff until the claimer's answer serves
    /// this request, the claimer says not to wait, or the wait is spent.
    async fn wait_for_fill(
        &self,
        request: &Request<Body>,
        key: &str,
        fwd: Forward,
        directives: &RequestDirectives,
        url: &str,
        trace: &mut Trace,
    ) -> DcFill {
        let settings = self.config.collapse;
        // Counted, not read from the clock: the wait is bounded even where
        // time does not pass while waiting (the simulator).
        let mut waited = 0u64;
        while let Some(pause) = collapse::next_poll(waited, &settings) {
            self.platform.clock().sleep(pause).await;
            waited = waited.saturating_add(pause);
            if let Some(answer) = self
                .shared_answer(request, key, fwd, directives, trace)
                .await
            {
                return DcFill::Served(answer);
            }
            let marker = self.read_marker(url).await;
            match collapse::after_poll(marker.as_ref(), self.now()) {
                AfterPoll::Wait => {}
                AfterPoll::LookOnceMore => {
                    let again = self.shared_answer(request, key, fwd, directives, trace);
                    return match again.await {
                        Some(answer) => DcFill::Served(answer),
                        None => DcFill::Fetch { release: true },
                    };
                }
                AfterPoll::FetchAlone => return DcFill::Fetch { release: true },
            }
        }
        trace
            .warnings
            .push("gave up waiting for another isolate's fetch".into());
        DcFill::Fetch { release: true }
    }

    /// What the data centre's Cache API holds for this request, if it may
    /// serve it as a hit would: found through the `Vary` index, not purged,
    /// and fresh for this request's own directives.
    async fn shared_answer(
        &self,
        request: &Request<Body>,
        key: &str,
        fwd: Forward,
        directives: &RequestDirectives,
        trace: &mut Trace,
    ) -> Option<(Response<Body>, CacheStatus)> {
        let Lookup::Found(entry) = self
            .lookup(key, request.headers(), Tiers::Shared, trace)
            .await
        else {
            return None;
        };
        let mut entry = *entry;
        let freshness = self.freshness_after_purges(&entry, trace).await;
        let Some(freshness) = freshness.filter(|f| policy::reuse(directives, f) == Reuse::Fresh)
        else {
            self.drop_stream(&mut entry.response);
            return None;
        };
        let status = CacheStatus::forward(fwd)
            .with_ttl(freshness.ttl_secs())
            .with_collapsed(true);
        let view = self.client_view(request, entry.response, Some(freshness.age_secs));
        Some((view, status))
    }

    /// Leaves the marker saying whether this fill's answer was stored. A
    /// "stored" marker is written after the response, behind the entry's own
    /// write (queued first), so that a waiter seeing it finds the entry; a
    /// "no wait" marker at once, so that waiters stop waiting.
    pub(super) async fn release_dc_fill(&self, key: &str, stored: bool) {
        let url = collapse::claim_url(&self.config.cache_namespace, key);
        let marker = collapse::release(stored, self.now());
        if !stored {
            self.write_marker(&url, marker).await;
            return;
        }
        let this = self.clone();
        self.platform.background().spawn(Box::pin(async move {
            this.write_marker(&url, marker).await;
        }));
    }

    async fn read_marker(&self, url: &str) -> Option<ClaimMarker> {
        let found = self.platform.cache().get(url, u64::MAX).await.ok()??;
        sync::record_from_body(found.body())
    }

    /// A failed write only costs collapsing (waiters time out or fetch).
    async fn write_marker(&self, url: &str, marker: ClaimMarker) {
        let response = sync::record_response(&marker, marker.keep_secs());
        let _ = self.platform.cache().put(url, response).await;
    }
}
