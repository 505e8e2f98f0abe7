//! The source site: which files it has, at which URL path, and what the build
//! does with each kind.

use std::path::{Path, PathBuf};

use walkdir::{DirEntry, WalkDir};

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
/// (editor and VCS droppings), except `.well-known`. Symbolic links are
/// followed (a linked asset is still part of the site); one that leads back
/// to a directory it sits in is refused instead of walked forever.
pub fn scan(root: &Path) -> Result<Vec<SiteFile>, BuildError> {
    if !root.is_dir() {
        return Err(BuildError::MissingSource {
            path: root.to_owned(),
        });
    }
    let mut files = Vec::new();
    let walk = WalkDir::new(root)
        .follow_links(true)
        .into_iter()
        .filter_entry(|entry| entry.depth() == 0 || !is_hidden(entry));
    for entry in walk {
        let entry = entry.map_err(|error| walk_error(root, error))?;
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path();
        if entry.file_name().to_str().is_none() {
            return Err(BuildError::NonUtf8Path {
                path: path.to_owned(),
            });
        }
        if !entry.file_type().is_file() {
            continue;
        }
        let mut logical_path = String::new();
        for part in path.strip_prefix(root).unwrap_or(path).iter() {
            let Some(part) = part.to_str() else {
                return Err(BuildError::NonUtf8Path {
                    path: path.to_owned(),
                });
            };
            logical_path.push('/');
            logical_path.push_str(part);
        }
        files.push(SiteFile {
            kind: file_kind(&logical_path),
            logical_path,
            path: path.to_owned(),
        });
    }
    files.sort_by(|a, b| a.logical_path.cmp(&b.logical_path));
    Ok(files)
}

/// Dot-names are skipped, `.well-known` is not; a name that is not UTF-8 is
/// kept so that the scan can name it in its error.
fn is_hidden(entry: &DirEntry) -> bool {
    entry
        .file_name()
        .to_str()
        .is_some_and(|name| name.starts_with('.') && name != ".well-known")
}

fn walk_error(root: &Path, error: walkdir::Error) -> BuildError {
    let path = error.path().unwrap_or(root).to_owned();
    if let Some(ancestor) = error.loop_ancestor() {
        return BuildError::SymlinkLoop {
            path,
            ancestor: ancestor.to_owned(),
        };
    }
    match error.into_io_error() {
        Some(source) => BuildError::Io { path, source },
        None => BuildError::Io {
            path,
            source: std::io::Error::other("cannot walk the directory"),
        },
    }
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

    #[cfg(unix)]
    #[test]
    fn a_symlink_back_to_its_own_directory_is_refused_not_walked_forever() {
        let root = tempfile::tempdir().expect("temp dir");
        let css = root.path().join("css");
        std::fs::create_dir(&css).expect("mkdir");
        std::fs::write(css.join("site.css"), "a{}").expect("write");
        std::os::unix::fs::symlink(root.path(), css.join("again")).expect("symlink");

        match scan(root.path()) {
            Err(BuildError::SymlinkLoop { path, ancestor }) => {
                assert_eq!(path, css.join("again"));
                assert_eq!(ancestor, root.path());
            }
            other => panic!("expected a symlink loop error, got {other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn linked_files_and_directories_are_part_of_the_site_and_dot_names_are_not() {
        let root = tempfile::tempdir().expect("temp dir");
        let elsewhere = tempfile::tempdir().expect("temp dir");
        std::fs::write(elsewhere.path().join("logo.png"), "png").expect("write");
        std::fs::create_dir(root.path().join(".git")).expect("mkdir");
        std::fs::write(root.path().join(".git/HEAD"), "ref").expect("write");
        std::fs::create_dir(root.path().join(".well-known")).expect("mkdir");
        std::fs::write(root.path().join(".well-known/security.txt"), "x").expect("write");
        std::fs::write(root.path().join("index.html"), "<p>").expect("write");
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("images")).expect("symlink");

        let paths: Vec<String> = scan(root.path())
            .expect("scan")
            .into_iter()
            .map(|f| f.logical_path)
            .collect();
        assert_eq!(
            paths,
            [
                "/.well-known/security.txt",
                "/images/logo.png",
                "/index.html"
            ]
        );
    }
}
