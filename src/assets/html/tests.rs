//! Table tests for the HTML rewriter, and the chunk-boundary property: the
//! output must not depend on where the input is split.

use super::*;
use crate::assets::manifest::ManifestEntry;

fn manifest() -> Manifest {
    let mut manifest = Manifest::new();
    for (logical, fingerprinted) in [
        ("/css/site.css", "/css/site.11111111.css"),
        ("/js/app.js", "/js/app.22222222.js"),
        ("/js/mod.js", "/js/mod.33333333.js"),
        ("/images/hero.png", "/images/hero.44444444.png"),
        ("/images/a.png", "/images/a.55555555.png"),
        ("/images/a-small.png", "/images/a-small.66666666.png"),
        ("/images/bg.svg", "/images/bg.77777777.svg"),
        ("/docs/manual.pdf", "/docs/manual.88888888.pdf"),
    ] {
        manifest.insert(
            logical,
            ManifestEntry {
                path: fingerprinted.into(),
                size: 10,
                integrity: format!(
                    "sha384-{}",
                    fingerprinted.rsplit('.').nth(1).unwrap_or_default()
                ),
            },
        );
    }
    manifest
}

fn rewrite_with(settings: &HtmlRewriteSettings<'_>, input: &str) -> (String, HtmlRewriteReport) {
    let out = rewrite_html(input.as_bytes(), settings).expect("rewrite succeeds");
    (
        String::from_utf8(out.html).expect("utf-8 output"),
        out.report,
    )
}

fn build_settings(manifest: &Manifest) -> HtmlRewriteSettings<'_> {
    HtmlRewriteSettings {
        manifest: Some(manifest),
        page_path: "/products/tent.html".into(),
        ..HtmlRewriteSettings::default()
    }
}

#[test]
fn table_of_inputs_and_outputs() {
    let manifest = manifest();
    let settings = build_settings(&manifest);
    let cases: &[(&str, &str, &str)] = &[
        (
            "script src is fingerprinted and gets integrity",
            r#"<script src="/js/app.js" defer></script>"#,
            r#"<script src="/js/app.22222222.js" defer integrity="sha384-22222222"></script>"#,
        ),
        (
            "relative stylesheet stays relative and gets integrity",
            r#"<link rel="stylesheet" href="../css/site.css?v=1">"#,
            r#"<link rel="stylesheet" href="../css/site.11111111.css?v=1" integrity="sha384-11111111">"#,
        ),
        (
            "stale integrity is replaced by the manifest's",
            r#"<link rel="stylesheet" href="/css/site.css" integrity="sha384-old">"#,
            r#"<link rel="stylesheet" href="/css/site.11111111.css" integrity="sha384-11111111">"#,
        ),
        (
            "unknown and external URLs are left alone",
            r#"<script src="/js/other.js"></script><script src="https://cdn.example/js/app.js"></script>"#,
            r#"<script src="/js/other.js"></script><script src="https://cdn.example/js/app.js"></script>"#,
        ),
        (
            "first image is the hero: untouched; later images are lazy",
            r#"<img src="/images/hero.png"><img src="/images/a.png" alt="">"#,
            r#"<img src="/images/hero.44444444.png"><img src="/images/a.55555555.png" alt="" loading="lazy" decoding="async">"#,
        ),
        (
            "explicit loading and decoding are never overridden",
            r#"<img src="x.png"><img src="y.png" loading="eager" decoding="sync">"#,
            r#"<img src="x.png"><img src="y.png" loading="eager" decoding="sync">"#,
        ),
        (
            "srcset candidates are mapped one by one",
            r#"<img src="/images/hero.png"><img srcset="/images/a-small.png 400w, /images/a.png 800w, /images/none.png 2x" src="/images/a.png">"#,
            r#"<img src="/images/hero.44444444.png"><img srcset="/images/a-small.66666666.png 400w, /images/a.55555555.png 800w, /images/none.png 2x" src="/images/a.55555555.png" loading="lazy" decoding="async">"#,
        ),
        (
            "picture sources are mapped",
            r#"<picture><source srcset="/images/a.png" type="image/png"><source src="/images/a-small.png"></picture>"#,
            r#"<picture><source srcset="/images/a.55555555.png" type="image/png"><source src="/images/a-small.66666666.png"></picture>"#,
        ),
        (
            "inline style attribute and style element urls are mapped",
            r#"<div style="background:url('/images/bg.svg')"></div><style>@import "/css/site.css"; b{background:url(../images/a.png)}</style>"#,
            r#"<div style="background:url('/images/bg.77777777.svg')"></div><style>@import "/css/site.11111111.css"; b{background:url(../images/a.55555555.png)}</style>"#,
        ),
        (
            "links to downloadable assets are mapped, links to pages are not",
            r##"<a href="/docs/manual.pdf">PDF</a><a href="/about.html">About</a><a href="#top">Top</a>"##,
            r##"<a href="/docs/manual.88888888.pdf">PDF</a><a href="/about.html">About</a><a href="#top">Top</a>"##,
        ),
        (
            "a base element changes what relative URLs resolve against",
            r#"<base href="/js/"><script src="app.js"></script>"#,
            r#"<base href="/js/"><script src="app.22222222.js" integrity="sha384-22222222"></script>"#,
        ),
        (
            "an off-site base disables mapping",
            r#"<base href="https://other.example/"><script src="/js/app.js"></script>"#,
            r#"<base href="https://other.example/"><script src="/js/app.js"></script>"#,
        ),
        (
            "text that merely looks like a URL is untouched",
            r#"<p>src="/js/app.js" url(/images/a.png)</p><script>var s = "/js/app.js";</script>"#,
            r#"<p>src="/js/app.js" url(/images/a.png)</p><script>var s = "/js/app.js";</script>"#,
        ),
    ];
    for (name, input, expected) in cases {
        let (output, _) = rewrite_with(&settings, input);
        assert_eq!(&output, expected, "case: {name}");
    }
}

#[test]
fn preload_hints_cover_head_stylesheets_and_scripts_only() {
    let manifest = manifest();
    let settings = build_settings(&manifest);
    let input = r#"<!doctype html><html><head>
<link rel="stylesheet" href="/css/site.css">
<script src="/js/app.js" defer></script>
<script type="module" src="/js/mod.js"></script>
<script nomodule src="/js/legacy.js"></script>
<script src="https://cdn.example/x.js"></script>
<link rel="icon" href="/favicon.svg">
</head><body><script src="/js/late.js"></script></body></html>"#;
    let (_, report) = rewrite_with(&settings, input);
    assert_eq!(
        report.preload_hints,
        vec![
            PreloadHint {
                url: "/css/site.11111111.css".into(),
                kind: PreloadKind::Style
            },
            PreloadHint {
                url: "/js/app.22222222.js".into(),
                kind: PreloadKind::Script
            },
            PreloadHint {
                url: "/js/mod.33333333.js".into(),
                kind: PreloadKind::ModuleScript
            },
        ]
    );
    assert_eq!(
        link_header(&report.preload_hints).as_deref(),
        Some(
            "</css/site.11111111.css>; rel=preload; as=style, \
             </js/app.22222222.js>; rel=preload; as=script, \
             </js/mod.33333333.js>; rel=modulepreload"
        )
    );
    assert_eq!(link_header(&[]), None);
}

#[test]
fn responsive_images_use_cloudflare_resizing_urls() {
    let manifest = manifest();
    let settings = HtmlRewriteSettings {
        responsive_images: Some(ResponsiveImages {
            widths: vec![320, 640, 1280],
            sizes: "100vw".into(),
        }),
        ..build_settings(&manifest)
    };
    let (output, report) = rewrite_with(
        &settings,
        r#"<img src="/images/hero.png"><img src="../images/a.png" width="400"><img src="/images/bg.svg"><img src="x.jpg" srcset="y.jpg 2x">"#,
    );
    assert_eq!(
        output,
        concat!(
            r#"<img src="/images/hero.44444444.png" srcset="/cdn-cgi/image/width=320,format=auto/images/hero.44444444.png 320w, /cdn-cgi/image/width=640,format=auto/images/hero.44444444.png 640w, /cdn-cgi/image/width=1280,format=auto/images/hero.44444444.png 1280w" sizes="100vw">"#,
            r#"<img src="../images/a.55555555.png" width="400" loading="lazy" decoding="async" srcset="/cdn-cgi/image/width=320,format=auto/images/a.55555555.png 320w, /cdn-cgi/image/width=640,format=auto/images/a.55555555.png 640w" sizes="(max-width: 400px) 100vw, 400px">"#,
            r#"<img src="/images/bg.77777777.svg" loading="lazy" decoding="async">"#,
            r#"<img src="x.jpg" srcset="y.jpg 2x" loading="lazy" decoding="async">"#,
        )
    );
    assert_eq!(report.images_responsive, 2);
    assert_eq!(report.images_lazy, 3);
}

#[test]
fn without_a_manifest_only_images_change() {
    let settings = HtmlRewriteSettings::default();
    let (output, report) = rewrite_with(
        &settings,
        r#"<script src="/js/app.js"></script><img src="a.png"><img src="b.png">"#,
    );
    assert_eq!(
        output,
        r#"<script src="/js/app.js"></script><img src="a.png"><img src="b.png" loading="lazy" decoding="async">"#
    );
    assert_eq!(report.urls_rewritten, 0);
}

#[test]
fn memory_limit_is_an_error_the_caller_can_fall_back_from() {
    let settings = HtmlRewriteSettings {
        memory_limit: 64,
        ..HtmlRewriteSettings::default()
    };
    // A start tag split across chunks must be buffered whole; a long one
    // exceeds the cap.
    let long_tag = format!("<img src=\"{}\">", "a".repeat(4096));
    let mut out = Vec::new();
    let mut rewriter = HtmlAssetRewriter::new(&settings, |c: &[u8]| out.extend_from_slice(c));
    let (first, second) = long_tag.as_bytes().split_at(10);
    let result = rewriter.write(first).and_then(|()| rewriter.write(second));
    assert!(matches!(result, Err(HtmlRewriteError::MemoryLimitExceeded)));
}

/// A tiny deterministic PRNG (xorshift64*) so the split test needs no `rand`.
struct SplitPoints(u64);

impl SplitPoints {
    fn next_below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let value = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (value % bound.max(1) as u64) as usize
    }
}

fn demo_page() -> String {
    let page = include_str!("../../../www/products/alpine-tent.html");
    // Add the constructs the demo page lacks so every handler runs.
    page.replacen(
        "</head>",
        "<style>/* long comment to stretch across chunk boundaries */ b{background:url(/images/bg.svg)} i{background:url('/images/a.png')}</style></head>",
        1,
    )
    .replacen(
        "<body>",
        r#"<body><div style="background-image:url(/images/bg.svg)"></div><base href="/products/">"#,
        1,
    )
}

#[test]
fn output_is_the_same_for_every_chunk_split() {
    let manifest = manifest();
    let settings = HtmlRewriteSettings {
        responsive_images: Some(ResponsiveImages::default()),
        ..build_settings(&manifest)
    };
    let page = demo_page();
    let input = page.as_bytes();
    let whole = rewrite_html(input, &settings).expect("whole rewrite");
    assert!(whole.report.urls_rewritten > 0);
    let mut rng = SplitPoints(0x9e37_79b9_7f4a_7c15);
    for round in 0..200 {
        let mut out = Vec::new();
        let mut rewriter = HtmlAssetRewriter::new(&settings, |c: &[u8]| out.extend_from_slice(c));
        let mut rest = input;
        // Mostly tiny chunks (where tags and text split), sometimes large.
        let max_chunk = if round % 4 == 0 { 4096 } else { 16 };
        while !rest.is_empty() {
            let take = (1 + rng.next_below(max_chunk)).min(rest.len());
            let (chunk, tail) = rest.split_at(take);
            rewriter.write(chunk).expect("chunk rewrite");
            rest = tail;
        }
        let report = rewriter.end().expect("end");
        assert_eq!(report, whole.report, "round {round}");
        assert!(
            out == whole.html,
            "round {round}: output differs from the whole-buffer rewrite"
        );
    }
}

#[test]
fn style_attributes_can_be_left_alone_while_style_elements_are_rewritten() {
    let manifest = manifest();
    let settings = HtmlRewriteSettings {
        style_attributes: false,
        ..build_settings(&manifest)
    };
    let (output, _) = rewrite_with(
        &settings,
        r#"<div style="background:url(/images/bg.svg)"></div><style>b{background:url(/images/bg.svg)}</style><video src="/docs/manual.pdf" poster="/images/a.png"></video>"#,
    );
    assert_eq!(
        output,
        r#"<div style="background:url(/images/bg.svg)"></div><style>b{background:url(/images/bg.77777777.svg)}</style><video src="/docs/manual.88888888.pdf" poster="/images/a.55555555.png"></video>"#
    );
}
