//! Feature `otlp`, traces: `OTEL_TRACES_SAMPLER=traceidratio` with ratio 0 exports
//! nothing, not even for a caller whose `traceparent` says sampled (the ratio sampler is
//! not parent-based). Its own binary: the sampler comes from the process environment.
#![cfg(feature = "otlp")]

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use cachefront_origin::otlp::traces::{OtlpTraces, TraceParent};
use cachefront_origin::profiling::Profiler;
use http::Request;
use tower::ServiceExt;

#[path = "otlp/receiver.rs"]
mod receiver;
use receiver::{start_receiver, Received};

#[test]
fn a_trace_id_ratio_of_zero_exports_nothing() {
    let received = Received::default();
    let addr = start_receiver(received.clone());
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "3600000");
    std::env::set_var("OTEL_TRACES_SAMPLER", "traceidratio");
    std::env::set_var("OTEL_TRACES_SAMPLER_ARG", "0");

    let traces = OtlpTraces::install().expect("trace exporter");
    let profiler = Profiler::default();
    let app = Router::new()
        .route(
            "/products/{id}",
            get(|trace: Option<Extension<TraceParent>>| async move {
                if trace.is_some() {
                    "traced"
                } else {
                    "untraced"
                }
            }),
        )
        .layer(traces.layer())
        .layer(profiler.layer());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for traceparent in [
            None,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ] {
            let mut req = Request::get("/products/1");
            if let Some(tp) = traceparent {
                req = req.header("traceparent", tp);
            }
            let res = app
                .clone()
                .oneshot(req.body(Body::empty()).expect("request"))
                .await
                .expect("infallible");
            let body = axum::body::to_bytes(res.into_body(), 1024)
                .await
                .expect("body");
            assert_eq!(&body[..], b"untraced");
        }
    });
    traces.force_flush().expect("flush");
    assert_eq!(received.exports().len(), 0, "a ratio of 0 exported a trace");
    assert_eq!(traces.dropped(), 0);
    traces.shutdown().expect("shutdown");
}
