//! Where purges go: the [`PurgeProvider`] trait, its error type, and the response check
//! the HTTP providers share. One file per CDN.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::PurgeRequest;

mod cloudflare;
#[cfg(feature = "cloudfront")]
mod cloudfront;
mod edge;
mod fastly;

pub use cloudflare::CloudflarePurge;
#[cfg(feature = "cloudfront")]
pub use cloudfront::{AwsCredentials, CloudFrontPurge};
pub use edge::EdgePurge;
pub use fastly::FastlyPurge;

/// A boxed, sendable future, as returned by [`PurgeProvider::send`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a purge call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum PurgeError {
    /// Worth trying again (429, 5xx, timeouts, connection errors).
    #[error("retryable purge failure ({}): {message}", status.map_or_else(|| "transport".to_owned(), |s| s.to_string()))]
    Retryable {
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// Wait asked for by the server's `Retry-After`.
        retry_after: Option<Duration>,
        /// What went wrong.
        message: String,
    },
    /// The provider refused the request; retrying will not help (4xx, bad answer).
    #[error("purge rejected ({status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// What the provider said.
        message: String,
    },
    /// The request cannot be expressed for this provider (e.g. prefix purge on Fastly).
    #[error("unsupported by {provider}: {what}")]
    Unsupported {
        /// Provider name.
        provider: &'static str,
        /// Which part was unsupported.
        what: &'static str,
    },
}

impl PurgeError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PurgeError::Retryable { .. })
    }
}

/// Where purges go. Implement it to add a CDN.
pub trait PurgeProvider: Send + Sync + 'static {
    /// Stable name for logs and the `provider` metric label.
    fn name(&self) -> &'static str;
    /// Most items one call may carry.
    fn max_batch(&self) -> usize;
    /// Whether one call may mix kinds (tags and URLs…).
    fn mixed_kinds(&self) -> bool {
        true
    }
    /// Most bytes of items one call may carry (the API's body limit, less room for JSON).
    fn max_item_bytes(&self) -> usize {
        usize::MAX
    }
    /// Send one batch of at most [`max_batch`](Self::max_batch) items.
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        req: &'a PurgeRequest,
    ) -> BoxFuture<'a, Result<(), PurgeError>>;
}

async fn check_response(
    res: Result<reqwest::Response, reqwest::Error>,
    on_success: impl FnOnce(&[u8]) -> Result<(), PurgeError>,
) -> Result<(), PurgeError> {
    let res = res.map_err(|e| PurgeError::Retryable {
        status: None,
        retry_after: None,
        message: e.to_string(),
    })?;
    let status = res.status();
    let retry_after = res
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = res.bytes().await.unwrap_or_default();
    if status.is_success() {
        return on_success(&body);
    }
    let message = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
        Err(PurgeError::Retryable {
            status: Some(status.as_u16()),
            retry_after,
            message,
        })
    } else {
        Err(PurgeError::Rejected {
            status: status.as_u16(),
            message,
        })
    }
}
