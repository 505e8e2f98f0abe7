//! The one structured log line per request (what Logpush and tail
//! consumers read, and what the Analytics Engine data point is built from).

use serde::Serialize;

/// One structured log line per request (what Logpush/tail consumers read).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RequestLog {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Short outcome: `asset`, `hit`, `stale`, `revalidated`, `miss`, `expired`, `bypass`, `error`.
    pub cache: &'static str,
    pub cache_status: String,
    /// Where the answer came from: `memory`, `edge`, `kv`, `assets` or `origin`.
    pub tier: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin_ms: Option<u64>,
    pub edge_ms: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// For purge requests: what was purged (never the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge: Option<serde_json::Value>,
    /// The cache rules that applied (`CACHE_RULES` names, `#i` unnamed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// The log line of a request: the JSON of `log`, then, when a data point
/// was attempted, whether it was written (`"analytics":"written"` or
/// `"failed"`, appended so that the keys keep their order). Serialized
/// straight into one buffer.
pub fn line(log: &RequestLog, analytics_written: Option<bool>) -> Option<String> {
    let mut out = Vec::with_capacity(256);
    serde_json::to_writer(&mut out, log).ok()?;
    if let Some(written) = analytics_written {
        if out.last() == Some(&b'}') {
            out.pop();
            out.extend_from_slice(if written {
                b",\"analytics\":\"written\"}"
            } else {
                b",\"analytics\":\"failed\"}"
            });
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> RequestLog {
        RequestLog {
            method: "GET".into(),
            path: "/a \"b\"".into(),
            status: 200,
            cache: "hit",
            cache_status: "cachefront; hit".into(),
            tier: "memory",
            origin: None,
            origin_ms: None,
            edge_ms: 1,
            warnings: Vec::new(),
            purge: None,
            rule: None,
        }
    }

    #[test]
    fn the_line_is_the_log_as_json_with_the_analytics_outcome_last() {
        let plain = line(&log(), None).expect("serializes");
        assert_eq!(
            plain,
            r#"{"method":"GET","path":"/a \"b\"","status":200,"cache":"hit","cache_status":"cachefront; hit","tier":"memory","edge_ms":1}"#
        );
        assert_eq!(plain, serde_json::to_string(&log()).expect("serializes"));
        let written = line(&log(), Some(true)).expect("serializes");
        assert!(
            written.ends_with(r#""edge_ms":1,"analytics":"written"}"#),
            "{written}"
        );
        let failed = line(&log(), Some(false)).expect("serializes");
        assert!(failed.ends_with(r#","analytics":"failed"}"#), "{failed}");
        let parsed: serde_json::Value = serde_json::from_str(&failed).expect("the line is JSON");
        assert_eq!(parsed["analytics"], "failed");
    }
}
