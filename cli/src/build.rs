//! `cachefront build`: minify, fingerprint and rewrite a static site into an
//! output directory with a `manifest.json`.
//!
//! Order matters. Scripts and other assets are fingerprinted first; then
//! stylesheets, dependencies first, because a stylesheet's bytes (and so its
//! hash) include the fingerprinted names of what it imports; then pages,
//! which reference everything. Raster images are encoded first of all, in
//! parallel ([`crate::images`]); pages then get `<picture>` elements for them.
//! A minifier or encoder that fails on a file is a warning: that file keeps
//! its original bytes and the build goes on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cachefront::assets::css_references::{css_references, rewrite_css_references};
use cachefront::assets::reference::{local_url, map_reference, resolve};
use cachefront::assets::{
    minify_js, rewrite_html, HtmlRewriteSettings, ImageInfo, ImageVariant, JsKind, Manifest,
    ManifestEntry,
};

use crate::css_minify::minify_css;
use crate::dependency_order::dependency_order;
use crate::error::BuildError;
use crate::fingerprint::{content_hash, fingerprinted_path, integrity};
use crate::guarded::without_panics;
use crate::headers_file::headers_file;
use crate::images::{
    process_images, svg::minify_svg, EncodedImage, ImageInput, ImageOutcome, ImageSettings,
    RasterKind, VariantFormat,
};
use crate::site::{scan, FileKind, SiteFile};

/// Name of the manifest in the output directory's root.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The asset store's header rules, written at the output's root.
pub const HEADERS_FILE: &str = "/_headers";

/// What to build and how.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub source: PathBuf,
    pub out: PathBuf,
    /// Minify CSS with lightningcss (on by default).
    pub minify_css: bool,
    /// Minify JavaScript with oxc (on by default; checked on real libraries
    /// by tests/minify/).
    pub minify_js: bool,
    /// `loading="lazy"` / `decoding="async"` on all but the first image.
    pub lazy_images: bool,
    /// The `Cache-Control` the written `_headers` gives pages (the worker's
    /// `HTML_CACHE_CONTROL`, so pages carry it whichever of the two answers).
    pub html_cache_control: String,
    /// The image pipeline (optimised originals, AVIF/WebP variants,
    /// `<picture>` in pages, SVG minification); `None` copies images as-is.
    pub images: Option<ImageSettings>,
    /// Where encoded images are kept between builds; `None` encodes every
    /// image on every build.
    pub image_cache: Option<PathBuf>,
}

/// Something the build worked around; the file named still made it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildWarning {
    /// Path of the source file, as given (e.g. `www/js/app.js`).
    pub file: PathBuf,
    pub message: String,
}

/// Bytes in and out for one kind of file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SizeTotals {
    pub files: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl SizeTotals {
    fn add(&mut self, bytes_in: usize, bytes_out: usize) {
        self.files += 1;
        self.bytes_in += bytes_in as u64;
        self.bytes_out += bytes_out as u64;
    }
}

/// What a finished build did.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    pub manifest: Manifest,
    pub scripts: SizeTotals,
    pub stylesheets: SizeTotals,
    pub pages: SizeTotals,
    /// Files fingerprinted as-is (fonts, PDFs; images when the pipeline is off).
    pub other_assets: SizeTotals,
    /// Image pipeline, per format: originals by input format (`PNG`, `JPEG`,
    /// `SVG`: bytes in → served), and variants (`AVIF`, `WebP`: files are
    /// all widths; bytes in = the originals' source bytes, out = the
    /// full-width variants).
    pub images: BTreeMap<&'static str, SizeTotals>,
    /// Raster images encoded by this build, and read from the cache.
    pub images_encoded: usize,
    pub images_cached: usize,
    /// Files copied under their own name.
    pub fixed_name: SizeTotals,
    pub warnings: Vec<BuildWarning>,
}

impl BuildReport {
    pub fn total(&self) -> SizeTotals {
        [
            self.scripts,
            self.stylesheets,
            self.pages,
            self.other_assets,
            self.fixed_name,
        ]
        .iter()
        .chain(
            self.images
                .iter()
                .filter(|(format, _)| !is_variant_label(format))
                .map(|(_, totals)| totals),
        )
        .fold(SizeTotals::default(), |mut sum, t| {
            sum.files += t.files;
            sum.bytes_in += t.bytes_in;
            sum.bytes_out += t.bytes_out;
            sum
        })
    }
}

fn is_variant_label(label: &str) -> bool {
    VariantFormat::ALL.iter().any(|f| f.label() == label)
}

/// Told about each file as the build reaches it (drives the progress bar);
/// images report from the encoding threads, hence `Sync`.
pub trait BuildProgress: Sync {
    fn start(&self, total_files: u64);
    fn file(&self, logical_path: &str);
}

/// For callers that show no progress.
pub struct NoProgress;

impl BuildProgress for NoProgress {
    fn start(&self, _total_files: u64) {}
    fn file(&self, _logical_path: &str) {}
}

/// A file's output bytes, keyed by output URL path.
type Outputs = BTreeMap<String, Vec<u8>>;

/// Runs the whole build and replaces `options.out` with its result.
pub fn build(
    options: &BuildOptions,
    progress: &dyn BuildProgress,
) -> Result<BuildReport, BuildError> {
    check_output_location(&options.source, &options.out)?;
    let files = scan(&options.source)?;
    if let Some(collision) = files
        .iter()
        .find(|f| f.logical_path == format!("/{MANIFEST_FILE}"))
    {
        return Err(BuildError::ManifestCollision {
            path: collision.path.clone(),
        });
    }
    progress.start(files.len() as u64);

    let mut report = BuildReport::default();
    let mut outputs = Outputs::new();
    let mut sources: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for file in &files {
        let bytes = std::fs::read(&file.path).map_err(BuildError::io(&file.path))?;
        sources.insert(&file.logical_path, bytes);
    }
    let source_of = |file: &SiteFile| {
        sources
            .get(file.logical_path.as_str())
            .map_or(&[][..], Vec::as_slice)
    };
    let known_paths: BTreeSet<&str> = files.iter().map(|f| f.logical_path.as_str()).collect();

    // 0. Raster images, in parallel: the slow part of a first build.
    let mut encoded: BTreeMap<&str, ImageOutcome> = BTreeMap::new();
    if let Some(settings) = &options.images {
        let inputs: Vec<ImageInput<'_>> = files
            .iter()
            .filter(|f| f.kind == FileKind::Other)
            .filter_map(|f| {
                Some(ImageInput {
                    logical_path: &f.logical_path,
                    bytes: source_of(f),
                    kind: RasterKind::of_path(&f.logical_path)?,
                })
            })
            .collect();
        let outcomes = process_images(
            &inputs,
            settings,
            options.image_cache.as_deref(),
            &|logical| progress.file(logical),
        );
        for (input, outcome) in inputs.iter().zip(outcomes) {
            encoded.insert(input.logical_path, outcome);
        }
    }

    // 1. Scripts and opaque assets: nothing they contain is rewritten.
    for file in &files {
        let bytes = source_of(file);
        if let Some(outcome) = encoded.remove(file.logical_path.as_str()) {
            add_image(&mut report, &mut outputs, file, bytes, outcome);
            continue;
        }
        let output = match file.kind {
            FileKind::Script { module } => {
                progress.file(&file.logical_path);
                let out = if options.minify_js {
                    minified_script(bytes, module, file, &mut report.warnings)
                } else {
                    bytes.to_vec()
                };
                report.scripts.add(bytes.len(), out.len());
                out
            }
            FileKind::Other if options.images.is_some() && is_svg(&file.logical_path) => {
                progress.file(&file.logical_path);
                let out = minify_svg(bytes)
                    .filter(|m| m.len() < bytes.len())
                    .unwrap_or_else(|| bytes.to_vec());
                report
                    .images
                    .entry("SVG")
                    .or_default()
                    .add(bytes.len(), out.len());
                out
            }
            FileKind::Other => {
                progress.file(&file.logical_path);
                report.other_assets.add(bytes.len(), bytes.len());
                bytes.to_vec()
            }
            _ => continue,
        };
        fingerprint_into(
            &mut report.manifest,
            &mut outputs,
            &file.logical_path,
            output,
        );
    }

    // 2. Stylesheets, imports before importers.
    let stylesheets: BTreeMap<&str, &SiteFile> = files
        .iter()
        .filter(|f| f.kind == FileKind::Stylesheet)
        .map(|f| (f.logical_path.as_str(), f))
        .collect();
    let mut minified_css: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (&logical, file) in &stylesheets {
        let bytes = source_of(file);
        let minified = if options.minify_css {
            minified_stylesheet(bytes, file, &mut report.warnings)
        } else {
            bytes.to_vec()
        };
        let mut dependencies = BTreeSet::new();
        if let Ok(css) = std::str::from_utf8(&minified) {
            for reference in css_references(css) {
                let target = local_url(&reference.url).and_then(|u| resolve(logical, u.path));
                if let Some(target) = target.filter(|t| stylesheets.contains_key(t.as_str())) {
                    dependencies.insert(target);
                }
            }
        }
        imports.insert(logical.to_owned(), dependencies);
        minified_css.insert(logical, minified);
    }
    let order = dependency_order(&imports).map_err(|cycle| BuildError::ImportCycle { cycle })?;
    for logical in order {
        let (Some(file), Some(minified)) = (
            stylesheets.get(logical.as_str()),
            minified_css.remove(logical.as_str()),
        ) else {
            continue;
        };
        progress.file(&logical);
        let output = match String::from_utf8(minified) {
            Ok(css) => {
                let rewritten = rewrite_css_references(&css, |reference| {
                    let mapped = map_reference(&report.manifest, &logical, &reference.url);
                    if mapped.is_none() {
                        warn_if_missing(
                            &reference.url,
                            &logical,
                            &known_paths,
                            file,
                            &mut report.warnings,
                        );
                    }
                    mapped.map(|m| m.url)
                });
                rewritten.into_bytes()
            }
            Err(not_utf8) => {
                report.warnings.push(BuildWarning {
                    file: file.path.clone(),
                    message: "not valid UTF-8; copied without rewriting its references".into(),
                });
                not_utf8.into_bytes()
            }
        };
        report.stylesheets.add(source_of(file).len(), output.len());
        fingerprint_into(&mut report.manifest, &mut outputs, &logical, output);
    }

    // 3. Pages and fixed-name files keep their names.
    for file in &files {
        let bytes = source_of(file);
        match file.kind {
            FileKind::Page => {
                progress.file(&file.logical_path);
                let settings = HtmlRewriteSettings {
                    manifest: Some(&report.manifest),
                    page_path: file.logical_path.clone(),
                    lazy_images: options.lazy_images,
                    // Resizing URLs only work on a zone with Image Resizing;
                    // the edge adds them when configured to.
                    responsive_images: None,
                    pictures: options.images.is_some(),
                    ..HtmlRewriteSettings::default()
                };
                let output = match rewrite_html(bytes, &settings) {
                    Ok(rewritten) => rewritten.html,
                    Err(err) => {
                        report.warnings.push(BuildWarning {
                            file: file.path.clone(),
                            message: format!("{err}; copied unchanged"),
                        });
                        bytes.to_vec()
                    }
                };
                report.pages.add(bytes.len(), output.len());
                outputs.insert(file.logical_path.clone(), output);
            }
            FileKind::FixedName => {
                progress.file(&file.logical_path);
                report.fixed_name.add(bytes.len(), bytes.len());
                outputs.insert(file.logical_path.clone(), bytes.to_vec());
            }
            _ => {}
        }
    }

    outputs.insert(
        format!("/{MANIFEST_FILE}"),
        report.manifest.to_json_pretty().into_bytes(),
    );
    write_headers_file(options, &mut outputs, &mut report);
    write_output(&options.out, &outputs)?;
    Ok(report)
}

/// Replaces the site's `_headers` (kept, after ours) with the generated
/// one, so the asset store serves the output with the edge's caching.
fn write_headers_file(options: &BuildOptions, outputs: &mut Outputs, report: &mut BuildReport) {
    let user = outputs
        .remove(HEADERS_FILE)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let mut paths: BTreeSet<String> = outputs.keys().cloned().collect();
    paths.insert(HEADERS_FILE.to_owned());
    let written = headers_file(
        &paths,
        &report.manifest,
        &options.html_cache_control,
        user.as_deref(),
    );
    report
        .warnings
        .extend(written.warnings.into_iter().map(|message| BuildWarning {
            file: options.source.join("_headers"),
            message,
        }));
    outputs.insert(HEADERS_FILE.to_owned(), written.text.into_bytes());
}

fn is_svg(logical_path: &str) -> bool {
    logical_path.to_ascii_lowercase().ends_with(".svg")
}

/// Fingerprints an encoded image's original and variants and records them
/// in the manifest; an image that failed to encode is copied as it was,
/// with a warning.
fn add_image(
    report: &mut BuildReport,
    outputs: &mut Outputs,
    file: &SiteFile,
    source: &[u8],
    outcome: ImageOutcome,
) {
    let kind = RasterKind::of_path(&file.logical_path).map_or("image", RasterKind::label);
    let image: EncodedImage = match outcome.result {
        Ok(image) => image,
        Err(message) => {
            report.warnings.push(BuildWarning {
                file: file.path.clone(),
                message: format!("{message}; copied unchanged"),
            });
            report.other_assets.add(source.len(), source.len());
            fingerprint_into(
                &mut report.manifest,
                outputs,
                &file.logical_path,
                source.to_vec(),
            );
            return;
        }
    };
    if outcome.cached {
        report.images_cached += 1;
    } else {
        report.images_encoded += 1;
    }
    if let Some(note) = &image.note {
        report.warnings.push(BuildWarning {
            file: file.path.clone(),
            message: note.clone(),
        });
    }
    report
        .images
        .entry(kind)
        .or_default()
        .add(source.len(), image.original.len());
    fingerprint_into(
        &mut report.manifest,
        outputs,
        &file.logical_path,
        image.original,
    );
    let stem = file
        .logical_path
        .rsplit_once('.')
        .map_or(file.logical_path.as_str(), |(stem, _)| stem);
    let mut variants = Vec::with_capacity(image.variants.len());
    for format in VariantFormat::ALL {
        let of_format: Vec<_> = image
            .variants
            .iter()
            .filter(|v| v.format == format)
            .collect();
        let full_width = of_format
            .iter()
            .find(|v| v.width == image.width)
            .map_or(0, |v| v.bytes.len());
        let totals = report.images.entry(format.label()).or_default();
        totals.files += of_format.len();
        totals.bytes_in += source.len() as u64;
        totals.bytes_out += full_width as u64;
        for variant in of_format {
            let logical = format!("{stem}.{}.{}", variant.width, format.extension());
            let path = fingerprinted_path(&logical, &content_hash(&variant.bytes));
            variants.push(ImageVariant {
                path: path.clone(),
                mime: format.mime().to_owned(),
                width: variant.width,
                height: variant.height,
                size: variant.bytes.len() as u64,
            });
            outputs.insert(path, variant.bytes.clone());
        }
    }
    let info = ImageInfo {
        width: image.width,
        height: image.height,
        variants,
    };
    // The original was inserted just above, so the image has its asset.
    let _ = report.manifest.insert_image(&file.logical_path, info);
}

fn minified_script(
    bytes: &[u8],
    module: bool,
    file: &SiteFile,
    warnings: &mut Vec<BuildWarning>,
) -> Vec<u8> {
    let kind = if module {
        JsKind::Module
    } else {
        JsKind::Script
    };
    match without_panics(|| minify_js(bytes, kind).map_err(|err| err.to_string())) {
        // Already-minified input can come out a few bytes longer.
        Ok(minified) if minified.len() < bytes.len() => minified,
        Ok(_) => bytes.to_vec(),
        Err(message) => {
            warnings.push(BuildWarning {
                file: file.path.clone(),
                message: format!("{message}; kept unminified"),
            });
            bytes.to_vec()
        }
    }
}

fn minified_stylesheet(bytes: &[u8], file: &SiteFile, warnings: &mut Vec<BuildWarning>) -> Vec<u8> {
    let Ok(css) = std::str::from_utf8(bytes) else {
        return bytes.to_vec();
    };
    match without_panics(|| minify_css(css, &file.logical_path)) {
        Ok(minified) if minified.len() < bytes.len() => minified.into_bytes(),
        Ok(_) => bytes.to_vec(),
        Err(message) => {
            warnings.push(BuildWarning {
                file: file.path.clone(),
                message: format!("CSS minification failed: {message}; kept unminified"),
            });
            bytes.to_vec()
        }
    }
}

fn warn_if_missing(
    url: &str,
    from: &str,
    known_paths: &BTreeSet<&str>,
    file: &SiteFile,
    warnings: &mut Vec<BuildWarning>,
) {
    let Some(target) = local_url(url).and_then(|u| resolve(from, u.path)) else {
        return;
    };
    if !known_paths.contains(target.as_str()) {
        warnings.push(BuildWarning {
            file: file.path.clone(),
            message: format!("references {url}, which is not in the source directory"),
        });
    }
}

fn fingerprint_into(
    manifest: &mut Manifest,
    outputs: &mut Outputs,
    logical_path: &str,
    bytes: Vec<u8>,
) {
    let path = fingerprinted_path(logical_path, &content_hash(&bytes));
    manifest.insert(
        logical_path,
        ManifestEntry {
            path: path.clone(),
            size: bytes.len() as u64,
            integrity: integrity(&bytes),
        },
    );
    outputs.insert(path, bytes);
}

fn check_output_location(source: &Path, out: &Path) -> Result<(), BuildError> {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    if absolute(out).starts_with(absolute(source)) {
        return Err(BuildError::OutputInsideSource {
            out: out.to_owned(),
            source_dir: source.to_owned(),
        });
    }
    Ok(())
}

/// Writes everything into a fresh sibling directory, then swaps it in, so a
/// failed build never leaves a half-written output behind. An existing output
/// is only replaced if it is empty or holds a previous build.
fn write_output(out: &Path, outputs: &Outputs) -> Result<(), BuildError> {
    if out.exists() && !is_previous_build(out)? {
        return Err(BuildError::OutputNotABuild {
            path: out.to_owned(),
        });
    }
    let staging = staging_dir(out);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(BuildError::io(&staging))?;
    }
    for (url_path, bytes) in outputs {
        let path = staging.join(url_path.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(BuildError::io(parent))?;
        }
        std::fs::write(&path, bytes).map_err(BuildError::io(&path))?;
    }
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(BuildError::io(out))?;
    }
    std::fs::rename(&staging, out).map_err(BuildError::io(out))
}

fn staging_dir(out: &Path) -> PathBuf {
    let mut name = out
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

fn is_previous_build(out: &Path) -> Result<bool, BuildError> {
    let mut entries = std::fs::read_dir(out).map_err(BuildError::io(out))?;
    if entries.next().is_none() {
        return Ok(true);
    }
    let manifest = out.join(MANIFEST_FILE);
    Ok(std::fs::read(&manifest)
        .ok()
        .is_some_and(|bytes| Manifest::from_json(&bytes).is_ok()))
}
