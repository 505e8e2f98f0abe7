//! Bounded request labels shared by the metrics and profiling layers.
//!
//! A label value must come from a fixed set whatever clients send: the matched route
//! template (never the raw path), a known method or `OTHER`, and a status class.

use http::{Method, StatusCode};

/// Route label for requests no route matched (fallbacks, 404s, scans).
pub(crate) const UNMATCHED: &str = "unmatched";

/// Every method label, indexed by [`method_index`].
pub(crate) const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

/// Index into [`METHODS`]: one of the standard methods, else `OTHER`.
pub(crate) fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

/// Method label: one of the standard methods, else `OTHER`.
#[cfg_attr(not(feature = "profiling"), allow(dead_code))]
pub(crate) fn method_label(method: &Method) -> &'static str {
    METHODS[method_index(method)]
}

/// Every status class label, indexed by [`status_class_index`].
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`STATUS_CLASSES`].
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn status_class_index(status: StatusCode) -> usize {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}
