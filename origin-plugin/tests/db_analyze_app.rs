//! The analyzer fed by a running app (`DATABASE_URL`, see `scripts/with-postgres.sh`): the
//! capture's `GET /debug/queries` gives the hot statements, peak concurrency and pool
//! acquire waits; the analyzer plans the statements generically and sizes the pool.
//!
//! Alone in its test binary: the capture listens to sqlx's tracing events through a
//! thread-scoped subscriber, and tracing caches a callsite's interest for the whole
//! process the first time any thread hits it (see tests/db.rs); another test's queries on
//! another thread could otherwise hide sqlx's events from this one.

mod support;

use std::str::FromStr;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use cachefront_origin::admin::BearerToken;
use cachefront_origin::db::analyze::plan::FindingKind;
use cachefront_origin::db::analyze::sources::{fetch_app_snapshot, QuerySource};
use cachefront_origin::db::analyze::{
    run_analyzer, AnalyzeOptions, AnalyzerConfig, PlanMode, PoolSizingConfig,
};
use cachefront_origin::db::{DbCapture, DbCaptureConfig};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tracing_subscriber::layer::SubscriberExt;

const APP_TOKEN: &str = "analyzer-test-token-0123456789abcdef";

async fn customers(database_url: &str) -> (PgPool, String) {
    let schema = format!("db_report_{}_app", std::process::id());
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await
        .expect("connect to DATABASE_URL");
    for statement in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
        format!("CREATE TABLE {schema}.customers (id bigint PRIMARY KEY, email text NOT NULL)"),
        format!(
            "INSERT INTO {schema}.customers SELECT g, 'customer-' || g || '@example.com' \
             FROM generate_series(1, 20000) g"
        ),
        format!("ANALYZE {schema}.customers"),
    ] {
        sqlx::query(&statement)
            .execute(&pool)
            .await
            .expect("create the test table");
    }
    (pool, schema)
}

async fn lookup(
    State(pool): State<PgPool>,
    Path(n): Path<u32>,
) -> Result<String, (axum::http::StatusCode, String)> {
    // Slow enough that eight requests queue for the pool's two connections.
    let row = sqlx::query("SELECT pg_sleep(0.05), id FROM customers WHERE email = $1")
        .bind(format!("customer-{n}@example.com"))
        .fetch_optional(&pool)
        .await
        .map_err(|e| (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(format!("{}", row.is_some()))
}

#[tokio::test(flavor = "current_thread")]
async fn app_capture_feeds_hot_queries_and_pool_sizing() {
    let Some(url) = support::database_url() else {
        return;
    };
    let (setup, s) = customers(&url).await;

    let capture = DbCapture::new(DbCaptureConfig {
        debug_token: Some(BearerToken::new(APP_TOKEN).expect("long enough")),
        ..DbCaptureConfig::default()
    });
    // Before the first query of the app's pool (see tests/db.rs).
    let _subscriber = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(capture.tracing_layer()),
    );
    let options = PgConnectOptions::from_str(&url)
        .expect("DATABASE_URL parses")
        .options([("search_path", s.as_str())]);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        // sqlx reports each acquire's wait as a tracing event only when asked to.
        .acquire_time_level(log::LevelFilter::Debug)
        .connect_with(options)
        .await
        .expect("connect");
    capture.watch_pg_pool(pool.clone());
    let app = Router::new()
        .route("/customers/{n}", get(lookup))
        .with_state(pool.clone())
        .layer(capture.layer())
        .merge(capture.router());
    let server = support::TestServer::start(app).await;
    let http = support::http();

    let mut requests = tokio::task::JoinSet::new();
    for n in 1..=8 {
        let (http, url) = (http.clone(), server.url(&format!("/customers/{n}")));
        requests.spawn(async move { http.get(url).send().await.map(|r| r.status()) });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(
            status.expect("request task").expect("response"),
            reqwest::StatusCode::OK
        );
    }

    let unauthorized = support::get(&http, server.url("/debug/queries")).await;
    assert_eq!(unauthorized.status(), reqwest::StatusCode::UNAUTHORIZED);
    let snapshot = fetch_app_snapshot(&server.url(""), Some(APP_TOKEN))
        .await
        .expect("snapshot");
    let stat = snapshot
        .fingerprints
        .iter()
        .find(|f| f.sample.contains("WHERE email = $1"))
        .unwrap_or_else(|| panic!("the lookup was captured: {snapshot:#?}"));
    assert_eq!(stat.calls, 8);
    assert_eq!(snapshot.concurrency.peak_concurrent_statements, 2);
    assert!(
        snapshot.concurrency.peak_in_flight_requests >= 3,
        "{snapshot:#?}"
    );
    assert!(snapshot.acquire.count >= 8, "{snapshot:#?}");
    assert!(snapshot.acquire.p95_ms >= 10.0, "{snapshot:#?}");
    assert_eq!(snapshot.pool.map(|p| p.max_connections), Some(2));

    let report = run_analyzer(
        &url,
        &AnalyzerConfig {
            app: Some(snapshot),
            pg_stat_statements: false,
            index_health: None,
            pool: Some(PoolSizingConfig {
                app_instances: 2,
                ..PoolSizingConfig::default()
            }),
            query_options: AnalyzeOptions {
                // The sample reads `customers` through the app's search_path.
                settings: vec![("search_path".to_owned(), s.clone())],
                ..AnalyzeOptions::default()
            },
            ..AnalyzerConfig::default()
        },
    )
    .await
    .expect("analyzer");
    let hot = &report.queries[0];
    assert_eq!(hot.source, QuerySource::App, "{report:#?}");
    assert_eq!(hot.calls, Some(8));
    assert_eq!(hot.error, None, "{hot:#?}");
    assert_eq!(hot.plan_mode, Some(PlanMode::GenericPlan));
    assert_eq!(
        of_kind(&hot.findings, FindingKind::SeqScanSelectiveFilter)[0].table,
        format!("{s}.customers")
    );
    assert_eq!(hot.index_advice.len(), 1, "{hot:#?}");

    let sizing = report.pool.expect("pool section");
    assert_eq!(sizing.input.peak_concurrent_statements, Some(2));
    assert_eq!(sizing.input.current_pool_max, Some(2));
    assert_eq!(sizing.input.app_instances, 2);
    // Waits at a saturated pool of 2: at least 2 + 1.
    assert_eq!(sizing.demand, Some(3), "{sizing:#?}");
    assert_eq!(sizing.recommended_max_connections, 3, "{sizing:#?}");
    assert!(sizing.per_instance_budget >= 3, "{sizing:#?}");

    drop(server);
    pool.close().await;
    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {s} CASCADE"))
        .execute(&setup)
        .await;
    setup.close().await;
}

fn of_kind(
    findings: &[cachefront_origin::db::analyze::plan::PlanFinding],
    kind: FindingKind,
) -> Vec<&cachefront_origin::db::analyze::plan::PlanFinding> {
    findings.iter().filter(|f| f.kind == kind).collect()
}
