//! One module per `cachefront` subcommand, each with its `Args` and `run()`;
//! `minify_file` is what the two minifier commands share.

pub mod build;
pub mod check;
pub mod edge_exporter;
pub mod minify_css;
pub mod minify_file;
pub mod minify_js;
pub mod purge;
pub mod state;
