//! [`FanoutPurge`]: one purge call sent to several providers at once (a site behind the
//! Cachefront edge and CloudFront, or two CDNs), with a receipt per provider.
//!
//! Unlike [`PurgeClient`](super::PurgeClient), which queues and never blocks, the fan-out
//! is awaited: it is for callers that need to know what happened (the CLI, an admin
//! action, a deploy step). Each provider gets the request cut to its own limits and is
//! retried on its own, so one slow or failing CDN neither delays the others' retries nor
//! hides their success.

use std::sync::Arc;

use serde::Serialize;

use super::client::PurgeConfig;
use super::item::{validate, Kind};
use super::sender::send_with_retries;
use super::{PurgeError, PurgeProvider, PurgeRequest};

/// Several providers purged with one call. Cheap to share behind an `Arc`.
pub struct FanoutPurge {
    providers: Vec<Arc<dyn PurgeProvider>>,
    config: PurgeConfig,
    http: reqwest::Client,
}

impl std::fmt::Debug for FanoutPurge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FanoutPurge")
            .field(
                "providers",
                &self.providers.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// How one provider's share of a fan-out purge ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every call succeeded.
    Ok,
    /// Some calls succeeded, some failed.
    Partial,
    /// No call succeeded.
    Failed,
    /// The provider cannot express any of the request (e.g. tags on CloudFront).
    Unsupported,
    /// Nothing in the request was for this provider to do.
    Nothing,
}

/// One provider's receipt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderReceipt {
    /// The provider's name (`edge`, `cloudflare`, `fastly`, `cloudfront`, …).
    pub provider: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// API calls the request was cut into for this provider.
    pub calls: usize,
    /// Calls that succeeded.
    pub succeeded: usize,
    /// Tries made in all, retries included.
    pub attempts: u32,
    /// What went wrong, one line per failed or unsupported call.
    pub errors: Vec<String>,
}

/// The result of [`FanoutPurge::purge`]: one receipt per provider, in the order they were
/// added, and the items refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FanoutReceipt {
    /// Per provider.
    pub providers: Vec<ProviderReceipt>,
    /// Items refused as invalid (never sent), with the reason.
    pub invalid: Vec<String>,
}

impl FanoutReceipt {
    /// Whether every provider did everything it was asked and could do (a provider that
    /// cannot express a kind, such as tags on CloudFront, is not a failure).
    pub fn all_ok(&self) -> bool {
        self.providers
            .iter()
            .all(|p| !matches!(p.outcome, Outcome::Partial | Outcome::Failed))
    }
    /// The receipts of providers that failed, partly or wholly.
    pub fn failures(&self) -> impl Iterator<Item = &ProviderReceipt> {
        self.providers
            .iter()
            .filter(|p| matches!(p.outcome, Outcome::Partial | Outcome::Failed))
    }
}

impl FanoutPurge {
    /// A fan-out with no providers yet; `config` gives the retries, backoff and timeout
    /// (its queue and batch-window fields are unused here).
    pub fn new(config: PurgeConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("cachefront-origin/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            providers: Vec::new(),
            config,
            http,
        }
    }

    /// Add a provider.
    pub fn provider(mut self, provider: impl PurgeProvider) -> Self {
        self.providers.push(Arc::new(provider));
        self
    }

    /// Names of the providers, in order.
    pub fn provider_names(&self) -> Vec<&'static str> {
        self.providers.iter().map(|p| p.name()).collect()
    }

    /// Purge `req` on every provider concurrently; wait for all of them, retries included.
    pub async fn purge(&self, req: &PurgeRequest) -> FanoutReceipt {
        let (req, invalid) = checked(req);
        let mut tasks = tokio::task::JoinSet::new();
        for (i, provider) in self.providers.iter().enumerate() {
            let provider = provider.clone();
            let http = self.http.clone();
            let config = self.config.clone();
            let req = req.clone();
            tasks.spawn(
                async move { (i, purge_one(provider.as_ref(), &http, &config, &req).await) },
            );
        }
        let mut receipts: Vec<Option<ProviderReceipt>> = vec![None; self.providers.len()];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((i, receipt)) = joined {
                receipts[i] = Some(receipt);
            }
        }
        let providers = receipts
            .into_iter()
            .zip(&self.providers)
            .map(|(r, p)| {
                // A provider task that panicked still gets a receipt saying so.
                r.unwrap_or_else(|| ProviderReceipt {
                    provider: p.name(),
                    outcome: Outcome::Failed,
                    calls: 0,
                    succeeded: 0,
                    attempts: 0,
                    errors: vec!["provider task panicked".to_owned()],
                })
            })
            .collect();
        FanoutReceipt { providers, invalid }
    }
}

/// The request with every item checked the way the queueing client checks them.
fn checked(req: &PurgeRequest) -> (PurgeRequest, Vec<String>) {
    let mut invalid = Vec::new();
    let mut keep = |kind: Kind, items: &[String]| -> Vec<String> {
        items
            .iter()
            .filter_map(|v| match validate(kind, v.clone()) {
                Ok(v) => Some(v),
                Err(reason) => {
                    invalid.push(format!("{} {v:?}: {reason}", kind.as_str()));
                    None
                }
            })
            .collect()
    };
    let out = PurgeRequest {
        tags: keep(Kind::Tag, &req.tags),
        urls: keep(Kind::Url, &req.urls),
        prefixes: keep(Kind::Prefix, &req.prefixes),
        hosts: keep(Kind::Host, &req.hosts),
        everything: req.everything,
        soft: req.soft,
    };
    (out, invalid)
}

async fn purge_one(
    provider: &dyn PurgeProvider,
    http: &reqwest::Client,
    config: &PurgeConfig,
    req: &PurgeRequest,
) -> ProviderReceipt {
    let parts = req.split_bounded(
        provider.max_batch(),
        !provider.mixed_kinds(),
        provider.max_item_bytes(),
    );
    let mut receipt = ProviderReceipt {
        provider: provider.name(),
        outcome: Outcome::Nothing,
        calls: parts.len(),
        succeeded: 0,
        attempts: 0,
        errors: Vec::new(),
    };
    let mut unsupported = 0;
    for part in &parts {
        let tried = send_with_retries(provider, http, config, part, || {}).await;
        receipt.attempts += tried.attempts;
        match tried.result {
            Ok(()) => receipt.succeeded += 1,
            Err(e) => {
                if matches!(e, PurgeError::Unsupported { .. }) {
                    unsupported += 1;
                }
                receipt.errors.push(e.to_string());
            }
        }
    }
    let failed = parts.len() - receipt.succeeded - unsupported;
    receipt.outcome = match (receipt.succeeded, failed, unsupported) {
        (0, 0, 0) => Outcome::Nothing,
        (_, 0, 0) => Outcome::Ok,
        (0, 0, _) => Outcome::Unsupported,
        // What the provider could do, it did: the rest is not a failure to retry.
        (_, 0, _) => Outcome::Ok,
        (0, _, _) => Outcome::Failed,
        _ => Outcome::Partial,
    };
    if matches!(receipt.outcome, Outcome::Partial | Outcome::Failed) {
        tracing::error!(target: "cachefront_origin::purge", provider = receipt.provider, failed, calls = receipt.calls, "fan-out purge failed on this provider");
    }
    receipt
}
