//! Cache tags of a stored entry: the tags the origin sent (`Cache-Tag`,
//! `Surrogate-Key`) and the automatic tags the edge adds (`host:`, `url:`,
//! `prefix:`), with the limits the big CDNs enforce. A tag that breaks a limit
//! is dropped and reported, never an error: a bad tag must not cost a cache
//! write.
//!
//! Every purge kind is a tag purge underneath: a URL purge purges the entry's
//! `url:` tag, a prefix purge its `prefix:` tag, a host purge its `host:` tag.
//! So the tag functions here are used on both sides, when an entry is stored
//! and when a purge request is turned into registry keys, and must agree.

use http::header::HeaderName;
use http::{HeaderMap, Uri};
use serde::{Serialize, Serializer};

use crate::origin::shaping::QueryFilter;
use crate::stable_hash::stable_hash;

/// `Cache-Tag`: comma-separated tags (Cloudflare, Akamai).
pub static CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");
/// `Surrogate-Key`: space-separated tags (Fastly).
pub static SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// Longest tag kept, in bytes (Cloudflare's limit).
pub const MAX_TAG_BYTES: usize = 1024;
/// Total bytes of origin tags kept per response (Cloudflare counts 16 KB of
/// `Cache-Tag`); tags past it are dropped.
pub const MAX_TAG_HEADER_BYTES: usize = 16 * 1024;
/// At most this many dropped tags are listed (the total is always counted).
pub const MAX_REPORTED_DROPS: usize = 16;

/// Automatic tag of every entry served for a host.
pub const HOST_TAG_PREFIX: &str = "host:";
/// Automatic tag of every entry for one URL (all its variants).
pub const URL_TAG_PREFIX: &str = "url:";
/// Automatic tag of every entry under a configured path prefix.
pub const PREFIX_TAG_PREFIX: &str = "prefix:";
/// Registry key of the "purge everything" epoch; every entry depends on it.
pub const EVERYTHING_KEY: &str = "*";

/// Why a tag was not kept. `as_str()` is the label for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Longer than [`MAX_TAG_BYTES`].
    TooLong,
    /// Contains a byte outside printable ASCII (0x21–0x7E).
    NotPrintableAscii,
    /// Would push the origin's tags past [`MAX_TAG_HEADER_BYTES`].
    HeaderOverLimit,
    /// Starts with an automatic tag prefix (`host:`, `url:`, `prefix:`) or is
    /// `*`: those names belong to the edge, so an origin cannot alias them.
    Reserved,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::TooLong => "too_long",
            DropReason::NotPrintableAscii => "not_printable_ascii",
            DropReason::HeaderOverLimit => "header_over_limit",
            DropReason::Reserved => "reserved",
        }
    }
}

impl Serialize for DropReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One tag the origin sent that was not kept; serializes as
/// `{"tag":"...","reason":"too_long"}` for the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedTag {
    /// The tag as sent, cut to 64 bytes (for logs).
    pub tag: String,
    pub reason: DropReason,
}

/// The tags an entry carries, and what was dropped on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryTags {
    /// Lower-cased, deduplicated, in first-seen order: origin tags, then automatic tags.
    pub tags: Vec<String>,
    /// The first [`MAX_REPORTED_DROPS`] dropped tags.
    pub dropped: Vec<DroppedTag>,
    /// How many tags were dropped in all.
    pub dropped_total: usize,
}

impl EntryTags {
    fn push(&mut self, tag: String) {
        if !self.tags.contains(&tag) {
            self.tags.push(tag);
        }
    }

    fn drop_tag(&mut self, raw: &[u8], reason: DropReason) {
        self.dropped_total += 1;
        if self.dropped.len() < MAX_REPORTED_DROPS {
            let shown = &raw[..raw.len().min(64)];
            self.dropped.push(DroppedTag {
                tag: String::from_utf8_lossy(shown).into_owned(),
                reason,
            });
        }
    }
}

/// What decides the automatic tags of an entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct AutoTagRules<'a> {
    /// Configured path prefixes (`PURGE_PREFIX_TAGS`), lower-cased, each starting with `/`.
    pub path_prefixes: &'a [String],
    /// The query parameters the cache key holds (`CACHE_IGNORE_QUERY_PARAMS`
    /// or the request's cache rule): the others are left out of `url:` tags
    /// too, so a URL purge reaches every key it shares.
    pub query: QueryFilter<'a>,
}

/// How the cache keys the query of a URL: what a URL purge needs to name
/// the `url:` tag its entries were given.
pub trait QueryKeying: std::fmt::Debug {
    fn query_filter_for(&self, host: &str, uri: &Uri) -> QueryFilter<'_>;
}

/// Keying by an ignore list alone (`CACHE_IGNORE_QUERY_PARAMS` without
/// cache rules).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoredParams(pub Vec<String>);

impl QueryKeying for IgnoredParams {
    fn query_filter_for(&self, _host: &str, _uri: &Uri) -> QueryFilter<'_> {
        QueryFilter::Except(&self.0)
    }
}

/// Checks and normalizes one tag (trimmed, lower-cased). Reserved names are
/// not rejected here: see [`is_reserved`].
pub fn normalize_tag(raw: &str) -> Result<String, DropReason> {
    check_tag_bytes(raw.trim().as_bytes())
}

fn check_tag_bytes(raw: &[u8]) -> Result<String, DropReason> {
    if raw.len() > MAX_TAG_BYTES {
        return Err(DropReason::TooLong);
    }
    if raw.iter().any(|b| !(0x21..=0x7e).contains(b)) {
        return Err(DropReason::NotPrintableAscii);
    }
    // Printable ASCII is valid UTF-8.
    Ok(String::from_utf8_lossy(raw).to_ascii_lowercase())
}

/// Whether a (normalized) tag uses a name that belongs to the edge.
pub fn is_reserved(tag: &str) -> bool {
    tag == EVERYTHING_KEY
        || [HOST_TAG_PREFIX, URL_TAG_PREFIX, PREFIX_TAG_PREFIX]
            .iter()
            .any(|prefix| tag.starts_with(prefix))
}

/// The origin's tags: every `Cache-Tag` line split on commas, then every
/// `Surrogate-Key` line split on spaces, normalized and deduplicated.
pub fn origin_tags(headers: &HeaderMap) -> EntryTags {
    let mut out = EntryTags::default();
    let mut budget = MAX_TAG_HEADER_BYTES;
    let cache_tags = headers
        .get_all(&CACHE_TAG)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','));
    let surrogate_keys = headers
        .get_all(&SURROGATE_KEY)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b' ' || *b == b'\t'));
    for raw in cache_tags.chain(surrogate_keys) {
        let raw = raw.trim_ascii();
        if raw.is_empty() {
            continue;
        }
        // A separator counts too, as it would in the header.
        let cost = raw.len() + 1;
        if cost > budget {
            out.drop_tag(raw, DropReason::HeaderOverLimit);
            budget = 0;
            continue;
        }
        match check_tag_bytes(raw) {
            Ok(tag) if is_reserved(&tag) => out.drop_tag(raw, DropReason::Reserved),
            Ok(tag) => {
                budget -= cost;
                out.push(tag);
            }
            Err(reason) => out.drop_tag(raw, reason),
        }
    }
    out
}

/// The automatic tags of an entry stored for `host` + `uri`: `host:<host>`,
/// `url:<host><path>[?<sorted query>]`, and `prefix:<p>` for every configured
/// prefix the path starts with (compared case-insensitively).
pub fn auto_tags(host: &str, uri: &Uri, rules: AutoTagRules<'_>) -> Vec<String> {
    let mut tags = vec![host_tag(host), url_tag(host, uri, rules.query)];
    let path = uri.path().to_ascii_lowercase();
    for prefix in rules.path_prefixes {
        if path.starts_with(prefix.as_str()) {
            tags.push(prefix_tag(prefix));
        }
    }
    tags
}

/// Everything an entry is tagged with: the origin's tags, then the automatic ones.
pub fn entry_tags(
    response_headers: &HeaderMap,
    host: &str,
    uri: &Uri,
    rules: AutoTagRules<'_>,
) -> EntryTags {
    let mut tags = origin_tags(response_headers);
    for tag in auto_tags(host, uri, rules) {
        tags.push(tag);
    }
    tags
}

/// `host:<host>` (lower-cased, without a port).
pub fn host_tag(host: &str) -> String {
    format!(
        "{HOST_TAG_PREFIX}{}",
        crate::origin::shaping::host_without_port(host)
    )
}

/// `prefix:<path prefix>` (lower-cased).
pub fn prefix_tag(prefix: &str) -> String {
    format!("{PREFIX_TAG_PREFIX}{}", prefix.trim().to_ascii_lowercase())
}

/// `url:<host><path>[?<query>]`, lower-cased, the path normalised and the
/// query keyed exactly as the cache key does ([`crate::origin::shaping`]), so a purge
/// of one alias of a URL (`/a%62c`, `//abc`) reaches what the others stored. The scheme is left out,
/// so one purge reaches http and https. A URL longer than a tag may be is
/// named by a stable hash of it instead: the same on both sides.
pub fn url_tag(host: &str, uri: &Uri, query: QueryFilter<'_>) -> String {
    let host_part = host_tag(host);
    let host_part = &host_part[HOST_TAG_PREFIX.len()..];
    let path = crate::origin::shaping::normalize_path(uri.path());
    let mut url = format!("{URL_TAG_PREFIX}{host_part}{path}");
    if let Some(query) = crate::origin::shaping::keyed_query(uri.query().unwrap_or(""), query) {
        url.push('?');
        url.push_str(&query);
    }
    let url = url.to_ascii_lowercase();
    if url.len() > MAX_TAG_BYTES || url.bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
        return format!("{URL_TAG_PREFIX}#{:016x}", stable_hash(url.as_bytes()));
    }
    url
}

/// Removes the tag headers from a response bound for a client (`Cache-Tag`,
/// `Surrogate-Key`): they describe the origin's data model.
pub fn strip_tag_headers(headers: &mut HeaderMap) {
    headers.remove(&CACHE_TAG);
    headers.remove(&SURROGATE_KEY);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                (*name).clone(),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn uri(s: &str) -> Uri {
        s.parse().expect("uri")
    }

    #[test]
    fn cache_tag_is_split_on_commas_and_surrogate_key_on_spaces() {
        let tags = origin_tags(&headers(&[
            (&CACHE_TAG, "products, product:7,,"),
            (&CACHE_TAG, "catalog"),
            (&SURROGATE_KEY, "  user:9   nav "),
        ]));
        assert_eq!(
            tags.tags,
            ["products", "product:7", "catalog", "user:9", "nav"]
        );
        assert_eq!(tags.dropped_total, 0);
    }

    #[test]
    fn tags_are_lowercased_and_deduplicated_across_headers() {
        let tags = origin_tags(&headers(&[
            (&CACHE_TAG, "Product:7,PRODUCT:7"),
            (&SURROGATE_KEY, "product:7 Nav"),
        ]));
        assert_eq!(tags.tags, ["product:7", "nav"]);
    }

    #[test]
    fn over_long_and_non_printable_tags_are_dropped_with_reasons() {
        let long = "a".repeat(MAX_TAG_BYTES + 1);
        let exact = "b".repeat(MAX_TAG_BYTES);
        let mut map = headers(&[(&CACHE_TAG, &format!("{long},{exact},ok"))]);
        map.append(
            CACHE_TAG.clone(),
            HeaderValue::from_bytes(b"caf\xc3\xa9,fine").expect("obs-text is allowed"),
        );
        let tags = origin_tags(&map);
        assert_eq!(tags.tags, [exact.as_str(), "ok", "fine"]);
        let reasons: Vec<_> = tags.dropped.iter().map(|d| d.reason).collect();
        assert_eq!(
            reasons,
            [DropReason::TooLong, DropReason::NotPrintableAscii]
        );
        assert_eq!(
            tags.dropped[0].tag.len(),
            64,
            "dropped tags are cut for logs"
        );
    }

    #[test]
    fn tags_past_the_header_budget_are_dropped_not_fatal() {
        // 20 tags of 1000 bytes: 16 fit in 16 KiB (1001 bytes each with separator).
        let many: Vec<String> = (0..20)
            .map(|i| format!("{i:04}{}", "x".repeat(996)))
            .collect();
        let tags = origin_tags(&headers(&[(&CACHE_TAG, &many.join(","))]));
        assert_eq!(tags.tags.len(), 16);
        assert_eq!(tags.dropped_total, 4);
        assert!(tags
            .dropped
            .iter()
            .all(|d| d.reason == DropReason::HeaderOverLimit));
    }

    #[test]
    fn tags_that_fill_the_header_budget_exactly_are_all_kept() {
        // 16 tags of 1023 bytes cost 16 × 1024 = 16 KiB with separators:
        // all fit, and nothing, not even one byte, fits after them.
        let mut many: Vec<String> = (0..16)
            .map(|i| format!("{i:04}{}", "x".repeat(1019)))
            .collect();
        many.push("a".into());
        let tags = origin_tags(&headers(&[(&CACHE_TAG, &many.join(","))]));
        assert_eq!(tags.tags.len(), 16);
        assert_eq!(tags.dropped_total, 1);
        assert_eq!(tags.dropped[0].reason, DropReason::HeaderOverLimit);
    }

    #[test]
    fn only_the_first_drops_are_reported_but_all_are_counted() {
        let bad: Vec<String> = (0..MAX_REPORTED_DROPS + 4)
            .map(|i| format!("url:{i}"))
            .collect();
        let tags = origin_tags(&headers(&[(&CACHE_TAG, &bad.join(","))]));
        assert_eq!(tags.dropped.len(), MAX_REPORTED_DROPS);
        assert_eq!(tags.dropped_total, MAX_REPORTED_DROPS + 4);
    }

    #[test]
    fn a_purge_tag_is_trimmed_lower_cased_and_checked() {
        assert_eq!(normalize_tag("  Product:7 "), Ok("product:7".to_owned()));
        assert_eq!(
            normalize_tag(&"x".repeat(MAX_TAG_BYTES + 1)),
            Err(DropReason::TooLong)
        );
        assert_eq!(
            normalize_tag("caf\u{e9}"),
            Err(DropReason::NotPrintableAscii)
        );
        assert_eq!(normalize_tag("a b"), Err(DropReason::NotPrintableAscii));
    }

    #[test]
    fn origin_cannot_use_reserved_edge_tag_names() {
        let tags = origin_tags(&headers(&[(
            &CACHE_TAG,
            "host:example.com,URL:x,prefix:/a,*,hostname",
        )]));
        assert_eq!(tags.tags, ["hostname"]);
        assert_eq!(tags.dropped_total, 4);
        assert!(tags
            .dropped
            .iter()
            .all(|d| d.reason == DropReason::Reserved));
    }

    #[test]
    fn automatic_tags_name_host_url_and_matching_prefixes() {
        let prefixes = ["/products/".to_owned(), "/blog/".to_owned()];
        let ignored = ["utm_*".to_owned()];
        let rules = AutoTagRules {
            path_prefixes: &prefixes,
            query: QueryFilter::Except(&ignored),
        };
        let tags = auto_tags(
            "Shop.Example.com:443",
            &uri("/Products/7?b=2&utm_source=x&a=1"),
            rules,
        );
        assert_eq!(
            tags,
            [
                "host:shop.example.com",
                "url:shop.example.com/products/7?a=1&b=2",
                "prefix:/products/",
            ]
        );
        let other = auto_tags("shop.example.com", &uri("/about"), rules);
        assert_eq!(other.len(), 2, "no prefix tag outside the prefixes");
    }

    #[test]
    fn url_tag_is_the_same_for_every_alias_of_a_path() {
        let tag = |p: &str| url_tag("example.com", &uri(p), QueryFilter::Except(&[]));
        assert_eq!(tag("/a%62c"), tag("/abc"));
        assert_eq!(tag("//abc"), tag("/abc"));
        assert_eq!(tag("/x/./../abc"), tag("/abc"));
    }

    #[test]
    fn url_tag_ignores_scheme_query_order_and_ignored_params() {
        let ignored = ["fbclid".to_owned()];
        let a = url_tag(
            "example.com",
            &uri("https://example.com/p?x=1&y=2"),
            QueryFilter::Except(&ignored),
        );
        let b = url_tag(
            "EXAMPLE.com",
            &uri("/p?y=2&fbclid=abc&x=1"),
            QueryFilter::Except(&ignored),
        );
        assert_eq!(a, b);
        assert_eq!(a, "url:example.com/p?x=1&y=2");
    }

    #[test]
    fn the_ignore_list_keys_url_tags_as_it_keys_the_cache() {
        let keying = IgnoredParams(vec!["fbclid".to_owned()]);
        let u = uri("/p?x=1&fbclid=abc");
        let filter = keying.query_filter_for("example.com", &u);
        assert_eq!(url_tag("example.com", &u, filter), "url:example.com/p?x=1");
    }

    #[test]
    fn a_url_tag_of_exactly_the_tag_limit_is_kept_as_it_is() {
        // "url:" + "example.com" + "/" + 1008 bytes = 1024.
        let path = format!("/{}", "p".repeat(1008));
        let tag = url_tag("example.com", &uri(&path), QueryFilter::Except(&[]));
        assert_eq!(tag.len(), MAX_TAG_BYTES);
        assert!(tag.starts_with("url:example.com/p"), "{tag}");
        let longer = format!("{path}p");
        let hashed = url_tag("example.com", &uri(&longer), QueryFilter::Except(&[]));
        assert!(hashed.starts_with("url:#"), "{hashed}");
    }

    #[test]
    fn over_long_urls_get_a_stable_hashed_tag() {
        let path = format!("/{}", "p".repeat(2000));
        let tag = url_tag("example.com", &uri(&path), QueryFilter::Except(&[]));
        assert!(tag.starts_with("url:#") && tag.len() == 4 + 1 + 16, "{tag}");
        assert_eq!(
            tag,
            url_tag("example.com", &uri(&path), QueryFilter::Except(&[]))
        );
    }

    #[test]
    fn entry_tags_combine_origin_and_automatic_tags() {
        let tags = entry_tags(
            &headers(&[(&CACHE_TAG, "a")]),
            "example.com",
            &uri("/x"),
            AutoTagRules::default(),
        );
        assert_eq!(tags.tags, ["a", "host:example.com", "url:example.com/x"]);
    }

    #[test]
    fn dropped_tags_serialize_for_the_log() {
        let tags = origin_tags(&headers(&[(&CACHE_TAG, "ok,host:x")]));
        assert_eq!(
            serde_json::to_string(&tags.dropped).expect("json"),
            r#"[{"tag":"host:x","reason":"reserved"}]"#
        );
    }

    #[test]
    fn tag_headers_are_stripped_for_clients() {
        let mut map = headers(&[
            (&CACHE_TAG, "a"),
            (&SURROGATE_KEY, "b"),
            (&http::header::CONTENT_TYPE, "text/html"),
        ]);
        strip_tag_headers(&mut map);
        assert_eq!(map.len(), 1);
        assert!(map.contains_key(http::header::CONTENT_TYPE));
    }
}
