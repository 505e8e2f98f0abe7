//! Cache keys: namespace + host + path + normalized query, as a URL the Cache
//! API accepts. Query parameters are sorted so that `?a=1&b=2` and `?b=2&a=1`
//! share one entry.

use http::Uri;

/// Path segment that separates our keys from real URLs on the same host.
const KEY_PREFIX: &str = "/.cachefront/";

/// What, besides the URL, goes into a primary key.
#[derive(Debug, Clone, Copy)]
pub struct KeyRules<'a> {
    pub namespace: &'a str,
    /// Query parameter names left out (`prefix*` matches by prefix).
    pub ignored_params: &'a [String],
    /// Request header fields added to the key, with their values.
    pub headers: &'a [(String, String)],
}

/// Builds the primary cache key for a request URI on `host`.
pub fn primary_key(rules: KeyRules<'_>, host: &str, uri: &Uri) -> String {
    let path = uri.path();
    let mut key = String::with_capacity(host.len() + path.len() + 64);
    key.push_str("https://");
    key.push_str(&host.to_ascii_lowercase());
    key.push_str(KEY_PREFIX);
    key.push_str(rules.namespace);
    key.push_str(path);
    let mut query = normalized_query(uri.query().unwrap_or(""), rules.ignored_params);
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

fn is_ignored(pair: &str, ignored: &[String]) -> bool {
    let name = pair.split_once('=').map_or(pair, |(name, _)| name);
    ignored
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        })
}

/// Sorts query pairs (stable for repeated names) and drops empty and ignored members.
fn normalized_query(query: &str, ignored: &[String]) -> Option<String> {
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !is_ignored(p, ignored))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    fn name(pair: &str) -> &str {
        pair.split_once('=').map_or(pair, |(name, _)| name)
    }
    // A stable sort keeps repeated names in the order the client gave them.
    pairs.sort_by(|a, b| name(a).cmp(name(b)));
    Some(pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules<'a>(ignored: &'a [String], headers: &'a [(String, String)]) -> KeyRules<'a> {
        KeyRules {
            namespace: "v1",
            ignored_params: ignored,
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
            "https://shop.example/.cachefront/v1/p?a=1&b=2"
        );
    }

    #[test]
    fn repeated_parameters_keep_their_relative_order() {
        assert_eq!(
            key("/p?tag=z&a=1&tag=y"),
            "https://shop.example/.cachefront/v1/p?a=1&tag=z&tag=y"
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
}
