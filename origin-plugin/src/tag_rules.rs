//! The Cachefront edge's rules for cache tags, shared by the `Cache-Tag` writer and the
//! purge client so that what the origin writes and what it purges agree with what the edge
//! stores: printable ASCII without separators, at most 1024 bytes, lowercase, and none of
//! the edge's own names.
#![cfg_attr(not(all(feature = "cache-tags", feature = "purge")), allow(dead_code))]

/// Why a tag was dropped. `as_str()` is the `reason` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagRejection {
    /// Empty after trimming.
    Empty,
    /// Longer than [`TagLimits::max_tag_bytes`].
    TooLong,
    /// Contains a byte outside printable ASCII, a comma or a space.
    InvalidChar,
    /// Would push the header past [`TagLimits::max_header_bytes`].
    HeaderFull,
    /// A name the edge owns: `*`, or starting with `host:`, `url:` or `prefix:` (the edge's
    /// automatic tags; an origin must not alias them).
    Reserved,
}

impl TagRejection {
    /// Stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TagRejection::Empty => "empty",
            TagRejection::TooLong => "too_long",
            TagRejection::InvalidChar => "invalid_char",
            TagRejection::HeaderFull => "header_full",
            TagRejection::Reserved => "reserved",
        }
    }
}

/// The edge's limits on tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagLimits {
    /// Longest tag, in bytes. Default 1024.
    pub max_tag_bytes: usize,
    /// Longest header value, in bytes. Default 16 KiB.
    pub max_header_bytes: usize,
}

impl Default for TagLimits {
    fn default() -> Self {
        Self {
            max_tag_bytes: 1024,
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Normalize one tag: trim, check characters and length, lowercase, refuse reserved names.
pub fn normalize_tag(tag: &str, limits: &TagLimits) -> Result<String, TagRejection> {
    check_tag(tag, limits).map(str::to_ascii_lowercase)
}

/// [`normalize_tag`] without the lowercase copy: the trimmed tag if it is acceptable.
/// The `Cache-Tag` writer lowercases it straight into the header value.
pub(crate) fn check_tag<'a>(tag: &'a str, limits: &TagLimits) -> Result<&'a str, TagRejection> {
    // `trim` walks chars (Unicode whitespace) at both ends; a tag that starts and ends
    // with a printable ASCII byte has nothing to trim, and that is nearly every tag.
    let tag = match tag.as_bytes() {
        [first, .., last] if first.is_ascii_graphic() && last.is_ascii_graphic() => tag,
        [only] if only.is_ascii_graphic() => tag,
        _ => tag.trim(),
    };
    if tag.is_empty() {
        return Err(TagRejection::Empty);
    }
    if !tag.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
        return Err(TagRejection::InvalidChar);
    }
    if tag.len() > limits.max_tag_bytes {
        return Err(TagRejection::TooLong);
    }
    // Dispatch on the first byte: this runs for every tag of every tagged response.
    let starts = |p: &str| {
        tag.len() >= p.len() && tag.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
    };
    let reserved = match tag.as_bytes()[0].to_ascii_lowercase() {
        b'*' => tag.len() == 1,
        b'h' => starts("host:"),
        b'u' => starts("url:"),
        b'p' => starts("prefix:"),
        _ => false,
    };
    if reserved {
        return Err(TagRejection::Reserved);
    }
    Ok(tag)
}
