//! The cache's own data: the key an entry is filed under, the stored form of
//! an entry (what travels in its metadata header), the per-isolate memory
//! tier in front of the platform store, request coalescing inside an
//! isolate, and collapsing refills across a data centre's isolates.

pub mod coalesce;
pub mod collapse;
pub mod hot;
pub mod key;
pub mod stored;
