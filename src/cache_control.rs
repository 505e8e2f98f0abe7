//! Parsing of `Cache-Control`-style directive lists (RFC 9111 §5.2), shared by
//! request and response policy and by the targeted fields of RFC 9213.

use http::header::HeaderName;
use http::HeaderMap;

/// RFC 9111 §1.2.2: delta-seconds above 2^31 are treated as 2^31.
pub const DELTA_SECONDS_CAP: u64 = 1 << 31;

/// One directive: lower-cased name and its unquoted argument, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub value: Option<String>,
}

/// The directives of one header field (all its field lines together).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives(Vec<Directive>);

impl Directives {
    /// Collects the directives from every line of `name` in `headers`.
    /// Lines that are not valid UTF-8 are ignored.
    pub fn from_headers(headers: &HeaderMap, name: &HeaderName) -> Self {
        let mut out = Vec::new();
        for value in headers.get_all(name) {
            if let Ok(text) = value.to_str() {
                parse_into(text, &mut out);
            }
        }
        Self(out)
    }

    /// Parses one field value.
    pub fn parse(text: &str) -> Self {
        let mut out = Vec::new();
        parse_into(text, &mut out);
        Self(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Directive> {
        self.0.iter()
    }

    /// Whether the directive is present (with or without an argument).
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|d| d.name == name)
    }

    /// The delta-seconds argument of the first occurrence of `name`.
    ///
    /// `None` when absent; `Some(0)` when present but not a valid number, so a
    /// malformed freshness directive makes a response stale rather than fresh
    /// (RFC 9111 §4.2.1 lets a cache treat such a response as stale).
    pub fn seconds(&self, name: &str) -> Option<u64> {
        let directive = self.0.iter().find(|d| d.name == name)?;
        Some(directive.value.as_deref().map_or(0, parse_delta_seconds))
    }
}

/// Parses delta-seconds (digits only); anything else is 0, overflow is capped.
fn parse_delta_seconds(text: &str) -> u64 {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    text.parse::<u64>()
        .map_or(DELTA_SECONDS_CAP, |n| n.min(DELTA_SECONDS_CAP))
}

fn parse_into(text: &str, out: &mut Vec<Directive>) {
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return;
        }
        let name_end = rest.find(['=', ',']).unwrap_or(rest.len());
        let name = rest[..name_end].trim().to_ascii_lowercase();
        rest = &rest[name_end..];
        let mut value = None;
        if let Some(after_eq) = rest.strip_prefix('=') {
            let after_eq = after_eq.trim_start_matches([' ', '\t']);
            let (parsed, remaining) = parse_value(after_eq);
            value = Some(parsed);
            rest = remaining;
            // Skip anything malformed up to the next comma.
            let next = rest.find(',').unwrap_or(rest.len());
            rest = &rest[next..];
        }
        if !name.is_empty() {
            out.push(Directive { name, value });
        }
    }
}

/// Parses a token or quoted-string; returns the value and the unparsed remainder.
fn parse_value(text: &str) -> (String, &str) {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '"' => return (value, &quoted[i + 1..]),
                _ => value.push(c),
            }
        }
        // Unterminated quote: take what we have.
        return (value, "");
    }
    let end = text.find(',').unwrap_or(text.len());
    (text[..end].trim().to_owned(), &text[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_values_unquoted() {
        let d =
            Directives::parse(r#"Public, MAX-AGE=60, no-cache="Set-Cookie, X-Foo", s-maxage="30""#);
        assert!(d.has("public"));
        assert_eq!(d.seconds("max-age"), Some(60));
        assert_eq!(d.seconds("s-maxage"), Some(30));
        let no_cache = d.iter().find(|x| x.name == "no-cache").expect("no-cache");
        assert_eq!(no_cache.value.as_deref(), Some("Set-Cookie, X-Foo"));
    }

    #[test]
    fn first_occurrence_of_a_duplicated_directive_wins() {
        let d = Directives::parse("max-age=10, max-age=1000");
        assert_eq!(d.seconds("max-age"), Some(10));
    }

    #[test]
    fn malformed_delta_seconds_make_the_response_stale() {
        for text in [
            "max-age=abc",
            "max-age=",
            "max-age",
            "max-age=-5",
            "max-age=1.5",
        ] {
            assert_eq!(
                Directives::parse(text).seconds("max-age"),
                Some(0),
                "{text}"
            );
        }
    }

    #[test]
    fn huge_delta_seconds_are_capped() {
        let d = Directives::parse("max-age=99999999999999999999999");
        assert_eq!(d.seconds("max-age"), Some(DELTA_SECONDS_CAP));
    }

    #[test]
    fn empty_members_and_whitespace_are_tolerated() {
        let d = Directives::parse(" ,, no-store ,\tprivate,");
        assert!(d.has("no-store") && d.has("private"));
        assert_eq!(d.iter().count(), 2);
    }

    #[test]
    fn all_field_lines_are_combined() {
        let mut headers = HeaderMap::new();
        headers.append(
            http::header::CACHE_CONTROL,
            "public".parse().expect("value"),
        );
        headers.append(
            http::header::CACHE_CONTROL,
            "max-age=5".parse().expect("value"),
        );
        let d = Directives::from_headers(&headers, &http::header::CACHE_CONTROL);
        assert!(d.has("public"));
        assert_eq!(d.seconds("max-age"), Some(5));
    }
}
