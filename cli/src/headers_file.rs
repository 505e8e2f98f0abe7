//! The asset store's `_headers` file, written by `cachefront build` so that
//! the Workers asset store can answer the site's files without running the
//! worker (docs/assets.md, "Assets without the worker"): fingerprinted files
//! immutable, pages `HTML_CACHE_CONTROL`, every answer `Cache-Status`.
//!
//! A pure function of the output's paths: the build decides, this module
//! only spells the rules. The asset store matches a rule against the request
//! path with `*` as "anything, slashes included" and `:name` as a
//! placeholder, applies every matching rule, and appends (rather than
//! replaces) a header a previous rule already set; so the rules written here
//! never overlap on `Cache-Control`, and a path that a glob cannot name
//! safely gets an exact rule or none.

use std::collections::BTreeSet;

use cachefront::assets::{Manifest, IMMUTABLE_CACHE_CONTROL};

/// The asset store reads at most this many rules (Cloudflare's limit, also
/// enforced by wrangler's local asset store).
pub const MAX_RULES: usize = 100;

/// What the asset store's answers carry in place of the worker's
/// `Cache-Status` for an asset (`CacheStatus::asset()`), so clients see the
/// same member whichever of the two answered.
pub const ASSET_CACHE_STATUS: &str = "cachefront; hit; detail=assets";

/// The generated file and anything it could not express.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadersFile {
    pub text: String,
    pub warnings: Vec<String>,
}

/// The `_headers` for a build whose output holds `paths` (URL paths of every
/// file written, manifest included), with `user` (the site's own `_headers`,
/// if any) appended after the generated rules.
pub fn headers_file(
    paths: &BTreeSet<String>,
    manifest: &Manifest,
    html_cache_control: &str,
    user: Option<&str>,
) -> HeadersFile {
    let mut warnings = Vec::new();
    // Assets and the AVIF/WebP variants of images: each is named by its content.
    let variants = manifest
        .images()
        .flat_map(|(_, image)| image.variants.iter().map(|v| v.path.as_str()));
    let fingerprinted: BTreeSet<&str> = manifest
        .iter()
        .map(|(_, e)| e.path.as_str())
        .chain(variants)
        .collect();
    // Every request path the store answers for something not fingerprinted:
    // the files themselves and the extension-less paths pages are served at.
    let mut plain: BTreeSet<String> = BTreeSet::new();
    for path in paths.iter().filter(|p| !fingerprinted.contains(p.as_str())) {
        plain.insert(path.clone());
        if let Some(served) = served_page_path(path) {
            plain.insert(served);
        }
    }

    let user_rules = user.map_or(0, count_rules);
    let mut rules: Vec<(String, String)> = vec![(
        "/*".to_owned(),
        format!("Cache-Status: {ASSET_CACHE_STATUS}"),
    )];
    let mut immutable: BTreeSet<String> = BTreeSet::new();
    for path in &fingerprinted {
        match immutable_pattern(path, &plain) {
            Some(pattern) => {
                immutable.insert(pattern);
            }
            None => warnings.push(format!(
                "{path}: no _headers rule can name it safely; it keeps the asset store's default Cache-Control"
            )),
        }
    }
    for pattern in immutable {
        rules.push((pattern, format!("Cache-Control: {IMMUTABLE_CACHE_CONTROL}")));
    }
    let pages: Vec<String> = paths.iter().filter_map(|p| served_page_path(p)).collect();
    let mut skipped = 0usize;
    for served in pages {
        if !is_literal_rule(&served) {
            warnings.push(format!(
                "{served}: no _headers rule can name it safely; it keeps the asset store's default Cache-Control"
            ));
            continue;
        }
        if rules.len() + user_rules >= MAX_RULES {
            skipped += 1;
            continue;
        }
        rules.push((served, format!("Cache-Control: {html_cache_control}")));
    }
    if skipped > 0 {
        warnings.push(format!(
            "_headers holds at most {MAX_RULES} rules: {skipped} page(s) keep the asset store's default Cache-Control (public, max-age=0, must-revalidate)"
        ));
    }
    if rules.len() + user_rules > MAX_RULES {
        warnings.push(format!(
            "_headers has {} rules with the site's own; the asset store reads the first {MAX_RULES}",
            rules.len() + user_rules
        ));
    }

    let mut text = String::from(
        "# Written by `cachefront build` (docs/assets.md): the asset store answers\n\
         # these files without running the worker.\n",
    );
    for (rule, header) in &rules {
        text.push_str(rule);
        text.push_str("\n  ");
        text.push_str(header);
        text.push('\n');
    }
    if let Some(user) = user {
        text.push_str("\n# The site's own _headers:\n");
        text.push_str(user);
        if !user.ends_with('\n') {
            text.push('\n');
        }
    }
    HeadersFile { text, warnings }
}

/// The request path the asset store serves an HTML file at (its default
/// `html_handling`, `auto-trailing-slash`): `/a/index.html` at `/a/`,
/// `/a.html` at `/a`. `None` for anything else.
fn served_page_path(path: &str) -> Option<String> {
    if let Some(dir) = path.strip_suffix("/index.html") {
        return Some(format!("{dir}/"));
    }
    path.strip_suffix(".html").map(str::to_owned)
}

/// The broadest rule that gives `path` the immutable `Cache-Control` without
/// naming anything that is not fingerprinted: every file of its extension,
/// then every file of its extension in its directory, then the path itself.
fn immutable_pattern(path: &str, plain: &BTreeSet<String>) -> Option<String> {
    let (dir, name) = path.rsplit_once('/')?;
    let (_, extension) = name.rsplit_once('.')?;
    let candidates = [
        format!("/*.{extension}"),
        format!("{dir}/*.{extension}"),
        path.to_owned(),
    ];
    candidates.into_iter().find(|candidate| {
        let literal = candidate.replacen('*', "", 1);
        is_literal_rule(&literal) && !plain.iter().any(|p| glob_matches(candidate, p))
    })
}

/// Whether `path` can appear in a rule as itself: no glob, no placeholder
/// (`:name`), nothing the request URL would carry percent-encoded.
fn is_literal_rule(path: &str) -> bool {
    path.starts_with('/')
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~'))
}

/// The asset store's matching: `*` is any run of characters, `/` included.
fn glob_matches(pattern: &str, path: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == path,
        Some((prefix, suffix)) => {
            path.len() >= prefix.len() + suffix.len()
                && path.starts_with(prefix)
                && path.ends_with(suffix)
        }
    }
}

/// Rules in a `_headers` file: lines that start a rule (not indented, not a
/// comment, not blank).
fn count_rules(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            !l.trim().is_empty()
                && !l.starts_with(char::is_whitespace)
                && !l.trim_start().starts_with('#')
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachefront::assets::ManifestEntry;

    fn manifest(entries: &[(&str, &str)]) -> Manifest {
        let mut m = Manifest::new();
        for (logical, path) in entries {
            m.insert(
                *logical,
                ManifestEntry {
                    path: (*path).to_owned(),
                    size: 1,
                    integrity: "sha384-x".into(),
                },
            );
        }
        m
    }

    fn paths(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|p| (*p).to_owned()).collect()
    }

    fn rules_of(text: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rule = None;
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if let Some(header) = line.strip_prefix("  ") {
                out.push((rule.clone().unwrap_or_default(), header.to_owned()));
            } else {
                rule = Some(line.to_owned());
            }
        }
        out
    }

    /// The headers the asset store would attach to `path`, in order.
    fn headers_for(text: &str, path: &str) -> Vec<String> {
        rules_of(text)
            .into_iter()
            .filter(|(rule, _)| glob_matches(rule, path))
            .map(|(_, h)| h)
            .collect()
    }

    const HTML: &str = "public, max-age=60";

    #[test]
    fn fingerprinted_files_are_immutable_and_pages_get_the_html_cache_control() {
        let m = manifest(&[("/css/site.css", "/css/site.0123abcd.css")]);
        let out = headers_file(
            &paths(&[
                "/css/site.0123abcd.css",
                "/index.html",
                "/about.html",
                "/manifest.json",
            ]),
            &m,
            HTML,
            None,
        );
        let css = headers_for(&out.text, "/css/site.0123abcd.css");
        assert!(css.contains(&format!("Cache-Control: {IMMUTABLE_CACHE_CONTROL}")));
        assert_eq!(
            headers_for(&out.text, "/"),
            vec![
                format!("Cache-Status: {ASSET_CACHE_STATUS}"),
                format!("Cache-Control: {HTML}")
            ]
        );
        assert!(headers_for(&out.text, "/about").contains(&format!("Cache-Control: {HTML}")));
        assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    }

    #[test]
    fn no_path_gets_two_cache_controls_and_plain_files_keep_the_store_default() {
        // favicon.ico is fixed-name, the other .ico is fingerprinted; .json
        // files are fingerprinted but manifest.json is not.
        let m = manifest(&[
            ("/img/logo.ico", "/img/logo.0123abcd.ico"),
            ("/data/a.json", "/data/a.89abcdef.json"),
            ("/js/app.js", "/js/app.00000000.js"),
        ]);
        let all = paths(&[
            "/favicon.ico",
            "/img/logo.0123abcd.ico",
            "/data/a.89abcdef.json",
            "/js/app.00000000.js",
            "/manifest.json",
            "/robots.txt",
            "/index.html",
        ]);
        let out = headers_file(&all, &m, HTML, None);
        for path in all.iter().map(String::as_str).chain(["/"]) {
            let controls = headers_for(&out.text, path)
                .into_iter()
                .filter(|h| h.starts_with("Cache-Control"))
                .count();
            let expected = usize::from(
                path != "/favicon.ico"
                    && path != "/manifest.json"
                    && path != "/robots.txt"
                    && path != "/index.html",
            );
            assert_eq!(controls, expected, "{path}: {}", out.text);
        }
        // The broad rule where it is safe, narrower ones where it is not.
        let rules: Vec<String> = rules_of(&out.text).into_iter().map(|(r, _)| r).collect();
        assert!(rules.contains(&"/*.js".to_owned()), "{rules:?}");
        assert!(rules.contains(&"/img/*.ico".to_owned()), "{rules:?}");
        assert!(rules.contains(&"/data/*.json".to_owned()), "{rules:?}");
    }

    #[test]
    fn image_variants_are_immutable_like_their_originals() {
        let mut m = manifest(&[("/img/a.png", "/img/a.0123abcd.png")]);
        let variant = |path: &str, mime: &str| cachefront::assets::ImageVariant {
            path: path.to_owned(),
            mime: mime.to_owned(),
            width: 400,
            height: 300,
            size: 1,
        };
        let image = cachefront::assets::ImageInfo {
            width: 800,
            height: 600,
            variants: vec![
                variant("/img/a.0123abcd.400.avif", "image/avif"),
                variant("/img/a.0123abcd.400.webp", "image/webp"),
            ],
        };
        m.insert_image("/img/a.png", image).expect("asset exists");
        let out = headers_file(
            &paths(&[
                "/img/a.0123abcd.png",
                "/img/a.0123abcd.400.avif",
                "/img/a.0123abcd.400.webp",
                "/index.html",
            ]),
            &m,
            HTML,
            None,
        );
        for path in ["/img/a.0123abcd.400.avif", "/img/a.0123abcd.400.webp"] {
            assert!(
                headers_for(&out.text, path)
                    .contains(&format!("Cache-Control: {IMMUTABLE_CACHE_CONTROL}")),
                "{path}: {}",
                out.text
            );
        }
    }

    #[test]
    fn the_sites_own_headers_follow_and_count_against_the_rule_limit() {
        let m = manifest(&[]);
        let user = "/secret/*\n  X-Robots-Tag: noindex\n";
        let pages: Vec<String> = (0..120).map(|i| format!("/p{i}.html")).collect();
        let all: BTreeSet<String> = pages.iter().cloned().collect();
        let out = headers_file(&all, &m, HTML, Some(user));
        assert!(out.text.ends_with(user));
        assert_eq!(count_rules(&out.text), MAX_RULES, "{}", out.text);
        assert!(
            out.warnings.iter().any(|w| w.contains("22 page(s)")),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn paths_a_rule_cannot_spell_get_no_rule_and_a_warning() {
        let m = manifest(&[]);
        let out = headers_file(&paths(&["/a:b.html", "/ok.html"]), &m, HTML, None);
        assert!(!out.text.contains("/a:b"));
        assert!(out.text.contains("\n/ok\n"));
        assert_eq!(out.warnings.len(), 1);
    }
}
