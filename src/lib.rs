//! Cachefront: an edge cache and asset optimizer that runs as a Cloudflare Worker.
//!
//! The crate is a runtime-free core (configuration, cache policy, keys, the
//! request [`pipeline`]) plus one thin adapter over the Workers runtime that is
//! compiled only for `wasm32`. The core runs natively against the in-memory
//! platform in [`memory`] for tests and benches.

pub mod analytics;
pub mod assets;
pub mod auth;
pub mod body;
pub mod cache_control;
pub mod cache_key;
pub mod cache_status;
pub mod coalesce;
pub mod conditional;
pub mod config;
pub mod edge_assets;
pub mod error;
pub mod forward;
pub mod health;
pub mod hot_cache;
pub mod http_date;
pub mod memory;
pub mod origin_pool;
pub mod pipeline;
pub mod platform;
pub mod policy;
pub mod purge;
pub mod range;
pub mod registry;
pub mod server_timing;
pub mod shaping;
pub mod state;
pub mod stored;
pub mod tags;
pub mod vary;
pub mod warming;

#[cfg(target_arch = "wasm32")]
mod workers;
#[cfg(target_arch = "wasm32")]
mod workers_registry;

/// Bodies are whole byte buffers in this version of the pipeline.
pub type Body = bytes::Bytes;

/// A copy of a response; bodies are shared, not duplicated.
pub fn copy_response(response: &http::Response<Body>) -> http::Response<Body> {
    let mut out = http::Response::new(response.body().clone());
    *out.status_mut() = response.status();
    *out.headers_mut() = response.headers().clone();
    out
}
