//! JavaScript minification with `minify-js`, callable from the build and the
//! edge alike. CSS minification is not here: the CLI uses lightningcss, which
//! would add ~3 MB to the worker's wasm.
//!
//! minify-js 0.6.0 is not safe on arbitrary code (see docs/assets.md and
//! tests/minify/): it rewrites `function` declarations that use `this` or
//! `arguments` into arrow functions, which changes what they do; it orders
//! hoisted functions differently from run to run; and it panics on an
//! `if`/`else` where neither branch returns — on wasm32 a panic traps the
//! whole isolate. Callers must treat its output as untrusted until a fixed
//! release passes the library tests.

use minify_js::{Session, TopLevelMode};

/// How the source is loaded, which decides whether top-level names may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsKind {
    /// A classic `<script>`: top-level declarations are globals other scripts
    /// may use, so they keep their names.
    Script,
    /// An ES module: its scope is private, so top-level names are minified too.
    Module,
}

/// The parser rejected the source; the caller keeps the original bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JavaScript syntax error at byte {offset}: {message}")]
pub struct JsMinifyError {
    pub offset: usize,
    pub message: String,
}

/// Minifies UTF-8 JavaScript. Output may rarely be longer than the input
/// (e.g. already-minified code); callers decide whether to keep it.
pub fn minify_js(source: &[u8], kind: JsKind) -> Result<Vec<u8>, JsMinifyError> {
    let mode = match kind {
        JsKind::Script => TopLevelMode::Global,
        JsKind::Module => TopLevelMode::Module,
    };
    let session = Session::new();
    let mut output = Vec::with_capacity(source.len() / 2);
    minify_js::minify(&session, mode, source, &mut output).map_err(|err| JsMinifyError {
        offset: err.source.start(),
        message: err.to_string(),
    })?;
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_keeps_top_level_names_and_module_renames_them() {
        let source = b"function greet(name) { var message = 'hi ' + name; return message; }";
        let script = minify_js(source, JsKind::Script).expect("valid script");
        let text = String::from_utf8_lossy(&script);
        assert!(text.contains("greet"), "{text}");
        assert!(!text.contains("message"), "{text}");
        assert!(script.len() < source.len());
    }

    #[test]
    fn syntax_errors_are_reported_not_panicked() {
        let err = minify_js(b"function (", JsKind::Script).expect_err("invalid");
        assert!(err.message.contains("Expected") || !err.message.is_empty());
    }
}
