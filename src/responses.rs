//! Answers the worker writes itself (operator endpoints, errors): JSON,
//! and never stored anywhere.

use http::{header, HeaderValue, Response, StatusCode};

use crate::Body;

/// A JSON answer of the worker's own: `application/json`, never stored.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The operator APIs' error answer (purge, state), one shape for both:
/// `{"ok":false,"error":{"status":..,"code":..,"message":..[,"field":..]}}`.
pub fn api_error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    field: Option<&str>,
) -> Response<Body> {
    let mut error = serde_json::json!({
        "status": status.as_u16(),
        "code": code,
        "message": message,
    });
    if let Some(field) = field {
        error["field"] = serde_json::json!(field);
    }
    json_response(status, &serde_json::json!({ "ok": false, "error": error }))
}
