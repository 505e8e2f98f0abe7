//! One Workers Analytics Engine data point per request, built from the
//! request's log line. The layout is fixed so queries can rely on it:
//!
//! | field | content |
//! | --- | --- |
//! | `index1` | request host (sampling key) |
//! | `blob1` | cache outcome (`hit`, `miss`, `stale`, `revalidated`, `expired`, `bypass`, `asset`, `error`) |
//! | `blob2` | tier (`memory`, `edge`, `assets`, `origin`) |
//! | `blob3` | origin name (empty when no origin was asked) |
//! | `blob4` | status class (`2xx` … `5xx`) |
//! | `blob5` | method |
//! | `blob6` | path |
//! | `double1` | status code |
//! | `double2` | time in the worker, ms |
//! | `double3` | time waiting for the origin, ms (0 when none) |

use crate::telemetry::request_log::RequestLog;

/// A data point, independent of the Workers API so it can be tested natively.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPoint {
    pub indexes: Vec<String>,
    pub blobs: Vec<String>,
    pub doubles: Vec<f64>,
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Analytics Engine indexes are at most 96 bytes; paths are cut to stay small.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

pub fn data_point(host: &str, log: &RequestLog) -> DataPoint {
    DataPoint {
        indexes: vec![truncate(host, 96)],
        blobs: vec![
            log.cache.to_owned(),
            log.tier.to_owned(),
            log.origin.clone().unwrap_or_default(),
            status_class(log.status).to_owned(),
            log.method.clone(),
            truncate(&log.path, 1024),
        ],
        doubles: vec![
            f64::from(log.status),
            log.edge_ms as f64,
            log.origin_ms.unwrap_or(0) as f64,
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_miss_becomes_one_data_point_in_the_documented_layout() {
        let log = RequestLog {
            method: "GET".into(),
            path: "/products/1".into(),
            status: 200,
            cache: "miss",
            cache_status: "cachefront; fwd=uri-miss".into(),
            tier: "origin",
            origin: Some("eu".into()),
            origin_ms: Some(40),
            edge_ms: 43,
            warnings: vec![],
            purge: None,
            rule: None,
        };
        let point = data_point("shop.example", &log);
        assert_eq!(point.indexes, ["shop.example"]);
        assert_eq!(
            point.blobs,
            ["miss", "origin", "eu", "2xx", "GET", "/products/1"]
        );
        assert_eq!(point.doubles, [200.0, 43.0, 40.0]);
    }

    #[test]
    fn long_hosts_are_cut_to_the_index_limit() {
        let host = "a".repeat(200);
        assert_eq!(truncate(&host, 96).len(), 96);
        assert_eq!(truncate("héllo", 2), "h");
    }
}
