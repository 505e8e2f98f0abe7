//! Secondary cache keys from `Vary` (RFC 9111 §4.1): the request fields a
//! response varies on are normalized, and each combination of values gets its
//! own entry. The primary key then holds a small index naming the fields.

use crate::stable_hash::StableHasher;
use http::HeaderMap;

/// A normalized (field, value) pair of the request, as a variant is keyed.
pub type VariantValues = Vec<(String, String)>;

/// A field's lines as one value, joined by commas (RFC 9110 §5.3); lines
/// that are not visible ASCII are left out.
pub fn field_value(headers: &HeaderMap, name: &str) -> String {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",")
}

/// Normalizes the request's values for the nominated fields, so requests that
/// must get the same response share one variant.
pub fn variant_values(request: &HeaderMap, fields: &[String]) -> VariantValues {
    fields
        .iter()
        .map(|field| {
            let joined = field_value(request, field);
            (field.clone(), normalize(field, &joined))
        })
        .collect()
}

fn normalize(field: &str, value: &str) -> String {
    let members: Vec<String> = value
        .split(',')
        .map(|m| m.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|m| !m.is_empty())
        .collect();
    match field {
        // The Workers runtime negotiates compression itself; only the best
        // coding a client accepts can change the bytes we hold.
        "accept-encoding" => {
            let lower = members.join(",").to_ascii_lowercase();
            let accepts = |coding: &str| {
                lower.split(',').any(|m| {
                    let mut parts = m.split(';');
                    let name = parts.next().unwrap_or("").trim();
                    let refused =
                        parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
                    name == coding && !refused
                })
            };
            if accepts("br") {
                "br".into()
            } else if accepts("gzip") {
                "gzip".into()
            } else {
                "identity".into()
            }
        }
        // Token lists whose case carries no meaning.
        "accept" | "accept-language" | "accept-charset" => members.join(",").to_ascii_lowercase(),
        _ => members.join(","),
    }
}

/// A short, stable hash of the variant values (FNV-1a, 64 bit).
pub fn variant_hash(values: &VariantValues) -> String {
    let mut hasher = StableHasher::default();
    for (field, value) in values {
        hasher.write(field.as_bytes());
        hasher.write(b":");
        hasher.write(value.as_bytes());
        hasher.write(b"\n");
    }
    format!("{:016x}", hasher.finish())
}

/// Whether `key` is `primary` itself or one of its variants.
pub fn is_key_or_variant(key: &str, primary: &str) -> bool {
    match key.strip_prefix(primary) {
        Some("") => true,
        Some(rest) => {
            rest.starts_with("?cachefront-variant=") || rest.starts_with("&cachefront-variant=")
        }
        None => false,
    }
}

/// The key of one variant under a primary key, in the index generation
/// `generation` (the time its Vary index was first written). An unsafe
/// request drops the index; the next index starts a new generation, so the
/// variants stored before it, which cannot be listed, are never read again.
pub fn variant_key(primary: &str, values: &VariantValues, generation: Option<u64>) -> String {
    let separator = if primary.contains('?') { '&' } else { '?' };
    let hash = variant_hash(values);
    match generation {
        Some(generation) => format!("{primary}{separator}cachefront-variant={hash}.{generation}"),
        None => format!("{primary}{separator}cachefront-variant={hash}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn req(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    fn fields(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn whitespace_and_case_differences_share_a_variant() {
        let f = fields(&["accept-language"]);
        let a = variant_values(&req(&[("accept-language", "en-GB,  fr;q=0.5")]), &f);
        let b = variant_values(&req(&[("accept-language", "EN-gb, fr;q=0.5")]), &f);
        assert_eq!(a, b);
        assert_eq!(variant_key("k", &a, None), variant_key("k", &b, None));
    }

    #[test]
    fn different_values_get_different_variants() {
        let f = fields(&["accept-language"]);
        let en = variant_values(&req(&[("accept-language", "en")]), &f);
        let de = variant_values(&req(&[("accept-language", "de")]), &f);
        assert_ne!(variant_key("k", &en, None), variant_key("k", &de, None));
    }

    #[test]
    fn variant_hash_is_the_same_in_every_version() {
        // Stored variants are found by this hash: changing it orphans them.
        let values = vec![
            ("accept-language".to_owned(), "en".to_owned()),
            ("accept-encoding".to_owned(), "gzip".to_owned()),
        ];
        assert_eq!(variant_hash(&values), "88bfbf795d305b23");
    }

    #[test]
    fn absent_field_is_its_own_variant() {
        let f = fields(&["x-theme"]);
        let none = variant_values(&req(&[]), &f);
        let dark = variant_values(&req(&[("x-theme", "dark")]), &f);
        assert_eq!(none, vec![("x-theme".to_owned(), String::new())]);
        assert_ne!(variant_hash(&none), variant_hash(&dark));
    }

    #[test]
    fn accept_encoding_collapses_to_the_best_coding() {
        let f = fields(&["accept-encoding"]);
        let v = |h: &'static str| {
            variant_values(&req(&[("accept-encoding", h)]), &f)[0]
                .1
                .clone()
        };
        assert_eq!(v("gzip, deflate, br"), "br");
        assert_eq!(v("gzip;q=1.0, deflate"), "gzip");
        assert_eq!(v("br;q=0, gzip"), "gzip");
        assert_eq!(v("identity"), "identity");
    }

    #[test]
    fn variants_are_recognised_under_their_primary_key_only() {
        let values = vec![("accept".to_owned(), "x".to_owned())];
        assert!(is_key_or_variant("k/p", "k/p"));
        assert!(is_key_or_variant(
            &variant_key("k/p", &values, Some(7)),
            "k/p"
        ));
        assert!(!is_key_or_variant("k/products", "k/p"));
    }

    #[test]
    fn variant_key_extends_the_primary_key() {
        let values = vec![("accept".to_owned(), "text/html".to_owned())];
        assert!(variant_key("https://h/.cachefront/v1/p", &values, None)
            .starts_with("https://h/.cachefront/v1/p?cachefront-variant="));
        assert!(variant_key("https://h/.cachefront/v1/p?a=1", &values, None)
            .starts_with("https://h/.cachefront/v1/p?a=1&cachefront-variant="));
    }
}
