//! One pass of one HTML rewrite variant over the large page (or the demo
//! pages), for instruction counts under callgrind, which stay stable on a
//! busy machine where wall time does not:
//!
//! ```sh
//! cargo bench --profile native -p cachefront --bench html_rewrite_instructions --no-run
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \
//!     $CARGO_TARGET_DIR/native/deps/html_rewrite_instructions-* edge large
//! ```
//!
//! Variants: `bare` (lol_html, no handlers), `img_handler` (one no-op `img`
//! handler), `17_handlers` (17 no-op element handlers), `edge_noop` and
//! `build_noop` (exactly the selectors the rewriter registers for the edge's
//! or the build's settings, with no-op handlers: the baseline for the
//! handlers' own cost), `edge` (the worker's settings), `build` (every
//! feature, as the build runs it). Pages: `large` (~1 MiB) or `demo`. The
//! ratio of two runs' `Ir` totals is the throughput ratio, minus the ~fixed
//! cost of reading the corpus (subtract a `none` run).
//!
//! `HTML_REWRITE_DUMP=<file>` appends the `edge`/`build` output and report to
//! `<file>`: compare two builds' dumps to check that a change to the
//! rewriter leaves its output byte for byte the same.

use cachefront::assets::{rewrite_html, HtmlRewriteSettings, Manifest};

#[path = "html_rewrite/corpus.rs"]
mod corpus;
use corpus::{bare_lol_html, demo_site, large_page, lol_html_img_handler};

fn run(variant: &str, manifest: &Manifest, name: &str, page: &[u8]) -> usize {
    let page_path = format!("/{name}");
    match variant {
        "none" => page.len(),
        "bare" => bare_lol_html(page),
        "img_handler" => lol_html_img_handler(page),
        "star_handler" => corpus::lol_html_noop_handlers(page, &["*"]),
        "17_handlers" => corpus::lol_html_noop_handlers(
            page,
            &[
                "base", "head", "body", "img", "script", "link", "source", "video", "audio",
                "track", "embed", "input", "iframe", "a", "area", "use", "image",
            ],
        ),
        "edge_noop" => {
            corpus::lol_html_same_selectors(page, &corpus::edge_settings(manifest, page_path))
        }
        "build_noop" => {
            corpus::lol_html_same_selectors(page, &corpus::build_settings(manifest, page_path))
        }
        "edge" => rewritten(page, &corpus::edge_settings(manifest, page_path)),
        "build" => rewritten(page, &corpus::build_settings(manifest, page_path)),
        _ => 0,
    }
}

/// The rewritten length; with `HTML_REWRITE_DUMP=<file>` set, the output and
/// report are appended to that file too, to check that a change to the
/// rewriter leaves its output byte for byte the same.
fn rewritten(page: &[u8], settings: &HtmlRewriteSettings<'_>) -> usize {
    let Ok(out) = rewrite_html(page, settings) else {
        return 0;
    };
    if let Some(path) = std::env::var_os("HTML_REWRITE_DUMP") {
        use std::io::Write;
        let dumped = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| {
                file.write_all(&out.html)?;
                writeln!(file, "\n{:?}", out.report)
            });
        if let Err(err) = dumped {
            eprintln!("HTML_REWRITE_DUMP: {err}");
        }
    }
    out.html.len()
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let variant = args.next().unwrap_or_else(|| "edge".into());
    let pages_arg = args.next().unwrap_or_else(|| "large".into());
    let (pages, manifest) = demo_site();
    let inputs: Vec<(String, Vec<u8>)> = if pages_arg == "demo" {
        pages
    } else {
        vec![("index.html".into(), large_page(&pages))]
    };
    let bytes: usize = inputs
        .iter()
        .map(|(name, page)| run(&variant, &manifest, name, page))
        .sum();
    println!("{variant} {pages_arg}: {bytes} bytes out");
}
