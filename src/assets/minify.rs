//! JavaScript minification with oxc (parser, minifier, code generator), shared
//! by the build and the edge. CSS minification is not here: the CLI uses
//! lightningcss, which would add ~3 MB to the worker's wasm.
//!
//! oxc replaced minify-js 0.6.0, which panicked on most real code and changed
//! the behaviour of the rest (docs/assets.md). Correctness is checked on real
//! libraries by `tests/minify/`. The options are chosen for safety on code we
//! did not write: legal comments (`/*! … */`, `@license`) are kept, `debugger`
//! and `console` stay, and a classic script's top-level names are never
//! renamed or dropped, because other scripts on the page may use them.

use oxc_allocator::Allocator;
use oxc_codegen::{Codegen, CodegenOptions, CommentOptions, LegalComment};
use oxc_minifier::{CompressOptions, MangleOptions, Minifier, MinifierOptions};
use oxc_parser::Parser;
use oxc_span::SourceType;

/// How the source is loaded, which decides whether top-level names may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsKind {
    /// A classic `<script>`: top-level declarations are globals other scripts
    /// may use, so they keep their names.
    Script,
    /// An ES module: its scope is private, so top-level names are minified too.
    Module,
}

/// The source could not be parsed; the caller keeps the original bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JavaScript syntax error at byte {offset}: {message}")]
pub struct JsMinifyError {
    pub offset: usize,
    pub message: String,
}

/// Minifies UTF-8 JavaScript. Output may rarely be longer than the input
/// (e.g. already-minified code); callers decide whether to keep it.
pub fn minify_js(source: &[u8], kind: JsKind) -> Result<Vec<u8>, JsMinifyError> {
    let text = std::str::from_utf8(source).map_err(|err| JsMinifyError {
        offset: err.valid_up_to(),
        message: "not UTF-8".to_owned(),
    })?;
    let allocator = Allocator::default();
    let parsed = Parser::new(&allocator, text, source_type(kind)).parse();
    if let Some(diagnostic) = parsed.diagnostics.iter().next() {
        return Err(JsMinifyError {
            offset: diagnostic
                .labels
                .first()
                .map_or(0, |label| label.offset() as usize),
            message: diagnostic.message.to_string(),
        });
    }
    if parsed.panicked {
        return Err(JsMinifyError {
            offset: 0,
            message: "parser gave up".to_owned(),
        });
    }
    let mut program = parsed.program;
    let minified = Minifier::new(minifier_options(kind)).minify(&allocator, &mut program);
    let code = Codegen::new()
        .with_options(codegen_options())
        .with_scoping(minified.scoping)
        .build(&program)
        .code;
    Ok(code.into_bytes())
}

fn source_type(kind: JsKind) -> SourceType {
    match kind {
        JsKind::Script => SourceType::script(),
        JsKind::Module => SourceType::mjs(),
    }
}

fn minifier_options(kind: JsKind) -> MinifierOptions {
    MinifierOptions {
        mangle: Some(MangleOptions {
            top_level: Some(kind == JsKind::Module),
            ..MangleOptions::default()
        }),
        mangle_properties: None,
        compress: Some(CompressOptions {
            // esbuild's defaults: keep `debugger;` like `console.*`.
            drop_debugger: false,
            ..CompressOptions::smallest()
        }),
    }
}

fn codegen_options() -> CodegenOptions {
    CodegenOptions {
        comments: CommentOptions {
            legal: LegalComment::Inline,
            ..CommentOptions::disabled()
        },
        ..CodegenOptions::minify()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minified(source: &str, kind: JsKind) -> String {
        let out = minify_js(source.as_bytes(), kind).expect("valid JavaScript");
        String::from_utf8(out).expect("UTF-8 output")
    }

    #[test]
    fn script_keeps_top_level_names_and_module_renames_them() {
        let source = "function greet(name) { var message = 'hi ' + name; return message; }";
        let script = minified(source, JsKind::Script);
        assert!(script.contains("greet"), "{script}");
        assert!(!script.contains("message"), "{script}");
        assert!(script.len() < source.len());
        let module = minified(
            "function greet(name) { return 'hi ' + name; } export { greet as hello };",
            JsKind::Module,
        );
        assert!(!module.contains("greet"), "{module}");
        assert!(module.contains("hello"), "{module}");
    }

    #[test]
    fn unused_top_level_declarations_of_a_script_are_kept() {
        let script = minified(
            "function unused() { return 1; } var alsoUnused = 2;",
            JsKind::Script,
        );
        assert!(
            script.contains("unused") && script.contains("alsoUnused"),
            "{script}"
        );
    }

    #[test]
    fn legal_comments_are_kept() {
        let script = minified("/*! lib v1 | MIT */\nvar x = 1; // gone\n", JsKind::Script);
        assert!(script.contains("/*! lib v1 | MIT */"), "{script}");
        assert!(!script.contains("gone"), "{script}");
    }

    #[test]
    fn constructor_functions_stay_constructible() {
        let script = minified(
            "function Point(x) { this.x = x; } Point.prototype.get = function () { return arguments.length + this.x; };",
            JsKind::Script,
        );
        assert!(script.contains("function Point"), "{script}");
        assert!(script.contains("this.x"), "{script}");
    }

    #[test]
    fn output_is_the_same_on_every_run() {
        let source = (0..8)
            .map(|i| format!("function f{i}() {{ return {i}; }}"))
            .collect::<String>();
        let first = minified(&source, JsKind::Script);
        for _ in 0..5 {
            assert_eq!(minified(&source, JsKind::Script), first);
        }
    }

    #[test]
    fn syntax_errors_are_reported_with_their_offset() {
        let err = minify_js(b"var a = 1;\nfunction (", JsKind::Script).expect_err("invalid");
        assert!(!err.message.is_empty());
        assert!(err.offset >= 11, "{err}");
    }

    #[test]
    fn non_utf8_input_is_an_error() {
        let err = minify_js(b"var a = '\xff';", JsKind::Script).expect_err("not UTF-8");
        assert_eq!(err.offset, 9);
    }
}
