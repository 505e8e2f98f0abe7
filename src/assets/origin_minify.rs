//! Minifying origin JavaScript at the edge: which responses qualify, and the
//! transform itself. The pipeline calls [`minify_origin_script`] on an origin
//! response before it is cached, so a script is minified once per stored
//! entry (per cache key and content), not once per request.
//!
//! Everything here must fail closed: any doubt — too large, already
//! minified, `no-transform`, not cacheable, a parse error, output no
//! smaller — serves the original bytes. A panic in wasm cannot be caught
//! (it traps the isolate), so input that could make the minifier recurse
//! deeply is refused before it reaches the parser.
//!
//! The minifier itself (oxc) is behind the `js-minify` feature, which the
//! worker's wasm build turns on by default (scripts/build-worker.sh): oxc
//! adds ~520 KB gzip, past the 700 KB budget of the whole worker, and a slim
//! build without it refuses `EDGE_MINIFY_JS=on` in the configuration. CSS is
//! minified by the edge's own small minifier ([`super::css_min`]), not
//! lightningcss, which would cost even more (docs/assets.md).

/// Whether this build can minify JavaScript (feature `js-minify`).
pub const AVAILABLE: bool = cfg!(feature = "js-minify");

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::semantics::cache_control::Directives;
use crate::Body;

/// Default for `EDGE_MINIFY_MAX_BYTES`: larger scripts cost more CPU time
/// than a request should spend, and are usually minified by their build.
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024;

/// Bracket nesting past which the minifier is not run. oxc recurses per
/// nesting level; in wasm a stack overflow traps the isolate. Real code
/// (the libraries in tests/minify/) stays below 40.
pub const MAX_NESTING_DEPTH: usize = 256;

/// Header naming what the edge did with an origin script (kept in the cache
/// with the entry, so hits say it too).
pub static MINIFY_STATUS: header::HeaderName = header::HeaderName::from_static("x-minify");

/// Why an origin script was served as the origin sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinifySkip {
    /// Edge minification is off.
    Disabled,
    /// Not a `200` JavaScript response.
    NotJavaScript,
    /// `Cache-Control: no-transform`.
    NoTransform,
    /// `no-store` or `private`: it would be minified on every request.
    NotCacheable,
    /// `Content-Encoding` other than `identity`.
    Encoded,
    /// Over the configured size.
    TooLarge,
    /// The origin minified it already (`.min.js`, or long lines and little whitespace).
    AlreadyMinified,
    /// Brackets nest deeper than [`MAX_NESTING_DEPTH`].
    TooDeep,
    /// The minifier rejected it (syntax error, not UTF-8).
    Failed,
    /// The output was not smaller.
    NoGain,
}

impl MinifySkip {
    pub fn as_str(self) -> &'static str {
        match self {
            MinifySkip::Disabled => "disabled",
            MinifySkip::NotJavaScript => "not_javascript",
            MinifySkip::NoTransform => "no_transform",
            MinifySkip::NotCacheable => "not_cacheable",
            MinifySkip::Encoded => "encoded",
            MinifySkip::TooLarge => "too_large",
            MinifySkip::AlreadyMinified => "already_minified",
            MinifySkip::TooDeep => "too_deep",
            MinifySkip::Failed => "failed",
            MinifySkip::NoGain => "no_gain",
        }
    }
}

/// What [`minify_origin_script`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MinifyOutcome {
    Minified {
        bytes_in: usize,
        bytes_out: usize,
    },
    /// Served as sent; `detail` explains a [`MinifySkip::Failed`].
    Skipped {
        reason: MinifySkip,
        detail: String,
    },
}

impl MinifyOutcome {
    fn skipped(reason: MinifySkip) -> Self {
        MinifyOutcome::Skipped {
            reason,
            detail: String::new(),
        }
    }

    /// Value of the [`MINIFY_STATUS`] header: `minified` or `skipped; reason=…`.
    pub fn header_value(&self) -> HeaderValue {
        match self {
            MinifyOutcome::Minified { .. } => HeaderValue::from_static("minified"),
            MinifyOutcome::Skipped { reason, .. } => {
                HeaderValue::from_str(&format!("skipped; reason={}", reason.as_str()))
                    .unwrap_or_else(|_| HeaderValue::from_static("skipped"))
            }
        }
    }
}

/// Edge minification settings (from `EDGE_MINIFY_JS`, `EDGE_MINIFY_MAX_BYTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginMinifySettings {
    /// Minify JavaScript (`EDGE_MINIFY_JS`).
    pub enabled: bool,
    /// Minify CSS with [`super::css_min`] (`EDGE_MINIFY_CSS`).
    pub css: bool,
    pub max_bytes: usize,
}

/// What kind of origin text a response is, for minification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Script,
    Stylesheet,
}

/// Whether `Content-Type` is `text/css`.
pub fn is_css(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/css"))
}

fn kind_of(response: &Response<Body>) -> Option<Kind> {
    if response.status() != StatusCode::OK {
        return None;
    }
    if is_javascript(response.headers()) {
        Some(Kind::Script)
    } else if is_css(response.headers()) {
        Some(Kind::Stylesheet)
    } else {
        None
    }
}

/// Whether `Content-Type` names JavaScript (`text/javascript`,
/// `application/javascript`, `application/x-javascript`, `…ecmascript`).
pub fn is_javascript(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    [
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "text/ecmascript",
        "application/ecmascript",
    ]
    .iter()
    .any(|known| essence.eq_ignore_ascii_case(known))
}

/// Heuristic for code a build already minified: a `.min.` file name, or long
/// lines with little whitespace (measured on the first 16 KiB). Minifiers
/// leave ~1–4% whitespace and lines of thousands of bytes; hand-written code
/// has 15–30% and lines under 100 bytes.
pub fn looks_minified(path: &str, source: &[u8]) -> bool {
    let file = path.rsplit('/').next().unwrap_or(path);
    if file.to_ascii_lowercase().contains(".min.") {
        return true;
    }
    let sample = &source[..source.len().min(16 * 1024)];
    if sample.is_empty() {
        return false;
    }
    let lines = sample.iter().filter(|b| **b == b'\n').count() + 1;
    let whitespace = sample
        .iter()
        .filter(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    sample.len() / lines >= 500 && whitespace * 100 < sample.len() * 8
}

/// Deepest nesting of `(`, `[`, `{`, counted over the raw bytes (strings and
/// comments included, which can only overcount nesting and so only make the
/// edge more cautious — except for stray closers, which saturate at zero).
pub fn nesting_depth(source: &[u8]) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    for byte in source {
        match byte {
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Why `response` (an origin answer for `path`) is not to be minified, if so.
pub fn skip_reason(
    response: &Response<Body>,
    path: &str,
    settings: OriginMinifySettings,
) -> Option<MinifySkip> {
    let enabled = match kind_of(response) {
        Some(Kind::Script) => settings.enabled,
        Some(Kind::Stylesheet) => settings.css,
        None => return Some(MinifySkip::NotJavaScript),
    };
    if !enabled {
        return Some(MinifySkip::Disabled);
    }
    let headers = response.headers();
    let cache_control = Directives::from_headers(headers, &header::CACHE_CONTROL);
    if cache_control.has("no-transform") {
        return Some(MinifySkip::NoTransform);
    }
    if cache_control.has("no-store") || cache_control.has("private") {
        return Some(MinifySkip::NotCacheable);
    }
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return Some(MinifySkip::Encoded);
    }
    let body = response.body();
    // A streamed body (crate::platform::body) is above STREAM_BODIES_ABOVE_BYTES.
    if body.len() > settings.max_bytes || crate::platform::body::streamed(response).is_some() {
        return Some(MinifySkip::TooLarge);
    }
    if nesting_depth(body) > MAX_NESTING_DEPTH {
        return Some(MinifySkip::TooDeep);
    }
    if looks_minified(path, body) {
        return Some(MinifySkip::AlreadyMinified);
    }
    None
}

/// Minifies an origin script response, or returns it unchanged with the
/// reason. Only JavaScript responses get the [`MINIFY_STATUS`] header. A
/// minified response loses `Content-Length` and `Content-MD5`, and its strong
/// `ETag` becomes weak (the bytes changed, the meaning did not).
pub fn minify_origin_script(
    response: Response<Body>,
    path: &str,
    settings: OriginMinifySettings,
) -> (Response<Body>, MinifyOutcome) {
    let outcome = match skip_reason(&response, path, settings) {
        Some(reason @ (MinifySkip::Disabled | MinifySkip::NotJavaScript)) => {
            return (response, MinifyOutcome::skipped(reason));
        }
        Some(reason) => MinifyOutcome::skipped(reason),
        None => {
            let body = response.body();
            let minified = match kind_of(&response) {
                Some(Kind::Stylesheet) => std::str::from_utf8(body)
                    .map_err(|e| format!("not UTF-8: {e}"))
                    .and_then(super::css_min::minify_css)
                    .map(String::into_bytes),
                _ => minify_script(body),
            };
            match minified {
                Ok(minified) if minified.len() < body.len() => {
                    let outcome = MinifyOutcome::Minified {
                        bytes_in: body.len(),
                        bytes_out: minified.len(),
                    };
                    let (mut parts, _) = response.into_parts();
                    parts.headers.remove(header::CONTENT_LENGTH);
                    parts.headers.remove("content-md5");
                    weaken_etag(&mut parts.headers);
                    parts
                        .headers
                        .insert(MINIFY_STATUS.clone(), outcome.header_value());
                    return (Response::from_parts(parts, Body::from(minified)), outcome);
                }
                Ok(_) => MinifyOutcome::skipped(MinifySkip::NoGain),
                Err(detail) => MinifyOutcome::Skipped {
                    reason: MinifySkip::Failed,
                    detail,
                },
            }
        }
    };
    let mut response = response;
    response
        .headers_mut()
        .insert(MINIFY_STATUS.clone(), outcome.header_value());
    (response, outcome)
}

/// A classic script: top-level names stay, as other scripts may use them.
#[cfg(feature = "js-minify")]
fn minify_script(source: &[u8]) -> Result<Vec<u8>, String> {
    super::minify::minify_js(source, super::minify::JsKind::Script).map_err(|e| e.to_string())
}

#[cfg(not(feature = "js-minify"))]
fn minify_script(_source: &[u8]) -> Result<Vec<u8>, String> {
    Err("this worker was built without a JavaScript minifier (feature js-minify)".to_owned())
}

/// `"x"` → `W/"x"`; weak tags stay as they are.
pub fn weaken_etag(headers: &mut http::HeaderMap) {
    // Bytes, not text: an entity-tag may hold obs-text (0x80-0xFF, RFC 9110
    // §8.8.3), and such a tag must be weakened too.
    let Some(etag) = headers.get(header::ETAG).map(HeaderValue::as_bytes) else {
        return;
    };
    if etag.starts_with(b"W/") {
        return;
    }
    let mut weak = Vec::with_capacity(etag.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(etag);
    if let Ok(weak) = HeaderValue::from_bytes(&weak) {
        headers.insert(header::ETAG, weak);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strong_etag_with_obs_text_is_weakened_too() {
        let mut headers = http::HeaderMap::new();
        let tag = HeaderValue::from_bytes(b"\"caf\xe9\"").expect("obs-text is valid");
        headers.insert(header::ETAG, tag);
        weaken_etag(&mut headers);
        assert_eq!(headers[header::ETAG].as_bytes(), b"W/\"caf\xe9\"");
    }

    const SCRIPT: &str = "// greeting\nfunction greet(name) {\n  var message = 'hello, ' + name;\n  return message;\n}\n";

    fn on() -> OriginMinifySettings {
        OriginMinifySettings {
            enabled: true,
            css: false,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    fn script(body: &str, headers: &[(&str, &str)]) -> Response<Body> {
        let mut builder =
            Response::builder().header("content-type", "text/javascript; charset=utf-8");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::from(body.to_owned())).expect("response")
    }

    fn reason(outcome: &MinifyOutcome) -> Option<MinifySkip> {
        match outcome {
            MinifyOutcome::Skipped { reason, .. } => Some(*reason),
            MinifyOutcome::Minified { .. } => None,
        }
    }

    #[test]
    fn origin_script_is_minified_with_a_weak_etag_and_no_length() {
        let response = script(SCRIPT, &[("etag", "\"v1\""), ("content-length", "90")]);
        let (out, outcome) = minify_origin_script(response, "/js/app.js", on());
        assert!(
            matches!(outcome, MinifyOutcome::Minified { bytes_out, .. } if bytes_out < SCRIPT.len())
        );
        let text = String::from_utf8_lossy(out.body()).into_owned();
        assert!(
            text.contains("greet") && !text.contains("greeting"),
            "{text}"
        );
        assert_eq!(out.headers()["etag"], "W/\"v1\"");
        assert!(out.headers().get("content-length").is_none());
        assert_eq!(out.headers()[&MINIFY_STATUS], "minified");
    }

    #[test]
    fn scripts_the_edge_must_not_touch_are_served_as_sent() {
        let cases: [(Response<Body>, &str, MinifySkip); 5] = [
            (
                script(SCRIPT, &[("cache-control", "public, no-transform")]),
                "/a.js",
                MinifySkip::NoTransform,
            ),
            (
                script(SCRIPT, &[("cache-control", "private, max-age=60")]),
                "/a.js",
                MinifySkip::NotCacheable,
            ),
            (
                script(SCRIPT, &[("content-encoding", "gzip")]),
                "/a.js",
                MinifySkip::Encoded,
            ),
            (
                script(SCRIPT, &[]),
                "/vendor/lib.min.js",
                MinifySkip::AlreadyMinified,
            ),
            (script("function (", &[]), "/broken.js", MinifySkip::Failed),
        ];
        for (response, path, expected) in cases {
            let original = response.body().clone();
            let (out, outcome) = minify_origin_script(response, path, on());
            assert_eq!(reason(&outcome), Some(expected), "{path}");
            assert_eq!(out.body(), &original, "{path}: original bytes");
            assert_eq!(
                out.headers()[&MINIFY_STATUS],
                format!("skipped; reason={}", expected.as_str()).as_str()
            );
        }
    }

    #[test]
    fn scripts_over_the_size_limit_are_served_as_sent() {
        let small = OriginMinifySettings {
            max_bytes: 10,
            ..on()
        };
        let (out, outcome) = minify_origin_script(script(SCRIPT, &[]), "/a.js", small);
        assert_eq!(reason(&outcome), Some(MinifySkip::TooLarge));
        assert_eq!(out.body().as_ref(), SCRIPT.as_bytes());
    }

    #[test]
    fn deeply_nested_input_never_reaches_the_minifier() {
        let deep = format!(
            "var a = {}1{};",
            "(".repeat(MAX_NESTING_DEPTH + 1),
            ")".repeat(MAX_NESTING_DEPTH + 1)
        );
        let (out, outcome) = minify_origin_script(script(&deep, &[]), "/deep.js", on());
        assert_eq!(reason(&outcome), Some(MinifySkip::TooDeep));
        assert_eq!(out.body().as_ref(), deep.as_bytes());
    }

    #[test]
    fn other_responses_are_untouched_and_unlabelled() {
        let css = Response::builder()
            .header("content-type", "text/css")
            .body(Body::from_static(b"a { color: red }"))
            .expect("response");
        let (out, outcome) = minify_origin_script(css, "/a.css", on());
        assert_eq!(
            reason(&outcome),
            Some(MinifySkip::Disabled),
            "EDGE_MINIFY_CSS is off"
        );
        assert!(out.headers().get(&MINIFY_STATUS).is_none());
        let json = Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_static(b"{ }"))
            .expect("response");
        let (_, outcome) = minify_origin_script(json, "/a.json", on());
        assert_eq!(reason(&outcome), Some(MinifySkip::NotJavaScript));
        let off = OriginMinifySettings {
            enabled: false,
            ..on()
        };
        let (out, outcome) = minify_origin_script(script(SCRIPT, &[]), "/a.js", off);
        assert_eq!(reason(&outcome), Some(MinifySkip::Disabled));
        assert!(out.headers().get(&MINIFY_STATUS).is_none());
    }

    #[test]
    fn minified_code_is_recognised_and_readable_code_is_not() {
        let minified = format!(
            "!function(){{{}}}();",
            "var a=1,b=2;if(a){b=a+b}".repeat(100)
        );
        assert!(looks_minified("/app.js", minified.as_bytes()));
        assert!(!looks_minified("/app.js", SCRIPT.repeat(50).as_bytes()));
        assert!(looks_minified("/js/jquery.MIN.js", b""));
    }

    #[test]
    fn javascript_content_types_are_recognised() {
        for (value, expected) in [
            ("text/javascript", true),
            ("application/javascript; charset=utf-8", true),
            ("Application/X-JavaScript", true),
            ("text/css", false),
            ("application/json", false),
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_javascript(&headers), expected, "{value}");
        }
    }

    fn stylesheet(body: &'static str, cache_control: &'static str) -> Response<Body> {
        Response::builder()
            .header("content-type", "text/css; charset=utf-8")
            .header("cache-control", cache_control)
            .header("etag", "\"v1\"")
            .body(Body::from_static(body.as_bytes()))
            .expect("response")
    }

    const STYLES: &str = "/* site */\nbody {\n  margin : 0 ;\n  font: 16px/1.5 serif;\n}\n\na:hover { color : red ; }\n";

    #[test]
    fn origin_css_is_minified_when_edge_minify_css_is_on() {
        let css_on = OriginMinifySettings { css: true, ..on() };
        let (out, outcome) =
            minify_origin_script(stylesheet(STYLES, "max-age=60"), "/site.css", css_on);
        assert!(
            matches!(outcome, MinifyOutcome::Minified { .. }),
            "{outcome:?}"
        );
        assert_eq!(
            out.body().as_ref(),
            b"body{margin:0;font:16px/1.5 serif}a:hover{color:red}"
        );
        assert_eq!(out.headers()["etag"], "W/\"v1\"");
        assert_eq!(out.headers()[&MINIFY_STATUS], "minified");
    }

    #[test]
    fn origin_css_that_cannot_be_read_or_may_not_change_is_served_as_sent() {
        let css_on = OriginMinifySettings { css: true, ..on() };
        let broken = "a { content: \"unterminated }";
        let (out, outcome) =
            minify_origin_script(stylesheet(broken, "max-age=60"), "/a.css", css_on);
        assert_eq!(reason(&outcome), Some(MinifySkip::Failed));
        assert_eq!(out.body().as_ref(), broken.as_bytes());
        let (_, outcome) =
            minify_origin_script(stylesheet(STYLES, "no-transform"), "/a.css", css_on);
        assert_eq!(reason(&outcome), Some(MinifySkip::NoTransform));
        let (_, outcome) =
            minify_origin_script(stylesheet(STYLES, "max-age=60"), "/a.min.css", css_on);
        assert_eq!(reason(&outcome), Some(MinifySkip::AlreadyMinified));
    }
}
