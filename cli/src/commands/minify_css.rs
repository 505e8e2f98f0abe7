//! `cachefront minify-css [--edge] <file>`: one CSS file through lightningcss
//! (as the build minifies it) or, with `--edge`, through the worker's own
//! minifier (EDGE_MINIFY_CSS).

use std::path::PathBuf;
use std::process::ExitCode;

use cachefront::assets::css_min::minify_css as edge_minify_css;
use cachefront_cli::css_minify::minify_css;
use cachefront_cli::guarded::without_panics;
use clap::Args;

use super::minify_file::{self, OutputArgs};

#[derive(Debug, Args)]
pub struct MinifyCssArgs {
    file: PathBuf,
    /// Use the worker's minifier instead of lightningcss.
    #[arg(long)]
    edge: bool,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(args: MinifyCssArgs) -> ExitCode {
    let name = args.file.display().to_string();
    let edge = args.edge;
    minify_file::run(&args.file, args.output, |source| {
        let css = std::str::from_utf8(source).map_err(|e| format!("not UTF-8: {e}"))?;
        if edge {
            without_panics(|| edge_minify_css(css)).map(String::into_bytes)
        } else {
            without_panics(|| minify_css(css, &name)).map(String::into_bytes)
        }
    })
}
