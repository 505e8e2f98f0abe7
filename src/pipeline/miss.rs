//! Going to the origin for a cacheable request (a miss, a revalidation, a
//! purged entry): coalescing with requests for the same key, the origin's
//! answer or failure, stale answers on failure, and the hand-over to storing.

use http::header;
use http::{Method, Request, Response, StatusCode};

use crate::assets::edge::{self as edge_assets, HtmlOutcome};
use crate::assets::origin_minify::MinifyOutcome;
use crate::cache::coalesce::Role;
use crate::cache::stored;
use crate::platform::body;
use crate::platform::{Clock, Platform};
use crate::semantics::cache_status::{CacheStatus, Forward, Outcome};
use crate::semantics::conditional;
use crate::semantics::policy::{self, RequestDirectives, ResponseTimes, Reuse};
use crate::semantics::vary;
use crate::Body;

use super::lookup::StoredEntry;
use super::origin::error_answer;
use super::{Pipeline, Trace};

/// How often a coalesced request checks whether the leader has finished.
const COALESCE_POLL_MS: u64 = 5;
/// How long it waits for the leader before fetching by itself.
const COALESCE_MAX_WAIT_MS: u64 = 30_000;

impl<P: Platform + Clone + 'static> Pipeline<P> {
    /// Fetches a cacheable request from the origin (revalidating `stale` when
    /// given), stores what may be stored, and shares the answer with requests
    /// for the same key that arrive meanwhile.
    pub(super) async fn fetch(
        &self,
        request: Request<Body>,
        key: String,
        fwd: Forward,
        stale: Option<StoredEntry>,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        let is_get = request.method() == Method::GET;
        let is_range = request.headers().contains_key(header::RANGE);
        // Range misses go through as they are; their 206 is never stored.
        let coalescing = is_get && (!is_range || stale.is_some());
        let leader = if coalescing {
            match self.isolate.coalescer.join(&key) {
                Role::Leader(guard) => Some(guard),
                Role::Follower(waiter) => {
                    let deadline = self.now().saturating_add(COALESCE_MAX_WAIT_MS);
                    loop {
                        if let Some(outcome) = waiter.try_take() {
                            if let Some(shared) = outcome {
                                if let Some(answer) = self.answer_from_shared(&request, shared, fwd)
                                {
                                    return answer;
                                }
                            }
                            break;
                        }
                        if self.now() >= deadline {
                            trace
                                .warnings
                                .push("gave up waiting for a coalesced fetch".into());
                            break;
                        }
                        self.platform.clock().sleep(COALESCE_POLL_MS).await;
                    }
                    None
                }
            }
        } else {
            None
        };

        let stored_validators = stale.as_ref().map(|e| e.response.headers().clone());
        let request_time = self.now();
        let result = self
            .send(
                &request,
                |headers| match &stored_validators {
                    Some(validators) => {
                        conditional::add_revalidation_headers(headers, validators);
                        headers.remove(header::RANGE);
                    }
                    None if is_get && !is_range => conditional::strip_client_conditionals(headers),
                    None => {}
                },
                trace,
            )
            .await;
        let times = ResponseTimes {
            request_time_ms: request_time,
            response_time_ms: self.now(),
        };
        let directives = RequestDirectives::from_headers(request.headers());

        let response = match result {
            Ok(response) => response,
            Err(err) => {
                // No origin answered at all: the cache is disconnected.
                if let Some(entry) = stale {
                    let freshness = self.freshness(entry.response.headers(), &entry.meta);
                    if policy::may_serve_stale_when_disconnected(&directives, &freshness) {
                        trace.warnings.push(err.to_string());
                        let detail = if policy::may_serve_stale_on_error(&directives, &freshness) {
                            "stale-if-error"
                        } else {
                            "stale-if-disconnected"
                        };
                        return self.serve_stale_on_error(&request, entry, fwd, None, detail);
                    }
                }
                return error_answer(err, fwd, trace);
            }
        };

        if let Some(entry) = stale {
            if response.status() == StatusCode::NOT_MODIFIED
                && conditional::revalidation_matches(response.headers(), entry.response.headers())
            {
                let (answer, encoded) = self.revalidated(&request, entry, &response, times, fwd);
                if let Some(guard) = leader {
                    guard.finish(encoded.as_ref());
                }
                return answer;
            }
            if policy::is_error_status(response.status()) {
                let freshness = self.freshness(entry.response.headers(), &entry.meta);
                if policy::may_serve_stale_on_error(&directives, &freshness) {
                    let mut error_page = response;
                    self.drop_stream(&mut error_page);
                    return self.serve_stale_on_error(
                        &request,
                        entry,
                        fwd,
                        Some(error_page.status().as_u16()),
                        "stale-if-error",
                    );
                }
            }
            // A new full response replaces the entry; its stream is not needed.
            let mut old = entry.response;
            self.drop_stream(&mut old);
        }
        if body::streamed(&response).is_some()
            && self.config.assets.html_rewrite
            && edge_assets::is_html(response.headers())
        {
            trace.warnings.push(format!(
                "HTML above STREAM_BODIES_ABOVE_BYTES ({} bytes) streamed without rewriting",
                self.config.stream_bodies_above_bytes
            ));
        }
        let response = if edge_assets::should_rewrite(&response, &self.config.assets) {
            let manifest = self.manifest(&request, trace).await;
            let page = request.uri().path().to_owned();
            let (rewritten, outcome) = edge_assets::rewrite_origin_html(
                response,
                &page,
                manifest.as_deref(),
                &self.config.assets,
            );
            if let HtmlOutcome::Kept(why) = outcome {
                trace
                    .warnings
                    .push(format!("HTML served as the origin sent it: {why}"));
            }
            rewritten
        } else {
            response
        };
        let (response, minified) =
            edge_assets::minify_origin_script(response, request.uri().path(), &self.config.assets);
        if let MinifyOutcome::Skipped { detail, .. } = minified {
            if !detail.is_empty() {
                trace
                    .warnings
                    .push(format!("script or stylesheet served as sent: {detail}"));
            }
        }
        let (answer, encoded) = self.take_response(&request, key, response, times, fwd, trace);
        if let Some(guard) = leader {
            guard.finish(encoded.as_ref());
        }
        answer
    }

    /// A follower's answer from the leader's stored-form response, if it fits this request.
    pub(super) fn answer_from_shared(
        &self,
        request: &Request<Body>,
        shared: Response<Body>,
        fwd: Forward,
    ) -> Option<(Response<Body>, CacheStatus)> {
        let (response, meta) = stored::decode(shared)?;
        if let Some(values) = &meta.variant {
            let fields: Vec<String> = values.iter().map(|(f, _)| f.clone()).collect();
            if &vary::variant_values(request.headers(), &fields) != values {
                return None;
            }
        }
        let status = response.status().as_u16();
        let freshness = self.freshness(response.headers(), &meta);
        // The waiter's own request decides whether a shared answer may serve
        // it, exactly as for a stored one (e.g. `no-cache` or `max-age=0`).
        let directives = RequestDirectives::from_headers(request.headers());
        if policy::reuse(&directives, &freshness) != Reuse::Fresh {
            return None;
        }
        let view = self.client_view(request, response, None);
        let status = CacheStatus::forward(fwd)
            .with_fwd_status(status)
            .with_ttl(freshness.ttl_secs())
            .with_collapsed(true);
        Some((view, status))
    }

    pub(super) fn serve_stale_on_error(
        &self,
        request: &Request<Body>,
        entry: StoredEntry,
        fwd: Forward,
        fwd_status: Option<u16>,
        detail: &'static str,
    ) -> (Response<Body>, CacheStatus) {
        let freshness = self.freshness(entry.response.headers(), &entry.meta);
        let mut status = CacheStatus::forward(fwd)
            .with_outcome(Outcome::Stale)
            .with_ttl(freshness.ttl_secs())
            .with_detail(detail);
        status.fwd_status = fwd_status;
        (
            self.client_view(request, entry.response, Some(freshness.age_secs)),
            status,
        )
    }
}
