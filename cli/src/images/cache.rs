//! The encode cache: one directory per (input bytes, input kind, settings,
//! pipeline version), holding the outputs of [`super::encode::encode_image`].
//! A rebuild with unchanged images reads them back instead of encoding.
//! Entries are written into a temporary directory and renamed into place, so
//! an interrupted build leaves no half entry; one that does not read back
//! whole counts as a miss.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::encode::{EncodedImage, EncodedVariant, ImageSettings, RasterKind, VariantFormat};

/// Bumped whenever the encoders or how they are driven change, so old
/// entries stop matching.
const PIPELINE_VERSION: &str = "cachefront-images-2";

/// The cache key: hex SHA-256 over everything the outputs depend on.
pub fn cache_key(bytes: &[u8], kind: RasterKind, settings: &ImageSettings) -> String {
    let mut hasher = Sha256::new();
    hasher.update(PIPELINE_VERSION.as_bytes());
    hasher.update([0]);
    // Settings serialise deterministically (a struct, fields in order).
    hasher.update(serde_json::to_vec(&(kind, settings)).unwrap_or_default());
    hasher.update([0]);
    hasher.update(bytes);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Serialize, Deserialize)]
struct Meta {
    width: u32,
    height: u32,
    note: Option<String>,
    variants: Vec<MetaVariant>,
}

#[derive(Serialize, Deserialize)]
struct MetaVariant {
    format: VariantFormat,
    width: u32,
    height: u32,
    file: String,
}

const ORIGINAL_FILE: &str = "original";
const META_FILE: &str = "meta.json";

fn entry_dir(root: &Path, key: &str) -> PathBuf {
    root.join(&key[..2]).join(key)
}

/// The cached outputs for `key`, if a whole entry is there.
pub fn load(root: &Path, key: &str) -> Option<EncodedImage> {
    let dir = entry_dir(root, key);
    let meta: Meta = serde_json::from_slice(&std::fs::read(dir.join(META_FILE)).ok()?).ok()?;
    let original = std::fs::read(dir.join(ORIGINAL_FILE)).ok()?;
    let mut variants = Vec::with_capacity(meta.variants.len());
    for v in meta.variants {
        variants.push(EncodedVariant {
            format: v.format,
            width: v.width,
            height: v.height,
            bytes: std::fs::read(dir.join(&v.file)).ok()?,
        });
    }
    Some(EncodedImage {
        width: meta.width,
        height: meta.height,
        original,
        variants,
        note: meta.note,
    })
}

/// Stores `image` under `key`. Failing to write the cache only costs a
/// later re-encode, so the caller may ignore the error.
pub fn store(root: &Path, key: &str, image: &EncodedImage) -> std::io::Result<()> {
    let dir = entry_dir(root, key);
    if dir.exists() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(root);
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!(".{key}.{}.partial", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    std::fs::create_dir_all(&staging)?;
    std::fs::write(staging.join(ORIGINAL_FILE), &image.original)?;
    let mut variants = Vec::with_capacity(image.variants.len());
    for v in &image.variants {
        let file = format!("{}.{}", v.width, v.format.extension());
        std::fs::write(staging.join(&file), &v.bytes)?;
        variants.push(MetaVariant {
            format: v.format,
            width: v.width,
            height: v.height,
            file,
        });
    }
    let meta = Meta {
        width: image.width,
        height: image.height,
        note: image.note.clone(),
        variants,
    };
    std::fs::write(
        staging.join(META_FILE),
        serde_json::to_vec_pretty(&meta).unwrap_or_default(),
    )?;
    match std::fs::rename(&staging, &dir) {
        Ok(()) => Ok(()),
        // Another build stored the same entry meanwhile: theirs is as good.
        Err(_) if dir.exists() => std::fs::remove_dir_all(&staging),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_changes_with_bytes_kind_and_settings() {
        let settings = ImageSettings::default();
        let key = cache_key(b"abc", RasterKind::Png, &settings);
        assert_eq!(key, cache_key(b"abc", RasterKind::Png, &settings));
        assert_ne!(key, cache_key(b"abd", RasterKind::Png, &settings));
        assert_ne!(key, cache_key(b"abc", RasterKind::Jpeg, &settings));
        let other = ImageSettings {
            avif_quality: settings.avif_quality + 1,
            ..settings.clone()
        };
        assert_ne!(key, cache_key(b"abc", RasterKind::Png, &other));
    }

    #[test]
    fn a_stored_entry_loads_back_and_a_partial_one_is_a_miss() {
        let root = tempfile::tempdir().expect("tempdir");
        let image = EncodedImage {
            width: 2,
            height: 1,
            original: b"png".to_vec(),
            variants: vec![EncodedVariant {
                format: VariantFormat::Avif,
                width: 2,
                height: 1,
                bytes: b"avif".to_vec(),
            }],
            note: None,
        };
        let key = cache_key(b"x", RasterKind::Png, &ImageSettings::default());
        assert_eq!(load(root.path(), &key), None);
        store(root.path(), &key, &image).expect("stored");
        assert_eq!(load(root.path(), &key), Some(image));
        std::fs::remove_file(entry_dir(root.path(), &key).join("2.avif")).expect("removed");
        assert_eq!(load(root.path(), &key), None);
    }
}
