//! Origin content the edge transforms: HTML pages (lol_html rewriter), CSS
//! (the edge minifier) and the gate that decides whether an origin script or
//! stylesheet is minified at all.

use cachefront::assets::css_min::minify_css;
use cachefront::assets::edge::{self as edge_assets, HtmlOutcome};
use cachefront::assets::html::{rewrite_html, HtmlRewriteSettings, ResponsiveImages};
use cachefront::assets::origin_minify::{self, MinifyOutcome, MinifySkip, OriginMinifySettings};
use cachefront::assets::{Manifest, ManifestEntry};
use cachefront::config::AssetSettings;
use cachefront::semantics::cache_control::Directives;
use cachefront::Body;
use http::header::{self, HeaderValue};
use http::Response;

use crate::input::Lines;

fn manifest() -> Manifest {
    let mut manifest = Manifest::new();
    for (logical, served) in [
        ("/css/site.css", "/css/site.3f2a9c1b.css"),
        ("/js/app.js", "/js/app.8d1e22aa.js"),
        ("/img/hero.jpg", "/img/hero.77c0e5d2.jpg"),
    ] {
        manifest.insert(
            logical,
            ManifestEntry {
                path: served.to_owned(),
                size: 1234,
                integrity: "sha384-AAAA".to_owned(),
            },
        );
    }
    manifest
}

/// Input: an HTML page. An odd first byte selects the build's settings
/// (integrity, inline style attributes), an even one the edge's.
pub fn html_rewrite(data: &[u8]) {
    let manifest = manifest();
    let build = data.first().is_some_and(|b| b % 2 == 1);
    let text_only = !data.contains(&b'<');
    if build {
        let settings = HtmlRewriteSettings {
            manifest: Some(&manifest),
            page_path: "/products/tent.html".to_owned(),
            responsive_images: Some(ResponsiveImages::default()),
            memory_limit: 1 << 20,
            ..HtmlRewriteSettings::default()
        };
        if let Ok(out) = rewrite_html(data, &settings) {
            if text_only {
                assert_eq!(out.html, data, "text without markup changed");
            }
        }
        return;
    }
    let settings = AssetSettings {
        html_rewrite: true,
        image_widths: Some(vec![320, 640, 1280]),
        html_rewrite_memory_bytes: 1 << 20,
        manifest_path: "/manifest.json".to_owned(),
        html_cache_control: "public, max-age=60".to_owned(),
        minify_js: true,
        minify_css: true,
        minify_max_bytes: 1 << 16,
    };
    let mut response = Response::new(Body::copy_from_slice(data));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
        .headers_mut()
        .insert(header::ETAG, HeaderValue::from_static("\"v1\""));
    let (out, outcome) =
        edge_assets::rewrite_origin_html(response, "/blog/post/", Some(&manifest), &settings);
    match outcome {
        HtmlOutcome::Rewritten(_) => {
            assert_eq!(out.headers()[header::ETAG], "W/\"v1\"", "strong ETag kept");
            if text_only {
                assert_eq!(out.body().as_ref(), data, "text without markup changed");
            }
        }
        HtmlOutcome::Kept(_) => assert_eq!(out.body().as_ref(), data, "a failed rewrite"),
    }
}

/// Input: a stylesheet.
pub fn css_min(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(out) = minify_css(source) else {
        return;
    };
    assert!(out.len() <= source.len(), "minifying grew {source:?}");
    match minify_css(&out) {
        Ok(again) => assert!(again.len() <= out.len(), "a second pass grew {out:?}"),
        Err(e) => panic!("the minifier refused its own output {out:?}: {e}"),
    }
}

/// Input:
/// ```text
/// /js/app.js           request path
/// content-type: …      origin response headers, then an empty line
///
/// body…
/// ```
pub fn origin_minify(data: &[u8]) {
    let mut lines = Lines::new(data);
    let path = lines.next_text();
    let headers = lines.headers();
    let body = Body::copy_from_slice(lines.remainder());
    let mut response = Response::new(body.clone());
    *response.headers_mut() = headers.clone();
    let settings = OriginMinifySettings {
        enabled: true,
        css: true,
        max_bytes: 1 << 16,
    };
    let skip = origin_minify::skip_reason(&response, &path, settings);
    let (out, outcome) = origin_minify::minify_origin_script(response, &path, settings);
    let cc = Directives::from_headers(&headers, &header::CACHE_CONTROL);
    match outcome {
        MinifyOutcome::Minified {
            bytes_in,
            bytes_out,
        } => {
            assert!(skip.is_none());
            assert!(
                !(cc.has("no-transform") || cc.has("no-store") || cc.has("private")),
                "minified a response the origin asked not to transform or share"
            );
            assert!(
                headers
                    .get(header::CONTENT_ENCODING)
                    .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity")),
                "minified an encoded body"
            );
            assert_eq!(bytes_in, body.len());
            assert_eq!(bytes_out, out.body().len());
            assert!(bytes_out < bytes_in, "a minified body is smaller");
            assert!(!out.headers().contains_key(header::CONTENT_LENGTH));
            // Only ETags that are visible ASCII: `weaken_etag` leaves one
            // with obs-text bytes as it is (reported; docs/fuzzing.md).
            if let Some(etag) = out
                .headers()
                .get(header::ETAG)
                .filter(|v| v.to_str().is_ok())
            {
                assert!(etag.as_bytes().starts_with(b"W/"), "strong ETag kept");
            }
        }
        MinifyOutcome::Skipped { reason, .. } => {
            assert_eq!(out.body(), &body, "a skipped response changed");
            if let Some(expected) = skip {
                assert_eq!(reason, expected);
            } else {
                assert!(matches!(reason, MinifySkip::NoGain | MinifySkip::Failed));
            }
        }
    }
}
