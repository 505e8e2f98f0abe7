//! The storage decision over arbitrary request/response header sets, with the
//! never-store rules of docs/caching.md (TRUST-SPEC rules 1 and 2) checked on
//! every decision. The oracle reuses the crate's directive parsers (fuzzed on
//! their own by the `cache_control` target) but none of `store_decision`.

use cachefront::semantics::cache_control::Directives;
use cachefront::semantics::policy::{
    self, Freshness, PolicySettings, RequestDirectives, RequestFacts, ResponseDirectives,
    ResponseTimes, StoreDecision,
};
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};

use crate::input::Lines;

/// A fixed "now" (2023-11-14T22:13:20Z): core functions take time as input.
const NOW_MS: u64 = 1_700_000_000_000;

/// Input:
/// ```text
/// GET store-5xx        method; `store-5xx` turns on CACHE_SERVER_ERRORS=explicit
/// cookie: a=1          request headers, then an empty line
///
/// 200 1234             status and (optional) body length
/// cache-control: …     response headers
/// ```
pub fn run(data: &[u8]) {
    let mut lines = Lines::new(data);
    let method_line = lines.next_text();
    let mut words = method_line.split_ascii_whitespace();
    let method = Method::from_bytes(words.next().unwrap_or("").as_bytes()).unwrap_or(Method::GET);
    let settings = PolicySettings {
        store_server_errors: words.next() == Some("store-5xx"),
        ..PolicySettings::default()
    };
    let request = lines.headers();
    let status_line = lines.next_text();
    let mut words = status_line.split_ascii_whitespace();
    let status = words
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let body_len = words.next().and_then(|s| s.parse::<u64>().ok());
    let response = lines.headers();

    let facts = RequestFacts {
        method: &method,
        headers: &request,
    };
    let decision = policy::store_decision(facts, status, &response, body_len, &settings);
    let case = Case {
        method: &method,
        request: &request,
        status,
        response: &response,
        body_len,
        settings: &settings,
    };
    if let Err(broken) = check_store(&case, &decision) {
        panic!("store invariant violated: {broken}; decision {decision:?}");
    }

    // The rest of the policy must take any headers without panicking.
    let times = ResponseTimes {
        request_time_ms: NOW_MS - 2_000,
        response_time_ms: NOW_MS - 1_000,
    };
    let initial_age = policy::corrected_initial_age(&response, times);
    let freshness = Freshness::of(&response, initial_age, times, NOW_MS, &settings);
    let request_directives = RequestDirectives::from_headers(&request);
    let _ = policy::reuse(&request_directives, &freshness);
    let _ = policy::may_serve_stale_on_error(&request_directives, &freshness);
    let _ = freshness.retention_secs(policy::has_validators(&response), 3_600);
    let _ = freshness.ttl_secs();
}

/// Statuses whose caching rules this cache implements (RFC 9111 §5.2.2.3:
/// for these, `must-understand` overrides `no-store`).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=208 | 226 | 300..=308 | 400..=418 | 421..=426 | 428 | 429 | 431 | 451 | 500..=508 | 510 | 511
    )
}

/// One storage question: the request, the origin's answer, the settings.
pub struct Case<'a> {
    pub method: &'a Method,
    pub request: &'a HeaderMap,
    pub status: StatusCode,
    pub response: &'a HeaderMap,
    pub body_len: Option<u64>,
    pub settings: &'a PolicySettings,
}

/// The never-store rules; `Err` names the one a `Store` decision broke.
pub fn check_store(case: &Case<'_>, decision: &StoreDecision) -> Result<(), String> {
    let Case {
        method,
        request,
        status,
        response,
        body_len,
        settings,
    } = *case;
    let StoreDecision::Store { strip_fields } = decision else {
        return Ok(());
    };
    let governing = ResponseDirectives::from_headers(response);
    let d = &governing.directives;
    let request_cc = Directives::from_headers(request, &header::CACHE_CONTROL);

    // Rule 1: a credentialed request's answer needs explicit shared
    // permission and an explicit lifetime.
    for (name, credential) in [
        (header::AUTHORIZATION, "authorization"),
        (header::COOKIE, "cookie"),
    ] {
        if request.contains_key(&name) {
            let permission = d.has("public") || d.has("s-maxage") || governing.targeted;
            let lifetime =
                d.has("s-maxage") || d.has("max-age") || response.contains_key(header::EXPIRES);
            if !(permission && lifetime) {
                return Err(format!(
                    "rule 1: stored the answer to a request with {credential} without explicit \
                     shared permission and lifetime"
                ));
            }
        }
    }
    // Rule 2.
    if request_cc.has("no-store") {
        return Err("rule 2: stored despite request no-store".into());
    }
    if d.has("no-store") && !(d.has("must-understand") && understood(status)) {
        return Err("rule 2: stored despite no-store in the governing directives".into());
    }
    if d.iter().any(|x| x.name == "private" && x.value.is_none()) {
        return Err("rule 2: stored despite unqualified private".into());
    }
    let vary_star = response
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|f| f.trim() == "*");
    if vary_star {
        return Err("rule 2: stored despite Vary: *".into());
    }
    if response.contains_key(header::SET_COOKIE) && !strip_fields.iter().any(|f| f == "set-cookie")
    {
        return Err("rule 2: stored with Set-Cookie kept".into());
    }
    if status == StatusCode::PARTIAL_CONTENT {
        return Err("rule 2: stored a 206".into());
    }
    let explicit_lifetime =
        d.has("s-maxage") || d.has("max-age") || response.contains_key(header::EXPIRES);
    if status.is_server_error() && !(settings.store_server_errors && explicit_lifetime) {
        return Err(
            "rule 2: stored a 5xx without CACHE_SERVER_ERRORS=explicit and an explicit lifetime"
                .into(),
        );
    }
    if status == StatusCode::NOT_MODIFIED || status.is_informational() {
        return Err("stored a 304 or 1xx as an entry of its own".into());
    }
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Err(format!("stored the answer to a {method}"));
    }
    if body_len.is_some_and(|len| len > settings.max_object_bytes) {
        return Err("stored a body above CACHE_MAX_OBJECT_BYTES".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(input: &str) -> Result<(), String> {
        let mut lines = Lines::new(input.as_bytes());
        let method_line = lines.next_text();
        let mut words = method_line.split_ascii_whitespace();
        let method =
            Method::from_bytes(words.next().unwrap_or("").as_bytes()).unwrap_or(Method::GET);
        let settings = PolicySettings {
            store_server_errors: words.next() == Some("store-5xx"),
            ..PolicySettings::default()
        };
        let request = lines.headers();
        let status = StatusCode::from_u16(lines.next_text().parse().unwrap_or(200))
            .unwrap_or(StatusCode::OK);
        let response = lines.headers();
        let case = Case {
            method: &method,
            request: &request,
            status,
            response: &response,
            body_len: None,
            settings: &settings,
        };
        let store = StoreDecision::Store {
            strip_fields: Vec::new(),
        };
        check_store(&case, &store)
    }

    #[test]
    fn a_stored_cookie_answer_without_explicit_permission_breaks_rule_1() {
        let broken = decide("GET\ncookie: s=1\n\n200\ncache-control: max-age=60\n");
        assert!(broken.is_err_and(|e| e.starts_with("rule 1")));
        assert!(decide("GET\ncookie: s=1\n\n200\ncache-control: public, max-age=60\n").is_ok());
        assert!(decide("GET\ncookie: s=1\n\n200\ncdn-cache-control: max-age=60\n").is_ok());
    }

    #[test]
    fn must_revalidate_alone_is_not_shared_permission() {
        let input =
            "GET\nauthorization: Bearer x\n\n200\ncache-control: max-age=60, must-revalidate\n";
        assert!(decide(input).is_err());
    }

    #[test]
    fn stored_no_store_and_5xx_break_rule_2_but_must_understand_may_override() {
        assert!(decide("GET\n\n200\ncache-control: no-store, max-age=5\n").is_err());
        assert!(decide("GET\ncache-control: no-store\n\n200\n").is_err());
        assert!(decide("GET\n\n503\ncache-control: max-age=5\n").is_err());
        assert!(decide("GET store-5xx\n\n503\ncache-control: max-age=5\n").is_ok());
        assert!(decide("GET store-5xx\n\n503\netag: \"a\"\n").is_err());
        assert!(decide("GET\n\n200\ncache-control: no-store, must-understand\n").is_ok());
        assert!(decide("GET\n\n299\ncache-control: no-store, must-understand\n").is_err());
    }
}
