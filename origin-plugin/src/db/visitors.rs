//! Readers of the fields of sqlx's events (`tracing` visitors).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tracing::field::{Field, Visit};

use super::SqlFingerprint;

/// A finished statement as sqlx reported it, its text and fingerprint shared with the
/// capture's cache (no copy per statement).
pub(super) struct SqlxStatement {
    pub(super) sql: Arc<str>,
    pub(super) fingerprint: Arc<SqlFingerprint>,
    pub(super) elapsed: Duration,
    pub(super) rows_returned: u64,
    pub(super) rows_affected: u64,
}

/// Reads the fields of sqlx 0.8's statement event (`sqlx-core/src/logger.rs`): `summary`
/// (the first four words followed by ` …`, or the whole statement when it is that short),
/// `db.statement` (the whole statement wrapped in newlines, or empty when `summary` is all
/// of it), `rows_affected`, `rows_returned`, `elapsed` (Debug) and `elapsed_secs` (f64).
///
/// The text is handed to `resolve` while the event lends it, so nothing is copied for a
/// statement the capture has seen before; a truncated summary is skipped (the whole
/// statement follows in `db.statement`).
pub(super) struct SqlxEventFields<T, F> {
    resolve: F,
    text: Option<T>,
    rows_affected: u64,
    rows_returned: u64,
    elapsed_secs: Option<f64>,
}

/// What sqlx appends to a summary that is not the whole statement.
const TRUNCATED: char = '…';

impl<T, F: FnMut(&str) -> T> SqlxEventFields<T, F> {
    pub(super) fn new(resolve: F) -> Self {
        Self {
            resolve,
            text: None,
            rows_affected: 0,
            rows_returned: 0,
            elapsed_secs: None,
        }
    }

    /// The text as `resolve` made it, the elapsed time and the row counts.
    pub(super) fn finish(self) -> Option<(T, Duration, u64, u64)> {
        let text = self.text?;
        let elapsed = self
            .elapsed_secs
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or_default();
        Some((text, elapsed, self.rows_returned, self.rows_affected))
    }
}

impl<F: FnMut(&str) -> (Arc<str>, Arc<SqlFingerprint>)>
    SqlxEventFields<(Arc<str>, Arc<SqlFingerprint>), F>
{
    pub(super) fn into_statement(self) -> Option<SqlxStatement> {
        let ((sql, fingerprint), elapsed, rows_returned, rows_affected) = self.finish()?;
        Some(SqlxStatement {
            sql,
            fingerprint,
            elapsed,
            rows_returned,
            rows_affected,
        })
    }
}

impl<T, F: FnMut(&str) -> T> Visit for SqlxEventFields<T, F> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let value = value.trim();
        if value.is_empty() {
            return;
        }
        match field.name() {
            "summary" if self.text.is_none() && !value.ends_with(TRUNCATED) => {
                self.text = Some((self.resolve)(value));
            }
            "db.statement" => self.text = Some((self.resolve)(value)),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "rows_affected" => self.rows_affected = value,
            "rows_returned" => self.rows_returned = value,
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, u64::try_from(value).unwrap_or(0));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.elapsed_secs = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn fmt::Debug) {}
}

/// Reads the wait of sqlx 0.8's acquire event (`sqlx-core/src/pool/inner.rs`): the field is
/// spelled `aquired_after_secs` there; the corrected spelling is accepted too.
#[derive(Default)]
pub(super) struct AcquireEventFields(pub(super) Option<f64>);

impl Visit for AcquireEventFields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        if matches!(field.name(), "aquired_after_secs" | "acquired_after_secs") {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn fmt::Debug) {}
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Runs the visitor over a real event with these two fields.
    fn visit(summary: &str, statement: &str) -> Option<String> {
        #[derive(Default, Clone)]
        struct Probe(Arc<Mutex<Option<String>>>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Probe {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                let mut fields = SqlxEventFields::new(|s: &str| s.to_owned());
                event.record(&mut fields);
                *self.0.lock().unwrap_or_else(|e| e.into_inner()) = fields.finish().map(|f| f.0);
            }
        }
        let probe = Probe::default();
        let subscriber = tracing_subscriber::registry().with(probe.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(summary, db.statement = statement, rows_returned = 1u64);
        });
        let seen = probe.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        seen
    }

    #[test]
    fn long_statements_come_from_db_statement_and_short_ones_from_summary() {
        let long = visit(
            "SELECT id, name FROM …",
            "\n\nSELECT id, name FROM categories WHERE id = $1\n",
        );
        assert_eq!(
            long.as_deref(),
            Some("SELECT id, name FROM categories WHERE id = $1")
        );
        let short = visit("SELECT 1", "");
        assert_eq!(short.as_deref(), Some("SELECT 1"));
    }

    #[test]
    fn events_without_text_are_ignored() {
        assert_eq!(visit("", ""), None);
        assert_eq!(visit("SELECT a, b FROM …", " "), None);
    }
}
