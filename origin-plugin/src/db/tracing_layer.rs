//! The subscriber side: a `tracing_subscriber` layer that hands sqlx's statement and
//! acquire events to the [`DbCapture`] of the request whose span is current.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tracing::Subscriber;
use tracing_subscriber::layer::Context as LayerContext;
use tracing_subscriber::registry::LookupSpan;

use super::capture::{DbCapture, RequestQueries};
use super::visitors::{AcquireEventFields, CaptureIdField, SqlxEventFields};
use super::{REQUEST_SPAN_NAME, SQLX_ACQUIRE_TARGET, SQLX_QUERY_TARGET};

/// `tracing_subscriber` layer made by [`DbCapture::tracing_layer`].
#[derive(Clone, Debug)]
pub struct QueryCaptureLayer {
    pub(super) capture: DbCapture,
}

impl<S> tracing_subscriber::Layer<S> for QueryCaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: LayerContext<'_, S>,
    ) {
        if attrs.metadata().name() != REQUEST_SPAN_NAME {
            return;
        }
        let mut capture_id = CaptureIdField::default();
        attrs.record(&mut capture_id);
        let Some(capture_id) = capture_id.0 else {
            return;
        };
        let request = self
            .capture
            .inner
            .opening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&capture_id)
            .cloned();
        if let (Some(request), Some(span)) = (request, ctx.span(id)) {
            span.extensions_mut().insert(request);
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: LayerContext<'_, S>) {
        let target = event.metadata().target();
        if target == SQLX_ACQUIRE_TARGET {
            let mut wait = AcquireEventFields::default();
            event.record(&mut wait);
            if let Some(wait) = wait.0.and_then(|s| Duration::try_from_secs_f64(s).ok()) {
                self.capture.inner.stats.acquire(wait);
            }
            return;
        }
        if target != SQLX_QUERY_TARGET {
            return;
        }
        let mut fields = SqlxEventFields::default();
        event.record(&mut fields);
        let Some(statement) = fields.into_statement() else {
            return;
        };
        let request = ctx.event_scope(event).and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<Arc<RequestQueries>>().cloned())
        });
        self.capture.record_statement(request.as_deref(), statement);
    }
}
