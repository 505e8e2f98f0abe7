//! Readers of the fields of sqlx's events and of the request span (`tracing` visitors).

use std::fmt;
use std::time::Duration;

use tracing::field::{Field, Visit};

/// A finished statement as sqlx reported it.
pub(super) struct SqlxStatement {
    pub(super) sql: String,
    pub(super) elapsed: Duration,
    pub(super) rows_returned: u64,
    pub(super) rows_affected: u64,
}

/// Reads the fields of sqlx 0.8's statement event (`sqlx-core/src/logger.rs`): `summary`
/// (the first four words, or the whole statement when it is that short), `db.statement`
/// (the whole statement wrapped in newlines, or empty when `summary` is all of it),
/// `rows_affected`, `rows_returned`, `elapsed` (Debug) and `elapsed_secs` (f64).
#[derive(Default)]
pub(super) struct SqlxEventFields {
    pub(super) summary: Option<String>,
    pub(super) statement: Option<String>,
    pub(super) rows_affected: u64,
    pub(super) rows_returned: u64,
    pub(super) elapsed_secs: Option<f64>,
}

impl SqlxEventFields {
    pub(super) fn into_statement(self) -> Option<SqlxStatement> {
        let sql = match self.statement {
            Some(s) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => self.summary?.trim().to_owned(),
        };
        if sql.is_empty() {
            return None;
        }
        let elapsed = self
            .elapsed_secs
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or_default();
        Some(SqlxStatement {
            sql,
            elapsed,
            rows_returned: self.rows_returned,
            rows_affected: self.rows_affected,
        })
    }
}

impl Visit for SqlxEventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = Some(value.to_owned()),
            "db.statement" => self.statement = Some(value.to_owned()),
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

/// Reads the `capture_id` field of the request span.
#[derive(Default)]
pub(super) struct CaptureIdField(pub(super) Option<u64>);

impl Visit for CaptureIdField {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "capture_id" {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn fmt::Debug) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_statements_come_from_db_statement_and_short_ones_from_summary() {
        let long = SqlxEventFields {
            summary: Some("SELECT id, name FROM …".to_owned()),
            statement: Some("\n\nSELECT id, name FROM categories WHERE id = $1\n".to_owned()),
            elapsed_secs: Some(0.002),
            ..Default::default()
        }
        .into_statement()
        .expect("statement");
        assert_eq!(long.sql, "SELECT id, name FROM categories WHERE id = $1");
        assert_eq!(long.elapsed, Duration::from_millis(2));

        let short = SqlxEventFields {
            summary: Some("SELECT 1".to_owned()),
            statement: Some(String::new()),
            ..Default::default()
        }
        .into_statement()
        .expect("statement");
        assert_eq!(short.sql, "SELECT 1");
    }

    #[test]
    fn events_without_text_are_ignored() {
        assert!(SqlxEventFields::default().into_statement().is_none());
    }
}
