//! The encoders of `cachefront build`'s image pipeline, in a crate of their
//! own: one raster image in, its build outputs out: the losslessly optimised
//! original (oxipng for PNG; libjpeg-turbo's lossless re-encoding for JPEG)
//! and AVIF (libavif) and lossy WebP (libwebp) variants at the configured
//! widths that are not wider than the image. Pure apart from CPU time: same
//! bytes and settings, same outputs.
//!
//! AVIF, WebP and JPEG come from the system's libraries through `sys` (the
//! only unsafe code of the workspace; `src/shim.c` holds the C side), so a
//! clean build compiles a few hundred lines of C instead of rav1e and libwebp
//! (docs/assets.md, "Encoders: why these"). The crate is built at opt-level 3
//! even in dev (root Cargo.toml): `image`'s resizing is generic and compiled
//! here. Tests: `cli/src/images`, and `tests/` below.

mod sys;

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat, RgbaImage};
use serde::{Deserialize, Serialize};
pub use sys::{avif_codec_versions, decode_rgba};

/// The encodings and widths the build makes. Part of the cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSettings {
    /// Candidate widths in pixels; each image gets those not wider than
    /// itself, plus its own width (never upscaled).
    pub widths: Vec<u32>,
    /// AVIF quality, 1–100, libavif's scale: quantizer `(100 − q) × 63 / 100`.
    pub avif_quality: u8,
    /// libavif speed, 0 (slowest, smallest) – 10.
    pub avif_speed: u8,
    /// Full-resolution chroma (4:4:4) in AVIF instead of 4:2:0.
    pub avif_yuv444: bool,
    /// libwebp quality, 0–100.
    pub webp_quality: f32,
    /// Lossless WebP instead (larger here; kept for comparison).
    pub webp_lossless: bool,
    /// oxipng preset, 0–6.
    pub png_level: u8,
}

impl Default for ImageSettings {
    fn default() -> Self {
        // Figures behind these in docs/assets.md ("Images").
        Self {
            widths: vec![400, 800, 1200, 1600],
            avif_quality: 55,
            avif_speed: 7,
            avif_yuv444: true,
            webp_quality: 78.0,
            webp_lossless: false,
            png_level: 2,
        }
    }
}

/// Input formats the pipeline encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RasterKind {
    Png,
    Jpeg,
}

impl RasterKind {
    /// By file extension, case-insensitively.
    pub fn of_path(path: &str) -> Option<Self> {
        let lower = path.to_ascii_lowercase();
        let extension = lower.rsplit_once('.').map_or("", |(_, e)| e);
        match extension {
            "png" => Some(Self::Png),
            "jpg" | "jpeg" => Some(Self::Jpeg),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Png => "PNG",
            Self::Jpeg => "JPEG",
        }
    }
}

/// A modern-format encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum VariantFormat {
    Avif,
    Webp,
}

impl VariantFormat {
    pub const ALL: [VariantFormat; 2] = [VariantFormat::Avif, VariantFormat::Webp];

    pub fn mime(self) -> &'static str {
        match self {
            Self::Avif => "image/avif",
            Self::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Avif => "avif",
            Self::Webp => "webp",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Avif => "AVIF",
            Self::Webp => "WebP",
        }
    }
}

/// One encoded variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedVariant {
    pub format: VariantFormat,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// Everything the build writes for one raster image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedImage {
    pub width: u32,
    pub height: u32,
    /// The original, losslessly optimised where we can (never larger).
    pub original: Vec<u8>,
    pub variants: Vec<EncodedVariant>,
    /// Why the original kept its bytes, when it did for a reason worth saying.
    pub note: Option<String>,
}

/// The widths to encode an image `width` pixels wide at: the configured ones
/// that are narrower, and its own.
pub fn variant_widths(configured: &[u32], width: u32) -> Vec<u32> {
    let mut widths: Vec<u32> = configured
        .iter()
        .copied()
        .filter(|w| *w > 0 && *w < width)
        .collect();
    widths.push(width);
    widths.sort_unstable();
    widths.dedup();
    widths
}

/// Encodes one image. `Err` names what failed (undecodable input, an
/// encoder error); the caller then copies the file as it was.
pub fn encode_image(
    bytes: &[u8],
    kind: RasterKind,
    settings: &ImageSettings,
) -> Result<EncodedImage, String> {
    let format = match kind {
        RasterKind::Png => ImageFormat::Png,
        RasterKind::Jpeg => ImageFormat::Jpeg,
    };
    let decoded = image::load_from_memory_with_format(bytes, format)
        .map_err(|err| format!("cannot decode {}: {err}", kind.label()))?;
    let (width, height) = (decoded.width(), decoded.height());
    if width == 0 || height == 0 {
        return Err("image has no pixels".into());
    }
    let (original, note) = match kind {
        RasterKind::Png => (optimise_png(bytes, settings.png_level)?, None),
        RasterKind::Jpeg => optimise_jpeg(bytes)?,
    };
    let rgba = decoded.to_rgba8();
    let opaque = rgba.pixels().all(|p| p.0[3] == u8::MAX);
    let mut variants = Vec::new();
    for target_width in variant_widths(&settings.widths, width) {
        let scaled = scale(&rgba, &decoded, target_width);
        let (w, h) = scaled.dimensions();
        let pixels = if opaque {
            DynamicImage::ImageRgba8(scaled.clone())
                .to_rgb8()
                .into_raw()
        } else {
            scaled.clone().into_raw()
        };
        for variant_format in VariantFormat::ALL {
            let encoded = match variant_format {
                VariantFormat::Avif => encode_avif(&pixels, w, h, opaque, settings)?,
                VariantFormat::Webp => encode_webp(&pixels, w, h, opaque, settings)?,
            };
            variants.push(EncodedVariant {
                format: variant_format,
                width: w,
                height: h,
                bytes: encoded,
            });
        }
    }
    variants.sort_by_key(|v| (v.format, v.width));
    Ok(EncodedImage {
        width,
        height,
        original,
        variants,
        note,
    })
}

/// libjpeg-turbo's lossless re-encoding (what `jpegtran -optimize
/// -progressive -copy icc` does, keeping an Exif orientation too); the input
/// bytes when they are already smaller or the decoder warned.
fn optimise_jpeg(bytes: &[u8]) -> Result<(Vec<u8>, Option<String>), String> {
    match sys::jpeg_optimise(bytes)? {
        Some(optimised) if optimised.len() < bytes.len() => Ok((optimised, None)),
        Some(_) => Ok((bytes.to_vec(), None)),
        None => Ok((
            bytes.to_vec(),
            Some("JPEG kept byte for byte (the decoder reports damaged data)".into()),
        )),
    }
}

/// oxipng at `level`, metadata that does not affect rendering stripped; the
/// input bytes when they are already smaller.
fn optimise_png(bytes: &[u8], level: u8) -> Result<Vec<u8>, String> {
    let mut options = oxipng::Options::from_preset(level.min(6));
    options.strip = oxipng::StripChunks::Safe;
    let optimised =
        oxipng::optimize_from_memory(bytes, &options).map_err(|err| format!("oxipng: {err}"))?;
    Ok(if optimised.len() < bytes.len() {
        optimised
    } else {
        bytes.to_vec()
    })
}

fn scale(rgba: &RgbaImage, decoded: &DynamicImage, target_width: u32) -> RgbaImage {
    if target_width >= decoded.width() {
        return rgba.clone();
    }
    let target_height = ((u64::from(decoded.height()) * u64::from(target_width)
        + u64::from(decoded.width()) / 2)
        / u64::from(decoded.width()))
    .max(1);
    let target_height = u32::try_from(target_height).unwrap_or(u32::MAX);
    image::imageops::resize(rgba, target_width, target_height, FilterType::Lanczos3)
}

/// libavif's quality scale (1.0 and later) on the quantizer 0.11 takes.
fn avif_quantizer(quality: u8) -> u8 {
    let quality = u32::from(quality.clamp(1, 100));
    u8::try_from(((100 - quality) * 63 + 50) / 100).unwrap_or(63)
}

fn encode_avif(
    pixels: &[u8],
    width: u32,
    height: u32,
    opaque: bool,
    settings: &ImageSettings,
) -> Result<Vec<u8>, String> {
    // One thread per encode (in the shim): the build already encodes images
    // in parallel.
    sys::avif_encode(
        pixels,
        width,
        height,
        if opaque { 3 } else { 4 },
        avif_quantizer(settings.avif_quality),
        settings.avif_speed.min(10),
        settings.avif_yuv444,
    )
    .map_err(|err| format!("AVIF: {err}"))
}

fn encode_webp(
    pixels: &[u8],
    width: u32,
    height: u32,
    opaque: bool,
    settings: &ImageSettings,
) -> Result<Vec<u8>, String> {
    sys::webp_encode(
        pixels,
        width,
        height,
        if opaque { 3 } else { 4 },
        settings.webp_quality,
        settings.webp_lossless,
    )
    .map_err(|err| format!("WebP: {err}"))
}

/// The source image decoded and scaled to `width` as the build scales it for
/// a variant (RGBA8): what a variant is compared against.
pub fn reference_rgba(bytes: &[u8], width: u32) -> Result<Vec<u8>, String> {
    let decoded = image::load_from_memory(bytes).map_err(|err| format!("cannot decode: {err}"))?;
    let rgba = decoded.to_rgba8();
    Ok(scale(&rgba, &decoded, width).into_raw())
}

/// Peak signal-to-noise ratio (dB) of two RGBA8 buffers of one size, over
/// the colour channels composited onto white (so fully transparent pixels
/// whose colour is invisible do not count); `None` when the sizes differ.
/// 99 dB for identical images.
pub fn psnr_rgba(reference: &[u8], candidate: &[u8]) -> Option<f64> {
    if reference.len() != candidate.len() || reference.len() % 4 != 0 || reference.is_empty() {
        return None;
    }
    let on_white = |p: &[u8], c: usize| {
        let alpha = f64::from(p[3]) / 255.0;
        f64::from(p[c]) * alpha + 255.0 * (1.0 - alpha)
    };
    let mut squared = 0.0;
    for (a, b) in reference.chunks_exact(4).zip(candidate.chunks_exact(4)) {
        for c in 0..3 {
            let d = on_white(a, c) - on_white(b, c);
            squared += d * d;
        }
    }
    let mse = squared / (reference.len() / 4 * 3) as f64;
    Some(if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageEncoder;

    fn hero() -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../www/images/hero.png");
        std::fs::read(path).expect("www/images/hero.png")
    }

    /// Full width only: what the quality figures in docs/assets.md compare.
    fn full_width_only() -> ImageSettings {
        ImageSettings {
            widths: Vec::new(),
            ..ImageSettings::default()
        }
    }

    /// PSNR (dB) and size of the hero encoded at full width in `format`.
    fn hero_variant(format: VariantFormat, settings: &ImageSettings) -> (f64, usize) {
        let png = hero();
        let rgb = image::load_from_memory(&png).expect("hero").to_rgb8();
        let (width, height) = rgb.dimensions();
        let bytes = match format {
            VariantFormat::Avif => encode_avif(rgb.as_raw(), width, height, true, settings),
            VariantFormat::Webp => encode_webp(rgb.as_raw(), width, height, true, settings),
        }
        .expect("encoded");
        let (w, h, pixels) = decode_rgba(&bytes).expect("decodes");
        assert_eq!((w, h), (width, height));
        let reference = reference_rgba(&png, width).expect("source");
        (
            psnr_rgba(&reference, &pixels).expect("same size"),
            bytes.len(),
        )
    }

    #[test]
    fn default_avif_and_webp_are_a_fraction_of_the_png_and_stay_close_to_it() {
        let png_bytes = hero().len();
        let settings = ImageSettings::default();
        for (format, min_db) in [(VariantFormat::Avif, 42.0), (VariantFormat::Webp, 38.0)] {
            let (db, bytes) = hero_variant(format, &settings);
            assert!(
                bytes * 4 < png_bytes,
                "{format:?}: {bytes} bytes of {png_bytes}"
            );
            assert!(db >= min_db, "{format:?}: {db:.2} dB");
        }
    }

    #[test]
    fn a_higher_avif_quality_is_closer_to_the_source_and_larger() {
        let at = |avif_quality| {
            hero_variant(
                VariantFormat::Avif,
                &ImageSettings {
                    avif_quality,
                    ..ImageSettings::default()
                },
            )
        };
        let (low_db, low_bytes) = at(30);
        let (high_db, high_bytes) = at(80);
        assert!(high_bytes > low_bytes && high_db > low_db + 3.0);
    }

    /// A baseline JPEG as simple encoders write it (standard Huffman tables),
    /// with `segments` inserted after SOI.
    fn jpeg_with(segments: &[(u8, &[u8])]) -> (Vec<u8>, Vec<u8>) {
        // A corner of the hero: `image`'s JPEG encoder is slow unoptimised.
        let decoded = image::load_from_memory(&hero()).expect("hero").to_rgb8();
        let corner = image::imageops::crop_imm(&decoded, 0, 0, 320, 200).to_image();
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
            .write_image(corner.as_raw(), 320, 200, image::ExtendedColorType::Rgb8)
            .expect("jpeg");
        let mut with = jpeg[..2].to_vec();
        for (marker, payload) in segments {
            with.extend_from_slice(&[0xFF, *marker]);
            with.extend_from_slice(
                &u16::try_from(payload.len() + 2)
                    .expect("short")
                    .to_be_bytes(),
            );
            with.extend_from_slice(payload);
        }
        with.extend_from_slice(&jpeg[2..]);
        let pixels = image::load_from_memory(&with)
            .expect("decodes")
            .to_rgb8()
            .into_raw();
        (with, pixels)
    }

    /// The markers before the first scan, with their payloads.
    fn header_segments(jpeg: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut segments = Vec::new();
        let mut at = 2;
        while at + 4 <= jpeg.len() && jpeg[at] == 0xFF && jpeg[at + 1] != 0xDA {
            let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
            segments.push((jpeg[at + 1], jpeg[at + 4..at + 2 + len].to_vec()));
            at += 2 + len;
        }
        segments
    }

    /// A big-endian Exif block with one tag: Orientation = `orientation`.
    fn exif(orientation: u8) -> Vec<u8> {
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01".to_vec();
        exif.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0]);
        exif.extend_from_slice(&[0, 0, 0, 0]);
        exif
    }

    #[test]
    fn jpeg_originals_are_re_encoded_losslessly_smaller_without_invisible_metadata() {
        let icc = b"ICC_PROFILE\0\x01\x01not a real profile".as_slice();
        let xmp = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>".as_slice();
        let comment = b"made by a camera".as_slice();
        let (jpeg, pixels) = jpeg_with(&[(0xE2, icc), (0xE1, xmp), (0xFE, comment)]);
        let encoded = encode_image(&jpeg, RasterKind::Jpeg, &full_width_only()).expect("encoded");
        assert_eq!(encoded.note, None);
        assert!(
            encoded.original.len() < jpeg.len(),
            "{} of {}",
            encoded.original.len(),
            jpeg.len()
        );
        let again = image::load_from_memory(&encoded.original).expect("decodes");
        assert!(again.to_rgb8().into_raw() == pixels, "pixels changed");
        let kept = header_segments(&encoded.original);
        assert!(kept.iter().any(|(m, p)| *m == 0xE2 && p == icc), "ICC kept");
        assert!(
            !kept.iter().any(|(m, _)| *m == 0xE1 || *m == 0xFE),
            "XMP and comment dropped"
        );
        // Progressive (SOF2) with the same coefficients.
        assert!(kept.iter().any(|(m, _)| *m == 0xC2));
    }

    #[test]
    fn a_jpeg_keeps_its_exif_only_when_it_rotates_the_image() {
        let rotated = exif(6);
        let (jpeg, _) = jpeg_with(&[(0xE1, &rotated)]);
        let encoded = encode_image(&jpeg, RasterKind::Jpeg, &full_width_only()).expect("encoded");
        let kept = header_segments(&encoded.original);
        assert!(kept.iter().any(|(m, p)| *m == 0xE1 && *p == rotated));

        let (jpeg, _) = jpeg_with(&[(0xE1, &exif(1))]);
        let encoded = encode_image(&jpeg, RasterKind::Jpeg, &full_width_only()).expect("encoded");
        assert!(!header_segments(&encoded.original)
            .iter()
            .any(|(m, _)| *m == 0xE1));
    }

    #[test]
    fn a_damaged_jpeg_is_not_re_encoded() {
        let (jpeg, _) = jpeg_with(&[]);
        // Cut inside the scan: decoders warn (premature end of data).
        let cut = &jpeg[..jpeg.len() * 2 / 3];
        let encoded = encode_image(cut, RasterKind::Jpeg, &full_width_only()).expect("decodes");
        assert_eq!(encoded.original, cut);
        assert!(encoded.note.is_some_and(|n| n.contains("damaged")));
    }
}
