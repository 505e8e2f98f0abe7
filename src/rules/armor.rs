//! Cache deception armor: a response a rule caches because of its path
//! (an `everything` rule, or a rule's edge TTL) is stored only when its
//! `Content-Type` fits the path's extension. `/account/settings.php/x.css`
//! answered with the account page as `text/html` is served but never
//! stored, so a victim's private page cannot be planted in the cache by
//! luring them to a URL that looks static.

/// The media types an extension may be served as. Extensions not listed
/// here are not judged.
fn expected(ext: &str) -> Option<&'static [&'static str]> {
    Some(match ext {
        "css" => &["text/css"],
        "js" | "mjs" => &[
            "text/javascript",
            "application/javascript",
            "application/x-javascript",
            "application/ecmascript",
        ],
        "json" | "map" => &["application/json"],
        "webmanifest" => &["application/manifest+json", "application/json"],
        "png" => &["image/png"],
        "jpg" | "jpeg" => &["image/jpeg"],
        "gif" => &["image/gif"],
        "webp" => &["image/webp"],
        "avif" => &["image/avif"],
        "svg" => &["image/svg+xml"],
        "ico" => &["image/x-icon", "image/vnd.microsoft.icon"],
        "woff" => &["font/woff", "application/font-woff"],
        "woff2" => &["font/woff2"],
        "ttf" => &["font/ttf", "application/x-font-ttf"],
        "otf" => &["font/otf"],
        "txt" => &["text/plain"],
        "xml" => &["application/xml", "text/xml"],
        "pdf" => &["application/pdf"],
        "mp4" => &["video/mp4"],
        "webm" => &["video/webm"],
        "mp3" => &["audio/mpeg"],
        "wasm" => &["application/wasm"],
        "html" | "htm" => &["text/html"],
        _ => return None,
    })
}

/// Whether a response may be stored for a path with extension `ext` given
/// its `Content-Type` (parameters ignored). A known extension without a
/// `Content-Type` is refused.
pub fn armor_allows(ext: Option<&str>, content_type: Option<&str>) -> bool {
    let Some(allowed) = ext.and_then(|e| expected(&e.to_ascii_lowercase())) else {
        return true;
    };
    let Some(content_type) = content_type else {
        return false;
    };
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    allowed.contains(&media.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_behind_a_static_looking_path_is_refused() {
        assert!(!armor_allows(Some("css"), Some("text/html; charset=utf-8")));
        assert!(!armor_allows(Some("JS"), Some("application/json")));
        assert!(!armor_allows(Some("png"), None));
    }

    #[test]
    fn matching_types_and_unknown_extensions_pass() {
        assert!(armor_allows(Some("css"), Some("text/css; charset=utf-8")));
        assert!(armor_allows(Some("mjs"), Some("text/javascript")));
        assert!(armor_allows(Some("JPG"), Some("IMAGE/JPEG")));
        assert!(armor_allows(Some("php"), Some("text/html")));
        assert!(armor_allows(None, Some("text/html")));
    }
}
