//! What a capture reports: a request's queries per fingerprint and the N+1 patterns found.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::SqlFingerprint;

/// One N+1 pattern: the same fingerprint run `count` times by one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NPlusOne {
    /// Method label of the request.
    pub method: &'static str,
    /// Route template of the request (or `unmatched`).
    pub route: String,
    /// [`SqlFingerprint::id`] of the repeated statement.
    pub fingerprint: String,
    /// [`SqlFingerprint::normalized`] text of the repeated statement.
    pub normalized: String,
    /// How many times it ran in the request.
    pub count: u32,
    /// Their total database time.
    pub total_duration: Duration,
    /// One of the statements as sqlx logged it (truncated to 2048 chars).
    pub sample: String,
}

impl fmt::Display for NPlusOne {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "N+1 query on {} {}: fingerprint {} ran {} times ({:.3} ms): {}",
            self.method,
            self.route,
            self.fingerprint,
            self.count,
            self.total_duration.as_secs_f64() * 1000.0,
            self.normalized
        )
    }
}

/// N+1 patterns found while an [`NPlusOneGuard`](super::NPlusOneGuard) was held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NPlusOneError {
    /// Every pattern, in detection order.
    pub detections: Vec<NPlusOne>,
}

impl fmt::Display for NPlusOneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} N+1 query pattern(s) detected", self.detections.len())?;
        for d in &self.detections {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for NPlusOneError {}

/// Queries of one statement shape within a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerprintCount {
    /// The statement's fingerprint.
    pub fingerprint: Arc<SqlFingerprint>,
    /// Executions within the request.
    pub count: u32,
    /// Their total database time.
    pub total_duration: Duration,
}

/// What one request ran; [`DbCaptureLayer`](super::DbCaptureLayer) puts it in the response's extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedQueries {
    /// Statements captured.
    pub queries: u32,
    /// Their total database time.
    pub db_time: Duration,
    /// Per fingerprint, most executed first.
    pub by_fingerprint: Vec<FingerprintCount>,
    /// N+1 patterns found in this request.
    pub n_plus_one: Vec<NPlusOne>,
}
