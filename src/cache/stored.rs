//! How an entry is written to and read back from a dumb response store (the
//! Cache API). The store only keeps bytes and headers; everything the cache
//! decides with travels in one metadata header, and the store is told to keep
//! the entry for our retention time, not the origin's.

use http::header::{HeaderName, HeaderValue};
use http::{header, HeaderMap, Response};
use serde::{Deserialize, Serialize};

use crate::semantics::policy::ResponseTimes;
use crate::semantics::vary::VariantValues;
use crate::Body;

/// Header carrying [`EntryMeta`] inside the store; never sent to clients.
pub static META_HEADER: HeaderName = HeaderName::from_static("x-cachefront-meta");

const META_VERSION: u8 = 2;

/// What the cache remembers about a stored response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    /// Format version; entries of another version are ignored.
    pub v: u8,
    /// When the request that produced the response was sent (ms since the epoch).
    pub request_time_ms: u64,
    /// When the response arrived from the origin (ms since the Unix epoch).
    pub stored_at_ms: u64,
    /// Age the response already had when it arrived (RFC 9111 corrected initial age).
    pub initial_age_secs: u64,
    /// The origin's `Cache-Control` lines, restored on read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_control: Vec<String>,
    /// The origin's `Vary` lines, kept out of the store's own matching.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vary: Vec<String>,
    /// The origin's `Date` line, restored on read: the Cache API answers a
    /// match with a `Date` of its own, and the freshness lifetime of an
    /// `Expires` (or `Last-Modified`) response is counted from the origin's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub date: Vec<String>,
    /// For a variant: the normalized request values it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<VariantValues>,
    /// For a Vary index at a primary key: the fields that select the variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vary_index: Option<Vec<String>>,
    /// For a Vary index and its variants: the index generation in the
    /// variants' keys ([`crate::semantics::vary::variant_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vary_generation: Option<u64>,
    /// Cache tags (origin and automatic) a purge can reach this entry by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The body's length, for a body stored from a stream (ranges need it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_len: Option<u64>,
    /// What a cache rule gave the entry when it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<RuleTerms>,
    /// The URL the entry answers (scheme, host with port, shaped path and
    /// query): what warming asks for again, so that its request has the
    /// same key as the clients'. The `url:` tag cannot stand in: it drops
    /// the port, lower-cases the path and hashes long URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The lifetime and stale windows a cache rule (`CACHE_RULES`) gave an
/// entry, and its adaptive TTL state; the entry is judged by them until it
/// is replaced, whatever the rules say later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleTerms {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swr: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sie: Option<u64>,
    /// `adaptive_ttl`: revalidations in a row that found the entry unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streak: Option<u32>,
    /// `adaptive_ttl`: a hash of the body, to tell an unchanged 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hash: Option<u64>,
}

impl EntryMeta {
    /// The request fields a variant was chosen by (empty for a plain entry).
    pub fn variant_fields(&self) -> Vec<String> {
        self.variant
            .iter()
            .flatten()
            .map(|(field, _)| field.clone())
            .collect()
    }

    pub fn new(times: ResponseTimes, initial_age_secs: u64) -> Self {
        Self {
            v: META_VERSION,
            request_time_ms: times.request_time_ms,
            stored_at_ms: times.response_time_ms,
            initial_age_secs,
            cache_control: Vec::new(),
            vary: Vec::new(),
            date: Vec::new(),
            variant: None,
            vary_index: None,
            tags: Vec::new(),
            body_len: None,
            rule: None,
            url: None,
            vary_generation: None,
        }
    }

    pub fn times(&self) -> ResponseTimes {
        ResponseTimes {
            request_time_ms: self.request_time_ms,
            response_time_ms: self.stored_at_ms,
        }
    }
}

/// The small entry kept at a primary key whose responses vary: it names the
/// request fields that pick the variant.
pub fn vary_index(
    fields: Vec<String>,
    generation: u64,
    times: ResponseTimes,
    retention_secs: u64,
) -> Response<Body> {
    let mut meta = EntryMeta::new(times, 0);
    meta.vary_index = Some(fields);
    meta.vary_generation = Some(generation);
    encode(&Response::new(Body::new()), meta, retention_secs)
}

fn take_lines(headers: &mut HeaderMap, name: header::HeaderName) -> Vec<String> {
    let lines = headers
        .get_all(&name)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    headers.remove(&name);
    lines
}

/// Turns an origin response into what the store keeps, and keeps it for
/// `retention_secs` (at least one second: the Cache API ignores `max-age=0`).
pub fn encode(
    response: &Response<Body>,
    mut meta: EntryMeta,
    retention_secs: u64,
) -> Response<Body> {
    let mut headers = response.headers().clone();
    meta.cache_control = take_lines(&mut headers, header::CACHE_CONTROL);
    meta.vary = take_lines(&mut headers, header::VARY);
    meta.date = take_lines(&mut headers, header::DATE);
    for name in [header::AGE, header::SET_COOKIE, header::CONTENT_LENGTH] {
        headers.remove(name);
    }
    let retention = retention_secs.max(1);
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={retention}")) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    // EntryMeta serializes to ASCII JSON (header values are validated on input).
    if let Ok(json) = serde_json::to_string(&meta) {
        if let Ok(value) = HeaderValue::from_str(&json) {
            headers.insert(META_HEADER.clone(), value);
        }
    }
    let mut stored = Response::new(response.body().clone());
    *stored.status_mut() = response.status();
    *stored.headers_mut() = headers;
    stored
}

/// The metadata of a stored-form response, without taking it apart.
pub fn meta_of(stored: &Response<Body>) -> Option<EntryMeta> {
    let meta: EntryMeta = stored
        .headers()
        .get(&META_HEADER)
        .and_then(|v| v.to_str().ok())
        // from_slice, not from_str: one serde_json reader in the wasm (docs/assets.md).
        .and_then(|s| serde_json::from_slice(s.as_bytes()).ok())?;
    (meta.v == META_VERSION).then_some(meta)
}

/// Reads an entry back: the response as the origin sent it, and its metadata.
/// `None` for anything we did not write (or wrote in another format).
pub fn decode(stored: Response<Body>) -> Option<(Response<Body>, EntryMeta)> {
    let meta = meta_of(&stored)?;
    let (mut parts, body) = stored.into_parts();
    parts.headers.remove(&META_HEADER);
    // Added by the Cache API itself on a match; they describe the store, not
    // the entry (its age is `initial_age_secs`, its date `meta.date`).
    parts.headers.remove("cf-cache-status");
    parts.headers.remove(header::AGE);
    parts.headers.remove(header::DATE);
    parts.headers.remove(header::CACHE_CONTROL);
    parts.headers.remove(header::CONTENT_LENGTH);
    // The length of what is served, whether read or streamed (RFC 9111 §3.1
    // keeps Content-Length with the stored response).
    let len = if body.is_empty() {
        meta.body_len
    } else {
        Some(body.len() as u64)
    };
    if let Some(len) = len {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    for (name, lines) in [
        (header::CACHE_CONTROL, &meta.cache_control),
        (header::VARY, &meta.vary),
        (header::DATE, &meta.date),
    ] {
        for line in lines {
            if let Ok(value) = HeaderValue::from_str(line) {
                parts.headers.append(name.clone(), value);
            }
        }
    }
    Some((Response::from_parts(parts, body), meta))
}

/// The head line of an entry kept as one byte string (the KV tier).
#[derive(Serialize, Deserialize)]
struct ByteHead {
    /// The cache key, checked on read: KV keys of long cache keys are hashes.
    k: String,
    s: u16,
    h: Vec<(String, String)>,
}

/// A stored-form response as one byte string: a JSON head line, then the body.
pub fn to_bytes(key: &str, stored: &Response<Body>) -> Vec<u8> {
    let head = ByteHead {
        k: key.to_owned(),
        s: stored.status().as_u16(),
        h: stored
            .headers()
            .iter()
            .filter_map(|(n, v)| {
                v.to_str()
                    .ok()
                    .map(|v| (n.as_str().to_owned(), v.to_owned()))
            })
            .collect(),
    };
    let mut out = serde_json::to_vec(&head).unwrap_or_default();
    out.push(b'\n');
    out.extend_from_slice(stored.body());
    out
}

/// Reads [`to_bytes`] output back, if it was written for `key`.
pub fn from_bytes(key: &str, bytes: &[u8]) -> Option<Response<Body>> {
    let split = bytes.iter().position(|b| *b == b'\n')?;
    let head: ByteHead = serde_json::from_slice(&bytes[..split]).ok()?;
    if head.k != key {
        return None;
    }
    let mut response = Response::new(Body::copy_from_slice(&bytes[split + 1..]));
    *response.status_mut() = http::StatusCode::from_u16(head.s).ok()?;
    for (name, value) in head.h {
        let name = header::HeaderName::from_bytes(name.as_bytes()).ok()?;
        let value = HeaderValue::from_str(&value).ok()?;
        response.headers_mut().append(name, value);
    }
    Some(response)
}

/// The key an entry has in a store with short keys (KV: at most 512 bytes).
pub fn short_key(key: &str) -> String {
    if key.len() <= 480 {
        return key.to_owned();
    }
    let hash = crate::stable_hash::stable_hash(key.as_bytes());
    let mut cut = 400;
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("long:{hash:016x}:{}", &key[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMES: ResponseTimes = ResponseTimes {
        request_time_ms: 900,
        response_time_ms: 1_000,
    };

    fn origin_response() -> Response<Body> {
        Response::builder()
            .status(200)
            .header("cache-control", "public, s-maxage=60")
            .header("vary", "accept-encoding")
            .header("content-type", "text/html")
            .header("age", "3")
            .header("content-length", "5")
            .body(Body::from_static(b"hello"))
            .expect("response")
    }

    #[test]
    fn round_trip_restores_origin_headers_and_meta() {
        let meta = EntryMeta::new(
            ResponseTimes {
                request_time_ms: 900,
                response_time_ms: 1_000,
            },
            3,
        );
        let stored = encode(&origin_response(), meta, 60);
        assert_eq!(stored.headers()["cache-control"], "public, max-age=60");
        assert!(
            stored.headers().get("vary").is_none(),
            "the store must not do its own variance"
        );
        assert!(stored.headers().get("age").is_none());

        let (restored, meta) = decode(stored).expect("decodes");
        assert_eq!(meta.stored_at_ms, 1_000);
        assert_eq!(meta.initial_age_secs, 3);
        assert_eq!(restored.headers()["cache-control"], "public, s-maxage=60");
        assert_eq!(restored.headers()["vary"], "accept-encoding");
        assert_eq!(restored.headers()["content-type"], "text/html");
        assert!(restored.headers().get(&META_HEADER).is_none());
        assert_eq!(restored.body().as_ref(), b"hello");
    }

    #[test]
    fn the_origins_date_comes_back_whatever_the_store_answers_with() {
        let mut origin = origin_response();
        origin.headers_mut().insert(
            header::DATE,
            HeaderValue::from_static("Sun, 06 Dec 2026 10:00:10 GMT"),
        );
        let mut stored = encode(&origin, EntryMeta::new(TIMES, 3), 60);
        assert!(stored.headers().get(header::DATE).is_none());
        // What the Cache API does on a match: its own Date and Age.
        stored.headers_mut().insert(
            header::DATE,
            HeaderValue::from_static("Sun, 06 Dec 2026 10:00:00 GMT"),
        );
        stored
            .headers_mut()
            .insert(header::AGE, HeaderValue::from_static("0"));
        let (restored, _) = decode(stored).expect("decodes");
        assert_eq!(
            restored.headers()[header::DATE],
            "Sun, 06 Dec 2026 10:00:10 GMT"
        );
        assert!(restored.headers().get(header::AGE).is_none());

        // An origin without a Date gets none from the store either.
        let mut stored = encode(&origin_response(), EntryMeta::new(TIMES, 0), 60);
        stored.headers_mut().insert(
            header::DATE,
            HeaderValue::from_static("Sun, 06 Dec 2026 10:00:00 GMT"),
        );
        let (restored, _) = decode(stored).expect("decodes");
        assert!(restored.headers().get(header::DATE).is_none());
    }

    #[test]
    fn byte_form_round_trips_and_checks_the_key() {
        let stored = encode(
            &origin_response(),
            EntryMeta::new(
                ResponseTimes {
                    request_time_ms: 1,
                    response_time_ms: 2,
                },
                0,
            ),
            60,
        );
        let bytes = to_bytes("k1", &stored);
        let back = from_bytes("k1", &bytes).expect("reads back");
        assert_eq!(back.status(), stored.status());
        assert_eq!(back.headers(), stored.headers());
        assert_eq!(back.body(), stored.body());
        assert!(
            from_bytes("k2", &bytes).is_none(),
            "a hash collision is not a hit"
        );
        assert!(from_bytes("k1", b"garbage").is_none());
    }

    #[test]
    fn long_keys_get_a_short_stable_form() {
        let long = format!("https://h/{}", "x".repeat(1000));
        assert!(short_key(&long).len() <= 512);
        assert_eq!(short_key(&long), short_key(&long));
        assert_ne!(short_key(&long), short_key(&format!("{long}y")));
        assert_eq!(short_key("https://h/p"), "https://h/p");
    }

    #[test]
    fn retention_is_at_least_one_second() {
        let stored = encode(
            &origin_response(),
            EntryMeta::new(
                ResponseTimes {
                    request_time_ms: 0,
                    response_time_ms: 0,
                },
                0,
            ),
            0,
        );
        assert_eq!(stored.headers()["cache-control"], "public, max-age=1");
    }

    #[test]
    fn foreign_or_corrupt_entries_are_ignored() {
        assert!(decode(origin_response()).is_none());
        let mut corrupt = encode(
            &origin_response(),
            EntryMeta::new(
                ResponseTimes {
                    request_time_ms: 0,
                    response_time_ms: 0,
                },
                0,
            ),
            1,
        );
        corrupt
            .headers_mut()
            .insert(META_HEADER.clone(), HeaderValue::from_static("{not json"));
        assert!(decode(corrupt).is_none());
        let mut other_version = encode(
            &origin_response(),
            EntryMeta::new(
                ResponseTimes {
                    request_time_ms: 0,
                    response_time_ms: 0,
                },
                0,
            ),
            1,
        );
        other_version.headers_mut().insert(
            META_HEADER.clone(),
            HeaderValue::from_static(
                r#"{"v":99,"request_time_ms":0,"stored_at_ms":0,"initial_age_secs":0}"#,
            ),
        );
        assert!(decode(other_version).is_none());
    }
}
