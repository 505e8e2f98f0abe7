//! Two small layers every origin behind a cache wants, whatever else it uses:
//!
//! * [`NoStoreOnErrorLayer`]: `Cache-Control: no-store` on every 4xx/5xx answer — the
//!   app's own errors, axum's extractor rejections (a bad `Path<i64>`, 415 on a wrong
//!   content type, 422 on bad JSON), 405, and the fallback 404 — so an edge never keeps an
//!   error it was not explicitly told to keep. It replaces any `Cache-Control` an error
//!   carries: caching an error must be a decision made elsewhere, not a leftover header.
//! * [`RequestIdLayer`]: every request gets an `x-request-id` (the client's when it is a
//!   sane token, else a new one), visible to handlers as a [`RequestId`] extension, echoed
//!   on the response, and current on the thread while the request is polled
//!   ([`current_request_id`]): `DbCapture::init_logging`'s format ([`RequestIdFormat`])
//!   ends every log line of the request with `request_id=…`. No span by default: a span
//!   per request cost more than every other layer together (creation, then enter and
//!   exit on each poll); [`RequestIdLayer::with_span`] opens one for subscribers that
//!   want it.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{header, HeaderName, HeaderValue, Request, Response};
use tower::{Layer, Service};

/// Header carrying the request id.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Whether an answer with this status must not be stored by a cache.
pub fn is_error_status(status: http::StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}

/// Layer adding `Cache-Control: no-store` to every error answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoStoreOnErrorLayer;

impl NoStoreOnErrorLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for NoStoreOnErrorLayer {
    type Service = NoStoreOnError<S>;
    fn layer(&self, inner: S) -> Self::Service {
        NoStoreOnError { inner }
    }
}

/// Service of [`NoStoreOnErrorLayer`].
#[derive(Debug, Clone)]
pub struct NoStoreOnError<S> {
    inner: S,
}

pin_project_lite::pin_project! {
    /// Future of [`NoStoreOnError`].
    pub struct NoStoreOnErrorFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> Future for NoStoreOnErrorFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut res = std::task::ready!(self.project().inner.poll(cx))?;
        if is_error_status(res.status()) {
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        Poll::Ready(Ok(res))
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for NoStoreOnError<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = NoStoreOnErrorFuture<S::Future>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        NoStoreOnErrorFuture {
            inner: self.inner.call(req),
        }
    }
}

/// The id of the current request (a request extension set by [`RequestIdLayer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// An incoming id is kept only when it is 1–128 characters of `[A-Za-z0-9._:-]`: anything
/// else (log injection, huge values) is replaced.
pub fn accept_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A new id from a per-process prefix and a sequence number: unique within the process,
/// and across restarts and replicas thanks to the prefix (start time and process id).
pub fn new_request_id(prefix: &str, sequence: u64) -> String {
    let mut digits = [0u8; 16];
    let digits = hex_digits(sequence, &mut digits);
    let mut id = String::with_capacity(prefix.len() + 1 + digits.len());
    id.push_str(prefix);
    id.push('-');
    id.extend(digits.iter().map(|&d| char::from(d)));
    id
}

/// `sequence` in lowercase hex, without `core::fmt` (~1k instructions, the largest part
/// of the layer once it opened no span).
fn hex_digits(sequence: u64, digits: &mut [u8; 16]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = digits.len();
    let mut rest = sequence;
    loop {
        start -= 1;
        digits[start] = HEX[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    &digits[start..]
}

/// Room for a generated id: the layer's prefix (at most 24 characters) and up to 16 hex
/// digits, with some to spare.
const MAX_ID: usize = 64;

/// A generated id's bytes, inline: the `x-request-id` value is made from them once
/// ([`bytes::Bytes::from_owner`]: one allocation, clones count references) instead of a
/// `String`, a copy of it into a `HeaderValue` and a second allocation at its first clone.
struct IdBytes {
    buf: [u8; MAX_ID],
    len: u8,
}

impl AsRef<[u8]> for IdBytes {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl IdBytes {
    fn new() -> Self {
        Self {
            buf: [0; MAX_ID],
            len: 0,
        }
    }

    /// [`new_request_id`] written inline. `prefix` is the layer's: ASCII hex, at most 24
    /// characters (cut to fit otherwise, on a character boundary).
    fn generated(&mut self, prefix: &str, sequence: u64) {
        let mut digits = [0u8; 16];
        let digits = hex_digits(sequence, &mut digits);
        let mut cut = prefix.len().min(MAX_ID - 1 - digits.len());
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut len = 0;
        for part in [&prefix.as_bytes()[..cut], b"-", digits] {
            self.buf[len..len + part.len()].copy_from_slice(part);
            len += part.len();
        }
        self.len = len as u8;
    }

    fn as_str(&self) -> &str {
        // Whole characters only: the prefix is cut on a boundary.
        std::str::from_utf8(self.as_ref()).unwrap_or("invalid")
    }
}

/// Layer giving every request an id (see the module docs).
#[derive(Debug, Clone)]
pub struct RequestIdLayer {
    prefix: Arc<str>,
    sequence: Arc<AtomicU64>,
    span: bool,
}

impl Default for RequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIdLayer {
    /// The layer, its id prefix taken from the start time and process id. It opens no
    /// span: the id is current on the thread while the request is polled
    /// ([`current_request_id`]) and [`RequestIdFormat`] (used by
    /// `DbCapture::init_logging`) adds it to each log line.
    pub fn new() -> Self {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Self {
            prefix: format!("{:x}{:x}", started, std::process::id()).into(),
            sequence: Arc::new(AtomicU64::new(0)),
            span: false,
        }
    }

    /// Also open an INFO `request` span with a `request_id` field around each request,
    /// for a subscriber of your own that shows span fields (`fmt`'s default format,
    /// OpenTelemetry bridges, JSON with `with_current_span`). It costs far more than the
    /// id itself (creating the span, entering and exiting it on every poll: about 18k
    /// instructions a request under a `fmt` subscriber); [`RequestIdFormat`] then leaves
    /// the id to the span instead of writing it twice.
    pub fn with_span(mut self) -> Self {
        self.span = true;
        self
    }

    /// A new id: its header value (the id's bytes in one allocation, shared by the
    /// request's header, the response's and the log lines) and the [`RequestId`] text.
    fn generate(&self) -> (HeaderValue, String) {
        let mut id = IdBytes::new();
        id.generated(&self.prefix, self.sequence.fetch_add(1, Ordering::Relaxed));
        let text = id.as_str().to_owned();
        // Generated ids are `[0-9a-f-]` only: always a valid header value.
        let value = HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(id))
            .unwrap_or(HeaderValue::from_static("invalid"));
        (value, text)
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service of [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
    layer: RequestIdLayer,
}

/// The id current on this thread while a request is polled.
struct Current {
    id: HeaderValue,
    /// A `request` span carries the id ([`RequestIdLayer::with_span`]): formatters leave
    /// it out.
    in_span: bool,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// Runs `f` with `current` as the thread's current one ([`crate::poll_local`]).
fn with_current<T>(current: &mut Option<Current>, f: impl FnOnce() -> T) -> T {
    crate::poll_local::with_current(&CURRENT, current, f)
}

/// The id of the request being polled on this thread (inside [`RequestIdLayer`]), if
/// any. Work a handler hands to `tokio::spawn` runs outside the request: wrap it in
/// [`in_current_request`](crate::in_current_request) to keep the id.
pub fn current_request_id() -> Option<RequestId> {
    current_id(false).and_then(|v| v.to_str().ok().map(|s| RequestId(s.to_owned())))
}

/// The current id as its header value; `None` too when `unless_in_span` and a span
/// already carries it.
fn current_id(unless_in_span: bool) -> Option<HeaderValue> {
    CURRENT.with(|c| {
        c.try_borrow().ok().and_then(|c| {
            c.as_ref()
                .filter(|c| !(unless_in_span && c.in_span))
                .map(|c| c.id.clone())
        })
    })
}

/// The current request's id, taken along by [`crate::in_current_request`] into work a
/// handler spawns.
pub(crate) struct CarriedId(Option<Current>);

impl CarriedId {
    /// The id current on this thread now, if any.
    pub(crate) fn current() -> Self {
        Self(CURRENT.with(|c| {
            c.try_borrow().ok().and_then(|c| {
                // The request's span does not follow the work: the format adds the id.
                c.as_ref().map(|c| Current {
                    id: c.id.clone(),
                    in_span: false,
                })
            })
        }))
    }

    /// Runs `f` with the carried id current (outside a request: just runs `f`).
    pub(crate) fn enter<T>(&mut self, f: impl FnOnce() -> T) -> T {
        if self.0.is_some() {
            with_current(&mut self.0, f)
        } else {
            f()
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`RequestIdService`].
    pub struct RequestIdFuture<F> {
        #[pin]
        inner: F,
        // Always `Some` until the response is ready; moved into the thread-local while
        // the inner future is polled.
        current: Option<Current>,
        span: Option<tracing::Span>,
    }
}

impl<F, B, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner = this.inner;
        let poll = {
            let _entered = this.span.as_ref().map(tracing::Span::enter);
            with_current(this.current, || inner.poll(cx))
        };
        let mut res = std::task::ready!(poll)?;
        if let Some(current) = this.current.take() {
            res.headers_mut().insert(REQUEST_ID_HEADER, current.id);
        }
        Poll::Ready(Ok(res))
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for RequestIdService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }
    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        // One lookup of the request's header: a sane incoming id is kept as it is (its
        // value shared, not copied); a missing or rejected one is replaced.
        let (value, id) = match req.headers_mut().entry(REQUEST_ID_HEADER) {
            header::Entry::Occupied(mut entry) => {
                let incoming = entry
                    .get()
                    .to_str()
                    .ok()
                    .filter(|v| accept_request_id(v))
                    .map(str::to_owned);
                match incoming {
                    // Only the first of repeated headers counts (as `get` reads them).
                    Some(id) if entry.iter().nth(1).is_none() => (entry.get().clone(), id),
                    Some(id) => {
                        let value = entry.get().clone();
                        entry.insert(value.clone());
                        (value, id)
                    }
                    None => {
                        let (value, id) = self.layer.generate();
                        entry.insert(value.clone());
                        (value, id)
                    }
                }
            }
            header::Entry::Vacant(entry) => {
                let (value, id) = self.layer.generate();
                entry.insert(value.clone());
                (value, id)
            }
        };
        let span = self
            .layer
            .span
            .then(|| tracing::info_span!("request", request_id = %id));
        req.extensions_mut().insert(RequestId(id));
        RequestIdFuture {
            inner: self.inner.call(req),
            current: Some(Current {
                id: value,
                in_span: span.is_some(),
            }),
            span,
        }
    }
}

#[cfg(feature = "db")]
pub use request_id_format::RequestIdFormat;

/// The `fmt` side (tracing-subscriber's `fmt`, which the `db` feature brings).
#[cfg(feature = "db")]
mod request_id_format {
    use std::any::TypeId;
    use std::fmt;

    use tracing::{Event, Subscriber};
    use tracing_subscriber::fmt::format::{Format, Full, Json, Writer};
    use tracing_subscriber::fmt::time::SystemTime;
    use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
    use tracing_subscriber::registry::LookupSpan;

    /// An event format for `tracing_subscriber::fmt` that adds the id of
    /// [`RequestIdLayer`](super::RequestIdLayer) to each line emitted while a request is
    /// polled (no span needed). Text formats (full, compact, pretty) end the line with
    /// ` request_id=<id>`; the JSON format gets a top-level `"request_id":"<id>"` member.
    /// `DbCapture::init_logging` uses it; with a `fmt` layer of your own:
    /// `fmt::layer().event_format(RequestIdFormat::default())`,
    /// `RequestIdFormat::new(fmt::format().compact())` to keep your format's options, or
    /// for JSON `fmt::layer().json().event_format(RequestIdFormat::new(fmt::format().json()))`
    /// (`.json()` first: it also sets the JSON field formatter).
    /// When the layer also opens its `request` span ([`RequestIdLayer::with_span`](super::RequestIdLayer::with_span)),
    /// the span's fields already show the id and nothing is added.
    #[derive(Debug, Clone)]
    pub struct RequestIdFormat<F = Full, T = SystemTime> {
        // The writer handed to the inner format cannot carry the `fmt` layer's ANSI
        // setting (its setter is private to tracing-subscriber): one format per setting.
        plain: Format<F, T>,
        coloured: Format<F, T>,
    }

    impl Default for RequestIdFormat {
        fn default() -> Self {
            Self::new(Format::default())
        }
    }

    impl<F: Clone, T: Clone> RequestIdFormat<F, T> {
        /// `format`, with the request id added to each line of a request.
        pub fn new(format: Format<F, T>) -> Self {
            Self {
                plain: format.clone().with_ansi(false),
                coloured: format.with_ansi(true),
            }
        }
    }

    impl<S, N, F, T> FormatEvent<S, N> for RequestIdFormat<F, T>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
        F: 'static,
        Format<F, T>: FormatEvent<S, N>,
    {
        fn format_event(
            &self,
            ctx: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &Event<'_>,
        ) -> fmt::Result {
            let format = if writer.has_ansi_escapes() {
                &self.coloured
            } else {
                &self.plain
            };
            let Some(id) = super::current_id(true) else {
                return format.format_event(ctx, writer, event);
            };
            // Accepted ids are `[A-Za-z0-9._:-]` only: nothing to escape, in text or JSON.
            let id = id.to_str().unwrap_or("invalid");
            let json = TypeId::of::<F>() == TypeId::of::<Json>();
            let mut held = HoldLineEnd::new(&mut writer, json);
            format.format_event(ctx, Writer::new(&mut held), event)?;
            held.finish(id)
        }
    }

    /// Passes a formatted line through to `out` but holds back its end: a final
    /// newline and, for a JSON line (`object`), the `}` that closes the object, so
    /// that [`finish`](Self::finish) puts the request id inside the line (text:
    /// ` request_id=…` before the newline; JSON: a last `"request_id"` member).
    /// Nothing is buffered beyond those two characters.
    struct HoldLineEnd<'a, 'w> {
        out: &'a mut Writer<'w>,
        object: bool,
        brace: bool,
        newline: bool,
        /// The last character passed through that is not whitespace (`{` means
        /// the object is empty so far and the id needs no comma).
        last: Option<char>,
    }

    impl<'a, 'w> HoldLineEnd<'a, 'w> {
        fn new(out: &'a mut Writer<'w>, object: bool) -> Self {
            Self {
                out,
                object,
                brace: false,
                newline: false,
                last: None,
            }
        }

        /// Writes what is held back, in its order.
        fn release(&mut self) -> fmt::Result {
            if std::mem::take(&mut self.brace) {
                self.out.write_char('}')?;
                self.last = Some('}');
            }
            if std::mem::take(&mut self.newline) {
                self.out.write_char('\n')?;
            }
            Ok(())
        }

        /// Ends the line with the request id. A JSON line that turned out not to
        /// end in an object is left as it was.
        fn finish(mut self, id: &str) -> fmt::Result {
            let newline = std::mem::take(&mut self.newline);
            if !self.object {
                write!(self.out, " request_id={id}")?;
            } else if std::mem::take(&mut self.brace) {
                let separator = if self.last == Some('{') { "" } else { "," };
                write!(self.out, "{separator}\"request_id\":\"{id}\"}}")?;
            }
            if newline {
                self.out.write_char('\n')?;
            }
            Ok(())
        }
    }

    impl fmt::Write for HoldLineEnd<'_, '_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let (rest, newline) = match s.strip_suffix('\n') {
                Some(rest) => (rest, true),
                None => (s, false),
            };
            let (rest, brace) = match rest.strip_suffix('}') {
                Some(inner) if self.object => (inner, true),
                _ => (rest, false),
            };
            if rest.is_empty() && !brace && (!newline || !self.newline) {
                // Empty, or the newline after a held `}`: keep holding.
                self.newline |= newline;
                return Ok(());
            }
            self.release()?;
            if !rest.is_empty() {
                self.out.write_str(rest)?;
                if let Some(c) = rest.trim_end().chars().next_back() {
                    self.last = Some(c);
                }
            }
            self.brace = brace;
            self.newline = newline;
            Ok(())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::fmt::Write as _;

        /// `line` written in the pieces that cutting it at `cuts` gives, then
        /// finished with the id `r1`.
        fn through(line: &str, object: bool, cuts: &[usize]) -> String {
            let mut out = String::new();
            let mut writer = Writer::new(&mut out);
            let mut held = HoldLineEnd::new(&mut writer, object);
            let mut start = 0;
            for &cut in cuts.iter().chain([line.len()].iter()) {
                held.write_str(&line[start..cut]).expect("writes");
                start = cut;
            }
            held.finish("r1").expect("finishes");
            out
        }

        #[test]
        fn the_id_lands_inside_the_line_however_the_line_is_cut() {
            let cases = [
                (
                    r#"{"a":{"b":1},"m":"x}"}"#.to_owned() + "\n",
                    true,
                    r#"{"a":{"b":1},"m":"x}","request_id":"r1"}"#.to_owned() + "\n",
                ),
                (
                    "{}\n".to_owned(),
                    true,
                    r#"{"request_id":"r1"}"#.to_owned() + "\n",
                ),
                ("{ }".to_owned(), true, r#"{ "request_id":"r1"}"#.to_owned()),
                ("not json\n".to_owned(), true, "not json\n".to_owned()),
                (
                    "INFO msg {x}\n".to_owned(),
                    false,
                    "INFO msg {x} request_id=r1\n".to_owned(),
                ),
                (
                    "a\n\nb\n".to_owned(),
                    false,
                    "a\n\nb request_id=r1\n".to_owned(),
                ),
            ];
            for (line, object, expected) in cases {
                let n = line.len();
                for i in 0..=n {
                    for j in i..=n {
                        assert_eq!(
                            through(&line, object, &[i, j]),
                            expected,
                            "{line:?} cut at {i}, {j}"
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_incoming_ids_are_kept() {
        assert!(accept_request_id("0f3a-17.b:c_d"));
        assert!(!accept_request_id(""));
        assert!(!accept_request_id("a b"));
        assert!(!accept_request_id("x\nFAKE LOG LINE"));
        assert!(!accept_request_id(&"a".repeat(129)));
    }

    #[test]
    fn new_ids_are_the_prefix_and_the_sequence_in_hex() {
        for n in [0, 1, 9, 10, 15, 16, 255, 0xdead_beef, u64::MAX] {
            assert_eq!(new_request_id("1a2b", n), format!("1a2b-{n:x}"));
        }
    }

    #[test]
    fn the_layer_generates_the_same_ids_as_new_request_id() {
        for n in [0, 1, 9, 10, 15, 16, 255, 0xdead_beef, u64::MAX] {
            let mut id = IdBytes::new();
            id.generated("1a2b", n);
            assert_eq!(id.as_str(), new_request_id("1a2b", n));
        }
        let layer = RequestIdLayer::new();
        for n in 0..3 {
            let (value, text) = layer.generate();
            assert_eq!(text, new_request_id(&layer.prefix, n));
            assert_eq!(value.to_str().ok(), Some(text.as_str()));
        }
    }

    #[test]
    fn new_ids_differ_by_sequence() {
        assert_ne!(new_request_id("p", 1), new_request_id("p", 2));
        assert!(accept_request_id(&new_request_id("abc", 255)));
    }
}
