//! `<img>` → `<picture>`: for an image the build encoded (its manifest entry
//! has [`ImageInfo`]), the `<source type srcset sizes>` elements that offer
//! the AVIF and WebP variants, and the `width`/`height` that reserve its box
//! before it loads (no layout shift). Pure: the HTML rewriter
//! ([`super::html`]) calls [`plan_picture`] for each `<img>` and writes what it
//! returns, at build time and at the edge alike.

use super::manifest::{ImageInfo, ImageVariant, Manifest};
use super::reference::{local_url, logical_path};

/// Formats offered in `<source>` order: the browser takes the first it
/// supports, so the smallest format goes first.
pub const SOURCE_TYPES: [&str; 2] = ["image/avif", "image/webp"];

/// The attributes of an `<img>` that the plan reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImgAttributes<'a> {
    pub src: Option<&'a str>,
    pub srcset: Option<&'a str>,
    pub sizes: Option<&'a str>,
    pub width: Option<&'a str>,
    pub height: Option<&'a str>,
}

/// What to write around and onto one `<img>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PicturePlan {
    /// `<picture>` and its `<source>`s, to go right before the `<img>`.
    pub open: String,
    /// `</picture>`, to go right after it.
    pub close: &'static str,
    /// `width`/`height` to set when the page gave neither or only one.
    pub dimensions: Option<(u32, u32)>,
}

/// The plan for an `<img>` in a document at `base_path`, or `None` when its
/// `src` is not an image of the manifest with variants (left as it is; the
/// edge's resizing may still apply to it).
pub fn plan_picture(
    manifest: &Manifest,
    base_path: &str,
    img: ImgAttributes<'_>,
) -> Option<PicturePlan> {
    let image_at = |url: &str| image_with_variants(manifest, base_path, url);
    let main = image_at(img.src?)?;
    // `w` candidates of the page's own srcset are the same picture at other
    // sizes (the author said so by listing them together); their variants
    // join the sources. `x` candidates say nothing about width: skipped.
    let mut images: Vec<&ImageInfo> = vec![main];
    if let Some(srcset) = img.srcset {
        for candidate in srcset.split(',') {
            let mut parts = candidate.split_ascii_whitespace();
            let (Some(url), Some(descriptor)) = (parts.next(), parts.next()) else {
                continue;
            };
            if descriptor.ends_with('w') {
                if let Some(image) = image_at(url) {
                    if !images.iter().any(|i| std::ptr::eq(*i, image)) {
                        images.push(image);
                    }
                }
            }
        }
    }
    // Where two images have a variant of the same width, the one scaled
    // down from the larger original is sharper.
    images.sort_by_key(|i| std::cmp::Reverse(i.width));

    let declared_width = positive(img.width);
    let declared_height = positive(img.height);
    let sizes = match (
        img.sizes.map(str::trim).filter(|s| !s.is_empty()),
        declared_width,
    ) {
        (Some(sizes), _) => sizes.to_owned(),
        // No wider than its declared width, and no wider than the viewport.
        (None, Some(w)) => format!("(max-width: {w}px) 100vw, {w}px"),
        (None, None) => "100vw".to_owned(),
    };

    let mut open = String::from("<picture>");
    for mime in SOURCE_TYPES {
        let mut chosen: Vec<&ImageVariant> = Vec::new();
        for image in &images {
            for variant in image.variants.iter().filter(|v| v.mime == mime) {
                if !chosen.iter().any(|c| c.width == variant.width) {
                    chosen.push(variant);
                }
            }
        }
        if chosen.is_empty() {
            continue;
        }
        chosen.sort_by_key(|v| v.width);
        let srcset = chosen
            .iter()
            .map(|v| format!("{} {}w", v.path, v.width))
            .collect::<Vec<_>>()
            .join(", ");
        open.push_str(&format!(
            "<source type=\"{mime}\" srcset=\"{}\" sizes=\"{}\">",
            escape_attribute(&srcset),
            escape_attribute(&sizes)
        ));
    }

    let dimensions = match (declared_width, declared_height) {
        (Some(_), Some(_)) => None,
        (Some(w), None) => Some((w, scaled(w, main.height, main.width))),
        (None, Some(h)) => Some((scaled(h, main.width, main.height), h)),
        (None, None) => Some((main.width, main.height)),
    };
    Some(PicturePlan {
        open,
        close: "</picture>",
        dimensions,
    })
}

/// Whether `src` (in a document at `base_path`) is an image the build made
/// variants of: the one test every `<img>` needs, before the others.
pub fn has_variants(manifest: &Manifest, base_path: &str, src: &str) -> bool {
    image_with_variants(manifest, base_path, src).is_some()
}

fn image_with_variants<'m>(
    manifest: &'m Manifest,
    base_path: &str,
    url: &str,
) -> Option<&'m ImageInfo> {
    // A manifest without images (the edge's, often) needs no resolving.
    manifest.images().next()?;
    let local = local_url(url)?;
    let logical = logical_path(base_path, local.path)?;
    manifest.image(&logical).filter(|i| !i.variants.is_empty())
}

fn positive(value: Option<&str>) -> Option<u32> {
    value
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|v| *v > 0)
}

/// `value * numerator / denominator`, rounded, keeping the aspect ratio.
fn scaled(value: u32, numerator: u32, denominator: u32) -> u32 {
    if denominator == 0 {
        return value;
    }
    let exact = u64::from(value) * u64::from(numerator);
    let rounded = (exact + u64::from(denominator) / 2) / u64::from(denominator);
    u32::try_from(rounded).unwrap_or(u32::MAX).max(1)
}

/// For a double-quoted attribute value.
fn escape_attribute(value: &str) -> String {
    value.replace('&', "&amp;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::manifest::ManifestEntry;

    fn variant(path: &str, mime: &str, width: u32) -> ImageVariant {
        ImageVariant {
            path: path.into(),
            mime: mime.into(),
            width,
            height: width * 3 / 4,
            size: 1,
        }
    }

    fn manifest() -> Manifest {
        let mut manifest = Manifest::new();
        for (logical, path, width, variants) in [
            (
                "/img/full.png",
                "/img/full.aaaaaaaa.png",
                800,
                vec![
                    variant("/img/full.1.400.avif", "image/avif", 400),
                    variant("/img/full.2.800.avif", "image/avif", 800),
                    variant("/img/full.3.400.webp", "image/webp", 400),
                    variant("/img/full.4.800.webp", "image/webp", 800),
                ],
            ),
            (
                "/img/thumb.png",
                "/img/thumb.bbbbbbbb.png",
                400,
                vec![
                    variant("/img/thumb.5.400.avif", "image/avif", 400),
                    variant("/img/thumb.6.400.webp", "image/webp", 400),
                ],
            ),
        ] {
            manifest.insert(
                logical,
                ManifestEntry {
                    path: path.into(),
                    size: 1,
                    integrity: "sha384-x".into(),
                },
            );
            manifest
                .insert_image(
                    logical,
                    ImageInfo {
                        width,
                        height: width * 3 / 4,
                        variants,
                    },
                )
                .expect("asset exists");
        }
        manifest.insert(
            "/img/plain.png",
            ManifestEntry {
                path: "/img/plain.cccccccc.png".into(),
                size: 1,
                integrity: "sha384-x".into(),
            },
        );
        manifest
    }

    #[test]
    fn an_image_with_variants_gets_avif_then_webp_sources_and_its_intrinsic_size() {
        let plan = plan_picture(
            &manifest(),
            "/products/a.html",
            ImgAttributes {
                src: Some("../img/full.png"),
                ..ImgAttributes::default()
            },
        )
        .expect("image with variants");
        assert_eq!(
            plan.open,
            "<picture>\
             <source type=\"image/avif\" srcset=\"/img/full.1.400.avif 400w, /img/full.2.800.avif 800w\" sizes=\"100vw\">\
             <source type=\"image/webp\" srcset=\"/img/full.3.400.webp 400w, /img/full.4.800.webp 800w\" sizes=\"100vw\">"
        );
        assert_eq!(plan.close, "</picture>");
        assert_eq!(plan.dimensions, Some((800, 600)));
    }

    #[test]
    fn srcset_candidates_join_the_sources_and_the_larger_original_wins_a_width() {
        let plan = plan_picture(
            &manifest(),
            "/",
            ImgAttributes {
                src: Some("/img/thumb.png"),
                srcset: Some("/img/thumb.png 400w, /img/full.png 800w"),
                sizes: Some("(max-width: 40rem) 100vw, 400px"),
                width: Some("400"),
                height: Some("300"),
            },
        )
        .expect("image with variants");
        assert!(plan.open.contains(
            "srcset=\"/img/full.1.400.avif 400w, /img/full.2.800.avif 800w\" sizes=\"(max-width: 40rem) 100vw, 400px\""
        ));
        assert!(!plan.open.contains("thumb.5"));
        assert_eq!(plan.dimensions, None);
    }

    #[test]
    fn one_declared_dimension_gets_the_other_from_the_aspect_ratio() {
        let with = |width, height| {
            plan_picture(
                &manifest(),
                "/",
                ImgAttributes {
                    src: Some("/img/full.png"),
                    width,
                    height,
                    ..ImgAttributes::default()
                },
            )
            .and_then(|p| p.dimensions)
        };
        assert_eq!(with(Some("200"), None), Some((200, 150)));
        assert_eq!(with(None, Some("150")), Some((200, 150)));
        assert_eq!(with(Some("bogus"), None), Some((800, 600)));
    }

    #[test]
    fn images_without_variants_and_foreign_urls_get_no_picture() {
        for src in [
            "/img/plain.png",
            "/img/missing.png",
            "https://cdn.example/img/full.png",
        ] {
            let img = ImgAttributes {
                src: Some(src),
                ..ImgAttributes::default()
            };
            assert_eq!(plan_picture(&manifest(), "/", img), None, "{src}");
        }
    }

    #[test]
    fn the_rewriter_wraps_images_in_picture_maps_src_and_leaves_authored_pictures_alone() {
        use crate::assets::{rewrite_html, HtmlRewriteSettings, ResponsiveImages};
        let manifest = manifest();
        let settings = HtmlRewriteSettings {
            manifest: Some(&manifest),
            page_path: "/index.html".into(),
            lazy_images: false,
            responsive_images: Some(ResponsiveImages::default()),
            ..HtmlRewriteSettings::default()
        };
        let page = "<p><img src=\"/img/full.png\" alt=\"a\"></p>\
                    <picture><source srcset=\"/img/thumb.png\"><img src=\"/img/full.png\" alt=\"b\"></picture>\
                    <img src=\"/img/plain.png\" alt=\"c\">";
        let out = rewrite_html(page.as_bytes(), &settings).expect("rewrites");
        let html = String::from_utf8(out.html).expect("utf-8");
        assert!(
            html.starts_with(
                "<p><picture><source type=\"image/avif\" srcset=\"/img/full.1.400.avif 400w, /img/full.2.800.avif 800w\" sizes=\"100vw\">\
                 <source type=\"image/webp\" srcset=\"/img/full.3.400.webp 400w, /img/full.4.800.webp 800w\" sizes=\"100vw\">\
                 <img src=\"/img/full.aaaaaaaa.png\" alt=\"a\" width=\"800\" height=\"600\"></picture></p>"
            ),
            "{html}"
        );
        // The author's own <picture>: URLs mapped, nothing added.
        assert!(
            html.contains("<picture><source srcset=\"/img/thumb.bbbbbbbb.png\"><img src=\"/img/full.aaaaaaaa.png\" alt=\"b\""),
            "{html}"
        );
        assert_eq!(html.matches("<picture>").count(), 2, "{html}");
        // No variants: resizing still applies.
        assert!(
            html.contains("/cdn-cgi/image/width=320,format=auto/img/plain.cccccccc.png"),
            "{html}"
        );
        assert_eq!(out.report.images_picture, 1);

        let off = HtmlRewriteSettings {
            pictures: false,
            ..settings.clone()
        };
        let html = rewrite_html(page.as_bytes(), &off).expect("rewrites").html;
        assert_eq!(
            String::from_utf8_lossy(&html).matches("<picture>").count(),
            1
        );
    }

    #[test]
    fn sizes_are_escaped_inside_the_source_attribute() {
        let plan = plan_picture(
            &manifest(),
            "/",
            ImgAttributes {
                src: Some("/img/full.png"),
                sizes: Some("a\"b&c"),
                ..ImgAttributes::default()
            },
        )
        .expect("plan");
        assert!(plan.open.contains("sizes=\"a&quot;b&amp;c\""));
    }
}
