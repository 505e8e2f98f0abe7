//! A small, conservative CSS minifier for origin stylesheets at the edge.
//!
//! The build minifies CSS with lightningcss, which would take the worker's
//! wasm far past its size budget (docs/assets.md). This one only removes what
//! cannot change meaning, in one pass over the characters with no recursion
//! (so no input can overflow the stack in wasm):
//!
//! - comments (`/*! … */` licence comments are kept; one between two name
//!   characters becomes `/**/`, so the tokens on either side stay apart);
//! - whitespace at the start and end, and runs of whitespace become one space;
//! - that space, next to `{`, `}`, `;` or `,`, and just inside `(` and `)`;
//! - a `;` right before `}`.
//!
//! Strings, unquoted `url(…)` and custom property values (`--x: …`, whose
//! whitespace is part of the value) are copied byte for byte. Spaces around `:`,
//! `+`, `-`, `>`, `~`, `*`, `/` and outside parentheses stay: they carry meaning
//! in selectors (`a :hover`), `calc()` and media queries (`and (`). An
//! unterminated string, comment or `url(` is an error: the caller serves the
//! original. Differentially tested against lightningcss in the CLI's tests.

/// Minifies a stylesheet; `Err` names why it was left alone.
pub fn minify_css(source: &str) -> Result<String, String> {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut gap = Gap::default();
    // `{` blocks open at this point (declarations live inside them).
    let mut block_depth = 0usize;
    // Where the last escape (`\;`, `\}` …) ended: its character is not syntax.
    let mut escape_end = usize::MAX;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let comment = b == b'/' && bytes.get(i + 1) == Some(&b'*');
        let space = matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c');
        if !comment
            && !space
            && !matches!(b, b'"' | b'\'')
            && block_depth > 0
            && matches!(out.as_bytes().last(), Some(b'{' | b';'))
        {
            let end = declaration_end(bytes, i);
            if keeps_tokens(&bytes[i..end]) {
                // A custom property, or a value with var()/env(): kept as
                // written (their whitespace can be part of the value).
                gap.write(&mut out, b);
                out.push_str(&source[i..end]);
                i = end;
                continue;
            }
        }
        match b {
            _ if comment => {
                let end = find(bytes, i + 2, b"*/")
                    .ok_or_else(|| format!("unterminated comment at byte {i}"))?;
                if bytes.get(i + 2) == Some(&b'!') {
                    gap.write(&mut out, b'/');
                    out.push_str(&source[i..end + 2]);
                } else {
                    gap.comment = true;
                }
                i = end + 2;
            }
            b'"' | b'\'' => {
                let end = string_end(bytes, i)
                    .ok_or_else(|| format!("unterminated string at byte {i}"))?;
                gap.write(&mut out, b);
                out.push_str(&source[i..end]);
                i = end;
            }
            _ if space => {
                gap.space = true;
                i += 1;
            }
            _ => {
                if is_url_open(bytes, i) {
                    let end = url_end(bytes, i + 4)
                        .ok_or_else(|| format!("unterminated url( at byte {i}"))?;
                    gap.write(&mut out, b'u');
                    out.push_str(&source[i..end]);
                    i = end;
                    continue;
                }
                if b == b'}' && out.ends_with(';') && out.len() != escape_end {
                    out.pop();
                }
                match b {
                    b'{' => block_depth += 1,
                    b'}' => block_depth = block_depth.saturating_sub(1),
                    _ => {}
                }
                gap.write(&mut out, b);
                if b == b'\\' {
                    // An escape and the character it escapes are copied together.
                    let next = bytes.get(i + 1).map_or(0, |&c| utf8_len(c));
                    let end = (i + 1 + next).min(source.len());
                    out.push_str(&source[i..end]);
                    escape_end = out.len();
                    i = end;
                    continue;
                }
                // Copy one whole character (non-ASCII is copied as is).
                let len = utf8_len(b);
                out.push_str(&source[i..(i + len).min(source.len())]);
                i += len;
            }
        }
    }
    Ok(out)
}

/// What separates the next token from the last one written: a whitespace
/// run, a dropped comment, or nothing.
#[derive(Default)]
struct Gap {
    space: bool,
    comment: bool,
}

impl Gap {
    /// Writes what the gap needs before `next` (see [`flush_space`] and
    /// [`flush_comment_gap`]), and closes it.
    fn write(&mut self, out: &mut String, next: u8) {
        if self.space {
            self.comment = false;
            flush_space(out, &mut self.space, next);
        } else {
            flush_comment_gap(out, &mut self.comment, next);
        }
    }
}

/// `/**/` where a dropped comment separated two characters that would
/// otherwise join into one token (`1px/**/2px`, `a/**/b`).
fn flush_comment_gap(out: &mut String, gap: &mut bool, next: u8) {
    if !std::mem::take(gap) {
        return;
    }
    let namish =
        |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'%' | b'\\') || c >= 0x80;
    if out.as_bytes().last().is_some_and(|&prev| namish(prev)) && namish(next) {
        out.push_str("/**/");
    }
}

fn flush_space(out: &mut String, pending: &mut bool, next: u8) {
    if !*pending {
        return;
    }
    *pending = false;
    let Some(prev) = out.as_bytes().last().copied() else {
        return; // leading whitespace
    };
    let glue = |c: u8| matches!(c, b'{' | b'}' | b';' | b',');
    if glue(prev) || glue(next) || prev == b'(' || next == b')' {
        return;
    }
    out.push(' ');
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// End (exclusive) of the string starting with the quote at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\n' => return None, // a newline ends a CSS string badly
            c if c == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Whether a declaration must be copied as written: a custom property, or a
/// value holding `var()`/`env()` (kept as a token list, whitespace included).
fn keeps_tokens(declaration: &[u8]) -> bool {
    let lower = declaration.to_ascii_lowercase();
    lower.starts_with(b"--") || lower.windows(4).any(|w| w == b"var(" || w == b"env(")
}

/// End (exclusive, before the `;` or `}`) of the declaration (or nested
/// rule) starting at `start`: brackets and strings inside it are skipped.
fn declaration_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => match string_end(bytes, i) {
                Some(end) => i = end,
                None => return bytes.len(),
            },
            b'\\' => i += 2,
            b'(' | b'[' | b'{' => {
                depth += 1;
                i += 1;
            }
            b')' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'}' if depth == 0 => return i,
            b'}' => {
                depth -= 1;
                i += 1;
            }
            b';' if depth == 0 => return i,
            _ => i += 1,
        }
    }
    bytes.len().min(i)
}

/// Whether an unquoted-capable `url(` starts at `i` (as a whole identifier).
fn is_url_open(bytes: &[u8], i: usize) -> bool {
    let starts = bytes
        .get(i..i + 4)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"url("));
    let after_ident = i > 0
        && bytes
            .get(i - 1)
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'\\'));
    starts && !after_ident
}

/// End (exclusive) of a `url(` whose contents start at `from`: past the `)`
/// that closes it, skipping a quoted argument and escapes.
fn url_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => i = string_end(bytes, i)?,
            b'\\' => i += 2,
            b')' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn min(css: &str) -> String {
        minify_css(css).expect("minifies")
    }

    #[test]
    fn whitespace_and_comments_go_where_they_carry_no_meaning() {
        assert_eq!(
            min("  a , b  {\n  color : red ;\n  margin: 0 auto;\n}\n/* c */ p { }  "),
            "a,b{color : red;margin: 0 auto}p{}"
        );
    }

    #[test]
    fn significant_spaces_stay() {
        // Descendant combinator before a pseudo-class, calc operators, media query `and (`.
        assert_eq!(min("a :hover{x:y}"), "a :hover{x:y}");
        assert_eq!(
            min("p{width:calc(100% - 2px)}"),
            "p{width:calc(100% - 2px)}"
        );
        assert_eq!(
            min("@media screen and (min-width: 10px) { a { b: c } }"),
            "@media screen and (min-width: 10px){a{b: c}}"
        );
        assert_eq!(min("a/**/b{}"), "a/**/b{}", "a comment keeps tokens apart");
        assert_eq!(min(".e/* x */.f { }"), ".e.f{}", "but is not whitespace");
        assert_eq!(
            min(":root { --shadow : 0 1px 2px red,  0 2px blue ; --e: ; }"),
            ":root{--shadow : 0 1px 2px red,  0 2px blue ;--e: }",
            "custom property values keep their whitespace"
        );
    }

    #[test]
    fn strings_urls_and_licence_comments_are_copied_exactly() {
        assert_eq!(
            min("a::before { content: \"  ;  }  \" }"),
            "a::before{content: \"  ;  }  \"}"
        );
        assert_eq!(
            min("a { background: url( a b.png ) }"),
            "a{background: url( a b.png )}"
        );
        assert_eq!(min("a{b:URL(x\\)y.png)}"), "a{b:URL(x\\)y.png)}");
        assert_eq!(min("/*! MIT */ a { }"), "/*! MIT */ a{}");
        assert_eq!(min("a{content:'it\\'s  ok'}"), "a{content:'it\\'s  ok'}");
    }

    #[test]
    fn unterminated_input_is_an_error_not_a_guess() {
        assert!(minify_css("a { content: \"oops }").is_err());
        assert!(minify_css("a { } /* never closed").is_err());
        assert!(minify_css("a { background: url(x.png }").is_err());
    }

    #[test]
    fn escaped_syntax_characters_are_not_syntax() {
        assert_eq!(min(".a\\;b { x: y\\; }"), ".a\\;b{x: y\\;}");
        assert_eq!(min(".a\\{ { x: y }"), ".a\\{{x: y}");
    }

    #[test]
    fn non_ascii_text_survives() {
        assert_eq!(
            min("a::after { content: \"→ é\" } .é { x: y }"),
            "a::after{content: \"→ é\"}.é{x: y}"
        );
    }
}
