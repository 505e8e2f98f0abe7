//! HTTP caching semantics as pure functions of explicit inputs (request,
//! response, timestamps, settings): directive parsing, the storage and reuse
//! policy, conditional requests, byte ranges, `Vary`, HTTP dates and the
//! `Cache-Status` vocabulary. Nothing here does I/O or reads a clock; the
//! layers above only sequence these decisions.

pub mod cache_control;
pub mod cache_status;
pub mod conditional;
pub mod http_date;
pub mod policy;
pub mod range;
pub mod reflection;
pub mod surrogate_control;
pub mod vary;
