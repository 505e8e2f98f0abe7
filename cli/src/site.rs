//! The source site: which files it has, at which URL path, and what the build
//! does with each kind.

use std::path::{Path, PathBuf};

use crate::error::BuildError;

/// What the build does with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// HTML: rewritten, keeps its name (its URL is what people link to).
    Page,
    /// Files fetched by well-known name (robots.txt, favicon.ico, sitemaps,
    /// `_headers`, `.well-known/`): copied byte for byte under their name.
    FixedName,
    /// Minified, references rewritten, fingerprinted.
    Stylesheet,
    /// Minified and fingerprinted. `module` for `.mjs`.
    Script { module: bool },
    /// Anything else (images, fonts, PDFs): fingerprinted as-is.
    Other,
}

impl FileKind {
    pub fn is_fingerprinted(self) -> bool {
        !matches!(self, FileKind::Page | FileKind::FixedName)
    }
}

/// One file of the source site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteFile {
    /// URL path: `/css/site.css`.
    pub logical_path: String,
    /// Path on disk.
    pub path: PathBuf,
    pub kind: FileKind,
}

/// Classifies by URL path.
pub fn file_kind(logical_path: &str) -> FileKind {
    let name = logical_path.rsplit('/').next().unwrap_or(logical_path);
    let lower = name.to_ascii_lowercase();
    let extension = lower.rsplit_once('.').map_or("", |(_, ext)| ext);
    if logical_path.starts_with("/.well-known/")
        || matches!(lower.as_str(), "favicon.ico" | "_headers" | "_redirects")
        || matches!(extension, "txt" | "xml" | "webmanifest")
    {
        return FileKind::FixedName;
    }
    match extension {
        "html" | "htm" => FileKind::Page,
        "css" => FileKind::Stylesheet,
        "js" | "cjs" => FileKind::Script { module: false },
        "mjs" => FileKind::Script { module: true },
        _ => FileKind::Other,
    }
}

/// Every file under `root`, sorted by URL path. Hidden entries are skipped
/// (editor and VCS droppings), except `.well-known`.
pub fn scan(root: &Path) -> Result<Vec<SiteFile>, BuildError> {
    if !root.is_dir() {
        return Err(BuildError::MissingSource {
            path: root.to_owned(),
        });
    }
    let mut files = Vec::new();
    let mut pending = vec![(root.to_owned(), String::new())];
    while let Some((dir, url_prefix)) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(BuildError::io(&dir))?;
        for entry in entries {
            let entry = entry.map_err(BuildError::io(&dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                return Err(BuildError::NonUtf8Path { path });
            };
            if name.starts_with('.') && name != ".well-known" {
                continue;
            }
            // Follow symlinks: a linked asset is still part of the site.
            let metadata = std::fs::metadata(&path).map_err(BuildError::io(&path))?;
            let logical_path = format!("{url_prefix}/{name}");
            if metadata.is_dir() {
                pending.push((path, logical_path));
            } else if metadata.is_file() {
                files.push(SiteFile {
                    kind: file_kind(&logical_path),
                    logical_path,
                    path,
                });
            }
        }
    }
    files.sort_by(|a, b| a.logical_path.cmp(&b.logical_path));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_names() {
        assert_eq!(file_kind("/index.html"), FileKind::Page);
        assert_eq!(file_kind("/a/b.HTM"), FileKind::Page);
        assert_eq!(file_kind("/robots.txt"), FileKind::FixedName);
        assert_eq!(file_kind("/favicon.ico"), FileKind::FixedName);
        assert_eq!(file_kind("/sitemap.xml"), FileKind::FixedName);
        assert_eq!(file_kind("/.well-known/security.txt"), FileKind::FixedName);
        assert_eq!(file_kind("/css/site.css"), FileKind::Stylesheet);
        assert_eq!(file_kind("/js/app.js"), FileKind::Script { module: false });
        assert_eq!(file_kind("/js/app.mjs"), FileKind::Script { module: true });
        assert_eq!(file_kind("/images/a.png"), FileKind::Other);
        assert_eq!(file_kind("/favicon.svg"), FileKind::Other);
        assert_eq!(file_kind("/LICENSE"), FileKind::Other);
    }
}
