//! What `minify-js` and `minify-css` share: read one file, minify it (the
//! given number of times, keeping the fastest run for benches), write the
//! result, and optionally report sizes and time as JSON on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use crate::exit::{fail, report, EXIT_FAILURE};

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Minify this many times and report the fastest run (for benches).
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Print `{"bytes_in":..,"bytes_out":..,"best_ms":..}` to stderr.
    #[arg(long)]
    pub timings: bool,
}

pub fn run(
    file: &Path,
    output: OutputArgs,
    minify: impl Fn(&[u8]) -> Result<Vec<u8>, String>,
) -> ExitCode {
    report(run_minifier(file, output, minify).map_err(|message| fail(EXIT_FAILURE, message)))
}

fn run_minifier(
    file: &Path,
    OutputArgs {
        out,
        repeat,
        timings,
    }: OutputArgs,
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
