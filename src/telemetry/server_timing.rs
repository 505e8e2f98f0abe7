//! `Server-Timing` metrics the edge adds to responses (appended to the origin's own).

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

pub static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// One `Server-Timing` metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub dur_ms: u64,
    pub desc: Option<String>,
}

impl Metric {
    pub fn new(name: &'static str, dur_ms: u64) -> Self {
        Self {
            name,
            dur_ms,
            desc: None,
        }
    }

    pub fn with_desc(mut self, desc: impl Into<String>) -> Self {
        self.desc = Some(desc.into());
        self
    }

    fn render(&self) -> String {
        let mut out = format!("{};dur={}", self.name, self.dur_ms);
        if let Some(desc) = &self.desc {
            let escaped: String = desc
                .chars()
                .filter(|c| c.is_ascii() && !c.is_ascii_control())
                .flat_map(|c| match c {
                    '"' | '\\' => vec!['\\', c],
                    _ => vec![c],
                })
                .collect();
            out.push_str(&format!(";desc=\"{escaped}\""));
        }
        out
    }
}

/// Appends metrics to the headers, after any the origin already sent.
pub fn append(headers: &mut HeaderMap, metrics: &[Metric]) {
    if metrics.is_empty() {
        return;
    }
    let rendered: Vec<String> = metrics.iter().map(Metric::render).collect();
    if let Ok(value) = HeaderValue::from_str(&rendered.join(", ")) {
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
                "cachefront;dur=3;desc=\"hit \\\"mem\\\"\", origin;dur=40"
            ]
        );
    }
}
