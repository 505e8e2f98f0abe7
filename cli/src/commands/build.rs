//! `cachefront build`: minify, fingerprint and rewrite a static site through
//! `cachefront_cli::build`, with a progress bar on a terminal and a size
//! summary at the end.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use cachefront_cli::build::{build, BuildOptions, BuildProgress, BuildReport, SizeTotals};
use cachefront_cli::images::ImageSettings;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::exit::{fail, report, EXIT_FAILURE};

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Source directory.
    #[arg(long, default_value = "www")]
    src: PathBuf,
    /// Output directory (replaced; must be empty or a previous build).
    #[arg(long, default_value = "dist/www")]
    out: PathBuf,
    /// Copy CSS without minifying it.
    #[arg(long)]
    no_minify_css: bool,
    /// Copy JavaScript without minifying it.
    #[arg(long)]
    no_minify_js: bool,
    /// Leave <img> loading/decoding attributes alone.
    #[arg(long)]
    no_lazy_images: bool,
    /// Cache-Control that the written _headers gives pages (set it to the
    /// worker's HTML_CACHE_CONTROL; scripts/build-site.sh does).
    #[arg(long, default_value = cachefront::assets::DEFAULT_HTML_CACHE_CONTROL)]
    html_cache_control: String,
    /// Copy images as they are: no optimisation, no AVIF/WebP, no <picture>.
    #[arg(long)]
    no_images: bool,
    /// Widths (pixels, comma-separated) to encode AVIF/WebP variants at;
    /// each image also gets its own width and never a wider one.
    #[arg(long, value_delimiter = ',', value_name = "PX,...")]
    image_widths: Option<Vec<u32>>,
    /// AVIF quality, 1-100 (libavif's scale).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    avif_quality: Option<u8>,
    /// AVIF encoder speed, 0 (slowest, smallest) to 10.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=10))]
    avif_speed: Option<u8>,
    /// WebP quality, 0-100.
    #[arg(long)]
    webp_quality: Option<f32>,
    /// Lossless WebP variants instead of lossy (larger; for comparison).
    #[arg(long)]
    webp_lossless: bool,
    /// Encoded images are kept here between builds [default: .cachefront-image-cache
    /// beside the output directory].
    #[arg(long, value_name = "DIR")]
    image_cache: Option<PathBuf>,
    /// Encode every image again, reading and writing no cache.
    #[arg(long)]
    no_image_cache: bool,
}

pub fn run(args: BuildArgs) -> ExitCode {
    let defaults = ImageSettings::default();
    let images = ImageSettings {
        widths: args.image_widths.unwrap_or(defaults.widths),
        avif_quality: args.avif_quality.unwrap_or(defaults.avif_quality),
        avif_speed: args.avif_speed.unwrap_or(defaults.avif_speed),
        webp_quality: args
            .webp_quality
            .unwrap_or(defaults.webp_quality)
            .clamp(0.0, 100.0),
        webp_lossless: args.webp_lossless,
        avif_yuv444: defaults.avif_yuv444,
        png_level: defaults.png_level,
    };
    let image_cache = if args.no_image_cache {
        None
    } else {
        Some(args.image_cache.unwrap_or_else(|| {
            args.out
                .parent()
                .unwrap_or(std::path::Path::new(""))
                .join(".cachefront-image-cache")
        }))
    };
    let options = BuildOptions {
        source: args.src,
        out: args.out,
        minify_css: !args.no_minify_css,
        minify_js: !args.no_minify_js,
        lazy_images: !args.no_lazy_images,
        html_cache_control: args.html_cache_control,
        images: (!args.no_images).then_some(images),
        image_cache,
    };
    report(run_build(options).map_err(|message| fail(EXIT_FAILURE, message)))
}

/// Draws a progress bar on stderr when it is a terminal; hidden otherwise so
/// logs and CI output stay clean.
struct TerminalProgress(ProgressBar);

impl BuildProgress for TerminalProgress {
    fn start(&self, total_files: u64) {
        self.0.set_length(total_files);
    }
    fn file(&self, logical_path: &str) {
        self.0.set_message(logical_path.to_owned());
        self.0.inc(1);
    }
}

fn run_build(options: BuildOptions) -> Result<(), String> {
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{bar:32} {pos}/{len} {wide_msg}") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    let progress = TerminalProgress(bar);
    let report = build(&options, &progress);
    progress.0.finish_and_clear();
    let report = report.map_err(|err| err.to_string())?;
    print_summary(&options, &report);
    Ok(())
}

fn print_summary(options: &BuildOptions, report: &BuildReport) {
    let total = report.total();
    println!(
        "Built {} from {}: {} files, {} fingerprinted, manifest at {}",
        options.out.display(),
        options.source.display(),
        total.files,
        report.manifest.len(),
        options
            .out
            .join(cachefront_cli::build::MANIFEST_FILE)
            .display(),
    );
    let line = |label: &str, t: SizeTotals| {
        if t.files > 0 {
            println!(
                "  {label:<11} {:>4} files  {:>10} -> {:>10}",
                t.files,
                human_bytes(t.bytes_in),
                human_bytes(t.bytes_out)
            );
        }
    };
    line("JavaScript", report.scripts);
    line("CSS", report.stylesheets);
    line("HTML", report.pages);
    for (format, totals) in &report.images {
        line(format, *totals);
    }
    if report.images_encoded + report.images_cached > 0 {
        println!(
            "  images: {} encoded, {} from the cache (AVIF/WebP: bytes of the full-width variants)",
            report.images_encoded, report.images_cached
        );
    }
    line("other", report.other_assets);
    line("fixed-name", report.fixed_name);
    line("total", total);
    if !report.warnings.is_empty() {
        eprintln!("{} warning(s):", report.warnings.len());
        for warning in &report.warnings {
            eprintln!("  warning: {}: {}", warning.file.display(), warning.message);
        }
    }
}

fn human_bytes(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}
