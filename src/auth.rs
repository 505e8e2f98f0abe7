//! Bearer-token checks for the worker's own endpoints. Tokens are compared in
//! constant time and never echoed in responses or logs.

use http::{header, HeaderMap};

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    let longest = a.len().max(b.len());
    for i in 0..longest {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// Outcome of checking a request's `Authorization: Bearer` token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    Valid,
    Missing,
    Invalid,
}

pub fn check_bearer(headers: &HeaderMap, expected: &str) -> TokenCheck {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return TokenCheck::Missing;
    };
    let Some(token) = value.to_str().ok().and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    }) else {
        return TokenCheck::Invalid;
    };
    if constant_time_eq(token.trim().as_bytes(), expected.as_bytes()) {
        TokenCheck::Valid
    } else {
        TokenCheck::Invalid
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
    fn equal_strings_match_and_others_do_not() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret-longer"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn bearer_tokens_are_checked() {
        assert_eq!(
            check_bearer(&auth("Bearer s3cret"), "s3cret"),
            TokenCheck::Valid
        );
        assert_eq!(
            check_bearer(&auth("Bearer wrong"), "s3cret"),
            TokenCheck::Invalid
        );
        assert_eq!(
            check_bearer(&auth("Basic czNjcmV0"), "s3cret"),
            TokenCheck::Invalid
        );
        assert_eq!(
            check_bearer(&HeaderMap::new(), "s3cret"),
            TokenCheck::Missing
        );
    }
}
