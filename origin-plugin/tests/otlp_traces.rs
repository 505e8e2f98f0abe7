//! Feature `otlp`, traces: requests through the documented stack (trace layer inside the
//! builder's profiler and query capture) reach a loopback OTLP/HTTP receiver that decodes
//! each export with the OpenTelemetry protobuf definitions. Checks the span tree (server
//! span, handler spans, a real PostgreSQL query as a client span), the caller's trace id
//! from `traceparent`, attributes and nested times. One test in this binary: it sets the
//! process's `OTEL_*` variables, as an operator would.
#![cfg(all(feature = "otlp", feature = "db"))]

mod support;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Router};
use cachefront_origin::db::{DbCapture, DbCaptureConfig};
use cachefront_origin::otlp::traces::{OtlpTraces, TraceParent};
use cachefront_origin::profiling::{Profiler, ProfilingConfig, SpanProfileLayer};
use cachefront_origin::Cachefront;
use http::Request;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode as OtelCode, Span};
use prost::Message;
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt;

#[path = "otlp/receiver.rs"]
mod receiver;
use receiver::{start_receiver, Received};

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
    span.attributes
        .iter()
        .find(|kv: &&KeyValue| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn str_attr(span: &Span, key: &str) -> Option<String> {
    match attr(span, key)? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn int_attr(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tracing::instrument(skip(pool))]
async fn load_product(pool: Option<sqlx::PgPool>, id: i64) -> String {
    if let Some(pool) = pool {
        let (name,): (String,) = sqlx::query_as("SELECT 'product ' || $1::bigint")
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("query");
        let _price = tracing::info_span!("price_lookup").entered();
        return name;
    }
    let _price = tracing::info_span!("price_lookup").entered();
    format!("product {id}")
}

async fn product(
    State(pool): State<Option<sqlx::PgPool>>,
    trace: Option<Extension<TraceParent>>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> String {
    let name = load_product(pool, id).await;
    // What the handler would pass on as `traceparent` to a downstream call.
    let parent = trace
        .map(|Extension(t)| t.header_value())
        .unwrap_or_default();
    format!("{name}\n{parent}")
}

#[test]
fn requests_reach_an_otlp_receiver_as_traces_continuing_the_callers_trace() {
    let received = Received::default();
    let addr = start_receiver(received.clone());
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
    std::env::set_var("OTEL_EXPORTER_OTLP_HEADERS", "x-otlp-test-key=sekrit");
    std::env::set_var("OTEL_SERVICE_NAME", "catalog-under-test");
    // Only the explicit flush below exports.
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "3600000");
    std::env::remove_var("OTEL_TRACES_SAMPLER");

    let database_url = support::database_url();
    let capture = DbCapture::new(DbCaptureConfig::default());
    let subscriber = tracing_subscriber::registry()
        .with(SpanProfileLayer::new())
        .with(capture.tracing_layer());
    tracing::subscriber::set_global_default(subscriber).expect("subscriber");

    let traces = OtlpTraces::install().expect("trace exporter");
    let profiler = Profiler::new(ProfilingConfig::default());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bodies = rt.block_on(async {
        let pool = match &database_url {
            Some(url) => Some(sqlx::PgPool::connect(url).await.expect("connect")),
            None => None,
        };
        let routes = Router::new()
            .route("/products/{id}", get(product))
            .route(
                "/boom",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .with_state(pool)
            // Innermost: inside the builder's profiler and capture.
            .layer(traces.layer());
        let app = Cachefront::builder()
            .profiling(&profiler)
            .db_capture(&capture)
            .apply(routes);
        let mut bodies = Vec::new();
        for (path, traceparent) in [
            (
                "/products/7",
                Some(format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")),
            ),
            ("/products/8", Some("00-not-a-trace-context-01".to_owned())),
            ("/boom", None),
        ] {
            let mut req = Request::get(path);
            if let Some(tp) = traceparent {
                req = req.header("traceparent", tp);
            }
            let res = app
                .clone()
                .oneshot(req.body(Body::empty()).expect("request"))
                .await
                .expect("infallible");
            let body = axum::body::to_bytes(res.into_body(), 1 << 20)
                .await
                .expect("body");
            bodies.push(String::from_utf8_lossy(&body).into_owned());
        }
        bodies
    });
    traces.force_flush().expect("flush");

    let got = received.exports();
    assert!(!got.is_empty(), "nothing reached the receiver");
    let mut spans: Vec<Span> = Vec::new();
    for (path, headers, body) in &got {
        assert_eq!(path, "/v1/traces");
        assert_eq!(
            headers.get("x-otlp-test-key").and_then(|v| v.to_str().ok()),
            Some("sekrit"),
            "OTEL_EXPORTER_OTLP_HEADERS not applied"
        );
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("protobuf");
        for rs in request.resource_spans {
            let resource = rs.resource.expect("resource");
            assert!(resource.attributes.iter().any(|kv| kv.key == "service.name"
                && kv.value.as_ref().and_then(|v| v.value.as_ref())
                    == Some(&any_value::Value::StringValue("catalog-under-test".into()))));
            for ss in rs.scope_spans {
                assert_eq!(
                    ss.scope.as_ref().map(|s| s.name.as_str()),
                    Some("cachefront_origin")
                );
                spans.extend(ss.spans);
            }
        }
    }

    // Every span: a positive-or-zero duration, inside its parent's interval.
    for s in &spans {
        assert!(
            s.end_time_unix_nano >= s.start_time_unix_nano && s.start_time_unix_nano > 0,
            "{} has a negative duration",
            s.name
        );
        if let Some(parent) = spans
            .iter()
            .find(|p| p.span_id == s.parent_span_id && p.trace_id == s.trace_id)
        {
            assert!(
                s.start_time_unix_nano >= parent.start_time_unix_nano
                    && s.end_time_unix_nano <= parent.end_time_unix_nano,
                "{} is not inside its parent {}",
                s.name,
                parent.name
            );
        }
    }

    // 1. The caller's trace: continued, the server span under the caller's span.
    let in_trace = |trace: Vec<u8>| spans.iter().filter(move |s| s.trace_id == trace);
    let caller: Vec<&Span> = spans
        .iter()
        .filter(|s| hex(&s.trace_id) == CALLER_TRACE)
        .collect();
    let root = caller
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("no server span in the caller's trace: {spans:#?}"));
    assert_eq!(root.name, "GET /products/{id}");
    assert_eq!(hex(&root.parent_span_id), CALLER_SPAN);
    assert_eq!(
        str_attr(root, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        str_attr(root, "http.route").as_deref(),
        Some("/products/{id}")
    );
    assert_eq!(str_attr(root, "url.path").as_deref(), Some("/products/7"));
    assert_eq!(int_attr(root, "http.response.status_code"), Some(200));
    // The handler saw its own span as the parent to hand on.
    assert_eq!(
        bodies[0].lines().nth(1),
        Some(format!("00-{CALLER_TRACE}-{}-01", hex(&root.span_id)).as_str())
    );

    let child = |name: &str, parent: &Span| -> Span {
        in_trace(root.trace_id.clone())
            .find(|s| s.name == name && s.parent_span_id == parent.span_id)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} under {}: {caller:#?}", parent.name))
    };
    let load = child("load_product", root);
    assert_eq!(load.kind, SpanKind::Internal as i32);
    let price = child("price_lookup", &load);
    assert!(price.end_time_unix_nano <= load.end_time_unix_nano);

    if database_url.is_some() {
        let query = child("SELECT", &load);
        assert_eq!(query.kind, SpanKind::Client as i32);
        assert_eq!(
            str_attr(&query, "db.system.name").as_deref(),
            Some("postgresql")
        );
        let text = str_attr(&query, "db.query.text").expect("db.query.text");
        assert!(
            text.contains('?') && !text.contains("product "),
            "query text must be the fingerprint, without literals: {text}"
        );
        assert_eq!(
            str_attr(&query, "cachefront.db.fingerprint").map(|f| f.len()),
            Some(16)
        );
        assert_eq!(int_attr(root, "cachefront.db.queries"), Some(1));
        // The query ran before the price lookup opened.
        assert!(query.end_time_unix_nano <= price.start_time_unix_nano);
    }
    assert_eq!(
        in_trace(root.trace_id.clone()).count(),
        3 + usize::from(database_url.is_some()),
        "the caller's trace holds exactly this request's spans"
    );

    // 2. A malformed traceparent is ignored: a fresh trace, a root without parent.
    let roots: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(roots.len(), 3, "{roots:#?}");
    let fresh = roots
        .iter()
        .find(|s| str_attr(s, "url.path").as_deref() == Some("/products/8"))
        .expect("/products/8 exported");
    assert_ne!(hex(&fresh.trace_id), CALLER_TRACE);
    assert_ne!(fresh.trace_id, vec![0; 16]);
    assert!(fresh.parent_span_id.is_empty());
    assert_eq!(int_attr(fresh, "http.response.status_code"), Some(200));

    // 3. A 5xx answer is an error span.
    let boom = roots
        .iter()
        .find(|s| s.name == "GET /boom")
        .expect("/boom exported");
    assert_eq!(int_attr(boom, "http.response.status_code"), Some(500));
    assert_eq!(
        boom.status.as_ref().map(|s| s.code),
        Some(OtelCode::Error as i32)
    );
    assert_ne!(boom.trace_id, fresh.trace_id);

    assert_eq!(traces.dropped(), 0);
    traces.shutdown().expect("shutdown");
}
