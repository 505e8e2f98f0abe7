//! Bodies too large to hold: streams the platform keeps and the core only
//! routes.
//!
//! The core handles bodies as whole byte buffers ([`crate::Body`]). A body
//! above the configured threshold (`STREAM_BODIES_ABOVE_BYTES`) is not read
//! into memory at all: the adapter leaves it in the runtime as a stream and
//! marks the response with a [`Streamed`] extension, whose byte buffer stays
//! empty. The core then decides what happens to that stream without seeing
//! its bytes, through [`crate::platform::ports::BodyStreams`]: hand it to the client,
//! split it between the client and the Cache API ([`BodyStreams::tee`]), cut
//! a byte range out of it ([`BodyStreams::slice`]), or drop it
//! ([`BodyStreams::cancel`]). A streamed body never enters the memory or KV
//! tier and is never rewritten.
//!
//! [`BodyStreams::tee`]: crate::platform::ports::BodyStreams::tee
//! [`BodyStreams::slice`]: crate::platform::ports::BodyStreams::slice
//! [`BodyStreams::cancel`]: crate::platform::ports::BodyStreams::cancel

use http::{header, HeaderMap, Request, Response};

use crate::Body;

/// Marks a response whose body is a platform stream (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed {
    /// The platform's handle for the stream (unique within one request).
    pub id: u64,
    /// The body's length when known (`Content-Length`, or stored metadata).
    pub len: Option<u64>,
}

/// The stream marker of a response, if its body is streamed.
pub fn streamed(response: &Response<Body>) -> Option<Streamed> {
    response.extensions().get::<Streamed>().cloned()
}

/// The stream marker of a request whose body is streamed (an upload above
/// the threshold).
pub fn streamed_request(request: &Request<Body>) -> Option<Streamed> {
    request.extensions().get::<Streamed>().cloned()
}

/// Marks `response` as carrying the stream `stream`; its byte buffer is emptied.
pub fn mark(response: &mut Response<Body>, stream: Streamed) {
    *response.body_mut() = Body::new();
    response.extensions_mut().insert(stream);
}

/// Removes and returns the stream marker of `response`, if any.
pub fn unmark(response: &mut Response<Body>) -> Option<Streamed> {
    response.extensions_mut().remove::<Streamed>()
}

/// How an adapter should take in a body, given what its headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// Known to fit: read it whole.
    Buffer,
    /// Known to be larger than the threshold: leave it as a stream.
    Stream,
    /// Length unknown: read up to this many bytes; if the body goes on past
    /// them, stream what was read followed by the rest.
    ReadUpTo(u64),
}

/// The plan for a body of `content_length` bytes (if the header said) when
/// bodies above `stream_above` bytes are streamed.
pub fn plan(content_length: Option<u64>, stream_above: u64) -> BodyPlan {
    match content_length {
        Some(len) if len <= stream_above => BodyPlan::Buffer,
        Some(_) => BodyPlan::Stream,
        None => BodyPlan::ReadUpTo(stream_above),
    }
}

/// The `Content-Length` of a message, when it is one valid number.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = values.next()?.to_str().ok()?.trim().parse::<u64>().ok()?;
    // Several differing values make the length unknown (RFC 9110 §8.6).
    for other in values {
        if other.to_str().ok()?.trim().parse::<u64>().ok()? != first {
            return None;
        }
    }
    Some(first)
}

/// The part of a chunk that lies in the byte window `start..end` (end
/// exclusive) of a stream, when the chunk starts at stream offset `offset`
/// and holds `chunk_len` bytes. `None` when the chunk is entirely outside.
pub fn window(offset: u64, chunk_len: u64, start: u64, end: u64) -> Option<(usize, usize)> {
    let chunk_end = offset.saturating_add(chunk_len);
    if chunk_end <= start || offset >= end || chunk_len == 0 {
        return None;
    }
    let from = start.saturating_sub(offset);
    let to = end.min(chunk_end) - offset;
    Some((usize::try_from(from).ok()?, usize::try_from(to).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn known_small_bodies_are_buffered_and_known_large_ones_streamed() {
        assert_eq!(plan(Some(0), 10), BodyPlan::Buffer);
        assert_eq!(plan(Some(10), 10), BodyPlan::Buffer);
        assert_eq!(plan(Some(11), 10), BodyPlan::Stream);
    }

    #[test]
    fn bodies_of_unknown_length_are_read_up_to_the_threshold() {
        assert_eq!(plan(None, 10), BodyPlan::ReadUpTo(10));
    }

    #[test]
    fn content_length_needs_one_valid_value() {
        let mut headers = HeaderMap::new();
        assert_eq!(content_length(&headers), None);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("42"));
        assert_eq!(content_length(&headers), Some(42));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("42"));
        assert_eq!(content_length(&headers), Some(42));
        headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("43"));
        assert_eq!(content_length(&headers), None);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("-1"));
        assert_eq!(content_length(&headers), None);
    }

    #[test]
    fn window_cuts_each_chunk_to_the_requested_bytes() {
        // Stream of chunks [0..4) [4..8) [8..12); window 5..10.
        assert_eq!(window(0, 4, 5, 10), None);
        assert_eq!(window(4, 4, 5, 10), Some((1, 4)));
        assert_eq!(window(8, 4, 5, 10), Some((0, 2)));
        assert_eq!(window(12, 4, 5, 10), None);
        // A window inside one chunk, and an empty chunk.
        assert_eq!(window(0, 100, 5, 10), Some((5, 10)));
        assert_eq!(window(5, 0, 5, 10), None);
    }

    #[test]
    fn window_pieces_reassemble_exactly_the_range() {
        let data: Vec<u8> = (0..=255).collect();
        for chunk in [1usize, 3, 7, 64, 300] {
            for (start, end) in [(0u64, 256u64), (10, 11), (100, 200), (255, 256)] {
                let mut out = Vec::new();
                for (i, piece) in data.chunks(chunk).enumerate() {
                    let offset = (i * chunk) as u64;
                    if let Some((from, to)) = window(offset, piece.len() as u64, start, end) {
                        out.extend_from_slice(&piece[from..to]);
                    }
                }
                assert_eq!(out, &data[start as usize..end as usize], "chunk {chunk}");
            }
        }
    }

    #[test]
    fn marking_empties_the_buffer_and_unmarking_returns_the_stream() {
        let mut response = Response::new(Body::from_static(b"abc"));
        let stream = Streamed {
            id: 7,
            len: Some(3),
        };
        mark(&mut response, stream.clone());
        assert!(response.body().is_empty());
        assert_eq!(streamed(&response), Some(stream.clone()));
        assert_eq!(unmark(&mut response), Some(stream));
        assert_eq!(streamed(&response), None);
    }
}
