//! What the edge reports about each request: `Server-Timing` metrics and the
//! Analytics Engine data point.

pub mod analytics;
pub mod server_timing;
