//! The layer stack in its one right order, and the paths the observing layers skip.
//!
//! [`Cachefront::builder`] takes the parts an app made (metrics registry, profiler, query
//! capture, cache-tag writer) and adds them to a router in a single `Router::layer` call,
//! outermost first: request id → `no-store` on errors → metrics → profiling → query
//! capture → cache tags. The order matters and is easy to get wrong by hand: metrics must
//! time everything; the capture must run inside the profiler to see the request's
//! `RequestProfile` (else the `db` `Server-Timing` entry silently disappears); the tag
//! writer must see the handler's `CacheTags`. One `layer` call also boxes every route's
//! service once instead of once per layer.
//!
//! [`PathExcludes`]: request paths (probes, `/metrics`) the metrics, profiling and capture
//! layers pass through untouched, so a scraper or a kubelet is not counted as traffic.

use std::sync::Arc;

use axum::Router;

/// Paths the observing layers (metrics, profiling, query capture) pass through without
/// counting, timing or capturing. An entry ending in `*` matches by prefix
/// (`"/debug/*"`); any other entry matches the request path exactly.
///
/// Default: [`PathExcludes::DEFAULT`] (the probes and the metrics endpoints).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathExcludes(Arc<[Box<str>]>);

impl PathExcludes {
    /// The probes of [`health`](crate::health) and the metrics endpoints.
    pub const DEFAULT: &'static [&'static str] = &[
        "/livez",
        "/readyz",
        "/startupz",
        "/metrics",
        "/metrics.json",
    ];

    /// Exactly these paths (replacing the default list).
    pub fn new<I, P>(paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<str>,
    {
        Self(paths.into_iter().map(|p| p.as_ref().into()).collect())
    }

    /// No path excluded: every request is observed.
    pub fn none() -> Self {
        Self(Arc::new([]))
    }

    /// Whether a request for `path` is passed through unobserved.
    pub fn matches(&self, path: &str) -> bool {
        self.0.iter().any(|entry| match entry.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => **entry == *path,
        })
    }

    /// The entries, as given.
    pub fn entries(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|e| &**e)
    }
}

impl Default for PathExcludes {
    fn default() -> Self {
        Self::new(Self::DEFAULT)
    }
}

/// Entry point of the layer-stack builder: `Cachefront::builder()`.
#[derive(Debug, Clone, Copy)]
pub struct Cachefront;

impl Cachefront {
    /// A builder with the hygiene layers on (request id, `no-store` on errors), no
    /// observing layer yet, and the default [`PathExcludes`].
    pub fn builder() -> CachefrontBuilder {
        CachefrontBuilder::default()
    }
}

/// Collects the app's layers and adds them to a router in the right order
/// ([`apply`](Self::apply)); see the module docs.
#[derive(Debug, Clone)]
pub struct CachefrontBuilder {
    request_id: bool,
    request_id_span: bool,
    no_store_on_error: bool,
    excludes: PathExcludes,
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::Metrics>,
    #[cfg(feature = "profiling")]
    profiler: Option<crate::profiling::Profiler>,
    #[cfg(feature = "db")]
    capture: Option<crate::db::DbCapture>,
    #[cfg(feature = "cache-tags")]
    cache_tags: Option<crate::cache_tags::CacheTagLayer>,
}

impl Default for CachefrontBuilder {
    fn default() -> Self {
        Self {
            request_id: true,
            request_id_span: false,
            no_store_on_error: true,
            excludes: PathExcludes::default(),
            #[cfg(feature = "metrics")]
            metrics: None,
            #[cfg(feature = "profiling")]
            profiler: None,
            #[cfg(feature = "db")]
            capture: None,
            #[cfg(feature = "cache-tags")]
            cache_tags: None,
        }
    }
}

impl CachefrontBuilder {
    /// RED metrics per route into `metrics` (outermost observing layer: times everything).
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Per-request profiling: `Server-Timing`, slow-request log and report.
    #[cfg(feature = "profiling")]
    pub fn profiling(mut self, profiler: &crate::profiling::Profiler) -> Self {
        self.profiler = Some(profiler.clone());
        self
    }

    /// Query capture (placed inside the profiler, so the `db` `Server-Timing` entry
    /// works). Its subscriber half, [`DbCapture::tracing_layer`](crate::db::DbCapture::tracing_layer)
    /// or [`DbCapture::init_logging`](crate::db::DbCapture::init_logging), is still the
    /// app's to install, before [`apply`](Self::apply): `apply` checks it then and warns
    /// once ("query capture is OFF: …") when it is off.
    #[cfg(feature = "db")]
    pub fn db_capture(mut self, capture: &crate::db::DbCapture) -> Self {
        self.capture = Some(capture.clone());
        self
    }

    /// The `Cache-Tag` / `Surrogate-Key` writer (innermost: sees the handler's tags).
    #[cfg(feature = "cache-tags")]
    pub fn cache_tags(mut self, layer: crate::cache_tags::CacheTagLayer) -> Self {
        self.cache_tags = Some(layer);
        self
    }

    /// Turn the `x-request-id` layer on or off (default on).
    pub fn request_id(mut self, on: bool) -> Self {
        self.request_id = on;
        self
    }

    /// Also open a `request` span with `request_id` around each request (default off;
    /// see [`RequestIdLayer::with_span`](crate::hygiene::RequestIdLayer::with_span)): for
    /// a subscriber of your own that shows span fields. `DbCapture::init_logging` needs
    /// no span to put the id on log lines.
    pub fn request_id_span(mut self, on: bool) -> Self {
        self.request_id_span = on;
        self
    }

    /// Turn `no-store` on error answers on or off (default on).
    pub fn no_store_on_error(mut self, on: bool) -> Self {
        self.no_store_on_error = on;
        self
    }

    /// Paths the metrics, profiling and capture layers skip (replaces the default).
    pub fn exclude_paths(mut self, excludes: PathExcludes) -> Self {
        self.excludes = excludes;
        self
    }

    /// `router` with every configured layer added in one `Router::layer` call, so routes
    /// and the fallback added *before* this call are wrapped (axum's `MatchedPath`, the
    /// source of the bounded `route` label, is only visible to layers added this way).
    pub fn apply<S>(self, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let stack = tower::ServiceBuilder::new()
            .option_layer(self.request_id.then(|| {
                let layer = crate::hygiene::RequestIdLayer::new();
                if self.request_id_span {
                    layer.with_span()
                } else {
                    layer
                }
            }))
            .option_layer(
                self.no_store_on_error
                    .then(crate::hygiene::NoStoreOnErrorLayer::new),
            );
        #[cfg(feature = "metrics")]
        let stack = stack.option_layer(
            self.metrics
                .as_ref()
                .map(|m| m.layer().exclude_paths(self.excludes.clone())),
        );
        #[cfg(feature = "profiling")]
        let stack = stack.option_layer(
            self.profiler
                .as_ref()
                .map(|p| p.layer().exclude_paths(self.excludes.clone())),
        );
        #[cfg(feature = "db")]
        if let Some(capture) = &self.capture {
            // Applying the stack is start-up: say now, not at the first request, when the
            // installed subscriber leaves the capture off.
            capture.check_setup_at_startup();
        }
        #[cfg(feature = "db")]
        let stack = stack.option_layer(
            self.capture
                .as_ref()
                .map(|c| c.layer().exclude_paths(self.excludes.clone())),
        );
        #[cfg(feature = "cache-tags")]
        let stack = stack.option_layer(self.cache_tags);
        router.layer(stack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_match_exact_paths_and_star_prefixes() {
        let ex = PathExcludes::new(["/livez", "/debug/*"]);
        assert!(ex.matches("/livez"));
        assert!(!ex.matches("/livez/x"));
        assert!(!ex.matches("/live"));
        assert!(ex.matches("/debug/requests"));
        assert!(!ex.matches("/products/1"));
        assert!(!PathExcludes::none().matches("/livez"));
        assert!(PathExcludes::default().matches("/metrics"));
    }
}
