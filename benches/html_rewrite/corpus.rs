//! The HTML rewrite benchmarks' corpus, shared by `html_rewrite` (criterion,
//! wall time) and `html_rewrite_instructions` (one pass per variant, for
//! `valgrind --tool=callgrind`): the demo pages, a ~1 MiB page assembled from
//! them, a manifest for the demo site, and the lol_html baselines.

// Each bench uses part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use cachefront::assets::html::{registered_selectors, HandlerTarget};
use cachefront::assets::{HtmlRewriteSettings, Manifest, ManifestEntry, ResponsiveImages};
use lol_html::{HtmlRewriter, MemorySettings, Settings};

pub fn www() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("www")
}

pub fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
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
pub fn demo_manifest(files: &[PathBuf]) -> Manifest {
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
pub fn large_page(pages: &[(String, Vec<u8>)]) -> Vec<u8> {
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
pub fn lol_html_img_handler(input: &[u8]) -> usize {
    let mut written = 0;
    let settings =
        Settings::new().append_element_content_handler(lol_html::element!("img", |_el| Ok(())));
    let mut rewriter = HtmlRewriter::new(settings, |chunk: &[u8]| written += chunk.len());
    if rewriter.write(input).is_err() || rewriter.end().is_err() {
        return 0;
    }
    written
}

pub fn bare_lol_html(input: &[u8]) -> usize {
    let mut written = 0;
    let mut rewriter = HtmlRewriter::new(Settings::new(), |chunk: &[u8]| written += chunk.len());
    if rewriter.write(input).is_err() || rewriter.end().is_err() {
        return 0;
    }
    written
}

/// The demo pages (name relative to `www/`, bytes), sorted, and a manifest for the site.
pub fn demo_site() -> (Vec<(String, Vec<u8>)>, Manifest) {
    let mut files = Vec::new();
    files_under(&www(), &mut files);
    files.sort();
    let manifest = demo_manifest(&files);
    let pages = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "html"))
        .filter_map(|f| {
            let name = f.strip_prefix(www()).ok()?.to_string_lossy().into_owned();
            Some((name, std::fs::read(f).ok()?))
        })
        .collect();
    (pages, manifest)
}

/// What the worker runs on origin HTML (src/assets/edge.rs): no integrity,
/// no `style` attributes, no resizing unless configured.
pub fn edge_settings(manifest: &Manifest, page_path: String) -> HtmlRewriteSettings<'_> {
    HtmlRewriteSettings {
        manifest: Some(manifest),
        page_path,
        subresource_integrity: false,
        style_attributes: false,
        ..HtmlRewriteSettings::default()
    }
}

/// Every feature on, as the build runs it, plus responsive images.
pub fn build_settings(manifest: &Manifest, page_path: String) -> HtmlRewriteSettings<'_> {
    HtmlRewriteSettings {
        manifest: Some(manifest),
        page_path,
        responsive_images: Some(ResponsiveImages::default()),
        ..HtmlRewriteSettings::default()
    }
}

/// lol_html with one no-op handler per element name in `names`: what the
/// selector count alone costs.
pub fn lol_html_noop_handlers(input: &[u8], names: &[&str]) -> usize {
    let mut written = 0;
    let mut settings = Settings::new();
    for name in names {
        settings = settings.append_element_content_handler(lol_html::element!(*name, |_el| Ok(())));
    }
    let mut rewriter = HtmlRewriter::new(settings, |chunk: &[u8]| written += chunk.len());
    if rewriter.write(input).is_err() || rewriter.end().is_err() {
        return 0;
    }
    written
}

/// lol_html with exactly the selectors the rewriter registers for
/// `settings` (element and text handlers alike) and no-op handlers: the
/// baseline that isolates what the handlers' own work costs.
pub fn lol_html_same_selectors(input: &[u8], settings: &HtmlRewriteSettings<'_>) -> usize {
    let mut lol_settings = Settings::new().with_memory_settings(
        MemorySettings::new().with_max_allowed_memory_usage(settings.memory_limit),
    );
    for (selector, target) in registered_selectors(settings) {
        lol_settings = match target {
            HandlerTarget::Element => lol_settings
                .append_element_content_handler(lol_html::element!(selector, |_el| Ok(()))),
            HandlerTarget::Text => {
                lol_settings.append_element_content_handler(lol_html::text!(selector, |_t| Ok(())))
            }
        };
    }
    // The output is collected as `rewrite_html` collects it, so that copying
    // the page out counts on both sides of the ratio.
    let mut html = Vec::with_capacity(input.len() + input.len() / 8);
    let mut rewriter = HtmlRewriter::new(lol_settings, |chunk: &[u8]| {
        html.extend_from_slice(chunk);
    });
    if rewriter.write(input).is_err() || rewriter.end().is_err() {
        return 0;
    }
    html.len()
}
