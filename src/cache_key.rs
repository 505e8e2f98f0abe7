//! Cache keys: namespace + host + path + normalized query, as a URL the Cache
//! API accepts. Query parameters are sorted so that `?a=1&b=2` and `?b=2&a=1`
//! share one entry.

use http::Uri;

/// Path segment that separates our keys from real URLs on the same host.
const KEY_PREFIX: &str = "/.cachefront/";

/// Builds the primary cache key for a request URI on `host`.
pub fn primary_key(namespace: &str, host: &str, uri: &Uri) -> String {
    let path = uri.path();
    let mut key = String::with_capacity(host.len() + path.len() + 64);
    key.push_str("https://");
    key.push_str(&host.to_ascii_lowercase());
    key.push_str(KEY_PREFIX);
    key.push_str(namespace);
    key.push_str(path);
    if let Some(query) = normalized_query(uri.query().unwrap_or("")) {
        key.push('?');
        key.push_str(&query);
    }
    key
}

/// Sorts query pairs (stable for repeated names) and drops empty members.
fn normalized_query(query: &str) -> Option<String> {
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
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

    fn key(uri: &str) -> String {
        primary_key("v1", "Shop.Example", &uri.parse().expect("uri"))
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
        assert_ne!(
            primary_key("v1", "a.example", &uri),
            primary_key("v2", "a.example", &uri)
        );
        assert_ne!(
            primary_key("v1", "a.example", &uri),
            primary_key("v1", "b.example", &uri)
        );
    }
}
