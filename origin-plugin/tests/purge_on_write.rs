//! The write → purge loop against real PostgreSQL: triggers, LISTEN/NOTIFY, tag mapping,
//! batching and reconnection, with a loopback stand-in for the edge's purge API.
#![cfg(all(feature = "db-purge", feature = "metrics"))]
mod support;

use std::time::{Duration, Instant};

use cachefront_origin::metrics::Metrics;
use cachefront_origin::purge::{EdgePurge, PurgeClient, PurgeConfig};
use cachefront_origin::purge_on_write::{
    Change, PurgeOnWrite, PurgeOnWriteConfig, PurgeOnWriteHandle, WatchedTable,
};
use serde_json::{json, Value};
use sqlx::PgPool;
use support::{edge_contract, PurgeStandIn};

/// Generous: nothing here measures time, it only bounds how long a broken loop is waited for.
const DEADLINE: Duration = Duration::from_secs(30);

/// A schema of its own with `items` (10 rows) and `categories` (3 rows), a pool whose
/// `search_path` points at it, and a stand-in edge.
struct Fixture {
    pool: PgPool,
    schema: String,
    edge: PurgeStandIn,
    purge: PurgeClient,
}

impl Fixture {
    async fn create(name: &str) -> Option<Self> {
        let database_url = support::database_url()?;
        let schema = format!("purge_on_write_{}_{name}", std::process::id());
        let pool = support::pool_in_fresh_schema(&database_url, &schema, 4).await;
        for statement in [
            format!("CREATE TABLE {schema}.items (id bigint PRIMARY KEY, name text NOT NULL)"),
            format!("INSERT INTO {schema}.items SELECT g, 'item ' || g FROM generate_series(1, 10) g"),
            format!("CREATE TABLE {schema}.categories (id bigint PRIMARY KEY, name text NOT NULL)"),
            format!("INSERT INTO {schema}.categories SELECT g, 'category ' || g FROM generate_series(1, 3) g"),
        ] {
            sqlx::query(&statement)
                .execute(&pool)
                .await
                .expect("create the test schema");
        }
        let edge = PurgeStandIn::start(edge_contract, vec![]).await;
        let purge = PurgeClient::new(
            EdgePurge::new(&edge.base(), "edge-secret"),
            PurgeConfig::default(),
        );
        Some(Self {
            pool,
            schema,
            edge,
            purge,
        })
    }

    /// A channel of this test's own: the tests share one database.
    fn config(&self) -> PurgeOnWriteConfig {
        PurgeOnWriteConfig {
            channel: self.schema.clone(),
            reconnect_initial_backoff: Duration::from_millis(50),
            ..PurgeOnWriteConfig::default()
        }
    }

    async fn exec(&self, sql: &str) {
        sqlx::query(sql)
            .execute(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The body of the `n`th (0-based) purge request, once it has arrived.
    async fn purge_body(&self, n: usize) -> Value {
        let start = Instant::now();
        loop {
            if let Some(r) = self.edge.received().get(n) {
                assert!(
                    self.edge.violations().is_empty(),
                    "{:?}",
                    self.edge.violations()
                );
                return r.body.clone();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "purge request #{n} never reached the edge; got {:?}",
                self.edge
                    .received()
                    .iter()
                    .map(|r| &r.body)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop the loop, send what it handed over, and return every purge body received.
    async fn finish(self, handle: PurgeOnWriteHandle) -> Vec<Value> {
        handle.shutdown().await;
        self.purge.flush().await;
        let bodies = self.edge.received().into_iter().map(|r| r.body).collect();
        support::drop_schema(self.pool, &self.schema).await;
        bodies
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_purges_the_row_and_table_tags_at_the_edge() {
    let Some(fx) = Fixture::create("update").await else {
        return;
    };
    let metrics = Metrics::new();
    let handle = PurgeOnWrite::new(fx.purge.clone())
        .table(WatchedTable::new("items"))
        .config(fx.config())
        .metrics(&metrics)
        .start(&fx.pool)
        .await
        .expect("start the loop");
    assert!(handle.stats().connected);

    fx.exec("UPDATE items SET name = 'renamed' WHERE id = 7")
        .await;
    assert_eq!(
        fx.purge_body(0).await,
        json!({"tags": ["items", "items:7"]})
    );
    // A no-op update changes nothing cached: no notification.
    fx.exec("UPDATE items SET name = name WHERE id = 7").await;
    // A rolled-back write sends nothing either.
    let mut tx = fx.pool.begin().await.expect("begin");
    sqlx::query("UPDATE items SET name = 'never' WHERE id = 8")
        .execute(&mut *tx)
        .await
        .expect("update");
    tx.rollback().await.expect("rollback");
    // A barrier: notifications arrive in commit order, so once this later
    // write's purge is in, a notification of the two writes above would have
    // arrived too (and, batched with it, would show in its body).
    fx.exec("UPDATE items SET name = 'sentinel' WHERE id = 9")
        .await;
    assert_eq!(
        fx.purge_body(1).await,
        json!({"tags": ["items", "items:9"]}),
        "only the sentinel's tags: the no-op and the rolled-back write sent nothing"
    );

    let stats = handle.stats();
    let text = metrics.render();
    let bodies = fx.finish(handle).await;
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(stats.notifications, 2);
    assert_eq!(stats.purges, 2);
    assert!(
        text.contains(r#"cachefront_origin_db_change_notifications_total{kind="row"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"cachefront_origin_db_change_purges_total{reason="changes"} 2"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_updates_reach_the_edge_as_one_deduplicated_request() {
    let Some(fx) = Fixture::create("batch").await else {
        return;
    };
    // A window far longer than the writes take: everything below lands in one batch.
    let handle = PurgeOnWrite::new(fx.purge.clone())
        .table(WatchedTable::new("items"))
        .config(PurgeOnWriteConfig {
            debounce: Duration::from_secs(3),
            ..fx.config()
        })
        .start(&fx.pool)
        .await
        .expect("start the loop");

    for id in [1, 2, 3, 1, 2] {
        fx.exec(&format!(
            "UPDATE items SET name = name || '!' WHERE id = {id}"
        ))
        .await;
    }
    let mut tx = fx.pool.begin().await.expect("begin");
    for id in [4, 5] {
        sqlx::query("UPDATE items SET name = name || '?' WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .expect("update");
    }
    tx.commit().await.expect("commit");

    assert_eq!(
        fx.purge_body(0).await,
        json!({"tags": ["items", "items:1", "items:2", "items:3", "items:4", "items:5"]})
    );
    let stats = handle.stats();
    let bodies = fx.finish(handle).await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(stats.notifications, 7);
    assert_eq!(stats.purges, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inserts_deletes_key_changes_and_truncates_map_through_a_closure() {
    let Some(fx) = Fixture::create("ops").await else {
        return;
    };
    let handle = PurgeOnWrite::new(fx.purge.clone())
        .table(WatchedTable::new("items"))
        .tags(|c: &Change| {
            c.keys()
                .filter_map(|k| k.get("id"))
                .map(|id| format!("item:{id}"))
                .chain([format!("op:{}", c.op.as_str().to_ascii_lowercase())])
                .collect()
        })
        .config(fx.config())
        .start(&fx.pool)
        .await
        .expect("start the loop");

    fx.exec("INSERT INTO items VALUES (42, 'new')").await;
    assert_eq!(
        fx.purge_body(0).await,
        json!({"tags": ["item:42", "op:insert"]})
    );
    fx.exec("DELETE FROM items WHERE id = 2").await;
    assert_eq!(
        fx.purge_body(1).await,
        json!({"tags": ["item:2", "op:delete"]})
    );
    fx.exec("UPDATE items SET id = 33 WHERE id = 3").await;
    assert_eq!(
        fx.purge_body(2).await,
        json!({"tags": ["item:3", "item:33", "op:update"]}),
        "a key change purges the old and the new key"
    );
    fx.exec("TRUNCATE items").await;
    assert_eq!(
        fx.purge_body(3).await,
        json!({"tags": ["items"]}),
        "TRUNCATE purges the table-wide tags"
    );
    let bodies = fx.finish(handle).await;
    assert_eq!(bodies.len(), 4, "{bodies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_too_large_for_notify_still_commits_and_purges_the_table() {
    let Some(fx) = Fixture::create("oversized").await else {
        return;
    };
    fx.exec("CREATE TABLE pages (slug text NOT NULL, body text)")
        .await;
    let handle = PurgeOnWrite::new(fx.purge.clone())
        .table(WatchedTable::new("pages").key_columns(["slug"]))
        .config(fx.config())
        .start(&fx.pool)
        .await
        .expect("start the loop");

    fx.exec("INSERT INTO pages VALUES ('about', 'hello')").await;
    assert_eq!(
        fx.purge_body(0).await,
        json!({"tags": ["pages", "pages:about"]})
    );
    let long_slug = "x".repeat(9000);
    fx.exec(&format!("INSERT INTO pages VALUES ('{long_slug}', 'big')"))
        .await;
    assert_eq!(fx.purge_body(1).await, json!({"tags": ["pages"]}));
    let bodies = fx.finish(handle).await;
    assert_eq!(bodies.len(), 2, "{bodies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listener_reconnects_and_purges_every_watched_table() {
    let Some(fx) = Fixture::create("reconnect").await else {
        return;
    };
    let metrics = Metrics::new();
    let handle = PurgeOnWrite::new(fx.purge.clone())
        .table(WatchedTable::new("items"))
        .table(WatchedTable::new("categories"))
        .config(fx.config())
        .metrics(&metrics)
        .start(&fx.pool)
        .await
        .expect("start the loop");
    let first_pid = handle.stats().backend_pid.expect("listening");

    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first_pid)
        .fetch_one(&fx.pool)
        .await
        .expect("terminate the listener's backend");
    assert!(killed);

    // Whatever was written while it was away is covered by the table-wide tags.
    assert_eq!(
        fx.purge_body(0).await,
        json!({"tags": ["categories", "items"]})
    );
    let stats = handle.stats();
    assert_eq!(stats.reconnects, 1);
    assert_eq!(stats.catch_up_purges, 1);
    assert!(stats.connected);
    assert_ne!(stats.backend_pid, Some(first_pid));

    // And it listens again.
    fx.exec("UPDATE categories SET name = 'tents' WHERE id = 1")
        .await;
    assert_eq!(
        fx.purge_body(1).await,
        json!({"tags": ["categories", "categories:1"]})
    );
    let text = metrics.render();
    assert!(
        text.contains("cachefront_origin_db_change_listener_reconnects_total 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"cachefront_origin_db_change_purges_total{reason="catch_up"} 1"#),
        "{text}"
    );
    let bodies = fx.finish(handle).await;
    assert_eq!(bodies.len(), 2, "{bodies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_twice_is_idempotent_and_unknown_tables_are_refused() {
    let Some(fx) = Fixture::create("idempotent").await else {
        return;
    };
    let err = PurgeOnWrite::new(fx.purge.clone())
        .table(WatchedTable::new("no_such_table"))
        .config(fx.config())
        .start(&fx.pool)
        .await
        .expect_err("an unknown table is refused");
    assert!(err.to_string().contains("no_such_table"), "{err}");

    let first = PurgeOnWrite::new(fx.purge.clone())
        .table(WatchedTable::new("items"))
        .config(fx.config())
        .start(&fx.pool)
        .await
        .expect("first start");
    first.shutdown().await;
    let handle = PurgeOnWrite::new(fx.purge.clone())
        .table(WatchedTable::new("items").schema(fx.schema.clone()))
        .config(fx.config())
        .start(&fx.pool)
        .await
        .expect("second start over the installed triggers");
    let triggers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass AND NOT tgisinternal",
    )
    .fetch_one(&fx.pool)
    .await
    .expect("count triggers");
    assert_eq!(triggers, 2, "one row trigger and one TRUNCATE trigger");

    fx.exec("UPDATE items SET name = 'once' WHERE id = 1").await;
    assert_eq!(
        fx.purge_body(0).await,
        json!({"tags": ["items", "items:1"]})
    );
    let bodies = fx.finish(handle).await;
    assert_eq!(bodies.len(), 1, "one notification per write: {bodies:?}");
}
