//! Bearer-token checks for the worker's operator endpoints (purge, health):
//! one parser for `Authorization: Bearer <token>`, one constant-time compare.
//! Tokens are never echoed in responses or logs.

use std::fmt;

use http::{header, HeaderMap};
use subtle::ConstantTimeEq;

/// Compares a presented token with the configured one in time that depends
/// only on the configured token's length, never on where they differ.
pub fn tokens_match(presented: &[u8], expected: &[u8]) -> bool {
    let mut equal = u8::from(presented.len() == expected.len()).ct_eq(&1);
    for (i, byte) in expected.iter().enumerate() {
        let other = presented.get(i).copied().unwrap_or(0);
        equal &= other.ct_eq(byte);
    }
    bool::from(equal)
}

/// Outcome of checking a request's `Authorization: Bearer` token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    Valid,
    /// No `Authorization` header.
    Missing,
    /// Several `Authorization` headers, or not the Bearer scheme.
    Malformed,
    /// A Bearer token that is not the configured one.
    Invalid,
}

/// Checks `Authorization: Bearer <token>` (scheme case-insensitive, spaces
/// around the token ignored) against `expected`.
pub fn check_bearer(headers: &HeaderMap, expected: &str) -> TokenCheck {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return TokenCheck::Missing;
    };
    if values.next().is_some() {
        return TokenCheck::Malformed;
    }
    let value = value.as_bytes();
    if value.len() <= 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
        return TokenCheck::Malformed;
    }
    if tokens_match(value[7..].trim_ascii(), expected.as_bytes()) {
        TokenCheck::Valid
    } else {
        TokenCheck::Invalid
    }
}

/// A secret string. `Debug` prints `[redacted]`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken(String);

impl SecretToken {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself: only for comparing and for sending it where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn auth(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn constant_time_compare_matches_only_equal_tokens() {
        assert!(tokens_match(b"abcdef", b"abcdef"));
        assert!(!tokens_match(b"abcdeg", b"abcdef"));
        assert!(
            !tokens_match(b"abcde", b"abcdef"),
            "a prefix is not a match"
        );
        assert!(!tokens_match(b"abcdefg", b"abcdef"), "nor is an extension");
        assert!(!tokens_match(b"", b"abcdef"));
    }

    #[test]
    fn bearer_tokens_are_checked() {
        assert_eq!(
            check_bearer(&auth("Bearer s3cret"), "s3cret"),
            TokenCheck::Valid
        );
        assert_eq!(
            check_bearer(&auth("bearer  s3cret "), "s3cret"),
            TokenCheck::Valid
        );
        assert_eq!(
            check_bearer(&auth("Bearer wrong"), "s3cret"),
            TokenCheck::Invalid
        );
        assert_eq!(
            check_bearer(&auth("Basic czNjcmV0"), "s3cret"),
            TokenCheck::Malformed
        );
        assert_eq!(
            check_bearer(&auth("Bearer"), "s3cret"),
            TokenCheck::Malformed
        );
        assert_eq!(
            check_bearer(&HeaderMap::new(), "s3cret"),
            TokenCheck::Missing
        );
        let mut two = auth("Bearer s3cret");
        two.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert_eq!(check_bearer(&two, "s3cret"), TokenCheck::Malformed);
    }
}
