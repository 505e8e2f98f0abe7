//! Invalidation: purges are versions in a tag registry, not deletions. The
//! purge API (request model, validation, receipt), the tag registry's
//! decisions and sharding, the tags an entry carries, forwarding purges to
//! Cloudflare's zone cache, and which pages to warm again afterwards.

pub mod api;
pub mod cloudflare;
pub mod registry;
pub mod request;
pub mod sync;
pub mod tags;
pub mod warming;
