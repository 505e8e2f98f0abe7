//! The reflection guard: whether an answer about to be stored shows, verbatim,
//! a value the client chose in a request field the cache key does not hold.
//!
//! Origins echo request fields into pages (`User-Agent` in a "your browser"
//! banner, `Referer` in a back link, a cookie's value in a greeting) without
//! naming them in `Vary`. Stored, such a page hands one client's value — an
//! attacker's payload, or a user's session cookie — to everyone. The edge
//! cannot know what an origin varies on, but it can see its own request's
//! values in the body it is about to share, and then not share it.
//!
//! What is checked: every field the origin received from the client that is
//! neither keyed (`CACHE_KEY_HEADERS`, a rule's `cache_key`, the answer's own
//! `Vary`) nor a protocol field whose values are short tokens; each cookie's
//! value separately; the credential of `Authorization`. A value counts when
//! its raw bytes, or its HTML- or JSON-escaped form, occur in the body.
//! Values shorter than [`MIN_PROBE_LEN`] bytes are skipped (they occur by
//! chance), as are values made only of the protocol's standard vocabulary
//! (`Accept: text/html`, which `<meta content="text/html">` shows anyway)
//! and a same-site `Referer` made only of URL-safe characters (a page
//! linking to the page it was reached from, common with absolute links, can
//! only point to this site). Binary types are not scanned.

use http::header::{self, HeaderMap};

/// Values shorter than this are not looked for: `en`, `1`, `dark` occur in
/// pages by chance, and a payload this short can carry little.
pub const MIN_PROBE_LEN: usize = 8;

/// Forwarded request fields whose values are protocol tokens (`no-cache`,
/// an ETag, `bytes=0-1`) rather than client-chosen text, or that the edge
/// normalises and keys itself (`Origin`, `Accept-Encoding`).
const NOT_PROBED: &[&str] = &[
    "accept-encoding",
    "cache-control",
    "content-encoding",
    "content-language",
    "content-length",
    "content-type",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "origin",
    "pragma",
    "range",
];

/// One request value to look for, in every form an origin may write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The request field it came from (`cookie` for a cookie's value).
    pub field: String,
    needles: Vec<Vec<u8>>,
}

impl Probe {
    fn new(field: &str, value: &str) -> Option<Self> {
        let value = value.trim();
        if value.len() < MIN_PROBE_LEN {
            return None;
        }
        let raw = value.as_bytes().to_vec();
        let mut needles = vec![raw];
        let json = [(false, false), (true, false), (false, true), (true, true)]
            .map(|(slash, html)| json_escaped(value, slash, html));
        for form in std::iter::once(html_escaped(value)).chain(json) {
            if !needles.contains(&form) {
                needles.push(form);
            }
        }
        Some(Self {
            field: field.to_owned(),
            needles,
        })
    }
}

/// The values to look for in an answer to a request whose forwarded fields
/// (what the origin received from the client) are `forwarded`. `keyed` says
/// whether a field is in the cache key; `keyed_cookies` whether the rule keys
/// cookies (the origin then saw only those); `host` is the request's host.
pub fn probes(
    forwarded: &HeaderMap,
    keyed: impl Fn(&str) -> bool,
    keyed_cookies: bool,
    host: Option<&str>,
) -> Vec<Probe> {
    let mut probes: Vec<Probe> = Vec::new();
    let mut push = |probe: Option<Probe>| {
        if let Some(probe) = probe {
            if !probes.contains(&probe) {
                probes.push(probe);
            }
        }
    };
    for (name, value) in forwarded {
        let name = name.as_str();
        if NOT_PROBED.contains(&name) || keyed(name) {
            continue;
        }
        // A value that is not text is compared as its bytes would be read.
        let Ok(text) = value.to_str() else {
            push(Probe::new(name, &String::from_utf8_lossy(value.as_bytes())));
            continue;
        };
        if name == header::COOKIE.as_str() {
            if keyed_cookies {
                continue;
            }
            for pair in text.split(';') {
                let value = pair.split_once('=').map_or(pair, |(_, v)| v);
                push(Probe::new(name, value.trim().trim_matches('"')));
            }
            continue;
        }
        if name == header::REFERER.as_str() && same_site_plain_link(text, host) {
            continue;
        }
        if standard_value(name, text) {
            continue;
        }
        if name == header::AUTHORIZATION.as_str() {
            if let Some((_, credential)) = text.trim().split_once(' ') {
                push(Probe::new(name, credential));
            }
        }
        push(Probe::new(name, text));
    }
    probes
}

/// Whether a body of this `Content-Type` can show text to a reader (a
/// browser, a script): everything but media, fonts and archives. A missing
/// type is scanned, since browsers sniff.
pub fn scannable(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return true;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/').unwrap_or((essence.as_str(), ""));
    match kind {
        "image" => subtype.ends_with("+xml"),
        "audio" | "video" | "font" => false,
        "application" => !matches!(
            subtype,
            "pdf"
                | "zip"
                | "gzip"
                | "x-gzip"
                | "wasm"
                | "font-woff"
                | "font-woff2"
                | "vnd.ms-fontobject"
                | "x-font-ttf"
                | "x-7z-compressed"
                | "x-tar"
        ),
        _ => true,
    }
}

/// The field whose value the body shows, if any.
pub fn reflected<'a>(probes: &'a [Probe], body: &[u8]) -> Option<&'a str> {
    probes
        .iter()
        .find(|probe| {
            probe
                .needles
                .iter()
                .any(|needle| memchr::memmem::find(body, needle).is_some())
        })
        .map(|probe| probe.field.as_str())
}

/// Media ranges every client sends; a page naming them (`<meta
/// content="text/html">`) is not showing anything a client chose.
const STANDARD_MEDIA_RANGES: &[&str] = &[
    "*/*",
    "text/*",
    "text/html",
    "text/plain",
    "text/css",
    "text/javascript",
    "text/event-stream",
    "application/xhtml+xml",
    "application/xml",
    "application/json",
    "application/ld+json",
    "application/javascript",
    "application/signed-exchange",
    "image/*",
    "image/avif",
    "image/webp",
    "image/apng",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/svg+xml",
];

/// A value made only of the protocol's standard vocabulary (an `Accept`
/// list of common media ranges, `X-Requested-With: XMLHttpRequest`): a
/// client choosing it can make a page say nothing it would not say anyway.
fn standard_value(name: &str, value: &str) -> bool {
    match name {
        "accept" => value.split(',').all(|member| {
            let mut parts = member.split(';');
            let range = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            STANDARD_MEDIA_RANGES.contains(&range.as_str())
                && parts.all(|param| {
                    param.split_once('=').is_some_and(|(k, v)| {
                        matches!(k.trim(), "q" | "v" | "charset")
                            && v.trim()
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                    })
                })
        }),
        "x-requested-with" => value.trim().eq_ignore_ascii_case("xmlhttprequest"),
        _ => false,
    }
}

/// A `Referer` to a page of the request's own host, made only of characters
/// that cannot leave a URL attribute or start markup.
fn same_site_plain_link(referer: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let Ok(url) = url::Url::parse(referer) else {
        return false;
    };
    let authority = match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => return false,
    };
    matches!(url.scheme(), "http" | "https")
        && authority.eq_ignore_ascii_case(host)
        && referer
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/%?=&#:+,".contains(&b))
}

fn html_escaped(value: &str) -> Vec<u8> {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

/// JSON string escaping as serialisers write it: `slash` escapes `/` as
/// `\/` (PHP), `html_safe` writes `<`, `>` and `&` as `\u003c`-style
/// sequences (Go, Rails).
fn json_escaped(value: &str, slash: bool, html_safe: bool) -> Vec<u8> {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' if slash => out.push_str("\\/"),
            '<' if html_safe => out.push_str("\\u003c"),
            '>' if html_safe => out.push_str("\\u003e"),
            '&' if html_safe => out.push_str("\\u0026"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(fields: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(
                *name,
                HeaderValue::from_str(value).expect("test header value"),
            );
        }
        map
    }

    fn found(fields: &[(&'static str, &str)], body: &str) -> Option<String> {
        let probes = probes(&headers(fields), |_| false, false, Some("shop.example"));
        reflected(&probes, body.as_bytes()).map(str::to_owned)
    }

    #[test]
    fn a_user_agent_shown_in_the_page_is_found() {
        let page = "<p>Your browser: EVIL-agent/1.0</p>";
        assert_eq!(
            found(&[("user-agent", "EVIL-agent/1.0")], page).as_deref(),
            Some("user-agent")
        );
        assert_eq!(found(&[("user-agent", "Mozilla/5.0 (X11)")], page), None);
    }

    #[test]
    fn escaped_forms_of_a_value_are_found() {
        let payload = r#"x"><script>alert(1)</script>"#;
        let html = "<a href=\"x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\">";
        let json = r#"{"ua":"x\"><script>alert(1)<\/script>"}"#;
        let go = r#"{"ua":"x\"\u003e\u003cscript\u003ealert(1)\u003c/script\u003e"}"#;
        for body in [html, json, go] {
            assert_eq!(
                found(&[("user-agent", payload)], body).as_deref(),
                Some("user-agent"),
                "{body}"
            );
        }
    }

    #[test]
    fn each_cookie_value_is_looked_for_and_short_ones_are_not() {
        let cookies = [("cookie", "theme=dark; sid=s3cr3t-session-42")];
        assert_eq!(
            found(&cookies, "hello s3cr3t-session-42").as_deref(),
            Some("cookie")
        );
        assert_eq!(found(&cookies, "theme: dark"), None);
        let probes = probes(&headers(&cookies), |_| false, true, None);
        assert!(
            probes.is_empty(),
            "keyed cookies are in the key: {probes:?}"
        );
    }

    #[test]
    fn keyed_and_protocol_fields_are_not_looked_for() {
        let fields = [
            ("accept-language", "de-CH,de;q=0.9"),
            ("if-none-match", "\"etag-12345\""),
        ];
        let body = "de-CH,de;q=0.9 \"etag-12345\"";
        let probes = probes(
            &headers(&fields),
            |name| name == "accept-language",
            false,
            None,
        );
        assert_eq!(reflected(&probes, body.as_bytes()), None);
        let unkeyed = super::probes(&headers(&fields), |_| false, false, None);
        assert_eq!(
            reflected(&unkeyed, body.as_bytes()),
            Some("accept-language")
        );
    }

    #[test]
    fn a_plain_same_site_referer_is_a_link_not_a_reflection() {
        let page = r#"<a href="https://shop.example/products">back</a>"#;
        assert_eq!(
            found(&[("referer", "https://shop.example/products")], page),
            None
        );
        let foreign = r#"<a href="https://evil.example/products">back</a>"#;
        assert_eq!(
            found(&[("referer", "https://evil.example/products")], foreign).as_deref(),
            Some("referer")
        );
        // Same site, but the value could leave the attribute.
        let quoted = r#"https://shop.example/"onmouseover="x"#;
        assert_eq!(
            found(&[("referer", quoted)], quoted).as_deref(),
            Some("referer")
        );
    }

    #[test]
    fn standard_accept_lists_and_xhr_markers_are_not_reflections() {
        let page = r#"<meta content="text/html"> xhr.setRequestHeader('X-Requested-With', 'XMLHttpRequest')"#;
        let browser =
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        for fields in [
            [("accept", "text/html")],
            [("accept", browser)],
            [("x-requested-with", "XMLHttpRequest")],
        ] {
            assert_eq!(
                found(&fields, &format!("{page} {browser}")),
                None,
                "{fields:?}"
            );
        }
        assert_eq!(
            found(&[("accept", "text/EVIL-type")], "text/EVIL-type").as_deref(),
            Some("accept")
        );
        assert_eq!(
            found(
                &[("accept", "text/html;x=EVIL-param")],
                "text/html;x=EVIL-param"
            )
            .as_deref(),
            Some("accept")
        );
    }

    #[test]
    fn the_credential_of_authorization_is_looked_for_alone() {
        let fields = [("authorization", "Bearer tok-abcdef-123")];
        assert_eq!(
            found(&fields, r#"{"token":"tok-abcdef-123"}"#).as_deref(),
            Some("authorization")
        );
    }

    #[test]
    fn media_and_archives_are_not_scanned_but_text_and_unknown_types_are() {
        for text in [
            None,
            Some("text/html; charset=utf-8"),
            Some("application/json"),
            Some("image/svg+xml"),
            Some("application/octet-stream"),
        ] {
            assert!(scannable(text), "{text:?}");
        }
        for binary in [
            "image/png",
            "video/mp4",
            "font/woff2",
            "application/wasm",
            "application/pdf",
        ] {
            assert!(!scannable(Some(binary)), "{binary}");
        }
    }
}
