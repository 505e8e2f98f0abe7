//! `cachefront-origin`: the origin-side half of Cachefront.
//!
//! tower [`Layer`](tower::Layer)s and axum routers that make a backend observable and
//! cache-friendly behind the Cachefront edge. Each concern is a module behind its own
//! cargo feature (all on by default, like `full`):
//!
//! | feature | module | what it gives |
//! | --- | --- | --- |
//! | — | [`admin`] | admin router for a separate listener, bearer-token guard |
//! | — | [`stack`] | [`Cachefront::builder`]: the layers in their right order; [`PathExcludes`] |
//! | — | [`hygiene`] | `no-store` on every error answer, `x-request-id` layer |
//! | `metrics` | [`metrics`] | RED metrics per route, process metrics, `/metrics`, `/metrics.json` |
//! | `profiling` | [`profiling`] | `Server-Timing`, slow-request log, slowest-requests report |
//! | `pprof` | [`profiling::pprof`] | on-demand CPU flamegraph / pprof profile |
//! | `health` | [`health`] | `/livez`, `/readyz`, `/startupz`, graceful shutdown |
//! | `postgres` | [`health::PostgresCheck`], [`metrics::Metrics::observe_pg_pool`] | PostgreSQL ping and pool gauges |
//! | `cache-tags` | [`cache_tags`] | `CacheTags` response part, `Cache-Tag` / `Surrogate-Key` writer |
//! | `purge` | [`purge`] | purge client for the edge, Cloudflare and Fastly APIs; fan-out over several |
//! | `cloudfront` | [`purge::CloudFrontPurge`] | CloudFront invalidations, SigV4-signed |
//! | `assets` | [`assets`] | `asset_url()` over the asset build's `manifest.json` |
//! | `db` | [`db`] | query capture from sqlx's tracing events, SQL fingerprints, N+1 detection |
//! | `db-purge` | [`purge_on_write`] | write → purge loop: `NOTIFY` triggers, change listener, tags to the purge client |
//! | `memory` | `memory` | jemalloc statistics, bytes per route, leak detector, heap profile (not in `full`) |
//! | `otlp` | `otlp` | the metrics registry pushed over OTLP/HTTP (not in `full`) |
//!
//! See `docs/origin-plugin.md` for a guide and every option.
//!
//! Operator routes (metrics, detailed health, `/debug/*`) never go on the public app the
//! edge forwards to: [`admin::AdminRouter`] gathers them for a separate listener
//! (`ADMIN_BIND`, loopback by default) or, behind an [`admin::BearerToken`], for nesting.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use cachefront_origin::{
//!     admin::{AdminConfig, AdminRouter},
//!     cache_tags::{CacheTagLayer, CacheTags},
//!     health::{GracefulShutdown, Health},
//!     metrics::Metrics,
//!     profiling::{Profiler, ProfilingConfig},
//! };
//!
//! # async fn run() -> Result<(), cachefront_origin::Error> {
//! let metrics = Metrics::new();
//! let health = Health::builder().metrics(&metrics).build();
//! let profiler = Profiler::with_metrics(ProfilingConfig::default(), &metrics);
//!
//! let app = Router::new()
//!     .route("/", get(|| async { (CacheTags::new(["home"]), "hello") }))
//!     .merge(health.router()) // /livez /readyz /startupz: status only
//!     .layer(CacheTagLayer::new().metrics(&metrics))
//!     .layer(profiler.layer())
//!     .layer(metrics.layer());
//!
//! let admin_config = AdminConfig::from_env()?; // ADMIN_BIND, ADMIN_TOKEN
//! let admin = AdminRouter::new()
//!     .metrics(&metrics)
//!     .health(&health)
//!     .profiler(&profiler)
//!     .token(admin_config.token.clone())
//!     .build();
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let admin_listener = tokio::net::TcpListener::bind(admin_config.bind).await?;
//! GracefulShutdown::new(&health)
//!     .serve_with_admin(listener, app, admin_listener, admin)
//!     .await?;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod admin;
pub mod error;
#[cfg(any(feature = "health", feature = "profiling"))]
mod html;
#[cfg_attr(not(any(feature = "metrics", feature = "profiling")), allow(dead_code))]
mod route;
mod tag_rules;

#[cfg(feature = "assets")]
pub mod assets;
#[cfg(feature = "cache-tags")]
pub mod cache_tags;
#[cfg(feature = "db")]
pub mod db;
#[cfg(feature = "health")]
pub mod health;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "profiling")]
pub mod profiling;
#[cfg(feature = "purge")]
pub mod purge;
#[cfg(feature = "db-purge")]
pub mod purge_on_write;

// Feature `memory`: allocator statistics, per-route bytes, leak detector, heap profile.
#[cfg(feature = "memory")]
pub mod memory;

// Feature `otlp`: the metrics registry exported over OTLP/HTTP.
#[cfg(feature = "otlp")]
pub mod otlp;

pub use error::{Error, Result};

// First-hour hygiene (issue #17 item 6): error answers never storable, request ids, and the
// exact sqlx this crate is built against (0.8), so `cachefront_origin::sqlx::PgPool` is
// the pool type its APIs take — no "found a different `Pool<Postgres>`" after
// `cargo add sqlx` picks another major version.
pub mod hygiene;
mod poll_local;
// Work a handler spawns, run as part of its request (id, profile, queries).
pub use poll_local::{in_current_request, InCurrentRequest};

// The layer stack in its right order (`Cachefront::builder()`), path excludes.
pub mod stack;
#[cfg(feature = "postgres")]
pub use sqlx;
pub use stack::{Cachefront, CachefrontBuilder, PathExcludes};
