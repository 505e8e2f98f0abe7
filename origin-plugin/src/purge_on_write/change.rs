//! What one notification says ([`Change`]), how its payload is parsed
//! ([`parse_payload`]), and how a change becomes cache tags ([`ChangeTags`]).
//! Pure: no I/O, no clock.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The statement that changed a watched table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `INSERT` (one notification per row).
    Insert,
    /// `UPDATE` (one per row whose content changed; no-op updates send nothing).
    Update,
    /// `DELETE` (one per row).
    Delete,
    /// `TRUNCATE` (one per statement, no key).
    Truncate,
}

impl Operation {
    /// The SQL keyword, as PostgreSQL's `TG_OP` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "INSERT",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Truncate => "TRUNCATE",
        }
    }

    fn parse(op: &str) -> Option<Self> {
        match op {
            "INSERT" => Some(Operation::Insert),
            "UPDATE" => Some(Operation::Update),
            "DELETE" => Some(Operation::Delete),
            "TRUNCATE" => Some(Operation::Truncate),
            _ => None,
        }
    }
}

/// A table, schema-qualified.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// Schema (`public`, …).
    pub schema: String,
    /// Table name, without the schema.
    pub name: String,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// The key of one row: its key columns, in the order they were declared, with their
/// values as PostgreSQL prints them as text (`42`, `abc`, `2024-05-01`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey(Vec<(String, String)>);

impl RowKey {
    /// A key from (column, value) pairs.
    pub fn new<C, V>(pairs: impl IntoIterator<Item = (C, V)>) -> Self
    where
        C: Into<String>,
        V: Into<String>,
    {
        Self(
            pairs
                .into_iter()
                .map(|(c, v)| (c.into(), v.into()))
                .collect(),
        )
    }

    /// The value of one key column.
    pub fn get(&self, column: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, v)| v.as_str())
    }

    /// The (column, value) pairs, in key order.
    pub fn columns(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(c, v)| (c.as_str(), v.as_str()))
    }

    /// The values joined by `:` (`42`, or `7:3` for a two-column key).
    pub fn joined(&self) -> String {
        let values: Vec<&str> = self.0.iter().map(|(_, v)| v.as_str()).collect();
        values.join(":")
    }
}

impl fmt::Display for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.joined())
    }
}

/// One change notification from a watched table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The table that changed.
    pub table: TableName,
    /// What changed it.
    pub op: Operation,
    /// The row's key: the new key for INSERT and UPDATE, the old one for DELETE. `None`
    /// for a table-wide change (TRUNCATE, or a payload that did not fit [`Change::oversized`]).
    pub key: Option<RowKey>,
    /// On an UPDATE that changed the key: the key the row had before.
    pub old_key: Option<RowKey>,
    /// The trigger found the notification larger than PostgreSQL's 8000-byte `NOTIFY`
    /// limit and sent it without the key: the change is treated as table-wide.
    pub oversized: bool,
}

impl Change {
    /// Whether the change names no row, so only table-wide tags can cover it.
    pub fn is_table_wide(&self) -> bool {
        self.key.is_none()
    }

    /// Every key the change touches: the new key, then the old one when it differs.
    pub fn keys(&self) -> impl Iterator<Item = &RowKey> {
        self.key.iter().chain(self.old_key.iter())
    }
}

/// Why a notification payload was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not the JSON object the trigger sends.
    #[error("payload is not a change notification: {0}")]
    Malformed(String),
    /// An `op` this version does not know.
    #[error("unknown operation {0:?}")]
    UnknownOperation(String),
    /// A row change (INSERT, UPDATE, DELETE) without a key, and not marked oversized.
    #[error("{0} notification without a key")]
    MissingKey(&'static str),
}

/// The JSON the trigger function sends:
/// `{"schema":"public","table":"products","op":"UPDATE","key":{"id":"1"},"old_key":{"id":"2"}}`
/// (`old_key` only when the key changed; `{"…","op":"…","oversized":true}` with no key
/// when the payload would not fit in a `NOTIFY`).
#[derive(Deserialize)]
struct Payload {
    schema: String,
    table: String,
    op: String,
    #[serde(default)]
    key: Option<OrderedKey>,
    #[serde(default)]
    old_key: Option<OrderedKey>,
    #[serde(default)]
    oversized: bool,
}

/// A JSON object read in document order (serde_json's map would sort the columns).
struct OrderedKey(Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = OrderedKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of key columns to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedKey, A::Error> {
                let mut pairs = Vec::new();
                while let Some((column, value)) = map.next_entry::<String, serde_json::Value>()? {
                    let text = match value {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    pairs.push((column, text));
                }
                Ok(OrderedKey(pairs))
            }
        }
        d.deserialize_map(KeyVisitor)
    }
}

/// Parse one notification payload sent by the trigger function.
pub fn parse_payload(payload: &str) -> Result<Change, PayloadError> {
    let p: Payload = serde_json::from_str(payload).map_err(|e| {
        PayloadError::Malformed(format!(
            "{e} in {:?}",
            payload.chars().take(120).collect::<String>()
        ))
    })?;
    let op = Operation::parse(&p.op).ok_or_else(|| PayloadError::UnknownOperation(p.op.clone()))?;
    let key = p.key.map(|k| RowKey(k.0)).filter(|k| !k.0.is_empty());
    if key.is_none() && !p.oversized && op != Operation::Truncate {
        return Err(PayloadError::MissingKey(op.as_str()));
    }
    let old_key = p
        .old_key
        .map(|k| RowKey(k.0))
        .filter(|k| !k.0.is_empty() && Some(k) != key.as_ref());
    Ok(Change {
        table: TableName {
            schema: p.schema,
            name: p.table,
        },
        op,
        key,
        old_key,
        oversized: p.oversized,
    })
}

/// How changes become cache tags. Implement it for a mapping of your own, or pass a
/// closure `Fn(&Change) -> Vec<String>` (which keeps the default table-wide tags).
pub trait ChangeTags: Send + Sync + 'static {
    /// Tags to purge when one row changed ([`Change::key`] is set; on an UPDATE that
    /// changed the key, [`Change::old_key`] is set too).
    fn row_tags(&self, change: &Change) -> Vec<String>;

    /// Tags covering every cached response that depends on any row of `table`. Purged for
    /// table-wide changes (TRUNCATE, oversized notifications) and by the catch-up purge
    /// after the listener reconnects. Default: the table's name.
    fn table_tags(&self, table: &TableName) -> Vec<String> {
        vec![table.name.clone()]
    }
}

/// The default mapping: a row change purges `{table}:{key}` (for the new and the old key)
/// and `{table}`; a table-wide change purges `{table}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultTags;

impl ChangeTags for DefaultTags {
    fn row_tags(&self, change: &Change) -> Vec<String> {
        let name = &change.table.name;
        change
            .keys()
            .map(|k| format!("{name}:{k}"))
            .chain(std::iter::once(name.clone()))
            .collect()
    }
}

impl<F> ChangeTags for F
where
    F: Fn(&Change) -> Vec<String> + Send + Sync + 'static,
{
    fn row_tags(&self, change: &Change) -> Vec<String> {
        self(change)
    }
}

/// The tags one change purges: [`ChangeTags::table_tags`] when it is table-wide,
/// [`ChangeTags::row_tags`] otherwise.
pub fn tags_for(mapping: &dyn ChangeTags, change: &Change) -> Vec<String> {
    if change.is_table_wide() {
        mapping.table_tags(&change.table)
    } else {
        mapping.row_tags(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products() -> TableName {
        TableName {
            schema: "public".into(),
            name: "products".into(),
        }
    }

    #[test]
    fn update_payload_keeps_new_and_changed_old_key() {
        let c = parse_payload(
            r#"{"schema":"public","table":"products","op":"UPDATE","key":{"id":"2"},"old_key":{"id":"1"}}"#,
        );
        assert_eq!(
            c,
            Ok(Change {
                table: products(),
                op: Operation::Update,
                key: Some(RowKey::new([("id", "2")])),
                old_key: Some(RowKey::new([("id", "1")])),
                oversized: false,
            })
        );
    }

    #[test]
    fn old_key_equal_to_new_key_is_dropped() {
        let c = parse_payload(
            r#"{"schema":"s","table":"t","op":"UPDATE","key":{"id":"1"},"old_key":{"id":"1"}}"#,
        );
        assert_eq!(c.map(|c| c.old_key), Ok(None));
    }

    #[test]
    fn composite_keys_keep_their_column_order() {
        let c = parse_payload(
            r#"{"schema":"s","table":"order_lines","op":"DELETE","key":{"order_id":"7","line":3}}"#,
        )
        .map(|c| c.key.map(|k| k.joined()));
        assert_eq!(c, Ok(Some("7:3".to_owned())));
    }

    #[test]
    fn oversized_and_truncate_payloads_are_table_wide() {
        for payload in [
            r#"{"schema":"s","table":"t","op":"UPDATE","oversized":true}"#,
            r#"{"schema":"s","table":"t","op":"TRUNCATE"}"#,
        ] {
            let c = parse_payload(payload);
            assert_eq!(c.map(|c| c.is_table_wide()), Ok(true), "{payload}");
        }
    }

    #[test]
    fn bad_payloads_are_refused_with_a_reason() {
        assert!(matches!(
            parse_payload("not json"),
            Err(PayloadError::Malformed(_))
        ));
        assert_eq!(
            parse_payload(r#"{"schema":"s","table":"t","op":"MERGE","key":{"id":"1"}}"#),
            Err(PayloadError::UnknownOperation("MERGE".into()))
        );
        assert_eq!(
            parse_payload(r#"{"schema":"s","table":"t","op":"INSERT"}"#),
            Err(PayloadError::MissingKey("INSERT"))
        );
    }

    #[test]
    fn default_tags_name_the_row_and_the_table() {
        let c = Change {
            table: products(),
            op: Operation::Update,
            key: Some(RowKey::new([("id", "2")])),
            old_key: Some(RowKey::new([("id", "1")])),
            oversized: false,
        };
        assert_eq!(
            tags_for(&DefaultTags, &c),
            ["products:2", "products:1", "products"]
        );
        let wide = Change {
            key: None,
            old_key: None,
            op: Operation::Truncate,
            ..c
        };
        assert_eq!(tags_for(&DefaultTags, &wide), ["products"]);
    }

    #[test]
    fn a_closure_maps_rows_and_keeps_the_default_table_tags() {
        let mapping = |c: &Change| {
            c.keys()
                .filter_map(|k| k.get("id"))
                .map(|id| format!("product:{id}"))
                .collect()
        };
        let c = Change {
            table: products(),
            op: Operation::Insert,
            key: Some(RowKey::new([("id", "5")])),
            old_key: None,
            oversized: false,
        };
        assert_eq!(tags_for(&mapping, &c), ["product:5"]);
        assert_eq!(mapping.table_tags(&products()), ["products"]);
    }
}
