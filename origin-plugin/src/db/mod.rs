//! Database query capture, from sqlx's own statement events (no change to the
//! application's executor) or, the opt-in fast path, from a wrapped pool
//! ([`CapturedPool`], features `db` + `postgres`): `&CapturedPool` is a `sqlx::Executor`
//! that records each statement itself, so sqlx does not build its statement event (its
//! summary parse and text formatting were the capture's largest cost). Both feed the
//! same state below and can be installed together; a wrapped statement is never counted
//! twice (see `captured_pool`).
//!
//! sqlx already reports every statement it runs as a `tracing` event (target
//! `sqlx::query`, fields `summary`, `db.statement`, `rows_affected`, `rows_returned`,
//! `elapsed`, `elapsed_secs`). [`DbCapture`] listens to those events:
//!
//! * [`DbCapture::tracing_layer`] is a [`tracing_subscriber::Layer`] to add to the
//!   application's subscriber; it attributes each statement event to the request being
//!   polled when the statement finishes. Its own per-layer filter ([`CaptureFilter`])
//!   wants sqlx's statement and acquire events only, decided once per callsite.
//! * [`DbCapture::layer`] is a tower layer that makes the request's capture state current
//!   on the thread while it polls the request (no span: a span per request cost more
//!   than the rest of the capture) and, when the response is ready, counts queries per
//!   [fingerprint](SqlFingerprint) and reports N+1 patterns.
//!
//! Per request it feeds the profiling layer's [`RequestProfile`](crate::profiling::RequestProfile)
//! (`Server-Timing: db;dur=…;desc="N queries"`), the metrics
//! [`DB_QUERIES_TOTAL`](crate::metrics::names::DB_QUERIES_TOTAL),
//! [`DB_QUERY_DURATION_SECONDS`](crate::metrics::names::DB_QUERY_DURATION_SECONDS) and
//! [`DB_N_PLUS_ONE_TOTAL`](crate::metrics::names::DB_N_PLUS_ONE_TOTAL), a slow-query log
//! (target `cachefront_origin::slow_query`) and an N+1 warning (target
//! `cachefront_origin::n_plus_one`). The response carries a [`CapturedQueries`] extension.
//!
//! sqlx emits the statement event only when its level is enabled: keep the connection's
//! `log_statements` at its default (`DEBUG`, never `Off`) and do not filter `sqlx::query`
//! out globally; put level filters on the output layer instead
//! (`fmt::layer().with_filter(EnvFilter::…)`). `docs/database.md` shows the setup.
//!
//! The capture also keeps lifetime statistics for the analyzer ([`DbCapture::snapshot`],
//! served by [`DbCapture::router`] as `GET /debug/queries`): per-fingerprint counts and
//! times, peak concurrency and pool acquire waits ([`stats`]); [`pool_sizing`] turns them
//! into a pool size.
//!
//! With the `analyze` feature, [`analyze`] plans queries with `EXPLAIN (FORMAT JSON)`,
//! reports plan and index-health findings and advises indexes verified with HypoPG (also
//! the `cachefront-origin analyze` command).
//!
//! Files: `capture` holds the shared state and what it does with a statement, `findings`
//! the public results (per-request counts, N+1 patterns), `visitors` the readers of sqlx's
//! event fields, `tracing_layer` the subscriber side, `layer` the tower side,
//! `captured_pool` the executor wrapper.

#[cfg(feature = "analyze")]
pub mod analyze;
mod capture;
#[cfg(feature = "postgres")]
mod captured_pool;
mod findings;
pub mod fingerprint;
mod layer;
pub mod pool_sizing;
pub mod stats;
mod tracing_layer;
mod visitors;

/// The same as [`crate::in_current_request`], which carries the request id and profile
/// too; kept here, where it was first documented.
pub use crate::{in_current_request, InCurrentRequest};
pub use capture::{CaptureSetup, DbCapture, DbCaptureConfig, NPlusOneGuard};
#[cfg(feature = "postgres")]
pub use captured_pool::CapturedPool;
pub use findings::{CapturedQueries, FingerprintCount, NPlusOne, NPlusOneError};
pub use fingerprint::SqlFingerprint;
pub use layer::{DbCaptureFuture, DbCaptureLayer, DbCaptureService};
pub(crate) use tracing_layer::CarriedQueries;
pub use tracing_layer::{CaptureFilter, QueryCaptureFiltered, QueryCaptureLayer};
/// Target of sqlx's statement events.
pub const SQLX_QUERY_TARGET: &str = "sqlx::query";
/// Target of sqlx's pool acquire events (emitted when the pool's `acquire_time_level` is on).
pub const SQLX_ACQUIRE_TARGET: &str = "sqlx::pool::acquire";
/// The output filter [`DbCapture::init_logging`] puts on its `fmt` layer: `RUST_LOG`
/// (default `info`, so N+1 and slow-query warnings show), plus `sqlx::query=warn` unless
/// `RUST_LOG` names sqlx itself (sqlx's per-statement `DEBUG` lines stay out of the log;
/// the capture still sees them: the filter is on the output layer only). Use it on your
/// own `fmt` layer: `fmt::layer().with_filter(cachefront_origin::db::log_filter())`.
pub fn log_filter() -> tracing_subscriber::filter::Targets {
    let from_env = std::env::var("RUST_LOG").unwrap_or_default();
    let mut directives = if from_env.trim().is_empty() {
        "info".to_owned()
    } else {
        from_env
    };
    if !directives.contains("sqlx") {
        directives.push_str(",sqlx::query=warn");
    }
    directives.parse().unwrap_or_else(|e| {
        eprintln!("RUST_LOG={directives:?} is not a list of target=level directives ({e}); logging at info");
        tracing_subscriber::filter::Targets::new()
            .with_default(tracing::Level::INFO)
            .with_target(super::db::SQLX_QUERY_TARGET, tracing::Level::WARN)
    })
}

/// `route` label of queries run outside any captured request.
pub const NO_REQUEST_ROUTE: &str = "none";
