//! Amazon CloudFront's CreateInvalidation API, signed with AWS Signature Version 4.
//!
//! The request (path, XML batch, SigV4 headers by AWS's own `aws-sigv4`) is built by the
//! `cachefront-cloudfront` crate, which `cachefront purge --cloudfront` shares; this file
//! maps purge requests to paths, sends, and sorts answers into retryable or not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use cachefront_cloudfront::AwsCredentials;

use super::{BoxFuture, PurgeError, PurgeProvider};
use crate::purge::PurgeRequest;

/// CloudFront invalidations: `POST {api}/2020-05-31/distribution/{id}/invalidation` with an
/// XML `InvalidationBatch` (`CallerReference`, `Paths` with `Quantity` and `Items`), signed
/// with SigV4 (service `cloudfront`, region `us-east-1`).
///
/// URLs become their paths (CloudFront invalidates by path; the query string is dropped),
/// prefixes become `prefix*` wildcards, everything becomes `/*`. CloudFront has no cache
/// tags, host purge or soft purge: tags and hosts are refused as
/// [`PurgeError::Unsupported`], soft purges are sent as invalidations.
/// `TooManyInvalidationsInProgress` and `Throttling` answers are retryable.
#[derive(Debug)]
pub struct CloudFrontPurge {
    api_base: String,
    distribution_id: String,
    credentials: AwsCredentials,
    max_batch: usize,
    sequence: AtomicU64,
}

impl CloudFrontPurge {
    /// Provider for one distribution.
    pub fn new(distribution_id: impl Into<String>, credentials: AwsCredentials) -> Self {
        Self {
            api_base: "https://cloudfront.amazonaws.com".to_owned(),
            distribution_id: distribution_id.into(),
            credentials,
            max_batch: 1000,
            sequence: AtomicU64::new(0),
        }
    }
    /// Override the API base URL (tests, proxies).
    pub fn api_base(mut self, base: &str) -> Self {
        self.api_base = base.trim_end_matches('/').to_owned();
        self
    }
    /// Paths per invalidation. Default 1000 (CloudFront allows 3000 in progress).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }
}

/// CloudFront paths for one request, or why it cannot be expressed.
pub(crate) fn invalidation_paths(req: &PurgeRequest) -> Result<Vec<String>, PurgeError> {
    let unsupported = |what| PurgeError::Unsupported {
        provider: "cloudfront",
        what,
    };
    if !req.everything && !req.tags.is_empty() {
        return Err(unsupported("tag purge (CloudFront has no cache tags)"));
    }
    if !req.everything && !req.hosts.is_empty() {
        return Err(unsupported("host purge"));
    }
    Ok(cachefront_cloudfront::invalidation_paths(
        &req.urls,
        &req.prefixes,
        req.everything,
    ))
}

impl PurgeProvider for CloudFrontPurge {
    fn name(&self) -> &'static str {
        "cloudfront"
    }
    fn max_batch(&self) -> usize {
        self.max_batch
    }
    fn mixed_kinds(&self) -> bool {
        false
    }
    fn send<'a>(
        &'a self,
        http: &'a reqwest::Client,
        req: &'a PurgeRequest,
    ) -> BoxFuture<'a, Result<(), PurgeError>> {
        Box::pin(async move {
            let paths = invalidation_paths(req)?;
            if paths.is_empty() {
                return Ok(());
            }
            let now = SystemTime::now();
            let millis = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            // Unique per call: a reused reference with the same paths would make CloudFront
            // answer with the earlier invalidation instead of starting a new one.
            let reference = format!(
                "cachefront-{millis}-{}",
                self.sequence.fetch_add(1, Ordering::Relaxed)
            );
            let signed = cachefront_cloudfront::create_invalidation(
                &self.api_base,
                &self.distribution_id,
                &self.credentials,
                &paths,
                &reference,
                now,
            )
            .map_err(|message| PurgeError::Rejected { status: 0, message })?;
            let mut call = http.post(&signed.url);
            for (k, v) in &signed.headers {
                call = call.header(k.as_str(), v.as_str());
            }
            let res = call
                .body(signed.body)
                .send()
                .await
                .map_err(|e| PurgeError::Retryable {
                    status: None,
                    retry_after: None,
                    message: e.to_string(),
                })?;
            let status = res.status().as_u16();
            let retry_after = res
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(std::time::Duration::from_secs);
            let text = res.text().await.unwrap_or_default();
            if (200..300).contains(&status) {
                tracing::debug!(target: "cachefront_origin::purge", provider = "cloudfront", paths = paths.len(), "invalidation created");
                return Ok(());
            }
            let message: String = text.chars().take(512).collect();
            if cachefront_cloudfront::is_retryable(status, &text) {
                Err(PurgeError::Retryable {
                    status: Some(status),
                    retry_after,
                    message,
                })
            } else {
                Err(PurgeError::Rejected { status, message })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The request shape and signing are tested in `cachefront-cloudfront`; here, what a
    // purge request becomes.
    #[test]
    fn urls_prefixes_and_everything_map_to_cloudfront_paths_and_tags_are_refused() {
        let req = PurgeRequest {
            urls: vec!["https://shop.example/products/1?page=2".into()],
            prefixes: vec!["/img/".into()],
            ..Default::default()
        };
        assert_eq!(
            invalidation_paths(&req),
            Ok(vec!["/img/*".to_owned(), "/products/1".to_owned()])
        );
        let all = PurgeRequest {
            everything: true,
            ..Default::default()
        };
        assert_eq!(invalidation_paths(&all), Ok(vec!["/*".to_owned()]));
        let tags = PurgeRequest {
            tags: vec!["product:1".into()],
            ..Default::default()
        };
        assert!(matches!(
            invalidation_paths(&tags),
            Err(PurgeError::Unsupported { .. })
        ));
    }
}
