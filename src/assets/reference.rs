//! What an asset reference (`src`, `href`, `url(...)`) points at: whether it is
//! local to the site, which logical path it resolves to from the document that
//! contains it, and how it reads once mapped to its fingerprinted file.

use std::borrow::Cow;

use super::manifest::{Manifest, ManifestEntry};

/// A local URL split into its path and the `?query#fragment` that follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalUrl<'a> {
    pub path: &'a str,
    pub suffix: &'a str,
}

/// Splits a URL that points into this site (absolute path or relative path).
/// Returns `None` for anything else: other schemes (`https:`, `data:`),
/// protocol-relative `//host/...`, bare fragments and empty values.
pub fn local_url(url: &str) -> Option<LocalUrl<'_>> {
    // `trim` only when an end could be whitespace: this runs for every URL
    // attribute on a page, and most need none.
    let needs_trim = |b: Option<&u8>| b.is_some_and(|b| !b.is_ascii_graphic());
    let url = if needs_trim(url.as_bytes().first()) || needs_trim(url.as_bytes().last()) {
        url.trim()
    } else {
        url
    };
    if url.is_empty() || url.starts_with('#') || url.starts_with("//") || url.starts_with('\\') {
        return None;
    }
    // Byte scans: `str` searches with char patterns cost several times more.
    let bytes = url.as_bytes();
    let split = bytes
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(bytes.len());
    let (path, suffix) = url.split_at(split);
    if path.is_empty() || has_scheme(path) {
        return None;
    }
    Some(LocalUrl { path, suffix })
}

/// `scheme:` per RFC 3986: a letter, then letters, digits, `+`, `-`, `.`,
/// before the first `:` and before any `/`.
fn has_scheme(path: &str) -> bool {
    let bytes = path.as_bytes();
    match bytes.iter().position(|&b| b == b':' || b == b'/') {
        Some(colon) if bytes[colon] == b':' => is_scheme(&bytes[..colon]),
        _ => false,
    }
}

/// `scheme` per RFC 3986: a letter, then letters, digits, `+`, `-`, `.`.
fn is_scheme(candidate: &[u8]) -> bool {
    candidate.first().is_some_and(u8::is_ascii_alphabetic)
        && candidate
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Resolves `path` (absolute or relative) against the URL path of the document
/// that contains it, normalising `.` and `..`. `None` when `..` climbs above
/// the site root.
pub fn resolve(base_path: &str, path: &str) -> Option<String> {
    let joined;
    let full = if path.starts_with('/') {
        path
    } else {
        let base_dir = match base_path.rfind('/') {
            Some(slash) => &base_path[..=slash],
            None => "/",
        };
        joined = format!("{base_dir}{path}");
        joined.as_str()
    };
    let mut segments: Vec<&str> = Vec::new();
    let trailing_slash = full.ends_with('/') || full.ends_with("/.") || full.ends_with("/..");
    for segment in full.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            other => segments.push(other),
        }
    }
    let mut resolved = String::with_capacity(full.len());
    for segment in &segments {
        resolved.push('/');
        resolved.push_str(segment);
    }
    if trailing_slash || resolved.is_empty() {
        resolved.push('/');
    }
    Some(resolved)
}

/// A reference that the manifest maps to a fingerprinted file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedReference<'m> {
    /// The reference as it should now be written.
    pub url: String,
    pub entry: &'m ManifestEntry,
}

/// Maps `url`, found in the document at `base_path`, through the manifest.
/// The written form stays as close to the original as possible: a relative
/// reference stays relative and keeps its query and fragment; only the file
/// name changes, because a fingerprinted file sits next to its original.
pub fn map_reference<'m>(
    manifest: &'m Manifest,
    base_path: &str,
    url: &str,
) -> Option<MappedReference<'m>> {
    let local = local_url(url)?;
    if !manifest.may_have_path_like(local.path) {
        return None;
    }
    let logical_path = logical_path(base_path, local.path)?;
    let entry = manifest.get(&logical_path)?;
    // Each `/` is looked up once: this runs for every mapped reference.
    let entry_slash = last_slash(&entry.path);
    let logical_slash = last_slash(&logical_path);
    fn dir(path: &str, slash: Option<usize>) -> &str {
        slash.map_or("", |slash| &path[..slash])
    }
    let mut url = String::with_capacity(local.path.len() + entry.path.len() + local.suffix.len());
    if dir(&logical_path, logical_slash) == dir(&entry.path, entry_slash) {
        let original_slash = if local.path == logical_path {
            logical_slash
        } else {
            last_slash(local.path)
        };
        url.push_str(original_slash.map_or("", |slash| &local.path[..=slash]));
        url.push_str(entry_slash.map_or(entry.path.as_str(), |slash| &entry.path[slash + 1..]));
    } else {
        url.push_str(&entry.path);
    }
    url.push_str(local.suffix);
    Some(MappedReference { url, entry })
}

/// The manifest entry of a reference that already points at a fingerprinted
/// file (after [`map_reference`], or written that way by the origin).
pub fn fingerprinted_entry<'m>(
    manifest: &'m Manifest,
    base_path: &str,
    url: &str,
) -> Option<&'m ManifestEntry> {
    let local = local_url(url)?;
    manifest.get_fingerprinted(&logical_path(base_path, local.path)?)
}

/// [`resolve`], without allocating for the common case of a path that is
/// already absolute and normalised: most references on a page (links to
/// other pages) are looked up and dropped, so this is the rewriter's hot path.
pub(crate) fn logical_path<'a>(base_path: &str, path: &'a str) -> Option<Cow<'a, str>> {
    if is_normalised_absolute(path) {
        Some(Cow::Borrowed(path))
    } else {
        resolve(base_path, path).map(Cow::Owned)
    }
}

/// An absolute path that [`resolve`] would return unchanged: no empty
/// segment inside it (`//`) and no `.` or `..` segment. One byte scan, as
/// this runs for every reference on a page.
fn is_normalised_absolute(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut start = 1;
    for i in 1..=bytes.len() {
        if i < bytes.len() && bytes[i] != b'/' {
            continue;
        }
        let segment = &bytes[start..i];
        let inner_empty = segment.is_empty() && i < bytes.len();
        if inner_empty || segment == b"." || segment == b".." {
            return false;
        }
        start = i + 1;
    }
    true
}

/// Byte index of the last `/` (a byte scan: `str::rfind` with a char pattern
/// is several times slower, and this runs for every reference on a page).
fn last_slash(path: &str) -> Option<usize> {
    path.bytes().rposition(|b| b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_site_local_urls_are_split() {
        assert_eq!(
            local_url(" /a/b.css?v=1#x "),
            Some(LocalUrl {
                path: "/a/b.css",
                suffix: "?v=1#x"
            })
        );
        assert_eq!(local_url("b.css").map(|u| u.path), Some("b.css"));
        assert_eq!(local_url("../b.css").map(|u| u.path), Some("../b.css"));
        for external in [
            "https://cdn.example/a.js",
            "//cdn.example/a.js",
            "data:image/png;base64,AAAA",
            "#top",
            "",
            "mailto:a@b.c",
            "?only=query",
        ] {
            assert_eq!(local_url(external), None, "{external}");
        }
        // A colon after a slash is part of the path, not a scheme.
        assert_eq!(local_url("/a:b.png").map(|u| u.path), Some("/a:b.png"));
        assert_eq!(local_url("a/b:c.png").map(|u| u.path), Some("a/b:c.png"));
        assert_eq!(local_url("x+y-z.1:rest"), None);
        assert_eq!(local_url("1x:rest").map(|u| u.path), Some("1x:rest"));
        assert_eq!(local_url("a.png?x=y:z").map(|u| u.suffix), Some("?x=y:z"));
    }

    #[test]
    fn the_no_allocation_path_agrees_with_resolve() {
        for path in [
            "/", "/a", "/a/", "/a/b.css", "//a", "/a//b", "/a/./b", "/a/../b", "/.", "/..", "/a/.",
            "/a/..", "/a/.b", "/a/b..", "/...", "a/b", "", "/a/b/",
        ] {
            let fast = is_normalised_absolute(path);
            assert_eq!(
                fast,
                resolve("/x/y.html", path).as_deref() == Some(path),
                "{path:?}"
            );
            assert_eq!(
                logical_path("/x/y.html", path).as_deref(),
                resolve("/x/y.html", path).as_deref(),
                "{path:?}"
            );
        }
    }

    #[test]
    fn relative_paths_resolve_against_the_document() {
        assert_eq!(
            resolve("/products/tent.html", "../css/site.css").as_deref(),
            Some("/css/site.css")
        );
        assert_eq!(
            resolve("/products/", "img/a.png").as_deref(),
            Some("/products/img/a.png")
        );
        assert_eq!(
            resolve("/index.html", "./a/./b/../c.js").as_deref(),
            Some("/a/c.js")
        );
        assert_eq!(resolve("/a.html", "../../x.js"), None);
        assert_eq!(resolve("/a.html", "/").as_deref(), Some("/"));
        assert_eq!(resolve("/a.html", "dir/").as_deref(), Some("/dir/"));
    }

    #[test]
    fn mapping_changes_only_the_file_name() {
        let mut manifest = Manifest::new();
        manifest.insert(
            "/css/site.css",
            ManifestEntry {
                path: "/css/site.0123abcd.css".into(),
                size: 1,
                integrity: "sha384-x".into(),
            },
        );
        let mapped = |base: &str, url: &str| map_reference(&manifest, base, url).map(|m| m.url);
        assert_eq!(
            mapped("/index.html", "/css/site.css").as_deref(),
            Some("/css/site.0123abcd.css")
        );
        assert_eq!(
            mapped("/p/x.html", "../css/site.css?v=2#a").as_deref(),
            Some("../css/site.0123abcd.css?v=2#a")
        );
        assert_eq!(
            mapped("/css/other.css", "site.css").as_deref(),
            Some("site.0123abcd.css")
        );
        assert_eq!(mapped("/index.html", "/css/missing.css"), None);
        assert!(fingerprinted_entry(&manifest, "/p/x.html", "../css/site.0123abcd.css").is_some());
    }
}
