//! Filling the cache from the origin (a miss, a revalidation, a purged
//! entry): coalescing with requests for the same key (in this isolate, then
//! across the data centre: `collapse`), the origin's answer or failure,
//! stale answers on failure, and the hand-over to storing.

use http::header;
use http::{Method, Request, Response, StatusCode};

use crate::cache::coalesce::{LeaderGuard, Role};
use crate::cache::stored;
use crate::error::EdgeError;
use crate::origin::request::ForwardRules;
use crate::platform::{Clock, Platform};
use crate::semantics::cache_status::{CacheStatus, Forward, Outcome};
use crate::semantics::conditional;
use crate::semantics::policy::{self, RequestDirectives, ResponseTimes, Reuse, StaleOnFailure};
use crate::semantics::vary;
use crate::Body;

use super::collapse::DcFill;
use super::lookup::StoredEntry;
use super::origin::error_answer;
use super::rules::PreviousEntry;
use super::store::join_vary_generation;
use super::{Pipeline, Trace};

/// How often a coalesced request checks whether the leader has finished.
const COALESCE_POLL_MS: u64 = 5;
/// How long it waits for the leader before fetching by itself.
const COALESCE_MAX_WAIT_MS: u64 = 30_000;

/// What joining the key's coalescing slot gave a request.
enum Coalesced {
    /// This request fetches; its stored answer goes to the waiters.
    Leader(LeaderGuard),
    /// The leader's answer served this request.
    Answered((Response<Body>, CacheStatus)),
    /// This request fetches for itself alone.
    Alone,
}

/// Where a fill stands once the origin answered and a stale entry was there.
enum AgainstStale {
    /// The entry answered (revalidated, or stood in for an error).
    Answered((Response<Body>, CacheStatus), Option<Response<Body>>),
    /// The origin's answer replaces the entry (which leaves its adaptive
    /// TTL state to the new one).
    Replaced(Response<Body>, Option<PreviousEntry>),
}

impl<P: Platform + Clone + 'static> Pipeline<P> {
    /// Fills the cache from the origin for a cacheable request (revalidating
    /// `stale` when given), stores what may be stored, and shares the answer
    /// with requests for the same key that arrive meanwhile.
    ///
    /// `known_vary` names the fields this URL is known to vary on (besides
    /// those of `stale`): they are forwarded to the origin, since the key
    /// already holds them.
    pub(super) async fn fill(
        &self,
        request: Request<Body>,
        key: String,
        fwd: Forward,
        stale: Option<StoredEntry>,
        known_vary: Vec<String>,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        let mut varied = known_vary;
        let mut request = request;
        if let Some(entry) = &stale {
            varied.extend(entry.meta.variant_fields());
            join_vary_generation(&mut request, entry.meta.vary_generation);
        }
        let is_get = request.method() == Method::GET;
        let is_range = request.headers().contains_key(header::RANGE);
        // Range misses go through as they are; their 206 is never stored.
        let coalescing = is_get && (!is_range || stale.is_some());
        let leader = match self.coalesce(coalescing, &request, &key, fwd, trace).await {
            Coalesced::Answered(answer) => return answer,
            Coalesced::Leader(guard) => Some(guard),
            Coalesced::Alone => None,
        };
        // Then across the data centre's isolates (the same requests as
        // above: a Range miss is not stored, so nothing could be shared).
        let release = if coalescing {
            match self.join_dc_fill(&request, &key, fwd, trace).await {
                DcFill::Served(answer) => {
                    // The isolate's followers find it the same way.
                    drop(leader);
                    if let Some(mut entry) = stale {
                        self.drop_stream(&mut entry.response);
                    }
                    return answer;
                }
                DcFill::Fetch { release } => release,
            }
        } else {
            false
        };
        let (answer, encoded) = self
            .fill_from_origin(request, &key, fwd, stale, varied, trace)
            .await;
        if release {
            // Before this isolate's followers are let go: told "no wait",
            // they fetch at once instead of waiting on the claim.
            self.release_dc_fill(&key, answer.1.stored).await;
        }
        if let Some(guard) = leader {
            guard.finish(encoded.as_ref());
        }
        answer
    }

    /// The origin's part of [`Self::fill`]: asks, revalidates or replaces
    /// `stale`, stores what may be stored. Returns the answer and, when it
    /// was stored whole, its stored form for this isolate's waiters.
    async fn fill_from_origin(
        &self,
        request: Request<Body>,
        key: &str,
        fwd: Forward,
        stale: Option<StoredEntry>,
        mut varied: Vec<String>,
        trace: &mut Trace,
    ) -> ((Response<Body>, CacheStatus), Option<Response<Body>>) {
        let (result, times) = self
            .ask_origin(&request, stale.as_ref(), &mut varied, trace)
            .await;
        let response = match result {
            Ok(response) => response,
            Err(err) => {
                let answer = self.on_origin_unreachable(&request, err, stale, fwd, trace);
                return (answer, None);
            }
        };
        let (response, previous) = match stale {
            None => (response, None),
            Some(entry) => match self.against_stale(&request, entry, response, times, fwd) {
                AgainstStale::Replaced(response, previous) => (response, previous),
                AgainstStale::Answered(answer, encoded) => return (answer, encoded),
            },
        };
        let response = self.prepare_origin_body(&request, response, trace).await;
        self.store_and_serve(
            &request,
            key.to_owned(),
            response,
            times,
            fwd,
            &varied,
            previous,
            trace,
        )
    }

    /// Joins the key's coalescing slot: leads, or waits for the leader's
    /// answer and serves it when it fits this request.
    async fn coalesce(
        &self,
        coalescing: bool,
        request: &Request<Body>,
        key: &str,
        fwd: Forward,
        trace: &mut Trace,
    ) -> Coalesced {
        if !coalescing {
            return Coalesced::Alone;
        }
        let waiter = match self.isolate.coalescer.join(key) {
            Role::Leader(guard) => return Coalesced::Leader(guard),
            Role::Follower(waiter) => waiter,
        };
        let deadline = self.now().saturating_add(COALESCE_MAX_WAIT_MS);
        loop {
            if let Some(outcome) = waiter.try_take() {
                let answer =
                    outcome.and_then(|shared| self.answer_from_shared(request, shared, fwd));
                return answer.map_or(Coalesced::Alone, Coalesced::Answered);
            }
            if self.now() >= deadline {
                trace
                    .warnings
                    .push("gave up waiting for a coalesced fetch".into());
                return Coalesced::Alone;
            }
            self.platform.clock().sleep(COALESCE_POLL_MS).await;
        }
    }

    /// Sends the request to the origins: with the stale entry's validators
    /// when there is one, else without the client's own conditionals; and
    /// once more when the answer varies on a field the allow-list withheld
    /// (`varied` then names it too).
    async fn ask_origin(
        &self,
        request: &Request<Body>,
        stale: Option<&StoredEntry>,
        varied: &mut Vec<String>,
        trace: &mut Trace,
    ) -> (Result<Response<Body>, EdgeError>, ResponseTimes) {
        let is_get = request.method() == Method::GET;
        let is_range = request.headers().contains_key(header::RANGE);
        let stored_validators = stale.map(|e| e.response.headers().clone());
        let adjust = |headers: &mut http::HeaderMap| match &stored_validators {
            Some(validators) => {
                conditional::add_revalidation_headers(headers, validators);
                headers.remove(header::RANGE);
            }
            None if is_get && !is_range => conditional::strip_client_conditionals(headers),
            None => {}
        };
        let request_time = self.now();
        let mut result = self.send(request, adjust, varied, trace).await;
        if let Ok(response) = &mut result {
            // The answer varies on a field the client sent but the allow-list
            // withheld: it was made without it. Now that the field is known
            // to be keyed, ask again with it, once, so the answer filed under
            // the client's value is the one the origin makes for that value.
            let withheld = withheld_vary_fields(
                request.headers(),
                response,
                self.forward_rules(request, varied),
            );
            if is_get && !withheld.is_empty() {
                self.drop_stream(response);
                varied.extend(withheld);
                result = self.send(request, adjust, varied, trace).await;
            }
        }
        let times = ResponseTimes {
            request_time_ms: request_time,
            response_time_ms: self.now(),
        };
        (result, times)
    }

    /// No origin answered at all: the cache is disconnected. A stale entry
    /// may stand in if the policy allows; otherwise the error is the answer.
    fn on_origin_unreachable(
        &self,
        request: &Request<Body>,
        err: EdgeError,
        stale: Option<StoredEntry>,
        fwd: Forward,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        if let Some(entry) = stale {
            let freshness = self.freshness(entry.response.headers(), &entry.meta);
            let directives = RequestDirectives::from_headers(request.headers());
            if let Some(allowance) = policy::stale_when_disconnected(&directives, &freshness) {
                trace.warnings.push(err.to_string());
                return self.serve_stale_on_failure(request, entry, fwd, None, allowance);
            }
        }
        error_answer(err, fwd, trace)
    }

    /// The origin's answer to a revalidation: a matching 304 refreshes the
    /// entry, an error status may be covered by it (stale-if-error), and
    /// anything else replaces it.
    fn against_stale(
        &self,
        request: &Request<Body>,
        entry: StoredEntry,
        response: Response<Body>,
        times: ResponseTimes,
        fwd: Forward,
    ) -> AgainstStale {
        if response.status() == StatusCode::NOT_MODIFIED
            && conditional::revalidation_matches(response.headers(), entry.response.headers())
        {
            let (answer, encoded) = self.serve_revalidated(request, entry, &response, times, fwd);
            return AgainstStale::Answered(answer, encoded);
        }
        if policy::is_error_status(response.status()) {
            let freshness = self.freshness(entry.response.headers(), &entry.meta);
            let directives = RequestDirectives::from_headers(request.headers());
            if policy::may_serve_stale_on_error(&directives, &freshness) {
                let mut error_page = response;
                self.drop_stream(&mut error_page);
                let answer = self.serve_stale_on_failure(
                    request,
                    entry,
                    fwd,
                    Some(error_page.status().as_u16()),
                    StaleOnFailure::IfError,
                );
                return AgainstStale::Answered(answer, None);
            }
        }
        // A new full response replaces the entry; its stream is not needed.
        let previous = entry.meta.rule.map(|terms| PreviousEntry {
            terms,
            etag: entry.response.headers().get(header::ETAG).cloned(),
        });
        let mut old = entry.response;
        self.drop_stream(&mut old);
        AgainstStale::Replaced(response, previous)
    }

    /// A follower's answer from the leader's stored-form response, if it fits this request.
    fn answer_from_shared(
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

    /// A stale entry standing in for an origin that failed.
    fn serve_stale_on_failure(
        &self,
        request: &Request<Body>,
        entry: StoredEntry,
        fwd: Forward,
        fwd_status: Option<u16>,
        allowance: StaleOnFailure,
    ) -> (Response<Body>, CacheStatus) {
        let freshness = self.freshness(entry.response.headers(), &entry.meta);
        let mut status = CacheStatus::forward(fwd)
            .with_outcome(Outcome::Stale)
            .with_ttl(freshness.ttl_secs())
            .with_detail(allowance.as_str());
        status.fwd_status = fwd_status;
        (
            self.client_view(request, entry.response, Some(freshness.age_secs)),
            status,
        )
    }
}

/// Fields a response varies on that the request carries but the origin was
/// not sent (none for a 304, which keeps the stored entry's `Vary`).
fn withheld_vary_fields(
    request: &http::HeaderMap,
    response: &Response<Body>,
    rules: ForwardRules<'_>,
) -> Vec<String> {
    if response.status() == StatusCode::NOT_MODIFIED {
        return Vec::new();
    }
    policy::vary_fields(response.headers())
        .into_iter()
        .filter(|field| {
            field != "*" && request.contains_key(field.as_str()) && !rules.forwards(field)
        })
        .collect()
}
