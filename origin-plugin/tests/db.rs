//! Query capture and N+1 detection against a real PostgreSQL (`DATABASE_URL`, see
//! `scripts/with-postgres.sh`): an axum app whose handlers run through sqlx, with the
//! capture listening to sqlx's own statement events.

mod support;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use cachefront_origin::db::{CapturedQueries, DbCapture, DbCaptureConfig, SqlFingerprint};
use cachefront_origin::metrics::Metrics;
use cachefront_origin::profiling::{Profiler, ProfilingConfig, SERVER_TIMING};
use sqlx::PgPool;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{EnvFilter, Layer};

use support::LogLines;

const PRODUCTS: &str = "SELECT id, name, category_id FROM products ORDER BY id LIMIT 50";
const CATEGORY_BY_ID: &str = "SELECT id, name FROM categories WHERE id = $1";
const CATEGORIES_BY_IDS: &str = "SELECT id, name FROM categories WHERE id = ANY($1)";
const N_PLUS_ONE_ROUTE: &str = "/products/with-categories/one-by-one";
const BATCHED_ROUTE: &str = "/products/with-categories/batched";

/// A schema of its own (dropped at the end) with 50 products in 10 categories, and a pool
/// whose `search_path` points at it.
struct Catalog {
    pool: PgPool,
    schema: String,
}

impl Catalog {
    async fn create(database_url: &str, name: &str) -> Self {
        let schema = format!("db_capture_{}_{name}", std::process::id());
        let pool = support::catalog_in_fresh_schema(database_url, &schema, 10, 50).await;
        Self { pool, schema }
    }

    async fn drop_schema(self) {
        support::drop_schema(self.pool, &self.schema).await;
    }
}

type HandlerResult = Result<String, (StatusCode, String)>;

fn internal(e: sqlx::Error) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The N+1 shape: one query for the products, then one per product for its category.
async fn products_with_categories_one_by_one(State(pool): State<PgPool>) -> HandlerResult {
    let lines = support::products_one_by_one(&pool, PRODUCTS, CATEGORY_BY_ID)
        .await
        .map_err(internal)?;
    Ok(lines.join("\n"))
}

/// The fix: the categories of all products in one `= ANY($1)` query.
async fn products_with_categories_batched(State(pool): State<PgPool>) -> HandlerResult {
    let products: Vec<(i64, String, i64)> = sqlx::query_as(PRODUCTS)
        .fetch_all(&pool)
        .await
        .map_err(internal)?;
    let ids: Vec<i64> = products.iter().map(|p| p.2).collect();
    let categories: Vec<(i64, String)> = sqlx::query_as(CATEGORIES_BY_IDS)
        .bind(&ids)
        .fetch_all(&pool)
        .await
        .map_err(internal)?;
    let lines: Vec<String> = products
        .iter()
        .map(|(id, name, category_id)| {
            let category = categories
                .iter()
                .find(|(cid, _)| cid == category_id)
                .map_or("?", |(_, n)| n.as_str());
            format!("{id} {name} {category}")
        })
        .collect();
    Ok(lines.join("\n"))
}

struct App {
    capture: DbCapture,
    profiler: Profiler,
    metrics: Metrics,
}

fn app(config: DbCaptureConfig) -> App {
    let metrics = Metrics::new();
    App {
        capture: DbCapture::with_metrics(config, &metrics),
        profiler: Profiler::with_metrics(ProfilingConfig::default(), &metrics),
        metrics,
    }
}

impl App {
    fn router(&self, pool: PgPool) -> Router {
        Router::new()
            .route(N_PLUS_ONE_ROUTE, get(products_with_categories_one_by_one))
            .route(BATCHED_ROUTE, get(products_with_categories_batched))
            .with_state(pool)
            .layer(self.capture.layer())
            .layer(self.profiler.layer())
            .layer(self.metrics.layer())
    }
}

/// `cachefront_origin_db_queries_total{route="none"}`, 0 when absent.
fn queries_outside_requests(metrics: &Metrics) -> u64 {
    let series = "cachefront_origin_db_queries_total{route=\"none\"} ";
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Installed before the first query of the test: tracing caches each callsite's interest
/// when it is first hit, and with thread-scoped subscribers a first hit on a thread without
/// one would cache sqlx's statement callsite as disabled for everyone (until the next
/// subscriber is registered). Applications install theirs globally at start-up.
///
/// The recommended subscriber: the capture layer unfiltered (it needs sqlx's DEBUG
/// statement events), the log output filtered to INFO on its own layer. Installed for this
/// thread only; the tests run on a current-thread runtime, so every task sees it.
fn install_subscriber(capture: &DbCapture, logs: &LogLines) -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::registry()
        .with(capture.tracing_layer())
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(logs.clone())
                .with_filter(EnvFilter::new("info")),
        );
    tracing::subscriber::set_default(subscriber)
}

async fn get_route(router: &Router, path: &str) -> Response {
    router
        .clone()
        .oneshot(
            Request::builder()
                .uri(path)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("router is infallible")
}

fn captured(res: &Response) -> CapturedQueries {
    res.extensions()
        .get::<CapturedQueries>()
        .cloned()
        .expect("the capture layer attaches CapturedQueries")
}

fn server_timing(res: &Response) -> String {
    res.headers()
        .get(SERVER_TIMING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn n_plus_one_loop_is_detected_with_its_count_and_fingerprint() {
    let Some(url) = support::database_url() else {
        return;
    };
    let app = app(DbCaptureConfig::default());
    let logs = LogLines::default();
    let _subscriber = install_subscriber(&app.capture, &logs);
    let catalog = Catalog::create(&url, "detect").await;
    let router = app.router(catalog.pool.clone());
    let guard = app.capture.n_plus_one_guard();

    let res = get_route(&router, N_PLUS_ONE_ROUTE).await;
    assert_eq!(res.status(), StatusCode::OK);
    let queries = captured(&res);
    let expected = SqlFingerprint::of(CATEGORY_BY_ID);

    assert_eq!(queries.queries, 51, "{queries:#?}");
    assert_eq!(queries.n_plus_one.len(), 1, "{queries:#?}");
    let detection = &queries.n_plus_one[0];
    assert_eq!(detection.count, 50);
    assert_eq!(detection.fingerprint, expected.id());
    assert_eq!(
        detection.normalized,
        "SELECT id, name FROM categories WHERE id = ?"
    );
    assert_eq!(detection.route, N_PLUS_ONE_ROUTE);
    assert_eq!(detection.method, "GET");
    assert_eq!(detection.sample, CATEGORY_BY_ID);

    // The profiling layer got the queries: `db;dur=…;desc="51 queries"`.
    assert!(
        server_timing(&res).contains("desc=\"51 queries\""),
        "{}",
        server_timing(&res)
    );

    // The warning names route, fingerprint, count and a sample.
    let logs = logs.text();
    let warning = logs
        .lines()
        .find(|l| l.contains("cachefront_origin::n_plus_one"))
        .unwrap_or_else(|| panic!("no N+1 warning in the logs:\n{logs}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains(&format!("route={N_PLUS_ONE_ROUTE}")),
        "{warning}"
    );
    assert!(
        warning.contains(&format!("fingerprint={}", expected.id())),
        "{warning}"
    );
    assert!(warning.contains("count=50"), "{warning}");
    assert!(warning.contains(CATEGORY_BY_ID), "{warning}");

    // Metrics per route.
    let text = app.metrics.render();
    assert!(
        text.contains(&format!(
            "cachefront_origin_db_n_plus_one_total{{route=\"{N_PLUS_ONE_ROUTE}\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "cachefront_origin_db_queries_total{{route=\"{N_PLUS_ONE_ROUTE}\"}} 51"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "cachefront_origin_db_query_duration_seconds_count{{route=\"{N_PLUS_ONE_ROUTE}\"}} 51"
        )),
        "{text}"
    );

    // The guard API fails the test harness with the same detection.
    let error = guard.check().expect_err("the guard sees the N+1");
    assert_eq!(error.detections, vec![detection.clone()]);

    catalog.drop_schema().await;
}

#[tokio::test]
async fn batched_query_is_not_reported_as_n_plus_one() {
    let Some(url) = support::database_url() else {
        return;
    };
    let app = app(DbCaptureConfig::default());
    let logs = LogLines::default();
    let _subscriber = install_subscriber(&app.capture, &logs);
    let catalog = Catalog::create(&url, "batched").await;
    let router = app.router(catalog.pool.clone());
    let guard = app.capture.n_plus_one_guard();

    let res = get_route(&router, BATCHED_ROUTE).await;
    assert_eq!(res.status(), StatusCode::OK);
    let queries = captured(&res);
    assert_eq!(queries.queries, 2, "{queries:#?}");
    assert!(queries.n_plus_one.is_empty(), "{queries:#?}");
    assert!(queries.by_fingerprint.iter().all(|f| f.count == 1));
    assert!(
        server_timing(&res).contains("desc=\"2 queries\""),
        "{}",
        server_timing(&res)
    );
    assert_eq!(guard.check(), Ok(()));
    assert!(!logs.text().contains("cachefront_origin::n_plus_one"));
    assert!(!app
        .metrics
        .render()
        .contains("cachefront_origin_db_n_plus_one_total{"));

    catalog.drop_schema().await;
}

#[tokio::test]
async fn allow_listed_fingerprint_is_not_reported() {
    let Some(url) = support::database_url() else {
        return;
    };
    let app = app(DbCaptureConfig {
        n_plus_one_allow: vec![SqlFingerprint::of(CATEGORY_BY_ID).id()],
        ..Default::default()
    });
    let logs = LogLines::default();
    let _subscriber = install_subscriber(&app.capture, &logs);
    let catalog = Catalog::create(&url, "allow").await;
    let router = app.router(catalog.pool.clone());

    let res = get_route(&router, N_PLUS_ONE_ROUTE).await;
    assert_eq!(res.status(), StatusCode::OK);
    let queries = captured(&res);
    assert_eq!(queries.queries, 51, "{queries:#?}");
    assert!(queries.n_plus_one.is_empty(), "{queries:#?}");
    assert!(app.capture.detections().is_empty());

    catalog.drop_schema().await;
}

#[tokio::test]
async fn threshold_above_the_repeat_count_is_not_reported() {
    let Some(url) = support::database_url() else {
        return;
    };
    let app = app(DbCaptureConfig {
        n_plus_one_threshold: 51,
        ..Default::default()
    });
    let logs = LogLines::default();
    let _subscriber = install_subscriber(&app.capture, &logs);
    let catalog = Catalog::create(&url, "threshold").await;
    let router = app.router(catalog.pool.clone());

    let res = get_route(&router, N_PLUS_ONE_ROUTE).await;
    assert!(captured(&res).n_plus_one.is_empty());

    catalog.drop_schema().await;
}

#[tokio::test]
async fn strict_mode_fails_the_request_that_ran_an_n_plus_one() {
    let Some(url) = support::database_url() else {
        return;
    };
    let app = app(DbCaptureConfig {
        strict: true,
        ..Default::default()
    });
    let logs = LogLines::default();
    let _subscriber = install_subscriber(&app.capture, &logs);
    let catalog = Catalog::create(&url, "strict").await;
    let router = app.router(catalog.pool.clone());

    // Batched passes in strict mode.
    let res = get_route(&router, BATCHED_ROUTE).await;
    assert_eq!(res.status(), StatusCode::OK);

    // The N+1 panics in the response future: the task that made the request fails.
    let router = router.clone();
    let outcome = tokio::spawn(async move { get_route(&router, N_PLUS_ONE_ROUTE).await }).await;
    let panic = outcome.expect_err("strict mode fails the request");
    assert!(panic.is_panic());
    let message = panic
        .into_panic()
        .downcast::<String>()
        .map(|s| *s)
        .unwrap_or_default();
    assert!(message.contains("strict N+1 detection"), "{message}");
    assert!(
        message.contains(&SqlFingerprint::of(CATEGORY_BY_ID).id()),
        "{message}"
    );

    catalog.drop_schema().await;
}

#[tokio::test]
async fn queries_outside_a_request_are_counted_without_a_route() {
    let Some(url) = support::database_url() else {
        return;
    };
    let app = app(DbCaptureConfig::default());
    let logs = LogLines::default();
    let _subscriber = install_subscriber(&app.capture, &logs);
    let catalog = Catalog::create(&url, "background").await;
    let before = queries_outside_requests(&app.metrics);

    for id in 1..=3_i64 {
        let _: (i64, String) = sqlx::query_as(CATEGORY_BY_ID)
            .bind(id)
            .fetch_one(&catalog.pool)
            .await
            .expect("query");
    }
    assert_eq!(queries_outside_requests(&app.metrics), before + 3);
    assert!(app.capture.detections().is_empty());

    catalog.drop_schema().await;
}

#[tokio::test]
async fn repeated_n_plus_one_warns_once_per_interval_but_counts_every_time() {
    let Some(url) = support::database_url() else {
        return;
    };
    let app = app(DbCaptureConfig {
        n_plus_one_warn_interval: std::time::Duration::from_secs(3600),
        ..Default::default()
    });
    let logs = LogLines::default();
    let _subscriber = install_subscriber(&app.capture, &logs);
    let catalog = Catalog::create(&url, "ratelimit").await;
    let router = app.router(catalog.pool.clone());
    let guard = app.capture.n_plus_one_guard();
    for _ in 0..6 {
        assert_eq!(
            get_route(&router, N_PLUS_ONE_ROUTE).await.status(),
            StatusCode::OK
        );
    }
    let warnings = logs
        .text()
        .lines()
        .filter(|l| l.contains("cachefront_origin::n_plus_one"))
        .count();
    assert_eq!(warnings, 1, "{}", logs.text());
    assert!(app.metrics.render().contains(&format!(
        "cachefront_origin_db_n_plus_one_total{{route=\"{N_PLUS_ONE_ROUTE}\"}} 6"
    )));
    let detections = guard.check().err().map_or(0, |e| e.detections.len());
    assert_eq!(detections, 6);
    catalog.drop_schema().await;
}

/// Work a handler hands to `tokio::spawn` runs outside the request being polled: wrapped
/// in `in_current_request` its statements are the request's; unwrapped they count under
/// `route="none"`.
#[tokio::test]
async fn spawned_work_counts_as_the_request_only_when_wrapped() {
    let Some(url) = support::database_url() else {
        return;
    };
    let app = app(DbCaptureConfig::default());
    let logs = LogLines::default();
    let _subscriber = install_subscriber(&app.capture, &logs);
    let catalog = Catalog::create(&url, "spawned").await;
    let one = |pool: PgPool| async move {
        let _: (i64, String) = sqlx::query_as(CATEGORY_BY_ID)
            .bind(1_i64)
            .fetch_one(&pool)
            .await
            .expect("query");
    };
    let router = Router::new()
        .route(
            "/spawned",
            get(move |State(pool): State<PgPool>| async move {
                for _ in 0..2 {
                    tokio::spawn(cachefront_origin::db::in_current_request(one(pool.clone())))
                        .await
                        .expect("wrapped task");
                }
                tokio::spawn(one(pool.clone())).await.expect("bare task");
                "ok"
            }),
        )
        .with_state(catalog.pool.clone())
        .layer(app.capture.layer())
        .layer(app.profiler.layer());
    let before = queries_outside_requests(&app.metrics);

    let res = get_route(&router, "/spawned").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(captured(&res).queries, 2, "{:#?}", captured(&res));
    assert!(server_timing(&res).contains("desc=\"2 queries\""));
    assert_eq!(queries_outside_requests(&app.metrics), before + 1);

    catalog.drop_schema().await;
}
