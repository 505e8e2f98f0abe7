//! Cache tags: handlers attach [`CacheTags`] to a response; [`CacheTagLayer`] writes them
//! as `Cache-Tag` (comma-separated, and optionally `Surrogate-Key`, space-separated),
//! enforcing the limits the Cachefront edge enforces.
//!
//! Limits ([`TagLimits`]), the same the edge applies when it stores a response: a tag is
//! printable ASCII without separators (`,` and space), at most 1024 bytes, compared
//! case-insensitively (so written lowercase), and not one of the edge's own names (`*`,
//! `host:…`, `url:…`, `prefix:…`); every tag costs its length plus one separator byte
//! against a 16 KiB budget. A tag that breaks a limit is dropped and counted — never an
//! error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponseParts, Response, ResponseParts};
use http::{HeaderName, HeaderValue, Request};
use metrics::Counter;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// `Cache-Tag`, read by the Cachefront edge (and Cloudflare).
pub const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");
/// `Surrogate-Key`, read by Fastly and other CDNs.
pub const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");

/// Tags a response depends on. Return it from a handler as a response part:
/// `(CacheTags::new(["products", "product:7"]), Html(page))`. Several parts merge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheTags(Vec<String>);

impl CacheTags {
    /// Tags from any list of strings.
    pub fn new<I, T>(tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self(tags.into_iter().map(Into::into).collect())
    }
    /// Add one tag.
    pub fn push(&mut self, tag: impl Into<String>) {
        self.0.push(tag.into());
    }
    /// Add one tag, builder style.
    pub fn with(mut self, tag: impl Into<String>) -> Self {
        self.push(tag);
        self
    }
    /// The tags as given (before normalization).
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl IntoResponseParts for CacheTags {
    type Error = std::convert::Infallible;
    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        match res.extensions_mut().get_mut::<CacheTags>() {
            Some(existing) => existing.0.extend(self.0),
            None => {
                res.extensions_mut().insert(self);
            }
        }
        Ok(res)
    }
}

use crate::tag_rules::check_tag;
pub use crate::tag_rules::{normalize_tag, TagLimits, TagRejection};

/// Tags ready to write, and the ones dropped with their reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedTags {
    /// Normalized, de-duplicated tags in first-seen order, within the header budget.
    pub kept: Vec<String>,
    /// Tags dropped, as given, with why.
    pub dropped: Vec<(String, TagRejection)>,
}

/// Normalize, de-duplicate and fit tags into one header value within
/// `limits.max_header_bytes` (joined with `,`), dropping reserved names.
pub fn encode_tags<'a>(tags: impl IntoIterator<Item = &'a str>, limits: &TagLimits) -> EncodedTags {
    let mut out = EncodedTags::default();
    let mut size = 0usize;
    for raw in tags {
        match normalize_tag(raw, limits) {
            Ok(tag) => {
                if out.kept.contains(&tag) {
                    continue;
                }
                // Counted as the edge counts: every tag costs its bytes plus a separator.
                let extra = tag.len() + 1;
                if size + extra > limits.max_header_bytes {
                    out.dropped.push((raw.to_owned(), TagRejection::HeaderFull));
                    continue;
                }
                size += extra;
                out.kept.push(tag);
            }
            Err(reason) => out.dropped.push((raw.to_owned(), reason)),
        }
    }
    out
}

/// Options for [`CacheTagLayer`].
#[derive(Debug, Clone, Default)]
pub struct CacheTagConfig {
    /// Limits to enforce.
    pub limits: TagLimits,
    /// Also write `Surrogate-Key` (space-separated). Default: false.
    pub surrogate_key: bool,
    /// Tags added to every tagged response (e.g. `site`). Default: none.
    pub default_tags: Vec<String>,
}

#[derive(Clone, Debug)]
struct TagCounters {
    emitted: Counter,
    dropped: [Counter; 5],
}

impl Default for TagCounters {
    fn default() -> Self {
        Self {
            emitted: Counter::noop(),
            dropped: std::array::from_fn(|_| Counter::noop()),
        }
    }
}

impl TagCounters {
    fn dropped(&self, r: TagRejection) -> &Counter {
        &self.dropped[match r {
            TagRejection::Empty => 0,
            TagRejection::TooLong => 1,
            TagRejection::InvalidChar => 2,
            TagRejection::HeaderFull => 3,
            TagRejection::Reserved => 4,
        }]
    }
}

/// Layer that turns [`CacheTags`] (and any `Cache-Tag` header the handler set) into the
/// final, limit-checked `Cache-Tag` / `Surrogate-Key` headers.
#[derive(Clone, Debug, Default)]
pub struct CacheTagLayer {
    config: CacheTagConfig,
    counters: TagCounters,
}

impl CacheTagLayer {
    /// Layer with default limits, `Cache-Tag` only.
    pub fn new() -> Self {
        Self::default()
    }
    /// Layer with the given options.
    pub fn with_config(config: CacheTagConfig) -> Self {
        Self {
            config,
            counters: TagCounters::default(),
        }
    }
    /// Also write `Surrogate-Key`.
    pub fn surrogate_key(mut self, on: bool) -> Self {
        self.config.surrogate_key = on;
        self
    }
    /// Count emitted and dropped tags in `metrics`.
    #[cfg(feature = "metrics")]
    pub fn metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        use crate::metrics::names;
        let d = |r: TagRejection| {
            metrics.counter(names::CACHE_TAGS_DROPPED_TOTAL, &[("reason", r.as_str())])
        };
        self.counters = TagCounters {
            emitted: metrics.counter(names::CACHE_TAGS_EMITTED_TOTAL, &[]),
            dropped: [
                d(TagRejection::Empty),
                d(TagRejection::TooLong),
                d(TagRejection::InvalidChar),
                d(TagRejection::HeaderFull),
                d(TagRejection::Reserved),
            ],
        };
        self
    }

    /// Writes the final headers in one pass, lowercasing each accepted tag straight into
    /// the header value: no per-tag copies (this runs on every tagged response). Same
    /// result as [`encode_tags`].
    fn apply(&self, res: &mut Response) {
        let from_ext = res.extensions_mut().remove::<CacheTags>();
        // One pass over the response's few header names instead of a hashed lookup per
        // name (each ~130 instructions).
        let (mut had_header, mut had_surrogate) = (false, false);
        for name in res.headers().keys() {
            if *name == CACHE_TAG {
                had_header = true;
            } else if *name == SURROGATE_KEY {
                had_surrogate = true;
            }
        }
        let from_header: Vec<String> = if had_header {
            res.headers()
                .get_all(CACHE_TAG)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::to_owned)
                .collect()
        } else {
            Vec::new()
        };
        if from_ext.is_none() && from_header.is_empty() {
            return;
        }
        let all = from_header
            .iter()
            .map(String::as_str)
            .chain(from_ext.iter().flat_map(|t| t.0.iter().map(String::as_str)))
            .chain(self.config.default_tags.iter().map(String::as_str));
        let limits = &self.config.limits;
        let mut value = String::with_capacity(64);
        let mut size = 0usize;
        let mut kept = 0u64;
        for raw in all {
            let reason = match check_tag(raw, limits) {
                Ok(tag) => {
                    if value.split(',').any(|t| t.eq_ignore_ascii_case(tag)) {
                        continue;
                    }
                    // Counted as the edge counts: every tag costs its bytes plus a separator.
                    let extra = tag.len() + 1;
                    if size + extra <= limits.max_header_bytes {
                        size += extra;
                        if !value.is_empty() {
                            value.push(',');
                        }
                        let start = value.len();
                        value.push_str(tag);
                        value[start..].make_ascii_lowercase();
                        kept += 1;
                        continue;
                    }
                    TagRejection::HeaderFull
                }
                Err(reason) => reason,
            };
            self.counters.dropped(reason).increment(1);
            tracing::debug!(target: "cachefront_origin::cache_tags", tag = %raw.escape_debug(), reason = reason.as_str(), "cache tag dropped");
        }
        let headers = res.headers_mut();
        // `insert` below replaces every earlier value: a removal first only when nothing
        // replaces it.
        let surrogate = if kept > 0 && self.config.surrogate_key {
            // Kept tags are printable ASCII without spaces or commas: cannot fail.
            HeaderValue::try_from(value.replace(',', " ")).ok()
        } else {
            None
        };
        let tags = if kept > 0 {
            HeaderValue::try_from(value).ok()
        } else {
            None
        };
        match surrogate {
            Some(v) => {
                headers.insert(SURROGATE_KEY, v);
            }
            None if had_surrogate => {
                headers.remove(SURROGATE_KEY);
            }
            None => {}
        }
        match tags {
            Some(v) => {
                headers.insert(CACHE_TAG, v);
            }
            None if had_header => {
                headers.remove(CACHE_TAG);
            }
            None => {}
        }
        if kept > 0 {
            self.counters.emitted.increment(kept);
        }
    }
}

impl<S> Layer<S> for CacheTagLayer {
    type Service = CacheTagService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        CacheTagService {
            inner,
            layer: Arc::new(self.clone()),
        }
    }
}

/// Service produced by [`CacheTagLayer`].
#[derive(Clone, Debug)]
pub struct CacheTagService<S> {
    inner: S,
    // Shared, so a request costs one reference count, not a copy of config and counters.
    layer: Arc<CacheTagLayer>,
}

impl<S, B> Service<Request<B>> for CacheTagService<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = CacheTagFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        CacheTagFuture {
            inner: self.inner.call(req),
            layer: Some(self.layer.clone()),
        }
    }
}

pin_project! {
    /// Response future of [`CacheTagService`].
    pub struct CacheTagFuture<F> {
        #[pin]
        inner: F,
        layer: Option<Arc<CacheTagLayer>>,
    }
}

impl<F, E> Future for CacheTagFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(res), Some(layer)) = (&mut result, this.layer.take()) {
            layer.apply(res);
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_lowercased_and_deduplicated() {
        let e = encode_tags(
            ["Products", "products", " Product:7 "],
            &TagLimits::default(),
        );
        assert_eq!(e.kept, vec!["products", "product:7"]);
        assert!(e.dropped.is_empty());
    }

    #[test]
    fn whitespace_around_a_tag_is_trimmed_unicode_included() {
        // Tags ending in printable ASCII skip the trim; these must still take it.
        let e = encode_tags(
            ["\u{3000}Shelf\u{a0}", "\tbox ", "\u{2003}x", "y\u{85}", "z"],
            &TagLimits::default(),
        );
        assert_eq!(e.kept, vec!["shelf", "box", "x", "y", "z"]);
        assert!(e.dropped.is_empty());
    }

    #[test]
    fn over_limit_and_invalid_tags_are_dropped_with_reasons() {
        let long = "x".repeat(1025);
        let e = encode_tags(
            ["ok", long.as_str(), "a,b", "sp ace", "é", ""],
            &TagLimits::default(),
        );
        assert_eq!(e.kept, vec!["ok"]);
        let reasons: Vec<_> = e.dropped.iter().map(|(_, r)| *r).collect();
        assert_eq!(
            reasons,
            vec![
                TagRejection::TooLong,
                TagRejection::InvalidChar,
                TagRejection::InvalidChar,
                TagRejection::InvalidChar,
                TagRejection::Empty
            ]
        );
    }

    #[test]
    fn reserved_edge_names_are_dropped() {
        let e = encode_tags(
            ["Host:shop.example", "url:x", "PREFIX:/a/", "*", "hostname"],
            &TagLimits::default(),
        );
        assert_eq!(e.kept, vec!["hostname"]);
        assert!(e.dropped.iter().all(|(_, r)| *r == TagRejection::Reserved));
        assert_eq!(e.dropped.len(), 4);
    }

    #[test]
    fn header_stays_within_budget() {
        let tags: Vec<String> = (0..100)
            .map(|i| format!("{i:03}-{}", "t".repeat(496)))
            .collect();
        let e = encode_tags(tags.iter().map(String::as_str), &TagLimits::default());
        // The edge counts every tag with a separator: stay within that count too.
        assert!(e.kept.iter().map(|t| t.len() + 1).sum::<usize>() <= 16 * 1024);
        assert_eq!(e.kept.len() + e.dropped.len(), 100);
        assert!(e
            .dropped
            .iter()
            .all(|(_, r)| *r == TagRejection::HeaderFull));
        assert_eq!(e.kept.len(), 16 * 1024 / 501);
    }
}
