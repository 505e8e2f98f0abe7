//! [`CapturedPool`]: the opt-in fast path of the capture. A `PgPool` newtype whose
//! `&CapturedPool` is a [`sqlx::Executor`]: it runs each statement on the pool and records
//! it itself (text, time, rows), so sqlx does not have to build its `sqlx::query` event
//! for it (its summary parse and text formatting were the largest single cost of the
//! capture, ~5.6k instructions a statement).
//!
//! While a wrapped statement is polled or dropped, the thread is marked
//! ([`in_wrapped_statement`]): the capture's tracing layer then answers `enabled = false`
//! for `sqlx::query`, which disables the event for the whole subscriber, so sqlx skips
//! building it; and the layer never counts a wrapped statement a second time.
//! Statements run on the pool itself (a clone of the `PgPool`, `begin`, `acquire`) still
//! reach the capture through sqlx's event, as before.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use futures_core::Stream;
use pin_project_lite::pin_project;
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Describe, Either, Execute, Executor, PgPool, Postgres};

use super::DbCapture;

thread_local! {
    static IN_WRAPPED: Cell<bool> = const { Cell::new(false) };
}

/// Whether a [`CapturedPool`] statement is being polled or dropped on this thread: sqlx
/// statement events raised now belong to a statement the wrapper records itself.
pub(super) fn in_wrapped_statement() -> bool {
    IN_WRAPPED.with(Cell::get)
}

/// Marks the thread for the guard's lifetime (restored on unwind too).
struct Marked(bool);

impl Marked {
    fn enter() -> Self {
        Self(IN_WRAPPED.with(|c| c.replace(true)))
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        let was = self.0;
        IN_WRAPPED.with(|c| c.set(was));
    }
}

/// A `PgPool` whose statements the [`DbCapture`] records directly (see the module docs).
///
/// `sqlx::query(…).fetch_one(&state.pool)` compiles unchanged when `state.pool` is a
/// `CapturedPool`; everything else of the pool is reached through `Deref` (`begin`,
/// `acquire`, `close`, gauges). Cheap to clone.
///
/// The time recorded for `fetch_one`, `fetch_optional`, `fetch_all` and `execute` starts
/// once a connection is acquired, like sqlx's own; for the streams (`fetch`,
/// `fetch_many`, `execute_many`) it starts at the first poll and includes the acquire.
#[derive(Clone)]
pub struct CapturedPool {
    pool: PgPool,
    /// `None`: [`without_capture`](CapturedPool::without_capture), the plain pool.
    capture: Option<DbCapture>,
}

impl fmt::Debug for CapturedPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapturedPool")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl Deref for CapturedPool {
    type Target = PgPool;
    fn deref(&self) -> &PgPool {
        &self.pool
    }
}

impl CapturedPool {
    /// `pool` with its statements recorded by `capture` (and `capture`'s setup check
    /// satisfied: [`CaptureSetup::pool_wrapped`](super::CaptureSetup::pool_wrapped)).
    pub fn new(pool: PgPool, capture: &DbCapture) -> Self {
        capture.mark_pool_wrapped();
        Self {
            pool,
            capture: Some(capture.clone()),
        }
    }

    /// `pool` as it is, nothing recorded: the same type with the capture switched off (a
    /// configuration flag, a benchmark's baseline). Each call goes straight to the pool.
    pub fn without_capture(pool: PgPool) -> Self {
        Self {
            pool,
            capture: None,
        }
    }

    /// The pool underneath (its statements go through sqlx's event, not the wrapper).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The capture the statements go to (`None` for
    /// [`without_capture`](Self::without_capture)).
    pub fn capture(&self) -> Option<&DbCapture> {
        self.capture.as_ref()
    }
}

/// One statement being run: recorded once, when it completes or is dropped.
struct Pending<'a> {
    capture: &'a DbCapture,
    sql: &'a str,
    start: Option<Instant>,
    rows_returned: u64,
    rows_affected: u64,
    recorded: bool,
}

impl<'a> Pending<'a> {
    fn new(capture: &'a DbCapture, sql: &'a str, start: Option<Instant>) -> Self {
        Self {
            capture,
            sql,
            start,
            rows_returned: 0,
            rows_affected: 0,
            recorded: false,
        }
    }

    fn record(&mut self) {
        // Never started (dropped before its first poll): sqlx ran nothing.
        let Some(start) = self.start else { return };
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let elapsed: Duration = start.elapsed();
        self.capture
            .record_executed(self.sql, elapsed, self.rows_returned, self.rows_affected);
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.record();
    }
}

pin_project! {
    /// A wrapped statement's future: polled (and dropped) with the thread marked.
    struct Marking<F> {
        #[pin]
        inner: Option<F>,
    }

    impl<F> PinnedDrop for Marking<F> {
        fn drop(this: Pin<&mut Self>) {
            let _marked = Marked::enter();
            this.project().inner.set(None);
        }
    }
}

impl<F: Future> Future for Marking<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _marked = Marked::enter();
        match self.project().inner.as_pin_mut() {
            Some(inner) => inner.poll(cx),
            // Only after a `Ready`, which a caller never polls again.
            None => Poll::Pending,
        }
    }
}

fn marking<'e, F>(future: F) -> BoxFuture<'e, F::Output>
where
    F: Future + Send + 'e,
{
    Box::pin(Marking {
        inner: Some(future),
    })
}

/// A wrapped statement's stream: rows counted, recorded at its end or drop.
struct Recorded<'e> {
    inner: Option<BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>>,
    pending: Pending<'e>,
}

impl Stream for Recorded<'_> {
    type Item = Result<Either<PgQueryResult, PgRow>, sqlx::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let _marked = Marked::enter();
        this.pending.start.get_or_insert_with(Instant::now);
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let item = std::task::ready!(inner.as_mut().poll_next(cx));
        match &item {
            Some(Ok(Either::Left(done))) => this.pending.rows_affected += done.rows_affected(),
            Some(Ok(Either::Right(_))) => this.pending.rows_returned += 1,
            Some(Err(_)) => {}
            None => {
                this.inner = None;
                this.pending.record();
            }
        }
        Poll::Ready(item)
    }
}

impl Drop for Recorded<'_> {
    fn drop(&mut self) {
        let _marked = Marked::enter();
        self.inner = None;
        self.pending.record();
    }
}

impl<'c> Executor<'c> for &'c CapturedPool {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let Some(capture) = &self.capture else {
            return self.pool.fetch_many(query);
        };
        let sql = query.sql();
        Box::pin(Recorded {
            inner: Some(self.pool.fetch_many(query)),
            pending: Pending::new(capture, sql, None),
        })
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let Some(capture) = &self.capture else {
            return self.pool.fetch_optional(query);
        };
        let sql = query.sql();
        marking(async move {
            let mut conn = self.pool.acquire().await?;
            let mut pending = Pending::new(capture, sql, Some(Instant::now()));
            let row = conn.fetch_optional(query).await;
            if let Ok(Some(_)) = &row {
                pending.rows_returned = 1;
            }
            pending.record();
            row
        })
    }

    fn execute<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<PgQueryResult, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let Some(capture) = &self.capture else {
            return self.pool.execute(query);
        };
        let sql = query.sql();
        marking(async move {
            let mut conn = self.pool.acquire().await?;
            let mut pending = Pending::new(capture, sql, Some(Instant::now()));
            let done = conn.execute(query).await;
            if let Ok(done) = &done {
                pending.rows_affected = done.rows_affected();
            }
            pending.record();
            done
        })
    }

    fn fetch_all<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Vec<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        let Some(capture) = &self.capture else {
            return self.pool.fetch_all(query);
        };
        let sql = query.sql();
        marking(async move {
            let mut conn = self.pool.acquire().await?;
            let mut pending = Pending::new(capture, sql, Some(Instant::now()));
            let mut rows = Vec::new();
            let mut steps = conn.fetch_many(query);
            let end = loop {
                match std::future::poll_fn(|cx| steps.as_mut().poll_next(cx)).await {
                    Some(Ok(Either::Left(done))) => pending.rows_affected += done.rows_affected(),
                    Some(Ok(Either::Right(row))) => rows.push(row),
                    Some(Err(e)) => break Err(e),
                    None => break Ok(()),
                }
            };
            drop(steps);
            pending.rows_returned = u64::try_from(rows.len()).unwrap_or(u64::MAX);
            pending.record();
            end.map(|()| rows)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.describe(sql)
    }
}
