//! The Cachefront edge's own purge API (`POST /__cachefront/purge`).

use super::{check_response, BoxFuture, PurgeError, PurgeProvider};
use crate::purge::PurgeRequest;

/// The Cachefront edge: `POST {base}/__cachefront/purge` with a bearer token. Prefixes are
/// paths the edge was configured with (`PURGE_PREFIX_TAGS`, e.g. `/blog/`).
#[derive(Debug, Clone)]
pub struct EdgePurge {
    endpoint: String,
    token: String,
    max_batch: usize,
}

impl EdgePurge {
    /// `base` is the edge's origin (`https://www.example.com`); the token is the purge secret.
    pub fn new(base: &str, token: impl Into<String>) -> Self {
        Self {
            endpoint: format!("{}/__cachefront/purge", base.trim_end_matches('/')),
            token: token.into(),
            max_batch: 100,
        }
    }
    /// Items per call. Default 100.
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }
}

impl PurgeProvider for EdgePurge {
    fn name(&self) -> &'static str {
        "edge"
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    /// The edge refuses a whole request when one item is invalid (e.g. a prefix it was not
    /// configured with): one kind per call keeps a bad prefix from costing the tags.
    fn mixed_kinds(&self) -> bool {
        false
    }
    /// The edge accepts bodies up to 64 KiB.
    fn max_item_bytes(&self) -> usize {
        60 * 1024
    }
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        req: &'a PurgeRequest,
    ) -> BoxFuture<'a, Result<(), PurgeError>> {
        Box::pin(async move {
            let res = http
                .post(&self.endpoint)
                .bearer_auth(&self.token)
                .json(req)
                .send()
                .await;
            check_response(res, |_| Ok(())).await
        })
    }
}
