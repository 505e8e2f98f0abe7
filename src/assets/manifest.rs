//! The build manifest: for every fingerprinted asset, its logical URL path
//! (`/css/site.css`), the fingerprinted path it is served at
//! (`/css/site.3f2a9c1b.css`), its size and its SRI integrity. Written by
//! `cachefront build` as `manifest.json`, read by the edge to rewrite origin
//! HTML and to recognise immutable files. Raster images also carry their
//! intrinsic size and encoded variants ([`ImageInfo`]), from which the build
//! and the edge write `<picture>` elements ([`super::picture`]).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// `Cache-Control` of HTML pages from the asset store unless
/// `HTML_CACHE_CONTROL` says otherwise.
pub const DEFAULT_HTML_CACHE_CONTROL: &str = "public, max-age=60, stale-while-revalidate=300";

/// `Cache-Control` for a fingerprinted file: its name changes whenever its
/// bytes do, so a copy never needs revalidating.
pub const IMMUTABLE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// Manifest file format version; bumped on incompatible changes.
pub const MANIFEST_VERSION: u32 = 1;

/// One fingerprinted asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// URL path the asset is served at, e.g. `/js/app.3f2a9c1b.js`.
    pub path: String,
    /// Size in bytes of the served (minified, rewritten) file.
    pub size: u64,
    /// Subresource Integrity value of the served bytes, `sha384-<base64>`.
    pub integrity: String,
}

/// A raster image's intrinsic size and the encodings the build made of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    /// Modern-format encodings at one or more widths, never wider than the
    /// original; ordered by type, then width.
    pub variants: Vec<ImageVariant>,
}

/// One encoding of an image: a fingerprinted file of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVariant {
    /// URL path it is served at, e.g. `/images/hero.1a2b3c4d.800.avif`.
    pub path: String,
    /// MIME type for `<source type>`: `image/avif` or `image/webp`.
    #[serde(rename = "type")]
    pub mime: String,
    pub width: u32,
    pub height: u32,
    pub size: u64,
}

/// The on-disk shape; a separate type so the lookup index is never serialized.
/// `images` is optional so manifests of earlier builds still read.
#[derive(Serialize, Deserialize)]
struct ManifestFile {
    version: u32,
    assets: BTreeMap<String, ManifestEntry>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    images: BTreeMap<String, ImageInfo>,
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("manifest version {found} is not supported (expected {MANIFEST_VERSION})")]
    Version { found: u32 },
    #[error("manifest key {0:?} is not an absolute URL path")]
    NotAbsolute(String),
    #[error("manifest image {0:?} is not an asset of the manifest")]
    ImageWithoutAsset(String),
}

/// Logical path → fingerprinted asset, with the reverse index the edge needs
/// to recognise a request for a fingerprinted file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    assets: BTreeMap<String, ManifestEntry>,
    images: BTreeMap<String, ImageInfo>,
    by_fingerprinted_path: HashMap<String, String>,
    /// File extensions of the logical paths, sorted: most references on a
    /// page (links to pages and directories) are ruled out by their
    /// extension without a map lookup.
    extensions: Vec<String>,
}

impl Manifest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the entry for `logical_path` (an absolute URL path).
    pub fn insert(&mut self, logical_path: impl Into<String>, entry: ManifestEntry) {
        let logical_path = logical_path.into();
        if let Some(previous) = self.assets.get(&logical_path) {
            self.by_fingerprinted_path.remove(&previous.path);
        }
        self.by_fingerprinted_path
            .insert(entry.path.clone(), logical_path.clone());
        let extension = extension(&logical_path);
        if let Err(at) = self
            .extensions
            .binary_search_by(|e| e.as_str().cmp(extension))
        {
            self.extensions.insert(at, extension.to_owned());
        }
        self.assets.insert(logical_path, entry);
    }

    /// Records the size and variants of the image at `logical_path`, which
    /// must already be an asset; its variants' paths become fingerprinted
    /// paths of that asset.
    pub fn insert_image(
        &mut self,
        logical_path: &str,
        image: ImageInfo,
    ) -> Result<(), ManifestError> {
        if !self.assets.contains_key(logical_path) {
            return Err(ManifestError::ImageWithoutAsset(logical_path.to_owned()));
        }
        if let Some(previous) = self.images.get(logical_path) {
            for variant in &previous.variants {
                self.by_fingerprinted_path.remove(&variant.path);
            }
        }
        for variant in &image.variants {
            self.by_fingerprinted_path
                .insert(variant.path.clone(), logical_path.to_owned());
        }
        self.images.insert(logical_path.to_owned(), image);
        Ok(())
    }

    /// Size and variants of the image at a logical path, if the build made any.
    pub fn image(&self, logical_path: &str) -> Option<&ImageInfo> {
        self.images.get(logical_path)
    }

    /// Images with variants, in logical-path order.
    pub fn images(&self) -> impl Iterator<Item = (&str, &ImageInfo)> {
        self.images.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// False when no logical path has the file extension of `path` (what
    /// follows the last `.` of its last segment; empty without one), so
    /// [`get`](Self::get) would find nothing. Resolving a reference keeps its
    /// last segment (or makes the path end in `/`, whose extension is empty,
    /// as that of `.` and `..` is), so this can be asked before resolving.
    pub fn may_have_path_like(&self, path: &str) -> bool {
        let extension = extension(path);
        self.extensions.iter().any(|e| e == extension)
    }

    /// The entry for a logical path such as `/css/site.css`.
    pub fn get(&self, logical_path: &str) -> Option<&ManifestEntry> {
        self.assets.get(logical_path)
    }

    /// The entry whose fingerprinted path is `path` (`/css/site.3f2a9c1b.css`):
    /// the edge serves such paths with [`IMMUTABLE_CACHE_CONTROL`].
    pub fn get_fingerprinted(&self, path: &str) -> Option<&ManifestEntry> {
        self.by_fingerprinted_path
            .get(path)
            .and_then(|logical| self.assets.get(logical))
    }

    /// True when `path` is a fingerprinted file of this build.
    pub fn is_fingerprinted(&self, path: &str) -> bool {
        self.by_fingerprinted_path.contains_key(path)
    }

    /// Entries in logical-path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ManifestEntry)> {
        self.assets.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.assets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.assets.is_empty()
    }

    /// Parses `manifest.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let file: ManifestFile = serde_json::from_slice(bytes)?;
        if file.version != MANIFEST_VERSION {
            return Err(ManifestError::Version {
                found: file.version,
            });
        }
        let mut manifest = Manifest::new();
        for (logical, entry) in file.assets {
            if !logical.starts_with('/') || !entry.path.starts_with('/') {
                return Err(ManifestError::NotAbsolute(logical));
            }
            manifest.insert(logical, entry);
        }
        for (logical, image) in file.images {
            if image.variants.iter().any(|v| !v.path.starts_with('/')) {
                return Err(ManifestError::NotAbsolute(logical));
            }
            manifest.insert_image(&logical, image)?;
        }
        Ok(manifest)
    }

    /// Pretty JSON with keys in sorted order and a trailing newline, so the same
    /// build always writes the same bytes.
    pub fn to_json_pretty(&self) -> String {
        let file = ManifestFile {
            version: MANIFEST_VERSION,
            assets: self.assets.clone(),
            images: self.images.clone(),
        };
        // Serializing strings, integers and maps cannot fail.
        let mut json = serde_json::to_string_pretty(&file).unwrap_or_default();
        json.push('\n');
        json
    }
}

/// What follows the last `.` of the last `/`-segment of `path`.
fn extension(path: &str) -> &str {
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate().rev() {
        match b {
            b'.' => return &path[i + 1..],
            b'/' => return "",
            _ => {}
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> ManifestEntry {
        ManifestEntry {
            path: path.into(),
            size: 3,
            integrity: "sha384-abc".into(),
        }
    }

    #[test]
    fn paths_are_ruled_out_by_extension_only_when_no_asset_has_it() {
        let mut manifest = Manifest::new();
        manifest.insert("/css/site.css", entry("/css/site.1.css"));
        manifest.insert("/LICENSE", entry("/LICENSE.1"));
        for path in [
            "/css/site.css",
            "../x/other.css",
            "a.b/c.css",
            "/README",
            "/v1.2/README",
            "dir/",
            "/a/..",
        ] {
            assert!(manifest.may_have_path_like(path), "{path}");
        }
        for path in ["/index.html", "page.htm", "/css/site.CSS", "/a.css.map"] {
            assert!(!manifest.may_have_path_like(path), "{path}");
        }
        let mut only_css = Manifest::new();
        only_css.insert("/css/site.css", entry("/css/site.1.css"));
        assert!(!only_css.may_have_path_like("/products/"));
        assert!(!only_css.may_have_path_like("/"));
    }

    #[test]
    fn json_round_trip_keeps_entries_and_reverse_index() {
        let mut manifest = Manifest::new();
        manifest.insert("/js/app.js", entry("/js/app.0badc0de.js"));
        manifest.insert("/css/site.css", entry("/css/site.12345678.css"));
        let json = manifest.to_json_pretty();
        assert!(json.find("/css/site.css") < json.find("/js/app.js"));
        let parsed = Manifest::from_json(json.as_bytes()).expect("valid manifest");
        assert_eq!(parsed, manifest);
        assert!(parsed.is_fingerprinted("/js/app.0badc0de.js"));
        assert!(!parsed.is_fingerprinted("/js/app.js"));
        assert_eq!(
            parsed.get_fingerprinted("/css/site.12345678.css"),
            Some(&entry("/css/site.12345678.css"))
        );
    }

    #[test]
    fn replacing_an_entry_drops_its_old_fingerprinted_path() {
        let mut manifest = Manifest::new();
        manifest.insert("/a.js", entry("/a.11111111.js"));
        manifest.insert("/a.js", entry("/a.22222222.js"));
        assert!(!manifest.is_fingerprinted("/a.11111111.js"));
        assert!(manifest.is_fingerprinted("/a.22222222.js"));
    }

    #[test]
    fn image_variants_round_trip_and_are_fingerprinted_paths_of_their_image() {
        let mut manifest = Manifest::new();
        manifest.insert("/hero.png", entry("/hero.0badc0de.png"));
        let image = ImageInfo {
            width: 800,
            height: 600,
            variants: vec![ImageVariant {
                path: "/hero.11111111.400.avif".into(),
                mime: "image/avif".into(),
                width: 400,
                height: 300,
                size: 10,
            }],
        };
        manifest
            .insert_image("/hero.png", image.clone())
            .expect("asset exists");
        let parsed = Manifest::from_json(manifest.to_json_pretty().as_bytes()).expect("valid");
        assert_eq!(parsed.image("/hero.png"), Some(&image));
        assert!(parsed.is_fingerprinted("/hero.11111111.400.avif"));
        assert!(matches!(
            manifest.insert_image("/missing.png", image),
            Err(ManifestError::ImageWithoutAsset(_))
        ));
        // A manifest without images writes no `images` member at all.
        assert!(!Manifest::new().to_json_pretty().contains("images"));
    }

    #[test]
    fn unsupported_version_and_relative_keys_are_rejected() {
        assert!(matches!(
            Manifest::from_json(br#"{"version":9,"assets":{}}"#),
            Err(ManifestError::Version { found: 9 })
        ));
        assert!(matches!(
            Manifest::from_json(
                br#"{"version":1,"assets":{"a.js":{"path":"/a.1.js","size":1,"integrity":"x"}}}"#
            ),
            Err(ManifestError::NotAbsolute(_))
        ));
        assert!(Manifest::from_json(b"not json").is_err());
    }
}
