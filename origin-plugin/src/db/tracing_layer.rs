//! The subscriber side: a `tracing_subscriber` layer that hands sqlx's statement and
//! acquire events to the [`DbCapture`] of the request being polled on this thread.
//!
//! The request is not found through a span: the tower layer moves its per-request state
//! into a thread-local for the duration of each poll (sqlx reports a statement from the
//! future that awaited it, so inside that poll). A span per request cost more than the
//! rest of the capture (creation in the registry, enter and exit on every poll).
//!
//! The layer comes wrapped in a per-layer filter ([`CaptureFilter`]) that wants sqlx's
//! two targets and nothing else, decided once per callsite: every other span and event
//! in the process stays as cheap as the application's own log filter makes it.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context as LayerContext, Filter};
use tracing_subscriber::registry::LookupSpan;

use super::capture::{DbCapture, RequestQueries};
use super::visitors::{AcquireEventFields, SqlxEventFields, SqlxStatement};
use super::{SQLX_ACQUIRE_TARGET, SQLX_QUERY_TARGET};

thread_local! {
    static CURRENT: RefCell<Option<Arc<RequestQueries>>> = const { RefCell::new(None) };
}

/// Runs `f` with `request` as the thread's current one ([`crate::poll_local`]).
pub(super) fn with_request<T>(
    request: &mut Option<Arc<RequestQueries>>,
    f: impl FnOnce() -> T,
) -> T {
    crate::poll_local::with_current(&CURRENT, request, f)
}

/// The `tracing_subscriber` layer made by [`DbCapture::tracing_layer`]: the capture
/// behind its own per-layer filter.
pub type QueryCaptureFiltered<S> = Filtered<QueryCaptureLayer, CaptureFilter, S>;

/// The capture's half of the subscriber (inside [`QueryCaptureFiltered`]).
#[derive(Clone, Debug)]
pub struct QueryCaptureLayer {
    pub(super) capture: DbCapture,
}

/// Per-layer filter of the capture: sqlx's statement (`sqlx::query`) and pool acquire
/// (`sqlx::pool::acquire`) events at any level, nothing else. The answer depends on the
/// callsite only, so it is given once per callsite ([`Interest::always`] /
/// [`Interest::never`]) and callsites no other layer wants are never dispatched.
///
/// With the `postgres` feature, the statement callsites are the exception
/// ([`Interest::sometimes`]): while a [`CapturedPool`](super::CapturedPool) statement is
/// polled, the capture layer's own `enabled` disables sqlx's statement event (see
/// [`QueryCaptureLayer`]), so it has to be asked per statement.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureFilter;

impl CaptureFilter {
    fn wants(metadata: &Metadata<'_>) -> bool {
        // Events and `enabled!` hints (sqlx asks before it builds the statement event),
        // never spans.
        let target = metadata.target();
        !metadata.is_span() && (target == SQLX_QUERY_TARGET || target == SQLX_ACQUIRE_TARGET)
    }
}

/// A statement event raised while a wrapped statement runs: the wrapper records it.
fn wrapped_statement(metadata: &Metadata<'_>) -> bool {
    #[cfg(feature = "postgres")]
    {
        metadata.target() == SQLX_QUERY_TARGET && super::captured_pool::in_wrapped_statement()
    }
    #[cfg(not(feature = "postgres"))]
    {
        let _ = metadata;
        false
    }
}

impl<S> Filter<S> for CaptureFilter {
    fn enabled(&self, metadata: &Metadata<'_>, _: &LayerContext<'_, S>) -> bool {
        Self::wants(metadata)
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if !Self::wants(metadata) {
            Interest::never()
        } else if cfg!(feature = "postgres") && metadata.target() == SQLX_QUERY_TARGET {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for QueryCaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    /// Disables sqlx's statement event for every layer while a
    /// [`CapturedPool`](super::CapturedPool) statement is polled: the wrapper records the
    /// statement itself, and sqlx, which asks before it builds the event, skips building
    /// it. (A per-layer filter cannot do this: a `false` from it only hides the event from
    /// its own layer, and the event is still built for the others.) Asked only for the
    /// callsites the capture's filter lets through.
    fn enabled(&self, metadata: &Metadata<'_>, _ctx: LayerContext<'_, S>) -> bool {
        !wrapped_statement(metadata)
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        let target = event.metadata().target();
        if target == SQLX_ACQUIRE_TARGET {
            let mut wait = AcquireEventFields::default();
            event.record(&mut wait);
            if let Some(wait) = wait.0.and_then(|s| Duration::try_from_secs_f64(s).ok()) {
                self.capture.inner.stats.acquire(wait);
            }
            return;
        }
        if target != SQLX_QUERY_TARGET || wrapped_statement(event.metadata()) {
            return;
        }
        let mut fields = SqlxEventFields::new(|sql: &str| self.capture.resolve(sql));
        event.record(&mut fields);
        let Some(statement) = fields.into_statement() else {
            return;
        };
        record_for_current_request(&self.capture, statement);
    }
}

/// Hands `statement` to `capture` with the request being polled on this thread.
pub(super) fn record_for_current_request(capture: &DbCapture, statement: SqlxStatement) {
    CURRENT.with(|current| {
        let current = current.borrow();
        // Another capture's request (two captures in one process) is not ours.
        let request = current.as_deref().filter(|r| r.owned_by(capture));
        capture.record_statement(request, statement);
    });
}

/// The current request's query state, taken along by [`crate::in_current_request`] into
/// work a handler spawns: its statements count as that request's.
pub(crate) struct CarriedQueries(Option<Arc<RequestQueries>>);

impl CarriedQueries {
    /// The request being polled on this thread now, if any.
    pub(crate) fn current() -> Self {
        Self(CURRENT.with(|c| c.borrow().clone()))
    }

    /// Runs `f` with the carried request current (outside a request: just runs `f`).
    pub(crate) fn enter<T>(&mut self, f: impl FnOnce() -> T) -> T {
        if self.0.is_some() {
            with_request(&mut self.0, f)
        } else {
            f()
        }
    }
}
