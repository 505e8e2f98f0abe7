//! `cachefront`: the build-time half of Cachefront.
//!
//! - `cachefront build [--src www] [--out dist/www]` — minify, fingerprint,
//!   rewrite, write `manifest.json`.
//! - `cachefront minify-js <file>` / `minify-css [--edge] <file>` — one file
//!   through the same minifiers (used by the library-correctness tests and
//!   benches).
//! - `cachefront purge --tag T | --url U | --prefix P | --host H | --everything`
//!   — purge the edge cache through its purge API, or Cloudflare (`--cloudflare`),
//!   CloudFront (`--cloudfront`), several at once (`--provider a,b`) (docs/purge.md).
//! - `cachefront edge-exporter` — Workers Analytics Engine → Prometheus
//!   `/metrics` (docs/ops/README.md).
//! - `cachefront state export|import` — save and restore the worker's tag
//!   registry and origin health (docs/ops/disaster-recovery.md).
//! - `cachefront check [--config wrangler.toml] [--env NAME]` — validate the
//!   worker's configuration offline (docs/configuration.md).
//!
//! This file only parses the command line and hands it to the subcommand's
//! module in `commands/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod exit;
mod http;

use commands::{build, check, edge_exporter, minify_css, minify_js, purge, state};

#[derive(Parser)]
#[command(name = "cachefront", version, about = "Cachefront build tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Minify, fingerprint and rewrite a static site; writes <out>/manifest.json.
    Build(build::BuildArgs),
    /// Minify one JavaScript file with oxc (as the build and the edge do).
    MinifyJs(minify_js::MinifyJsArgs),
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
    MinifyCss(minify_css::MinifyCssArgs),
    /// Validate the worker's configuration (wrangler.toml vars, .dev.vars)
    /// offline with the worker's own code; every problem with its path.
    Check(check::CheckArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Build(args) => build::run(args),
        Command::MinifyJs(args) => minify_js::run(args),
        Command::Purge(args) => purge::run(args),
        Command::State(command) => state::run(command),
        Command::EdgeExporter(args) => edge_exporter::run(args),
        Command::MinifyCss(args) => minify_css::run(args),
        Command::Check(args) => check::run(args),
    }
}
