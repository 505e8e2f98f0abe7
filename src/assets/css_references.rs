//! Finds and rewrites the URLs a stylesheet references: `url(...)` (quoted or
//! not) and `@import "..."`. A small scanner rather than a CSS parser so it
//! runs in the worker at no size cost; it understands comments and strings,
//! which is all that decides whether `url(` is a reference.

/// How the stylesheet refers to the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CssReferenceKind {
    /// `url(...)` outside an `@import`.
    Url,
    /// `@import "..."` or `@import url(...)`.
    Import,
}

/// One reference: `range` is the byte range of the URL text itself (inside the
/// quotes or parentheses), so replacing it keeps the original quoting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CssReference {
    pub url: String,
    pub kind: CssReferenceKind,
    pub range: std::ops::Range<usize>,
}

/// Every reference in `css`, in source order.
pub fn css_references(css: &str) -> Vec<CssReference> {
    let bytes = css.as_bytes();
    let mut found = Vec::new();
    let mut in_import = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = css[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |end| i + 2 + end + 2);
            }
            b'"' | b'\'' => {
                let (content, next) = string_token(bytes, i);
                if in_import {
                    push_reference(&mut found, css, content, CssReferenceKind::Import);
                    in_import = false;
                }
                i = next;
            }
            b'\\' => i += 2,
            b'@' if starts_with_ignore_case(&bytes[i..], b"@import")
                && !bytes.get(i + 7).is_some_and(|b| is_name_byte(*b)) =>
            {
                in_import = true;
                i += 7;
            }
            b';' | b'{' | b'}' => {
                in_import = false;
                i += 1;
            }
            b'u' | b'U'
                if starts_with_ignore_case(&bytes[i..], b"url(")
                    && !(i > 0 && is_name_byte(bytes[i - 1])) =>
            {
                let (content, next) = url_token(bytes, i + 4);
                let kind = if in_import {
                    CssReferenceKind::Import
                } else {
                    CssReferenceKind::Url
                };
                push_reference(&mut found, css, content, kind);
                in_import = false;
                i = next;
            }
            _ => i += 1,
        }
    }
    found
}

/// Rewrites every reference for which `map` returns a new URL.
pub fn rewrite_css_references(
    css: &str,
    mut map: impl FnMut(&CssReference) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(css.len());
    let mut copied = 0;
    for reference in css_references(css) {
        if let Some(new_url) = map(&reference) {
            out.push_str(&css[copied..reference.range.start]);
            out.push_str(&new_url);
            copied = reference.range.end;
        }
    }
    out.push_str(&css[copied..]);
    out
}

fn push_reference(
    found: &mut Vec<CssReference>,
    css: &str,
    content: Option<std::ops::Range<usize>>,
    kind: CssReferenceKind,
) {
    let Some(range) = content else { return };
    let url = &css[range.clone()];
    // Escapes would need decoding before the URL means anything; leave them be.
    if url.is_empty() || url.contains('\\') {
        return;
    }
    found.push(CssReference {
        url: url.to_owned(),
        kind,
        range,
    });
}

/// A quoted string starting at `start` (the quote). Returns the range of its
/// content (None if unterminated or broken by a newline) and the index after
/// the closing quote. The minifier ([`super::css_min`]) reads strings with it too.
pub(super) fn string_token(bytes: &[u8], start: usize) -> (Option<std::ops::Range<usize>>, usize) {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\n' => return (None, i),
            b if b == quote => return (Some(start + 1..i), i + 1),
            _ => i += 1,
        }
    }
    (None, bytes.len())
}

/// The body of `url(` starting right after the parenthesis.
fn url_token(bytes: &[u8], start: usize) -> (Option<std::ops::Range<usize>>, usize) {
    let mut i = skip_whitespace(bytes, start);
    if matches!(bytes.get(i), Some(b'"' | b'\'')) {
        let (content, next) = string_token(bytes, i);
        i = skip_whitespace(bytes, next);
        return if bytes.get(i) == Some(&b')') {
            (content, i + 1)
        } else {
            (None, i)
        };
    }
    let content_start = i;
    while i < bytes.len() && bytes[i] != b')' {
        if bytes[i] == b'\\' {
            i += 1;
        }
        i += 1;
    }
    if i >= bytes.len() {
        return (None, bytes.len());
    }
    let mut content_end = i;
    while content_end > content_start && bytes[content_end - 1].is_ascii_whitespace() {
        content_end -= 1;
    }
    (Some(content_start..content_end), i + 1)
}

fn skip_whitespace(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

fn starts_with_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.len() >= needle.len() && haystack[..needle.len()].eq_ignore_ascii_case(needle)
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b >= 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(css: &str) -> Vec<(String, CssReferenceKind)> {
        css_references(css)
            .into_iter()
            .map(|r| (r.url, r.kind))
            .collect()
    }

    #[test]
    fn finds_urls_and_imports_in_every_spelling() {
        use CssReferenceKind::{Import, Url};
        let css = r#"@import url("/css/base.css");
@import 'print.css' print;
@IMPORT url(theme.css);
body { background: URL( /img/a.png ) , url('b.svg#i'); }
.x { mask: url(data:image/svg+xml;base64,AAA=); content: "url(not-a-ref)"; }
/* url(commented.png) */
.y { background-image: myurl(no.png); }"#;
        assert_eq!(
            urls(css),
            vec![
                ("/css/base.css".into(), Import),
                ("print.css".into(), Import),
                ("theme.css".into(), Import),
                ("/img/a.png".into(), Url),
                ("b.svg#i".into(), Url),
                ("data:image/svg+xml;base64,AAA=".into(), Url),
            ]
        );
    }

    #[test]
    fn rewriting_keeps_quotes_and_everything_else() {
        let css = "a{b:url( 'x.png' )}@import \"y.css\";c{d:url(z.gif)}";
        let out = rewrite_css_references(css, |r| match r.url.as_str() {
            "x.png" => Some("x.1.png".into()),
            "z.gif" => Some("z.2.gif".into()),
            _ => None,
        });
        assert_eq!(
            out,
            "a{b:url( 'x.1.png' )}@import \"y.css\";c{d:url(z.2.gif)}"
        );
    }

    #[test]
    fn malformed_css_yields_no_bogus_references() {
        assert!(css_references("a{b:url(\"unterminated").is_empty());
        assert!(css_references("a{b:url(x").is_empty());
        assert!(css_references("/* never closed url(a.png)").is_empty());
        assert!(css_references("a{b:url('x'y)}").is_empty());
        assert!(css_references("@import").is_empty());
        assert_eq!(css_references("a{b:url(\\28.png)}"), vec![]);
    }
}
