//! Everything between a client request and an origin: the shaped view of a
//! request that both the cache key and the origin request are built from,
//! building the origin request and cleaning its answer, choosing among
//! origins, and each origin's health.

pub mod book;
pub mod health;
pub mod pool;
pub mod request;
pub mod shaping;
