//! The PostgreSQL side: the trigger function that turns each row change into a
//! `pg_notify`, the triggers on watched tables, and finding a table's key columns.
//! The SQL is built by pure functions ([`install_statements`], [`uninstall_statements`]),
//! so it can also go into a migration; [`install`] runs it.

use sqlx::PgPool;

use super::change::TableName;
use crate::Error;

/// Name of the trigger function (created in [`PurgeOnWriteConfig::function_schema`](super::PurgeOnWriteConfig::function_schema)).
pub const FUNCTION_NAME: &str = "cachefront_notify_change";
/// Name of the row-level trigger on each watched table.
pub const ROW_TRIGGER_NAME: &str = "cachefront_notify_change";
/// Name of the statement-level `TRUNCATE` trigger on each watched table.
pub const TRUNCATE_TRIGGER_NAME: &str = "cachefront_notify_truncate";
/// Largest payload PostgreSQL's `NOTIFY` accepts (it must be shorter than 8000 bytes).
pub const MAX_PAYLOAD_BYTES: usize = 7999;
/// Longest identifier PostgreSQL keeps (channel names are identifiers).
const MAX_IDENTIFIER_BYTES: usize = 63;
/// Serializes concurrent installs (several app instances starting at once).
const INSTALL_LOCK_KEY: i64 = 0x6361_6368_6566_726f; // "cachefro"

/// A table to watch, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedTable {
    schema: Option<String>,
    name: String,
    key_columns: Vec<String>,
}

impl WatchedTable {
    /// Watch `name`, found through the connection's `search_path` unless
    /// [`schema`](Self::schema) is given; keyed by its primary key unless
    /// [`key_columns`](Self::key_columns) are given.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            schema: None,
            name: name.into(),
            key_columns: Vec::new(),
        }
    }

    /// The table's schema.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Key columns to send instead of the primary key (for tables without one, or to key
    /// tags by a natural key such as `slug`). They should be `NOT NULL`.
    pub fn key_columns<I, C>(mut self, columns: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<String>,
    {
        self.key_columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// The name as configured (`schema.table` or `table`), for messages.
    pub fn display_name(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A watched table once looked up in the catalog: its schema and its key columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedTable {
    /// Schema-qualified name.
    pub table: TableName,
    /// Key columns sent in each notification, in order.
    pub key_columns: Vec<String>,
}

/// `"ident"`, with inner quotes doubled.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `'literal'`, with inner quotes doubled.
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn qualified(table: &TableName) -> String {
    format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.name)
    )
}

/// Check a `LISTEN` channel name: a non-empty identifier of at most 63 bytes.
pub fn check_channel(channel: &str) -> Result<(), Error> {
    if channel.is_empty() || channel.len() > MAX_IDENTIFIER_BYTES || channel.contains('\0') {
        return Err(Error::Config(format!(
            "purge-on-write channel {channel:?} must be 1 to {MAX_IDENTIFIER_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The key columns to use for a table: the configured ones (each must exist), else the
/// primary key (which must exist).
pub fn choose_key_columns(
    table: &WatchedTable,
    primary_key: &[String],
    columns: &[String],
) -> Result<Vec<String>, Error> {
    if table.key_columns.is_empty() {
        if primary_key.is_empty() {
            return Err(Error::Config(format!(
                "table {} has no primary key: give its key columns (WatchedTable::key_columns)",
                table.display_name()
            )));
        }
        return Ok(primary_key.to_vec());
    }
    if let Some(missing) = table.key_columns.iter().find(|c| !columns.contains(c)) {
        return Err(Error::Config(format!(
            "table {} has no column {missing:?}",
            table.display_name()
        )));
    }
    Ok(table.key_columns.clone())
}

/// The trigger function: one `pg_notify(channel, payload)` per changed row (no-op UPDATEs
/// skipped) and per TRUNCATE. The payload is JSON — `schema`, `table`, `op`, `key` (the
/// key columns as text, in order) and, when an UPDATE changed the key, `old_key`. A payload
/// that would not fit in a `NOTIFY` is replaced by one without keys, marked `oversized`,
/// so the write never fails and the listener purges table-wide instead.
/// Arguments: the channel, then the key column names.
pub fn function_sql(function_schema: &str) -> String {
    format!(
        r#"CREATE OR REPLACE FUNCTION {schema}.{name}() RETURNS trigger
LANGUAGE plpgsql AS $cachefront$
DECLARE
  key_columns text[] := TG_ARGV[1:TG_NARGS - 1];
  new_row jsonb;
  old_row jsonb;
  new_values text[];
  old_values text[];
  payload text;
BEGIN
  IF TG_LEVEL = 'STATEMENT' THEN
    PERFORM pg_notify(TG_ARGV[0], json_build_object(
      'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME, 'op', TG_OP)::text);
    RETURN NULL;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    new_row := to_jsonb(NEW);
    SELECT array_agg(new_row ->> c ORDER BY i) INTO new_values
      FROM unnest(key_columns) WITH ORDINALITY AS k(c, i);
  END IF;
  IF TG_OP <> 'INSERT' THEN
    old_row := to_jsonb(OLD);
    SELECT array_agg(old_row ->> c ORDER BY i) INTO old_values
      FROM unnest(key_columns) WITH ORDINALITY AS k(c, i);
  END IF;
  -- jsonb equality works for every column type (a row comparison fails on json columns).
  IF TG_OP = 'UPDATE' AND new_row = old_row THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' THEN
    payload := json_build_object('schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
      'op', TG_OP, 'key', json_object(key_columns, old_values))::text;
  ELSIF TG_OP = 'UPDATE' AND new_values IS DISTINCT FROM old_values THEN
    payload := json_build_object('schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
      'op', TG_OP, 'key', json_object(key_columns, new_values),
      'old_key', json_object(key_columns, old_values))::text;
  ELSE
    payload := json_build_object('schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
      'op', TG_OP, 'key', json_object(key_columns, new_values))::text;
  END IF;
  IF octet_length(payload) > {max} THEN
    payload := json_build_object('schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
      'op', TG_OP, 'oversized', true)::text;
  END IF;
  PERFORM pg_notify(TG_ARGV[0], payload);
  RETURN NULL;
END
$cachefront$"#,
        schema = quote_ident(function_schema),
        name = quote_ident(FUNCTION_NAME),
        max = MAX_PAYLOAD_BYTES,
    )
}

/// Every statement that installs the function and the triggers, idempotently (the
/// function is replaced, the triggers dropped and created again).
pub fn install_statements(
    function_schema: &str,
    channel: &str,
    tables: &[ResolvedTable],
) -> Vec<String> {
    let function = format!(
        "{}.{}",
        quote_ident(function_schema),
        quote_ident(FUNCTION_NAME)
    );
    let mut out = vec![function_sql(function_schema)];
    for t in tables {
        let table = qualified(&t.table);
        let mut args = vec![quote_literal(channel)];
        args.extend(t.key_columns.iter().map(|c| quote_literal(c)));
        out.push(format!(
            "DROP TRIGGER IF EXISTS {} ON {table}",
            quote_ident(ROW_TRIGGER_NAME)
        ));
        out.push(format!(
            "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {table} \
             FOR EACH ROW EXECUTE FUNCTION {function}({})",
            quote_ident(ROW_TRIGGER_NAME),
            args.join(", ")
        ));
        out.push(format!(
            "DROP TRIGGER IF EXISTS {} ON {table}",
            quote_ident(TRUNCATE_TRIGGER_NAME)
        ));
        out.push(format!(
            "CREATE TRIGGER {} AFTER TRUNCATE ON {table} \
             FOR EACH STATEMENT EXECUTE FUNCTION {function}({})",
            quote_ident(TRUNCATE_TRIGGER_NAME),
            quote_literal(channel)
        ));
    }
    out
}

/// Statements that remove the triggers from `tables` (the function stays: other tables
/// may still use it).
pub fn uninstall_statements(tables: &[TableName]) -> Vec<String> {
    tables
        .iter()
        .flat_map(|t| {
            [ROW_TRIGGER_NAME, TRUNCATE_TRIGGER_NAME].map(|trigger| {
                format!(
                    "DROP TRIGGER IF EXISTS {} ON {}",
                    quote_ident(trigger),
                    qualified(t)
                )
            })
        })
        .collect()
}

/// Look a table up in the catalog: its schema, primary key and columns.
pub async fn resolve(pool: &PgPool, table: &WatchedTable) -> Result<ResolvedTable, Error> {
    let regclass = match &table.schema {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&table.name)),
        None => quote_ident(&table.name),
    };
    let row: Option<(String, String, Vec<String>, Vec<String>)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text,
                ARRAY(SELECT a.attname::text
                        FROM pg_index i
                        CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                       WHERE i.indrelid = c.oid AND i.indisprimary
                       ORDER BY k.ord),
                ARRAY(SELECT a.attname::text FROM pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                       ORDER BY a.attnum)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')",
    )
    .bind(&regclass)
    .fetch_optional(pool)
    .await?;
    let Some((schema, name, primary_key, columns)) = row else {
        return Err(Error::Config(format!(
            "purge-on-write: table {} not found (or not a table)",
            table.display_name()
        )));
    };
    Ok(ResolvedTable {
        table: TableName { schema, name },
        key_columns: choose_key_columns(table, &primary_key, &columns)?,
    })
}

/// Run [`install_statements`] in one transaction, serialized with other installers.
pub async fn install(
    pool: &PgPool,
    function_schema: &str,
    channel: &str,
    tables: &[ResolvedTable],
) -> Result<(), Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(INSTALL_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    for statement in install_statements(function_schema, channel, tables) {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn identifiers_and_literals_are_quoted() {
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn primary_key_is_the_default_key() {
        let t = WatchedTable::new("products");
        assert_eq!(
            choose_key_columns(&t, &cols(&["id"]), &cols(&["id", "name"])).ok(),
            Some(cols(&["id"]))
        );
    }

    #[test]
    fn a_table_without_primary_key_needs_key_columns() {
        let t = WatchedTable::new("events");
        let err = choose_key_columns(&t, &[], &cols(&["slug"]));
        assert!(
            matches!(&err, Err(Error::Config(m)) if m.contains("no primary key")),
            "{err:?}"
        );
        let t = t.key_columns(["slug"]);
        assert_eq!(
            choose_key_columns(&t, &[], &cols(&["slug"])).ok(),
            Some(cols(&["slug"]))
        );
    }

    #[test]
    fn configured_key_columns_must_exist() {
        let t = WatchedTable::new("products").key_columns(["sku"]);
        let err = choose_key_columns(&t, &cols(&["id"]), &cols(&["id"]));
        assert!(matches!(&err, Err(Error::Config(m)) if m.contains("\"sku\"")));
    }

    #[test]
    fn channel_names_are_bounded_identifiers() {
        assert!(check_channel("cachefront_purge").is_ok());
        assert!(check_channel("").is_err());
        assert!(check_channel(&"c".repeat(64)).is_err());
    }

    #[test]
    fn install_passes_channel_and_key_columns_to_the_row_trigger() {
        let sql = install_statements(
            "app",
            "chan'nel",
            &[ResolvedTable {
                table: TableName {
                    schema: "shop".into(),
                    name: "order lines".into(),
                },
                key_columns: cols(&["order_id", "line"]),
            }],
        );
        assert_eq!(sql.len(), 5);
        assert!(sql[0].contains(r#"FUNCTION "app"."cachefront_notify_change"()"#));
        assert_eq!(
            sql[2],
            "CREATE TRIGGER \"cachefront_notify_change\" AFTER INSERT OR UPDATE OR DELETE ON \
             \"shop\".\"order lines\" FOR EACH ROW EXECUTE FUNCTION \
             \"app\".\"cachefront_notify_change\"('chan''nel', 'order_id', 'line')"
        );
        assert!(sql[4].contains("AFTER TRUNCATE") && sql[4].ends_with("('chan''nel')"));
    }
}
