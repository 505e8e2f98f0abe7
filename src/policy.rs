//! Cache policy: whether a response may be stored, how long it stays fresh and
//! how old a stored response is. Pure functions of (request, response, now).
//!
//! This is the v0 policy: explicit `s-maxage`/`max-age` freshness only. It is
//! deliberately conservative: what it does not understand it does not store.

use crate::cache_control::Directives;
use crate::cache_status::NoStoreReason;
use http::{header, HeaderMap, Method, StatusCode};

/// Status codes a shared cache may store when it has explicit freshness
/// (RFC 9110 §15.1 "heuristically cacheable" plus explicit-freshness-only ones we accept).
fn status_is_storable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// The storage decision for one origin response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDecision {
    /// Store; fresh for `freshness_secs` from the moment the origin produced it.
    Store { freshness_secs: u64 },
    /// Serve but do not store.
    Skip(NoStoreReason),
}

/// What the policy needs of the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// Decides whether a shared cache may store this response (RFC 9111 §3).
pub fn store_decision(
    request: RequestFacts<'_>,
    status: StatusCode,
    response_headers: &HeaderMap,
    body_len: u64,
    max_object_bytes: u64,
) -> StoreDecision {
    use StoreDecision::Skip;
    if request.method != Method::GET {
        return Skip(NoStoreReason::Method);
    }
    let req_cc = Directives::from_headers(request.headers, &header::CACHE_CONTROL);
    if req_cc.has("no-store") {
        return Skip(NoStoreReason::RequestNoStore);
    }
    if !status_is_storable(status) {
        return Skip(NoStoreReason::Status);
    }
    let cc = Directives::from_headers(response_headers, &header::CACHE_CONTROL);
    if cc.has("no-store") {
        return Skip(NoStoreReason::ResponseNoStore);
    }
    if cc.has("private") {
        return Skip(NoStoreReason::Private);
    }
    if cc.has("no-cache") {
        // Storing is allowed, but every use needs revalidation; the v0 pipeline
        // does not revalidate, so storing would only waste space.
        return Skip(NoStoreReason::NoCache);
    }
    if response_headers.contains_key(header::SET_COOKIE) {
        return Skip(NoStoreReason::SetCookie);
    }
    if vary_is_star(response_headers) {
        return Skip(NoStoreReason::VaryStar);
    }
    if request.headers.contains_key(header::AUTHORIZATION)
        && !(cc.has("public") || cc.has("s-maxage") || cc.has("must-revalidate"))
    {
        return Skip(NoStoreReason::Authorization);
    }
    let freshness_secs = freshness_lifetime(response_headers);
    if freshness_secs == 0 {
        return Skip(NoStoreReason::NoFreshness);
    }
    if body_len > max_object_bytes {
        return Skip(NoStoreReason::TooLarge);
    }
    StoreDecision::Store { freshness_secs }
}

/// Freshness lifetime for a shared cache: `s-maxage` wins over `max-age` (RFC 9111 §4.2.1).
pub fn freshness_lifetime(response_headers: &HeaderMap) -> u64 {
    let cc = Directives::from_headers(response_headers, &header::CACHE_CONTROL);
    cc.seconds("s-maxage")
        .or_else(|| cc.seconds("max-age"))
        .unwrap_or(0)
}

fn vary_is_star(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == "*")
}

/// The `Age` the origin (or an upstream cache) reported, if valid.
pub fn age_header_secs(headers: &HeaderMap) -> u64 {
    headers
        .get(header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// Current age of a stored response (RFC 9111 §4.2.3, with response_delay
/// folded into `initial_age_secs` when the entry was stored).
pub fn current_age_secs(initial_age_secs: u64, stored_at_ms: u64, now_ms: u64) -> u64 {
    let resident_ms = now_ms.saturating_sub(stored_at_ms);
    initial_age_secs.saturating_add(resident_ms / 1000)
}

/// Remaining freshness in seconds (negative when stale).
pub fn remaining_ttl_secs(freshness_secs: u64, current_age_secs: u64) -> i64 {
    let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    clamp(freshness_secs) - clamp(current_age_secs)
}

/// Whether the client asked to bypass stored responses (`no-cache`, or
/// `Pragma: no-cache` when there is no `Cache-Control`, RFC 9111 §5.4).
pub fn request_wants_fresh(headers: &HeaderMap) -> bool {
    let cc = Directives::from_headers(headers, &header::CACHE_CONTROL);
    if !cc.is_empty() {
        return cc.has("no-cache") || cc.seconds("max-age") == Some(0);
    }
    Directives::from_headers(headers, &header::PRAGMA).has("no-cache")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const MAX: u64 = 1 << 20;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    fn decide(
        req: &[(&'static str, &'static str)],
        status: u16,
        resp: &[(&'static str, &'static str)],
    ) -> StoreDecision {
        let req_headers = headers(req);
        store_decision(
            RequestFacts {
                method: &Method::GET,
                headers: &req_headers,
            },
            StatusCode::from_u16(status).expect("status"),
            &headers(resp),
            10,
            MAX,
        )
    }

    #[test]
    fn max_age_response_is_stored_for_that_long() {
        assert_eq!(
            decide(&[], 200, &[("cache-control", "max-age=60")]),
            StoreDecision::Store { freshness_secs: 60 }
        );
    }

    #[test]
    fn s_maxage_takes_precedence_over_max_age() {
        assert_eq!(
            decide(&[], 200, &[("cache-control", "max-age=10, s-maxage=300")]),
            StoreDecision::Store {
                freshness_secs: 300
            }
        );
    }

    #[test]
    fn no_store_private_and_no_cache_responses_are_not_stored() {
        assert_eq!(
            decide(&[], 200, &[("cache-control", "no-store, max-age=60")]),
            StoreDecision::Skip(NoStoreReason::ResponseNoStore)
        );
        assert_eq!(
            decide(&[], 200, &[("cache-control", "private, max-age=60")]),
            StoreDecision::Skip(NoStoreReason::Private)
        );
        assert_eq!(
            decide(&[], 200, &[("cache-control", "no-cache, max-age=60")]),
            StoreDecision::Skip(NoStoreReason::NoCache)
        );
    }

    #[test]
    fn responses_without_explicit_freshness_are_not_stored() {
        assert_eq!(
            decide(&[], 200, &[]),
            StoreDecision::Skip(NoStoreReason::NoFreshness)
        );
        assert_eq!(
            decide(&[], 200, &[("cache-control", "max-age=0")]),
            StoreDecision::Skip(NoStoreReason::NoFreshness)
        );
        assert_eq!(
            decide(&[], 200, &[("cache-control", "max-age=oops")]),
            StoreDecision::Skip(NoStoreReason::NoFreshness)
        );
    }

    #[test]
    fn set_cookie_and_vary_star_are_never_stored() {
        assert_eq!(
            decide(
                &[],
                200,
                &[("cache-control", "max-age=60"), ("set-cookie", "a=b")]
            ),
            StoreDecision::Skip(NoStoreReason::SetCookie)
        );
        assert_eq!(
            decide(
                &[],
                200,
                &[("cache-control", "max-age=60"), ("vary", "accept, *")]
            ),
            StoreDecision::Skip(NoStoreReason::VaryStar)
        );
    }

    #[test]
    fn uncacheable_status_is_not_stored() {
        assert_eq!(
            decide(&[], 500, &[("cache-control", "max-age=60")]),
            StoreDecision::Skip(NoStoreReason::Status)
        );
        assert_eq!(
            decide(&[], 206, &[("cache-control", "max-age=60")]),
            StoreDecision::Skip(NoStoreReason::Status)
        );
        assert_eq!(
            decide(&[], 404, &[("cache-control", "max-age=60")]),
            StoreDecision::Store { freshness_secs: 60 }
        );
    }

    #[test]
    fn authorized_requests_need_an_explicit_shared_cache_directive() {
        let auth = [("authorization", "Bearer x")];
        assert_eq!(
            decide(&auth, 200, &[("cache-control", "max-age=60")]),
            StoreDecision::Skip(NoStoreReason::Authorization)
        );
        assert_eq!(
            decide(&auth, 200, &[("cache-control", "public, max-age=60")]),
            StoreDecision::Store { freshness_secs: 60 }
        );
        assert_eq!(
            decide(&auth, 200, &[("cache-control", "s-maxage=60")]),
            StoreDecision::Store { freshness_secs: 60 }
        );
    }

    #[test]
    fn request_no_store_and_non_get_prevent_storing() {
        assert_eq!(
            decide(
                &[("cache-control", "no-store")],
                200,
                &[("cache-control", "max-age=60")]
            ),
            StoreDecision::Skip(NoStoreReason::RequestNoStore)
        );
        let h = headers(&[("cache-control", "max-age=60")]);
        let empty = HeaderMap::new();
        let post = store_decision(
            RequestFacts {
                method: &Method::POST,
                headers: &empty,
            },
            StatusCode::OK,
            &h,
            1,
            MAX,
        );
        assert_eq!(post, StoreDecision::Skip(NoStoreReason::Method));
    }

    #[test]
    fn oversized_bodies_are_not_stored() {
        let h = headers(&[("cache-control", "max-age=60")]);
        let empty = HeaderMap::new();
        let d = store_decision(
            RequestFacts {
                method: &Method::GET,
                headers: &empty,
            },
            StatusCode::OK,
            &h,
            MAX + 1,
            MAX,
        );
        assert_eq!(d, StoreDecision::Skip(NoStoreReason::TooLarge));
    }

    #[test]
    fn age_grows_with_residence_time() {
        assert_eq!(current_age_secs(5, 1_000, 1_000), 5);
        assert_eq!(current_age_secs(5, 1_000, 11_999), 15);
        assert_eq!(
            current_age_secs(0, 5_000, 1_000),
            0,
            "clock skew never gives a negative age"
        );
        assert_eq!(remaining_ttl_secs(60, 15), 45);
        assert_eq!(remaining_ttl_secs(60, 75), -15);
    }

    #[test]
    fn client_no_cache_and_pragma_ask_for_a_fresh_answer() {
        assert!(request_wants_fresh(&headers(&[(
            "cache-control",
            "no-cache"
        )])));
        assert!(request_wants_fresh(&headers(&[(
            "cache-control",
            "max-age=0"
        )])));
        assert!(request_wants_fresh(&headers(&[("pragma", "no-cache")])));
        assert!(!request_wants_fresh(&headers(&[
            ("pragma", "no-cache"),
            ("cache-control", "max-age=60")
        ])));
        assert!(!request_wants_fresh(&headers(&[])));
    }
}
