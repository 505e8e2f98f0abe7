//! The smallest useful setup: metrics, profiling, health, cache tags and graceful
//! shutdown around a two-route axum app, no database. Operator routes are on a separate
//! admin listener, never on the public one.
//!
//! ```text
//! cargo run -p cachefront-origin --example minimal
//! curl -i localhost:3000/            # Cache-Tag, Server-Timing
//! curl localhost:9091/metrics        # admin listener
//! ```
//!
//! `BIND` (default `127.0.0.1:3000`), `ADMIN_BIND` (default `127.0.0.1:9091`),
//! `ADMIN_TOKEN` (optional, ≥ 32 characters: required on every admin request),
//! `SHUTDOWN_DRAIN_MS` (0), `SHUTDOWN_DEADLINE_MS` (30000). `GET /sleep/{ms}` (at most
//! 30 000) stands in for a slow handler.

use std::time::Duration;

use axum::extract::Path;
use axum::response::Html;
use axum::routing::get;
use axum::Router;
use cachefront_origin::admin::{AdminConfig, AdminRouter};
use cachefront_origin::cache_tags::{CacheTagLayer, CacheTags};
use cachefront_origin::health::{GracefulShutdown, Health};
use cachefront_origin::metrics::Metrics;
use cachefront_origin::profiling::{Profiler, ProfilingConfig};
use cachefront_origin::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let ms = |name: &str, default: u64| -> Result<Duration, Error> {
        match std::env::var(name) {
            Ok(v) => v
                .parse()
                .map(Duration::from_millis)
                .map_err(|_| Error::Config(format!("{name} must be milliseconds"))),
            Err(_) => Ok(Duration::from_millis(default)),
        }
    };

    let admin_config = AdminConfig::from_env()?;
    let metrics = Metrics::new();
    let health = Health::builder().metrics(&metrics).build();
    let profiler = Profiler::with_metrics(ProfilingConfig::default(), &metrics);

    let app = Router::new()
        .route(
            "/",
            get(|| async {
                (
                    CacheTags::new(["home"]),
                    Html("<h1>Hello from the origin</h1>"),
                )
            }),
        )
        .route("/sleep/{ms}", get(sleep))
        .merge(health.router())
        .layer(CacheTagLayer::new().metrics(&metrics))
        .layer(profiler.layer())
        .layer(metrics.layer());

    let admin = AdminRouter::new()
        .metrics(&metrics)
        .health(&health)
        .profiler(&profiler)
        .token(admin_config.token.clone())
        .build();

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let admin_listener = tokio::net::TcpListener::bind(admin_config.bind).await?;
    if let Some(warning) = admin_config.exposure_warning() {
        tracing::warn!("{warning}");
    }
    // Tests and scripts read these lines to find the ports when the binds end in :0.
    println!("minimal listening on http://{}", listener.local_addr()?);
    println!("minimal admin on http://{}", admin_listener.local_addr()?);
    GracefulShutdown::new(&health)
        .drain_delay(ms("SHUTDOWN_DRAIN_MS", 0)?)
        .deadline(ms("SHUTDOWN_DEADLINE_MS", 30_000)?)
        .serve_with_admin(listener, app, admin_listener, admin)
        .await?;
    println!("minimal stopped");
    Ok(())
}

async fn sleep(Path(raw): Path<String>) -> Result<String, Error> {
    let ms: u64 = raw
        .parse()
        .ok()
        .filter(|ms| *ms <= 30_000)
        .ok_or_else(|| Error::BadRequest("ms must be an integer from 0 to 30000".to_owned()))?;
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(format!("slept {ms} ms\n"))
}
