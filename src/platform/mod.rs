//! The platform the pipeline runs on: its ports ([`ports`]), the bundle of
//! them a pipeline is generic over ([`Platform`]), streamed bodies
//! ([`body`]), and the two adapters: `workers` (wasm32, over the Workers
//! runtime) and [`memory`] (native tests and benches).

pub mod body;
pub mod head;
pub mod memory;
pub mod ports;
#[cfg(target_arch = "wasm32")]
mod workers;
#[cfg(target_arch = "wasm32")]
mod workers_registry;

pub use crate::purge::cloudflare::CloudflareApi;
pub use crate::purge::registry::TagRegistryStore;
pub use ports::{
    Background, BackgroundTask, BodyStreams, CacheStore, Clock, GlobalStore, HealthStore,
    OriginError, OriginFetch, StaticAssets, StoreError, StreamReadError,
};

/// One platform: the set of implementations a pipeline runs on.
pub trait Platform {
    type Cache: CacheStore + Clone + 'static;
    type Origin: OriginFetch;
    type Assets: StaticAssets;
    type Clock: Clock + Clone + 'static;
    type Background: Background;
    type Health: HealthStore;
    type Global: GlobalStore + Clone + 'static;
    type Registry: TagRegistryStore;
    type Cloudflare: CloudflareApi + Clone + 'static;
    type Streams: BodyStreams;

    fn cache(&self) -> &Self::Cache;
    fn origin(&self) -> &Self::Origin;
    fn assets(&self) -> &Self::Assets;
    fn clock(&self) -> &Self::Clock;
    fn background(&self) -> &Self::Background;
    fn health(&self) -> &Self::Health;
    fn global(&self) -> &Self::Global;
    /// The tag registry (Durable Objects on Workers).
    fn registry(&self) -> &Self::Registry;
    /// Cloudflare's API, for forwarding purges to the zone cache.
    fn cloudflare(&self) -> &Self::Cloudflare;
    /// Streamed bodies.
    fn streams(&self) -> &Self::Streams;
}
