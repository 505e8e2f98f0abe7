//! Cache keys and `Vary` variants: keys are deterministic, independent of
//! query member order and of ignored parameters, and a variant key always
//! belongs to its own primary key and to no other.

use cachefront::cache_key::{self, KeyRules};
use cachefront::vary;
use http::header::HeaderValue;
use http::{HeaderMap, Uri};

use crate::input::Lines;

const HOST: &str = "Shop.Example.com";

/// Input:
/// ```text
/// /path?b=2&a=1        request target (path and query)
/// accept-encoding, x   fields the response varies on
/// accept-encoding: br  request headers
/// ```
pub fn vary_key(data: &[u8]) {
    let mut lines = Lines::new(data);
    let target = lines.next_text();
    let vary_line = lines.next_text();
    let request = lines.headers();
    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    let ignored = vec!["utm_*".to_owned(), "fbclid".to_owned()];
    let keyed_headers: Vec<(String, String)> = request
        .get("x-device")
        .and_then(|v| v.to_str().ok())
        .map(|v| vec![("x-device".to_owned(), v.to_owned())])
        .unwrap_or_default();
    let rules = KeyRules {
        namespace: "v1",
        ignored_params: &ignored,
        headers: &keyed_headers,
    };
    let key = cache_key::primary_key(rules, HOST, &uri);
    assert_eq!(
        key,
        cache_key::primary_key(rules, HOST, &uri),
        "deterministic"
    );
    assert!(
        key.contains("shop.example.com"),
        "the host is in the key, lower-cased: {key}"
    );

    let path = uri.path();
    let query = uri.query().unwrap_or("");
    let members: Vec<&str> = query.split('&').filter(|m| !m.is_empty()).collect();
    let name = |m: &str| m.split_once('=').map_or(m, |(n, _)| n).to_owned();
    let mut names: Vec<String> = members.iter().map(|m| name(m)).collect();
    names.sort();
    names.dedup();
    if names.len() == members.len() {
        // With distinct names the order of members carries no meaning.
        let reversed: Vec<&str> = members.iter().rev().copied().collect();
        if let Ok(other) = format!("{path}?{}", reversed.join("&")).parse::<Uri>() {
            assert_eq!(
                key,
                cache_key::primary_key(rules, HOST, &other),
                "query order changed the key of {target:?}"
            );
        }
    }
    // An ignored parameter added anywhere changes nothing.
    let with_ignored = if members.is_empty() {
        format!("{path}?utm_source=fuzz")
    } else {
        format!("{path}?utm_source=fuzz&{query}")
    };
    if let Ok(other) = with_ignored.parse::<Uri>() {
        assert_eq!(
            key,
            cache_key::primary_key(rules, HOST, &other),
            "an ignored parameter changed the key of {target:?}"
        );
    }

    // Variants.
    let fields: Vec<String> = vary_line
        .split(',')
        .map(|f| f.trim().to_ascii_lowercase())
        .filter(|f| !f.is_empty() && f != "*")
        .collect();
    let values = vary::variant_values(&request, &fields);
    assert_eq!(values, vary::variant_values(&request, &fields));
    let variant = vary::variant_key(&key, &values);
    assert!(vary::is_key_or_variant(&variant, &key));
    assert!(vary::is_key_or_variant(&key, &key));
    assert!(
        !vary::is_key_or_variant(&vary::variant_key(&format!("{key}x"), &values), &key),
        "a variant of another key counted as this key's"
    );
    // Whitespace after commas is not part of a value.
    let mut spaced = HeaderMap::new();
    for (name, value) in &request {
        let text = String::from_utf8_lossy(value.as_bytes()).replace(',', ",  ");
        if let Ok(v) = HeaderValue::from_str(&text) {
            spaced.append(name.clone(), v);
        } else {
            spaced.append(name.clone(), value.clone());
        }
    }
    if request
        .values()
        .all(|v| v.to_str().is_ok() && !v.as_bytes().contains(&b'"'))
    {
        assert_eq!(
            vary::variant_hash(&values),
            vary::variant_hash(&vary::variant_values(&spaced, &fields)),
            "spaces after commas changed a variant"
        );
    }
}
