//! Bearer-token checks for the worker's operator endpoints (purge, state,
//! health): one parser for `Authorization: Bearer <token>`, one
//! constant-time compare, and one access decision ([`operator_access`]).
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
    /// Several `Authorization` headers (also as the one comma-joined value
    /// the Workers runtime makes of them), not the Bearer scheme, or a
    /// credential with spaces inside, which no token can be.
    Malformed,
    /// A Bearer token that is not the configured one.
    Invalid,
}

/// Whether a request may use an operator endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorAccess {
    Granted,
    /// No token is configured for the endpoint: it does not exist (404).
    Disabled,
    /// A token is configured and the request does not carry it (401).
    Denied,
}

/// The access decision of every operator endpoint guarded by `token`
/// (`None`: the endpoint is off). Decided before anything else about the
/// request, so an unauthenticated caller learns nothing but "401".
pub fn operator_access(headers: &HeaderMap, token: Option<&SecretToken>) -> OperatorAccess {
    let Some(token) = token else {
        return OperatorAccess::Disabled;
    };
    match check_bearer(headers, token.expose()) {
        TokenCheck::Valid => OperatorAccess::Granted,
        TokenCheck::Missing | TokenCheck::Malformed | TokenCheck::Invalid => OperatorAccess::Denied,
    }
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
    let presented = value[7..].trim_ascii();
    // Configured tokens are printable ASCII without spaces, so whitespace
    // inside the credential means it is not one token: `Bearer a b`, or two
    // headers joined by the runtime into `Bearer a, Bearer b`.
    if presented.iter().any(u8::is_ascii_whitespace) {
        return TokenCheck::Malformed;
    }
    if tokens_match(presented, expected.as_bytes()) {
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

    #[test]
    fn several_authorization_headers_joined_into_one_value_are_malformed_not_a_bad_token() {
        // The Workers runtime hands the worker repeated headers as one
        // value joined with ", ".
        for joined in [
            "Bearer s3cret, Bearer s3cret",
            "Bearer wrong, Bearer s3cret",
            "Bearer s3cret, Basic czNjcmV0",
            "Bearer s3cret other",
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(joined).expect("valid header"),
            );
            assert_eq!(
                check_bearer(&headers, "s3cret"),
                TokenCheck::Malformed,
                "{joined}"
            );
        }
    }

    #[test]
    fn operator_access_is_off_without_a_token_and_needs_the_exact_one() {
        let token = SecretToken::new("operator-token-0123");
        assert_eq!(
            operator_access(&auth("Bearer operator-token-0123"), None),
            OperatorAccess::Disabled
        );
        assert_eq!(
            operator_access(&auth("Bearer operator-token-0123"), Some(&token)),
            OperatorAccess::Granted
        );
        assert_eq!(
            operator_access(&auth("Bearer operator-token-012"), Some(&token)),
            OperatorAccess::Denied
        );
        assert_eq!(
            operator_access(&HeaderMap::new(), Some(&token)),
            OperatorAccess::Denied
        );
    }
}
