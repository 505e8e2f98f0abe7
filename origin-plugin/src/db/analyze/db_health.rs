//! Database health, PgHero-style: table and index bloat estimates, long-running and
//! idle-in-transaction sessions, blocking lock chains, the buffer cache-hit ratio, and
//! tables overdue for vacuum or analyze.
//!
//! [`read_db_health`] reads the statistics views and catalog once (rows with their ages
//! and sizes); every verdict is a pure function of those rows and [`DbHealthOptions`]
//! (`classify_sessions`, `lock_chains`, `estimate_bloat`, `maintenance_due`), so each rule
//! is unit-tested without a server and the whole is tested against a real one.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use sqlx::{PgConnection, Row};

/// Thresholds of the health section.
#[derive(Debug, Clone, Serialize)]
pub struct DbHealthOptions {
    /// An active query running at least this long is reported. Default: 60 s.
    pub long_running_secs: f64,
    /// A session idle inside a transaction at least this long is reported. Default: 30 s.
    pub idle_in_transaction_secs: f64,
    /// A cache-hit ratio below this is a finding. Default: 0.99.
    pub min_cache_hit_ratio: f64,
    /// Bloat is reported from this many wasted bytes… Default: 1 MiB.
    pub bloat_min_bytes: i64,
    /// …and this share of the relation. Default: 0.3.
    pub bloat_min_ratio: f64,
    /// Only these schemas (empty: all user schemas).
    pub schemas: Vec<String>,
}

impl Default for DbHealthOptions {
    fn default() -> Self {
        Self {
            long_running_secs: 60.0,
            idle_in_transaction_secs: 30.0,
            min_cache_hit_ratio: 0.99,
            bloat_min_bytes: 1 << 20,
            bloat_min_ratio: 0.3,
            schemas: Vec::new(),
        }
    }
}

/// One backend, as read from `pg_stat_activity`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Session {
    /// Backend pid.
    pub pid: i32,
    /// Role.
    pub user: String,
    /// `active`, `idle in transaction`, …
    pub state: String,
    /// Seconds since the current query started.
    pub query_secs: f64,
    /// Seconds since the state last changed (how long it has been idle, for idle ones).
    pub state_secs: f64,
    /// The query (first 200 characters).
    pub query: String,
    /// Backends this one waits for (`pg_blocking_pids`).
    pub blocked_by: Vec<i32>,
}

/// A blocking chain: a root blocker (not itself waiting) and every session waiting on it,
/// directly or through others.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LockChain {
    /// The session holding the lock.
    pub blocker: Session,
    /// Those waiting, with whom each waits for.
    pub waiting: Vec<Session>,
}

/// Size estimate of a table or index against what its live rows need.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bloat {
    /// `table` or `index`.
    pub kind: &'static str,
    /// `schema.name`.
    pub name: String,
    /// For an index, its table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Bytes on disk.
    pub actual_bytes: i64,
    /// Bytes the live rows need at the fill factor.
    pub expected_bytes: i64,
    /// `actual − expected`.
    pub wasted_bytes: i64,
    /// `wasted / actual`.
    pub ratio: f64,
}

/// A table whose dead rows or changes since the last analyze passed autovacuum's own
/// trigger point without it running.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Maintenance {
    /// `schema.table`.
    pub table: String,
    /// `vacuum` or `analyze`.
    pub due: &'static str,
    /// Dead rows (vacuum) or rows changed since the last analyze.
    pub count: i64,
    /// Autovacuum's trigger for this table: threshold + scale factor × live rows.
    pub trigger: i64,
    /// Live rows.
    pub live_rows: i64,
    /// Seconds since the last (auto)vacuum or (auto)analyze; `None` if never.
    pub last_secs: Option<f64>,
}

/// Buffer cache hits over reads of user tables and their indexes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CacheHit {
    /// Table blocks found in shared buffers over all table blocks read; `None` before any read.
    pub table_ratio: Option<f64>,
    /// Same for indexes.
    pub index_ratio: Option<f64>,
    /// Whether either is below [`DbHealthOptions::min_cache_hit_ratio`].
    pub below_target: bool,
}

/// The health section of the analyzer report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DbHealth {
    /// Buffer cache-hit ratio.
    pub cache_hit: CacheHit,
    /// Active queries running longer than the threshold.
    pub long_running: Vec<Session>,
    /// Sessions idle in a transaction longer than the threshold.
    pub idle_in_transaction: Vec<Session>,
    /// Blocking lock chains.
    pub blocking: Vec<LockChain>,
    /// Tables and indexes with estimated bloat past both thresholds, worst first.
    pub bloat: Vec<Bloat>,
    /// Tables overdue for vacuum or analyze.
    pub maintenance: Vec<Maintenance>,
}

/// `hit / (hit + read)`, `None` when nothing was read.
pub fn hit_ratio(hit: i64, read: i64) -> Option<f64> {
    let total = hit.saturating_add(read);
    (total > 0).then(|| hit as f64 / total as f64)
}

/// Long-running active sessions and sessions idle in a transaction, by the thresholds.
pub fn classify_sessions(
    sessions: &[Session],
    options: &DbHealthOptions,
) -> (Vec<Session>, Vec<Session>) {
    let long = sessions
        .iter()
        .filter(|s| s.state == "active" && s.query_secs >= options.long_running_secs)
        .cloned()
        .collect();
    let idle = sessions
        .iter()
        .filter(|s| {
            s.state.starts_with("idle in transaction")
                && s.state_secs >= options.idle_in_transaction_secs
        })
        .cloned()
        .collect();
    (long, idle)
}

/// Group waiting sessions under the root blockers they wait for, directly or transitively.
pub fn lock_chains(sessions: &[Session]) -> Vec<LockChain> {
    let by_pid: BTreeMap<i32, &Session> = sessions.iter().map(|s| (s.pid, s)).collect();
    let mut chains: BTreeMap<i32, Vec<Session>> = BTreeMap::new();
    for waiter in sessions.iter().filter(|s| !s.blocked_by.is_empty()) {
        // Walk up the blockers to the ones not waiting themselves (cycles: deadlocks the
        // server resolves on its own; each pid is visited once).
        let mut seen = BTreeSet::new();
        let mut frontier = waiter.blocked_by.clone();
        let mut roots = BTreeSet::new();
        while let Some(pid) = frontier.pop() {
            if !seen.insert(pid) {
                continue;
            }
            match by_pid.get(&pid) {
                Some(s) if !s.blocked_by.is_empty() => frontier.extend(&s.blocked_by),
                _ => {
                    roots.insert(pid);
                }
            }
        }
        for root in roots {
            chains.entry(root).or_default().push(waiter.clone());
        }
    }
    chains
        .into_iter()
        .map(|(root, waiting)| LockChain {
            blocker: by_pid.get(&root).map_or_else(
                || Session {
                    pid: root,
                    user: String::new(),
                    state: "unknown (another database)".to_owned(),
                    query_secs: 0.0,
                    state_secs: 0.0,
                    query: String::new(),
                    blocked_by: Vec::new(),
                },
                |s| (*s).clone(),
            ),
            waiting,
        })
        .collect()
}

/// Bytes the rows need: `tuples × (width + per-row overhead)` over `fill` of each page,
/// rounded up to whole pages (at least one).
pub fn estimate_bloat(
    pages: i64,
    tuples: f64,
    row_bytes: f64,
    block_size: i64,
    fill: f64,
) -> (i64, i64, f64) {
    let actual = pages.saturating_mul(block_size);
    let usable = (block_size as f64 * fill.clamp(0.1, 1.0)).max(1.0);
    let expected_pages = ((tuples.max(0.0) * row_bytes) / usable).ceil().max(1.0) as i64;
    let expected = expected_pages.saturating_mul(block_size).min(actual);
    let wasted = actual - expected;
    let ratio = if actual > 0 {
        wasted as f64 / actual as f64
    } else {
        0.0
    };
    (expected, wasted, ratio)
}

/// Whether `count` passed autovacuum's trigger `threshold + scale × live`.
pub fn maintenance_due(count: i64, live: i64, threshold: i64, scale: f64) -> Option<i64> {
    let trigger = threshold.saturating_add((scale * live.max(0) as f64) as i64);
    (count > trigger).then_some(trigger)
}

fn schema_filter(column: &str) -> String {
    format!("(cardinality($1::text[]) = 0 OR {column} = ANY($1))")
}

/// Read and judge everything (one connection; plain reads of statistics and catalog).
pub async fn read_db_health(
    conn: &mut PgConnection,
    options: &DbHealthOptions,
) -> Result<DbHealth, sqlx::Error> {
    let schemas = &options.schemas;
    let user_schema = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
                       AND n.nspname NOT LIKE 'pg_toast%'";

    let row = sqlx::query(&format!(
        "SELECT COALESCE(sum(heap_blks_hit), 0)::int8, COALESCE(sum(heap_blks_read), 0)::int8 \
         FROM pg_statio_user_tables WHERE {}",
        schema_filter("schemaname")
    ))
    .bind(schemas)
    .fetch_one(&mut *conn)
    .await?;
    let table_ratio = hit_ratio(row.try_get(0)?, row.try_get(1)?);
    let row = sqlx::query(&format!(
        "SELECT COALESCE(sum(idx_blks_hit), 0)::int8, COALESCE(sum(idx_blks_read), 0)::int8 \
         FROM pg_statio_user_indexes WHERE {}",
        schema_filter("schemaname")
    ))
    .bind(schemas)
    .fetch_one(&mut *conn)
    .await?;
    let index_ratio = hit_ratio(row.try_get(0)?, row.try_get(1)?);
    let below = |r: Option<f64>| r.is_some_and(|r| r < options.min_cache_hit_ratio);
    let cache_hit = CacheHit {
        table_ratio,
        index_ratio,
        below_target: below(table_ratio) || below(index_ratio),
    };

    let sessions: Vec<Session> = sqlx::query(
        "SELECT pid, COALESCE(usename::text, ''), COALESCE(state, ''), \
                COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - query_start), 0)::float8, \
                COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - state_change), 0)::float8, \
                left(COALESCE(query, ''), 200), pg_blocking_pids(pid) \
         FROM pg_stat_activity \
         WHERE pid <> pg_backend_pid() AND datname = current_database() \
           AND backend_type = 'client backend'",
    )
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(Session {
            pid: r.try_get(0)?,
            user: r.try_get(1)?,
            state: r.try_get(2)?,
            query_secs: r.try_get(3)?,
            state_secs: r.try_get(4)?,
            query: r.try_get(5)?,
            blocked_by: r.try_get(6)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let (long_running, idle_in_transaction) = classify_sessions(&sessions, options);
    let blocking = lock_chains(&sessions);

    let block_size: i64 = sqlx::query_scalar("SELECT current_setting('block_size')::int8")
        .fetch_one(&mut *conn)
        .await?;
    let mut bloat = Vec::new();
    // Tables: live rows × (average width from pg_stats + 24-byte tuple header + 4-byte
    // line pointer) at the table's fill factor. Needs ANALYZE'd statistics; tables without
    // them are skipped rather than guessed.
    let tables = sqlx::query(&format!(
        "SELECT n.nspname || '.' || c.relname, c.relpages::int8, c.reltuples::float8, \
                (SELECT sum(s.avg_width)::float8 FROM pg_stats s \
                  WHERE s.schemaname = n.nspname AND s.tablename = c.relname), \
                COALESCE((SELECT split_part(o, '=', 2)::float8 FROM unnest(c.reloptions) o \
                  WHERE o LIKE 'fillfactor=%'), 100) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'm') AND {user_schema} AND {}",
        schema_filter("n.nspname")
    ))
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await?;
    for r in &tables {
        let width: Option<f64> = r.try_get(3)?;
        let Some(width) = width else { continue };
        let fill: f64 = r.try_get(4)?;
        let (pages, tuples): (i64, f64) = (r.try_get(1)?, r.try_get(2)?);
        let (expected, wasted, ratio) =
            estimate_bloat(pages, tuples, width + 28.0, block_size, fill / 100.0);
        push_bloat(
            &mut bloat,
            options,
            "table",
            r.try_get(0)?,
            None,
            pages * block_size,
            expected,
            wasted,
            ratio,
        );
    }
    // B-tree indexes: entries × (key width + 8-byte index tuple header + 4-byte line
    // pointer) at the default 90 % leaf fill, plus the meta page.
    let indexes = sqlx::query(&format!(
        "SELECT n.nspname || '.' || c.relname, n.nspname || '.' || t.relname, \
                c.relpages::int8, c.reltuples::float8, \
                (SELECT sum(s.avg_width)::float8 FROM pg_attribute a JOIN pg_stats s \
                   ON s.schemaname = n.nspname AND s.tablename = t.relname AND s.attname = a.attname \
                  WHERE a.attrelid = t.oid AND a.attnum = ANY(i.indkey)) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_am am ON am.oid = c.relam \
         WHERE am.amname = 'btree' AND {user_schema} AND {}",
        schema_filter("n.nspname")
    ))
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await?;
    for r in &indexes {
        let width: Option<f64> = r.try_get(4)?;
        let Some(width) = width else { continue };
        let (pages, tuples): (i64, f64) = (r.try_get(2)?, r.try_get(3)?);
        let data_pages = (pages - 1).max(0);
        let (expected, wasted, ratio) =
            estimate_bloat(data_pages, tuples, width.max(8.0) + 12.0, block_size, 0.9);
        push_bloat(
            &mut bloat,
            options,
            "index",
            r.try_get(0)?,
            Some(r.try_get(1)?),
            pages * block_size,
            expected + block_size.min(pages * block_size),
            wasted,
            ratio,
        );
    }
    bloat.sort_by_key(|b| std::cmp::Reverse(b.wasted_bytes));

    let settings = sqlx::query(
        "SELECT current_setting('autovacuum_vacuum_threshold')::int8, \
                current_setting('autovacuum_vacuum_scale_factor')::float8, \
                current_setting('autovacuum_analyze_threshold')::int8, \
                current_setting('autovacuum_analyze_scale_factor')::float8",
    )
    .fetch_one(&mut *conn)
    .await?;
    let (vt, vs, at, an): (i64, f64, i64, f64) = (
        settings.try_get(0)?,
        settings.try_get(1)?,
        settings.try_get(2)?,
        settings.try_get(3)?,
    );
    let stats = sqlx::query(&format!(
        "SELECT schemaname || '.' || relname, n_live_tup, n_dead_tup, n_mod_since_analyze, \
                EXTRACT(EPOCH FROM clock_timestamp() - GREATEST(last_vacuum, last_autovacuum))::float8, \
                EXTRACT(EPOCH FROM clock_timestamp() - GREATEST(last_analyze, last_autoanalyze))::float8 \
         FROM pg_stat_user_tables WHERE {}",
        schema_filter("schemaname")
    ))
    .bind(schemas)
    .fetch_all(&mut *conn)
    .await?;
    let mut maintenance = Vec::new();
    for r in &stats {
        let table: String = r.try_get(0)?;
        let (live, dead, modified): (i64, i64, i64) = (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
        if let Some(trigger) = maintenance_due(dead, live, vt, vs) {
            maintenance.push(Maintenance {
                table: table.clone(),
                due: "vacuum",
                count: dead,
                trigger,
                live_rows: live,
                last_secs: r.try_get(4)?,
            });
        }
        if let Some(trigger) = maintenance_due(modified, live, at, an) {
            maintenance.push(Maintenance {
                table,
                due: "analyze",
                count: modified,
                trigger,
                live_rows: live,
                last_secs: r.try_get(5)?,
            });
        }
    }
    maintenance.sort_by(|a, b| (a.table.as_str(), a.due).cmp(&(b.table.as_str(), b.due)));

    Ok(DbHealth {
        cache_hit,
        long_running,
        idle_in_transaction,
        blocking,
        bloat,
        maintenance,
    })
}

#[allow(clippy::too_many_arguments)]
fn push_bloat(
    out: &mut Vec<Bloat>,
    options: &DbHealthOptions,
    kind: &'static str,
    name: String,
    table: Option<String>,
    actual_bytes: i64,
    expected_bytes: i64,
    wasted_bytes: i64,
    ratio: f64,
) {
    if wasted_bytes >= options.bloat_min_bytes && ratio >= options.bloat_min_ratio {
        out.push(Bloat {
            kind,
            name,
            table,
            actual_bytes,
            expected_bytes,
            wasted_bytes,
            ratio,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(pid: i32, state: &str, secs: f64, blocked_by: Vec<i32>) -> Session {
        Session {
            pid,
            user: "app".into(),
            state: state.into(),
            query_secs: secs,
            state_secs: secs,
            query: format!("q{pid}"),
            blocked_by,
        }
    }

    #[test]
    fn sessions_are_classified_by_state_and_age() {
        let options = DbHealthOptions::default();
        let all = [
            session(1, "active", 61.0, vec![]),
            session(2, "active", 5.0, vec![]),
            session(3, "idle in transaction", 31.0, vec![]),
            session(4, "idle", 9999.0, vec![]),
        ];
        let (long, idle) = classify_sessions(&all, &options);
        assert_eq!(long.iter().map(|s| s.pid).collect::<Vec<_>>(), [1]);
        assert_eq!(idle.iter().map(|s| s.pid).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn waiters_are_grouped_under_their_root_blocker() {
        let all = [
            session(10, "idle in transaction", 1.0, vec![]),
            session(11, "active", 1.0, vec![10]),
            session(12, "active", 1.0, vec![11]),
            session(13, "active", 1.0, vec![]),
        ];
        let chains = lock_chains(&all);
        assert_eq!(chains.len(), 1);
        assert_eq!(chains[0].blocker.pid, 10);
        let waiting: Vec<i32> = chains[0].waiting.iter().map(|s| s.pid).collect();
        assert_eq!(waiting, [11, 12]);
    }

    #[test]
    fn bloat_is_what_the_live_rows_do_not_need() {
        // 100 pages of 8 KiB holding 1000 rows of 100 bytes: one page is enough.
        let (expected, wasted, ratio) = estimate_bloat(100, 1000.0, 100.0, 8192, 1.0);
        assert_eq!(expected, 8192 * 13);
        assert_eq!(wasted, 8192 * 87);
        assert!((ratio - 0.87).abs() < 1e-9);
        assert_eq!(estimate_bloat(0, 0.0, 100.0, 8192, 1.0), (0, 0, 0.0));
    }

    #[test]
    fn maintenance_is_due_past_autovacuums_trigger() {
        assert_eq!(maintenance_due(2051, 10_000, 50, 0.2), Some(2050));
        assert_eq!(maintenance_due(2050, 10_000, 50, 0.2), None);
        assert_eq!(hit_ratio(99, 1), Some(0.99));
        assert_eq!(hit_ratio(0, 0), None);
    }
}
