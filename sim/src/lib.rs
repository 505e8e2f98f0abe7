//! A deterministic simulator of Cachefront on Cloudflare's network: the real
//! [`cachefront::pipeline::Pipeline`] (policy, tag registry logic, origin
//! pool, purge API) per isolate, over simulated data centres, registry
//! shards, KV and origin, with a simulated clock. See docs/scale.md.
//!
//! - [`world`]: data centres, regions, round trips, diurnal traffic.
//! - [`platform`]: the core's ports with network latency, queues, outages.
//! - [`scenario`]: what to run; [`engine`]: the event loop and sampling;
//!   [`report`]: the figures and the cost model.

pub mod engine;
pub mod platform;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod world;

pub use engine::run;
pub use report::Report;
pub use scenario::Scenario;
