//! `Surrogate-Control` (W3C Edge Architecture 1.0), the origin-to-CDN field of
//! Fastly, Akamai and Varnish setups: directives for surrogates only, each
//! optionally aimed at one device (`max-age=600;cachefront`).
//!
//! An origin written for another CDN keeps its edge lifetimes here. The
//! directives that apply to this cache — those aimed at [`DEVICE`] if there
//! are any, else the unaimed ones — are read as `Cache-Control` directives
//! and govern the response instead of `Cache-Control` and `Expires`, after
//! the RFC 9213 fields (`CDN-Cache-Control`), which are the standard. Two
//! things of `Cache-Control` still hold, as they do on Fastly: an unqualified
//! `private` is never stored, and `Surrogate-Control` is no permission to
//! share an answer to a request with credentials (see
//! [`crate::semantics::policy`]).
//!
//! Syntax: a comma-separated list of `name[=value][;device]`. `max-age=N+M`
//! is N seconds fresh plus M seconds during which the stale copy may stand in
//! when the origin fails (read as `stale-if-error=M`); `no-store-remote`
//! (a surrogate away from the origin must not store: a CDN is one) is read
//! as `no-store`; `content="…"` (ESI processing) is ignored. A malformed
//! directive (`max-age =100`, `max-age= 100`, `max-age=soon`) is dropped.

use http::HeaderMap;

use crate::semantics::cache_control::{is_tchar, parse_delta_seconds, Directive, Directives};

/// The response field.
pub const SURROGATE_CONTROL: &str = "surrogate-control";

/// The request field an edge announces itself in.
pub const SURROGATE_CAPABILITY: &str = "surrogate-capability";

/// This cache's device token: directives aimed at it (`;cachefront`) apply.
pub const DEVICE: &str = "cachefront";

/// What this cache announces to origins (`Surrogate-Capability`): a
/// surrogate that understands `Surrogate-Control` (no ESI).
pub const CAPABILITY: &str = "cachefront=\"Surrogate/1.0\"";

/// The `Surrogate-Control` directives that govern this cache, as
/// `Cache-Control` directives; empty when the field is absent or nothing in
/// it applies (then `Cache-Control` governs).
pub fn directives_for_this_cache(headers: &HeaderMap) -> Directives {
    let mut aimed = Vec::new();
    let mut unaimed = Vec::new();
    for text in headers
        .get_all(SURROGATE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for element in split_outside_quotes(text, b',').filter(|e| !e.trim().is_empty()) {
            let Some((directive, device)) = parse_element(element) else {
                continue;
            };
            match device {
                None => unaimed.extend(directive),
                Some(device) if device.eq_ignore_ascii_case(DEVICE) => aimed.extend(directive),
                Some(_) => {}
            }
        }
    }
    Directives::from_list(if aimed.is_empty() { unaimed } else { aimed })
}

/// One list element: its directives (a `max-age=N+M` is two) and the device
/// it is aimed at; `None` when it is empty or malformed.
fn parse_element(element: &str) -> Option<(Vec<Directive>, Option<&str>)> {
    let mut parts = split_outside_quotes(element, b';');
    let directive = parts.next()?.trim();
    let device = match parts.next() {
        None => None,
        Some(device) => {
            let device = device.trim();
            if !is_token(device) || parts.next().is_some() {
                return None;
            }
            Some(device)
        }
    };
    let (name, value) = match directive.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (directive, None),
    };
    if !is_token(name) {
        return None;
    }
    let name = name.to_ascii_lowercase();
    let directives = match (name.as_str(), value) {
        ("max-age", Some(value)) => {
            let (fresh, extension) = match value.split_once('+') {
                Some((fresh, extension)) => (fresh, Some(extension)),
                None => (value, None),
            };
            if !is_digits(fresh) || extension.is_some_and(|e| !is_digits(e)) {
                return None;
            }
            let mut out = vec![seconds("max-age", fresh)];
            out.extend(extension.map(|e| seconds("stale-if-error", e)));
            out
        }
        ("max-age", None) => return None,
        ("no-store-remote", None) => vec![flag("no-store")],
        ("content", _) => Vec::new(),
        (_, None) => vec![flag(&name)],
        (_, Some(value)) => {
            let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(quoted) => quoted,
                None if is_token(value) => value,
                None => return None,
            };
            vec![Directive {
                name,
                value: Some(value.to_owned()),
            }]
        }
    };
    Some((directives, device))
}

fn seconds(name: &str, digits: &str) -> Directive {
    Directive {
        name: name.to_owned(),
        value: Some(parse_delta_seconds(digits).to_string()),
    }
}

fn flag(name: &str) -> Directive {
    Directive {
        name: name.to_owned(),
        value: None,
    }
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// An RFC 9110 token (no white space, no separators).
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_tchar)
}

/// `text` split at `separator` where it is not inside a quoted string.
fn split_outside_quotes(text: &str, separator: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        let bytes = current.as_bytes();
        let (mut quoted, mut escaped) = (false, false);
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                _ if b == separator && !quoted => {
                    rest = Some(&current[i + 1..]);
                    return Some(&current[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn of(lines: &[&str]) -> Vec<(String, Option<String>)> {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(
                SURROGATE_CONTROL,
                HeaderValue::from_str(line).expect("value"),
            );
        }
        directives_for_this_cache(&headers)
            .iter()
            .map(|d| (d.name.clone(), d.value.clone()))
            .collect()
    }

    fn d(name: &str, value: Option<&str>) -> (String, Option<String>) {
        (name.to_owned(), value.map(str::to_owned))
    }

    #[test]
    fn max_age_and_its_stale_extension() {
        assert_eq!(of(&["max-age=3600"]), [d("max-age", Some("3600"))]);
        assert_eq!(
            of(&["max-age=60+600"]),
            [d("max-age", Some("60")), d("stale-if-error", Some("600"))]
        );
        assert_eq!(of(&["MaX-aGe=10"]), [d("max-age", Some("10"))]);
        assert_eq!(
            of(&["max-age=99999999999"]),
            [d("max-age", Some("2147483648"))],
            "capped like delta-seconds"
        );
        assert_eq!(
            of(&["foobar, max-age=3600"]),
            [d("foobar", None), d("max-age", Some("3600"))]
        );
    }

    #[test]
    fn malformed_directives_are_dropped() {
        for bad in [
            "max-age =100",
            "max-age= 100",
            "max-age=soon",
            "max-age=",
            "max-age",
            "max-age=10+",
            "max-age=10;",
            "max-age=10;a;b",
            "max-age=10;two words",
        ] {
            assert_eq!(of(&[bad]), [], "{bad}");
        }
        assert_eq!(
            of(&["max-age =100, no-store"]),
            [d("no-store", None)],
            "only the malformed member goes"
        );
    }

    #[test]
    fn directives_aimed_at_this_cache_win_and_others_are_ignored() {
        assert_eq!(of(&["max-age=10;not-for-you"]), []);
        assert_eq!(
            of(&["max-age=10;other, no-store"]),
            [d("no-store", None)],
            "another device's directive is ignored, the unaimed ones apply"
        );
        assert_eq!(
            of(&["no-store, max-age=600;cachefront"]),
            [d("max-age", Some("600"))],
            "aimed at this cache: only those apply"
        );
        assert_eq!(of(&["max-age=600;CacheFront"]), [d("max-age", Some("600"))]);
        assert_eq!(
            of(&["max-age=5", "max-age=7;cachefront"]),
            [d("max-age", Some("7"))],
            "over several field lines"
        );
    }

    #[test]
    fn store_directives_and_content() {
        assert_eq!(of(&["no-store-remote"]), [d("no-store", None)]);
        assert_eq!(
            of(&[r#"content="ESI/1.0, ESI-Inline/1.0", max-age=5"#]),
            [d("max-age", Some("5"))],
            "content is ignored, a comma inside its quotes is no separator"
        );
        assert_eq!(of(&[r#"x="a;b";cachefront"#]), [d("x", Some("a;b"))]);
        assert_eq!(of(&[]), []);
        assert_eq!(of(&[" , ,"]), []);
    }
}
