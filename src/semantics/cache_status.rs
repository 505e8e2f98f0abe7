//! The RFC 9211 `Cache-Status` member this cache adds to every response, and
//! the reasons behind it. Each decision is an enum with `as_str()`, so headers,
//! logs and metrics all use the same words.

use std::fmt::Write;

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// The cache's name in `Cache-Status` (RFC 9211 §2).
pub const CACHE_NAME: &str = "cachefront";

pub static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// A fieldless enum whose variants each have one word in `Cache-Status`,
/// logs and metrics: declares it with `as_str()` and `ALL`, which lists every
/// variant by construction (the docs test reads it to check the reference).
macro_rules! header_words {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident => $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$( Self::$variant, )+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $word, )+
                }
            }
        }
    };
}

header_words! {
    /// Why the request went forward to the origin (RFC 9211 §2.2 `fwd`).
    pub enum Forward {
        /// The cache was not consulted (e.g. a GET with a body).
        Bypass => "bypass",
        /// The request method is never served from cache.
        Method => "method",
        /// No entry for this URI.
        UriMiss => "uri-miss",
        /// An entry for the URI, but not for this variant.
        VaryMiss => "vary-miss",
        /// An entry existed but was stale.
        Stale => "stale",
        /// The request asked for a fresh answer (`no-cache`, `max-age`, `min-fresh`).
        Request => "request",
        /// A range request that was not served from a stored full response.
        Partial => "partial",
    }
}

header_words! {
    /// Why a response was not stored.
    pub enum NoStoreReason {
        Method => "method",
        /// A status never stored as an entry of its own (1xx, 206, 304), or
        /// a code this cache does not know under `must-understand`.
        Status => "status",
        RequestNoStore => "request-no-store",
        ResponseNoStore => "no-store",
        Private => "private",
        NoCache => "no-cache",
        SetCookie => "set-cookie",
        VaryStar => "vary-star",
        Authorization => "authorization",
        /// A request with a `Cookie` whose response did not allow shared storage.
        Cookie => "cookie",
        /// A 5xx, or an origin's error page passed on after failover.
        ErrorStatus => "error-status",
        /// A 304 brought a `Vary` that differs from the stored entry's.
        VaryChanged => "vary-changed",
        /// A rule gives this status an edge TTL of 0.
        RuleTtl => "rule-ttl",
        /// Deception armor: the `Content-Type` does not fit the path's extension.
        DeceptionArmor => "deception-armor",
        /// The body shows, verbatim, a value of an unkeyed request field.
        Reflected => "reflected",
        NoFreshness => "no-freshness",
        TooLarge => "too-large",
        /// A streamed body whose length the origin did not say.
        UnknownLength => "unknown-length",
        Partial => "partial",
    }
}

header_words! {
    /// Which tier answered a hit.
    pub enum Tier {
        /// The per-isolate memory tier.
        Memory => "memory",
        /// The data centre's Cache API.
        Edge => "edge",
        /// The global tier in Workers KV (`KV_CACHE_MAX_OBJECT_BYTES`).
        Kv => "kv",
    }
}

/// Where an answer came from, as logs and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The edge's asset store.
    Assets,
    /// A stored response from one of the cache's tiers.
    Stored(Tier),
    /// An origin (or this worker, for its own answers).
    Origin,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Assets => "assets",
            Self::Stored(tier) => tier.as_str(),
            Self::Origin => "origin",
        }
    }
}

/// The one-word outcome of a request, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Asset,
    Hit,
    /// Served stale (stale-while-revalidate, max-stale, stale-if-error).
    Stale,
    /// Stored response confirmed by a 304 from the origin.
    Revalidated,
    Miss,
    /// A stored response was too old and was replaced.
    Expired,
    Bypass,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asset => "asset",
            Self::Hit => "hit",
            Self::Stale => "stale",
            Self::Revalidated => "revalidated",
            Self::Miss => "miss",
            Self::Expired => "expired",
            Self::Bypass => "bypass",
            Self::Error => "error",
        }
    }
}

/// What this cache did for one response: the RFC 9211 parameters plus our outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStatus {
    pub outcome: Outcome,
    pub hit: bool,
    pub fwd: Option<Forward>,
    pub fwd_status: Option<u16>,
    pub ttl: Option<i64>,
    pub stored: bool,
    pub collapsed: bool,
    pub detail: Option<&'static str>,
    /// Where the answer came from (the log's `tier`).
    pub source: Source,
}

impl CacheStatus {
    fn new(outcome: Outcome, hit: bool, fwd: Option<Forward>) -> Self {
        Self {
            outcome,
            hit,
            fwd,
            fwd_status: None,
            ttl: None,
            stored: false,
            collapsed: false,
            detail: None,
            // A hit's tier is set by its constructor; stale hits are
            // counted as edge answers.
            source: if hit {
                Source::Stored(Tier::Edge)
            } else {
                Source::Origin
            },
        }
    }

    /// A static asset answered by the edge's asset store.
    pub fn asset() -> Self {
        let mut status = Self::new(Outcome::Asset, true, None).with_detail("assets");
        status.source = Source::Assets;
        status
    }

    /// A fresh stored response.
    pub fn hit(ttl: i64, tier: Tier) -> Self {
        let mut status = Self::new(Outcome::Hit, true, None);
        status.ttl = Some(ttl);
        status.source = Source::Stored(tier);
        // The Cache API is the default tier: only the others are named.
        if tier != Tier::Edge {
            status.detail = Some(tier.as_str());
        }
        status
    }

    /// A stale stored response served without asking the origin.
    pub fn stale_hit(ttl: i64, reason: &'static str) -> Self {
        let mut status = Self::new(Outcome::Stale, true, None);
        status.ttl = Some(ttl);
        status.detail = Some(reason);
        status
    }

    /// The request went to the origin.
    pub fn forward(fwd: Forward) -> Self {
        let outcome = match fwd {
            Forward::Bypass | Forward::Method => Outcome::Bypass,
            Forward::Stale => Outcome::Expired,
            _ => Outcome::Miss,
        };
        Self::new(outcome, false, Some(fwd))
    }

    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub fn with_fwd_status(mut self, status: u16) -> Self {
        self.fwd_status = Some(status);
        self
    }

    pub fn with_ttl(mut self, ttl: i64) -> Self {
        self.ttl = Some(ttl);
        self
    }

    pub fn with_stored(mut self, stored: bool) -> Self {
        self.stored = stored;
        self
    }

    pub fn with_collapsed(mut self, collapsed: bool) -> Self {
        self.collapsed = collapsed;
        self
    }

    pub fn with_detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }

    /// The short outcome used in logs and metrics.
    pub fn outcome(&self) -> &'static str {
        self.outcome.as_str()
    }

    /// Where the answer came from: `memory`, `edge`, `kv`, `assets` or `origin`.
    pub fn tier(&self) -> &'static str {
        self.source.as_str()
    }

    /// The `Cache-Status` list member, e.g. `cachefront; fwd=uri-miss; fwd-status=200; stored`.
    pub fn member(&self) -> String {
        self.member_with_rule(None)
    }

    /// Our member, naming the cache rules that applied (`rule="blog"`, an
    /// extension parameter, RFC 9211 §2).
    pub fn member_with_rule(&self, rule: Option<&str>) -> String {
        let mut out = String::with_capacity(64);
        out.push_str(CACHE_NAME);
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(fwd) = self.fwd {
            out.push_str("; fwd=");
            out.push_str(fwd.as_str());
        }
        // Writing to a String cannot fail.
        if let Some(status) = self.fwd_status {
            let _ = write!(out, "; fwd-status={status}");
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(out, "; ttl={ttl}");
        }
        if self.stored {
            out.push_str("; stored");
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        if let Some(detail) = self.detail {
            out.push_str("; detail=");
            out.push_str(detail);
        }
        if let Some(rule) = rule {
            // Rule labels are names (letters, digits, `.`, `_`, `-`), `#3`
            // and commas: nothing a quoted string must escape.
            out.push_str("; rule=\"");
            out.push_str(rule);
            out.push('"');
        }
        out
    }

    /// Appends our member to any `Cache-Status` an upstream cache already set
    /// (RFC 9211 §2: members are ordered from the origin towards the client).
    pub fn apply(&self, headers: &mut HeaderMap) {
        append_member(headers, &self.member_with_rule(None));
    }
}

/// Sets `Cache-Status` to the members already there (from caches before
/// this one), then `member` (from [`CacheStatus::member_with_rule`]), as
/// one field line.
pub fn append_member(headers: &mut HeaderMap, member: &str) {
    let earlier: Vec<&str> = headers
        .get_all(&CACHE_STATUS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .collect();
    let value = if earlier.is_empty() {
        HeaderValue::from_str(member)
    } else {
        HeaderValue::from_str(&format!("{}, {member}", earlier.join(", ")))
    };
    if let Ok(value) = value {
        headers.insert(CACHE_STATUS.clone(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn miss_that_was_stored_reads_as_rfc_9211() {
        let status = CacheStatus::forward(Forward::UriMiss)
            .with_fwd_status(200)
            .with_stored(true);
        assert_eq!(
            status.member(),
            "cachefront; fwd=uri-miss; fwd-status=200; stored"
        );
        assert_eq!(status.outcome(), "miss");
    }

    #[test]
    fn hits_report_remaining_ttl_and_the_tier() {
        assert_eq!(
            CacheStatus::hit(42, Tier::Edge).member(),
            "cachefront; hit; ttl=42"
        );
        assert_eq!(
            CacheStatus::hit(42, Tier::Memory).member(),
            "cachefront; hit; ttl=42; detail=memory"
        );
        assert_eq!(
            CacheStatus::hit(42, Tier::Kv).member(),
            "cachefront; hit; ttl=42; detail=kv"
        );
        assert_eq!(CacheStatus::hit(42, Tier::Kv).tier(), "kv");
        assert_eq!(CacheStatus::hit(42, Tier::Memory).tier(), "memory");
        assert_eq!(CacheStatus::hit(42, Tier::Edge).tier(), "edge");
        assert_eq!(CacheStatus::asset().tier(), "assets");
        assert_eq!(CacheStatus::forward(Forward::UriMiss).tier(), "origin");
    }

    #[test]
    fn stale_and_collapsed_answers_say_so() {
        assert_eq!(
            CacheStatus::stale_hit(-5, "stale-while-revalidate").member(),
            "cachefront; hit; ttl=-5; detail=stale-while-revalidate"
        );
        let collapsed = CacheStatus::forward(Forward::UriMiss)
            .with_fwd_status(200)
            .with_collapsed(true);
        assert_eq!(
            collapsed.member(),
            "cachefront; fwd=uri-miss; fwd-status=200; collapsed"
        );
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
        CacheStatus::hit(1, Tier::Edge).apply(&mut headers);
        assert_eq!(
            headers.get(&CACHE_STATUS).and_then(|v| v.to_str().ok()),
            Some("origin-varnish; hit, cachefront; hit; ttl=1")
        );
    }
}
