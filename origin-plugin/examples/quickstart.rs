//! The quick start of docs/origin-plugin.md, verbatim (a test checks they match).
use std::time::Duration;

use axum::{
    extract::{Path, State},
    routing::get,
    Json, Router,
};
use cachefront_origin::{
    admin::{AdminConfig, AdminRouter},
    cache_tags::{CacheTagLayer, CacheTags},
    db::{DbCapture, DbCaptureConfig},
    health::{GracefulShutdown, Health, PostgresCheck},
    metrics::Metrics,
    profiling::{Profiler, ProfilingConfig},
    sqlx::{self, postgres::PgPoolOptions, PgPool},
    Cachefront, Error,
};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let metrics = Metrics::new();
    let capture = DbCapture::with_metrics(DbCaptureConfig::default(), &metrics);
    // Logs (RUST_LOG, default info) and query capture in one subscriber. Not
    // `fmt().with_env_filter(…).init()`: that subscriber has no capture in it.
    capture.init_logging()?;

    let url = std::env::var("DATABASE_URL")
        .map_err(|_| Error::Config("DATABASE_URL is required".into()))?;
    let pool = PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(3)) // sqlx's default wait is 30 s
        .connect(&url)
        .await?;
    metrics.observe_pg_pool("main", pool.clone());
    let health = Health::builder()
        .metrics(&metrics)
        .readiness_check(PostgresCheck::new(pool.clone()))
        .warn_check(capture.health_check()) // reported, never fails readiness
        .build();
    let profiler = Profiler::with_metrics(ProfilingConfig::default(), &metrics);

    let routes = Router::new()
        .route("/products/{id}", get(product))
        .route("/products/{id}/related", get(related))
        .with_state(pool)
        .merge(health.router()); // /livez /readyz /startupz, status only
                                 // Every layer in its right order, in one `layer` call; probes and /metrics uncounted.
    let app = Cachefront::builder()
        .metrics(&metrics)
        .profiling(&profiler)
        .db_capture(&capture)
        .cache_tags(CacheTagLayer::new().metrics(&metrics))
        .apply(routes);

    // Operator routes on their own listener (ADMIN_BIND, default 127.0.0.1:9091).
    let admin_config = AdminConfig::from_env()?;
    let admin = AdminRouter::new()
        .metrics(&metrics)
        .health(&health)
        .profiler(&profiler)
        .db_capture(&capture)
        .token(admin_config.token.clone())
        .build();

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let admin_listener = tokio::net::TcpListener::bind(admin_config.bind).await?;
    println!("listening on http://{}", listener.local_addr()?);
    println!("admin on http://{}", admin_listener.local_addr()?);
    GracefulShutdown::new(&health)
        .serve_with_admin(listener, app, admin_listener, admin)
        .await?;
    Ok(())
}

#[derive(serde::Serialize, sqlx::FromRow)]
struct Product {
    id: i64,
    name: String,
}

async fn load(pool: &PgPool, id: i64) -> Result<Product, Error> {
    sqlx::query_as("SELECT $1::bigint AS id, 'Product ' || $1 AS name")
        .bind(id)
        .fetch_one(pool)
        .await
        .map_err(Error::from)
}

// A bad id is axum's own 400; it still gets `Cache-Control: no-store`.
async fn product(
    State(pool): State<PgPool>,
    Path(id): Path<i64>,
) -> Result<impl axum::response::IntoResponse, Error> {
    let p = load(&pool, id).await?;
    Ok((
        [("cache-control", "public, s-maxage=60")],
        CacheTags::new([format!("product:{id}")]),
        Json(p),
    ))
}

// One query per related product: the N+1 the capture warns about (fix: one `= ANY($1)`).
async fn related(
    State(pool): State<PgPool>,
    Path(id): Path<i64>,
) -> Result<Json<Vec<Product>>, Error> {
    let mut out = Vec::new();
    for other in id + 1..=id + 5 {
        out.push(load(&pool, other).await?);
    }
    Ok(Json(out))
}
