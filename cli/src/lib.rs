//! The `cachefront` command-line tool's library: the build-time asset
//! pipeline (`cachefront build`) and the minifier entry points the benches and
//! library-correctness tests drive. HTML rewriting, the manifest and JS
//! minification come from the worker crate's runtime-free
//! [`cachefront::assets`] core, so the build and the edge rewrite alike.

pub mod build;
pub mod css_minify;
pub mod dependency_order;
pub mod edge_metrics;
pub mod error;
pub mod fingerprint;
pub mod guarded;
pub mod headers_file;
pub mod images;
pub mod site;
