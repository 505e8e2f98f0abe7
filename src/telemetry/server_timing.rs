//! `Server-Timing` metrics the edge adds to responses (appended to the origin's own).

use std::borrow::Cow;
use std::fmt::Write;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

pub static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// One `Server-Timing` metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub dur_ms: u64,
    /// Borrowed when it is a fixed word (a hit's `hit`), so a hit's metric
    /// allocates nothing until it is rendered.
    pub desc: Option<Cow<'static, str>>,
}

impl Metric {
    pub fn new(name: &'static str, dur_ms: u64) -> Self {
        Self {
            name,
            dur_ms,
            desc: None,
        }
    }

    pub fn with_desc(mut self, desc: impl Into<Cow<'static, str>>) -> Self {
        self.desc = Some(desc.into());
        self
    }

    /// Writes `name;dur=N[;desc="..."]`; the description keeps printable
    /// ASCII only, with `"` and `\` escaped.
    fn render_into(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{};dur={}", self.name, self.dur_ms);
        if let Some(desc) = &self.desc {
            out.push_str(";desc=\"");
            for c in desc.chars() {
                if !c.is_ascii() || c.is_ascii_control() {
                    continue;
                }
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
    }
}

/// Appends metrics to the headers, after any the origin already sent.
pub fn append(headers: &mut HeaderMap, metrics: &[Metric]) {
    if metrics.is_empty() {
        return;
    }
    let mut value = String::with_capacity(48 * metrics.len());
    for (i, metric) in metrics.iter().enumerate() {
        if i > 0 {
            value.push_str(", ");
        }
        metric.render_into(&mut value);
    }
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.append(SERVER_TIMING.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_escaped_descriptions() {
        let mut headers = HeaderMap::new();
        headers.insert(&SERVER_TIMING, HeaderValue::from_static("app;dur=12"));
        append(
            &mut headers,
            &[
                Metric::new("cachefront", 3).with_desc("hit \"mem\""),
                Metric::new("origin", 40),
                Metric::new("origin-failed", 7).with_desc("b\\ad\u{7f}é".to_owned()),
            ],
        );
        let all: Vec<_> = headers
            .get_all(&SERVER_TIMING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(
            all,
            [
                "app;dur=12",
                "cachefront;dur=3;desc=\"hit \\\"mem\\\"\", origin;dur=40, origin-failed;dur=7;desc=\"b\\\\ad\""
            ]
        );
    }
}
