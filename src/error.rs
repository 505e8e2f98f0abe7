//! The edge's one error type, and its single mapping to an HTTP status and a
//! JSON body. Error responses are always `no-store`: an error is never cached
//! by accident, here or downstream.

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::config::ConfigError;
use crate::platform::ports::OriginError;
use crate::responses::json_response;
use crate::Body;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    /// The worker's configuration is invalid; every request gets this. The
    /// answer says only that ([`EdgeError::to_response`]); the details are
    /// for the log and the operator ([`config_details_response`]).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Every origin attempt failed without a response (connection errors, timeouts).
    #[error("no origin answered: {}", describe(.attempts))]
    OriginsFailed { attempts: Vec<AttemptFailure> },
    /// The client's request cannot be served as sent.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// `Cache-Control: only-if-cached` and no stored response may answer.
    #[error("no stored response can answer this only-if-cached request")]
    NotCached,
    /// An operator endpoint that is turned off (its token is not configured).
    #[error("{endpoint} is disabled: it is enabled by the operator token secret {token_variable}")]
    Disabled {
        endpoint: &'static str,
        token_variable: &'static str,
    },
    /// A missing or wrong bearer token.
    #[error("a valid `Authorization: Bearer <token>` header is required")]
    Unauthorized,
    /// The endpoint does not take this method.
    #[error("method not allowed; use {0}")]
    MethodNotAllowed(&'static str),
}

/// What the public is told while the configuration is invalid.
pub const CONFIG_ERROR_PUBLIC_MESSAGE: &str =
    "the edge is misconfigured; its operator finds the details in the worker's log";

/// The configuration problem in full (variable and message), for the
/// operator only: a 500 like the public answer, so monitoring sees it fail.
pub fn config_details_response(err: &ConfigError) -> Response<Body> {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({
            "error": "invalid_config",
            "variable": err.variable,
            "message": err.to_string(),
        }),
    )
}

/// One failed attempt to reach an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFailure {
    pub origin: String,
    pub error: OriginError,
}

fn describe(attempts: &[AttemptFailure]) -> String {
    let parts: Vec<String> = attempts
        .iter()
        .map(|a| format!("{}: {}", a.origin, a.error))
        .collect();
    parts.join("; ")
}

impl EdgeError {
    pub fn from_origin(origin: &str, err: OriginError) -> Self {
        Self::OriginsFailed {
            attempts: vec![AttemptFailure {
                origin: origin.to_owned(),
                error: err,
            }],
        }
    }

    fn all_timeouts(attempts: &[AttemptFailure]) -> bool {
        !attempts.is_empty()
            && attempts
                .iter()
                .all(|a| matches!(a.error, OriginError::Timeout(_)))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::OriginsFailed { attempts } if Self::all_timeouts(attempts) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Self::OriginsFailed { .. } => StatusCode::BAD_GATEWAY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotCached => StatusCode::GATEWAY_TIMEOUT,
            Self::Disabled { .. } => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Stable machine-readable code, also used in logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(_) => "invalid_config",
            Self::OriginsFailed { attempts } if Self::all_timeouts(attempts) => "origin_timeout",
            Self::OriginsFailed { .. } => "origin_unreachable",
            Self::BadRequest(_) => "bad_request",
            Self::NotCached => "only_if_cached",
            Self::Disabled { .. } => "disabled",
            Self::Unauthorized => "unauthorized",
            Self::MethodNotAllowed(_) => "method_not_allowed",
        }
    }

    /// The JSON error response for this error.
    pub fn to_response(&self) -> Response<Body> {
        let mut body = json!({ "error": self.code(), "message": self.to_string() });
        match self {
            Self::Config(_) => {
                // Anyone can trigger this answer: it names no variable and no
                // value (an ORIGINS error can quote an origin's URL).
                body["message"] = json!(CONFIG_ERROR_PUBLIC_MESSAGE);
            }
            Self::OriginsFailed { attempts } => {
                if let Some(last) = attempts.last() {
                    body["origin"] = json!(last.origin);
                }
                body["attempts"] = attempts
                    .iter()
                    .map(|a| {
                        let kind = match a.error {
                            OriginError::Connect(_) => "connect",
                            OriginError::Timeout(_) => "timeout",
                        };
                        json!({ "origin": a.origin, "error": kind, "message": a.error.to_string() })
                    })
                    .collect();
            }
            Self::BadRequest(_)
            | Self::NotCached
            | Self::Disabled { .. }
            | Self::Unauthorized
            | Self::MethodNotAllowed(_) => {}
        }
        let mut response = json_response(self.status(), &body);
        let headers = response.headers_mut();
        match self {
            Self::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::MethodNotAllowed(allow) => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_error_is_a_generic_500_for_the_public_and_detailed_for_the_operator() {
        let err = ConfigError {
            variable: "ORIGINS",
            message: "origin #0: (a) url \"http://u:p@x\" is wrong".into(),
        };
        let public = EdgeError::from(err.clone()).to_response();
        assert_eq!(public.status(), 500);
        assert_eq!(public.headers()["cache-control"], "no-store");
        let body: serde_json::Value = serde_json::from_slice(public.body()).expect("json");
        assert_eq!(body["error"], "invalid_config");
        assert_eq!(body["message"], CONFIG_ERROR_PUBLIC_MESSAGE);
        let text = String::from_utf8_lossy(public.body());
        assert!(
            !text.contains("ORIGINS") && !text.contains("u:p@"),
            "{text}"
        );

        let operator = config_details_response(&err);
        assert_eq!(operator.status(), 500);
        let body: serde_json::Value = serde_json::from_slice(operator.body()).expect("json");
        assert_eq!(body["variable"], "ORIGINS");
        assert!(body["message"]
            .as_str()
            .is_some_and(|m| m.contains("is wrong")));
    }

    #[test]
    fn origin_failures_map_to_502_and_504() {
        let refused = EdgeError::from_origin("primary", OriginError::Connect("refused".into()));
        assert_eq!(refused.status(), 502);
        let slow = EdgeError::from_origin("primary", OriginError::Timeout("10s".into()));
        assert_eq!(slow.status(), 504);
        let body: serde_json::Value =
            serde_json::from_slice(slow.to_response().body()).expect("json");
        assert_eq!(body["origin"], "primary");
    }
}
