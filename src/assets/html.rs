//! Streaming HTML rewriting over `lol_html`, shared by the build and the edge:
//! asset URLs mapped through the [`Manifest`], Subresource Integrity on
//! scripts and stylesheets, lazy images (never the first, hero image),
//! optional responsive `srcset` through Cloudflare image resizing,
//! `<picture>` for images the build encoded ([`super::picture`]), and
//! preload hints for the stylesheets and scripts in `<head>`.
//!
//! Two ways in: [`rewrite_html`] for a whole buffer, and
//! [`HtmlAssetRewriter`] (`write` chunk by chunk, then `end`) for a stream.
//! Any error leaves it to the caller to serve the original bytes.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use lol_html::html_content::{ContentType, Element, TextChunk};
use lol_html::{ElementContentHandlers, HtmlRewriter, MemorySettings, Selector, Settings};

use super::css_references::rewrite_css_references;
use super::manifest::Manifest;
use super::picture::{has_variants, plan_picture, ImgAttributes, PicturePlan};
use super::reference::{fingerprinted_entry, local_url, map_reference, resolve};
use super::srcset::rewrite_srcset;

/// Rewriting memory cap when none is configured: lol_html's own buffers only
/// grow when a single tag or text run spans chunks, so this is generous.
pub const DEFAULT_MEMORY_LIMIT: usize = 4 * 1024 * 1024;

/// Elements that may reference an asset: their URL attributes, and their
/// `srcset`-syntax attribute. One handler per element name, registered once:
/// lol_html tests every selector against every start tag, so the selector
/// count, not the handlers' work, dominated the rewrite (callgrind, see
/// benches/html_rewrite_instructions.rs); and a universal one such as `[src]`
/// makes lol_html parse the attributes of every element (~3.5x slower).
/// Narrower ones that let lol_html's matcher skip elements whose URLs cannot
/// map (`a[href*="."]`, or one alternative per manifest extension) cost the
/// matcher about what they save the handlers, or far more: measured in
/// docs/assets.md ("Narrower selectors") and not kept.
const ASSET_ELEMENTS: [(&str, &[&str], Option<&str>); 14] = [
    ("img", &["src"], Some("srcset")),
    ("script", &["src"], None),
    ("link", &["href"], Some("imagesrcset")),
    ("source", &["src"], Some("srcset")),
    ("video", &["src", "poster"], None),
    ("audio", &["src"], None),
    ("track", &["src"], None),
    ("embed", &["src"], None),
    ("input", &["src"], None),
    ("iframe", &["src"], None),
    ("a", &["href"], None),
    ("area", &["href"], None),
    ("use", &["href"], None),
    ("image", &["href"], None),
];

/// lol_html's default preallocation for a tag split across chunks.
const PREALLOCATED_PARSING_BUFFER: usize = 1024;

/// Inline `<style>` text above this size is passed through unrewritten rather
/// than buffered, so one pathological element cannot grow memory unbounded.
const MAX_INLINE_STYLE_BYTES: usize = 256 * 1024;

/// Responsive images through Cloudflare image resizing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsiveImages {
    /// Candidate widths in CSS pixels, ascending.
    pub widths: Vec<u32>,
    /// `sizes` for images that declare neither `sizes` nor a `width`.
    pub sizes: String,
}

impl Default for ResponsiveImages {
    fn default() -> Self {
        Self {
            widths: vec![320, 640, 960, 1280, 1920],
            sizes: "100vw".into(),
        }
    }
}

/// What the rewriter does. `Default` is the build's setting minus the
/// manifest: lazy images, integrity and preload hints on, resizing off.
#[derive(Debug, Clone)]
pub struct HtmlRewriteSettings<'m> {
    /// Maps asset URLs to fingerprinted ones; `None` leaves URLs alone.
    pub manifest: Option<&'m Manifest>,
    /// URL path of the page being rewritten (`/products/tent.html`), against
    /// which relative references resolve.
    pub page_path: String,
    /// Add `integrity` to scripts and stylesheets that are fingerprinted.
    pub subresource_integrity: bool,
    /// `loading="lazy"` + `decoding="async"` on every `<img>` but the first.
    pub lazy_images: bool,
    /// Add `srcset`/`sizes` with `/cdn-cgi/image/...` URLs to images without one.
    pub responsive_images: Option<ResponsiveImages>,
    /// Wrap each `<img>` whose image has variants in the manifest (AVIF,
    /// WebP made by the build) in a `<picture>` offering them, and give it
    /// the image's `width`/`height`; such images get no resizing `srcset`.
    /// Needs a manifest; an `<img>` already inside a `<picture>` is left
    /// to its author.
    pub pictures: bool,
    /// Collect [`PreloadHint`]s for stylesheets and scripts in `<head>`.
    pub preload_hints: bool,
    /// Map `url(...)` in `style="..."` attributes. Matching an attribute on
    /// any element makes lol_html parse every element's attributes, which
    /// costs about 3.5x in throughput, so the edge may turn this off when
    /// origin pages carry no asset URLs in inline styles. `<style>` elements
    /// are rewritten regardless.
    pub style_attributes: bool,
    /// Cap on lol_html's buffers, in bytes.
    pub memory_limit: usize,
}

impl Default for HtmlRewriteSettings<'_> {
    fn default() -> Self {
        Self {
            manifest: None,
            page_path: "/".into(),
            subresource_integrity: true,
            lazy_images: true,
            responsive_images: None,
            pictures: true,
            preload_hints: true,
            style_attributes: true,
            memory_limit: DEFAULT_MEMORY_LIMIT,
        }
    }
}

/// What a preload hint asks the browser to fetch as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreloadKind {
    Style,
    Script,
    ModuleScript,
}

/// One `Link: <url>; rel=preload` hint (usable for 103 Early Hints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreloadHint {
    pub url: String,
    pub kind: PreloadKind,
}

impl PreloadHint {
    /// The hint as one `Link` header member.
    pub fn link_value(&self) -> String {
        match self.kind {
            PreloadKind::Style => format!("<{}>; rel=preload; as=style", self.url),
            PreloadKind::Script => format!("<{}>; rel=preload; as=script", self.url),
            PreloadKind::ModuleScript => format!("<{}>; rel=modulepreload", self.url),
        }
    }
}

/// All hints as one `Link` header value, or `None` when there are none.
pub fn link_header(hints: &[PreloadHint]) -> Option<String> {
    if hints.is_empty() {
        return None;
    }
    Some(
        hints
            .iter()
            .map(PreloadHint::link_value)
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// What a finished rewrite did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HtmlRewriteReport {
    pub preload_hints: Vec<PreloadHint>,
    /// Attribute and CSS URLs that now point at fingerprinted files.
    pub urls_rewritten: usize,
    /// Images that got `loading="lazy"`.
    pub images_lazy: usize,
    /// Images that got a resizing `srcset`.
    pub images_responsive: usize,
    /// Images wrapped in a `<picture>` with the build's variants.
    pub images_picture: usize,
}

/// A whole rewritten page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrittenHtml {
    pub html: Vec<u8>,
    pub report: HtmlRewriteReport,
}

/// Rewriting stopped; the output so far is unusable and the caller should
/// serve the original bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HtmlRewriteError {
    #[error("HTML rewriting exceeded its memory limit")]
    MemoryLimitExceeded,
    #[error("HTML rewriting failed: {0}")]
    Rewriting(String),
}

impl From<lol_html::errors::RewritingError> for HtmlRewriteError {
    fn from(err: lol_html::errors::RewritingError) -> Self {
        match err {
            lol_html::errors::RewritingError::MemoryLimitExceeded(_) => Self::MemoryLimitExceeded,
            other => Self::Rewriting(other.to_string()),
        }
    }
}

/// Rewrites a whole page held in memory.
pub fn rewrite_html(
    input: &[u8],
    settings: &HtmlRewriteSettings<'_>,
) -> Result<RewrittenHtml, HtmlRewriteError> {
    let mut html = Vec::with_capacity(input.len() + input.len() / 8);
    let mut rewriter = HtmlAssetRewriter::with_source(settings, Some(input), |chunk: &[u8]| {
        html.extend_from_slice(chunk);
    });
    rewriter.write(input)?;
    let report = rewriter.end()?;
    Ok(RewrittenHtml { html, report })
}

/// Per-document state the element handlers share.
struct DocumentState<'m> {
    settings: HtmlRewriteSettings<'m>,
    /// Where relative URLs resolve from: the page, or its `<base href>`;
    /// `None` once a `<base>` points off-site (then nothing is mapped).
    base_path: RefCell<Option<String>>,
    images_seen: Cell<usize>,
    /// Inside `<head>` (preload hints come from there only). Shared with the
    /// `</head>` handler, which lol_html needs to be `'static`.
    in_head: Rc<Cell<bool>>,
    /// Open `<picture>` elements around the current one (shared with their
    /// end-tag handlers, like `in_head`).
    picture_depth: Rc<Cell<usize>>,
    inline_style: RefCell<String>,
    inline_style_passthrough: Cell<bool>,
    report: RefCell<HtmlRewriteReport>,
    /// The whole document, when it is rewritten in one piece: attribute
    /// values are then borrowed from it through lol_html's source locations
    /// instead of read through `get_attribute`, which allocates the
    /// lowercased name and the value on every call.
    source: Option<&'m [u8]>,
}

impl<'m> DocumentState<'m> {
    /// The value of attribute `name` (lowercase), as `get_attribute` gives it.
    fn attribute(&self, element: &Element<'_, '_>, name: &str) -> Option<Cow<'m, str>> {
        match self
            .source
            .and_then(|source| source_attribute(source, element, name))
        {
            Some(found) => found,
            None => element.get_attribute(name).map(Cow::Owned),
        }
    }

    fn has_attribute(&self, element: &Element<'_, '_>, name: &str) -> bool {
        match self
            .source
            .and_then(|source| source_attribute(source, element, name))
        {
            Some(found) => found.is_some(),
            None => element.has_attribute(name),
        }
    }

    /// `url` mapped to its fingerprinted form, if the manifest knows it.
    fn mapped_url(&self, url: &str) -> Option<String> {
        let manifest = self.settings.manifest?;
        let base = self.base_path.borrow();
        let mapped = map_reference(manifest, base.as_deref()?, url)?;
        self.report.borrow_mut().urls_rewritten += 1;
        Some(mapped.url)
    }

    fn map_attribute(&self, element: &mut Element<'_, '_>, name: &str) -> HandlerResult {
        if let Some(value) = self.attribute(element, name) {
            if let Some(mapped) = self.mapped_url(&value) {
                element.set_attribute(name, &mapped)?;
            }
        }
        Ok(())
    }

    fn map_srcset_attribute(&self, element: &mut Element<'_, '_>, name: &str) -> HandlerResult {
        if let Some(value) = self.attribute(element, name) {
            let mut changed = false;
            let rewritten = rewrite_srcset(&value, |url| {
                let mapped = self.mapped_url(url);
                changed |= mapped.is_some();
                mapped
            });
            if changed {
                element.set_attribute(name, &rewritten)?;
            }
        }
        Ok(())
    }

    fn map_css(&self, css: &str) -> Option<String> {
        let mut changed = false;
        let rewritten = rewrite_css_references(css, |reference| {
            let mapped = self.mapped_url(&reference.url);
            changed |= mapped.is_some();
            mapped
        });
        changed.then_some(rewritten)
    }

    fn add_integrity(&self, element: &mut Element<'_, '_>, url: &str) -> HandlerResult {
        let Some(manifest) = self.settings.manifest else {
            return Ok(());
        };
        let base = self.base_path.borrow();
        let Some(base) = base.as_deref() else {
            return Ok(());
        };
        if let Some(entry) = fingerprinted_entry(manifest, base, url) {
            // The served bytes are the ones the manifest hashed, so its value
            // replaces any integrity written for the unminified source.
            element.set_attribute("integrity", &entry.integrity)?;
        }
        Ok(())
    }

    /// The `<picture>` plan for an `<img>`, read before its URLs are mapped
    /// (the plan looks its `src` up by logical path).
    fn picture_plan(&self, element: &Element<'_, '_>, src: Option<&str>) -> Option<PicturePlan> {
        let manifest = self.settings.manifest.filter(|_| self.settings.pictures)?;
        if self.picture_depth.get() > 0 {
            return None;
        }
        let base = self.base_path.borrow();
        let base = base.as_deref()?;
        // Most images have no variants: settle that from `src` alone before
        // reading four more attributes (each read allocates in lol_html).
        if !has_variants(manifest, base, src?) {
            return None;
        }
        let attribute = |name| self.attribute(element, name);
        let (srcset, sizes, width, height) = (
            attribute("srcset"),
            attribute("sizes"),
            attribute("width"),
            attribute("height"),
        );
        plan_picture(
            manifest,
            base,
            ImgAttributes {
                src,
                srcset: srcset.as_deref(),
                sizes: sizes.as_deref(),
                width: width.as_deref(),
                height: height.as_deref(),
            },
        )
    }

    fn apply_picture(&self, element: &mut Element<'_, '_>, plan: &PicturePlan) -> HandlerResult {
        element.before(&plan.open, ContentType::Html);
        element.after(plan.close, ContentType::Html);
        if let Some((width, height)) = plan.dimensions {
            element.set_attribute("width", &width.to_string())?;
            element.set_attribute("height", &height.to_string())?;
        }
        self.report.borrow_mut().images_picture += 1;
        Ok(())
    }

    fn picture(&self, element: &mut Element<'_, '_>) -> HandlerResult {
        let depth = Rc::clone(&self.picture_depth);
        depth.set(depth.get() + 1);
        element.on_end_tag(Box::new(move |_| {
            depth.set(depth.get().saturating_sub(1));
            Ok(())
        }))
    }

    fn image(
        &self,
        element: &mut Element<'_, '_>,
        in_picture: bool,
        src: Option<&str>,
        loading_decoding: Option<(bool, bool)>,
    ) -> HandlerResult {
        let index = self.images_seen.get();
        self.images_seen.set(index + 1);
        // The first image is usually the hero (the LCP element): lazy-loading
        // it would delay the most important paint on the page.
        if self.settings.lazy_images && index > 0 {
            let (has_loading, has_decoding) = loading_decoding.unwrap_or_else(|| {
                (
                    self.has_attribute(element, "loading"),
                    self.has_attribute(element, "decoding"),
                )
            });
            if !has_loading {
                element.set_attribute("loading", "lazy")?;
                self.report.borrow_mut().images_lazy += 1;
            }
            if !has_decoding {
                element.set_attribute("decoding", "async")?;
            }
        }
        if let Some(responsive) = self
            .settings
            .responsive_images
            .as_ref()
            .filter(|_| !in_picture)
        {
            self.add_responsive_srcset(element, responsive, src)?;
        }
        Ok(())
    }

    fn add_responsive_srcset(
        &self,
        element: &mut Element<'_, '_>,
        responsive: &ResponsiveImages,
        src: Option<&str>,
    ) -> HandlerResult {
        if self.has_attribute(element, "srcset") {
            return Ok(());
        }
        let Some(local) = src.and_then(local_url) else {
            return Ok(());
        };
        let base = self.base_path.borrow();
        let Some(path) = base.as_deref().and_then(|base| resolve(base, local.path)) else {
            return Ok(());
        };
        // Resizing cannot improve vector images and would break animated GIFs.
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".svg") || lower.ends_with(".gif") {
            return Ok(());
        }
        let declared_width = self
            .attribute(element, "width")
            .and_then(|w| w.trim().parse::<u32>().ok())
            .filter(|w| *w > 0);
        // Past twice the layout width only 3x screens gain, at a large byte cost.
        let widths: Vec<u32> = responsive
            .widths
            .iter()
            .copied()
            .filter(|w| declared_width.is_none_or(|declared| *w <= declared.saturating_mul(2)))
            .collect();
        if widths.is_empty() {
            return Ok(());
        }
        let source = path.trim_start_matches('/');
        let srcset = widths
            .iter()
            .map(|w| {
                format!(
                    "/cdn-cgi/image/width={w},format=auto/{source}{} {w}w",
                    local.suffix
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        element.set_attribute("srcset", &srcset)?;
        if !self.has_attribute(element, "sizes") {
            let sizes = match declared_width {
                Some(w) => format!("(max-width: {w}px) 100vw, {w}px"),
                None => responsive.sizes.clone(),
            };
            element.set_attribute("sizes", &sizes)?;
        }
        self.report.borrow_mut().images_responsive += 1;
        Ok(())
    }

    fn preload(&self, url: &str, kind: PreloadKind) {
        // Cross-origin hints would need a matching `crossorigin` to be reused.
        if local_url(url).is_none() {
            return;
        }
        self.report.borrow_mut().preload_hints.push(PreloadHint {
            url: url.to_owned(),
            kind,
        });
    }

    /// Everything done to one element that may reference an asset, in the
    /// order that matters: URLs are mapped first, so integrity and preload
    /// hints see the fingerprinted URLs.
    fn asset_element(
        &self,
        element: &mut Element<'_, '_>,
        name: &str,
        url_attributes: &[&str],
        srcset_attribute: Option<&str>,
    ) -> HandlerResult {
        let mapping = self.settings.manifest.is_some();
        // The main URL (`src`/`href`) is read once: the picture plan, the
        // mapping, integrity and preload hints all need it, and every read
        // through lol_html allocates twice.
        let (main_attribute, other_url_attributes) = match url_attributes.split_first() {
            Some((main, others)) => (Some(*main), others),
            None => (None, url_attributes),
        };
        let mut url = main_attribute.and_then(|attribute| self.attribute(element, attribute));
        let picture = if name == "img" {
            self.picture_plan(element, url.as_deref())
        } else {
            None
        };
        // Read before any attribute is set: from then on they are read
        // through lol_html, which allocates. (Mapping and pictures never set
        // `loading` or `decoding`.)
        let loading_decoding =
            (name == "img" && self.settings.lazy_images && self.images_seen.get() > 0).then(|| {
                (
                    self.has_attribute(element, "loading"),
                    self.has_attribute(element, "decoding"),
                )
            });
        if mapping {
            if let (Some(attribute), Some(mapped)) = (
                main_attribute,
                url.as_deref().and_then(|u| self.mapped_url(u)),
            ) {
                element.set_attribute(attribute, &mapped)?;
                url = Some(Cow::Owned(mapped));
            }
            for attribute in other_url_attributes {
                self.map_attribute(element, attribute)?;
            }
            if let Some(attribute) = srcset_attribute {
                self.map_srcset_attribute(element, attribute)?;
            }
        }
        if let Some(plan) = &picture {
            self.apply_picture(element, plan)?;
        }
        let integrity = mapping && self.settings.subresource_integrity;
        let preload = self.settings.preload_hints && self.in_head.get();
        match (name, url.as_deref()) {
            ("img", _)
                if self.settings.lazy_images || self.settings.responsive_images.is_some() =>
            {
                self.image(element, picture.is_some(), url.as_deref(), loading_decoding)
            }
            ("script", Some(src)) => {
                if integrity {
                    self.add_integrity(element, src)?;
                }
                if preload && !self.has_attribute(element, "nomodule") {
                    let module = self
                        .attribute(element, "type")
                        .is_some_and(|t| t.trim().eq_ignore_ascii_case("module"));
                    let kind = if module {
                        PreloadKind::ModuleScript
                    } else {
                        PreloadKind::Script
                    };
                    self.preload(src, kind);
                }
                Ok(())
            }
            ("link", Some(href)) if integrity || preload => {
                let rel = self.attribute(element, "rel").unwrap_or_default();
                let stylesheet = has_token(&rel, "stylesheet");
                if integrity && (stylesheet || self.carries_integrity(element, &rel)) {
                    self.add_integrity(element, href)?;
                }
                if preload && stylesheet {
                    self.preload(href, PreloadKind::Style);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `<link rel=modulepreload>` and `<link rel=preload as=script|style>`:
    /// links that fetch a script or stylesheet, and so take `integrity`.
    fn carries_integrity(&self, element: &Element<'_, '_>, rel: &str) -> bool {
        if has_token(rel, "modulepreload") {
            return true;
        }
        has_token(rel, "preload")
            && self
                .attribute(element, "as")
                .is_some_and(|r#as| matches!(&*r#as, "script" | "style"))
    }

    fn head(&self, element: &mut Element<'_, '_>) -> HandlerResult {
        self.in_head.set(true);
        let in_head = Rc::clone(&self.in_head);
        element.on_end_tag(Box::new(move |_| {
            in_head.set(false);
            Ok(())
        }))
    }

    fn base(&self, element: &mut Element<'_, '_>) {
        let Some(href) = self.attribute(element, "href") else {
            return;
        };
        let mut base = self.base_path.borrow_mut();
        *base = match (local_url(&href), base.as_deref()) {
            (Some(local), Some(current)) => resolve(current, local.path),
            _ => None,
        };
    }

    fn style_text(&self, chunk: &mut TextChunk<'_>) {
        if self.inline_style_passthrough.get() {
            if chunk.last_in_text_node() {
                self.inline_style_passthrough.set(false);
            }
            return;
        }
        let mut buffered = self.inline_style.borrow_mut();
        buffered.push_str(chunk.as_str());
        if chunk.last_in_text_node() {
            let css = std::mem::take(&mut *buffered);
            let rewritten = self.map_css(&css).unwrap_or(css);
            chunk.set_str(rewritten);
        } else if buffered.len() > MAX_INLINE_STYLE_BYTES {
            chunk.set_str(std::mem::take(&mut *buffered));
            self.inline_style_passthrough.set(true);
        } else {
            chunk.set_str(String::new());
        }
    }
}

type HandlerResult = lol_html::HandlerResult;

/// A streaming rewriter: feed it chunks with [`write`](Self::write), finish
/// with [`end`](Self::end); output goes to `sink` as it is produced.
pub struct HtmlAssetRewriter<'m, O: FnMut(&[u8])> {
    inner: HtmlRewriter<'m, O>,
    state: Rc<DocumentState<'m>>,
}

impl<'m, O: FnMut(&[u8])> HtmlAssetRewriter<'m, O> {
    pub fn new(settings: &HtmlRewriteSettings<'m>, sink: O) -> Self {
        Self::with_source(settings, None, sink)
    }

    /// `source` is the whole document when it is written in one piece.
    fn with_source(settings: &HtmlRewriteSettings<'m>, source: Option<&'m [u8]>, sink: O) -> Self {
        let state = Rc::new(DocumentState {
            settings: settings.clone(),
            base_path: RefCell::new(Some(settings.page_path.clone())),
            images_seen: Cell::new(0),
            in_head: Rc::new(Cell::new(false)),
            picture_depth: Rc::new(Cell::new(0)),
            inline_style: RefCell::new(String::new()),
            inline_style_passthrough: Cell::new(false),
            report: RefCell::new(HtmlRewriteReport::default()),
            source,
        });
        let mut handlers: Vec<(Cow<'static, Selector>, ElementContentHandlers<'m>)> = Vec::new();
        for (selector, target) in registered_selectors(settings) {
            let s = Rc::clone(&state);
            handlers.push(match (selector, target) {
                (_, HandlerTarget::Text) => on_text(selector, move |chunk| {
                    s.style_text(chunk);
                    Ok(())
                }),
                ("base", _) => on_element(selector, move |el| {
                    s.base(el);
                    Ok(())
                }),
                ("picture", _) => on_element(selector, move |el| s.picture(el)),
                ("head", _) => on_element(selector, move |el| s.head(el)),
                // An implied `</head>`: lol_html runs no end-tag handler for it.
                ("body", _) => on_element(selector, move |_| {
                    s.in_head.set(false);
                    Ok(())
                }),
                ("[style]", _) => on_element(selector, move |el| {
                    if let Some(style) = s.attribute(el, "style") {
                        if let Some(mapped) = s.map_css(&style) {
                            el.set_attribute("style", &mapped)?;
                        }
                    }
                    Ok(())
                }),
                (name, _) => {
                    let (url_attributes, srcset_attribute) = ASSET_ELEMENTS
                        .iter()
                        .find(|(element, _, _)| *element == name)
                        .map_or((&[][..], None), |(_, urls, srcset)| (*urls, *srcset));
                    on_element(name, move |el| {
                        s.asset_element(el, name, url_attributes, srcset_attribute)
                    })
                }
            });
        }

        let lol_settings = handlers.into_iter().fold(
            Settings::new().with_memory_settings(
                MemorySettings::new()
                    .with_max_allowed_memory_usage(settings.memory_limit)
                    // lol_html panics if its preallocation exceeds the cap.
                    .with_preallocated_parsing_buffer_size(
                        PREALLOCATED_PARSING_BUFFER.min(settings.memory_limit),
                    ),
            ),
            Settings::append_element_content_handler,
        );
        Self {
            inner: HtmlRewriter::new(lol_settings, sink),
            state,
        }
    }

    /// Feeds the next chunk of the document (chunks may split anywhere).
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), HtmlRewriteError> {
        self.inner.write(chunk).map_err(HtmlRewriteError::from)
    }

    /// Flushes the rest of the document and says what the rewrite did.
    pub fn end(self) -> Result<HtmlRewriteReport, HtmlRewriteError> {
        self.inner.end()?;
        let report = self.state.report.take();
        Ok(report)
    }
}

/// What a registered lol_html handler receives.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerTarget {
    Element,
    Text,
}

/// The selectors the rewriter registers for `settings`, in registration
/// order (lol_html runs an element's handlers in that order, so `<base>`
/// comes first). Public for the benchmarks' baseline: lol_html with these
/// same selectors and no-op handlers, which costs what the selector matching
/// alone costs.
#[doc(hidden)]
pub fn registered_selectors(
    settings: &HtmlRewriteSettings<'_>,
) -> Vec<(&'static str, HandlerTarget)> {
    let mapping = settings.manifest.is_some();
    let images = settings.lazy_images || settings.responsive_images.is_some();
    let mut selectors = Vec::new();
    if mapping {
        selectors.push(("base", HandlerTarget::Element));
    }
    if mapping && settings.pictures {
        selectors.push(("picture", HandlerTarget::Element));
    }
    if settings.preload_hints {
        selectors.push(("head", HandlerTarget::Element));
        selectors.push(("body", HandlerTarget::Element));
    }
    for (name, _, _) in ASSET_ELEMENTS {
        let needed = mapping
            || (name == "img" && images)
            || (settings.preload_hints && matches!(name, "script" | "link"));
        if needed {
            selectors.push((name, HandlerTarget::Element));
        }
    }
    if mapping {
        if settings.style_attributes {
            selectors.push(("[style]", HandlerTarget::Element));
        }
        selectors.push(("style", HandlerTarget::Text));
    }
    selectors
}

/// Whether a whitespace-separated attribute value (`rel`) holds `token`,
/// compared ASCII case-insensitively as HTML does.
fn has_token(value: &str, token: &str) -> bool {
    value
        .split_ascii_whitespace()
        .any(|t| t.eq_ignore_ascii_case(token))
}

/// An attribute read from the document's bytes: `Some(value)` (`None`
/// inside when the element has no such attribute), or `None` when the bytes
/// cannot stand for what `get_attribute` would return, and it must be asked:
/// lol_html decodes values that start with a byte-order mark or are not
/// UTF-8 differently. An attribute a handler set has no source location; it
/// is read through lol_html.
fn source_attribute<'s>(
    source: &'s [u8],
    element: &Element<'_, '_>,
    name: &str,
) -> Option<Option<Cow<'s, str>>> {
    for attribute in element.attributes() {
        let Some(name_at) = attribute.name_source_location() else {
            if attribute.name() == name {
                return Some(Some(Cow::Owned(attribute.value())));
            }
            continue;
        };
        if !source
            .get(name_at.bytes())?
            .eq_ignore_ascii_case(name.as_bytes())
        {
            continue;
        }
        // lol_html, too, returns the first of duplicate attributes.
        let value = match attribute.value_source_location() {
            Some(at) => source.get(at.bytes())?,
            None => b"",
        };
        if matches!(value.first(), Some(0xEF | 0xFE | 0xFF)) {
            return None;
        }
        return std::str::from_utf8(value)
            .ok()
            .map(|value| Some(Cow::Borrowed(value)));
    }
    Some(None)
}

/// Selectors here are string constants checked by the tests below; a typo is
/// a programming error, not an input error.
fn parse_selector(selector: &str) -> Cow<'static, Selector> {
    #[allow(clippy::expect_used)]
    Cow::Owned(selector.parse().expect("valid built-in selector"))
}

fn on_element<'h>(
    selector: &str,
    handler: impl FnMut(&mut Element<'_, '_>) -> HandlerResult + 'h,
) -> (Cow<'static, Selector>, ElementContentHandlers<'h>) {
    (
        parse_selector(selector),
        ElementContentHandlers::default().element(handler),
    )
}

fn on_text<'h>(
    selector: &str,
    handler: impl FnMut(&mut TextChunk<'_>) -> HandlerResult + 'h,
) -> (Cow<'static, Selector>, ElementContentHandlers<'h>) {
    (
        parse_selector(selector),
        ElementContentHandlers::default().text(handler),
    )
}

#[cfg(test)]
mod tests;
