//! The background task behind a [`PurgeClient`](super::PurgeClient): collects items for a
//! batch window, dedupes them, splits them to the provider's limits and sends them with
//! retries and backoff.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::client::{Msg, PurgeConfig};
use super::counters::PurgeCounters;
use super::item::Kind;
use super::{PurgeError, PurgeProvider, PurgeRequest};

pub(super) struct Sender {
    pub(super) provider: Arc<dyn PurgeProvider>,
    pub(super) config: PurgeConfig,
    pub(super) counters: PurgeCounters,
    pub(super) depth: Arc<AtomicI64>,
    pub(super) http: reqwest::Client,
}

#[derive(Default)]
struct Batch {
    hard: Sets,
    soft: Sets,
    items: usize,
}

#[derive(Default)]
struct Sets {
    tags: BTreeSet<String>,
    urls: BTreeSet<String>,
    prefixes: BTreeSet<String>,
    hosts: BTreeSet<String>,
    everything: bool,
}

impl Sets {
    fn into_request(self, soft: bool) -> PurgeRequest {
        if self.everything {
            return PurgeRequest {
                everything: true,
                soft,
                ..Default::default()
            };
        }
        PurgeRequest {
            tags: self.tags.into_iter().collect(),
            urls: self.urls.into_iter().collect(),
            prefixes: self.prefixes.into_iter().collect(),
            hosts: self.hosts.into_iter().collect(),
            everything: false,
            soft,
        }
    }
}

impl Batch {
    fn add(&mut self, kind: Kind, value: String, soft: bool) {
        self.items += 1;
        let sets = if soft { &mut self.soft } else { &mut self.hard };
        match kind {
            Kind::Tag => {
                sets.tags.insert(value);
            }
            Kind::Url => {
                sets.urls.insert(value);
            }
            Kind::Prefix => {
                sets.prefixes.insert(value);
            }
            Kind::Host => {
                sets.hosts.insert(value);
            }
            Kind::Everything => sets.everything = true,
        }
    }
}

impl Sender {
    pub(super) async fn run(self, mut rx: mpsc::Receiver<Msg>) {
        // The largest batch worth collecting before sending: a few provider calls' worth.
        let collect_max = self.provider.max_batch().saturating_mul(4).max(1);
        while let Some(first) = rx.recv().await {
            let mut batch = Batch::default();
            let mut flushes = Vec::new();
            match first {
                Msg::Item { kind, value, soft } => self.take(&mut batch, kind, value, soft),
                Msg::Flush(done) => flushes.push(done),
            }
            if flushes.is_empty() {
                let window = tokio::time::sleep(self.config.batch_window);
                tokio::pin!(window);
                while batch.items < collect_max {
                    tokio::select! {
                        biased;
                        msg = rx.recv() => match msg {
                            Some(Msg::Item { kind, value, soft }) => self.take(&mut batch, kind, value, soft),
                            Some(Msg::Flush(done)) => { flushes.push(done); break; }
                            None => break,
                        },
                        _ = &mut window => break,
                    }
                }
            }
            self.send_batch(batch).await;
            for done in flushes {
                let _ = done.send(());
            }
        }
    }

    fn take(&self, batch: &mut Batch, kind: Kind, value: String, soft: bool) {
        let left = self.depth.fetch_sub(1, Ordering::Relaxed) - 1;
        self.counters.depth.set(left.max(0) as f64);
        batch.add(kind, value, soft);
    }

    async fn send_batch(&self, batch: Batch) {
        let max = self.provider.max_batch();
        let mixed = self.provider.mixed_kinds();
        for req in [
            batch.hard.into_request(false),
            batch.soft.into_request(true),
        ] {
            if req.is_empty() {
                continue;
            }
            for part in req.split_bounded(max, !mixed, self.provider.max_item_bytes()) {
                self.send_with_retries(&part).await;
            }
        }
    }

    async fn send_with_retries(&self, req: &PurgeRequest) {
        let provider = self.provider.name();
        let tried = send_with_retries(
            self.provider.as_ref(),
            &self.http,
            &self.config,
            req,
            || self.counters.retry.increment(1),
        )
        .await;
        match tried.result {
            Ok(()) => self.counters.ok.increment(1),
            Err(e @ PurgeError::Retryable { .. }) => {
                self.counters.failed.increment(1);
                tracing::error!(target: "cachefront_origin::purge", provider, attempts = tried.attempts, error = %e, items = req.len(), "purge failed; giving up");
            }
            Err(e) => {
                self.counters.rejected.increment(1);
                tracing::error!(target: "cachefront_origin::purge", provider, error = %e, items = req.len(), "purge rejected");
            }
        }
    }
}

/// What one provider call with its retries came to.
pub(super) struct Tried {
    pub(super) result: Result<(), PurgeError>,
    pub(super) attempts: u32,
}

/// One provider call, retried with backoff on retryable failures (honouring `Retry-After`,
/// capped by `max_backoff`) up to `max_attempts`; `on_retry` runs before each wait. Shared
/// by the queueing client and the fan-out so both retry the same way.
pub(super) async fn send_with_retries(
    provider: &dyn PurgeProvider,
    http: &reqwest::Client,
    config: &PurgeConfig,
    req: &PurgeRequest,
    mut on_retry: impl FnMut(),
) -> Tried {
    let name = provider.name();
    let mut backoff = config.initial_backoff;
    let attempts = config.max_attempts.max(1);
    let mut attempt = 1;
    loop {
        match provider.send(http, req).await {
            Ok(()) => {
                tracing::debug!(target: "cachefront_origin::purge", provider = name, items = req.len(), attempt, "purge sent");
                return Tried {
                    result: Ok(()),
                    attempts: attempt,
                };
            }
            Err(PurgeError::Retryable {
                status,
                retry_after,
                message,
            }) if attempt < attempts => {
                on_retry();
                let wait = retry_after.unwrap_or(backoff).min(config.max_backoff);
                tracing::warn!(target: "cachefront_origin::purge", provider = name, ?status, attempt, wait_ms = wait.as_millis() as u64, %message, "purge failed; retrying");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(config.max_backoff);
                attempt += 1;
            }
            Err(e) => {
                return Tried {
                    result: Err(e),
                    attempts: attempt,
                }
            }
        }
    }
}
