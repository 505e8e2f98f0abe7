//! The form in which a request's or response's head crosses between the
//! Workers runtime and the wasm: one string of `\n`-separated lines (leading
//! fields such as the method and URL, then each header as a name line and a
//! value line). One string is one crossing; reading or building a `Headers`
//! field by field is several per field. Neither header names, header values
//! (the Fetch standard strips CR and LF from values and refuses them in
//! names), methods nor serialized URLs can hold a line feed, so the split is
//! exact.

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// Splits `head` into its `leading` first lines and the header map of the
/// rest; `None` when it has fewer lines than that. Fields that are not valid
/// `http` names or values are skipped, as the runtime's own could not be
/// sent on anyway.
pub fn parse(head: &str, leading: usize) -> Option<(Vec<&str>, HeaderMap)> {
    let mut lines = head.split('\n');
    let first: Vec<&str> = lines.by_ref().take(leading).collect();
    if first.len() < leading {
        return None;
    }
    let mut map = HeaderMap::new();
    while let (Some(name), Some(value)) = (lines.next(), lines.next()) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    Some((first, map))
}

/// The header lines of `map` (name, value, each ending in `\n`), for the
/// runtime to build one `Headers` from. Values that are not visible ASCII
/// are left out (the runtime's `Headers` would take them as Latin-1 and
/// change them).
pub fn lines(map: &HeaderMap) -> String {
    let len: usize = map
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 2)
        .sum();
    let mut out = String::with_capacity(len);
    for (name, value) in map {
        if let Ok(value) = value.to_str() {
            out.push_str(name.as_str());
            out.push('\n');
            out.push_str(value);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_gives_its_method_url_and_every_field_in_order() {
        let head =
            "GET\nhttps://example.com/a?b=1\naccept\ntext/html\nset-cookie\na=1\nset-cookie\nb=2\n";
        let (first, map) = parse(head, 2).expect("two leading lines");
        assert_eq!(first, ["GET", "https://example.com/a?b=1"]);
        assert_eq!(map.get("accept").expect("accept"), "text/html");
        let cookies: Vec<_> = map.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn a_head_without_headers_or_with_too_few_lines() {
        let (first, map) = parse("204\n", 1).expect("a status line");
        assert_eq!(first, ["204"]);
        assert!(map.is_empty());
        assert!(parse("GET", 2).is_none());
    }

    #[test]
    fn invalid_fields_are_skipped_and_empty_values_kept() {
        let (_, map) = parse("200\nbad name\nx\nx-empty\n\nok\nyes\n", 1).expect("a status line");
        assert_eq!(map.len(), 2);
        assert_eq!(map.get("x-empty").expect("x-empty"), "");
        assert_eq!(map.get("ok").expect("ok"), "yes");
    }

    #[test]
    fn lines_round_trip_through_parse_and_skip_non_ascii_values() {
        let mut map = HeaderMap::new();
        map.append("content-type", HeaderValue::from_static("text/plain"));
        map.append("set-cookie", HeaderValue::from_static("a=1"));
        map.append("set-cookie", HeaderValue::from_static("b=2"));
        map.append(
            "x-latin",
            HeaderValue::from_bytes("café".as_bytes()).expect("obs-text is a valid value"),
        );
        let text = lines(&map);
        assert_eq!(
            text,
            "content-type\ntext/plain\nset-cookie\na=1\nset-cookie\nb=2\n"
        );
        let (_, back) = parse(&format!("200\n{text}"), 1).expect("a status line");
        map.remove("x-latin");
        assert_eq!(back, map);
    }
}
