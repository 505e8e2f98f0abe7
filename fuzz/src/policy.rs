//! The storage decision over arbitrary request/response header sets, with the
//! never-store rules of docs/caching.md (TRUST-SPEC rules 1 and 2) checked on
//! every decision. The oracle reuses the crate's directive parsers (fuzzed on
//! their own by the `cache_control` target) but none of `store_decision`.

use cachefront::semantics::cache_control::Directives;
use cachefront::semantics::policy::{
    self, EdgeTerms, Freshness, Governing, PolicySettings, RequestDirectives, RequestFacts,
    ResponseDirectives, ResponseTimes, StoreDecision,
};
use http::header::{self, HeaderMap};
use http::{Method, StatusCode};

use crate::input::Lines;

/// A fixed "now" (2023-11-14T22:13:20Z): core functions take time as input.
const NOW_MS: u64 = 1_700_000_000_000;

/// Input:
/// ```text
/// GET store-5xx        method; `store-5xx` turns on CACHE_SERVER_ERRORS=explicit,
///                      `store-4xx` CACHE_CLIENT_ERRORS=explicit;
///                      a cache rule's terms: `rule-ttl=N`, `rule-swr=N`,
///                      `cookies-handled`, `override-private`
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
    let (settings, terms) = settings_and_terms(words);
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
    let decision = policy::store_decision(facts, status, &response, body_len, &settings, &terms);
    let case = Case {
        method: &method,
        request: &request,
        status,
        response: &response,
        body_len,
        settings: &settings,
        terms: &terms,
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
    let freshness =
        Freshness::of(&response, initial_age, times, NOW_MS, &settings).under_terms(&terms);
    let request_directives = RequestDirectives::from_headers(&request);
    let _ = policy::reuse(&request_directives, &freshness);
    let _ = policy::may_serve_stale_on_error(&request_directives, &freshness);
    let _ = freshness.retention_secs(policy::has_validators(&response), 3_600);
    let _ = freshness.ttl_secs();
}

/// The settings and a cache rule's terms named on the method line.
fn settings_and_terms<'a>(words: impl Iterator<Item = &'a str>) -> (PolicySettings, EdgeTerms) {
    let mut settings = PolicySettings::default();
    let mut terms = EdgeTerms::default();
    for word in words {
        let number = |prefix: &str| {
            word.strip_prefix(prefix)
                .and_then(|n| n.parse::<u64>().ok())
        };
        match word {
            "store-5xx" => settings.store_server_errors = true,
            "store-4xx" => settings.store_client_errors = true,
            "cookies-handled" => terms.cookies_handled = true,
            "override-private" => terms.override_private = true,
            _ => {
                if let Some(secs) = number("rule-ttl=") {
                    terms.lifetime_secs = Some(secs);
                }
                if let Some(secs) = number("rule-swr=") {
                    terms.swr_secs = Some(secs);
                }
            }
        }
    }
    (settings, terms)
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
    /// What a cache rule says (`EdgeTerms::default()`: no rule).
    pub terms: &'a EdgeTerms,
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
        terms,
    } = *case;
    let StoreDecision::Store { strip_fields } = decision else {
        return Ok(());
    };
    let governing = ResponseDirectives::from_headers(response);
    let d = &governing.directives;
    let request_cc = Directives::from_headers(request, &header::CACHE_CONTROL);

    // Rule 1: a credentialed request's answer needs explicit shared
    // permission and an explicit lifetime; a cache rule may vouch for a
    // request's cookies (it keyed or withheld them), never for
    // `Authorization`.
    for (name, credential) in [
        (header::AUTHORIZATION, "authorization"),
        (header::COOKIE, "cookie"),
    ] {
        let vouched = credential == "cookie" && terms.cookies_handled;
        if request.contains_key(&name) && !vouched {
            // `Surrogate-Control` is no permission: `Cache-Control` must give it.
            let permission = match governing.governing {
                Governing::Targeted => true,
                Governing::CacheControl => d.has("public") || d.has("s-maxage"),
                Governing::Surrogate => {
                    let cc = Directives::from_headers(response, &header::CACHE_CONTROL);
                    cc.has("public") || cc.has("s-maxage")
                }
            };
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
    if d.iter().any(|x| x.name == "private" && x.value.is_none()) && !terms.override_private {
        return Err("rule 2: stored despite unqualified private".into());
    }
    let cc_private = Directives::from_headers(response, &header::CACHE_CONTROL)
        .iter()
        .any(|x| x.name == "private" && x.value.is_none());
    if governing.governing == Governing::Surrogate && cc_private && !terms.override_private {
        return Err("rule 2: stored under Surrogate-Control despite Cache-Control: private".into());
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
    if response.contains_key(header::SET_COOKIE)
        && !strip_fields.iter().any(|f| f == "set-cookie")
        && !terms.override_private
    {
        return Err("rule 2: stored with Set-Cookie kept".into());
    }
    if status == StatusCode::PARTIAL_CONTENT {
        return Err("rule 2: stored a 206".into());
    }
    let explicit_lifetime =
        d.has("s-maxage") || d.has("max-age") || response.contains_key(header::EXPIRES);
    let ruled_error = terms.lifetime_secs.is_some_and(|secs| secs > 0);
    if status.is_server_error()
        && !(settings.store_server_errors && explicit_lifetime)
        && !ruled_error
    {
        return Err(
            "rule 2: stored a 5xx without CACHE_SERVER_ERRORS=explicit and an explicit lifetime, \
             or a rule naming its status"
                .into(),
        );
    }
    // A 4xx the URL alone does not decide (400, 403, 429, 431…) could be
    // one client's doing (CPDoS): the same opt-ins as a 5xx.
    let client_errors_opted_in = ruled_error || (settings.store_client_errors && explicit_lifetime);
    let url_determined = matches!(status.as_u16(), 404 | 405 | 410 | 414);
    if status.is_client_error() && !url_determined && !client_errors_opted_in {
        return Err(
            "rule 2: stored a client error a request can provoke without \
             CACHE_CLIENT_ERRORS=explicit and an explicit lifetime, or a rule naming its status"
                .into(),
        );
    }
    if terms.lifetime_secs == Some(0) {
        return Err("stored what a rule gives an edge TTL of 0".into());
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
        let (settings, terms) = settings_and_terms(words);
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
            terms: &terms,
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
    fn a_rule_may_vouch_for_cookies_but_never_for_authorization() {
        let cookie = "GET cookies-handled rule-ttl=60\ncookie: lang=de\n\n200\n";
        assert!(decide(cookie).is_ok());
        let auth = "GET cookies-handled rule-ttl=60\nauthorization: Bearer x\n\n200\n";
        assert!(decide(auth).is_err_and(|e| e.starts_with("rule 1")));
        let no_store = "GET override-private rule-ttl=60\n\n200\ncache-control: no-store\n";
        assert!(decide(no_store).is_err_and(|e| e.starts_with("rule 2")));
        assert!(
            decide("GET rule-ttl=10\n\n503\n").is_ok(),
            "a rule naming the 5xx"
        );
        assert!(decide("GET rule-ttl=0\n\n200\n").is_err());
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
        assert!(decide("GET\n\n431\ncache-control: public, max-age=5\n").is_err());
        assert!(decide("GET store-4xx\n\n431\ncache-control: public, max-age=5\n").is_ok());
        assert!(decide("GET rule-ttl=60\n\n403\n").is_ok());
        assert!(decide("GET\n\n404\ncache-control: public, max-age=5\n").is_ok());
        assert!(decide("GET\n\n200\ncache-control: no-store, must-understand\n").is_ok());
        assert!(decide("GET\n\n299\ncache-control: no-store, must-understand\n").is_err());
    }
}
