//! Fastly's purge API (surrogate keys, single URLs, purge all).

use super::{check_response, BoxFuture, PurgeError, PurgeProvider};
use crate::purge::PurgeRequest;

/// Fastly's purge API: surrogate keys via `POST {api}/service/{id}/purge` (JSON
/// `surrogate_keys`), URLs via `POST {api}/purge/{host}/{path}`, everything via
/// `POST {api}/service/{id}/purge_all`; `Fastly-Key` auth, `Fastly-Soft-Purge: 1` for soft.
/// Prefix and host purges have no Fastly equivalent and are refused.
#[derive(Debug, Clone)]
pub struct FastlyPurge {
    api_base: String,
    service_id: String,
    token: String,
    max_batch: usize,
}

impl FastlyPurge {
    /// Provider for `service_id` with an API token that has the `purge_select` scope.
    pub fn new(service_id: impl Into<String>, api_token: impl Into<String>) -> Self {
        Self {
            api_base: "https://api.fastly.com".to_owned(),
            service_id: service_id.into(),
            token: api_token.into(),
            max_batch: 256,
        }
    }
    /// Override the API base URL (tests, proxies).
    pub fn api_base(mut self, base: &str) -> Self {
        self.api_base = base.trim_end_matches('/').to_owned();
        self
    }
}

impl PurgeProvider for FastlyPurge {
    fn name(&self) -> &'static str {
        "fastly"
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
            if !req.prefixes.is_empty() {
                return Err(PurgeError::Unsupported {
                    provider: "fastly",
                    what: "prefix purge",
                });
            }
            if !req.hosts.is_empty() {
                return Err(PurgeError::Unsupported {
                    provider: "fastly",
                    what: "host purge",
                });
            }
            let with_auth = |b: reqwest::RequestBuilder| {
                let b = b
                    .header("Fastly-Key", &self.token)
                    .header("Accept", "application/json");
                if req.soft {
                    b.header("Fastly-Soft-Purge", "1")
                } else {
                    b
                }
            };
            if req.everything {
                let url = format!("{}/service/{}/purge_all", self.api_base, self.service_id);
                return check_response(with_auth(http.post(url)).send().await, |_| Ok(())).await;
            }
            if !req.tags.is_empty() {
                let url = format!("{}/service/{}/purge", self.api_base, self.service_id);
                let body = serde_json::json!({ "surrogate_keys": req.tags });
                return check_response(with_auth(http.post(url)).json(&body).send().await, |_| {
                    Ok(())
                })
                .await;
            }
            for u in &req.urls {
                let bare = u
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                let url = format!("{}/purge/{}", self.api_base, bare);
                check_response(with_auth(http.post(url)).send().await, |_| Ok(())).await?;
            }
            Ok(())
        })
    }
}
