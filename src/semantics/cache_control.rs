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

    /// Directives built by another field's parser (`Surrogate-Control`).
    pub fn from_list(list: Vec<Directive>) -> Self {
        Self(list)
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

    /// Whether the directive is present without an argument (`private`, not
    /// `private="x"`).
    pub fn has_unqualified(&self, name: &str) -> bool {
        self.0.iter().any(|d| d.name == name && d.value.is_none())
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

/// A `tchar` of RFC 9110 §5.6.2: the bytes of a token.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses delta-seconds (digits only); anything else is 0, overflow is capped.
pub(crate) fn parse_delta_seconds(text: &str) -> u64 {
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

/// What kind of value a Structured Field member carries (RFC 8941 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemKind {
    /// A member without `=`: the boolean `true`.
    Flag,
    Integer,
    Decimal,
    String,
    Token,
    Bytes,
    Boolean,
    InnerList,
}

/// Whether a targeted cache field (RFC 9213 §2.1) can be used: its value is a
/// valid Structured Field Dictionary (RFC 8941 §3.2) and the directives whose
/// meaning needs a number carry an Integer. Otherwise the whole field is
/// ignored, as RFC 9213 asks.
pub fn targeted_field_is_valid(text: &str) -> bool {
    let Some(members) = parse_dictionary(text) else {
        return false;
    };
    members.iter().all(|(key, kind)| {
        let numeric = matches!(
            key.as_str(),
            "max-age" | "s-maxage" | "stale-while-revalidate" | "stale-if-error"
        );
        !numeric || *kind == ItemKind::Integer
    })
}

/// Parses an SF Dictionary into (key, kind of value); `None` when invalid.
fn parse_dictionary(text: &str) -> Option<Vec<(String, ItemKind)>> {
    let bytes = text.as_bytes();
    let mut at = skip_sp(bytes, 0);
    let mut members = Vec::new();
    if at == bytes.len() {
        return Some(members);
    }
    loop {
        let (key, next) = parse_key(bytes, at)?;
        at = next;
        let kind = if bytes.get(at) == Some(&b'=') {
            let (kind, next) = parse_item_or_inner_list(bytes, at + 1)?;
            at = next;
            kind
        } else {
            at = parse_parameters(bytes, at)?;
            ItemKind::Flag
        };
        members.push((key, kind));
        at = skip_ows(bytes, at);
        if at == bytes.len() {
            return Some(members);
        }
        if bytes[at] != b',' {
            return None;
        }
        at = skip_ows(bytes, at + 1);
        if at == bytes.len() {
            return None; // trailing comma
        }
    }
}

fn skip_sp(bytes: &[u8], mut at: usize) -> usize {
    while bytes.get(at) == Some(&b' ') {
        at += 1;
    }
    at
}

fn skip_ows(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t')) {
        at += 1;
    }
    at
}

fn parse_key(bytes: &[u8], at: usize) -> Option<(String, usize)> {
    let first = *bytes.get(at)?;
    if !(first.is_ascii_lowercase() || first == b'*') {
        return None;
    }
    let mut end = at + 1;
    while let Some(&b) = bytes.get(end) {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.' | b'*') {
            end += 1;
        } else {
            break;
        }
    }
    let key = std::str::from_utf8(&bytes[at..end]).ok()?.to_owned();
    Some((key, end))
}

fn parse_item_or_inner_list(bytes: &[u8], at: usize) -> Option<(ItemKind, usize)> {
    if bytes.get(at) == Some(&b'(') {
        let mut at = at + 1;
        loop {
            at = skip_sp(bytes, at);
            if bytes.get(at) == Some(&b')') {
                let at = parse_parameters(bytes, at + 1)?;
                return Some((ItemKind::InnerList, at));
            }
            let (_, next) = parse_bare_item(bytes, at)?;
            at = parse_parameters(bytes, next)?;
            if !matches!(bytes.get(at), Some(b' ' | b')')) {
                return None;
            }
        }
    }
    let (kind, next) = parse_bare_item(bytes, at)?;
    Some((kind, parse_parameters(bytes, next)?))
}

fn parse_parameters(bytes: &[u8], mut at: usize) -> Option<usize> {
    while bytes.get(at) == Some(&b';') {
        at = skip_sp(bytes, at + 1);
        let (_, next) = parse_key(bytes, at)?;
        at = next;
        if bytes.get(at) == Some(&b'=') {
            let (_, next) = parse_bare_item(bytes, at + 1)?;
            at = next;
        }
    }
    Some(at)
}

fn parse_bare_item(bytes: &[u8], at: usize) -> Option<(ItemKind, usize)> {
    let first = *bytes.get(at)?;
    match first {
        b'-' | b'0'..=b'9' => parse_number(bytes, at),
        b'"' => {
            let mut end = at + 1;
            loop {
                match *bytes.get(end)? {
                    b'\\' => {
                        if !matches!(bytes.get(end + 1), Some(b'"' | b'\\')) {
                            return None;
                        }
                        end += 2;
                    }
                    b'"' => return Some((ItemKind::String, end + 1)),
                    0x20..=0x7e => end += 1,
                    _ => return None,
                }
            }
        }
        b':' => {
            let mut end = at + 1;
            loop {
                match *bytes.get(end)? {
                    b':' => return Some((ItemKind::Bytes, end + 1)),
                    b if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=') => end += 1,
                    _ => return None,
                }
            }
        }
        b'?' => match bytes.get(at + 1) {
            Some(b'0' | b'1') => Some((ItemKind::Boolean, at + 2)),
            _ => None,
        },
        b if b.is_ascii_alphabetic() || b == b'*' => {
            let mut end = at + 1;
            while let Some(&b) = bytes.get(end) {
                // An sf-token also allows ":" and "/" (RFC 8941 §3.3.4).
                if !(is_tchar(b) || b == b':' || b == b'/') {
                    break;
                }
                end += 1;
            }
            Some((ItemKind::Token, end))
        }
        _ => None,
    }
}

fn parse_number(bytes: &[u8], at: usize) -> Option<(ItemKind, usize)> {
    let mut end = at;
    if bytes.get(end) == Some(&b'-') {
        end += 1;
    }
    let digits_start = end;
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    let int_digits = end - digits_start;
    if int_digits == 0 {
        return None;
    }
    if bytes.get(end) != Some(&b'.') {
        return (int_digits <= 15).then_some((ItemKind::Integer, end));
    }
    let frac_start = end + 1;
    end = frac_start;
    while bytes.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    let frac_digits = end - frac_start;
    (int_digits <= 12 && (1..=3).contains(&frac_digits)).then_some((ItemKind::Decimal, end))
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
    fn a_quoted_value_keeps_escaped_characters_and_ends_at_its_closing_quote() {
        // A backslash quotes the next character (RFC 9110 §5.6.4), so an
        // escaped quote does not end the value; the next directive starts
        // after the closing quote, even when a comma precedes it.
        let d = Directives::parse(r#"no-cache="a\"b\\c", private="x-a,", max-age=5"#);
        let names: Vec<&str> = d.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["no-cache", "private", "max-age"]);
        let value = |name: &str| d.iter().find(|x| x.name == name)?.value.clone();
        assert_eq!(value("no-cache").as_deref(), Some(r#"a"b\c"#));
        assert_eq!(value("private").as_deref(), Some("x-a,"));
        assert_eq!(d.seconds("max-age"), Some(5));
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

    #[test]
    fn targeted_field_must_be_a_structured_dictionary() {
        for valid in [
            "max-age=60",
            "max-age=60, stale-while-revalidate=30",
            "no-store",
            "private, no-cache",
            "max-age=60;foo=bar, x=\"a b\", y=?1, z=1.5, w=(a b), v=:AQ==:",
            "",
        ] {
            assert!(targeted_field_is_valid(valid), "{valid}");
        }
        for invalid in [
            "max-age=10000, &&&&&",
            "Max-Age=60",
            "max-age=60,",
            "max-age=60 no-store",
            "max-age=\"unterminated",
            "max-age=1234567890123456",
        ] {
            assert!(!targeted_field_is_valid(invalid), "{invalid}");
        }
    }

    #[test]
    fn targeted_field_items_follow_the_structured_field_grammar() {
        // RFC 8941 §3.3: a field holding one malformed item is invalid, and
        // RFC 9213 then ignores the whole field, so the item grammar decides
        // which directives apply.
        for valid in [
            "*ext=1",
            "x=*tok",
            "x=-5",
            "x=1.5, y=123456789012.123",
            r#"x="a\"b\\c""#,
            "x=:AQ==:",
        ] {
            assert!(targeted_field_is_valid(valid), "{valid}");
        }
        for invalid in [
            "x=!tok",
            r#"x="a\b""#,
            "x=:A Q:",
            "x=1.2345",
            "x=1.",
            "x=1234567890123.5",
            "x=-",
        ] {
            assert!(!targeted_field_is_valid(invalid), "{invalid}");
        }
    }

    #[test]
    fn targeted_freshness_directives_need_integers() {
        assert!(!targeted_field_is_valid("max-age=\"10000\""));
        assert!(!targeted_field_is_valid("s-maxage=1.5"));
        assert!(!targeted_field_is_valid("stale-if-error=?1"));
        assert!(targeted_field_is_valid("max-age=10000, foo=\"bar\""));
    }
}
