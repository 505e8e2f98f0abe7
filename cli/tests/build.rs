//! End-to-end tests of `cachefront build` over a temporary copy of the demo
//! site: deterministic output, every reference resolving to a file of the
//! output, integrity values that verify, and failures that name their file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use cachefront::assets::css_references::css_references;
use cachefront::assets::reference::{local_url, resolve};
use cachefront::assets::srcset::srcset_urls;
use cachefront::assets::Manifest;
use cachefront_cli::site::file_kind;
use sha2::{Digest, Sha384};

fn repo_www() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../www")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

/// Every file under `root`, by path relative to it.
fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                files.insert(format!("/{relative}"), std::fs::read(&path).expect("read"));
            }
        }
    }
    files
}

fn cachefront(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachefront"))
        .args(args)
        .output()
        .expect("run cachefront")
}

fn build(src: &Path, out: &Path) -> Output {
    build_with(src, out, &[])
}

/// One image cache for every test: keyed by content and settings, so sharing
/// it is safe, and the demo's images are encoded once per test run.
fn shared_image_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-cache")
}

fn build_with(src: &Path, out: &Path, extra: &[&str]) -> Output {
    let cache = shared_image_cache();
    let mut args = vec![
        "build",
        "--src",
        src.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
    ];
    if !extra.iter().any(|a| a.starts_with("--image-cache")) {
        args.extend(["--image-cache", cache.to_str().expect("utf-8 path")]);
    }
    args.extend_from_slice(extra);
    cachefront(&args)
}

struct Site {
    _dir: tempfile::TempDir,
    src: PathBuf,
    root: PathBuf,
}

fn demo_site() -> Site {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("www");
    copy_tree(&repo_www(), &src);
    let root = dir.path().to_owned();
    Site {
        _dir: dir,
        src,
        root,
    }
}

fn built_demo() -> (Site, PathBuf, Output) {
    let site = demo_site();
    let out = site.root.join("dist/www");
    let output = build(&site.src, &out);
    assert!(
        output.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (site, out, output)
}

/// A URL reference found in an output file.
#[derive(Debug)]
struct Found {
    in_file: String,
    url: String,
    integrity: Option<String>,
}

fn html_references(page: &str, html: &[u8]) -> Vec<Found> {
    use lol_html::{element, HtmlRewriter, Settings};
    let found = std::cell::RefCell::new(Vec::new());
    let push = |url: String, integrity: Option<String>| {
        found.borrow_mut().push(Found {
            in_file: page.to_owned(),
            url,
            integrity,
        });
    };
    {
        let mut rewriter = HtmlRewriter::new(
            Settings::new().append_element_content_handler(element!(
                "[src], [href], [srcset], [style]",
                |el| {
                    let integrity = el.get_attribute("integrity");
                    for name in ["src", "href"] {
                        if let Some(url) = el.get_attribute(name) {
                            push(url, integrity.clone());
                        }
                    }
                    if let Some(srcset) = el.get_attribute("srcset") {
                        srcset_urls(&srcset).into_iter().for_each(|u| push(u, None));
                    }
                    if let Some(style) = el.get_attribute("style") {
                        css_references(&style)
                            .into_iter()
                            .for_each(|r| push(r.url, None));
                    }
                    Ok(())
                }
            )),
            |_: &[u8]| {},
        );
        rewriter.write(html).expect("parse html");
        rewriter.end().expect("parse html");
    }
    found.into_inner()
}

fn is_fingerprinted(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() >= 3
        && parts[parts.len() - 2].len() == 8
        && parts[parts.len() - 2]
            .chars()
            .all(|c| c.is_ascii_hexdigit())
}

fn sri(bytes: &[u8]) -> String {
    format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha384::digest(bytes))
    )
}

#[test]
fn same_input_builds_byte_identical_output() {
    let (site, first_out, _) = built_demo();
    let second_out = site.root.join("again/www");
    assert!(build(&site.src, &second_out).status.success());
    let first = read_tree(&first_out);
    let second = read_tree(&second_out);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &first {
        assert!(bytes == &second[path], "{path} differs between builds");
    }
    // Rebuilding over a previous build replaces it, with the same result.
    assert!(build(&site.src, &first_out).status.success());
    assert_eq!(read_tree(&first_out), first);
}

#[test]
fn every_reference_in_output_html_and_css_resolves_to_an_output_file() {
    let (_site, out, _) = built_demo();
    let files = read_tree(&out);
    let mut references = Vec::new();
    for (path, bytes) in &files {
        if path.ends_with(".html") {
            references.extend(html_references(path, bytes));
        } else if path.ends_with(".css") {
            let css = std::str::from_utf8(bytes).expect("utf-8 css");
            references.extend(css_references(css).into_iter().map(|r| Found {
                in_file: path.clone(),
                url: r.url,
                integrity: None,
            }));
        }
    }
    let mut asset_references = 0;
    for found in &references {
        let Some(local) = local_url(&found.url) else {
            continue;
        };
        let target = resolve(&found.in_file, local.path).expect("stays inside the site");
        let served = if target.ends_with('/') {
            format!("{target}index.html")
        } else {
            target.clone()
        };
        assert!(
            files.contains_key(&served),
            "{} references {} ({served}), which is not in the output",
            found.in_file,
            found.url
        );
        if file_kind(&served).is_fingerprinted() {
            asset_references += 1;
            assert!(
                is_fingerprinted(&served),
                "{} references unfingerprinted asset {}",
                found.in_file,
                found.url
            );
        }
    }
    assert!(
        asset_references > 100,
        "only {asset_references} asset references checked"
    );
}

#[test]
fn integrity_attributes_verify_against_the_served_bytes() {
    let (_site, out, _) = built_demo();
    let files = read_tree(&out);
    let mut verified = 0;
    for (path, bytes) in files.iter().filter(|(p, _)| p.ends_with(".html")) {
        for found in html_references(path, bytes) {
            let Some(integrity) = found.integrity else {
                continue;
            };
            let local = local_url(&found.url).expect("integrity only on local assets");
            let target = resolve(path, local.path).expect("resolves");
            assert_eq!(sri(&files[&target]), integrity, "{path}: {}", found.url);
            verified += 1;
        }
    }
    // Every page links one stylesheet and at least one script.
    assert!(
        verified >= 22,
        "only {verified} integrity attributes verified"
    );
}

#[test]
fn manifest_lists_every_fingerprinted_file_sorted_with_size_and_integrity() {
    let (_site, out, _) = built_demo();
    let files = read_tree(&out);
    let manifest_bytes = &files["/manifest.json"];
    let manifest = Manifest::from_json(manifest_bytes).expect("valid manifest");
    let keys: Vec<&str> = manifest.iter().map(|(k, _)| k).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted);
    assert!(manifest.get("/css/site.css").is_some());
    assert!(
        manifest.get("/index.html").is_none(),
        "pages keep their names"
    );
    assert!(
        manifest.get("/robots.txt").is_none(),
        "well-known files keep their names"
    );
    for (logical, entry) in manifest.iter() {
        let bytes = files
            .get(&entry.path)
            .unwrap_or_else(|| panic!("{logical}: {} missing", entry.path));
        assert_eq!(entry.size, bytes.len() as u64, "{logical}");
        assert_eq!(entry.integrity, sri(bytes), "{logical}");
        assert!(
            !files.contains_key(logical),
            "{logical} also written unfingerprinted"
        );
    }
    let mut variants = 0;
    for (logical, image) in manifest.images() {
        for variant in &image.variants {
            let bytes = files
                .get(&variant.path)
                .unwrap_or_else(|| panic!("{logical}: {} missing", variant.path));
            assert_eq!(variant.size, bytes.len() as u64, "{}", variant.path);
            variants += 1;
        }
    }
    let fingerprinted = files.keys().filter(|p| is_fingerprinted(p)).count();
    assert_eq!(fingerprinted, manifest.len() + variants);
    for kept in [
        "/index.html",
        "/products/index.html",
        "/robots.txt",
        "/favicon.ico",
        "/sitemap.xml",
    ] {
        assert!(files.contains_key(kept), "{kept} keeps its name");
    }
}

#[test]
fn images_after_the_first_are_lazy_and_the_summary_is_printed() {
    let site = demo_site();
    std::fs::write(
        site.src.join("gallery.html"),
        r#"<!doctype html><title>g</title><img src="/images/hero.png" alt=""><img src="/images/logo.svg" alt=""><img src="images/icons/leaf.svg" loading="eager" alt="">"#,
    )
    .expect("write page");
    let out = site.root.join("out");
    let output = build(&site.src, &out);
    assert!(output.status.success());
    let page = std::fs::read_to_string(out.join("gallery.html")).expect("page");
    let images: Vec<&str> = page.split("<img").skip(1).collect();
    assert_eq!(images.len(), 3);
    assert!(
        !images[0].contains("loading"),
        "hero untouched: {}",
        images[0]
    );
    assert!(
        images[1].contains(r#"loading="lazy" decoding="async""#),
        "{}",
        images[1]
    );
    assert!(images[2].contains(r#"loading="eager""#) && !images[2].contains("lazy"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("total") && stdout.contains("->"),
        "{stdout}"
    );
}

#[test]
fn a_file_the_minifier_rejects_keeps_its_bytes_and_is_a_warning() {
    let site = demo_site();
    let broken = "function broken( { return 1; }\n";
    std::fs::write(site.src.join("js/broken.js"), broken).expect("write");
    let out = site.root.join("out");
    let output = build_with(&site.src, &out, &[]);
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("js/broken.js") && stderr.contains("syntax error"),
        "{stderr}"
    );
    let manifest =
        Manifest::from_json(&std::fs::read(out.join("manifest.json")).expect("manifest"))
            .expect("valid");
    let entry = manifest.get("/js/broken.js").expect("still fingerprinted");
    let served = std::fs::read(out.join(entry.path.trim_start_matches('/'))).expect("served");
    assert_eq!(served, broken.as_bytes());
}

#[test]
fn javascript_and_css_are_minified_by_default_and_scripts_keep_their_globals() {
    let (_site, out, _) = built_demo();
    let manifest =
        Manifest::from_json(&std::fs::read(out.join("manifest.json")).expect("manifest"))
            .expect("valid");
    for script in ["/js/app.js", "/js/catalog.js", "/js/products.js"] {
        let entry = manifest.get(script).expect("fingerprinted");
        let source_len = std::fs::metadata(repo_www().join(script.trim_start_matches('/')))
            .expect("source")
            .len();
        assert!(entry.size < source_len, "{script} is minified by default");
    }
    let css = manifest.get("/css/base.css").expect("css");
    let source_len = std::fs::metadata(repo_www().join("css/base.css"))
        .expect("source")
        .len();
    assert!(css.size < source_len, "CSS is minified by default");
}

#[test]
fn no_minify_js_serves_scripts_as_written() {
    let site = demo_site();
    let out = site.root.join("out");
    let output = build_with(&site.src, &out, &["--no-minify-js"]);
    assert!(output.status.success());
    let manifest =
        Manifest::from_json(&std::fs::read(out.join("manifest.json")).expect("manifest"))
            .expect("valid");
    for script in ["/js/app.js", "/js/catalog.js", "/js/products.js"] {
        let entry = manifest.get(script).expect("fingerprinted");
        let served = std::fs::read(out.join(entry.path.trim_start_matches('/'))).expect("served");
        let source =
            std::fs::read(repo_www().join(script.trim_start_matches('/'))).expect("source");
        assert!(served == source, "{script} changed with --no-minify-js");
    }
}

#[test]
fn an_import_cycle_fails_the_build_naming_the_files() {
    let site = demo_site();
    std::fs::write(
        site.src.join("css/a.css"),
        "@import \"b.css\";\na { color: red }\n",
    )
    .expect("write");
    std::fs::write(
        site.src.join("css/b.css"),
        "@import url(/css/a.css);\nb { color: blue }\n",
    )
    .expect("write");
    let out = site.root.join("out");
    let output = build(&site.src, &out);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/css/a.css -> /css/b.css -> /css/a.css"),
        "{stderr}"
    );
    assert!(!out.exists(), "a failed build writes nothing");
}

#[test]
fn stylesheets_are_hashed_after_the_files_they_import() {
    let (_site, out, _) = built_demo();
    let manifest =
        Manifest::from_json(&std::fs::read(out.join("manifest.json")).expect("manifest"))
            .expect("valid");
    let base = manifest.get("/css/base.css").expect("base.css");
    let site = manifest.get("/css/site.css").expect("site.css");
    let site_css =
        std::fs::read_to_string(out.join(site.path.trim_start_matches('/'))).expect("site css");
    assert!(
        site_css.contains(&base.path),
        "site.css imports {}",
        base.path
    );
}

#[test]
fn refuses_to_replace_a_directory_that_is_not_a_build() {
    let site = demo_site();
    let out = site.root.join("precious");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("notes.txt"), "keep me").expect("write");
    let output = build(&site.src, &out);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("precious"));
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).expect("kept"),
        "keep me"
    );

    let missing = build(&site.root.join("nope"), &site.root.join("out"));
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope"));
}

/// `(width, height)` of an `<img>` tag's attributes, if both are there.
fn declared_size(img_tag: &str) -> Option<(u32, u32)> {
    let attribute = |name: &str| {
        let start = img_tag.find(&format!(" {name}=\""))? + name.len() + 3;
        img_tag[start..].split('"').next()?.parse::<u32>().ok()
    };
    Some((attribute("width")?, attribute("height")?))
}

#[test]
fn raster_images_get_avif_and_webp_variants_in_a_picture_with_their_size() {
    let (_site, out, output) = built_demo();
    let files = read_tree(&out);
    let manifest = Manifest::from_json(&files["/manifest.json"]).expect("manifest");
    let hero = manifest.image("/images/hero.png").expect("hero encoded");
    assert_eq!((hero.width, hero.height), (1200, 500));
    for variant in &hero.variants {
        assert!(variant.width <= hero.width, "never upscaled");
        let bytes = &files[&variant.path];
        match variant.mime.as_str() {
            "image/avif" => assert_eq!(&bytes[4..12], b"ftypavif", "{}", variant.path),
            "image/webp" => assert_eq!(&bytes[8..12], b"WEBP", "{}", variant.path),
            other => panic!("unexpected type {other}"),
        }
    }
    let widths = |mime: &str| -> Vec<u32> {
        hero.variants
            .iter()
            .filter(|v| v.mime == mime)
            .map(|v| v.width)
            .collect()
    };
    assert_eq!(widths("image/avif"), vec![400, 800, 1200]);
    assert_eq!(widths("image/webp"), vec![400, 800, 1200]);
    // Lossless: the served PNG is no larger than the source.
    let source_png = std::fs::read(repo_www().join("images/hero.png")).expect("source");
    let served = manifest.get("/images/hero.png").expect("entry");
    assert!(served.size <= source_png.len() as u64);

    let index = std::str::from_utf8(&files["/index.html"]).expect("utf-8");
    assert!(
        index.contains("<picture><source type=\"image/avif\" srcset=\""),
        "{index}"
    );
    // Every raster <img> of every page is inside a <picture> and has its box.
    let mut pictures = 0;
    for (path, bytes) in files.iter().filter(|(p, _)| p.ends_with(".html")) {
        let html = std::str::from_utf8(bytes).expect("utf-8");
        for tag in html.split("<img").skip(1) {
            let tag = &tag[..tag.find('>').expect("tag ends")];
            assert!(
                declared_size(tag).is_some(),
                "{path}: <img{tag}> has no size"
            );
        }
        pictures += html.matches("<picture><source type=\"image/avif\"").count();
        assert_eq!(
            html.matches("<picture>").count(),
            html.matches("</picture>").count(),
            "{path}"
        );
    }
    assert!(pictures >= 20, "only {pictures} pictures");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for format in ["PNG", "AVIF", "WebP", "SVG"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(format)),
            "no {format} line in the summary: {stdout}"
        );
    }
}

#[test]
fn svgs_are_minified_keeping_viewbox_and_ids() {
    let (_site, out, _) = built_demo();
    let files = read_tree(&out);
    let manifest = Manifest::from_json(&files["/manifest.json"]).expect("manifest");
    let logo = &files[&manifest.get("/images/logo.svg").expect("logo").path];
    let source = std::fs::read(repo_www().join("images/logo.svg")).expect("source");
    assert!(logo.len() < source.len());
    let logo = std::str::from_utf8(logo).expect("utf-8");
    assert!(logo.contains("viewBox=\"0 0 180 40\""), "{logo}");
    assert!(
        logo.contains("aria-labelledby=\"t\"") && logo.contains("id=\"t\""),
        "{logo}"
    );
    assert!(!logo.contains("<!--"), "{logo}");
}

#[test]
fn a_rebuild_with_unchanged_images_encodes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("site");
    std::fs::create_dir_all(src.join("img")).expect("mkdir");
    let products = repo_www().join("images/products");
    for name in ["camp-stove-thumb.png", "summit-headlamp-thumb.png"] {
        std::fs::copy(products.join(name), src.join("img").join(name)).expect("copy");
    }
    std::fs::write(
        src.join("index.html"),
        r#"<!doctype html><title>t</title><img src="img/camp-stove-thumb.png" alt=""><img src="img/summit-headlamp-thumb.png" alt="">"#,
    )
    .expect("page");
    let cache = dir.path().join("cache");
    let cache_arg = format!("--image-cache={}", cache.display());
    let out = dir.path().join("out");
    let summary = |output: Output| {
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let first = summary(build_with(&src, &out, &[&cache_arg]));
    assert!(first.contains("2 encoded, 0 from the cache"), "{first}");
    let first_tree = read_tree(&out);

    let second = summary(build_with(&src, &out, &[&cache_arg]));
    assert!(second.contains("0 encoded, 2 from the cache"), "{second}");
    assert_eq!(read_tree(&out), first_tree, "same outputs from the cache");

    // One changed image is encoded again; the other still comes from the cache.
    std::fs::copy(
        products.join("alpine-tent-thumb.png"),
        src.join("img/camp-stove-thumb.png"),
    )
    .expect("replace");
    let third = summary(build_with(&src, &out, &[&cache_arg]));
    assert!(third.contains("1 encoded, 1 from the cache"), "{third}");
    // Other settings are other outputs: nothing reused.
    let fourth = summary(build_with(&src, &out, &[&cache_arg, "--avif-quality=50"]));
    assert!(fourth.contains("2 encoded, 0 from the cache"), "{fourth}");
}

#[test]
fn no_images_copies_images_as_they_are_without_pictures() {
    let site = demo_site();
    let out = site.root.join("out");
    let output = build_with(&site.src, &out, &["--no-images"]);
    assert!(output.status.success());
    let files = read_tree(&out);
    let manifest = Manifest::from_json(&files["/manifest.json"]).expect("manifest");
    assert_eq!(manifest.images().count(), 0);
    let hero = &files[&manifest.get("/images/hero.png").expect("hero").path];
    assert_eq!(
        hero,
        &std::fs::read(repo_www().join("images/hero.png")).expect("source")
    );
    let index = String::from_utf8_lossy(&files["/index.html"]);
    assert!(!index.contains("<picture>"));
}
