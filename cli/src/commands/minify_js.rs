//! `cachefront minify-js <file>`: one JavaScript file through oxc, as the
//! build and the edge minify it (used by the library-correctness tests and
//! benches).

use std::path::PathBuf;
use std::process::ExitCode;

use cachefront::assets::{minify_js, JsKind};
use cachefront_cli::guarded::without_panics;
use clap::Args;

use super::minify_file::{self, OutputArgs};

#[derive(Debug, Args)]
pub struct MinifyJsArgs {
    file: PathBuf,
    /// Parse as an ES module (top-level names may be renamed).
    #[arg(long)]
    module: bool,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(args: MinifyJsArgs) -> ExitCode {
    let kind = if args.module {
        JsKind::Module
    } else {
        JsKind::Script
    };
    minify_file::run(&args.file, args.output, |source| {
        without_panics(|| minify_js(source, kind).map_err(|e| e.to_string()))
    })
}
