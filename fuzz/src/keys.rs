//! Request shaping, cache keys and `Vary` variants: keys are deterministic,
//! independent of query member order and of ignored parameters, include the
//! scheme, and are the same for every alias of a path (`//`, escapes of
//! unreserved characters), as are URL purge tags; the origin receives exactly
//! the keyed query and the normalised path; a variant key always belongs to
//! its own primary key and to no other.

use cachefront::cache::key::{self as cache_key, KeyRules};
use cachefront::origin::shaping::{self, QueryFilter};
use cachefront::purge::tags;
use cachefront::semantics::vary;
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
    // The runtime hands the worker absolute URLs: the path starts with `/`.
    if !target.starts_with('/') {
        return;
    }
    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    let ignored = vec!["utm_*".to_owned(), "fbclid".to_owned()];
    let keyed_headers: Vec<(String, String)> = request
        .get("x-device")
        .and_then(|v| v.to_str().ok())
        .map(|v| vec![("x-device".to_owned(), v.to_owned())])
        .unwrap_or_default();
    // A rule's query filter (issue #15) is picked by the input; the global
    // ignore list (`utm_*` etc.) is the default. `utm_*` is dropped by every
    // filter here, so the "ignored parameter" invariant below holds for all.
    let kept = vec!["q".to_owned(), "id*".to_owned()];
    let filter = match request.get("x-query-filter").map(|v| v.as_bytes()) {
        Some(b"only") => QueryFilter::Only(&kept),
        Some(b"none") => QueryFilter::Nothing,
        _ => QueryFilter::Except(&ignored),
    };
    let rules = KeyRules {
        namespace: "v1",
        query: filter,
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

    shaping_invariants(rules, &uri, filter, &target, &key);

    // Variants.
    let fields: Vec<String> = vary_line
        .split(',')
        .map(|f| f.trim().to_ascii_lowercase())
        .filter(|f| !f.is_empty() && f != "*")
        .collect();
    let values = vary::variant_values(&request, &fields);
    assert_eq!(values, vary::variant_values(&request, &fields));
    let variant = vary::variant_key(&key, &values, Some(1));
    assert!(vary::is_key_or_variant(&variant, &key));
    assert!(vary::is_key_or_variant(&key, &key));
    assert!(
        !vary::is_key_or_variant(&vary::variant_key(&format!("{key}x"), &values, None), &key),
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

/// TRUST-SPEC rules 7, 11 and 12 on one request target.
fn shaping_invariants(
    rules: KeyRules<'_>,
    uri: &Uri,
    filter: QueryFilter<'_>,
    target: &str,
    key: &str,
) {
    let path = uri.path();
    let normal = shaping::normalize_path(path);
    assert_eq!(
        shaping::normalize_path(&normal),
        normal,
        "normalising {path:?} twice changed it"
    );

    // What the origin receives is what was keyed.
    let sent = shaping::shaped_uri(uri, filter).unwrap_or_else(|| uri.clone());
    assert_eq!(
        sent.path(),
        normal,
        "the origin got another path than the key"
    );
    assert_eq!(
        sent.query().map(str::to_owned),
        uri.query().and_then(|q| shaping::keyed_query(q, filter)),
        "the origin got another query than the key"
    );
    assert_eq!(
        cache_key::primary_key(rules, HOST, &sent),
        key,
        "keying the shaped request changed the key"
    );

    // The scheme is part of the key.
    let absolute = |scheme: &str| format!("{scheme}://shop.example.com{target}").parse::<Uri>();
    if let (Ok(http), Ok(https)) = (absolute("http"), absolute("https")) {
        assert_ne!(
            cache_key::primary_key(rules, HOST, &http),
            cache_key::primary_key(rules, HOST, &https),
            "http and https share a key"
        );
    }

    // Aliases of the path share the key and the URL purge tag.
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let doubled = path.replace('/', "//");
    let tag = tags::url_tag(HOST, uri, filter);
    for alias in [Some(doubled), escaped_alias(path)].into_iter().flatten() {
        let Ok(alias_uri) = format!("https://shop.example.com{alias}{query}").parse::<Uri>() else {
            continue;
        };
        assert_eq!(
            cache_key::primary_key(rules, HOST, &alias_uri),
            key,
            "{alias:?} and {path:?} have different keys"
        );
        assert_eq!(
            tags::url_tag(HOST, &alias_uri, filter),
            tag,
            "a URL purge of {path:?} misses {alias:?}"
        );
    }

    // BYPASS_COOKIES globs.
    assert!(shaping::glob_matches("*", path));
    if !path.contains('*') {
        assert!(shaping::glob_matches(path, path));
        let mut mid = path.len() / 2;
        while !path.is_char_boundary(mid) {
            mid -= 1;
        }
        let half = &path[..mid];
        if !half.contains('*') {
            assert!(shaping::glob_matches(&format!("{half}*"), path));
        }
    }
}

/// `path` with its first letter or digit written as a percent-escape, unless
/// that character belongs to an escape already.
fn escaped_alias(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let at = (0..bytes.len()).find(|&i| {
        bytes[i].is_ascii_alphanumeric() && !bytes[i.saturating_sub(2)..i].contains(&b'%')
    })?;
    Some(format!(
        "{}%{:02X}{}",
        &path[..at],
        bytes[at],
        &path[at + 1..]
    ))
}
