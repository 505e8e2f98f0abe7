//! The encoders of `cachefront build`'s image pipeline, in a crate of their
//! own: one raster image in, its build outputs out: the losslessly optimised
//! original (oxipng for PNG; JPEG bytes as given) and AVIF (rav1e through
//! `image`/ravif) and lossy WebP (libwebp) variants at the configured widths
//! that are not wider than the image. Pure apart from CPU time: same bytes and
//! settings, same outputs.
//!
//! Why a crate: ravif's entry points are `#[inline]` and generic inside, so
//! rav1e's whole encoder is compiled into whichever crate calls it. Called
//! from the CLI crate (opt-level 0 in dev and test builds) AVIF took ~50x
//! longer; called from here, which the workspace builds at opt-level 3 even in
//! dev (root Cargo.toml), it runs at release speed. Tests: `cli/src/images`.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ExtendedColorType, ImageEncoder, ImageFormat, RgbaImage};
use serde::{Deserialize, Serialize};

/// The encodings and widths the build makes. Part of the cache key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSettings {
    /// Candidate widths in pixels; each image gets those not wider than
    /// itself, plus its own width (never upscaled).
    pub widths: Vec<u32>,
    /// AVIF quality, 1–100 (ravif's scale).
    pub avif_quality: u8,
    /// rav1e speed, 1 (slowest, smallest) – 10.
    pub avif_speed: u8,
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
            avif_quality: 60,
            avif_speed: 8,
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
        RasterKind::Jpeg => (
            bytes.to_vec(),
            Some("JPEG kept byte for byte (no lossless JPEG optimiser in the build)".into()),
        ),
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

fn encode_avif(
    pixels: &[u8],
    width: u32,
    height: u32,
    opaque: bool,
    settings: &ImageSettings,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    // One thread per encode: the build already encodes images in parallel.
    let encoder = image::codecs::avif::AvifEncoder::new_with_speed_quality(
        Cursor::new(&mut out),
        settings.avif_speed.clamp(1, 10),
        settings.avif_quality.clamp(1, 100),
    )
    .with_num_threads(Some(1));
    let color = if opaque {
        ExtendedColorType::Rgb8
    } else {
        ExtendedColorType::Rgba8
    };
    encoder
        .write_image(pixels, width, height, color)
        .map_err(|err| format!("AVIF: {err}"))?;
    Ok(out)
}

fn encode_webp(
    pixels: &[u8],
    width: u32,
    height: u32,
    opaque: bool,
    settings: &ImageSettings,
) -> Result<Vec<u8>, String> {
    let encoder = if opaque {
        webp::Encoder::from_rgb(pixels, width, height)
    } else {
        webp::Encoder::from_rgba(pixels, width, height)
    };
    encoder
        .encode_simple(
            settings.webp_lossless,
            settings.webp_quality.clamp(0.0, 100.0),
        )
        .map(|memory| memory.to_vec())
        .map_err(|err| format!("WebP: {err:?}"))
}
