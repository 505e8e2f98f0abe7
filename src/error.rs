//! The edge's one error type, and its single mapping to an HTTP status and a
//! JSON body. Error responses are always `no-store`: an error is never cached
//! by accident, here or downstream.

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::config::ConfigError;
use crate::platform::OriginError;
use crate::Body;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EdgeError {
    /// The worker's configuration is invalid; every request gets this.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The origin could not be reached or broke the connection.
    #[error("origin {origin} could not be reached: {message}")]
    OriginUnreachable { origin: String, message: String },
    /// The origin did not answer in time.
    #[error("origin {origin} timed out: {message}")]
    OriginTimeout { origin: String, message: String },
    /// The client's request cannot be served as sent.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// `Cache-Control: only-if-cached` and no stored response may answer.
    #[error("no stored response can answer this only-if-cached request")]
    NotCached,
}

impl EdgeError {
    pub fn from_origin(origin: &str, err: OriginError) -> Self {
        match err {
            OriginError::Connect(message) => Self::OriginUnreachable {
                origin: origin.to_owned(),
                message,
            },
            OriginError::Timeout(message) => Self::OriginTimeout {
                origin: origin.to_owned(),
                message,
            },
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::OriginUnreachable { .. } => StatusCode::BAD_GATEWAY,
            Self::OriginTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotCached => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// Stable machine-readable code, also used in logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(_) => "invalid_config",
            Self::OriginUnreachable { .. } => "origin_unreachable",
            Self::OriginTimeout { .. } => "origin_timeout",
            Self::BadRequest(_) => "bad_request",
            Self::NotCached => "only_if_cached",
        }
    }

    /// The JSON error response for this error.
    pub fn to_response(&self) -> Response<Body> {
        let mut body = json!({ "error": self.code(), "message": self.to_string() });
        match self {
            Self::Config(e) => {
                body["variable"] = json!(e.variable);
            }
            Self::OriginUnreachable { origin, .. } | Self::OriginTimeout { origin, .. } => {
                body["origin"] = json!(origin);
            }
            Self::BadRequest(_) | Self::NotCached => {}
        }
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_error_is_a_500_naming_the_variable() {
        let err = EdgeError::from(ConfigError {
            variable: "ORIGINS",
            message: "must list at least one origin".into(),
        });
        let response = err.to_response();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let body: serde_json::Value = serde_json::from_slice(response.body()).expect("json");
        assert_eq!(body["error"], "invalid_config");
        assert_eq!(body["variable"], "ORIGINS");
        assert!(body["message"]
            .as_str()
            .is_some_and(|m| m.contains("at least one origin")));
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
