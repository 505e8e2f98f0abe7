//! CPU cost of the plugin's layers per request, in process (no sockets, no database):
//! the same axum router with all layers and with none, driven through `tower::ServiceExt`.
//!
//! `cargo bench -p cachefront-origin --bench layers`
//!
//! With `--features memory` the process runs on jemalloc (every case alike) and two more
//! cases measure the memory layer: `memory` (request counting for the leak windows) and
//! `memory_per_route` (plus allocated bytes per route).

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use cachefront_origin::cache_tags::{CacheTagLayer, CacheTags};
use cachefront_origin::metrics::Metrics;
use cachefront_origin::profiling::{Profiler, ProfilingConfig, RequestProfile};
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use tower::ServiceExt;

#[cfg(feature = "memory")]
#[global_allocator]
static GLOBAL: cachefront_origin::memory::Jemalloc = cachefront_origin::memory::Jemalloc;

#[cfg(feature = "memory")]
fn memory(per_route: bool) -> Router {
    use cachefront_origin::memory::{MemoryConfig, MemoryMonitor};
    let monitor = MemoryMonitor::new(
        MemoryConfig {
            per_route,
            ..Default::default()
        },
        &Metrics::new(),
    );
    routes().layer(monitor.layer())
}

fn routes() -> Router {
    Router::new().route("/hello", get(|| async { "ok" })).route(
        "/products/{id}",
        get(|profile: RequestProfile| async move {
            profile.record_query(std::time::Duration::from_micros(300));
            (CacheTags::new(["product:1"]), "<h1>product</h1>")
        }),
    )
}

fn layered() -> Router {
    let metrics = Metrics::new();
    let profiler = Profiler::with_metrics(ProfilingConfig::default(), &metrics);
    routes()
        .layer(CacheTagLayer::new().metrics(&metrics))
        .layer(profiler.layer())
        .layer(metrics.layer())
}

fn metrics_only() -> Router {
    routes().layer(Metrics::new().layer())
}

fn profiling_only() -> Router {
    routes().layer(Profiler::new(ProfilingConfig::default()).layer())
}

fn tags_only() -> Router {
    routes().layer(CacheTagLayer::new())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("request");
    #[allow(unused_mut)]
    let mut apps = vec![
        ("bare", routes()),
        ("metrics", metrics_only()),
        ("profiling", profiling_only()),
        ("cache_tags", tags_only()),
        ("all_layers", layered()),
    ];
    #[cfg(feature = "memory")]
    apps.extend([
        ("memory", memory(false)),
        ("memory_per_route", memory(true)),
    ]);
    for (name, app) in apps {
        for path in ["/hello", "/products/1"] {
            let app = app.clone();
            group.bench_function(format!("{name}{path}"), |b| {
                b.to_async(&rt).iter(|| {
                    let app = app.clone();
                    async move {
                        let req = Request::get(path).body(Body::empty()).expect("request");
                        let res = app.oneshot(req).await.expect("infallible");
                        assert!(res.status().is_success());
                        res
                    }
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
