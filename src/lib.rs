//! Cachefront: an edge cache and asset optimizer that runs as a Cloudflare Worker.
//!
//! The crate is a runtime-free core (configuration, cache policy, keys, the
//! request [`pipeline`]) plus one thin adapter over the Workers runtime that is
//! compiled only for `wasm32`. The core runs natively against the in-memory
//! platform in [`platform::memory`] for tests and benches.

// From the bottom up: each layer imports only the ones listed before it.
// (`json_path`, a leaf that names places in JSON texts, is used by several.)
pub mod admin;
pub mod assets;
pub mod cache;
pub mod config;
pub mod error;
mod json_path;
pub mod origin;
pub mod pipeline;
pub mod platform;
pub mod purge;
pub mod responses;
pub mod rules;
pub mod semantics;
pub mod stable_hash;
pub mod telemetry;

/// Bodies are whole byte buffers in this version of the pipeline.
pub type Body = bytes::Bytes;

/// A copy of a response; bodies are shared, not duplicated.
pub fn copy_response(response: &http::Response<Body>) -> http::Response<Body> {
    let mut out = http::Response::new(response.body().clone());
    *out.status_mut() = response.status();
    *out.headers_mut() = response.headers().clone();
    out
}
