//! Cache keys: namespace + scheme + host + normalised path + keyed query, as a
//! URL the Cache API accepts. The path and query are shaped by
//! [`crate::origin::shaping`], the same function that builds what the origin receives:
//! query members are sorted so that `?a=1&b=2` and `?b=2&a=1` share one entry.

use http::Uri;

use crate::origin::shaping;

/// Path segment that separates our keys from real URLs on the same host.
const KEY_PREFIX: &str = "/.cachefront/";

/// What, besides the URL, goes into a primary key.
#[derive(Debug, Clone, Copy)]
pub struct KeyRules<'a> {
    pub namespace: &'a str,
    /// Which query parameters are keyed.
    pub query: shaping::QueryFilter<'a>,
    /// Request header fields added to the key, with their values.
    pub headers: &'a [(String, String)],
}

/// Builds the primary cache key for a request URI on `host`.
/// The scheme is part of the key, so an origin's `http` → `https` redirect is
/// never served to `https` clients (a URI without one counts as `https`).
pub fn primary_key(rules: KeyRules<'_>, host: &str, uri: &Uri) -> String {
    let path = shaping::normalize_path(uri.path());
    let scheme = uri.scheme_str().unwrap_or("https");
    let mut key = String::with_capacity(host.len() + path.len() + 72);
    key.push_str("https://");
    key.push_str(&host.to_ascii_lowercase());
    key.push_str(KEY_PREFIX);
    key.push_str(rules.namespace);
    key.push('/');
    key.push_str(&scheme.to_ascii_lowercase());
    key.push_str(&path);
    let mut query = shaping::keyed_query(uri.query().unwrap_or(""), rules.query);
    for (name, value) in rules.headers {
        let member = format!("cachefront-h-{name}={}", percent_encode(value));
        query = Some(match query {
            Some(q) => format!("{q}&{member}"),
            None => member,
        });
    }
    if let Some(query) = query {
        key.push('?');
        key.push_str(&query);
    }
    key
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The Cache API key of one of our own records about `key` (a registry
/// answer, a fill claim): under `base`, a URL on a reserved host no client
/// URL can have (`.invalid` never resolves), then the namespace, then `key`
/// in hex, as keys may hold any character.
pub fn record_url(base: &str, namespace: &str, key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut url = String::with_capacity(base.len() + namespace.len() + 1 + 2 * key.len());
    url.push_str(base);
    url.push_str(namespace);
    url.push('/');
    for byte in key.bytes() {
        url.push(char::from(HEX[usize::from(byte >> 4)]));
        url.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules<'a>(ignored: &'a [String], headers: &'a [(String, String)]) -> KeyRules<'a> {
        KeyRules {
            namespace: "v1",
            query: shaping::QueryFilter::Except(ignored),
            headers,
        }
    }

    fn key(uri: &str) -> String {
        primary_key(rules(&[], &[]), "Shop.Example", &uri.parse().expect("uri"))
    }

    #[test]
    fn ignored_parameters_do_not_split_the_cache() {
        let ignored = vec!["utm_*".to_owned(), "fbclid".to_owned()];
        let k = |u: &str| primary_key(rules(&ignored, &[]), "h", &u.parse().expect("uri"));
        assert_eq!(k("/p?utm_source=x&id=1&fbclid=abc"), k("/p?id=1"));
        assert_ne!(k("/p?fbclidx=1"), k("/p"), "exact names match exactly");
    }

    #[test]
    fn keyed_headers_split_the_cache() {
        let a = vec![("x-forwarded-host".to_owned(), "a.example".to_owned())];
        let b = vec![("x-forwarded-host".to_owned(), "b example".to_owned())];
        let uri: Uri = "/p".parse().expect("uri");
        let ka = primary_key(rules(&[], &a), "h", &uri);
        let kb = primary_key(rules(&[], &b), "h", &uri);
        assert_ne!(ka, kb);
        assert!(
            kb.ends_with("?cachefront-h-x-forwarded-host=b%20example"),
            "{kb}"
        );
    }

    #[test]
    fn query_order_does_not_matter() {
        assert_eq!(key("/p?b=2&a=1"), key("/p?a=1&b=2"));
        assert_eq!(
            key("/p?a=1&b=2"),
            "https://shop.example/.cachefront/v1/https/p?a=1&b=2"
        );
    }

    #[test]
    fn repeated_parameters_keep_their_relative_order() {
        assert_eq!(
            key("/p?tag=z&a=1&tag=y"),
            "https://shop.example/.cachefront/v1/https/p?a=1&tag=z&tag=y"
        );
        assert_ne!(key("/p?tag=z&tag=y"), key("/p?tag=y&tag=z"));
    }

    #[test]
    fn empty_query_members_are_ignored() {
        assert_eq!(key("/p?&&"), key("/p"));
        assert_eq!(key("/p?a=1&"), key("/p?a=1"));
    }

    #[test]
    fn namespace_and_host_separate_entries() {
        let uri: Uri = "/p".parse().expect("uri");
        let v2 = KeyRules {
            namespace: "v2",
            ..rules(&[], &[])
        };
        assert_ne!(
            primary_key(rules(&[], &[]), "a.example", &uri),
            primary_key(v2, "a.example", &uri)
        );
        assert_ne!(
            primary_key(rules(&[], &[]), "a.example", &uri),
            primary_key(rules(&[], &[]), "b.example", &uri)
        );
    }

    #[test]
    fn scheme_separates_entries() {
        let k = |u: &str| primary_key(rules(&[], &[]), "h", &u.parse().expect("uri"));
        assert_ne!(k("http://h/p"), k("https://h/p"));
        assert_eq!(k("https://h/p"), k("/p"), "no scheme counts as https");
    }

    #[test]
    fn path_aliases_share_one_entry() {
        assert_eq!(key("/a%62c"), key("/abc"));
        assert_eq!(key("//abc"), key("/abc"));
        assert_eq!(key("/x/../abc"), key("/abc"));
        assert_ne!(key("/ABC"), key("/abc"));
    }
}
