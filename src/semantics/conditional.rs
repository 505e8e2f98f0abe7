//! Conditional requests (RFC 9110 §13) in both directions: answering a
//! client's `If-None-Match`/`If-Modified-Since` from a stored response, asking
//! the origin to revalidate a stored response, and folding a 304 back into
//! the stored response (RFC 9111 §3.2, §4.3.4).

use http::header::{self, HeaderMap, HeaderName};
use http::{Response, StatusCode};

use crate::semantics::http_date;
use crate::Body;

/// Fields a 304 must not overwrite in the stored response: they describe the
/// stored body, which the 304 did not resend.
const NOT_UPDATED_BY_304: &[HeaderName] = &[
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
    header::TRANSFER_ENCODING,
];

/// Fields a 304 sent to a client carries over from the full response (RFC 9110 §15.4.5).
const KEPT_ON_304: &[HeaderName] = &[
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
    header::LAST_MODIFIED,
];

/// Splits an entity-tag list; `None` for `*`.
fn entity_tags(value: &str) -> Option<Vec<&str>> {
    if value.trim() == "*" {
        return None;
    }
    Some(
        value
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect(),
    )
}

/// Weak comparison (RFC 9110 §8.8.3.2): equal opaque tags, W/ ignored.
fn weak_eq(a: &str, b: &str) -> bool {
    a.trim_start_matches("W/") == b.trim_start_matches("W/")
}

/// Whether a client's conditional GET/HEAD is satisfied by a stored response
/// with these headers, so a 304 answers it (RFC 9110 §13.2.2 order).
pub fn not_modified(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let etag = stored.get(header::ETAG).and_then(|v| v.to_str().ok());
    let inm: Vec<&str> = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !inm.is_empty() {
        // If-None-Match takes precedence; If-Modified-Since is then ignored.
        return inm.iter().any(|value| match entity_tags(value) {
            None => true,
            Some(tags) => etag.is_some_and(|etag| tags.iter().any(|t| weak_eq(t, etag))),
        });
    }
    let Some(since) = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(http_date::parse_secs)
    else {
        return false;
    };
    let last_modified = stored
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(http_date::parse_secs);
    last_modified.is_some_and(|lm| lm <= since)
}

/// Whether the request carries a conditional this cache evaluates itself.
pub fn is_conditional(request: &HeaderMap) -> bool {
    request.contains_key(header::IF_NONE_MATCH) || request.contains_key(header::IF_MODIFIED_SINCE)
}

/// Removes the client's own validators before a request goes forward to
/// fill the cache, so the origin answers with a full, storable response.
pub fn strip_client_conditionals(request: &mut HeaderMap) {
    for name in [
        header::IF_NONE_MATCH,
        header::IF_MODIFIED_SINCE,
        header::IF_RANGE,
    ] {
        request.remove(name);
    }
}

/// Adds validators from a stored response to a forwarded request (RFC 9111 §4.3.1).
/// Returns false when the stored response has none (a plain fetch then).
pub fn add_revalidation_headers(request: &mut HeaderMap, stored: &HeaderMap) -> bool {
    strip_client_conditionals(request);
    let mut added = false;
    if let Some(etag) = stored.get(header::ETAG) {
        request.insert(header::IF_NONE_MATCH, etag.clone());
        added = true;
    }
    if let Some(last_modified) = stored.get(header::LAST_MODIFIED) {
        request.insert(header::IF_MODIFIED_SINCE, last_modified.clone());
        added = true;
    }
    added
}

/// Whether a 304 from the origin applies to the stored response: if both carry
/// a strong ETag they must match (RFC 9111 §4.3.4).
pub fn revalidation_matches(not_modified: &HeaderMap, stored: &HeaderMap) -> bool {
    match (
        not_modified.get(header::ETAG).and_then(|v| v.to_str().ok()),
        stored.get(header::ETAG).and_then(|v| v.to_str().ok()),
    ) {
        (Some(new), Some(old)) => weak_eq(new, old),
        _ => true,
    }
}

/// Folds the header fields of a 304 into the stored response.
pub fn merge_not_modified(stored: &mut HeaderMap, not_modified: &HeaderMap) {
    let names: Vec<HeaderName> = not_modified
        .keys()
        .filter(|name| !NOT_UPDATED_BY_304.contains(name))
        .cloned()
        .collect();
    for name in names {
        stored.remove(&name);
        for value in not_modified.get_all(&name) {
            stored.append(name.clone(), value.clone());
        }
    }
}

/// The 304 a client gets instead of a full stored response.
pub fn not_modified_response(full: &Response<Body>) -> Response<Body> {
    let mut response = Response::new(Body::new());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    let headers = response.headers_mut();
    for name in KEPT_ON_304 {
        for value in full.headers().get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";

    #[test]
    fn if_none_match_uses_weak_comparison_and_lists() {
        let stored = headers(&[("etag", "W/\"v2\"")]);
        assert!(not_modified(
            &headers(&[("if-none-match", "\"v1\", \"v2\"")]),
            &stored
        ));
        assert!(not_modified(&headers(&[("if-none-match", "*")]), &stored));
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"v3\"")]),
            &stored
        ));
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"v1\"")]),
            &headers(&[])
        ));
    }

    #[test]
    fn if_modified_since_compares_dates_and_yields_to_if_none_match() {
        let stored = headers(&[("last-modified", LM), ("etag", "\"a\"")]);
        assert!(not_modified(
            &headers(&[("if-modified-since", LM)]),
            &stored
        ));
        assert!(not_modified(
            &headers(&[("if-modified-since", "Mon, 07 Nov 1994 08:49:37 GMT")]),
            &stored
        ));
        assert!(!not_modified(
            &headers(&[("if-modified-since", "Sat, 05 Nov 1994 08:49:37 GMT")]),
            &stored
        ));
        assert!(!not_modified(
            &headers(&[("if-modified-since", "garbage")]),
            &stored
        ));
        assert!(
            !not_modified(
                &headers(&[("if-none-match", "\"b\""), ("if-modified-since", LM)]),
                &stored
            ),
            "If-None-Match wins over If-Modified-Since"
        );
    }

    #[test]
    fn revalidation_sends_stored_validators_not_the_clients() {
        let mut request = headers(&[("if-none-match", "\"client\""), ("accept", "*/*")]);
        let stored = headers(&[("etag", "\"stored\""), ("last-modified", LM)]);
        assert!(add_revalidation_headers(&mut request, &stored));
        assert_eq!(request["if-none-match"], "\"stored\"");
        assert_eq!(request["if-modified-since"], LM);
        assert!(!add_revalidation_headers(&mut headers(&[]), &headers(&[])));
    }

    #[test]
    fn only_if_none_match_and_if_modified_since_are_answered_by_the_cache() {
        assert!(is_conditional(&headers(&[("if-none-match", "\"a\"")])));
        assert!(is_conditional(&headers(&[("if-modified-since", LM)])));
        assert!(!is_conditional(&headers(&[("if-range", "\"a\"")])));
        assert!(!is_conditional(&headers(&[("accept", "*/*")])));
    }

    #[test]
    fn a_fill_forwards_none_of_the_clients_validators() {
        let mut request = headers(&[
            ("if-none-match", "\"client\""),
            ("if-modified-since", LM),
            ("if-range", "\"client\""),
            ("accept", "*/*"),
        ]);
        strip_client_conditionals(&mut request);
        assert_eq!(request.len(), 1);
        assert_eq!(request["accept"], "*/*");
        // Revalidating a response without validators is a plain fetch,
        // without the client's conditionals either.
        let mut request = headers(&[("if-range", "\"client\""), ("if-none-match", "\"c\"")]);
        assert!(!add_revalidation_headers(&mut request, &headers(&[])));
        assert!(request.is_empty());
    }

    #[test]
    fn merging_a_304_updates_headers_but_not_body_metadata() {
        let mut stored = headers(&[
            ("cache-control", "max-age=10"),
            ("content-length", "100"),
            ("content-type", "text/html"),
            ("x-version", "1"),
        ]);
        let not_mod = headers(&[
            ("cache-control", "max-age=600"),
            ("content-length", "0"),
            ("x-version", "2"),
        ]);
        merge_not_modified(&mut stored, &not_mod);
        assert_eq!(stored["cache-control"], "max-age=600");
        assert_eq!(stored["content-length"], "100");
        assert_eq!(stored["x-version"], "2");
        assert_eq!(stored["content-type"], "text/html");
    }

    #[test]
    fn a_304_for_another_representation_does_not_apply() {
        assert!(!revalidation_matches(
            &headers(&[("etag", "\"new\"")]),
            &headers(&[("etag", "\"old\"")])
        ));
        assert!(revalidation_matches(
            &headers(&[("etag", "\"same\"")]),
            &headers(&[("etag", "\"same\"")])
        ));
        assert!(revalidation_matches(
            &headers(&[]),
            &headers(&[("etag", "\"x\"")])
        ));
    }

    #[test]
    fn a_304_to_the_client_keeps_only_the_allowed_fields() {
        let full = Response::builder()
            .header("etag", "\"a\"")
            .header("cache-control", "max-age=60")
            .header("content-type", "text/html")
            .body(Body::from_static(b"body"))
            .expect("response");
        let r = not_modified_response(&full);
        assert_eq!(r.status(), 304);
        assert_eq!(r.headers()["etag"], "\"a\"");
        assert!(r.headers().get("content-type").is_none());
        assert!(r.body().is_empty());
    }
}
