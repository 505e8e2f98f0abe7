//! Purge client: [`PurgeClient`] takes purge requests (tags, URLs, prefixes, hosts,
//! everything; hard or soft) without ever blocking the caller, batches them, and sends them
//! through a [`PurgeProvider`] with retries and backoff on 429/5xx (honouring
//! `Retry-After`). Providers: the Cachefront edge ([`EdgePurge`]), the Cloudflare API
//! ([`CloudflarePurge`]) and the Fastly API ([`FastlyPurge`]).
//!
//! The queue is bounded: when it is full new items are dropped and counted
//! (`cachefront_origin_purge_queue_dropped_total`), so a slow or unreachable edge costs
//! freshness, never request latency.
//!
//! One file per concern: `request` is the batch shape and its splitting, `providers` the
//! CDN APIs, `item` the per-item check the edge would make, `client` the non-blocking
//! handle callers hold, `sender` the batching and retrying task, `counters` their metrics,
//! `fanout` the awaited call over several providers with a receipt each ([`FanoutPurge`];
//! with the `cloudfront` feature also [`CloudFrontPurge`]).

mod client;
mod counters;
mod fanout;
mod item;
mod providers;
mod request;
mod sender;

pub use client::{Enqueued, PurgeClient, PurgeConfig, PurgeStats};
pub use providers::{
    BoxFuture, CloudflarePurge, EdgePurge, FastlyPurge, PurgeError, PurgeProvider,
};
pub use request::PurgeRequest;

pub use fanout::{FanoutPurge, FanoutReceipt, Outcome, ProviderReceipt};
#[cfg(feature = "cloudfront")]
pub use providers::{AwsCredentials, CloudFrontPurge};
