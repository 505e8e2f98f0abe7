//! `cachefront`: the build-time half of Cachefront.
//!
//! - `cachefront build [--src www] [--out dist/www]` — minify, fingerprint,
//!   rewrite, write `manifest.json`.
//! - `cachefront minify-js <file>` / `minify-css [--edge] <file>` — one file
//!   through the same minifiers (used by the library-correctness tests and
//!   benches).
//! - `cachefront purge --tag T | --url U | --prefix P | --host H | --everything`
//!   — purge the edge cache through its purge API (docs/purge.md).
//! - `cachefront edge-exporter` — Workers Analytics Engine → Prometheus
//!   `/metrics` (docs/ops/README.md).
//! - `cachefront state export|import` — save and restore the worker's tag
//!   registry and origin health (docs/ops/disaster-recovery.md).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cachefront::assets::css_min::minify_css as edge_minify_css;
use cachefront::assets::{minify_js, JsKind};
use cachefront_cli::build::{build, BuildOptions, BuildProgress, BuildReport, SizeTotals};
use cachefront_cli::css_minify::minify_css;
use cachefront_cli::guarded::without_panics;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

mod commands;
mod exit;
mod http;

use commands::{edge_exporter, purge, state};

#[derive(Parser)]
#[command(name = "cachefront", version, about = "Cachefront build tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Minify, fingerprint and rewrite a static site; writes <out>/manifest.json.
    Build {
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
    },
    /// Minify one JavaScript file with oxc (as the build and the edge do).
    MinifyJs {
        file: PathBuf,
        /// Parse as an ES module (top-level names may be renamed).
        #[arg(long)]
        module: bool,
        /// Write here instead of stdout.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Minify this many times and report the fastest run (for benches).
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// Print `{"bytes_in":..,"bytes_out":..,"best_ms":..}` to stderr.
        #[arg(long)]
        timings: bool,
    },
    /// Purge the edge cache by tag, URL, prefix, host or everything (docs/purge.md).
    Purge(purge::PurgeArgs),
    /// Export or import the worker's state: tag registry, origin health
    /// (docs/ops/disaster-recovery.md).
    #[command(subcommand)]
    State(state::StateCommand),
    /// Serve the edge's Workers Analytics Engine data as Prometheus metrics.
    EdgeExporter(edge_exporter::EdgeExporterArgs),
    /// Minify one CSS file with lightningcss (as the build does), or with
    /// `--edge` the worker's own minifier (EDGE_MINIFY_CSS).
    MinifyCss {
        file: PathBuf,
        /// Use the worker's minifier instead of lightningcss.
        #[arg(long)]
        edge: bool,
        #[arg(long, short)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        #[arg(long)]
        timings: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Purge(args) => return purge::run(args),
        Command::State(command) => return state::run(command),
        Command::EdgeExporter(args) => return edge_exporter::run(args),
        Command::Build {
            src,
            out,
            no_minify_css,
            no_minify_js,
            no_lazy_images,
        } => run_build(BuildOptions {
            source: src,
            out,
            minify_css: !no_minify_css,
            minify_js: !no_minify_js,
            lazy_images: !no_lazy_images,
        }),
        Command::MinifyJs {
            file,
            module,
            out,
            repeat,
            timings,
        } => {
            let kind = if module {
                JsKind::Module
            } else {
                JsKind::Script
            };
            run_minifier(&file, out, repeat, timings, |source| {
                without_panics(|| minify_js(source, kind).map_err(|e| e.to_string()))
            })
        }
        Command::MinifyCss {
            file,
            edge,
            out,
            repeat,
            timings,
        } => run_minifier(&file, out, repeat, timings, |source| {
            let css = std::str::from_utf8(source).map_err(|e| format!("not UTF-8: {e}"))?;
            let name = file.display().to_string();
            if edge {
                without_panics(|| edge_minify_css(css)).map(String::into_bytes)
            } else {
                without_panics(|| minify_css(css, &name)).map(String::into_bytes)
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
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

fn run_minifier(
    file: &PathBuf,
    out: Option<PathBuf>,
    repeat: u32,
    timings: bool,
    minify: impl Fn(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<(), String> {
    let source = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut best = Duration::MAX;
    let mut output = Vec::new();
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        output = minify(&source).map_err(|e| format!("{}: {e}", file.display()))?;
        best = best.min(started.elapsed());
    }
    match out {
        Some(path) => {
            std::fs::write(&path, &output).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => std::io::stdout()
            .write_all(&output)
            .map_err(|e| format!("stdout: {e}"))?,
    }
    if timings {
        eprintln!(
            "{{\"bytes_in\":{},\"bytes_out\":{},\"best_ms\":{:.3}}}",
            source.len(),
            output.len(),
            best.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
