//! The executor wrapper (`db::CapturedPool`) against a real PostgreSQL (`DATABASE_URL`,
//! see `scripts/with-postgres.sh`): the same handlers, run once on the plain `PgPool`
//! (captured from sqlx's statement events) and once on the wrapper, give the same counts,
//! fingerprints, N+1 detections, metrics and lifetime statistics; with both paths
//! installed nothing is counted twice, and sqlx builds no event for wrapped statements.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use cachefront_origin::db::{CapturedPool, CapturedQueries, DbCapture, DbCaptureConfig};
use cachefront_origin::metrics::Metrics;
use cachefront_origin::profiling::{Profiler, ProfilingConfig, SERVER_TIMING};
use sqlx::{Executor, PgPool, Postgres};
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer;

const PRODUCTS: &str = "SELECT id, name, category_id FROM products ORDER BY id LIMIT 20";
const CATEGORY_BY_ID: &str = "SELECT id, name FROM categories WHERE id = $1";
const TOUCH: &str = "UPDATE categories SET name = name WHERE id <= $1";
const ROUTE: &str = "/products/with-categories";

/// A schema of its own with 20 products in 5 categories, and a pool in it.
async fn create_catalog(database_url: &str, name: &str) -> (PgPool, String) {
    let schema = format!("db_wrapper_{}_{name}", std::process::id());
    let pool = support::catalog_in_fresh_schema(database_url, &schema, 5, 20).await;
    (pool, schema)
}

/// One handler for both pools: `fetch_all`, then an N+1 loop of `fetch_one` (20 times),
/// a `fetch_optional` and an `execute`, the executor being `&PgPool` or `&CapturedPool`.
async fn products_with_categories<P>(State(pool): State<P>) -> Result<String, (StatusCode, String)>
where
    for<'c> &'c P: Executor<'c, Database = Postgres>,
{
    let internal = |e: sqlx::Error| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let lines = support::products_one_by_one(&pool, PRODUCTS, CATEGORY_BY_ID)
        .await
        .map_err(internal)?;
    let missing: Option<(i64, String)> = sqlx::query_as(CATEGORY_BY_ID)
        .bind(1000_i64)
        .fetch_optional(&pool)
        .await
        .map_err(internal)?;
    assert!(missing.is_none());
    sqlx::query(TOUCH)
        .bind(2_i64)
        .execute(&pool)
        .await
        .map_err(internal)?;
    Ok(lines.join("\n"))
}

fn router<P>(pool: P, capture: &DbCapture, profiler: &Profiler) -> Router
where
    P: Clone + Send + Sync + 'static,
    for<'c> &'c P: Executor<'c, Database = Postgres>,
{
    Router::new()
        .route(ROUTE, get(products_with_categories::<P>))
        .with_state(pool)
        .layer(capture.layer())
        .layer(profiler.layer())
}

/// Counts the `sqlx::query` events dispatched (built by sqlx) while it is installed. A
/// plain layer: it vetoes nothing and enables nothing the per-layer filters do not.
#[derive(Clone, Default)]
struct StatementEvents(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for StatementEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// What one request left behind, for comparing the two paths.
#[derive(Debug, PartialEq)]
struct Outcome {
    queries: u32,
    by_fingerprint: Vec<(String, String, u32)>,
    n_plus_one: Vec<(String, String, String, String, u32)>,
    server_timing_desc: String,
    queries_metric: String,
    n_plus_one_metric: String,
    lifetime: Vec<(String, u64, String)>,
}

fn series(text: &str, prefix: &str) -> String {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .collect::<Vec<_>>()
        .join("\n")
}

fn outcome(res: &Response, capture: &DbCapture, metrics: &Metrics) -> Outcome {
    let captured = res
        .extensions()
        .get::<CapturedQueries>()
        .cloned()
        .expect("the capture layer attaches CapturedQueries");
    let timing = res
        .headers()
        .get(SERVER_TIMING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let desc = timing
        .split(',')
        .find(|entry| entry.trim_start().starts_with("db;"))
        .and_then(|entry| entry.split("desc=").nth(1))
        .unwrap_or_default()
        .to_owned();
    let text = metrics.render();
    // The request's statements only (the schema's set-up may be counted too).
    let mut lifetime: Vec<(String, u64, String)> = capture
        .snapshot()
        .fingerprints
        .into_iter()
        .filter(|f| [PRODUCTS, CATEGORY_BY_ID, TOUCH].contains(&f.sample.as_str()))
        .map(|f| (f.fingerprint, f.calls, f.sample))
        .collect();
    lifetime.sort();
    Outcome {
        queries: captured.queries,
        by_fingerprint: captured
            .by_fingerprint
            .iter()
            .map(|f| {
                (
                    f.fingerprint.id(),
                    f.fingerprint.normalized().to_owned(),
                    f.count,
                )
            })
            .collect(),
        n_plus_one: captured
            .n_plus_one
            .iter()
            .map(|d| {
                (
                    d.route.clone(),
                    d.fingerprint.clone(),
                    d.normalized.clone(),
                    d.sample.clone(),
                    d.count,
                )
            })
            .collect(),
        server_timing_desc: desc,
        queries_metric: series(
            &text,
            &format!("cachefront_origin_db_queries_total{{route=\"{ROUTE}\"}}"),
        ),
        n_plus_one_metric: series(&text, "cachefront_origin_db_n_plus_one_total"),
        lifetime,
    }
}

struct Run {
    outcome: Outcome,
    events: usize,
}

/// One request on a fresh capture: through `pool` wrapped (`wrap`) or not, with the
/// capture's tracing layer in the subscriber or not (`tracing_layer`).
async fn run_once(url: &str, name: &str, wrap: bool, tracing_layer: bool) -> Run {
    let metrics = Metrics::new();
    let capture = DbCapture::with_metrics(DbCaptureConfig::default(), &metrics);
    let profiler = Profiler::with_metrics(ProfilingConfig::default(), &metrics);
    let events = StatementEvents::default();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::sink)
                .with_filter(tracing_subscriber::EnvFilter::new("info")),
        )
        .with(tracing_layer.then(|| capture.tracing_layer()))
        .with(events.clone());
    // Installed before the first statement (see tests/db.rs, `install_subscriber`).
    let _default = tracing::subscriber::set_default(subscriber);
    let (pool, schema) = create_catalog(url, name).await;
    let app = if wrap {
        router(
            CapturedPool::new(pool.clone(), &capture),
            &capture,
            &profiler,
        )
    } else {
        router(pool.clone(), &capture, &profiler)
    };
    // Only the request's statements: the schema's set-up ran before this capture counted.
    let before = events.0.load(Ordering::SeqCst);
    let res = app
        .oneshot(
            Request::builder()
                .uri(ROUTE)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("router is infallible");
    assert_eq!(res.status(), StatusCode::OK);
    let run = Run {
        outcome: outcome(&res, &capture, &metrics),
        events: events.0.load(Ordering::SeqCst) - before,
    };
    support::drop_schema(pool, &schema).await;
    run
}

#[tokio::test]
async fn the_wrapper_captures_what_the_event_path_captures() {
    let Some(url) = support::database_url() else {
        return;
    };
    let events = run_once(&url, "events", false, true).await;
    let wrapped = run_once(&url, "wrapped", true, true).await;
    let wrapped_alone = run_once(&url, "alone", true, false).await;

    // The event path, as tests/db.rs knows it: 1 + 20 + 1 + 1 statements, one N+1.
    let expected = &events.outcome;
    assert_eq!(expected.queries, 23, "{expected:#?}");
    assert_eq!(expected.n_plus_one.len(), 1, "{expected:#?}");
    assert_eq!(expected.n_plus_one[0].4, 21, "{expected:#?}");
    assert_eq!(
        expected.server_timing_desc, "\"23 queries\"",
        "{expected:#?}"
    );
    assert!(expected.queries_metric.ends_with(" 23"), "{expected:#?}");
    assert_eq!(events.events, 23, "sqlx built an event per statement");
    assert_eq!(expected.lifetime.len(), 3, "{expected:#?}");

    // The wrapper, with the tracing layer installed too (nothing counted twice) and alone.
    assert_eq!(&wrapped.outcome, expected);
    assert_eq!(&wrapped_alone.outcome, expected);
    // And sqlx built no statement event for it: the capture's layer turns it down for
    // every layer. (Without the capture's layer, the probe layer, which wants every
    // event, gets sqlx's events: nothing else in that subscriber wants them.)
    assert_eq!(wrapped.events, 0);
    assert_eq!(wrapped_alone.events, 23);
}

/// The wrapper's `Deref` reaches the pool: statements run on it (a transaction here)
/// still reach the capture through sqlx's event, under `route="none"` outside a request.
#[tokio::test]
async fn statements_on_the_pool_underneath_still_go_through_the_event_path() {
    let Some(url) = support::database_url() else {
        return;
    };
    let metrics = Metrics::new();
    let capture = DbCapture::with_metrics(DbCaptureConfig::default(), &metrics);
    let subscriber = tracing_subscriber::registry().with(capture.tracing_layer());
    let _default = tracing::subscriber::set_default(subscriber);
    let (pool, schema) = create_catalog(&url, "underneath").await;
    let wrapped = CapturedPool::new(pool.clone(), &capture);
    assert!(capture.setup().is_active());
    let none = || {
        series(
            &metrics.render(),
            "cachefront_origin_db_queries_total{route=\"none\"}",
        )
    };
    let before = none();

    let mut tx = wrapped.begin().await.expect("begin");
    let _: (i64, String) = sqlx::query_as(CATEGORY_BY_ID)
        .bind(1_i64)
        .fetch_one(&mut *tx)
        .await
        .expect("in the transaction");
    tx.commit().await.expect("commit");
    let _: (i64, String) = sqlx::query_as(CATEGORY_BY_ID)
        .bind(2_i64)
        .fetch_one(&wrapped)
        .await
        .expect("wrapped");

    // At least the two SELECTs (the transaction's through the event, outside a request),
    // whatever sqlx reports of BEGIN and COMMIT.
    let count = |text: &str| -> u64 {
        text.rsplit(' ')
            .next()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(count(&none()) >= count(&before) + 2, "{}", none());
    let by_id = capture
        .snapshot()
        .fingerprints
        .iter()
        .find(|f| f.sample == CATEGORY_BY_ID)
        .map(|f| f.calls);
    assert_eq!(by_id, Some(2));
    support::drop_schema(pool, &schema).await;
}
