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
    let url = url.trim();
    if url.is_empty() || url.starts_with('#') || url.starts_with("//") || url.starts_with('\\') {
        return None;
    }
    // A byte scan: `str::find` with a char set is ~4x slower on this hot path.
    let split = url
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(url.len());
    let (path, suffix) = url.split_at(split);
    if path.is_empty() || has_scheme(path) {
        return None;
    }
    Some(LocalUrl { path, suffix })
}

/// `scheme:` per RFC 3986: a letter, then letters, digits, `+`, `-`, `.`,
/// before the first `:` and before any `/`.
fn has_scheme(path: &str) -> bool {
    let Some(colon) = path.find(':') else {
        return false;
    };
    let scheme = &path[..colon];
    !scheme.contains('/')
        && scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
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
    /// The logical path it resolved to (`/css/site.css`).
    pub logical_path: String,
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
    let logical_path = logical_path(base_path, local.path)?;
    let entry = manifest.get(&logical_path)?;
    let same_directory = parent(&logical_path) == parent(&entry.path);
    let mut url = String::with_capacity(local.path.len() + entry.path.len() + local.suffix.len());
    if same_directory {
        let original_dir = match last_slash(local.path) {
            Some(slash) => &local.path[..=slash],
            None => "",
        };
        url.push_str(original_dir);
        url.push_str(file_name(&entry.path));
    } else {
        url.push_str(&entry.path);
    }
    url.push_str(local.suffix);
    Some(MappedReference {
        url,
        logical_path: logical_path.into_owned(),
        entry,
    })
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
fn logical_path<'a>(base_path: &str, path: &'a str) -> Option<Cow<'a, str>> {
    let normalised = path.starts_with('/')
        && !path.contains("//")
        && !path
            .split('/')
            .any(|segment| segment == "." || segment == "..");
    if normalised {
        Some(Cow::Borrowed(path))
    } else {
        resolve(base_path, path).map(Cow::Owned)
    }
}

/// Byte index of the last `/` (a byte scan: `str::rfind` with a char pattern
/// is several times slower, and this runs for every reference on a page).
fn last_slash(path: &str) -> Option<usize> {
    path.bytes().rposition(|b| b == b'/')
}

fn parent(path: &str) -> &str {
    last_slash(path).map_or("", |slash| &path[..slash])
}

fn file_name(path: &str) -> &str {
    last_slash(path).map_or(path, |slash| &path[slash + 1..])
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
