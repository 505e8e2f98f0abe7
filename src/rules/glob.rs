//! Globs of cache rules: `*` (a run of characters without the separator),
//! `**` (any run) and `?` (one character other than the separator); `/**/`
//! also matches a single `/`, so `/**/*.css` finds `/a.css` too. A glob
//! is compiled once, at configuration time, and matched by simulating its
//! states over the text: linear in the text whatever the pattern, so a
//! hostile path cannot make matching slow.

/// The longest glob accepted (in bytes): bounds the state set.
pub const MAX_GLOB_BYTES: usize = 256;
/// Most `/**/` in one glob: each doubles the patterns tried.
pub const MAX_DIR_RUNS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Byte(u8),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**`
    AnyRun,
}

/// A compiled glob: one pattern per way of reading its `/**/`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    source: String,
    patterns: Vec<Pattern>,
}

/// One pattern. Matching compares the literal prefix first, the common way
/// a rule does not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    separator: u8,
    /// Literal bytes every match starts with.
    prefix: Vec<u8>,
    /// The pattern after the prefix.
    tokens: Vec<Token>,
}

impl Glob {
    /// Compiles `pattern`; `separator` is what `*` and `?` never match (`/`
    /// for paths, `.` for host names, none for header values).
    pub fn new(pattern: &str, separator: Option<u8>) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("a glob may not be empty".to_owned());
        }
        if pattern.len() > MAX_GLOB_BYTES {
            return Err(format!(
                "a glob may be at most {MAX_GLOB_BYTES} bytes, this one has {}",
                pattern.len()
            ));
        }
        let dir_runs = pattern.matches("/**/").count();
        if separator == Some(b'/') && dir_runs > MAX_DIR_RUNS {
            return Err(format!("a glob may have at most {MAX_DIR_RUNS} `/**/`"));
        }
        let mut variants = vec![pattern.to_owned()];
        if separator == Some(b'/') {
            for _ in 0..dir_runs {
                let mut more = Vec::new();
                for v in &variants {
                    if let Some(at) = v.find("/**/") {
                        more.push(format!("{}/{}", &v[..at], &v[at + 4..]));
                    }
                }
                variants.extend(more);
            }
            variants.sort();
            variants.dedup();
        }
        Ok(Self {
            source: pattern.to_owned(),
            patterns: variants
                .iter()
                .map(|v| Pattern::new(v, separator))
                .collect(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the glob matches all of `text`.
    pub fn matches(&self, text: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(text.as_bytes()))
    }

    /// The literal bytes every match starts with.
    pub fn literal_prefix(&self) -> &[u8] {
        let mut prefix: &[u8] = self.patterns.first().map_or(&[], |p| p.prefix.as_slice());
        for pattern in &self.patterns[1..] {
            let common = prefix
                .iter()
                .zip(&pattern.prefix)
                .take_while(|(a, b)| a == b)
                .count();
            prefix = &prefix[..common];
        }
        prefix
    }

    /// Whether the glob matches every text (`**` alone).
    pub fn matches_everything(&self) -> bool {
        self.patterns
            .iter()
            .any(|p| p.prefix.is_empty() && p.tokens == [Token::AnyRun])
    }
}

impl Pattern {
    fn new(pattern: &str, separator: Option<u8>) -> Self {
        let bytes = pattern.as_bytes();
        let mut tokens = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'*' if bytes.get(i + 1) == Some(&b'*') => {
                    while bytes.get(i) == Some(&b'*') {
                        i += 1;
                    }
                    tokens.push(Token::AnyRun);
                    continue;
                }
                b'*' => tokens.push(Token::Star),
                b'?' => tokens.push(Token::One),
                byte => tokens.push(Token::Byte(byte)),
            }
            i += 1;
        }
        let literal = tokens
            .iter()
            .take_while(|t| matches!(t, Token::Byte(_)))
            .count();
        let prefix = tokens[..literal]
            .iter()
            .filter_map(|t| match t {
                Token::Byte(b) => Some(*b),
                _ => None,
            })
            .collect();
        tokens.drain(..literal);
        Self {
            // Without a separator, `*` behaves like `**`.
            separator: separator.unwrap_or(0),
            prefix,
            tokens,
        }
    }

    fn matches(&self, text: &[u8]) -> bool {
        let Some(rest) = text.strip_prefix(self.prefix.as_slice()) else {
            return false;
        };
        if self.tokens.is_empty() {
            return rest.is_empty();
        }
        if self.tokens == [Token::AnyRun] {
            return true;
        }
        self.simulate(rest)
    }

    /// Runs the pattern's states over `text`: state `i` means "the first
    /// `i` tokens are matched".
    fn simulate(&self, text: &[u8]) -> bool {
        let n = self.tokens.len();
        let mut active = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        active[0] = true;
        self.close(&mut active);
        for &byte in text {
            next.iter_mut().for_each(|s| *s = false);
            let mut any = false;
            for (i, token) in self.tokens.iter().enumerate() {
                if !active[i] {
                    continue;
                }
                let sep = self.separator != 0 && byte == self.separator;
                match *token {
                    Token::Byte(b) if b == byte => next[i + 1] = true,
                    Token::One if !sep => next[i + 1] = true,
                    Token::Star if !sep => next[i] = true,
                    Token::AnyRun => next[i] = true,
                    _ => continue,
                }
                any = true;
            }
            if !any {
                return false;
            }
            self.close(&mut next);
            std::mem::swap(&mut active, &mut next);
        }
        active[n]
    }

    /// Stars match the empty run: a state before a star also stands after it.
    fn close(&self, states: &mut [bool]) {
        for (i, token) in self.tokens.iter().enumerate() {
            if states[i] && matches!(token, Token::Star | Token::AnyRun) {
                states[i + 1] = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(pattern: &str) -> Glob {
        Glob::new(pattern, Some(b'/')).expect("valid glob")
    }

    #[test]
    fn a_star_stays_inside_one_segment() {
        let g = path("/static/*");
        assert!(g.matches("/static/app.css"));
        assert!(g.matches("/static/"));
        assert!(!g.matches("/static/js/app.js"));
        assert!(!g.matches("/static"));
    }

    #[test]
    fn a_double_star_crosses_segments() {
        let g = path("/static/**");
        assert!(g.matches("/static/js/app.js"));
        assert!(g.matches("/static/"));
        assert!(!g.matches("/staticx/a"));
        assert!(path("**").matches("/anything/at/all"));
        assert!(path("**").matches_everything());
        assert!(!path("/**").matches_everything());
    }

    #[test]
    fn stars_inside_a_pattern_backtrack_correctly() {
        let g = path("/**/*.css");
        assert!(g.matches("/a/b/c.css"));
        assert!(g.matches("/c.css"), "** matches the empty run");
        assert!(!g.matches("/a/b/c.css/x"));
        assert!(!g.matches("/a/b/c.cs"));
        let g = path("/blog/*/comments");
        assert!(g.matches("/blog/2024/comments"));
        assert!(!g.matches("/blog/2024/11/comments"));
        assert!(path("/a?c").matches("/abc"));
        assert!(!path("/a?c").matches("/a/c"));
    }

    #[test]
    fn host_globs_do_not_cross_dots() {
        let g = Glob::new("*.example.com", Some(b'.')).expect("valid");
        assert!(g.matches("www.example.com"));
        assert!(!g.matches("a.b.example.com"));
        assert!(!g.matches("example.com"));
    }

    #[test]
    fn without_a_separator_a_star_matches_anything() {
        let g = Glob::new("*json*", None).expect("valid");
        assert!(g.matches("application/json; charset=utf-8"));
        assert!(!g.matches("text/html"));
    }

    #[test]
    fn a_hostile_path_is_matched_in_linear_time() {
        // Exponential for a naive backtracking matcher.
        let g = path("/**a**a**a**a**a**a**a**a**b");
        let text = format!("/{}", "a".repeat(4000));
        assert!(!g.matches(&text));
    }

    #[test]
    fn bad_globs_are_refused() {
        assert!(Glob::new("/**/a/**/b/**/c/**/d", Some(b'/')).is_err());
        assert!(Glob::new("", Some(b'/')).is_err());
        assert!(Glob::new(&"a".repeat(MAX_GLOB_BYTES + 1), Some(b'/')).is_err());
    }
}
