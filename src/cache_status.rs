//! The RFC 9211 `Cache-Status` member this cache adds to every response, and the
//! reasons behind it. One enum per decision, each with `as_str()`, so headers,
//! logs and metrics all use the same words.

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// The cache's name in `Cache-Status` (RFC 9211 §2).
pub const CACHE_NAME: &str = "cachefront";

pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Why the request went forward to the origin (RFC 9211 §2.2 `fwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The cache was not consulted (e.g. an unsafe method).
    Bypass,
    /// The request method is never served from cache.
    Method,
    /// No entry for this URI.
    UriMiss,
    /// An entry existed but was stale.
    Stale,
    /// The request asked for a fresh answer (`no-cache`).
    Request,
}

impl Forward {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bypass => "bypass",
            Self::Method => "method",
            Self::UriMiss => "uri-miss",
            Self::Stale => "stale",
            Self::Request => "request",
        }
    }
}

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoStoreReason {
    Method,
    Status,
    RequestNoStore,
    ResponseNoStore,
    Private,
    NoCache,
    SetCookie,
    VaryStar,
    Authorization,
    NoFreshness,
    TooLarge,
}

impl NoStoreReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Method => "method",
            Self::Status => "status",
            Self::RequestNoStore => "request-no-store",
            Self::ResponseNoStore => "no-store",
            Self::Private => "private",
            Self::NoCache => "no-cache",
            Self::SetCookie => "set-cookie",
            Self::VaryStar => "vary-star",
            Self::Authorization => "authorization",
            Self::NoFreshness => "no-freshness",
            Self::TooLarge => "too-large",
        }
    }
}

/// What this cache did for one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from the cache; `ttl` is the remaining freshness in seconds.
    Hit {
        ttl: i64,
        detail: Option<&'static str>,
    },
    /// Went to the origin.
    Forward {
        fwd: Forward,
        fwd_status: Option<u16>,
        stored: bool,
        detail: Option<&'static str>,
    },
}

impl CacheStatus {
    /// A static asset answered by the edge's asset store.
    pub fn asset() -> Self {
        Self::Hit {
            ttl: 0,
            detail: Some("assets"),
        }
    }

    /// The short outcome used in logs and metrics (`hit`, `miss`, `bypass`…).
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Hit {
                detail: Some("assets"),
                ..
            } => "asset",
            Self::Hit { .. } => "hit",
            Self::Forward {
                fwd: Forward::Method | Forward::Bypass,
                ..
            } => "bypass",
            Self::Forward {
                fwd: Forward::Stale,
                ..
            } => "expired",
            Self::Forward { .. } => "miss",
        }
    }

    /// The `Cache-Status` list member, e.g. `cachefront; fwd=uri-miss; fwd-status=200; stored`.
    pub fn member(&self) -> String {
        let mut out = String::from(CACHE_NAME);
        match self {
            Self::Hit { ttl, detail } => {
                out.push_str("; hit");
                if *detail != Some("assets") {
                    out.push_str(&format!("; ttl={ttl}"));
                }
                if let Some(detail) = detail {
                    out.push_str("; detail=");
                    out.push_str(detail);
                }
            }
            Self::Forward {
                fwd,
                fwd_status,
                stored,
                detail,
            } => {
                out.push_str("; fwd=");
                out.push_str(fwd.as_str());
                if let Some(status) = fwd_status {
                    out.push_str(&format!("; fwd-status={status}"));
                }
                if *stored {
                    out.push_str("; stored");
                }
                if let Some(detail) = detail {
                    out.push_str("; detail=");
                    out.push_str(detail);
                }
            }
        }
        out
    }

    /// Appends our member to any `Cache-Status` an upstream cache already set
    /// (RFC 9211 §2: members are ordered from the origin towards the client).
    pub fn apply(&self, headers: &mut HeaderMap) {
        let upstream: Vec<String> = headers
            .get_all(&CACHE_STATUS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter(|v| !v.trim().is_empty())
            .map(str::to_owned)
            .collect();
        let mut members = upstream;
        members.push(self.member());
        if let Ok(value) = HeaderValue::from_str(&members.join(", ")) {
            headers.insert(CACHE_STATUS.clone(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miss_that_was_stored_reads_as_rfc_9211() {
        let status = CacheStatus::Forward {
            fwd: Forward::UriMiss,
            fwd_status: Some(200),
            stored: true,
            detail: None,
        };
        assert_eq!(
            status.member(),
            "cachefront; fwd=uri-miss; fwd-status=200; stored"
        );
        assert_eq!(status.outcome(), "miss");
    }

    #[test]
    fn hit_reports_remaining_ttl() {
        let status = CacheStatus::Hit {
            ttl: 42,
            detail: None,
        };
        assert_eq!(status.member(), "cachefront; hit; ttl=42");
    }

    #[test]
    fn asset_hits_name_the_asset_store() {
        assert_eq!(
            CacheStatus::asset().member(),
            "cachefront; hit; detail=assets"
        );
        assert_eq!(CacheStatus::asset().outcome(), "asset");
    }

    #[test]
    fn our_member_is_appended_after_upstream_caches() {
        let mut headers = HeaderMap::new();
        headers.insert(
            &CACHE_STATUS,
            HeaderValue::from_static("origin-varnish; hit"),
        );
        CacheStatus::Hit {
            ttl: 1,
            detail: None,
        }
        .apply(&mut headers);
        assert_eq!(
            headers.get(&CACHE_STATUS).and_then(|v| v.to_str().ok()),
            Some("origin-varnish; hit, cachefront; hit; ttl=1")
        );
    }
}
