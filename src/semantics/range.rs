//! Byte ranges (RFC 9110 §14) served from a stored full response: one range
//! gets a 206 slice, an unsatisfiable one a 416; several ranges, or an
//! `If-Range` that no longer matches, get the whole 200 (which RFC 9110 allows).

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::Body;

/// What a range request resolves to against a body of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// Serve the whole response.
    Full,
    /// Serve bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416: no byte of the range exists.
    Unsatisfiable,
}

/// Resolves a `Range` header for a body of `len` bytes.
pub fn resolve(range: &str, len: u64) -> RangeAnswer {
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full; // unknown unit: ignore
    };
    if spec.contains(',') {
        return RangeAnswer::Full; // multipart/byteranges is not worth it
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, false) => match parse(last) {
            // Suffix range: the last N bytes.
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => RangeAnswer::Full,
        },
        (false, _) => {
            let Some(start) = parse(first) else {
                return RangeAnswer::Full;
            };
            let end = if last.trim().is_empty() {
                Some(u64::MAX)
            } else {
                parse(last)
            };
            let Some(end) = end else {
                return RangeAnswer::Full;
            };
            if end < start {
                return RangeAnswer::Full; // invalid: ignore the header
            }
            if start >= len {
                return RangeAnswer::Unsatisfiable;
            }
            RangeAnswer::Partial {
                start,
                end: end.min(len - 1),
            }
        }
        (true, true) => RangeAnswer::Full,
    }
}

/// Whether `If-Range` (if any) still matches the stored response: a strong
/// ETag equal to ours, or exactly our Last-Modified date.
pub fn if_range_matches(request: &HeaderMap, stored: &HeaderMap) -> bool {
    let Some(value) = request.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let value = value.trim();
    if value.starts_with('"') {
        return stored
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|etag| etag == value);
    }
    stored
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|lm| lm.trim() == value)
}

/// What a client's `Range` asks of a full response with status `status`,
/// headers `stored` and a body of `len` bytes: [`RangeAnswer::Full`] when
/// there is no range to honour (no `Range`, not a 200, a stale `If-Range`).
pub fn requested(
    request: &HeaderMap,
    status: StatusCode,
    stored: &HeaderMap,
    len: u64,
) -> RangeAnswer {
    let Some(range) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Full;
    };
    if status != StatusCode::OK || !if_range_matches(request, stored) {
        return RangeAnswer::Full;
    }
    resolve(range, len)
}

/// Turns the head of a full response into that of its 206 for `start..=end`
/// of `len` bytes.
pub fn to_partial(parts: &mut http::response::Parts, start: u64, end: u64, len: u64) {
    parts.status = StatusCode::PARTIAL_CONTENT;
    if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
        parts.headers.insert(header::CONTENT_RANGE, value);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
}

/// Turns the head of a full response of `len` bytes into a 416's.
pub fn to_unsatisfiable(parts: &mut http::response::Parts, len: u64) {
    parts.status = StatusCode::RANGE_NOT_SATISFIABLE;
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
        parts.headers.insert(header::CONTENT_RANGE, value);
    }
    parts.headers.remove(header::CONTENT_LENGTH);
}

/// Applies a client's `Range` to a full stored 200 response held in memory.
pub fn apply(request: &HeaderMap, full: Response<Body>) -> Response<Body> {
    let len = full.body().len() as u64;
    match requested(request, full.status(), full.headers(), len) {
        RangeAnswer::Full => full,
        RangeAnswer::Partial { start, end } => {
            let (mut parts, body) = full.into_parts();
            // start <= end < len, and len came from a usize.
            let slice = body.slice(start as usize..=end as usize);
            to_partial(&mut parts, start, end, len);
            Response::from_parts(parts, slice)
        }
        RangeAnswer::Unsatisfiable => {
            let (mut parts, _) = full.into_parts();
            to_unsatisfiable(&mut parts, len);
            Response::from_parts(parts, Body::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_resolve_against_the_length() {
        assert_eq!(
            resolve("bytes=0-3", 10),
            RangeAnswer::Partial { start: 0, end: 3 }
        );
        assert_eq!(
            resolve("bytes=5-", 10),
            RangeAnswer::Partial { start: 5, end: 9 }
        );
        assert_eq!(
            resolve("bytes=-4", 10),
            RangeAnswer::Partial { start: 6, end: 9 }
        );
        assert_eq!(
            resolve("bytes=-40", 10),
            RangeAnswer::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            resolve("bytes=8-100", 10),
            RangeAnswer::Partial { start: 8, end: 9 }
        );
    }

    #[test]
    fn impossible_ranges_are_unsatisfiable_and_odd_ones_ignored() {
        assert_eq!(resolve("bytes=10-", 10), RangeAnswer::Unsatisfiable);
        assert_eq!(resolve("bytes=-0", 10), RangeAnswer::Unsatisfiable);
        assert_eq!(resolve("bytes=5-2", 10), RangeAnswer::Full);
        assert_eq!(resolve("bytes=0-1,4-5", 10), RangeAnswer::Full);
        assert_eq!(resolve("items=0-1", 10), RangeAnswer::Full);
        assert_eq!(resolve("bytes=a-b", 10), RangeAnswer::Full);
    }

    #[test]
    fn a_range_of_one_byte_is_satisfiable() {
        assert_eq!(
            resolve("bytes=4-4", 10),
            RangeAnswer::Partial { start: 4, end: 4 }
        );
        assert_eq!(
            resolve("bytes=-1", 10),
            RangeAnswer::Partial { start: 9, end: 9 }
        );
    }

    #[test]
    fn no_range_of_an_empty_body_is_satisfiable() {
        // A suffix range of an empty body has no last byte to end at.
        assert_eq!(resolve("bytes=-5", 0), RangeAnswer::Unsatisfiable);
        assert_eq!(resolve("bytes=0-", 0), RangeAnswer::Unsatisfiable);
        let empty = Response::builder().body(Body::new()).expect("response");
        let r = apply(&req(&[("range", "bytes=-5")]), empty);
        assert_eq!(r.status(), 416);
        assert_eq!(r.headers()["content-range"], "bytes */0");
    }

    fn full() -> Response<Body> {
        Response::builder()
            .header("etag", "\"v1\"")
            .body(Body::from_static(b"0123456789"))
            .expect("response")
    }

    fn req(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn a_range_of_a_stored_200_is_a_206_slice() {
        let r = apply(&req(&[("range", "bytes=2-4")]), full());
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()["content-range"], "bytes 2-4/10");
        assert_eq!(r.body().as_ref(), b"234");
    }

    #[test]
    fn unsatisfiable_range_is_a_416_with_the_length() {
        let r = apply(&req(&[("range", "bytes=50-")]), full());
        assert_eq!(r.status(), 416);
        assert_eq!(r.headers()["content-range"], "bytes */10");
    }

    #[test]
    fn stale_if_range_gets_the_full_response() {
        let r = apply(
            &req(&[("range", "bytes=2-4"), ("if-range", "\"v0\"")]),
            full(),
        );
        assert_eq!(r.status(), 200);
        let r = apply(
            &req(&[("range", "bytes=2-4"), ("if-range", "\"v1\"")]),
            full(),
        );
        assert_eq!(r.status(), 206);
    }

    #[test]
    fn an_if_range_date_must_equal_the_stored_last_modified() {
        let dated = || {
            Response::builder()
                .header("last-modified", "Tue, 01 Oct 2024 10:00:00 GMT")
                .body(Body::from_static(b"0123456789"))
                .expect("response")
        };
        let same = req(&[
            ("range", "bytes=2-4"),
            ("if-range", "Tue, 01 Oct 2024 10:00:00 GMT"),
        ]);
        assert_eq!(apply(&same, dated()).status(), 206);
        let later = req(&[
            ("range", "bytes=2-4"),
            ("if-range", "Wed, 02 Oct 2024 10:00:00 GMT"),
        ]);
        assert_eq!(apply(&later, dated()).status(), 200);
        // A date never matches a response that has no Last-Modified.
        let r = apply(&same, full());
        assert_eq!(r.status(), 200);
    }
}
