//! The crate's one error type and its single mapping to an HTTP status + JSON body.
//!
//! Every endpoint this crate serves (and the example origin) answers failures through
//! [`Error`]: a status, a stable machine-readable `error` code and a human message, with
//! `Cache-Control: no-store` so an edge never caches an error. A 503 also carries
//! `Retry-After: 1` and is logged (at most one warning per [`UNAVAILABLE_WARN_INTERVAL`],
//! with the count of those not logged since), so an exhausted pool is never silent.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the plugin's endpoints and clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request was malformed (bad path parameter, query, body).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A protected endpoint was called without a valid bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The thing asked for does not exist (or the endpoint is disabled).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request conflicts with work in progress (e.g. a profile already running).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A dependency is unavailable (database down, shutting down).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An I/O failure (reading a manifest, binding a socket).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A failure talking to PostgreSQL.
    #[cfg(feature = "postgres")]
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A failure talking to a purge endpoint.
    #[cfg(feature = "purge")]
    #[error("purge: {0}")]
    Purge(#[from] crate::purge::PurgeError),
    /// Anything else that is our fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status this error maps to. The one place where that decision is made.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            #[cfg(feature = "postgres")]
            Error::Database(sqlx::Error::RowNotFound) => StatusCode::NOT_FOUND,
            #[cfg(feature = "postgres")]
            Error::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
            ) => StatusCode::SERVICE_UNAVAILABLE,
            #[cfg(feature = "purge")]
            Error::Purge(_) => StatusCode::BAD_GATEWAY,
            Error::Config(_) | Error::Io(_) | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            #[cfg(feature = "postgres")]
            Error::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code for the JSON body and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::Unauthorized => "unauthorized",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Unavailable(_) => "unavailable",
            Error::Config(_) => "config",
            Error::Io(_) => "io",
            #[cfg(feature = "postgres")]
            Error::Database(sqlx::Error::RowNotFound) => "not_found",
            #[cfg(feature = "postgres")]
            Error::Database(_) => "database",
            #[cfg(feature = "purge")]
            Error::Purge(_) => "purge",
            Error::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        // Server errors keep their detail in the log, not in the body.
        let message = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, "request failed");
            "internal server error".to_owned()
        } else {
            self.to_string()
        };
        let body = serde_json::json!({ "error": self.as_str(), "message": message });
        let mut res = (status, axum::Json(body)).into_response();
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            if let Some(not_logged) = UNAVAILABLE_WARNINGS.due(Instant::now()) {
                tracing::warn!(
                    target: "cachefront_origin::unavailable",
                    error = %self,
                    not_logged,
                    "answering 503: a dependency is unavailable (pool exhausted or database down?)"
                );
            }
        }
        if matches!(self, Error::Unauthorized) {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// Shortest time between two "answering 503" warnings; the ones in between are counted
/// and the next warning says how many.
pub const UNAVAILABLE_WARN_INTERVAL: Duration = Duration::from_secs(10);

static UNAVAILABLE_WARNINGS: WarnLimiter = WarnLimiter::new(UNAVAILABLE_WARN_INTERVAL);

/// Whether a warning at `now` is logged, given when the last one was and the least time
/// between two (zero: every one).
pub(crate) fn warn_due(last: Option<Instant>, now: Instant, interval: Duration) -> bool {
    match last {
        None => true,
        Some(at) => interval.is_zero() || now.saturating_duration_since(at) >= interval,
    }
}

/// One warning per interval for a process-wide condition, counting the ones it holds back.
struct WarnLimiter {
    interval: Duration,
    /// When the last warning was logged, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl WarnLimiter {
    const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when a warning at `now` is due (`n` were held back since the last one),
    /// `None` when it is held back.
    fn due(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, held_back) = &mut *state;
        if warn_due(*last, now, self.interval) {
            *last = Some(now);
            Some(std::mem::take(held_back))
        } else {
            *held_back += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_answers_say_when_to_retry_and_are_not_stored() {
        let res = Error::Unavailable("shutting down".into()).into_response();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
        let res = Error::NotFound("product 9".into()).into_response();
        assert!(res.headers().get(header::RETRY_AFTER).is_none());
        assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn one_warning_per_interval_counting_the_held_back_ones() {
        let limiter = WarnLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limiter.due(t0), Some(0));
        assert_eq!(limiter.due(t0 + Duration::from_secs(1)), None);
        assert_eq!(limiter.due(t0 + Duration::from_secs(9)), None);
        assert_eq!(limiter.due(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(limiter.due(t0 + Duration::from_secs(11)), None);
        assert_eq!(limiter.due(t0 + Duration::from_secs(25)), Some(1));
        let every = WarnLimiter::new(Duration::ZERO);
        assert_eq!(every.due(t0), Some(0));
        assert_eq!(every.due(t0), Some(0));
    }
}
