//! `cachefront-origin`: the origin-side half of Cachefront.
//!
//! tower [`Layer`](tower::Layer)s and axum routers that make a backend observable and
//! cache-friendly behind the Cachefront edge. Each concern is a module behind its own
//! cargo feature (all on by default, like `full`):
//!
//! | feature | module | what it gives |
//! | --- | --- | --- |
//! | `metrics` | [`metrics`] | RED metrics per route, process metrics, `/metrics`, `/metrics.json` |
//! | `profiling` | [`profiling`] | `Server-Timing`, slow-request log, slowest-requests report |
//! | `pprof` | [`profiling::pprof`] | on-demand CPU flamegraph / pprof profile |
//! | `health` | [`health`] | `/livez`, `/readyz`, `/startupz`, graceful shutdown |
//! | `postgres` | [`health::PostgresCheck`], [`metrics::Metrics::observe_pg_pool`] | PostgreSQL ping and pool gauges |
//! | `cache-tags` | [`cache_tags`] | `CacheTags` response part, `Cache-Tag` / `Surrogate-Key` writer |
//! | `purge` | [`purge`] | purge client for the edge, Cloudflare and Fastly APIs |
//! | `assets` | [`assets`] | `asset_url()` over the asset build's `manifest.json` |
//!
//! See `docs/origin-plugin.md` for a guide and every option.

#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod error;
#[cfg_attr(not(any(feature = "metrics", feature = "profiling")), allow(dead_code))]
mod route;

#[cfg(feature = "assets")]
pub mod assets;
#[cfg(feature = "cache-tags")]
pub mod cache_tags;
#[cfg(feature = "health")]
pub mod health;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "profiling")]
pub mod profiling;
#[cfg(feature = "purge")]
pub mod purge;

pub use error::{Error, Result};
