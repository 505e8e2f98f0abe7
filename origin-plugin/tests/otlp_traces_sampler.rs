//! Feature `otlp`, traces: `OTEL_TRACES_SAMPLER=traceidratio` with ratio 0 exports
//! nothing, not even for a caller whose `traceparent` says sampled (the ratio sampler is
//! not parent-based). Its own binary: the sampler comes from the process environment.
#![cfg(feature = "otlp")]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use cachefront_origin::otlp::traces::{OtlpTraces, TraceParent};
use cachefront_origin::profiling::Profiler;
use http::Request;
use tower::ServiceExt;

/// A loopback receiver counting every export it is sent.
fn start_receiver(count: Arc<Mutex<usize>>) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr"))
                .expect("send addr");
            let app = Router::new().fallback(move || {
                let count = count.clone();
                async move {
                    *count.lock().expect("lock") += 1;
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            });
            let _ = axum::serve(listener, app).await;
        });
    });
    rx.recv().expect("receiver address")
}

#[test]
fn a_trace_id_ratio_of_zero_exports_nothing() {
    let exports = Arc::new(Mutex::new(0));
    let addr = start_receiver(exports.clone());
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
    assert_eq!(
        *exports.lock().expect("lock"),
        0,
        "a ratio of 0 exported a trace"
    );
    assert_eq!(traces.dropped(), 0);
    traces.shutdown().expect("shutdown");
}
