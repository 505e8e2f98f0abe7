//! `GET /metrics` and `GET /metrics.json` for the admin listener.

use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue};

use super::Metrics;

impl Metrics {
    /// `GET /metrics` (Prometheus text) and `GET /metrics.json` (JSON snapshot).
    pub fn router<S>(&self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let text = self.clone();
        let json = self.clone();
        Router::new()
            .route(
                "/metrics",
                get(move || {
                    let m = text.clone();
                    async move { m.text_response() }
                }),
            )
            .route(
                "/metrics.json",
                get(move || {
                    let m = json.clone();
                    async move {
                        let mut res = axum::Json(m.render_json()).into_response();
                        res.headers_mut()
                            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                        res
                    }
                }),
            )
    }

    fn text_response(&self) -> Response {
        let mut res = self.render().into_response();
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}
