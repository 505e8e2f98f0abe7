//! Feature `otlp` against a loopback OTLP/HTTP receiver that decodes each export with
//! the OpenTelemetry protobuf definitions (`opentelemetry-proto`, prost): names, units,
//! attributes and values of what a real app recorded. One test in this binary: it sets
//! the process's `OTEL_*` variables, as an operator would.
#![cfg(feature = "otlp")]

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use cachefront_origin::metrics::{Metrics, MetricsConfig, DEFAULT_BUCKETS};
use cachefront_origin::otlp::OtlpExporter;
use http::Request;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, Metric};
use prost::Message;
use tower::ServiceExt;

#[path = "otlp/receiver.rs"]
mod receiver;
use receiver::{start_receiver, Received};

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

fn find<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
    metrics.iter().find(|m| m.name == name).unwrap_or_else(|| {
        panic!(
            "{name} not exported; got {:?}",
            metrics.iter().map(|m| &m.name).collect::<Vec<_>>()
        )
    })
}

#[test]
fn metrics_reach_an_otlp_receiver_with_names_units_attributes_and_values() {
    let received = Received::default();
    let addr = start_receiver(received.clone());
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
    std::env::set_var("OTEL_EXPORTER_OTLP_HEADERS", "x-otlp-test-key=sekrit");
    std::env::set_var("OTEL_SERVICE_NAME", "catalog-under-test");
    // Only the explicit flush below exports.
    std::env::set_var("OTEL_METRIC_EXPORT_INTERVAL", "3600000");

    let metrics = Metrics::with_config(MetricsConfig {
        process_metrics: false,
        ..Default::default()
    });
    let exporter = OtlpExporter::install(&metrics).expect("exporter");
    assert!(
        OtlpExporter::install(&metrics).is_err(),
        "a second exporter on one registry must be refused"
    );

    let app = Router::new()
        .route("/products/{id}", get(|| async { "product" }))
        .layer(metrics.layer());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for path in ["/products/1", "/products/2", "/products/3", "/nowhere"] {
            let req = Request::get(path).body(Body::empty()).expect("request");
            let _ = app.clone().oneshot(req).await.expect("infallible");
        }
    });
    metrics
        .gauge("cachefront_origin_test_queue_bytes", &[("queue", "purge")])
        .set(4096.0);

    exporter.force_flush().expect("flush");

    let got = received.exports();
    assert!(!got.is_empty(), "nothing reached the receiver");
    let (path, headers, body) = got.last().expect("an export");
    assert_eq!(path, "/v1/metrics");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/x-protobuf")
    );
    assert_eq!(
        headers.get("x-otlp-test-key").and_then(|v| v.to_str().ok()),
        Some("sekrit"),
        "OTEL_EXPORTER_OTLP_HEADERS not applied"
    );
    let request = ExportMetricsServiceRequest::decode(body.as_slice()).expect("protobuf");
    let rm = &request.resource_metrics[0];
    let resource = rm.resource.as_ref().expect("resource");
    assert_eq!(
        string_attr(&resource.attributes, "service.name").as_deref(),
        Some("catalog-under-test")
    );
    let scope = &rm.scope_metrics[0];
    assert_eq!(
        scope.scope.as_ref().map(|s| s.name.as_str()),
        Some("cachefront_origin")
    );
    let all = &scope.metrics;

    // Counter: `_total` dropped, monotonic cumulative sum, one point per label set.
    let requests = find(all, "cachefront_origin_http_requests");
    assert_eq!(requests.unit, "1");
    let Some(metric::Data::Sum(sum)) = &requests.data else {
        panic!("requests is not a sum: {requests:?}")
    };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, 2, "cumulative");
    let point = |route: &str| {
        sum.data_points
            .iter()
            .find(|p| string_attr(&p.attributes, "route").as_deref() == Some(route))
            .unwrap_or_else(|| panic!("no point for {route}: {sum:?}"))
    };
    let products = point("/products/{id}");
    assert_eq!(products.value, Some(number_data_point::Value::AsInt(3)));
    assert_eq!(
        string_attr(&products.attributes, "method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        string_attr(&products.attributes, "status_class").as_deref(),
        Some("2xx")
    );
    let unmatched = point("unmatched");
    assert_eq!(unmatched.value, Some(number_data_point::Value::AsInt(1)));
    assert_eq!(
        string_attr(&unmatched.attributes, "status_class").as_deref(),
        Some("4xx")
    );

    // Histogram in seconds, with the registry's buckets.
    let duration = find(all, "cachefront_origin_http_request_duration_seconds");
    assert_eq!(duration.unit, "s");
    let Some(metric::Data::Histogram(h)) = &duration.data else {
        panic!("duration is not a histogram: {duration:?}")
    };
    let hp = h
        .data_points
        .iter()
        .find(|p| string_attr(&p.attributes, "route").as_deref() == Some("/products/{id}"))
        .expect("duration point");
    assert_eq!(hp.count, 3);
    assert_eq!(hp.explicit_bounds, DEFAULT_BUCKETS);
    assert_eq!(hp.bucket_counts.iter().sum::<u64>(), 3);

    // Gauges: the in-flight gauge back at zero, and a byte gauge with its unit.
    let in_flight = find(all, "cachefront_origin_http_requests_in_flight");
    let Some(metric::Data::Gauge(g)) = &in_flight.data else {
        panic!("in-flight is not a gauge: {in_flight:?}")
    };
    assert!(g
        .data_points
        .iter()
        .all(|p| p.value == Some(number_data_point::Value::AsDouble(0.0))));
    let queue = find(all, "cachefront_origin_test_queue_bytes");
    assert_eq!(queue.unit, "By");
    let Some(metric::Data::Gauge(g)) = &queue.data else {
        panic!("queue is not a gauge: {queue:?}")
    };
    assert_eq!(
        g.data_points[0].value,
        Some(number_data_point::Value::AsDouble(4096.0))
    );
    assert_eq!(
        string_attr(&g.data_points[0].attributes, "queue").as_deref(),
        Some("purge")
    );

    // Prometheus still sees the same counts.
    assert!(metrics
        .render()
        .contains("cachefront_origin_http_requests_total{method=\"GET\",route=\"/products/{id}\",status_class=\"2xx\"} 3"));
    exporter.shutdown().expect("shutdown");
}
