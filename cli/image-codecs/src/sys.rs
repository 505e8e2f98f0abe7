//! Safe wrappers over `shim.c`, the only code of the workspace that calls C
//! directly: AVIF (libavif), WebP (libwebp) and lossless JPEG re-encoding
//! (libjpeg-turbo), from the system's libraries. Every wrapper takes slices,
//! checks their sizes before C sees them, and copies the C-allocated result
//! into a `Vec` before freeing it.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_float, c_int, c_void, CStr};

extern "C" {
    fn cf_free(ptr: *mut c_void);
    fn cf_avif_error(code: c_int) -> *const c_char;
    fn cf_avif_versions(out: *mut c_char);
    fn cf_avif_encode(
        pixels: *const u8,
        width: u32,
        height: u32,
        channels: c_int,
        quantizer: c_int,
        speed: c_int,
        yuv444: c_int,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> c_int;
    fn cf_avif_decode_rgba(
        data: *const u8,
        size: usize,
        out: *mut *mut u8,
        width: *mut u32,
        height: *mut u32,
    ) -> c_int;
    fn cf_webp_encode(
        pixels: *const u8,
        width: u32,
        height: u32,
        channels: c_int,
        quality: c_float,
        lossless: c_int,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> c_int;
    fn cf_webp_decode_rgba(
        data: *const u8,
        size: usize,
        out: *mut *mut u8,
        width: *mut u32,
        height: *mut u32,
    ) -> c_int;
    fn cf_jpeg_optimise(
        data: *const u8,
        size: usize,
        out: *mut *mut u8,
        out_len: *mut usize,
    ) -> c_int;
}

/// Takes ownership of a buffer the shim allocated.
fn take(ptr: *mut u8, len: usize) -> Vec<u8> {
    if ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the shim returned `ptr` with `len` initialised bytes, malloc'ed
    // for us; it is freed once, right after the copy.
    let bytes = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
    unsafe { cf_free(ptr.cast()) };
    bytes
}

/// `channels` × `width` × `height` bytes, or an error naming the mismatch.
fn check_pixels(pixels: &[u8], width: u32, height: u32, channels: usize) -> Result<(), String> {
    let expected = (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(channels));
    if width == 0 || height == 0 || !matches!(channels, 3 | 4) || expected != Some(pixels.len()) {
        return Err(format!(
            "{} bytes are not {width}x{height} pixels of {channels} channels",
            pixels.len()
        ));
    }
    Ok(())
}

/// The AV1 encoders the system's libavif was built with, e.g.
/// `dav1d [dec]:1.0.0, aom [enc/dec]:3.6.0, …`.
pub fn avif_codec_versions() -> String {
    let mut buffer = [0 as c_char; 256];
    // SAFETY: avifCodecVersions writes a NUL-terminated string of at most 256 bytes.
    unsafe { cf_avif_versions(buffer.as_mut_ptr()) };
    // SAFETY: NUL-terminated within the buffer (above).
    unsafe { CStr::from_ptr(buffer.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// AVIF of 8-bit RGB or RGBA pixels; `quantizer` 0 (best) – 63, `speed` 0–10.
pub fn avif_encode(
    pixels: &[u8],
    width: u32,
    height: u32,
    channels: usize,
    quantizer: u8,
    speed: u8,
    yuv444: bool,
) -> Result<Vec<u8>, String> {
    check_pixels(pixels, width, height, channels)?;
    let (mut out, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: `pixels` holds width × height × channels bytes (checked); the
    // shim only reads them and writes `out`/`len`.
    let code = unsafe {
        cf_avif_encode(
            pixels.as_ptr(),
            width,
            height,
            channels as c_int,
            c_int::from(quantizer.min(63)),
            c_int::from(speed.min(10)),
            c_int::from(yuv444),
            &mut out,
            &mut len,
        )
    };
    if code != 0 {
        // SAFETY: avifResultToString returns a static NUL-terminated string.
        let reason = unsafe { CStr::from_ptr(cf_avif_error(code)) }.to_string_lossy();
        return Err(format!("libavif: {reason}"));
    }
    Ok(take(out, len))
}

/// Lossy (`quality` 0–100) or lossless WebP of 8-bit RGB or RGBA pixels.
pub fn webp_encode(
    pixels: &[u8],
    width: u32,
    height: u32,
    channels: usize,
    quality: f32,
    lossless: bool,
) -> Result<Vec<u8>, String> {
    check_pixels(pixels, width, height, channels)?;
    if width > 16383 || height > 16383 {
        return Err("WebP images are at most 16383 pixels on a side".into());
    }
    let (mut out, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: as in `avif_encode`.
    let code = unsafe {
        cf_webp_encode(
            pixels.as_ptr(),
            width,
            height,
            channels as c_int,
            quality.clamp(0.0, 100.0),
            c_int::from(lossless),
            &mut out,
            &mut len,
        )
    };
    if code != 0 {
        return Err("libwebp could not encode the image".into());
    }
    Ok(take(out, len))
}

/// The same JPEG with optimal Huffman tables and progressive scans, keeping
/// only metadata that changes how it looks (ICC profile, Exif orientation).
/// `Ok(None)` when the input decodes with warnings (damaged): keep it as is.
pub fn jpeg_optimise(data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let (mut out, mut len) = (std::ptr::null_mut(), 0usize);
    // SAFETY: the shim reads `data.len()` bytes of `data` and writes `out`/`len`.
    let code = unsafe { cf_jpeg_optimise(data.as_ptr(), data.len(), &mut out, &mut len) };
    match code {
        0 => Ok(Some(take(out, len))),
        2 => Ok(None),
        _ => Err("libjpeg could not read the JPEG".into()),
    }
}

/// Decoded RGBA8 of an AVIF or WebP (tests and measurements).
pub fn decode_rgba(data: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let (mut out, mut width, mut height) = (std::ptr::null_mut(), 0u32, 0u32);
    let is_webp = data.len() >= 12 && &data[8..12] == b"WEBP";
    // SAFETY: the shim reads `data.len()` bytes and writes out/width/height.
    let code = unsafe {
        if is_webp {
            cf_webp_decode_rgba(data.as_ptr(), data.len(), &mut out, &mut width, &mut height)
        } else {
            cf_avif_decode_rgba(data.as_ptr(), data.len(), &mut out, &mut width, &mut height)
        }
    };
    if code != 0 {
        return Err(format!("cannot decode ({code})"));
    }
    let len = width as usize * height as usize * 4;
    Ok((width, height, take(out, len)))
}
