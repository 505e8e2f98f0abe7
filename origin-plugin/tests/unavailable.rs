//! An exhausted pool, against a real PostgreSQL (`DATABASE_URL`): the handler's `Error`
//! answers 503 with `Retry-After: 1` and `no-store`, and the log says so once per interval,
//! not once per request. A file of its own: the warnings' limiter is per process.
#![cfg(feature = "postgres")]
mod support;

use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, Request};
use axum::routing::get;
use axum::Router;
use cachefront_origin::sqlx::{self, postgres::PgPoolOptions, PgPool};
use tower::ServiceExt;

use support::LogLines;

async fn one(State(pool): State<PgPool>) -> Result<String, cachefront_origin::Error> {
    let n: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
    Ok(n.to_string())
}

async fn get_one(app: &Router) -> (u16, Option<String>, Option<String>, serde_json::Value) {
    let res = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/one")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    let status = res.status().as_u16();
    let header_of = |name| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (retry_after, cache_control) = (
        header_of(header::RETRY_AFTER),
        header_of(header::CACHE_CONTROL),
    );
    let body = axum::body::to_bytes(res.into_body(), 1 << 16)
        .await
        .expect("body");
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, retry_after, cache_control, json)
}

#[tokio::test]
async fn an_exhausted_pool_answers_503_with_retry_after_and_warns_once_per_interval() {
    let Some(url) = support::database_url() else {
        return;
    };
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(200))
        .connect(&url)
        .await
        .expect("connect");
    let app = Router::new()
        .route("/one", get(one))
        .with_state(pool.clone());
    let logs = LogLines::default();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(logs.clone())
            .with_max_level(tracing::Level::WARN)
            .finish(),
    );

    let held = pool.acquire().await.expect("the pool's only connection");
    for _ in 0..3 {
        let (status, retry_after, cache_control, json) = get_one(&app).await;
        assert_eq!(status, 503, "{json}");
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert_eq!(cache_control.as_deref(), Some("no-store"));
        assert_eq!(json["error"], "database", "{json}");
    }
    let text = logs.text();
    assert_eq!(
        text.matches("answering 503").count(),
        1,
        "one warning for three 503s within the interval:\n{text}"
    );
    assert!(
        text.contains("cachefront_origin::unavailable") && text.contains("pool timed out"),
        "the warning names its target and the cause:\n{text}"
    );

    drop(held);
    let (status, retry_after, _, json) = get_one(&app).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(retry_after, None);
}
