//! What the edge reports about each request: the log line, `Server-Timing`
//! metrics and the Analytics Engine data point.

pub mod analytics;
pub mod request_log;
pub mod server_timing;
