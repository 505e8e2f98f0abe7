//! Bounded request labels shared by the metrics and profiling layers.
//!
//! A label value must come from a fixed set whatever clients send: the matched route
//! template (never the raw path), a known method or `OTHER`, and a status class.

use axum::extract::MatchedPath;
use http::{Method, Request, StatusCode};

/// Route label for requests no route matched (fallbacks, 404s, scans).
pub(crate) const UNMATCHED: &str = "unmatched";

/// The route template axum matched (`/products/{id}`), or [`UNMATCHED`].
pub(crate) fn route_of<B>(req: &Request<B>) -> String {
    req.extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| UNMATCHED.to_owned())
}

/// Method label: one of the standard methods, else `OTHER`.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Status class label: `1xx` … `5xx`.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Constant-time comparison of a request's bearer token with the expected one.
#[allow(dead_code)] // only used by features that protect endpoints
pub(crate) fn bearer_matches(headers: &http::HeaderMap, expected: &str) -> bool {
    let Some(value) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return false;
    };
    let (a, b) = (token.trim().as_bytes(), expected.as_bytes());
    // Length leaks, content does not.
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
