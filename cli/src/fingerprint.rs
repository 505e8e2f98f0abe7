//! Content fingerprints: the short hash that goes into a file name and the
//! Subresource Integrity value for the same bytes.

use base64::Engine;
use sha2::{Digest, Sha256, Sha384};

/// Hex digits of SHA-256 kept in a file name: 32 bits, ample to tell apart
/// the versions of one file, short enough to read.
pub const HASH_HEX_LEN: usize = 8;

/// The short content hash put into fingerprinted names.
pub fn content_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(HASH_HEX_LEN);
    for byte in digest.iter().take(HASH_HEX_LEN / 2) {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// `sha384-<base64>`, the value of an `integrity` attribute.
pub fn integrity(bytes: &[u8]) -> String {
    let digest = Sha384::digest(bytes);
    format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// `/css/site.css` + hash → `/css/site.<hash>.css`; the hash goes before the
/// last extension so the type stays recognisable (`jquery.min.<hash>.js`).
pub fn fingerprinted_path(logical_path: &str, hash: &str) -> String {
    let (dir, name) = match logical_path.rfind('/') {
        Some(slash) => logical_path.split_at(slash + 1),
        None => ("", logical_path),
    };
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{dir}{}.{hash}{}", &name[..dot], &name[dot..]),
        _ => format!("{dir}{name}.{hash}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_goes_before_the_last_extension() {
        assert_eq!(
            fingerprinted_path("/css/site.css", "0a1b2c3d"),
            "/css/site.0a1b2c3d.css"
        );
        assert_eq!(
            fingerprinted_path("/js/jquery.min.js", "0a1b2c3d"),
            "/js/jquery.min.0a1b2c3d.js"
        );
        assert_eq!(
            fingerprinted_path("/LICENSE", "0a1b2c3d"),
            "/LICENSE.0a1b2c3d"
        );
        assert_eq!(
            fingerprinted_path("/.hidden", "0a1b2c3d"),
            "/.hidden.0a1b2c3d"
        );
    }

    #[test]
    fn hashes_are_the_standard_digests() {
        assert_eq!(content_hash(b"abc"), "ba7816bf");
        assert_eq!(
            integrity(b"abc"),
            "sha384-ywB1P0WjXou1oD1pmsZQBycsMqsO3tFjGotgWkP/W+2AhgcroefMI1i67KE0yCWn"
        );
    }
}
