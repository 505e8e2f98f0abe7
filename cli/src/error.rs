//! The CLI's one error type. Every variant names the file or directory it is
//! about, because "permission denied" alone sends a user hunting.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: file name is not valid UTF-8", path.display())]
    NonUtf8Path { path: PathBuf },
    #[error("{}: symbolic link leads back to {}, which holds it; the site would never end", path.display(), ancestor.display())]
    SymlinkLoop { path: PathBuf, ancestor: PathBuf },
    #[error("source directory {} does not exist or is not a directory", path.display())]
    MissingSource { path: PathBuf },
    #[error(
        "output directory {} is not empty and holds no previous build (no cachefront manifest.json); refusing to replace it",
        path.display()
    )]
    OutputNotABuild { path: PathBuf },
    #[error("output directory {} is inside the source directory {}", out.display(), source_dir.display())]
    OutputInsideSource { out: PathBuf, source_dir: PathBuf },
    #[error("{}: collides with the build manifest written at /manifest.json; rename it", path.display())]
    ManifestCollision { path: PathBuf },
    #[error("stylesheets import each other in a cycle: {}", cycle.join(" -> "))]
    ImportCycle { cycle: Vec<String> },
}

impl BuildError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BuildError {
        let path = path.into();
        move |source| BuildError::Io { path, source }
    }
}
