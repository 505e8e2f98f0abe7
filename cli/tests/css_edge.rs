//! The edge's small CSS minifier (`cachefront::assets::css_min`) must not
//! change what a stylesheet means. Checked against lightningcss, the build's
//! minifier: lightningcss's minified form of the original and of the edge's
//! output must be identical, for the demo site's stylesheets, the real
//! stylesheets shipped in node_modules (playwright-core's UI), and a set of
//! constructs where careless whitespace removal changes meaning.

use std::path::{Path, PathBuf};

use cachefront::assets::css_min::minify_css as edge_minify;
use cachefront_cli::css_minify::minify_css as lightningcss_minify;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Same meaning: lightningcss minifies both to the same text.
fn assert_same_meaning(name: &str, original: &str) {
    let edge = edge_minify(original).unwrap_or_else(|e| panic!("{name}: edge minifier: {e}"));
    assert!(
        edge.len() <= original.len(),
        "{name}: the edge output is larger"
    );
    let reference =
        lightningcss_minify(original, name).unwrap_or_else(|e| panic!("{name}: lightningcss: {e}"));
    let via_edge = lightningcss_minify(&edge, name)
        .unwrap_or_else(|e| panic!("{name}: lightningcss on the edge output: {e}\n{edge}"));
    // lightningcss keeps values it cannot parse (e.g. a conic-gradient with
    // two-position stops) as written, so a `, ` the edge shortened to `,`
    // still shows; whitespace next to a comma never carries meaning in CSS.
    let (reference, via_edge) = (reference.replace(", ", ","), via_edge.replace(", ", ","));
    if reference != via_edge {
        let at = reference
            .bytes()
            .zip(via_edge.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(reference.len().min(via_edge.len()));
        let around = |s: &str| {
            let from = at.saturating_sub(80);
            let to = (at + 80).min(s.len());
            s.get(from..to).unwrap_or(s).to_owned()
        };
        panic!(
            "{name}: meaning changed at byte {at}\nlightningcss(original): …{}…\nlightningcss(edge):     …{}…",
            around(&reference),
            around(&via_edge)
        );
    }
}

fn css_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            css_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "css") {
            out.push(path);
        }
    }
}

#[test]
fn demo_site_stylesheets_keep_their_meaning() {
    let mut files = Vec::new();
    css_files(&root().join("www"), &mut files);
    assert!(!files.is_empty(), "www/ has stylesheets");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        assert_same_meaning(&file.display().to_string(), &text);
    }
}

#[test]
fn real_third_party_stylesheets_keep_their_meaning() {
    let dir = root().join("node_modules/playwright-core/lib/vite");
    let mut files = vec![root().join("node_modules/bootstrap/dist/css/bootstrap.css")];
    css_files(&dir, &mut files);
    assert!(
        !files.is_empty(),
        "{} has stylesheets (npm ci installs playwright-core and bootstrap)",
        dir.display()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        assert_same_meaning(&file.display().to_string(), &text);
    }
}

#[test]
fn whitespace_sensitive_constructs_keep_their_meaning() {
    for (name, css) in [
        (
            "descendant pseudo",
            "nav :hover { color: red }\nnav:hover { color: blue }",
        ),
        (
            "calc",
            ".a { width: calc(100% - (2 * 3px)); height: calc( 1px + 2px ) }",
        ),
        (
            "media and",
            "@media screen and (min-width: 600px) and (max-width : 900px) { .b { display: none } }",
        ),
        (
            "combinators",
            "ul > li + li ~ li , .x  .y { margin : 0 auto !important ; }",
        ),
        (
            "strings",
            ".c::before { content: \"  a ; b } c  \" ; quotes: '\"' '\"' }",
        ),
        (
            "urls",
            ".d { background: url( img/a.png ) no-repeat , url(\"x y.png\") }",
        ),
        (
            "comments",
            ".e/* between */.f { color: /* inside */ red }\n/*! licence */",
        ),
        (
            "grid areas",
            ".g { grid-template-areas: \"a b\"\n \"c d\"; }",
        ),
        (
            "font shorthand",
            ".h { font: italic bold 12px/30px Georgia, serif }",
        ),
        (
            "attribute selectors",
            "a[href $= \".pdf\" i] , input[type=text] { x: y }",
        ),
        (
            "keyframes",
            "@keyframes spin { from { transform: rotate(0deg) } to { transform: rotate(360deg) } }",
        ),
        (
            "numbers",
            ".n { opacity: 0.5; margin: -0.25rem 10.5px 0.0px; transform: scale(0.9, 0.75) }\n.x0 { grid-area: a-0.5 }",
        ),
        (
            "important",
            ".o { color: red !important; margin: 0 ! important; --p: 1 !important }",
        ),
        (
            "at-rule parentheses",
            "@media (min-width: 0.5px) and (hover: hover) { .p { x: y } }\n@supports not (display: grid) { .q { float: left } }\n@media screen and (max-width: 9px) { .r { x: y } }",
        ),
        (
            "var values",
            ".s { margin : var( --gap , 0.5px )  ; padding: env(safe-area-inset-top , 0px) }",
        ),
        (
            "custom properties",
            ":root { --gap : 4px ; --empty: ; } .i { margin: var( --gap , 2px ) }",
        ),
    ] {
        assert_same_meaning(name, css);
    }
}
