//! What the edge does with assets and origin HTML, as pure functions: the
//! `Cache-Control` of asset-store responses (fingerprinted files are
//! immutable, pages short-lived), and the rewrite of origin HTML through the
//! shared rewriter (asset URLs from the build manifest, lazy images, responsive
//! images, preload hints), and the minification of origin scripts
//! ([`crate::assets::origin_minify`]). Any failure keeps the original bytes.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::assets::origin_minify::{self, MinifyOutcome, OriginMinifySettings};
use crate::assets::{
    link_header, rewrite_html, HtmlRewriteReport, HtmlRewriteSettings, Manifest, ResponsiveImages,
    IMMUTABLE_CACHE_CONTROL,
};
use crate::config::AssetSettings;
use crate::purge::tags::{self, AutoTagRules};
use crate::semantics::cache_control::Directives;
use crate::Body;

const CACHE_STATUS: &str = "cache-status";

pub fn is_html(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/html")
        })
}

/// The `Cache-Control` an asset-store response should carry, if we set one.
pub fn asset_cache_control(
    path: &str,
    headers: &http::HeaderMap,
    manifest: Option<&Manifest>,
    settings: &AssetSettings,
) -> Option<HeaderValue> {
    if manifest.is_some_and(|m| m.is_fingerprinted(path)) {
        return Some(HeaderValue::from_static(IMMUTABLE_CACHE_CONTROL));
    }
    if is_html(headers) {
        return HeaderValue::from_str(&settings.html_cache_control).ok();
    }
    None
}

/// What a page from the asset store is tagged by: the request's host and
/// URL, and the purge configuration's automatic-tag rules.
#[derive(Debug, Clone, Copy)]
pub struct PageTagging<'a> {
    pub host: &'a str,
    pub uri: &'a http::Uri,
    pub rules: AutoTagRules<'a>,
}

/// The `Cache-Tag` of an HTML page from the asset store: the tags of its
/// `_headers` (if any), then the automatic `host:`, `url:` and `prefix:` tags
/// an origin page at the same URL is stored with — so the purges that reach
/// that page (by URL, prefix, host) name this one too, in any cache that
/// honours `Cache-Tag` downstream, including Cloudflare's zone cache when
/// purges are forwarded to it.
pub fn page_cache_tag(headers: &http::HeaderMap, tagging: PageTagging<'_>) -> Option<HeaderValue> {
    let tagged = tags::entry_tags(headers, tagging.host, tagging.uri, tagging.rules);
    HeaderValue::from_str(&tagged.tags.join(", ")).ok()
}

/// Applies [`asset_cache_control`] to an asset-store response, and tags HTML
/// pages (not fingerprinted files, which never need a purge) with
/// [`page_cache_tag`].
pub fn decorate_asset(
    path: &str,
    mut response: Response<Body>,
    manifest: Option<&Manifest>,
    settings: &AssetSettings,
    tagging: Option<PageTagging<'_>>,
) -> Response<Body> {
    // The asset store is no cache of its own: a `Cache-Status` on its answer
    // is ours, from the build's `_headers` (for answers given without the
    // worker), and the worker adds the same member itself.
    response.headers_mut().remove(CACHE_STATUS);
    if response.status() == StatusCode::OK || response.status() == StatusCode::NOT_MODIFIED {
        if let Some(value) = asset_cache_control(path, response.headers(), manifest, settings) {
            response.headers_mut().insert(header::CACHE_CONTROL, value);
        }
        let fingerprinted = manifest.is_some_and(|m| m.is_fingerprinted(path));
        if let Some(tagging) = tagging.filter(|_| !fingerprinted && is_html(response.headers())) {
            if let Some(value) = page_cache_tag(response.headers(), tagging) {
                response.headers_mut().insert(&tags::CACHE_TAG, value);
            }
        }
    }
    response
}

/// Whether an origin response is HTML the edge may rewrite.
pub fn should_rewrite(response: &Response<Body>, settings: &AssetSettings) -> bool {
    settings.html_rewrite
        && response.status() == StatusCode::OK
        && !response.body().is_empty()
        && is_html(response.headers())
        && !Directives::from_headers(response.headers(), &header::CACHE_CONTROL).has("no-transform")
}

/// Minifies an origin script if `EDGE_MINIFY_JS` is on and the response
/// qualifies; called before the response is cached, so once per entry.
pub fn minify_origin_script(
    response: Response<Body>,
    path: &str,
    settings: &AssetSettings,
) -> (Response<Body>, MinifyOutcome) {
    let minify = OriginMinifySettings {
        enabled: settings.minify_js,
        css: settings.minify_css,
        max_bytes: settings.minify_max_bytes,
    };
    origin_minify::minify_origin_script(response, path, minify)
}

/// Outcome of rewriting one origin page.
#[derive(Debug)]
pub enum HtmlOutcome {
    Rewritten(HtmlRewriteReport),
    /// Rewriting failed; the original bytes were kept.
    Kept(String),
}

/// Rewrites an origin HTML page for `page_path`. The strong `ETag` of the
/// original no longer names these bytes, so it becomes weak; preload hints
/// are added as `Link` headers.
pub fn rewrite_origin_html(
    response: Response<Body>,
    page_path: &str,
    manifest: Option<&Manifest>,
    settings: &AssetSettings,
) -> (Response<Body>, HtmlOutcome) {
    let rewrite_settings = HtmlRewriteSettings {
        manifest,
        page_path: page_path.to_owned(),
        // Integrity would pin fingerprinted bytes; origin pages may be cached
        // longer than a deploy, so the edge does not add it.
        subresource_integrity: false,
        lazy_images: true,
        responsive_images: settings
            .image_widths
            .as_ref()
            .map(|widths| ResponsiveImages {
                widths: widths.clone(),
                ..ResponsiveImages::default()
            }),
        // The build's AVIF/WebP variants for images in the manifest (the
        // same markup as the build writes); resizing for the rest.
        pictures: true,
        preload_hints: true,
        style_attributes: false,
        memory_limit: settings.html_rewrite_memory_bytes,
    };
    let rewritten = match rewrite_html(response.body(), &rewrite_settings) {
        Ok(rewritten) => rewritten,
        Err(e) => return (response, HtmlOutcome::Kept(e.to_string())),
    };
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    crate::assets::origin_minify::weaken_etag(&mut parts.headers);
    if let Some(link) =
        link_header(&rewritten.report.preload_hints).and_then(|l| HeaderValue::from_str(&l).ok())
    {
        parts.headers.append(header::LINK, link);
    }
    (
        Response::from_parts(parts, Body::from(rewritten.html)),
        HtmlOutcome::Rewritten(rewritten.report),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::assets::ManifestEntry;

    fn settings() -> AssetSettings {
        AssetSettings {
            html_rewrite: true,
            image_widths: None,
            html_rewrite_memory_bytes: 4 * 1024 * 1024,
            manifest_path: "/manifest.json".into(),
            html_cache_control: "public, max-age=60".into(),
            minify_js: false,
            minify_css: false,
            minify_max_bytes: 1024,
        }
    }

    fn manifest() -> Manifest {
        let mut m = Manifest::new();
        m.insert(
            "/css/site.css",
            ManifestEntry {
                path: "/css/site.0123abcd.css".into(),
                size: 10,
                integrity: "sha384-x".into(),
            },
        );
        m.insert(
            "/images/tent.png",
            ManifestEntry {
                path: "/images/tent.89abcdef.png".into(),
                size: 10,
                integrity: "sha384-y".into(),
            },
        );
        m
    }

    fn html(body: &'static str, headers: &[(&'static str, &'static str)]) -> Response<Body> {
        let mut b = Response::builder().header("content-type", "text/html; charset=utf-8");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::from_static(body.as_bytes()))
            .expect("response")
    }

    #[test]
    fn the_cache_status_the_build_gave_the_asset_store_is_dropped_so_the_worker_adds_it_once() {
        let css = Response::builder()
            .header("content-type", "text/css")
            .header("cache-status", "cachefront; hit; detail=assets")
            .body(Body::new())
            .expect("r");
        let out = decorate_asset("/css/site.0123abcd.css", css, None, &settings(), None);
        assert!(out.headers().get("cache-status").is_none());
    }

    #[test]
    fn fingerprinted_assets_are_immutable_and_pages_short_lived() {
        let m = manifest();
        let css = Response::builder()
            .header("content-type", "text/css")
            .body(Body::new())
            .expect("r");
        let out = decorate_asset("/css/site.0123abcd.css", css, Some(&m), &settings(), None);
        assert_eq!(out.headers()["cache-control"], IMMUTABLE_CACHE_CONTROL);
        let page = decorate_asset(
            "/about.html",
            html("<p>x</p>", &[]),
            Some(&m),
            &settings(),
            None,
        );
        assert_eq!(page.headers()["cache-control"], "public, max-age=60");
        let plain = Response::builder()
            .header("content-type", "text/css")
            .body(Body::new())
            .expect("r");
        let out = decorate_asset("/css/site.css", plain, Some(&m), &settings(), None);
        assert!(
            out.headers().get("cache-control").is_none(),
            "unfingerprinted files keep the store's headers"
        );
    }

    #[test]
    fn asset_pages_carry_the_tags_a_url_prefix_or_host_purge_names() {
        let m = manifest();
        let uri: http::Uri = "/docs/about.html?b=2&a=1".parse().expect("uri");
        let prefixes = vec!["/docs/".to_owned()];
        let tagging = PageTagging {
            host: "www.example.com:8443",
            uri: &uri,
            rules: AutoTagRules {
                path_prefixes: &prefixes,
                query: crate::origin::shaping::QueryFilter::Except(&[]),
            },
        };
        let page = html("<p>x</p>", &[("cache-tag", "docs")]);
        let out = decorate_asset(
            "/docs/about.html",
            page,
            Some(&m),
            &settings(),
            Some(tagging),
        );
        assert_eq!(
            out.headers()["cache-tag"],
            "docs, host:www.example.com, url:www.example.com/docs/about.html?a=1&b=2, prefix:/docs/"
        );
        let purge_tags = [
            tags::url_tag(
                "www.example.com",
                &uri,
                crate::origin::shaping::QueryFilter::Except(&[]),
            ),
            tags::prefix_tag("/docs/"),
            tags::host_tag("www.example.com"),
        ];
        let tag_header = out.headers()["cache-tag"].to_str().expect("ascii");
        for tag in purge_tags {
            assert!(
                tag_header.split(", ").any(|t| t == tag),
                "{tag} in {tag_header}"
            );
        }
        let css = Response::builder()
            .header("content-type", "text/css")
            .body(Body::new())
            .expect("r");
        let out = decorate_asset(
            "/css/site.0123abcd.css",
            css,
            Some(&m),
            &settings(),
            Some(tagging),
        );
        assert!(
            out.headers().get("cache-tag").is_none(),
            "fingerprinted files are not tagged"
        );
    }

    #[test]
    fn origin_html_gets_fingerprinted_urls_lazy_images_and_preload_hints() {
        let page = html(
            r#"<html><head><link rel="stylesheet" href="/css/site.css"></head><body><img src="/images/hero.png"><img src="/images/tent.png"></body></html>"#,
            &[("etag", "\"v1\"")],
        );
        let m = manifest();
        let (out, outcome) = rewrite_origin_html(page, "/products/1", Some(&m), &settings());
        let text = String::from_utf8_lossy(out.body()).into_owned();
        assert!(text.contains(r#"href="/css/site.0123abcd.css""#), "{text}");
        assert!(
            text.contains(r#"src="/images/tent.89abcdef.png""#),
            "{text}"
        );
        assert!(text.contains(r#"loading="lazy""#), "{text}");
        assert!(!text.contains("integrity"), "{text}");
        assert_eq!(out.headers()["etag"], "W/\"v1\"");
        assert_eq!(
            out.headers()["link"],
            "</css/site.0123abcd.css>; rel=preload; as=style"
        );
        assert!(matches!(outcome, HtmlOutcome::Rewritten(_)));
    }

    #[test]
    fn responsive_images_use_cloudflare_resizing_urls_when_enabled() {
        let s = AssetSettings {
            image_widths: Some(vec![320, 640]),
            ..settings()
        };
        let page = html(
            r#"<img src="/a.png"><img src="/images/b.png" width="600">"#,
            &[],
        );
        let (out, _) = rewrite_origin_html(page, "/", None, &s);
        let text = String::from_utf8_lossy(out.body()).into_owned();
        assert!(
            text.contains("/cdn-cgi/image/width=320,format=auto/"),
            "{text}"
        );
    }

    #[test]
    fn no_transform_errors_and_non_html_are_left_alone() {
        assert!(should_rewrite(&html("<p>x</p>", &[]), &settings()));
        assert!(!should_rewrite(
            &html("<p>x</p>", &[("cache-control", "no-transform")]),
            &settings()
        ));
        let json = Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_static(b"{}"))
            .expect("r");
        assert!(!should_rewrite(&json, &settings()));
        let off = AssetSettings {
            html_rewrite: false,
            ..settings()
        };
        assert!(!should_rewrite(&html("<p>x</p>", &[]), &off));
    }

    #[test]
    fn a_page_over_the_memory_cap_is_served_as_it_was() {
        let tiny = AssetSettings {
            html_rewrite_memory_bytes: 16,
            ..settings()
        };
        let long_attr: &'static str =
            Box::leak(format!("<img src=\"/{}.png\">", "x".repeat(4096)).into_boxed_str());
        let page = html(long_attr, &[]);
        let (out, outcome) = rewrite_origin_html(page, "/", None, &tiny);
        assert!(matches!(outcome, HtmlOutcome::Kept(_)), "{outcome:?}");
        assert_eq!(out.body().as_ref(), long_attr.as_bytes());
    }
}
