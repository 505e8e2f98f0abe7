//! Index health from the catalog, no query needed: tables mostly read by sequential scans
//! (missing-index candidates), duplicate and redundant indexes, unused indexes, invalid
//! indexes.
//!
//! [`read_catalog`] is the only function that talks to PostgreSQL; [`index_health`] decides
//! from what it read. The usage counters (`pg_stat_user_tables`, `pg_stat_user_indexes`)
//! count since the last statistics reset, on this server only: an index used only on a
//! replica looks unused here.

use serde::Serialize;
use sqlx::{PgConnection, Row};

use super::quote_ident;

/// Thresholds of the index health report.
#[derive(Debug, Clone, Serialize)]
pub struct IndexHealthOptions {
    /// Only these schemas (empty: every schema but the system ones).
    pub schemas: Vec<String>,
    /// A table needs at least this many live rows to be a missing-index candidate.
    /// Default: 10 000.
    pub large_table_rows: f64,
    /// … and at least this many sequential scans. Default: 10.
    pub min_seq_scans: i64,
    /// … and at least this share of its scans sequential. Default: 0.5.
    pub seq_scan_share: f64,
    /// A non-unique index scanned fewer times than this is unused. Default: 50.
    pub unused_max_scans: i64,
}

impl Default for IndexHealthOptions {
    fn default() -> Self {
        Self {
            schemas: Vec::new(),
            large_table_rows: 10_000.0,
            min_seq_scans: 10,
            seq_scan_share: 0.5,
            unused_max_scans: 50,
        }
    }
}

/// Usage of one table (`pg_stat_user_tables`).
#[derive(Debug, Clone, PartialEq)]
pub struct TableUsage {
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// Sequential scans started.
    pub seq_scan: i64,
    /// Rows read by them.
    pub seq_tup_read: i64,
    /// Index scans started.
    pub idx_scan: i64,
    /// Live rows (estimate).
    pub live_rows: i64,
    /// Size of the table's main fork, bytes.
    pub size_bytes: i64,
}

/// One index as the catalog describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// Index name.
    pub index: String,
    /// Access method (`btree`, `hash`, `gin`…).
    pub method: String,
    /// Key columns or expressions, in order.
    pub key_columns: Vec<String>,
    /// Per key column: expression, operator class, collation and ordering options; two
    /// indexes with equal signatures order and compare the same way.
    pub key_signature: Vec<String>,
    /// `INCLUDE` columns.
    pub include_columns: Vec<String>,
    /// Partial index predicate (empty when none).
    pub predicate: String,
    /// `UNIQUE` (including primary keys).
    pub unique: bool,
    /// Backs a constraint (primary key, unique, exclusion).
    pub backs_constraint: bool,
    /// `indisvalid`.
    pub valid: bool,
    /// Index scans since the statistics reset.
    pub idx_scan: i64,
    /// `pg_relation_size`, bytes.
    pub size_bytes: i64,
    /// `pg_get_indexdef`.
    pub definition: String,
}

impl IndexEntry {
    fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.index)
    }

    fn drop_statement(&self) -> String {
        format!(
            "DROP INDEX CONCURRENTLY {}.{};",
            quote_ident(&self.schema),
            quote_ident(&self.index)
        )
    }

    /// Unique or constraint-backed: it does more than speed up reads.
    fn enforces_something(&self) -> bool {
        self.unique || self.backs_constraint
    }
}

/// The catalog as [`read_catalog`] read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// Table usage.
    pub tables: Vec<TableUsage>,
    /// Every index of those schemas.
    pub indexes: Vec<IndexEntry>,
    /// `pg_stat_database.stats_reset` (text), `None` when never reset.
    pub stats_reset: Option<String>,
}

/// The index health section of the report.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct IndexHealth {
    /// Since when the usage counters count (`None`: since the cluster was created).
    pub stats_reset: Option<String>,
    /// Large tables read mostly by sequential scans.
    pub missing_index_candidates: Vec<MissingIndexCandidate>,
    /// Indexes another index makes unnecessary.
    pub duplicate_indexes: Vec<DuplicateIndex>,
    /// Non-unique indexes (hardly) ever scanned.
    pub unused_indexes: Vec<UnusedIndex>,
    /// Indexes left invalid by a failed concurrent build.
    pub invalid_indexes: Vec<InvalidIndex>,
}

/// A large table read mostly by sequential scans.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MissingIndexCandidate {
    /// `schema.table`.
    pub table: String,
    /// Live rows.
    pub live_rows: i64,
    /// Sequential scans.
    pub seq_scan: i64,
    /// Index scans.
    pub idx_scan: i64,
    /// `seq_scan / (seq_scan + idx_scan)`.
    pub seq_scan_share: f64,
    /// Rows read per sequential scan, on average.
    pub rows_per_seq_scan: f64,
    /// One line for humans.
    pub message: String,
}

/// An index made unnecessary by another one.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DuplicateIndex {
    /// `exact` (same keys) or `prefix` (its keys start the other index's keys).
    pub kind: &'static str,
    /// `schema.table`.
    pub table: String,
    /// `schema.index` to drop.
    pub index: String,
    /// Its definition.
    pub definition: String,
    /// `schema.index` that covers it.
    pub covered_by: String,
    /// That index's definition.
    pub covered_by_definition: String,
    /// Size of the index to drop, bytes.
    pub size_bytes: i64,
    /// The statement that drops it.
    pub drop_statement: String,
}

/// A non-unique index (hardly) ever used.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UnusedIndex {
    /// `schema.table`.
    pub table: String,
    /// `schema.index`.
    pub index: String,
    /// Its definition.
    pub definition: String,
    /// Index scans since the statistics reset.
    pub idx_scan: i64,
    /// Size, bytes.
    pub size_bytes: i64,
    /// The statement that drops it.
    pub drop_statement: String,
}

/// An index PostgreSQL does not use (`indisvalid = false`) but still maintains.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InvalidIndex {
    /// `schema.table`.
    pub table: String,
    /// `schema.index`.
    pub index: String,
    /// Its definition.
    pub definition: String,
    /// Size, bytes.
    pub size_bytes: i64,
    /// The statement that drops it (then build it again, or `REINDEX INDEX CONCURRENTLY`).
    pub drop_statement: String,
}

/// Read table usage and index definitions of `options.schemas` (all user schemas when empty).
pub async fn read_catalog(
    conn: &mut PgConnection,
    options: &IndexHealthOptions,
) -> Result<Catalog, sqlx::Error> {
    let tables = sqlx::query(
        "SELECT schemaname::text, relname::text, COALESCE(seq_scan, 0), \
                COALESCE(seq_tup_read, 0), COALESCE(idx_scan, 0), COALESCE(n_live_tup, 0), \
                pg_relation_size(relid) \
         FROM pg_stat_user_tables \
         WHERE cardinality($1::text[]) = 0 OR schemaname = ANY($1) \
         ORDER BY 1, 2",
    )
    .bind(&options.schemas)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| {
        Ok(TableUsage {
            schema: r.try_get(0)?,
            table: r.try_get(1)?,
            seq_scan: r.try_get(2)?,
            seq_tup_read: r.try_get(3)?,
            idx_scan: r.try_get(4)?,
            live_rows: r.try_get(5)?,
            size_bytes: r.try_get(6)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;

    let indexes = sqlx::query(
        "SELECT n.nspname::text, t.relname::text, ic.relname::text, am.amname::text, \
           ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) \
                 FROM generate_series(1, i.indnkeyatts::int) k ORDER BY k), \
           ARRAY(SELECT format('%s|%s|%s|%s', pg_get_indexdef(i.indexrelid, k, true), \
                               i.indclass[k - 1], i.indcollation[k - 1], i.indoption[k - 1]) \
                 FROM generate_series(1, i.indnkeyatts::int) k ORDER BY k), \
           ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) \
                 FROM generate_series(i.indnkeyatts::int + 1, i.indnatts::int) k ORDER BY k), \
           COALESCE(pg_get_expr(i.indpred, i.indrelid, true), ''), \
           i.indisunique, \
           EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid), \
           i.indisvalid, \
           COALESCE(s.idx_scan, 0), \
           pg_relation_size(i.indexrelid), \
           pg_get_indexdef(i.indexrelid) \
         FROM pg_index i \
         JOIN pg_class ic ON ic.oid = i.indexrelid \
         JOIN pg_class t ON t.oid = i.indrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         JOIN pg_am am ON am.oid = ic.relam \
         LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.indexrelid \
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg\\_toast%' \
           AND (cardinality($1::text[]) = 0 OR n.nspname = ANY($1)) \
         ORDER BY 1, 2, 3",
    )
    .bind(&options.schemas)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .map(|r| {
        Ok(IndexEntry {
            schema: r.try_get(0)?,
            table: r.try_get(1)?,
            index: r.try_get(2)?,
            method: r.try_get(3)?,
            key_columns: r.try_get(4)?,
            key_signature: r.try_get(5)?,
            include_columns: r.try_get(6)?,
            predicate: r.try_get(7)?,
            unique: r.try_get(8)?,
            backs_constraint: r.try_get(9)?,
            valid: r.try_get(10)?,
            idx_scan: r.try_get(11)?,
            size_bytes: r.try_get(12)?,
            definition: r.try_get(13)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;

    let stats_reset = sqlx::query(
        "SELECT stats_reset::text FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_optional(&mut *conn)
    .await?
    .and_then(|r| r.try_get::<Option<String>, _>(0).ok().flatten());

    Ok(Catalog {
        tables,
        indexes,
        stats_reset,
    })
}

/// The report for `catalog`.
pub fn index_health(catalog: &Catalog, options: &IndexHealthOptions) -> IndexHealth {
    IndexHealth {
        stats_reset: catalog.stats_reset.clone(),
        missing_index_candidates: missing_index_candidates(&catalog.tables, options),
        duplicate_indexes: duplicate_indexes(&catalog.indexes),
        unused_indexes: unused_indexes(&catalog.indexes, options.unused_max_scans),
        invalid_indexes: invalid_indexes(&catalog.indexes),
    }
}

/// Large tables read mostly by sequential scans, most rows read first.
pub fn missing_index_candidates(
    tables: &[TableUsage],
    options: &IndexHealthOptions,
) -> Vec<MissingIndexCandidate> {
    let mut out: Vec<MissingIndexCandidate> = tables
        .iter()
        .filter_map(|t| {
            let scans = t.seq_scan.saturating_add(t.idx_scan);
            if (t.live_rows as f64) < options.large_table_rows
                || t.seq_scan < options.min_seq_scans
                || scans == 0
            {
                return None;
            }
            let share = t.seq_scan as f64 / scans as f64;
            if share < options.seq_scan_share {
                return None;
            }
            let rows_per_seq_scan = t.seq_tup_read as f64 / t.seq_scan as f64;
            let table = format!("{}.{}", t.schema, t.table);
            Some(MissingIndexCandidate {
                message: format!(
                    "{table} ({} live rows): {} sequential scans ({:.0}% of its scans) reading \
                     ~{rows_per_seq_scan:.0} rows each; analyze the queries filtering it \
                     (pg_stat_statements, --query) for index advice",
                    t.live_rows,
                    t.seq_scan,
                    share * 100.0
                ),
                table,
                live_rows: t.live_rows,
                seq_scan: t.seq_scan,
                idx_scan: t.idx_scan,
                seq_scan_share: share,
                rows_per_seq_scan,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        let rows = |c: &MissingIndexCandidate| c.rows_per_seq_scan * c.seq_scan as f64;
        rows(b).total_cmp(&rows(a))
    });
    out
}

/// Which of two equal indexes to keep: the one that enforces something, then the more
/// used one, then the first by name.
fn keep_first(a: &IndexEntry, b: &IndexEntry) -> bool {
    (
        a.enforces_something(),
        a.idx_scan,
        std::cmp::Reverse(&a.index),
    ) >= (
        b.enforces_something(),
        b.idx_scan,
        std::cmp::Reverse(&b.index),
    )
}

/// Exact duplicates (same table, method, key signature, `INCLUDE` columns and predicate)
/// and, for btree, prefix-redundant indexes (keys a prefix of another's). Unique and
/// constraint-backed indexes are only ever the one kept, never the one dropped, unless
/// both enforce the same thing.
pub fn duplicate_indexes(indexes: &[IndexEntry]) -> Vec<DuplicateIndex> {
    let mut out: Vec<DuplicateIndex> = Vec::new();
    let valid: Vec<&IndexEntry> = indexes.iter().filter(|i| i.valid).collect();
    for (n, a) in valid.iter().enumerate() {
        for (m, b) in valid.iter().enumerate() {
            if n == m
                || a.schema != b.schema
                || a.table != b.table
                || a.method != b.method
                || a.predicate != b.predicate
            {
                continue;
            }
            let same_keys = a.key_signature == b.key_signature;
            let kind = if same_keys && a.include_columns == b.include_columns {
                // Report each pair once: `a` is the one to drop.
                if keep_first(a, b) {
                    continue;
                }
                "exact"
            } else if a.method == "btree"
                && !a.enforces_something()
                && a.key_signature.len() <= b.key_signature.len()
                && b.key_signature.starts_with(&a.key_signature)
                && a.include_columns
                    .iter()
                    .all(|c| b.key_columns.contains(c) || b.include_columns.contains(c))
            {
                "prefix"
            } else {
                continue;
            };
            if out.iter().any(|d| d.index == a.qualified()) {
                continue; // already dropped in favour of another
            }
            out.push(DuplicateIndex {
                kind,
                table: format!("{}.{}", a.schema, a.table),
                index: a.qualified(),
                definition: a.definition.clone(),
                covered_by: b.qualified(),
                covered_by_definition: b.definition.clone(),
                size_bytes: a.size_bytes,
                drop_statement: a.drop_statement(),
            });
        }
    }
    out
}

/// Valid, non-unique, non-constraint indexes scanned fewer than `max_scans` times,
/// largest first.
pub fn unused_indexes(indexes: &[IndexEntry], max_scans: i64) -> Vec<UnusedIndex> {
    let mut out: Vec<UnusedIndex> = indexes
        .iter()
        .filter(|i| i.valid && !i.enforces_something() && i.idx_scan < max_scans)
        .map(|i| UnusedIndex {
            table: format!("{}.{}", i.schema, i.table),
            index: i.qualified(),
            definition: i.definition.clone(),
            idx_scan: i.idx_scan,
            size_bytes: i.size_bytes,
            drop_statement: i.drop_statement(),
        })
        .collect();
    out.sort_by_key(|u| std::cmp::Reverse(u.size_bytes));
    out
}

/// Indexes with `indisvalid = false`.
pub fn invalid_indexes(indexes: &[IndexEntry]) -> Vec<InvalidIndex> {
    indexes
        .iter()
        .filter(|i| !i.valid)
        .map(|i| InvalidIndex {
            table: format!("{}.{}", i.schema, i.table),
            index: i.qualified(),
            definition: i.definition.clone(),
            size_bytes: i.size_bytes,
            drop_statement: i.drop_statement(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: &str, keys: &[&str]) -> IndexEntry {
        IndexEntry {
            schema: "app".to_owned(),
            table: "orders".to_owned(),
            index: name.to_owned(),
            method: "btree".to_owned(),
            key_columns: keys.iter().map(|k| (*k).to_owned()).collect(),
            key_signature: keys.iter().map(|k| format!("{k}|3124|0|0")).collect(),
            include_columns: Vec::new(),
            predicate: String::new(),
            unique: false,
            backs_constraint: false,
            valid: true,
            idx_scan: 100,
            size_bytes: 8192,
            definition: format!("CREATE INDEX {name} ON app.orders ({})", keys.join(", ")),
        }
    }

    #[test]
    fn exact_duplicate_keeps_the_unique_one() {
        let unique = IndexEntry {
            unique: true,
            backs_constraint: true,
            idx_scan: 0,
            ..index("orders_email_key", &["email"])
        };
        let plain = index("orders_email_idx", &["email"]);
        let found = duplicate_indexes(&[plain.clone(), unique]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, "exact");
        assert_eq!(found[0].index, "app.orders_email_idx");
        assert_eq!(found[0].covered_by, "app.orders_email_key");
        assert_eq!(
            found[0].drop_statement,
            "DROP INDEX CONCURRENTLY \"app\".\"orders_email_idx\";"
        );
    }

    #[test]
    fn exact_duplicates_are_reported_once() {
        let a = index("a_idx", &["status"]);
        let b = index("b_idx", &["status"]);
        let found = duplicate_indexes(&[a, b]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].index, "app.b_idx");
    }

    #[test]
    fn a_prefix_index_is_redundant_but_a_unique_prefix_is_not() {
        let wide = index("wide", &["customer_id", "created_at"]);
        let prefix = index("narrow", &["customer_id"]);
        let found = duplicate_indexes(&[wide.clone(), prefix]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, "prefix");
        assert_eq!(found[0].index, "app.narrow");
        assert_eq!(found[0].covered_by, "app.wide");

        let unique_prefix = IndexEntry {
            unique: true,
            ..index("narrow", &["customer_id"])
        };
        assert!(duplicate_indexes(&[wide, unique_prefix]).is_empty());
    }

    #[test]
    fn different_predicate_method_order_or_table_is_not_a_duplicate() {
        let a = index("a", &["status"]);
        let partial = IndexEntry {
            predicate: "(status = 'open'::text)".to_owned(),
            ..index("b", &["status"])
        };
        let hash = IndexEntry {
            method: "hash".to_owned(),
            ..index("c", &["status"])
        };
        let desc = IndexEntry {
            key_signature: vec!["status|3124|0|3".to_owned()],
            ..index("d", &["status"])
        };
        let other_table = IndexEntry {
            table: "customers".to_owned(),
            ..index("e", &["status"])
        };
        assert!(duplicate_indexes(&[a, partial, hash, desc, other_table]).is_empty());
    }

    #[test]
    fn unused_means_few_scans_and_not_unique() {
        let unused = IndexEntry {
            idx_scan: 3,
            size_bytes: 1 << 20,
            ..index("unused", &["region"])
        };
        let used = index("used", &["status"]);
        let unique = IndexEntry {
            idx_scan: 0,
            unique: true,
            ..index("pk", &["id"])
        };
        let found = unused_indexes(&[unused, used, unique], 50);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].index, "app.unused");
        assert_eq!(found[0].size_bytes, 1 << 20);
    }

    #[test]
    fn invalid_indexes_are_listed_and_never_compared() {
        let broken = IndexEntry {
            valid: false,
            ..index("broken", &["status"])
        };
        let twin = index("twin", &["status"]);
        assert!(duplicate_indexes(&[broken.clone(), twin]).is_empty());
        assert_eq!(invalid_indexes(&[broken])[0].index, "app.broken");
    }

    #[test]
    fn large_mostly_seq_scanned_tables_are_candidates() {
        let table = |name: &str, live_rows, seq_scan, idx_scan| TableUsage {
            schema: "app".to_owned(),
            table: name.to_owned(),
            seq_scan,
            seq_tup_read: seq_scan * live_rows,
            idx_scan,
            live_rows,
            size_bytes: 0,
        };
        let tables = [
            table("big_seq", 100_000, 40, 2),
            table("big_indexed", 100_000, 40, 4000),
            table("small", 500, 40, 0),
            table("rarely", 100_000, 3, 0),
        ];
        let found = missing_index_candidates(&tables, &IndexHealthOptions::default());
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].table, "app.big_seq");
        assert_eq!(found[0].rows_per_seq_scan, 100_000.0);
    }
}
