//! CSS minification with lightningcss. Native only: it is kept out of the
//! worker crate because it adds ~3 MB to the wasm.

use lightningcss::stylesheet::{MinifyOptions, ParserOptions, PrinterOptions, StyleSheet};

/// Minifies one stylesheet; `filename` only labels error messages. Parse
/// errors are errors (no recovery), so a file lightningcss does not fully
/// understand is kept as written rather than silently trimmed.
pub fn minify_css(source: &str, filename: &str) -> Result<String, String> {
    let options = ParserOptions {
        filename: filename.to_owned(),
        ..ParserOptions::default()
    };
    let mut sheet = StyleSheet::parse(source, options).map_err(|err| err.to_string())?;
    sheet
        .minify(MinifyOptions::default())
        .map_err(|err| err.to_string())?;
    let printed = sheet
        .to_css(PrinterOptions {
            minify: true,
            ..PrinterOptions::default()
        })
        .map_err(|err| err.to_string())?;
    Ok(printed.code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minifies_and_keeps_references() {
        let css = "@import url(\"/css/base.css\");\nbody {\n  color: #ff0000;\n  background: url('/a.png');\n}\n";
        let out = minify_css(css, "site.css").expect("valid css");
        assert!(out.len() < css.len());
        assert!(
            out.contains("/css/base.css") && out.contains("/a.png"),
            "{out}"
        );
    }

    #[test]
    fn invalid_css_is_an_error() {
        assert!(minify_css("a { color: red; } }}} @media {", "bad.css").is_err());
    }
}
