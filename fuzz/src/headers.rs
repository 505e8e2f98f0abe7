//! Header-field parsing targets: `Cache-Control`, the targeted fields
//! (RFC 9213) and `Surrogate-Control`, `Range`/`If-Range` and the
//! conditional-request helpers.

use cachefront::semantics::cache_control::{self, Directives, DELTA_SECONDS_CAP};
use cachefront::semantics::conditional;
use cachefront::semantics::policy::{Governing, ResponseDirectives};
use cachefront::semantics::range::{self, RangeAnswer};
use cachefront::semantics::surrogate_control;
use cachefront::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::input::Lines;

/// Input: one directive list (first line), then response header lines.
pub fn cache_control(data: &[u8]) {
    let mut lines = Lines::new(data);
    let text = lines.next_text();
    let parsed = Directives::parse(&text);
    assert_eq!(parsed, Directives::parse(&text), "parsing is deterministic");
    for d in parsed.iter() {
        assert!(!d.name.is_empty(), "empty directive name from {text:?}");
        assert_eq!(d.name, d.name.to_ascii_lowercase(), "names are lower-cased");
        if let Some(secs) = parsed.seconds(&d.name) {
            assert!(secs <= DELTA_SECONDS_CAP, "delta-seconds above the cap");
        }
    }
    let _ = cache_control::targeted_field_is_valid(&text);

    // The same list as Cache-Control and as each targeted field.
    for name in [
        header::CACHE_CONTROL,
        HeaderName::from_static("cdn-cache-control"),
        HeaderName::from_static("cloudflare-cdn-cache-control"),
    ] {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&text) {
            headers.insert(name.clone(), value);
        }
        let rd = ResponseDirectives::from_headers(&headers);
        if name != header::CACHE_CONTROL {
            // RFC 9213 §2.1: an invalid targeted field is ignored whole.
            assert!(
                rd.governing != Governing::Targeted
                    || cache_control::targeted_field_is_valid(&text),
                "an invalid targeted field {text:?} governed"
            );
        }
    }

    // Arbitrary response headers with any mix of the three fields.
    let response = lines.headers();
    let rd = ResponseDirectives::from_headers(&response);
    if rd.governing == Governing::Targeted {
        let targeted_present = ["cloudflare-cdn-cache-control", "cdn-cache-control"]
            .iter()
            .any(|n| response.contains_key(*n));
        assert!(targeted_present, "targeted without a targeted field");
        assert!(
            !rd.directives.is_empty(),
            "an empty targeted field governed"
        );
    }
    if rd.governing == Governing::Surrogate {
        assert!(
            response.contains_key(surrogate_control::SURROGATE_CONTROL),
            "Surrogate-Control governed without the field"
        );
        assert!(
            !rd.directives.is_empty(),
            "an empty Surrogate-Control governed"
        );
    }

    // Surrogate-Control: any text parses to lower-cased names and capped seconds.
    if let Ok(value) = HeaderValue::from_str(&text) {
        let mut headers = HeaderMap::new();
        headers.insert(surrogate_control::SURROGATE_CONTROL, value);
        let parsed = surrogate_control::directives_for_this_cache(&headers);
        for d in parsed.iter() {
            assert!(
                !d.name.is_empty(),
                "empty Surrogate-Control name from {text:?}"
            );
            assert_eq!(d.name, d.name.to_ascii_lowercase(), "names are lower-cased");
            if let Some(secs) = parsed.seconds(&d.name) {
                assert!(secs <= DELTA_SECONDS_CAP, "delta-seconds above the cap");
            }
        }
    }
}

/// Input:
/// ```text
/// 1234                 body length (any u64; bodies are built up to 4 KiB)
/// range: bytes=0-10    request headers, then an empty line
///
/// etag: "x"            stored response headers
/// ```
pub fn range(data: &[u8]) {
    let mut lines = Lines::new(data);
    let len = lines.next_text().trim().parse::<u64>().unwrap_or(0);
    let request = lines.headers();
    let stored = lines.headers();

    for value in request.get_all(header::RANGE) {
        let Ok(text) = value.to_str() else { continue };
        for len in [len, len % 4096, 0, u64::MAX] {
            if let RangeAnswer::Partial { start, end } = range::resolve(text, len) {
                assert!(
                    start <= end && end < len,
                    "{text:?} on {len} bytes gave {start}-{end}"
                );
            }
        }
    }

    // A full stored 200 of up to 4 KiB, sliced as a client asks.
    let body_len = (len % 4096) as usize;
    let body: Vec<u8> = (0..body_len).map(|i| (i % 251) as u8).collect();
    let mut full = Response::new(Body::from(body.clone()));
    *full.headers_mut() = stored.clone();
    let answer = range::requested(&request, StatusCode::OK, &stored, body_len as u64);
    let out = range::apply(&request, full);
    let content_range = out
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match answer {
        RangeAnswer::Full => {
            assert_eq!(out.status(), StatusCode::OK);
            assert_eq!(out.body().as_ref(), body.as_slice());
        }
        RangeAnswer::Partial { start, end } => {
            assert_eq!(out.status(), StatusCode::PARTIAL_CONTENT);
            assert_eq!(
                out.body().as_ref(),
                &body[start as usize..=end as usize],
                "206 body is not the slice"
            );
            assert_eq!(
                content_range.as_deref(),
                Some(format!("bytes {start}-{end}/{body_len}").as_str())
            );
        }
        RangeAnswer::Unsatisfiable => {
            assert_eq!(out.status(), StatusCode::RANGE_NOT_SATISFIABLE);
            assert_eq!(
                content_range.as_deref(),
                Some(format!("bytes */{body_len}").as_str())
            );
        }
    }
    assert!(
        !out.headers().contains_key(header::CONTENT_LENGTH) || out.status() == StatusCode::OK,
        "a 206/416 kept the full response's Content-Length"
    );

    // Conditional requests against the same stored headers.
    let _ = conditional::not_modified(&request, &stored);
    let _ = conditional::is_conditional(&request);
    let _ = conditional::revalidation_matches(&request, &stored);
    let mut forwarded = request.clone();
    let added = conditional::add_revalidation_headers(&mut forwarded, &stored);
    assert_eq!(
        added,
        stored.contains_key(header::ETAG) || stored.contains_key(header::LAST_MODIFIED)
    );
    assert!(
        !forwarded.contains_key(header::IF_RANGE),
        "a client's If-Range went forward on revalidation"
    );
    let mut merged = stored.clone();
    conditional::merge_not_modified(&mut merged, &request);
    let full = Response::new(Body::from_static(b"x"));
    let not_modified = conditional::not_modified_response(&full);
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert!(not_modified.body().is_empty());
}
