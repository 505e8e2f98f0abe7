//! Cache rules in the pipeline: matched once at entry (the [`Matched`]
//! rules then travel with the request as an extension), turned into
//! [`EdgeTerms`] for every store decision and into [`RuleTerms`] kept with
//! the entry, and applied to what the client sees on the way out.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};

use crate::cache::stored::RuleTerms;
use crate::origin::request::request_host;
use crate::origin::shaping::{self, QueryFilter};
use crate::platform::Platform;
use crate::rules::{self, CacheMode, Matched, OriginFreshness, RuleAction, RuleRequest, TtlMode};
use crate::semantics::policy::{self, EdgeTerms};
use crate::stable_hash::stable_hash;
use crate::Body;

use super::Pipeline;

/// The client's country as the runtime reports it (`request.cf.country`),
/// set by the platform adapter; `cache_key.country` keys on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCountry(pub String);

/// The rules matched for a request, if any.
pub(super) fn rule_of(request: &Request<Body>) -> Option<&RuleAction> {
    request.extensions().get::<Matched>().map(|m| &*m.action)
}

/// The lower-cased host without its port, as rules match it.
fn rule_host(request: &Request<Body>) -> String {
    crate::origin::shaping::host_without_port(&request_host(request).unwrap_or_default())
}

/// What a stale entry being replaced leaves to its successor (adaptive TTL).
#[derive(Debug, Clone)]
pub(super) struct PreviousEntry {
    pub(super) terms: RuleTerms,
    pub(super) etag: Option<HeaderValue>,
}

impl<P: Platform + Clone + 'static> Pipeline<P> {
    /// Matches the rules against the request (normalised path, raw query)
    /// and returns the query filter its key and origin request use.
    pub(super) fn match_rules(&self, request: &mut Request<Body>) -> Option<Matched> {
        if self.config.rules.is_empty() {
            return None;
        }
        let path = shaping::normalize_path(request.uri().path());
        // The host is read (and lower-cased) only when a rule asks for it.
        let host = if self.config.rules.matches_hosts() {
            rule_host(request)
        } else {
            String::new()
        };
        let matched = self.config.rules.evaluate(&RuleRequest {
            method: request.method(),
            host: &host,
            path: &path,
            query: request.uri().query().unwrap_or(""),
            headers: request.headers(),
        })?;
        request.extensions_mut().insert(matched.clone());
        Some(matched)
    }

    /// The primary key a `GET` of `uri` with `request`'s fields would have:
    /// what an unsafe request invalidates, under the rules that `GET` meets
    /// (a rule for `GET` only does not apply to the `POST` itself).
    pub(super) fn key_of_get(
        &self,
        host: &str,
        uri: &http::Uri,
        request: &Request<Body>,
    ) -> String {
        let mut probe = Request::new(Body::new());
        *probe.uri_mut() = uri.clone();
        *probe.headers_mut() = request.headers().clone();
        if let Some(country) = request.extensions().get::<ClientCountry>() {
            probe.extensions_mut().insert(country.clone());
        }
        self.match_rules(&mut probe);
        self.primary_key(host, uri, &probe)
    }

    /// The query parameters keyed and forwarded for a request.
    pub(super) fn query_filter<'a>(&'a self, rule: Option<&'a RuleAction>) -> QueryFilter<'a> {
        match rule {
            Some(rule) => rule.query_filter(&self.config.cache_ignore_query_params),
            None => QueryFilter::Except(&self.config.cache_ignore_query_params),
        }
    }

    /// A request the cache will take part in, as its rule shapes it for the
    /// origin: only keyed cookies when the rule names its cookies, and the
    /// device class it is keyed under.
    pub(super) fn shape_for_rule(&self, request: &mut Request<Body>) {
        let Some(rule) = rule_of(request) else {
            return;
        };
        let cookie = rule
            .names_cookies()
            .then(|| rule.forwarded_cookie(request.headers()));
        let device = rule
            .cache_key
            .as_ref()
            .is_some_and(|k| k.device)
            .then(|| rules::device_class(request.headers()));
        let headers = request.headers_mut();
        if let Some(cookie) = cookie {
            headers.remove(header::COOKIE);
            if let Some(kept) = cookie {
                headers.insert(header::COOKIE, kept);
            }
        }
        if let Some(class) = device {
            headers.insert(rules::DEVICE_TYPE_FIELD, HeaderValue::from_static(class));
        }
    }

    /// What the request's rules say about storing `response`, and the terms
    /// kept with the entry. `previous` is the entry it replaces, if any;
    /// `unchanged` says a revalidation found it unchanged (a 304).
    pub(super) fn edge_terms(
        &self,
        request: &Request<Body>,
        status: StatusCode,
        response_headers: &http::HeaderMap,
        body: Option<&[u8]>,
        previous: Option<&PreviousEntry>,
        revalidated: bool,
    ) -> (EdgeTerms, Option<RuleTerms>) {
        let Some(rule) = rule_of(request) else {
            return (EdgeTerms::default(), None);
        };
        let settings = self.config.policy_settings();
        let origin = OriginFreshness {
            lifetime_secs: policy::freshness_lifetime(response_headers, None, &settings),
            explicit: policy::explicit_lifetime(response_headers),
        };
        let mut kept = RuleTerms::default();
        let mut adaptive_secs = None;
        if let Some(adaptive) = rule.adaptive_ttl.filter(|_| status.is_success()) {
            let body_hash = body.map(stable_hash);
            let unchanged = revalidated
                || previous.is_some_and(|p| same_content(p, response_headers, body_hash));
            let before = previous.and_then(|p| Some((p.terms.ttl?, p.terms.streak.unwrap_or(0))));
            let (secs, streak) = rules::next_adaptive(adaptive, before, unchanged);
            adaptive_secs = Some(secs);
            kept.streak = Some(streak);
            kept.body_hash = body_hash.or(previous.and_then(|p| p.terms.body_hash));
        }
        let terms = rule.edge_terms(status, origin, adaptive_secs, rule.names_cookies());
        kept.ttl = terms.lifetime_secs;
        kept.swr = terms.swr_secs;
        kept.sie = terms.sie_secs;
        // An entry the rule gave nothing to keeps no rule terms (a smaller
        // entry, less to read on every hit).
        let kept = (kept != RuleTerms::default()).then_some(kept);
        (terms, kept)
    }

    /// Deception armor: a response its rule (not its origin) makes cacheable
    /// must have the `Content-Type` its path's extension promises.
    pub(super) fn armor_refuses(&self, request: &Request<Body>, response: &Response<Body>) -> bool {
        let Some(rule) = rule_of(request) else {
            return false;
        };
        let ruled = rule.cache_mode() == CacheMode::Everything
            || rule
                .edge_ttl
                .as_ref()
                .is_some_and(|t| t.mode != TtlMode::RespectOrigin)
            || rule.adaptive_ttl.is_some();
        if !ruled || !rule.deception_armor() {
            return false;
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        !rules::armor_allows(rules::extension(request.uri().path()), content_type)
    }
}

/// Whether a new 200 is the entry it replaces: the same strong `ETag`, or
/// (without one) the same body.
fn same_content(
    previous: &PreviousEntry,
    headers: &http::HeaderMap,
    body_hash: Option<u64>,
) -> bool {
    let etag = headers.get(header::ETAG);
    match (etag, &previous.etag) {
        (Some(new), Some(old)) if !new.as_bytes().starts_with(b"W/") => new == old,
        _ => body_hash.is_some() && body_hash == previous.terms.body_hash,
    }
}

/// The policy's terms for an entry stored earlier under a rule.
pub(super) fn stored_terms(terms: Option<&RuleTerms>) -> Option<EdgeTerms> {
    terms.map(|t| EdgeTerms {
        lifetime_secs: t.ttl,
        swr_secs: t.swr,
        sie_secs: t.sie,
        ..EdgeTerms::default()
    })
}
