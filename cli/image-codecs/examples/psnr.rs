//! How close encoded variants are to their source: PSNR (dB, RGB over every
//! pixel, alpha-weighted onto white) of each AVIF/WebP given against the PNG
//! or JPEG given first, resized to the variant's width as the build does.
//! `cargo run -p cachefront-image-codecs --example psnr -- src.png a.avif b.webp …`
//! (docs/assets.md: the encoder comparison).

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let source = args.next().ok_or("usage: psnr <source> <variant>…")?;
    let source = std::fs::read(&source).map_err(|e| format!("{source}: {e}"))?;
    for path in args {
        let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
        let (width, height, pixels) = cachefront_image_codecs::decode_rgba(&bytes)?;
        let reference = cachefront_image_codecs::reference_rgba(&source, width)?;
        let db = cachefront_image_codecs::psnr_rgba(&reference, &pixels).ok_or(format!(
            "{path}: {width}x{height} differs from the source's size"
        ))?;
        println!("{db:6.2} dB  {:>7} B  {path}", bytes.len());
    }
    Ok(())
}
