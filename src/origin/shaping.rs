//! Request shaping: the one view of a client request that both the cache key
//! and the origin request are built from, so that nothing the origin sees can
//! differ from what the key says (the root of cache poisoning).
//!
//! - The path is normalised once (unreserved escapes decoded, other escapes in
//!   upper-case hex, repeated slashes collapsed, dot segments resolved); the
//!   origin receives the normalised path, and URL purge uses the same function.
//! - The query keeps only keyed members, sorted by name (stable for repeated
//!   names); ignored parameters are removed before forwarding, not only from
//!   the key. Members are split on `&` only: a member such as
//!   `utm_content=x;callback=EVIL` is one ignored member and goes whole.
//! - Request fields reach the origin through an allow-list.

use std::borrow::Cow;

use http::uri::{PathAndQuery, Uri};
use http::HeaderMap;

/// Request fields forwarded to origins by default (lower-case). Anything else a
/// client sends is dropped unless `FORWARD_REQUEST_HEADERS` or
/// `CACHE_KEY_HEADERS` names it.
pub const FORWARDED_REQUEST_FIELDS: &[&str] = &[
    "accept",
    "accept-encoding",
    "accept-language",
    "authorization",
    "cache-control",
    "content-encoding",
    "content-language",
    "content-length",
    "content-type",
    "cookie",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "origin",
    "pragma",
    "range",
    "referer",
    "user-agent",
    "x-requested-with",
];

/// A `Host` value lower-cased and without its port: `Shop.Example:8787` →
/// `shop.example`, `[::1]:8787` → `[::1]` (an IPv6 literal stays whole).
/// Rules, `host:` tags and URL purge all name hosts this way.
pub fn host_without_port(host: &str) -> String {
    let host = host.trim();
    let bare = match host.rsplit_once(':') {
        Some((name, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!name.starts_with('[') || name.ends_with(']')) =>
        {
            name
        }
        _ => host,
    };
    bare.to_ascii_lowercase()
}

/// Whether a request field may be forwarded to an origin.
pub fn is_forwarded_field(name: &str, extra: &[String]) -> bool {
    FORWARDED_REQUEST_FIELDS.contains(&name) || extra.iter().any(|e| e == name)
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Decodes escapes of unreserved characters and upper-cases the hex of every
/// other escape (RFC 3986 §6.2.2.1–2). A `%` not followed by two hex digits
/// is written as `%25`, so the result is always a valid path.
fn normalize_escapes(segment: &str, out: &mut String) {
    let bytes = segment.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let pair = bytes
                .get(i + 1)
                .and_then(|&h| hex_value(h))
                .zip(bytes.get(i + 2).and_then(|&l| hex_value(l)));
            if let Some((high, low)) = pair {
                let decoded = high * 16 + low;
                if is_unreserved(decoded) {
                    out.push(char::from(decoded));
                } else {
                    out.push('%');
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(high)]));
                    out.push(char::from(b"0123456789ABCDEF"[usize::from(low)]));
                }
                i += 3;
                continue;
            }
            out.push_str("%25");
            i += 1;
            continue;
        }
        // A parsed `Uri` path is ASCII; anything else is escaped as bytes.
        if byte.is_ascii() {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
        i += 1;
    }
}

/// The normalised form of a request path: escapes normalised, empty segments
/// (`//`) dropped, `.` and `..` resolved (never above the root). Borrowed
/// when the path is already normal, which is the common case.
pub fn normalize_path(path: &str) -> Cow<'_, str> {
    if is_normal(path) {
        return Cow::Borrowed(path);
    }
    let mut segments: Vec<String> = Vec::new();
    let trailing_slash = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    for raw in path.split('/') {
        let mut segment = String::with_capacity(raw.len());
        normalize_escapes(raw, &mut segment);
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || (trailing_slash && !segments.is_empty()) {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Fast check for paths that need no work: start with `/`, no escapes, no
/// empty or dot segments.
fn is_normal(path: &str) -> bool {
    if !path.starts_with('/') || !path.is_ascii() || path.contains('%') || path.contains("//") {
        return false;
    }
    !path
        .split('/')
        .skip(1)
        .any(|segment| segment == "." || segment == "..")
}

/// Which query parameters are keyed (and so reach the origin). Names may be
/// `prefix*` patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryFilter<'a> {
    /// Every parameter except these (`CACHE_IGNORE_QUERY_PARAMS`, a rule's
    /// `exclude`, or none at all for a rule's `"all"`).
    Except(&'a [String]),
    /// Only these (a rule's `include`).
    Only(&'a [String]),
    /// No query at all (a rule's `"none"`).
    Nothing,
}

impl Default for QueryFilter<'_> {
    /// Every parameter.
    fn default() -> Self {
        Self::Except(&[])
    }
}

impl QueryFilter<'_> {
    /// Whether a query member (`name=value`) is left out.
    pub fn drops(&self, member: &str) -> bool {
        match self {
            Self::Except(ignored) => is_ignored_param(member, ignored),
            Self::Only(kept) => !is_ignored_param(member, kept),
            Self::Nothing => true,
        }
    }
}

/// Whether a query member is one of the ignored parameters (`prefix*` matches
/// by prefix).
pub fn is_ignored_param(member: &str, ignored: &[String]) -> bool {
    let name = member_name(member);
    ignored
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        })
}

fn member_name(member: &str) -> &str {
    member.split_once('=').map_or(member, |(name, _)| name)
}

/// The keyed query: members split on `&`, empty and dropped ones left out,
/// the rest sorted by name (stable, so repeated names keep the client's
/// order). `None` when nothing is left.
pub fn keyed_query(query: &str, filter: QueryFilter<'_>) -> Option<String> {
    let mut members: Vec<&str> = query
        .split('&')
        .filter(|m| !m.is_empty() && !filter.drops(m))
        .collect();
    if members.is_empty() {
        return None;
    }
    members.sort_by(|a, b| member_name(a).cmp(member_name(b)));
    Some(members.join("&"))
}

/// Whether `query` is already what [`keyed_query`] would make of it: no empty
/// or dropped member, names in order. Checked without allocating.
fn is_keyed_query(query: &str, filter: QueryFilter<'_>) -> bool {
    let mut previous = "";
    for member in query.split('&') {
        let name = member_name(member);
        if member.is_empty() || filter.drops(member) || name < previous {
            return false;
        }
        previous = name;
    }
    true
}

/// The URI the cache keys and the origin receives: normalised path, keyed
/// query, the client's scheme and authority. `None` when nothing changes.
pub fn shaped_uri(uri: &Uri, filter: QueryFilter<'_>) -> Option<Uri> {
    let path = normalize_path(uri.path());
    let query_keyed = uri.query().is_none_or(|q| is_keyed_query(q, filter));
    if matches!(path, Cow::Borrowed(_)) && query_keyed {
        // The common case on the hit path: nothing to build.
        return None;
    }
    let query = uri.query().and_then(|q| keyed_query(q, filter));
    let unchanged = matches!(path, Cow::Borrowed(_)) && query.as_deref() == uri.query();
    if unchanged {
        return None;
    }
    let path_and_query = match &query {
        Some(query) => format!("{path}?{query}"),
        None => path.into_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

/// The value of `Origin` that goes into the cache key: lower-cased, trimmed.
/// An origin that reflects it into a response (CORS) without `Vary: Origin`
/// still cannot hand one site's answer to another.
pub fn keyed_origin(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::ORIGIN)?;
    let text = String::from_utf8_lossy(value.as_bytes());
    Some(text.trim().to_ascii_lowercase())
}

/// Whether a cookie named in the request matches one of the globs (`*` is any
/// run of characters). Cookie names are compared as sent (case-sensitive).
pub fn has_matching_cookie(headers: &HeaderMap, globs: &[String]) -> bool {
    if globs.is_empty() {
        return false;
    }
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.split_once('=').map(|(name, _)| name.trim()))
        .any(|name| globs.iter().any(|glob| glob_matches(glob, name)))
}

/// `*`-glob matching without backtracking blow-up (greedy with one restart
/// point, linear in practice).
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let (g, t) = (glob.as_bytes(), text.as_bytes());
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && g[gi] == b'*' {
            star = Some((gi, ti));
            gi += 1;
        } else if gi < g.len() && g[gi] == t[ti] {
            gi += 1;
            ti += 1;
        } else if let Some((star_gi, star_ti)) = star {
            gi = star_gi + 1;
            ti = star_ti + 1;
            star = Some((star_gi, star_ti + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_their_port_but_ipv6_literals_stay_whole() {
        for (host, bare) in [
            ("Shop.Example:8787", "shop.example"),
            ("shop.example", "shop.example"),
            ("[::1]:8787", "[::1]"),
            ("[2001:DB8::1]", "[2001:db8::1]"),
            ("shop.example:", "shop.example:"),
        ] {
            assert_eq!(host_without_port(host), bare, "{host}");
        }
    }

    #[test]
    fn aliases_of_one_path_normalise_to_it() {
        for alias in [
            "/abc",
            "/a%62c",
            "/a%62%63",
            "//abc",
            "/x/../abc",
            "/./abc",
            "/x/%2e%2e/abc",
            "/../abc",
        ] {
            assert_eq!(normalize_path(alias), "/abc", "{alias}");
        }
    }

    #[test]
    fn normalisation_keeps_meaningful_differences() {
        assert_eq!(normalize_path("/a%2fb"), "/a%2Fb", "an encoded slash stays");
        assert_eq!(normalize_path("/a/b/"), "/a/b/", "a trailing slash stays");
        assert_eq!(normalize_path("/"), "/");
        assert_eq!(normalize_path(""), "/");
        assert_eq!(normalize_path("/A"), "/A", "paths stay case-sensitive");
        assert_eq!(normalize_path("/100%"), "/100%25");
        assert_eq!(normalize_path("/a/.."), "/");
        assert_eq!(normalize_path("/a/b/.."), "/a/");
    }

    #[test]
    fn normal_paths_are_borrowed() {
        assert!(matches!(normalize_path("/products/7"), Cow::Borrowed(_)));
        assert!(matches!(normalize_path("/a//b"), Cow::Owned(_)));
    }

    #[test]
    fn normalisation_is_idempotent() {
        for path in [
            "/a%62c//x/./y/../z%2f%7e",
            "/%zz/..%2E/q",
            "//",
            "/a/b/../../..",
        ] {
            let once = normalize_path(path).into_owned();
            assert_eq!(normalize_path(&once), once.as_str(), "{path}");
        }
    }

    #[test]
    fn ignored_members_are_dropped_whole_even_with_semicolons() {
        let ignored = vec!["utm_*".to_owned()];
        assert_eq!(
            keyed_query(
                "callback=ok&utm_content=x;callback=EVIL",
                QueryFilter::Except(&ignored)
            )
            .as_deref(),
            Some("callback=ok")
        );
        assert_eq!(
            keyed_query("utm_source=a&&", QueryFilter::Except(&ignored)),
            None
        );
        assert_eq!(
            keyed_query("b=2&a=1&a=0", QueryFilter::Except(&[])).as_deref(),
            Some("a=1&a=0&b=2"),
            "sorted by name, repeated names in client order"
        );
    }

    #[test]
    fn shaped_uri_is_what_the_key_and_the_origin_see() {
        let ignored = vec!["utm_*".to_owned()];
        let uri: Uri = "https://shop.example/a%62c//d?z=1&utm_source=x&a=2"
            .parse()
            .expect("uri");
        let shaped = shaped_uri(&uri, QueryFilter::Except(&ignored)).expect("changed");
        assert_eq!(shaped.to_string(), "https://shop.example/abc/d?a=2&z=1");
        assert!(
            shaped_uri(&shaped, QueryFilter::Except(&ignored)).is_none(),
            "already shaped"
        );
    }

    #[test]
    fn a_keyed_query_is_recognised_without_rebuilding_it() {
        let ignored = vec!["utm_*".to_owned()];
        for query in [
            "a=1&b=2",
            "a=1&a=0&b=2",
            "x",
            "callback=ok",
            "a=1&b=2&utm_x=1",
            "b=1&a=2",
            "a=1&&b=2",
            "",
            "a=1&",
        ] {
            assert_eq!(
                is_keyed_query(query, QueryFilter::Except(&ignored)),
                keyed_query(query, QueryFilter::Except(&ignored)).as_deref() == Some(query),
                "{query}"
            );
        }
    }

    #[test]
    fn forwarding_is_an_allow_list() {
        let extra = vec!["x-tenant".to_owned()];
        assert!(is_forwarded_field("accept-language", &extra));
        assert!(is_forwarded_field("x-tenant", &extra));
        for unkeyed in [
            "x-forwarded-host",
            "x-forwarded-server",
            "x-forwarded-prefix",
            "x-original-url",
            "true-client-ip",
            "x-real-ip",
            "x-forwarded-for",
            "forwarded",
        ] {
            assert!(!is_forwarded_field(unkeyed, &extra), "{unkeyed}");
        }
    }

    #[test]
    fn cookie_globs_match_names_only() {
        let globs = vec!["session*".to_owned(), "wordpress_logged_in_*".to_owned()];
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("theme=dark; sessionid=abc"),
        );
        assert!(has_matching_cookie(&headers, &globs));
        headers.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("theme=session123"),
        );
        assert!(!has_matching_cookie(&headers, &globs), "values never match");
        headers.insert(
            http::header::COOKIE,
            http::HeaderValue::from_static("wordpress_logged_in_abc=1"),
        );
        assert!(has_matching_cookie(&headers, &globs));
        assert!(!has_matching_cookie(&headers, &[]));
    }

    #[test]
    fn globs_match_like_shell_stars() {
        assert!(glob_matches("a*b*c", "aXXbYYc"));
        assert!(glob_matches("*", ""));
        assert!(!glob_matches("a*b", "a"));
        assert!(glob_matches("*.css", "x.y.css"));
        assert!(!glob_matches("ab", "abc"));
    }
}
