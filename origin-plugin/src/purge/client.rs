//! [`PurgeClient`]: the cheap, never-blocking handle callers enqueue purges through.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::counters::PurgeCounters;
use super::item::{validate, Kind};
use super::sender::Sender;
use super::PurgeProvider;

/// Options for [`PurgeClient`].
#[derive(Debug, Clone)]
pub struct PurgeConfig {
    /// Items the queue holds before new ones are dropped. Default 10 000.
    pub queue_capacity: usize,
    /// How long the sender waits for more items after the first one. Default 50 ms.
    pub batch_window: Duration,
    /// Calls per batch before giving up (first try included). Default 5.
    pub max_attempts: u32,
    /// First backoff; doubles per retry. Default 200 ms.
    pub initial_backoff: Duration,
    /// Longest wait between tries, also caps `Retry-After`. Default 30 s.
    pub max_backoff: Duration,
    /// Per-call HTTP timeout. Default 10 s.
    pub request_timeout: Duration,
}

impl Default for PurgeConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            batch_window: Duration::from_millis(50),
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// What happened to items handed to [`PurgeClient`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Items accepted into the queue.
    pub accepted: usize,
    /// Items dropped (queue full or client stopped).
    pub dropped: usize,
    /// Items refused as invalid (a tag the edge would refuse, a URL that is not absolute
    /// http(s), a malformed host): never sent, so they cannot sink a whole batch.
    pub invalid: usize,
}

pub(super) enum Msg {
    Item {
        kind: Kind,
        value: String,
        soft: bool,
    },
    Flush(oneshot::Sender<()>),
}

/// Statistics of a [`PurgeClient`], for tests and status pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeStats {
    /// Items waiting in the queue.
    pub queued: i64,
}

/// Non-blocking, batching, retrying purge client. Cheap to clone; clones share the queue.
/// Must be created inside a tokio runtime (it spawns its sender task there).
#[derive(Clone)]
pub struct PurgeClient {
    tx: mpsc::Sender<Msg>,
    counters: PurgeCounters,
    depth: Arc<AtomicI64>,
    last_drop_warning: Arc<AtomicU64>,
}

impl std::fmt::Debug for PurgeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgeClient")
            .field("queued", &self.depth.load(Ordering::Relaxed))
            .finish()
    }
}

impl PurgeClient {
    /// A client over `provider`.
    pub fn new(provider: impl PurgeProvider, config: PurgeConfig) -> Self {
        Self::start(Arc::new(provider), config, PurgeCounters::noop())
    }

    /// A client that also counts in `metrics`.
    #[cfg(feature = "metrics")]
    pub fn with_metrics(
        provider: impl PurgeProvider,
        config: PurgeConfig,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        let counters = PurgeCounters::from_metrics(metrics, provider.name());
        Self::start(Arc::new(provider), config, counters)
    }

    fn start(
        provider: Arc<dyn PurgeProvider>,
        config: PurgeConfig,
        counters: PurgeCounters,
    ) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let depth = Arc::new(AtomicI64::new(0));
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("cachefront-origin/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let sender = Sender {
            provider,
            config,
            counters: counters.clone(),
            depth: depth.clone(),
            http,
        };
        tokio::spawn(sender.run(rx));
        Self {
            tx,
            counters,
            depth,
            last_drop_warning: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Purge these cache tags (trimmed, lowercased; tags the edge would refuse are counted
    /// in [`Enqueued::invalid`] and never sent).
    pub fn purge_tags<I, T>(&self, tags: I) -> Enqueued
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.enqueue(Kind::Tag, normalized(tags, str::to_owned), false)
    }

    /// Soft-purge these cache tags (stale entries stay usable while they revalidate).
    pub fn soft_purge_tags<I, T>(&self, tags: I) -> Enqueued
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.enqueue(Kind::Tag, normalized(tags, str::to_owned), true)
    }

    /// Purge these absolute URLs.
    pub fn purge_urls<I, T>(&self, urls: I) -> Enqueued
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.enqueue(Kind::Url, normalized(urls, trimmed), false)
    }

    /// Purge everything under these URL prefixes.
    pub fn purge_prefixes<I, T>(&self, prefixes: I) -> Enqueued
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.enqueue(Kind::Prefix, normalized(prefixes, trimmed), false)
    }

    /// Purge everything served for these hostnames.
    pub fn purge_hosts<I, T>(&self, hosts: I) -> Enqueued
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.enqueue(
            Kind::Host,
            normalized(hosts, |h| h.trim().to_ascii_lowercase()),
            false,
        )
    }

    /// Purge the whole cache.
    pub fn purge_everything(&self) -> Enqueued {
        self.enqueue(Kind::Everything, std::iter::once(String::new()), false)
    }

    fn enqueue(&self, kind: Kind, values: impl Iterator<Item = String>, soft: bool) -> Enqueued {
        let mut out = Enqueued::default();
        for value in values {
            let value = match validate(kind, value) {
                Ok(v) => v,
                Err(reason) => {
                    out.invalid += 1;
                    self.counters.invalid(kind).increment(1);
                    tracing::warn!(target: "cachefront_origin::purge", kind = kind.as_str(), reason, "invalid purge item refused");
                    continue;
                }
            };
            // Count before sending so the sender's decrement never runs first.
            self.depth.fetch_add(1, Ordering::Relaxed);
            match self.tx.try_send(Msg::Item { kind, value, soft }) {
                Ok(()) => {
                    out.accepted += 1;
                    self.counters.enqueued(kind).increment(1);
                }
                Err(_) => {
                    self.depth.fetch_sub(1, Ordering::Relaxed);
                    out.dropped += 1;
                    self.counters.dropped.increment(1);
                }
            }
        }
        self.counters
            .depth
            .set(self.depth.load(Ordering::Relaxed) as f64);
        if out.dropped > 0 {
            // At most one warning a second: a full queue must not also flood the log.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if self.last_drop_warning.swap(now, Ordering::Relaxed) != now {
                tracing::warn!(target: "cachefront_origin::purge", dropped = out.dropped, "purge queue full; items dropped");
            }
        }
        out
    }

    /// Wait until everything enqueued before this call has been sent (or given up on).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Current statistics.
    pub fn stats(&self) -> PurgeStats {
        PurgeStats {
            queued: self.depth.load(Ordering::Relaxed),
        }
    }
}

/// The caller's items as owned strings, each passed through `normalize` (the per-kind
/// clean-up done before validation).
fn normalized<I, T>(items: I, normalize: fn(&str) -> String) -> impl Iterator<Item = String>
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    items.into_iter().map(move |i| normalize(i.as_ref()))
}

fn trimmed(s: &str) -> String {
    s.trim().to_owned()
}
