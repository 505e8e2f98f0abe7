//! The cache's own data: the key an entry is filed under, the stored form of
//! an entry (what travels in its metadata header), the per-isolate memory
//! tier in front of the platform store, and request coalescing.

pub mod coalesce;
pub mod hot;
pub mod key;
pub mod stored;
