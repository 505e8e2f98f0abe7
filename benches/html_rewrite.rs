//! HTML rewrite throughput: the edge/build rewriter (`cachefront::assets`)
//! with every feature on (and variants), against a bare lol_html pass with
//! no handlers over the same bytes, on the demo pages and on one large page
//! assembled from them. Run: `cargo bench -p cachefront --bench html_rewrite`.

use cachefront::assets::{rewrite_html, HtmlRewriteSettings, ResponsiveImages};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

#[path = "html_rewrite/corpus.rs"]
mod corpus;
use corpus::{bare_lol_html, demo_site, large_page, lol_html_img_handler};

fn bench(c: &mut Criterion) {
    let (pages, manifest) = demo_site();
    let large = large_page(&pages);
    let settings = HtmlRewriteSettings {
        manifest: Some(&manifest),
        responsive_images: Some(ResponsiveImages::default()),
        ..HtmlRewriteSettings::default()
    };

    let mut group = c.benchmark_group("html_rewrite");
    group.sample_size(30);
    let demo_bytes: usize = pages.iter().map(|(_, b)| b.len()).sum();
    group.throughput(Throughput::Bytes(demo_bytes as u64));
    group.bench_function(BenchmarkId::new("cachefront", "demo_pages"), |b| {
        b.iter(|| {
            pages
                .iter()
                .map(|(name, bytes)| {
                    let settings = HtmlRewriteSettings {
                        page_path: format!("/{name}"),
                        ..settings.clone()
                    };
                    rewrite_html(bytes, &settings).map_or(0, |r| r.html.len())
                })
                .sum::<usize>()
        })
    });
    group.bench_function(BenchmarkId::new("bare_lol_html", "demo_pages"), |b| {
        b.iter(|| {
            pages
                .iter()
                .map(|(_, bytes)| bare_lol_html(bytes))
                .sum::<usize>()
        })
    });
    group.throughput(Throughput::Bytes(large.len() as u64));
    group.bench_function(BenchmarkId::new("cachefront", "large_page"), |b| {
        b.iter(|| rewrite_html(&large, &settings).map_or(0, |r| r.html.len()))
    });
    let edge = corpus::edge_settings(&manifest, "/index.html".into());
    group.bench_function(BenchmarkId::new("cachefront_edge", "large_page"), |b| {
        b.iter(|| rewrite_html(&large, &edge).map_or(0, |r| r.html.len()))
    });
    let without_style_attributes = HtmlRewriteSettings {
        style_attributes: false,
        ..settings.clone()
    };
    group.bench_function(
        BenchmarkId::new("cachefront_no_style_attributes", "large_page"),
        |b| b.iter(|| rewrite_html(&large, &without_style_attributes).map_or(0, |r| r.html.len())),
    );
    let lazy_only = HtmlRewriteSettings::default();
    group.bench_function(
        BenchmarkId::new("cachefront_no_manifest", "large_page"),
        |b| b.iter(|| rewrite_html(&large, &lazy_only).map_or(0, |r| r.html.len())),
    );
    group.bench_function(
        BenchmarkId::new("lol_html_edge_selectors_noop", "large_page"),
        |b| b.iter(|| corpus::lol_html_same_selectors(&large, &edge)),
    );
    group.bench_function(
        BenchmarkId::new("lol_html_img_handler", "large_page"),
        |b| b.iter(|| lol_html_img_handler(&large)),
    );
    group.bench_function(BenchmarkId::new("bare_lol_html", "large_page"), |b| {
        b.iter(|| bare_lol_html(&large))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
