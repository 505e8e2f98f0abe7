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
//! - spaces around the colon of a plain declaration (`margin : 0`; not in
//!   selectors or nested rules, where `a :hover` means something else);
//! - a `;` right before `}`.
//!
//! Strings, unquoted `url(…)` and custom property values (`--x: …`, whose
//! whitespace is part of the value) are copied byte for byte. Other spaces around
//! `:`, `+`, `-`, `>`, `~`, `*`, `/` and outside parentheses stay: they carry meaning
//! in selectors (`a :hover`), `calc()` and media queries (`and (`). An
//! unterminated string, comment or `url(` is an error: the caller serves the
//! original. Differentially tested against lightningcss in the CLI's tests.
//!
//! Linear time on any input: a declaration is looked ahead for (to its `;`,
//! `}` or a nested rule's `{`) only where one can start, at bracket depth 0
//! inside a block, and the lookahead uses the same tokens (strings, comments,
//! `url(`, escapes) as the main pass. Two lookaheads therefore never cover
//! the same byte, so the lookahead reads each byte at most once.

use std::ops::Range;

use super::css_references::string_token;

/// Minifies a stylesheet; `Err` names why it was left alone.
pub fn minify_css(source: &str) -> Result<String, String> {
    minify_css_observed(source, &mut |_| {})
}

/// [`minify_css`], reporting each declaration lookahead (the byte range it
/// reads) to `on_lookahead`: the lookahead is the only part that reads ahead
/// of the main pass, so these ranges are what bounds the work.
pub(crate) fn minify_css_observed(
    source: &str,
    on_lookahead: &mut dyn FnMut(Range<usize>),
) -> Result<String, String> {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut gap = Gap::default();
    // `{` blocks open at this point (declarations live inside them).
    let mut block_depth = 0usize;
    // Where the last escape (`\;`, `\}` …) ended: its character is not syntax.
    let mut escape_end = usize::MAX;
    // End of the plain declaration value being copied (see [`property_colon`]).
    let mut value_end = 0usize;
    // Brackets open since the last block boundary, counted exactly as the
    // lookahead counts them; a declaration only starts at depth 0.
    let mut bracket_depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        gap.value = i < value_end;
        let comment = b == b'/' && bytes.get(i + 1) == Some(&b'*');
        let space = is_space(b);
        if !comment
            && !space
            && !matches!(b, b'"' | b'\'')
            && block_depth > 0
            && bracket_depth == 0
            && matches!(out.as_bytes().last(), Some(b'{' | b';'))
        {
            // A custom property's value may hold `{}` blocks: it runs to its
            // `;` or `}`. Anything else stops at a nested rule's `{`.
            let custom = bytes[i..].starts_with(b"--");
            let (end, stop) = declaration_end(bytes, i, !custom)
                .ok_or_else(|| format!("unterminated string, comment or url( after byte {i}"))?;
            on_lookahead(i..end);
            let plain = if stop == Some(b'{') {
                None // a nested rule's selector, never a declaration
            } else {
                property_colon(&bytes[i..end])
            };
            if let Some((name_len, colon)) = plain {
                // `name : value` → `name:value`: whitespace around a
                // declaration's colon is never part of it.
                gap.write(&mut out, b);
                out.push_str(&source[i..i + name_len]);
                out.push(':');
                i += colon + 1;
                while i < end && is_space(bytes[i]) {
                    i += 1;
                }
                if keeps_tokens(&bytes[i..end]) {
                    // A value with var()/env() is a token list, whitespace
                    // included: copied as written, but for trailing spaces
                    // (unless one is escaped).
                    let value = &source[i..end];
                    let trimmed =
                        value.trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8));
                    out.push_str(if trimmed.ends_with('\\') {
                        value
                    } else {
                        trimmed
                    });
                    i = end;
                } else {
                    value_end = end;
                }
                continue;
            }
            if keeps_tokens(&bytes[i..end]) {
                // A custom property (or a nested rule using var()): kept as
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
                if gap.value && b == b'0' && starts_fraction(bytes, i, &out, gap.space) {
                    // `0.5` → `.5`, only where a number starts.
                    i += 1;
                    continue;
                }
                match b {
                    b'{' if bracket_depth > 0 => bracket_depth += 1,
                    b'{' => block_depth += 1,
                    b'}' if bracket_depth > 0 => bracket_depth -= 1,
                    b'}' => block_depth = block_depth.saturating_sub(1),
                    b'(' | b'[' => bracket_depth += 1,
                    b')' | b']' => bracket_depth = bracket_depth.saturating_sub(1),
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
/// run, a dropped comment, or nothing; and whether it lies in the value of a
/// plain declaration.
#[derive(Default)]
struct Gap {
    space: bool,
    comment: bool,
    value: bool,
}

impl Gap {
    /// Writes what the gap needs before `next` (see [`flush_space`] and
    /// [`flush_comment_gap`]), and closes it.
    fn write(&mut self, out: &mut String, next: u8) {
        if self.space {
            self.comment = false;
            flush_space(out, &mut self.space, next, self.value);
        } else {
            flush_comment_gap(out, &mut self.comment, next);
        }
    }
}

/// `/**/` where a dropped comment separated two characters that would
/// otherwise join into one token (`1px/**/2px`, `a/**/b`) or open a comment.
fn flush_comment_gap(out: &mut String, gap: &mut bool, next: u8) {
    if !std::mem::take(gap) {
        return;
    }
    let namish =
        |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'%' | b'\\') || c >= 0x80;
    let joins = out.as_bytes().last().is_some_and(|&prev| namish(prev)) && namish(next);
    // `/` + `*` would open a comment that was not there (`a//**/*b`).
    if joins || (out.ends_with('/') && next == b'*') {
        out.push_str("/**/");
    }
}

/// One space, unless what is on either side makes it meaningless: `{ } ; ,`
/// and the combinators `>` `~` on either side, the inside of parentheses,
/// an at-rule's name before `(` (`@media (` → `@media(`), and `!important`
/// in a declaration value.
fn flush_space(out: &mut String, pending: &mut bool, next: u8, in_value: bool) {
    if !*pending {
        return;
    }
    *pending = false;
    let Some(prev) = out.as_bytes().last().copied() else {
        return; // leading whitespace
    };
    let glue = |c: u8| matches!(c, b'{' | b'}' | b';' | b',' | b'>' | b'~');
    if glue(prev) || glue(next) || prev == b'(' || next == b')' {
        return;
    }
    if (next == b'(' && ends_with_at_keyword(out)) || (in_value && next == b'!') {
        return;
    }
    out.push(' ');
}

/// Whether the output ends with an at-rule name (`@media`, `@supports`).
fn ends_with_at_keyword(out: &str) -> bool {
    let name = out
        .bytes()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'-')
        .count();
    // An output that is all name (`a (`) has nothing before it.
    name > 0
        && out
            .len()
            .checked_sub(name + 1)
            .is_some_and(|at| out.as_bytes()[at] == b'@')
}

/// Whether the `0` at `i` starts a number `0.<digit>` whose zero can go:
/// it follows `:`, `(`, `,` or a space (pending or written), never a name
/// or another digit (`a-0.5`, `10.5` stay).
fn starts_fraction(bytes: &[u8], i: usize, out: &str, space_pending: bool) -> bool {
    let fraction =
        bytes.get(i + 1) == Some(&b'.') && bytes.get(i + 2).is_some_and(|c| c.is_ascii_digit());
    fraction && (space_pending || matches!(out.as_bytes().last(), Some(b':' | b'(' | b',' | b' ')))
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// For a plain declaration (`margin : 0`, not a nested rule, not a custom
/// property): the length of its name and the offset of its colon. `None`
/// when the name is not a simple identifier (escapes, `@`, a selector) or
/// the text holds a `{` (a nested rule such as `a :hover { … }`).
fn property_colon(declaration: &[u8]) -> Option<(usize, usize)> {
    if declaration.contains(&b'{') {
        return None;
    }
    let name_len = declaration
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c >= 0x80))
        .unwrap_or(declaration.len());
    let name = &declaration[..name_len];
    if name.is_empty() || name[0].is_ascii_digit() || name.starts_with(b"--") {
        return None;
    }
    let colon = name_len + declaration[name_len..].iter().position(|&c| !is_space(c))?;
    (declaration[colon] == b':').then_some((name_len, colon))
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

/// End (exclusive) of the string starting with the quote at `start`; `None`
/// when a newline (which ends a CSS string badly) or the end of input comes
/// first. The reference scanner's tokenizer reads it, so that the minifier
/// and the scanner agree on where a string ends.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    string_token(bytes, start).0.map(|content| content.end + 1)
}

/// Whether a declaration must be copied as written: a custom property, or a
/// value holding `var()`/`env()` (kept as a token list, whitespace included).
fn keeps_tokens(declaration: &[u8]) -> bool {
    let lower = declaration.to_ascii_lowercase();
    lower.starts_with(b"--") || lower.windows(4).any(|w| w == b"var(" || w == b"env(")
}

/// End (exclusive) of the declaration (or nested rule selector) starting at
/// `start`, and the byte that ended it (`;`, `}`, `{`; `None` at the end of
/// the input). With `stop_at_brace`, a `{` outside brackets ends it (a nested
/// rule); without, `{}` count as brackets (a custom property's value).
/// Strings, comments, `url(` and escapes are skipped as the main pass skips
/// them; `None` when one of them is unterminated.
fn declaration_end(bytes: &[u8], start: usize, stop_at_brace: bool) -> Option<(usize, Option<u8>)> {
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => i = string_end(bytes, i)?,
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = find(bytes, i + 2, b"*/")? + 2,
            b'\\' => i += 1 + bytes.get(i + 1).map_or(0, |&c| utf8_len(c)),
            _ if is_url_open(bytes, i) => i = url_end(bytes, i + 4)?,
            b'{' if depth == 0 && stop_at_brace => return Some((i, Some(b'{'))),
            b'(' | b'[' | b'{' => {
                depth += 1;
                i += 1;
            }
            b')' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'}' if depth == 0 => return Some((i, Some(b'}'))),
            b'}' => {
                depth -= 1;
                i += 1;
            }
            b';' if depth == 0 => return Some((i, Some(b';'))),
            _ => i += 1,
        }
    }
    Some((bytes.len(), None))
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
            "a,b{color:red;margin:0 auto}p{}"
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
            "@media screen and (min-width: 10px){a{b:c}}"
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
    fn only_a_plain_declarations_colon_loses_its_spaces() {
        // Nested rules keep the descendant combinator before a pseudo-class
        // (and a declaration right after a nested rule is left as written).
        assert_eq!(
            min(".a { b :hover { c : d } e : f }"),
            ".a{b :hover{c:d}e : f}"
        );
        // A name with an escape, or a nested at-rule, is left as it was.
        assert_eq!(min("a { b\\: c : d }"), "a{b\\: c : d}");
        assert_eq!(
            min("a { @media (x : y) { b : c } }"),
            "a{@media(x : y){b:c}}"
        );
        assert_eq!(min("a{b :/* c */d}"), "a{b:d}");
        assert_eq!(
            min("a { b : var( --c ) ; d: e }"),
            "a{b:var( --c );d:e}",
            "a var() value is copied as written"
        );
    }

    #[test]
    fn values_lose_leading_zeros_and_the_space_before_important() {
        assert_eq!(
            min("a { b: 0.5em 10.5px -0.25rem calc(0.5 * 2) x-0.5 !important }"),
            "a{b:.5em 10.5px -0.25rem calc(.5 * 2) x-0.5!important}"
        );
        assert_eq!(
            min(".c0.5 { d: 0 }"),
            ".c0.5{d:0}",
            "selectors are not values"
        );
        assert_eq!(
            min("@media (min-width: 0.5px) { }"),
            "@media(min-width: 0.5px){}"
        );
    }

    #[test]
    fn combinators_take_no_spaces() {
        assert_eq!(min("ul > li ~ p + a { }"), "ul>li~p + a{}");
    }

    #[test]
    fn strings_urls_and_licence_comments_are_copied_exactly() {
        assert_eq!(
            min("a::before { content: \"  ;  }  \" }"),
            "a::before{content:\"  ;  }  \"}"
        );
        assert_eq!(
            min("a { background: url( a b.png ) }"),
            "a{background:url( a b.png )}"
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
        assert_eq!(min(".a\\;b { x: y\\; }"), ".a\\;b{x:y\\;}");
        assert_eq!(min(".a\\{ { x: y }"), ".a\\{{x:y}");
    }

    #[test]
    fn non_ascii_text_survives() {
        assert_eq!(
            min("a::after { content: \"→ é\" } .é { x: y }"),
            "a::after{content:\"→ é\"}.é{x:y}"
        );
    }

    #[test]
    fn an_output_that_is_all_name_before_a_parenthesis_is_not_an_underflow() {
        // Used to compute `out.len() - name - 1` with name == out.len().
        assert_eq!(min("a (b)"), "a (b)");
        assert_eq!(min("x{y{div (z)}}"), "x{y{div (z)}}");
        assert_eq!(min("@media (a) {}"), "@media(a){}");
    }

    /// Every lookahead range of `css`, in order.
    fn lookaheads(css: &str) -> Vec<Range<usize>> {
        let mut seen = Vec::new();
        let _ = minify_css_observed(css, &mut |range| seen.push(range));
        seen
    }

    #[test]
    fn lookaheads_never_overlap_so_crafted_input_is_read_in_linear_time() {
        // Each used to be re-read from every `;` or `{` inside it: about
        // n²/6 bytes for n bytes of input.
        let n = 3000;
        let crafted = [
            format!("a{{{}", "b(;".repeat(n)),
            format!("a{{{}", "b{".repeat(n)),
            format!("a{{{}{}", "b{".repeat(n), "}".repeat(n)),
            format!("a{{b:({}", "x;".repeat(n)),
            format!("a{{{}", "c:(;".repeat(n)),
            format!("a{{{}", "d:[{;".repeat(n)),
        ];
        for css in &crafted {
            let ranges = lookaheads(css);
            let read: usize = ranges.iter().map(ExactSizeIterator::len).sum();
            for pair in ranges.windows(2) {
                assert!(
                    pair[0].end <= pair[1].start,
                    "{:?} and {:?} overlap in {}...",
                    pair[0],
                    pair[1],
                    &css[..12]
                );
            }
            assert!(read <= css.len(), "{read} bytes read for {}", css.len());
        }
    }

    #[test]
    fn nested_rules_and_custom_property_blocks_keep_their_meaning() {
        assert_eq!(
            min(".a { b :hover { --x:  1  2 ; c : 0.5 } }"),
            ".a{b :hover{--x:  1  2 ;c:.5}}"
        );
        assert_eq!(
            min("a { --x: { b : c } ; d : e }"),
            "a{--x: { b : c } ;d:e}"
        );
        assert_eq!(min("a { b : c /* ; */ ; d : e }"), "a{b:c;d:e}");
    }
}
