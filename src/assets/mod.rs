//! Asset optimization core shared by the build (`cachefront build`, native) and
//! the edge (wasm): the fingerprint [`manifest`], how asset [`reference`]s in
//! HTML/CSS resolve, the CSS reference scanner ([`css_references`]), the
//! streaming [`html`] rewriter, JavaScript [`minify`] (oxc) and the edge's
//! [`origin_minify`] of origin scripts and stylesheets, and the [`picture`]
//! markup for images the build encoded. Runtime-free: no clock,
//! no I/O, no randomness. The build minifies CSS with lightningcss (in the
//! CLI: it would quadruple the worker's wasm size); the edge uses the small
//! conservative [`css_min`].

pub mod css_min;
pub mod css_references;
pub mod edge;
pub mod html;
pub mod manifest;
#[cfg(feature = "js-minify")]
pub mod minify;
pub mod origin_minify;
pub mod picture;
pub mod reference;
pub mod srcset;

pub use html::{
    link_header, rewrite_html, HtmlAssetRewriter, HtmlRewriteError, HtmlRewriteReport,
    HtmlRewriteSettings, PreloadHint, PreloadKind, ResponsiveImages, RewrittenHtml,
};
pub use manifest::{
    ImageInfo, ImageVariant, Manifest, ManifestEntry, ManifestError, DEFAULT_HTML_CACHE_CONTROL,
    IMMUTABLE_CACHE_CONTROL,
};
#[cfg(feature = "js-minify")]
pub use minify::{minify_js, JsKind, JsMinifyError};
