//! Cloudflare's zone purge API.

use super::{check_response, BoxFuture, PurgeError, PurgeProvider};
use crate::purge::PurgeRequest;

/// Cloudflare's zone purge API: `POST {api}/zones/{zone_id}/purge_cache`, bearer API token,
/// one kind per call (`tags`, `files`, `prefixes`, `hosts` or `purge_everything`).
/// Cloudflare has no soft purge: soft requests are sent as hard ones.
#[derive(Debug, Clone)]
pub struct CloudflarePurge {
    api_base: String,
    zone_id: String,
    token: String,
    max_batch: usize,
}

impl CloudflarePurge {
    /// Provider for `zone_id` with an API token that has the Cache Purge permission.
    pub fn new(zone_id: impl Into<String>, api_token: impl Into<String>) -> Self {
        Self {
            api_base: "https://api.cloudflare.com/client/v4".to_owned(),
            zone_id: zone_id.into(),
            token: api_token.into(),
            max_batch: 30,
        }
    }
    /// Override the API base URL (tests, proxies).
    pub fn api_base(mut self, base: &str) -> Self {
        self.api_base = base.trim_end_matches('/').to_owned();
        self
    }
    /// Items per call. Default 30 (the limit on most plans).
    pub fn max_batch(mut self, max: usize) -> Self {
        self.max_batch = max.max(1);
        self
    }
}

impl PurgeProvider for CloudflarePurge {
    fn name(&self) -> &'static str {
        "cloudflare"
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
            let body = if req.everything {
                serde_json::json!({ "purge_everything": true })
            } else if !req.tags.is_empty() {
                serde_json::json!({ "tags": req.tags })
            } else if !req.urls.is_empty() {
                serde_json::json!({ "files": req.urls })
            } else if !req.prefixes.is_empty() {
                serde_json::json!({ "prefixes": req.prefixes })
            } else {
                serde_json::json!({ "hosts": req.hosts })
            };
            let url = format!("{}/zones/{}/purge_cache", self.api_base, self.zone_id);
            let res = http
                .post(url)
                .bearer_auth(&self.token)
                .json(&body)
                .send()
                .await;
            check_response(res, |body| {
                let ok = serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v.get("success").and_then(serde_json::Value::as_bool))
                    .unwrap_or(false);
                if ok {
                    Ok(())
                } else {
                    Err(PurgeError::Rejected {
                        status: 200,
                        message: String::from_utf8_lossy(body).into_owned(),
                    })
                }
            })
            .await
        })
    }
}
