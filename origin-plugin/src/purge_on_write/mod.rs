//! The write → purge loop: PostgreSQL tells the app which rows changed, the app purges
//! the cache tags of those rows at the edge.
//!
//! [`PurgeOnWrite::start`] looks the watched tables up, installs (idempotently) a trigger
//! function and triggers that `pg_notify` a channel with the table, the operation and the
//! row's key on every committed INSERT, UPDATE, DELETE and TRUNCATE, and `LISTEN`s on that
//! channel on a connection of its own. Each notification is mapped to cache tags
//! ([`ChangeTags`]; by default `{table}:{key}` and `{table}`), debounced and deduplicated
//! ([`TagBatcher`]), and handed to the [`PurgeClient`].
//!
//! Notifications are not queued for a session that is gone: when the listener's connection
//! drops it reconnects with backoff and, once it listens again, purges the table-wide tags
//! ([`ChangeTags::table_tags`]) of every watched table, so changes made while it was away
//! are covered too (`docs/database.md`, "Write → purge loop", states the guarantee).
//!
//! Payload parsing, tag mapping, batching and the SQL are pure ([`parse_payload`],
//! [`tags_for`], [`TagBatcher`], [`install_statements`]); the tasks here only do the I/O.

mod batch;
mod change;
mod triggers;

pub use batch::TagBatcher;
pub use change::{
    parse_payload, tags_for, Change, ChangeTags, DefaultTags, Operation, PayloadError, RowKey,
    TableName,
};
pub use triggers::{
    function_sql, install_statements, quote_ident, uninstall_statements, ResolvedTable,
    WatchedTable, FUNCTION_NAME, MAX_PAYLOAD_BYTES, ROW_TRIGGER_NAME, TRUNCATE_TRIGGER_NAME,
};

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::Counter;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::purge::PurgeClient;
use crate::Error;

const TARGET: &str = "cachefront_origin::purge_on_write";

/// Options for [`PurgeOnWrite`].
#[derive(Debug, Clone)]
pub struct PurgeOnWriteConfig {
    /// The `NOTIFY` channel. One channel per set of watched tables. Default `cachefront_purge`.
    pub channel: String,
    /// How long tags are collected after the first change of a batch before they are
    /// handed to the purge client (which adds its own `batch_window`). Default 100 ms.
    pub debounce: Duration,
    /// Distinct tags that make a batch go at once, before its window ends. Default 500.
    pub max_batch: usize,
    /// Soft-purge (entries stay usable as stale while they revalidate). Default false.
    pub soft: bool,
    /// Install the trigger function and triggers at start. Turn off when a migration
    /// installs them ([`install_statements`]). Default true.
    pub install_triggers: bool,
    /// Schema of the trigger function. Default: the first watched table's schema.
    pub function_schema: Option<String>,
    /// Also purge every watched table's table-wide tags once listening starts, covering
    /// writes made while the app was not running. Default false.
    pub catch_up_on_start: bool,
    /// First wait between reconnection attempts; doubles per failure. Default 250 ms.
    pub reconnect_initial_backoff: Duration,
    /// Longest wait between reconnection attempts. Default 30 s.
    pub reconnect_max_backoff: Duration,
}

impl Default for PurgeOnWriteConfig {
    fn default() -> Self {
        Self {
            channel: "cachefront_purge".to_owned(),
            debounce: Duration::from_millis(100),
            max_batch: 500,
            soft: false,
            install_triggers: true,
            function_schema: None,
            catch_up_on_start: false,
            reconnect_initial_backoff: Duration::from_millis(250),
            reconnect_max_backoff: Duration::from_secs(30),
        }
    }
}

/// What the loop has done so far, for tests and status pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeOnWriteStats {
    /// Notifications received and understood.
    pub notifications: u64,
    /// Notifications that were not understood (logged, never purged).
    pub invalid_notifications: u64,
    /// Tag batches handed to the purge client for changes.
    pub purges: u64,
    /// Catch-up purges (table-wide tags of every watched table) after a reconnect or at start.
    pub catch_up_purges: u64,
    /// Times the listener connection was re-established.
    pub reconnects: u64,
    /// Whether the listener is connected and listening now.
    pub connected: bool,
    /// The listener's server process id (`pg_backend_pid()`), while connected.
    pub backend_pid: Option<i32>,
}

/// Why a batch of tags was handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Changes,
    CatchUp,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Changes => "changes",
            Reason::CatchUp => "catch_up",
        }
    }
}

#[derive(Clone)]
struct LoopCounters {
    row: Counter,
    table: Counter,
    invalid: Counter,
    purges: Counter,
    catch_ups: Counter,
    reconnects: Counter,
}

impl LoopCounters {
    fn noop() -> Self {
        Self {
            row: Counter::noop(),
            table: Counter::noop(),
            invalid: Counter::noop(),
            purges: Counter::noop(),
            catch_ups: Counter::noop(),
            reconnects: Counter::noop(),
        }
    }

    #[cfg(feature = "metrics")]
    fn from_metrics(m: &crate::metrics::Metrics) -> Self {
        use crate::metrics::names;
        let kind = |k| m.counter(names::DB_CHANGE_NOTIFICATIONS_TOTAL, &[("kind", k)]);
        let reason = |r| m.counter(names::DB_CHANGE_PURGES_TOTAL, &[("reason", r)]);
        Self {
            row: kind("row"),
            table: kind("table"),
            invalid: kind("invalid"),
            purges: reason(Reason::Changes.as_str()),
            catch_ups: reason(Reason::CatchUp.as_str()),
            reconnects: m.counter(names::DB_CHANGE_LISTENER_RECONNECTS_TOTAL, &[]),
        }
    }
}

#[derive(Default)]
struct Shared {
    notifications: AtomicU64,
    invalid: AtomicU64,
    purges: AtomicU64,
    catch_ups: AtomicU64,
    reconnects: AtomicU64,
    connected: AtomicBool,
    backend_pid: AtomicI32,
}

impl Shared {
    fn stats(&self) -> PurgeOnWriteStats {
        let pid = self.backend_pid.load(Ordering::Relaxed);
        PurgeOnWriteStats {
            notifications: self.notifications.load(Ordering::Relaxed),
            invalid_notifications: self.invalid.load(Ordering::Relaxed),
            purges: self.purges.load(Ordering::Relaxed),
            catch_up_purges: self.catch_ups.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            backend_pid: (pid != 0).then_some(pid),
        }
    }

    fn set_connected(&self, pid: Option<i32>) {
        self.backend_pid.store(pid.unwrap_or(0), Ordering::Relaxed);
        self.connected.store(pid.is_some(), Ordering::Relaxed);
    }
}

/// Builder of the write → purge loop.
///
/// ```no_run
/// # async fn run(pool: sqlx::PgPool, purge: cachefront_origin::purge::PurgeClient) -> Result<(), cachefront_origin::Error> {
/// use cachefront_origin::purge_on_write::{Change, PurgeOnWrite, WatchedTable};
///
/// let handle = PurgeOnWrite::new(purge)
///     .table(WatchedTable::new("products"))
///     .tags(|c: &Change| {
///         let mut tags: Vec<String> = c.keys().map(|k| format!("product:{k}")).collect();
///         tags.push("products".to_owned());
///         tags
///     })
///     .start(&pool)
///     .await?;
/// // … serve; `handle.shutdown().await` hands over the last batch.
/// # Ok(()) }
/// ```
pub struct PurgeOnWrite {
    purge: PurgeClient,
    tables: Vec<WatchedTable>,
    mapping: Arc<dyn ChangeTags>,
    config: PurgeOnWriteConfig,
    counters: LoopCounters,
}

impl std::fmt::Debug for PurgeOnWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgeOnWrite")
            .field("tables", &self.tables)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl PurgeOnWrite {
    /// A loop that hands its tags to `purge`, with the default mapping ([`DefaultTags`])
    /// and options.
    pub fn new(purge: PurgeClient) -> Self {
        Self {
            purge,
            tables: Vec::new(),
            mapping: Arc::new(DefaultTags),
            config: PurgeOnWriteConfig::default(),
            counters: LoopCounters::noop(),
        }
    }

    /// Watch one more table.
    pub fn table(mut self, table: WatchedTable) -> Self {
        self.tables.push(table);
        self
    }

    /// How changes become tags: a [`ChangeTags`] implementation, or a closure
    /// `Fn(&Change) -> Vec<String>` for row changes.
    pub fn tags(mut self, mapping: impl ChangeTags) -> Self {
        self.mapping = Arc::new(mapping);
        self
    }

    /// Options.
    pub fn config(mut self, config: PurgeOnWriteConfig) -> Self {
        self.config = config;
        self
    }

    /// Count notifications, purges and reconnects in `metrics`.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.counters = LoopCounters::from_metrics(metrics);
        self
    }

    /// Look the tables up, install the triggers (unless turned off), start listening, and
    /// run the loop in the background. When this returns, every change committed from now
    /// on is purged. The listener holds one connection of `pool` while it runs.
    pub async fn start(self, pool: &PgPool) -> Result<PurgeOnWriteHandle, Error> {
        triggers::check_channel(&self.config.channel)?;
        if self.tables.is_empty() {
            return Err(Error::Config(
                "purge-on-write needs at least one table to watch".to_owned(),
            ));
        }
        let mut resolved = Vec::with_capacity(self.tables.len());
        for table in &self.tables {
            resolved.push(triggers::resolve(pool, table).await?);
        }
        if self.config.install_triggers {
            let schema = self
                .config
                .function_schema
                .clone()
                .or_else(|| resolved.first().map(|t| t.table.schema.clone()))
                .unwrap_or_else(|| "public".to_owned());
            triggers::install(pool, &schema, &self.config.channel, &resolved).await?;
        }
        let (listener, pid) = connect(pool, &self.config.channel).await?;
        let shared = Arc::new(Shared::default());
        shared.set_connected(Some(pid));
        let tables: Vec<TableName> = resolved.into_iter().map(|t| t.table).collect();
        tracing::info!(target: TARGET, channel = %self.config.channel, tables = ?tables.iter().map(ToString::to_string).collect::<Vec<_>>(), backend_pid = pid, "purge-on-write listening");

        let (events_tx, events_rx) = mpsc::channel(1024);
        let connection = Connection {
            pool: pool.clone(),
            channel: self.config.channel.clone(),
            initial_backoff: self.config.reconnect_initial_backoff,
            max_backoff: self.config.reconnect_max_backoff,
            shared: shared.clone(),
            events: events_tx,
        };
        let listen_task = tokio::spawn(connection.run(listener));
        let (stop_tx, stop_rx) = oneshot::channel();
        let batching = Batching {
            purge: self.purge,
            mapping: self.mapping,
            tables,
            batcher: TagBatcher::new(self.config.debounce, self.config.max_batch),
            soft: self.config.soft,
            counters: self.counters,
            shared: shared.clone(),
        };
        let task = tokio::spawn(batching.run(
            events_rx,
            stop_rx,
            listen_task,
            self.config.catch_up_on_start,
        ));
        Ok(PurgeOnWriteHandle {
            stop: Some(stop_tx),
            task: Some(task),
            shared,
        })
    }
}

/// The running loop. Dropping it stops the loop (the tags waiting in the debounce window
/// are still handed to the purge client); [`shutdown`](Self::shutdown) also waits for that.
pub struct PurgeOnWriteHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PurgeOnWriteHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgeOnWriteHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl PurgeOnWriteHandle {
    /// What the loop has done so far.
    pub fn stats(&self) -> PurgeOnWriteStats {
        self.shared.stats()
    }

    /// Stop listening and hand the waiting tags to the purge client. Call
    /// [`PurgeClient::flush`] afterwards to wait until they have been sent.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for PurgeOnWriteHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A listening connection and its server process id.
async fn connect(pool: &PgPool, channel: &str) -> Result<(PgListener, i32), Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    // Reconnection is ours: it must be followed by a catch-up purge.
    listener.eager_reconnect(false);
    listener.listen(channel).await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut listener)
        .await?;
    Ok((listener, pid))
}

enum Event {
    Payload(String),
    Reconnected,
}

/// Owns the listening connection: forwards payloads, and after a loss reconnects with
/// backoff and reports it.
struct Connection {
    pool: PgPool,
    channel: String,
    initial_backoff: Duration,
    max_backoff: Duration,
    shared: Arc<Shared>,
    events: mpsc::Sender<Event>,
}

impl Connection {
    async fn run(self, mut listener: PgListener) {
        loop {
            let error = loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        if self
                            .events
                            .send(Event::Payload(n.payload().to_owned()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => break "connection closed".to_owned(),
                    Err(sqlx::Error::PoolClosed) => {
                        self.shared.set_connected(None);
                        tracing::info!(target: TARGET, "pool closed; purge-on-write stops");
                        return;
                    }
                    Err(e) => break e.to_string(),
                }
            };
            self.shared.set_connected(None);
            drop(listener);
            tracing::warn!(target: TARGET, %error, "purge-on-write listener lost its connection; reconnecting");
            let Some((next, pid)) = self.reconnect().await else {
                return;
            };
            listener = next;
            self.shared.set_connected(Some(pid));
            if self.events.send(Event::Reconnected).await.is_err() {
                return;
            }
        }
    }

    /// Try at once, then with doubling waits; `None` when the pool is closed or the loop
    /// has stopped.
    async fn reconnect(&self) -> Option<(PgListener, i32)> {
        let mut wait = self.initial_backoff;
        let mut attempt = 1u32;
        loop {
            if self.events.is_closed() {
                return None;
            }
            match connect(&self.pool, &self.channel).await {
                Ok(ok) => return Some(ok),
                Err(Error::Database(sqlx::Error::PoolClosed)) => return None,
                Err(error) => {
                    tracing::warn!(target: TARGET, %error, attempt, wait_ms = wait.as_millis() as u64, "purge-on-write reconnection failed");
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2).min(self.max_backoff);
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }
}

/// Maps payloads to tags, batches them and hands them to the purge client.
struct Batching {
    purge: PurgeClient,
    mapping: Arc<dyn ChangeTags>,
    tables: Vec<TableName>,
    batcher: TagBatcher,
    soft: bool,
    counters: LoopCounters,
    shared: Arc<Shared>,
}

impl Batching {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut stop: oneshot::Receiver<()>,
        listen_task: JoinHandle<()>,
        catch_up_now: bool,
    ) {
        if catch_up_now {
            self.catch_up("start");
        }
        loop {
            let due = self.batcher.due_at();
            tokio::select! {
                _ = &mut stop => break,
                _ = sleep_until(due), if due.is_some() => {
                    if let Some(tags) = self.batcher.take_due(Instant::now()) {
                        self.hand_over(tags, Reason::Changes);
                    }
                }
                event = events.recv() => match event {
                    None => break,
                    Some(Event::Payload(payload)) => self.on_payload(&payload),
                    Some(Event::Reconnected) => {
                        self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                        self.counters.reconnects.increment(1);
                        self.catch_up("reconnect");
                    }
                },
            }
        }
        listen_task.abort();
        if let Some(tags) = self.batcher.take_all() {
            self.hand_over(tags, Reason::Changes);
        }
        self.shared.set_connected(None);
    }

    fn on_payload(&mut self, payload: &str) {
        match parse_payload(payload) {
            Ok(change) => {
                self.shared.notifications.fetch_add(1, Ordering::Relaxed);
                if change.is_table_wide() {
                    self.counters.table.increment(1);
                    if change.oversized {
                        tracing::warn!(target: TARGET, table = %change.table, op = change.op.as_str(), "change notification too large for NOTIFY; purging the table's tags");
                    }
                } else {
                    self.counters.row.increment(1);
                }
                let tags = tags_for(self.mapping.as_ref(), &change);
                tracing::debug!(target: TARGET, table = %change.table, op = change.op.as_str(), ?tags, "change");
                if let Some(full) = self.batcher.add(tags, Instant::now()) {
                    self.hand_over(full, Reason::Changes);
                }
            }
            Err(error) => {
                self.shared.invalid.fetch_add(1, Ordering::Relaxed);
                self.counters.invalid.increment(1);
                tracing::warn!(target: TARGET, %error, "change notification not understood; ignored");
            }
        }
    }

    /// Notifications sent while the listener was away are lost: purge everything the
    /// watched tables can affect, together with whatever was waiting.
    fn catch_up(&mut self, when: &'static str) {
        if let Some(waiting) = self.batcher.take_all() {
            self.hand_over(waiting, Reason::Changes);
        }
        let mut tags: Vec<String> = self
            .tables
            .iter()
            .flat_map(|t| self.mapping.table_tags(t))
            .collect();
        tags.sort();
        tags.dedup();
        tracing::warn!(target: TARGET, when, ?tags, "purge-on-write catch-up purge: changes made while not listening are covered by the watched tables' table-wide tags");
        self.hand_over(tags, Reason::CatchUp);
    }

    fn hand_over(&self, tags: Vec<String>, reason: Reason) {
        if tags.is_empty() {
            return;
        }
        let queued = if self.soft {
            self.purge.soft_purge_tags(&tags)
        } else {
            self.purge.purge_tags(&tags)
        };
        match reason {
            Reason::Changes => {
                self.shared.purges.fetch_add(1, Ordering::Relaxed);
                self.counters.purges.increment(1);
            }
            Reason::CatchUp => {
                self.shared.catch_ups.fetch_add(1, Ordering::Relaxed);
                self.counters.catch_ups.increment(1);
            }
        }
        tracing::debug!(target: TARGET, reason = reason.as_str(), tags = tags.len(), accepted = queued.accepted, dropped = queued.dropped, invalid = queued.invalid, "tags handed to the purge client");
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await,
        None => std::future::pending().await,
    }
}
