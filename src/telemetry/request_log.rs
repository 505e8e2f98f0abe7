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
