//! OTLP export: the [`Metrics`] registry's counters, gauges and histograms pushed to an
//! OpenTelemetry collector (or a vendor's OTLP endpoint) over OTLP/HTTP with protobuf,
//! through the OpenTelemetry SDK. Configured by the standard variables the SDK reads:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`),
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_METRIC_EXPORT_INTERVAL`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`. Traces: [`traces`].
//!
//! Every handle the registry gives out after [`OtlpExporter::install`] writes to both
//! Prometheus and OpenTelemetry; attach the exporter right after creating the registry.
//! Names map as the OpenTelemetry Prometheus convention reads back: counters lose
//! `_total`; a `_seconds` / `_bytes` suffix becomes the unit `s` / `By`.
//!
//! A failed export (metrics or traces) is counted on the Prometheus side,
//! [`EXPORT_FAILURES_TOTAL`]: when OTLP is what fails, `/metrics` is where to see it.

pub mod traces;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn};
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::Resource;

use crate::metrics::Metrics;
use crate::Error;

/// Names of the metrics this module exports (on `/metrics`).
pub mod names {
    /// Counter `{signal, reason}`: failed OTLP export calls, by `signal` (`metrics`,
    /// `traces`) and `reason` ([`failure_reason`](super::failure_reason)). Each failed
    /// call counts once, whatever it carried.
    pub const EXPORT_FAILURES_TOTAL: &str = "cachefront_origin_otlp_export_failures_total";
    /// Counter: requests whose trace was dropped because the export queue was full.
    pub const TRACES_DROPPED_TOTAL: &str = "cachefront_origin_otlp_traces_dropped_total";
}

pub use names::EXPORT_FAILURES_TOTAL;

/// Why an export failed, as the `reason` label says it (a bounded set):
/// `rejected` (the endpoint answered with an error status: a wrong path or key, a
/// quota, an overloaded collector), `unreachable` (no answer: connection refused, DNS,
/// TLS, a timeout), `shutdown` (exporting after `shutdown()`), `other` (the request could
/// not be built).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    Rejected,
    Unreachable,
    Shutdown,
    Other,
}

impl FailureReason {
    /// Every reason, in the order of their counters.
    pub const ALL: [FailureReason; 4] = [
        FailureReason::Rejected,
        FailureReason::Unreachable,
        FailureReason::Shutdown,
        FailureReason::Other,
    ];

    /// The reason of an exporter's error.
    pub fn of(error: &OTelSdkError) -> Self {
        match error {
            OTelSdkError::AlreadyShutdown => Self::Shutdown,
            OTelSdkError::Timeout(_) => Self::Unreachable,
            // The endpoint answered with an error status: the blocking reqwest client of
            // `opentelemetry-http` turns it into its error of kind `Status(503, …)`; the
            // exporters' own check says `… Status Code: 503, …`. A transport error is the
            // HTTP client's error without a status. The rest is ours (building the body).
            OTelSdkError::InternalFailure(message)
                if message.contains("kind: Status(") || message.contains("Status Code: ") =>
            {
                Self::Rejected
            }
            OTelSdkError::InternalFailure(message)
                if message.starts_with("Failed to serialize")
                    || message.starts_with("Failed to acquire")
                    || message.starts_with("Mutex lock failed") =>
            {
                Self::Other
            }
            OTelSdkError::InternalFailure(_) => Self::Unreachable,
        }
    }

    /// The `reason` label's value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::Unreachable => "unreachable",
            Self::Shutdown => "shutdown",
            Self::Other => "other",
        }
    }
}

/// The `reason` label of an exporter's error ([`FailureReason`]).
pub fn failure_reason(error: &OTelSdkError) -> &'static str {
    FailureReason::of(error).label()
}

/// The failure counters of one signal, one per [`FailureReason`] in the order of
/// [`FailureReason::ALL`], registered up front so every series reads 0 until something
/// fails (an alert on `increase()` then sees the first failure).
#[derive(Clone)]
pub(crate) struct ExportFailures {
    by_reason: [Counter; 4],
}

impl ExportFailures {
    pub(crate) fn new(metrics: &Metrics, signal: &'static str) -> Self {
        metrics.describe_counter(
            EXPORT_FAILURES_TOTAL,
            "Failed OTLP export calls, by signal (metrics, traces) and reason (rejected, unreachable, shutdown, other).",
        );
        Self {
            by_reason: FailureReason::ALL.map(|reason| {
                metrics.counter(
                    EXPORT_FAILURES_TOTAL,
                    &[("signal", signal), ("reason", reason.label())],
                )
            }),
        }
    }

    pub(crate) fn count(&self, error: &OTelSdkError) {
        self.by_reason[FailureReason::of(error) as usize].increment(1);
    }
}

/// The SDK's metric exporter with its failures counted (the periodic reader only logs
/// them).
struct CountingExporter<E> {
    inner: E,
    failures: ExportFailures,
}

impl<E: PushMetricExporter> PushMetricExporter for CountingExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        if let Err(e) = &result {
            self.failures.count(e);
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// The OpenTelemetry side of the registry: one instrument per metric name.
pub(crate) struct OtlpBridge {
    meter: Meter,
    buckets: Vec<f64>,
    counters: Mutex<HashMap<&'static str, opentelemetry::metrics::Counter<u64>>>,
    gauges: Mutex<HashMap<&'static str, opentelemetry::metrics::Gauge<f64>>>,
    histograms: Mutex<HashMap<&'static str, opentelemetry::metrics::Histogram<f64>>>,
}

/// The OpenTelemetry name and unit of a Prometheus-style metric name.
pub fn otel_name_and_unit(name: &str) -> (&str, &'static str) {
    let base = name.strip_suffix("_total").unwrap_or(name);
    let unit = if base.ends_with("_seconds") {
        "s"
    } else if base.ends_with("_bytes") {
        "By"
    } else {
        "1"
    };
    (base, unit)
}

fn attributes(labels: &[(&'static str, &str)]) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(k, v)| KeyValue::new(*k, (*v).to_owned()))
        .collect()
}

/// The OpenTelemetry instrument for registry metric `name`, built on first use (from its
/// OpenTelemetry name and unit) and shared by every label set after.
fn instrument<T: Clone>(
    cache: &Mutex<HashMap<&'static str, T>>,
    name: &'static str,
    build: impl FnOnce(String, &'static str) -> T,
) -> T {
    cache
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(name)
        .or_insert_with(|| {
            let (n, unit) = otel_name_and_unit(name);
            build(n.to_owned(), unit)
        })
        .clone()
}

impl OtlpBridge {
    pub(crate) fn counter(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        prometheus: Counter,
    ) -> Counter {
        let otel = instrument(&self.counters, name, |n, unit| {
            self.meter.u64_counter(n).with_unit(unit).build()
        });
        Counter::from_arc(Arc::new(BothCounter {
            prometheus,
            otel,
            attributes: attributes(labels),
            last_absolute: AtomicU64::new(0),
        }))
    }

    pub(crate) fn gauge(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        prometheus: Gauge,
    ) -> Gauge {
        let otel = instrument(&self.gauges, name, |n, unit| {
            self.meter.f64_gauge(n).with_unit(unit).build()
        });
        Gauge::from_arc(Arc::new(BothGauge {
            prometheus,
            otel,
            attributes: attributes(labels),
            value: AtomicU64::new(0f64.to_bits()),
        }))
    }

    pub(crate) fn histogram(
        &self,
        name: &'static str,
        labels: &[(&'static str, &str)],
        prometheus: Histogram,
    ) -> Histogram {
        let otel = instrument(&self.histograms, name, |n, unit| {
            let b = self.meter.f64_histogram(n).with_unit(unit);
            // Seconds histograms get the registry's buckets, not OpenTelemetry's
            // millisecond-sized defaults.
            if unit == "s" {
                b.with_boundaries(self.buckets.clone()).build()
            } else {
                b.build()
            }
        });
        Histogram::from_arc(Arc::new(BothHistogram {
            prometheus,
            otel,
            attributes: attributes(labels),
        }))
    }
}

struct BothCounter {
    prometheus: Counter,
    otel: opentelemetry::metrics::Counter<u64>,
    attributes: Vec<KeyValue>,
    last_absolute: AtomicU64,
}

impl CounterFn for BothCounter {
    fn increment(&self, value: u64) {
        self.prometheus.increment(value);
        self.otel.add(value, &self.attributes);
    }

    fn absolute(&self, value: u64) {
        self.prometheus.absolute(value);
        // OpenTelemetry counters only add: send the step since the last absolute value.
        let last = self.last_absolute.fetch_max(value, Ordering::Relaxed);
        if value > last {
            self.otel.add(value - last, &self.attributes);
        }
    }
}

struct BothGauge {
    prometheus: Gauge,
    otel: opentelemetry::metrics::Gauge<f64>,
    attributes: Vec<KeyValue>,
    value: AtomicU64,
}

impl BothGauge {
    fn update(&self, f: impl Fn(f64) -> f64) {
        let mut new = 0.0;
        let _ = self
            .value
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |bits| {
                new = f(f64::from_bits(bits));
                Some(new.to_bits())
            });
        self.otel.record(new, &self.attributes);
    }
}

impl GaugeFn for BothGauge {
    fn increment(&self, value: f64) {
        self.prometheus.increment(value);
        self.update(|v| v + value);
    }
    fn decrement(&self, value: f64) {
        self.prometheus.decrement(value);
        self.update(|v| v - value);
    }
    fn set(&self, value: f64) {
        self.prometheus.set(value);
        self.update(|_| value);
    }
}

struct BothHistogram {
    prometheus: Histogram,
    otel: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl HistogramFn for BothHistogram {
    fn record(&self, value: f64) {
        self.prometheus.record(value);
        self.otel.record(value, &self.attributes);
    }
}

/// The running export: a periodic reader on its own thread pushing to the endpoint.
/// Call [`shutdown`](Self::shutdown) at exit to send the last interval.
#[derive(Debug, Clone)]
pub struct OtlpExporter {
    provider: SdkMeterProvider,
    metrics: Metrics,
}

impl OtlpExporter {
    /// Export `metrics` to the endpoint the `OTEL_EXPORTER_OTLP_*` variables name
    /// (default `http://localhost:4318/v1/metrics`), every `OTEL_METRIC_EXPORT_INTERVAL`
    /// milliseconds (default 60 000). Fails if the registry already exports. Failed
    /// exports are counted in `metrics` ([`EXPORT_FAILURES_TOTAL`], `signal="metrics"`;
    /// on the Prometheus side only).
    pub fn install(metrics: &Metrics) -> Result<Self, Error> {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
            .map_err(|e| Error::Config(format!("OTLP exporter: {e}")))?;
        // Registered before the bridge is attached: these stay Prometheus counters, not
        // sent through the exporter whose failures they count.
        let exporter = CountingExporter {
            inner: exporter,
            failures: ExportFailures::new(metrics, "metrics"),
        };
        let reader = PeriodicReader::builder(exporter).build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(Resource::builder().build())
            .build();
        let bridge = OtlpBridge {
            meter: provider.meter("cachefront_origin"),
            buckets: metrics.buckets().to_vec(),
            counters: Mutex::default(),
            gauges: Mutex::default(),
            histograms: Mutex::default(),
        };
        if !metrics.attach_otlp(bridge) {
            let _ = provider.shutdown();
            return Err(Error::Config(
                "this Metrics registry already exports over OTLP".to_owned(),
            ));
        }
        let exporter = Self {
            provider,
            metrics: metrics.clone(),
        };
        exporter.refresh_on_interval();
        Ok(exporter)
    }

    /// Gauges read at scrape time (pool sizes, allocator statistics) are refreshed on
    /// the export interval even when nothing scrapes `/metrics`.
    fn refresh_on_interval(&self) {
        let every = std::env::var("OTEL_METRIC_EXPORT_INTERVAL")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map_or(Duration::from_secs(60), Duration::from_millis);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = self.metrics.downgrade();
        rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(metrics) => {
                        let _ = metrics.render();
                    }
                    None => break,
                }
            }
        });
    }

    /// Export now (blocks until the endpoint answered or timed out). Scrape hooks run
    /// first, so gauges read at scrape time are current.
    pub fn force_flush(&self) -> Result<(), Error> {
        let _ = self.metrics.render();
        self.provider
            .force_flush()
            .map_err(|e| Error::Unavailable(format!("OTLP export: {e}")))
    }

    /// Send what is left and stop the reader thread.
    pub fn shutdown(&self) -> Result<(), Error> {
        let _ = self.metrics.render();
        self.provider
            .shutdown()
            .map_err(|e| Error::Unavailable(format!("OTLP export: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_names_map_to_opentelemetry_names_and_units() {
        assert_eq!(
            otel_name_and_unit("cachefront_origin_http_requests_total"),
            ("cachefront_origin_http_requests", "1")
        );
        assert_eq!(
            otel_name_and_unit("cachefront_origin_http_request_duration_seconds"),
            ("cachefront_origin_http_request_duration_seconds", "s")
        );
        assert_eq!(
            otel_name_and_unit("cachefront_origin_http_allocated_bytes_total"),
            ("cachefront_origin_http_allocated_bytes", "By")
        );
    }

    #[test]
    fn export_errors_map_to_a_bounded_reason() {
        let internal = |m: &str| OTelSdkError::InternalFailure(m.to_owned());
        assert_eq!(
            failure_reason(&internal(
                "OpenTelemetry trace export failed. Url: http://c:4318/v1/traces, Status Code: 503, Response: []"
            )),
            "rejected"
        );
        assert_eq!(
            failure_reason(&internal(
                "OpenTelemetry metrics export failed. Status Code: 401, Response: []"
            )),
            "rejected"
        );
        // What the blocking reqwest client reports for a 503 answer.
        assert_eq!(
            failure_reason(&internal(
                "reqwest::Error { kind: Status(503, None), url: \"http://c:4318/v1/metrics\" }"
            )),
            "rejected"
        );
        assert_eq!(
            failure_reason(&internal(
                "reqwest::Error { kind: Request, source: ConnectError(\"tcp connect error\") }"
            )),
            "unreachable"
        );
        assert_eq!(
            failure_reason(&OTelSdkError::Timeout(Duration::from_secs(10))),
            "unreachable"
        );
        assert_eq!(failure_reason(&OTelSdkError::AlreadyShutdown), "shutdown");
        assert_eq!(
            failure_reason(&internal("Failed to serialize metrics")),
            "other"
        );
    }

    #[test]
    fn each_reason_sits_at_its_own_index_in_all() {
        for (index, reason) in FailureReason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, index, "{reason:?}");
        }
    }
}
