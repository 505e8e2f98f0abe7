//! The plain-text input format every target shares, so corpus files and
//! regressions stay readable and libFuzzer's dictionary (fuzz/dict/http.dict)
//! can splice header names and directives straight in.
//!
//! An input is lines separated by `\n` (a trailing `\r` is dropped). Header
//! sections are `name: value` lines ended by an empty line; a line that is not
//! a valid field is skipped, so every byte string is some input.

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// A cursor over the lines of an input.
pub struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Lines<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Self { rest: data }
    }

    /// The next line without its terminator, or `None` at the end.
    pub fn next_line(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (line, rest) = match self.rest.iter().position(|&b| b == b'\n') {
            Some(at) => (&self.rest[..at], &self.rest[at + 1..]),
            None => (self.rest, &self.rest[self.rest.len()..]),
        };
        self.rest = rest;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    /// The next line as text (lossy), empty at the end.
    pub fn next_text(&mut self) -> String {
        self.next_line()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .unwrap_or_default()
    }

    /// Header lines up to an empty line (or the end).
    pub fn headers(&mut self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        while let Some(line) = self.next_line() {
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = header_line(line) {
                headers.append(name, value);
            }
        }
        headers
    }

    /// Everything not read yet.
    pub fn remainder(&self) -> &'a [u8] {
        self.rest
    }
}

/// `name: value` as a header field, if both parts are valid.
fn header_line(line: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = HeaderName::from_bytes(line[..colon].trim_ascii()).ok()?;
    let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii()).ok()?;
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_sections_end_at_an_empty_line_and_skip_invalid_lines() {
        let mut lines = Lines::new(b"GET\r\nCookie: a=1\nnot a header\n\n200\nrest");
        assert_eq!(lines.next_text(), "GET");
        let headers = lines.headers();
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["cookie"], "a=1");
        assert_eq!(lines.next_text(), "200");
        assert_eq!(lines.remainder(), b"rest");
    }
}
