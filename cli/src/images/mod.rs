//! The build's image pipeline: raster images (PNG, JPEG) encoded into an
//! optimised original plus AVIF and WebP variants ([`encode`]), in parallel
//! and through an on-disk [`cache`] so unchanged images are never encoded
//! twice; SVGs minified conservatively ([`svg`]). The build
//! (`crate::build`) fingerprints the outputs and records them in the
//! manifest, from which pages get `<picture>` elements.

pub mod cache;
pub mod encode;
pub mod svg;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use rayon::prelude::*;

pub use encode::{
    encode_image, EncodedImage, EncodedVariant, ImageSettings, RasterKind, VariantFormat,
};

/// One raster image to encode.
pub struct ImageInput<'a> {
    pub logical_path: &'a str,
    pub bytes: &'a [u8],
    pub kind: RasterKind,
}

/// What became of one image.
pub struct ImageOutcome {
    /// `Err` says why the file is copied as it was.
    pub result: Result<EncodedImage, String>,
    /// Read from the cache rather than encoded.
    pub cached: bool,
}

/// Encodes every image, reading and filling the cache at `cache_dir` when
/// given. Outcomes come back in input order; `done` is called (from any
/// thread) as each image finishes.
pub fn process_images(
    inputs: &[ImageInput<'_>],
    settings: &ImageSettings,
    cache_dir: Option<&Path>,
    done: &(dyn Fn(&str) + Sync),
) -> Vec<ImageOutcome> {
    inputs
        .par_iter()
        .map(|input| {
            let outcome = process_one(input, settings, cache_dir);
            done(input.logical_path);
            outcome
        })
        .collect()
}

fn process_one(
    input: &ImageInput<'_>,
    settings: &ImageSettings,
    cache_dir: Option<&Path>,
) -> ImageOutcome {
    let key = cache_dir.map(|dir| (dir, cache::cache_key(input.bytes, input.kind, settings)));
    if let Some(hit) = key.as_ref().and_then(|(dir, key)| cache::load(dir, key)) {
        return ImageOutcome {
            result: Ok(hit),
            cached: true,
        };
    }
    // Decoders and encoders are large; a panic on one odd file becomes that
    // file's error (copied as is) instead of ending the build.
    let result = catch_unwind(AssertUnwindSafe(|| {
        encode_image(input.bytes, input.kind, settings)
    }))
    .unwrap_or_else(|_| Err("image encoder panicked".into()));
    if let (Ok(image), Some((dir, key))) = (&result, &key) {
        // A cache that cannot be written costs a re-encode next time, no more.
        let _ = cache::store(dir, key, image);
    }
    ImageOutcome {
        result,
        cached: false,
    }
}
