//! [`Metrics`]: the instance registry (not the global recorder), its handles and upkeep.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use super::exposition::exposition_to_json;
use super::layer::{MetricsLayer, RouteHandles};
#[cfg(feature = "postgres")]
use super::names;
use super::DEFAULT_BUCKETS;

const METADATA: Metadata<'static> = Metadata::new("cachefront_origin", Level::INFO, None);

type ScrapeHook = Box<dyn Fn(&Metrics) + Send + Sync>;

/// Options for [`Metrics`].
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Histogram buckets (seconds) for request durations. Default: Prometheus' defaults.
    pub buckets: Vec<f64>,
    /// Export `process_*` metrics (CPU, memory, fds, threads). Default: true.
    pub process_metrics: bool,
    /// How often histograms are folded even when nobody scrapes. Default: 5 s.
    pub upkeep_interval: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            buckets: DEFAULT_BUCKETS.to_vec(),
            process_metrics: true,
            upkeep_interval: Duration::from_secs(5),
        }
    }
}

/// A Prometheus registry with the crate's metrics described. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    pub(super) inner: Arc<MetricsInner>,
}

pub(super) struct MetricsInner {
    pub(super) recorder: PrometheusRecorder,
    pub(super) handle: PrometheusHandle,
    pub(super) process: Option<metrics_process::Collector>,
    pub(super) hooks: Mutex<Vec<ScrapeHook>>,
    pub(super) routes: RwLock<HashMap<String, Arc<RouteHandles>>>,
    pub(super) upkeep_started: AtomicBool,
    pub(super) upkeep_interval: Duration,
    #[cfg(feature = "otlp")]
    pub(super) buckets: Vec<f64>,
    #[cfg(feature = "otlp")]
    pub(super) otlp: std::sync::OnceLock<crate::otlp::OtlpBridge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with default options.
    pub fn new() -> Self {
        Self::with_config(MetricsConfig::default())
    }

    /// A registry with the given options. Invalid buckets fall back to the defaults.
    pub fn with_config(config: MetricsConfig) -> Self {
        let buckets = if config.buckets.is_empty() {
            DEFAULT_BUCKETS.to_vec()
        } else {
            config.buckets.clone()
        };
        let builder = PrometheusBuilder::new();
        let builder = match builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &buckets)
        {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let process = config
            .process_metrics
            .then(metrics_process::Collector::default);
        let metrics = Self {
            inner: Arc::new(MetricsInner {
                recorder,
                handle,
                process,
                hooks: Mutex::new(Vec::new()),
                routes: RwLock::new(HashMap::new()),
                upkeep_started: AtomicBool::new(false),
                upkeep_interval: config.upkeep_interval,
                #[cfg(feature = "otlp")]
                buckets: buckets.clone(),
                #[cfg(feature = "otlp")]
                otlp: std::sync::OnceLock::new(),
            }),
        };
        metrics.describe_all();
        metrics
    }

    /// A counter in this registry. `labels` must come from a bounded set.
    pub fn counter(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
        let c = self
            .inner
            .recorder
            .register_counter(&key(name, labels), &METADATA);
        #[cfg(feature = "otlp")]
        if let Some(otlp) = self.inner.otlp.get() {
            return otlp.counter(name, labels, c);
        }
        c
    }

    /// A gauge in this registry. `labels` must come from a bounded set.
    pub fn gauge(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Gauge {
        let g = self
            .inner
            .recorder
            .register_gauge(&key(name, labels), &METADATA);
        #[cfg(feature = "otlp")]
        if let Some(otlp) = self.inner.otlp.get() {
            return otlp.gauge(name, labels, g);
        }
        g
    }

    /// A histogram in this registry. Names ending in `_seconds` get the configured buckets.
    pub fn histogram(&self, name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
        let h = self
            .inner
            .recorder
            .register_histogram(&key(name, labels), &METADATA);
        #[cfg(feature = "otlp")]
        if let Some(otlp) = self.inner.otlp.get() {
            return otlp.histogram(name, labels, h);
        }
        h
    }

    /// Describe one of your own metrics so `/metrics` carries its `# HELP`.
    pub fn describe_counter(&self, name: &'static str, help: &'static str) {
        self.inner
            .recorder
            .describe_counter(KeyName::from_const_str(name), None, help.into());
    }

    /// Describe one of your own gauges so `/metrics` carries its `# HELP`.
    pub fn describe_gauge(&self, name: &'static str, help: &'static str) {
        self.inner
            .recorder
            .describe_gauge(KeyName::from_const_str(name), None, help.into());
    }

    /// Run `hook` at every scrape, before rendering (for gauges read from elsewhere).
    pub fn on_scrape(&self, hook: impl Fn(&Metrics) + Send + Sync + 'static) {
        self.inner
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(hook));
    }

    /// Export size / idle / max gauges of a sqlx PostgreSQL pool under `pool="name"`.
    /// (sqlx does not expose the number of waiters, so there is no waiting gauge.)
    #[cfg(feature = "postgres")]
    pub fn observe_pg_pool(&self, name: &str, pool: sqlx::PgPool) {
        let name = name.to_owned();
        self.on_scrape(move |m| {
            let labels = [("pool", name.as_str())];
            m.gauge(names::DB_POOL_CONNECTIONS, &labels)
                .set(f64::from(pool.size()));
            m.gauge(names::DB_POOL_IDLE_CONNECTIONS, &labels)
                .set(pool.num_idle() as f64);
            m.gauge(names::DB_POOL_MAX_CONNECTIONS, &labels)
                .set(f64::from(pool.options().get_max_connections()));
        });
    }

    /// The Prometheus text exposition (format 0.0.4) of everything in the registry.
    pub fn render(&self) -> String {
        if let Some(process) = &self.inner.process {
            metrics::with_local_recorder(&self.inner.recorder, || process.collect());
        }
        {
            let hooks = self
                .inner
                .hooks
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for hook in hooks.iter() {
                hook(self);
            }
        }
        self.inner.handle.render()
    }

    /// The registry as JSON: `{"metrics": [{"name", "type", "help", "samples": [{"labels", "value"}]}]}`.
    pub fn render_json(&self) -> serde_json::Value {
        exposition_to_json(&self.render())
    }

    /// The layer that records RED metrics for every request it wraps, except the
    /// [default excluded paths](crate::stack::PathExcludes::DEFAULT) (probes, `/metrics`);
    /// change them with [`MetricsLayer::exclude_paths`].
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer {
            metrics: self.clone(),
            excludes: crate::stack::PathExcludes::default(),
        }
    }

    pub(super) fn ensure_upkeep(&self) {
        // A plain load first: the hot path must not write a shared cache line.
        if self.inner.upkeep_started.load(Ordering::Relaxed)
            || self.inner.upkeep_started.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.inner.upkeep_started.store(false, Ordering::Relaxed);
            return;
        };
        // Hold the registry weakly so dropping every `Metrics` ends the task.
        let weak = Arc::downgrade(&self.inner);
        let every = self.inner.upkeep_interval;
        rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(inner) => inner.handle.run_upkeep(),
                    None => break,
                }
            }
        });
    }
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    let labels: Vec<Label> = labels
        .iter()
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect();
    Key::from_parts(name, labels)
}

/// Feature `otlp`: the hooks `crate::otlp` needs, kept apart from the rest.
#[cfg(feature = "otlp")]
impl Metrics {
    /// Send every handle given out from now on to OpenTelemetry too. False if already set.
    pub(crate) fn attach_otlp(&self, bridge: crate::otlp::OtlpBridge) -> bool {
        self.inner.otlp.set(bridge).is_ok()
    }

    /// Histogram buckets (seconds) in force.
    pub(crate) fn buckets(&self) -> &[f64] {
        &self.inner.buckets
    }

    /// A handle that does not keep the registry alive.
    pub(crate) fn downgrade(&self) -> WeakMetrics {
        WeakMetrics(Arc::downgrade(&self.inner))
    }
}

/// A [`Metrics`] held weakly, for background tasks that must end with the registry.
#[cfg(feature = "otlp")]
pub(crate) struct WeakMetrics(std::sync::Weak<MetricsInner>);

#[cfg(feature = "otlp")]
impl WeakMetrics {
    pub(crate) fn upgrade(&self) -> Option<Metrics> {
        self.0.upgrade().map(|inner| Metrics { inner })
    }
}
