//! HTML rewrite throughput: the edge/build rewriter (`cachefront::assets`)
//! with every feature on (and variants), against a bare lol_html pass with
//! no handlers over the same bytes, on the demo pages and on one large page
//! assembled from them. Run: `cargo bench -p cachefront --bench html_rewrite`.

use std::path::{Path, PathBuf};

use cachefront::assets::{
    rewrite_html, HtmlRewriteSettings, Manifest, ManifestEntry, ResponsiveImages,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lol_html::{HtmlRewriter, Settings};

fn www() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("www")
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// A manifest for every non-HTML file of the demo site, as a build writes it.
fn demo_manifest(files: &[PathBuf]) -> Manifest {
    let root = www();
    let mut manifest = Manifest::new();
    for file in files {
        let Ok(relative) = file.strip_prefix(&root) else {
            continue;
        };
        let logical = format!("/{}", relative.to_string_lossy());
        if logical.ends_with(".html") {
            continue;
        }
        let path = match logical.rsplit_once('.') {
            Some((stem, ext)) => format!("{stem}.0123abcd.{ext}"),
            None => format!("{logical}.0123abcd"),
        };
        manifest.insert(
            logical,
            ManifestEntry {
                path,
                size: 1,
                integrity: "sha384-oqVuAfXRKap7fdgcCY5uykM6+R9GqQ8K/uxy9rx7HNQlGYl1kPzQho1wx4JwY8wC".into(),
            },
        );
    }
    manifest
}

/// ~1 MiB page: the demo pages' bodies repeated inside one document, the
/// shape of a long catalogue listing.
fn large_page(pages: &[(String, Vec<u8>)]) -> Vec<u8> {
    let bodies: Vec<&str> = pages
        .iter()
        .filter_map(|(_, bytes)| std::str::from_utf8(bytes).ok())
        .filter_map(|html| {
            let start = html.find("<body")?;
            let end = html.rfind("</body>")?;
            Some(&html[start..end])
        })
        .collect();
    let head = pages
        .iter()
        .find(|(name, _)| name == "index.html")
        .and_then(|(_, bytes)| std::str::from_utf8(bytes).ok())
        .and_then(|html| html.find("<body").map(|i| html[..i].to_owned()))
        .unwrap_or_default();
    let mut page = head;
    'fill: loop {
        for body in &bodies {
            page.push_str(
                body.trim_start_matches(|c| c != '>')
                    .trim_start_matches('>'),
            );
            if page.len() > 1024 * 1024 {
                break 'fill;
            }
        }
        if bodies.is_empty() {
            break;
        }
    }
    page.push_str("</body></html>\n");
    page.into_bytes()
}

/// lol_html with one no-op `img` handler: the floor for any rewriter that
/// touches elements at all (handlers switch lol_html from its tag scanner to
/// its full lexer).
fn lol_html_img_handler(input: &[u8]) -> usize {
    let mut written = 0;
    let settings =
        Settings::new().append_element_content_handler(lol_html::element!("img", |_el| Ok(())));
    let mut rewriter = HtmlRewriter::new(settings, |chunk: &[u8]| written += chunk.len());
    if rewriter.write(input).is_err() || rewriter.end().is_err() {
        return 0;
    }
    written
}

fn bare_lol_html(input: &[u8]) -> usize {
    let mut written = 0;
    let mut rewriter = HtmlRewriter::new(Settings::new(), |chunk: &[u8]| written += chunk.len());
    if rewriter.write(input).is_err() || rewriter.end().is_err() {
        return 0;
    }
    written
}

fn bench(c: &mut Criterion) {
    let mut files = Vec::new();
    files_under(&www(), &mut files);
    files.sort();
    let manifest = demo_manifest(&files);
    let pages: Vec<(String, Vec<u8>)> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "html"))
        .filter_map(|f| {
            let name = f.strip_prefix(www()).ok()?.to_string_lossy().into_owned();
            Some((name, std::fs::read(f).ok()?))
        })
        .collect();
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
