//! The client's view of a response: 304 for a satisfied conditional, 206
//! for a range, no body for HEAD, the current `Age`; streamed bodies are
//! cut or dropped through the platform.

use http::header;
use http::{HeaderValue, Method, Request, Response, StatusCode};

use crate::platform::body::{self, Streamed};
use crate::platform::{BodyStreams, Platform};
use crate::semantics::conditional;
use crate::semantics::range;
use crate::Body;

use super::{Pipeline, ORIGIN_HEADER};

impl<P: Platform + Clone + 'static> Pipeline<P> {
    /// A response as this client should see it: a 304 for a satisfied
    /// conditional, a 206 for a range of a full response, no body for HEAD, and
    /// the current `Age` for stored responses. A streamed body is cut or
    /// dropped through the platform, never read.
    pub(super) fn client_view(
        &self,
        request: &Request<Body>,
        mut response: Response<Body>,
        age_secs: Option<u64>,
    ) -> Response<Body> {
        if let Some(age) = age_secs {
            if let Ok(value) = HeaderValue::from_str(&age.to_string()) {
                response.headers_mut().insert(header::AGE, value);
            }
        }
        let success = response.status().is_success();
        if success
            && conditional::is_conditional(request.headers())
            && conditional::not_modified(request.headers(), response.headers())
        {
            self.drop_stream(&mut response);
            let mut not_modified = conditional::not_modified_response(&response);
            if let Some(age) = response.headers().get(header::AGE) {
                not_modified.headers_mut().insert(header::AGE, age.clone());
            }
            if let Some(origin) = response.headers().get(ORIGIN_HEADER) {
                not_modified
                    .headers_mut()
                    .insert(ORIGIN_HEADER, origin.clone());
            }
            return not_modified;
        }
        if request.method() == Method::HEAD {
            self.drop_stream(&mut response);
            *response.body_mut() = Body::new();
            return response;
        }
        if request.method() == Method::GET && response.status() == StatusCode::OK {
            response = match body::streamed(&response) {
                None => range::apply(request.headers(), response),
                Some(stream) => self.stream_range(request.headers(), response, stream),
            };
        }
        response
    }

    /// Applies a client's `Range` to a full 200 whose body is streamed. A body
    /// of unknown length is served whole (RFC 9110 lets a server ignore Range).
    pub(super) fn stream_range(
        &self,
        request: &http::HeaderMap,
        response: Response<Body>,
        stream: Streamed,
    ) -> Response<Body> {
        let Some(len) = stream.len else {
            return response;
        };
        let answer = range::requested(request, response.status(), response.headers(), len);
        let (mut parts, _) = response.into_parts();
        match answer {
            range::RangeAnswer::Full => Response::from_parts(parts, Body::new()),
            range::RangeAnswer::Partial { start, end } => {
                range::to_partial(&mut parts, start, end, len);
                let piece = self.platform.streams().slice(stream, start, end + 1);
                let mut out = Response::from_parts(parts, Body::new());
                body::mark(
                    &mut out,
                    Streamed {
                        len: Some(end + 1 - start),
                        ..piece
                    },
                );
                out
            }
            range::RangeAnswer::Unsatisfiable => {
                parts.extensions.remove::<Streamed>();
                self.platform.streams().cancel(stream);
                range::to_unsatisfiable(&mut parts, len);
                Response::from_parts(parts, Body::new())
            }
        }
    }

    /// Drops the streamed body of a response that will not be sent whole.
    pub(super) fn drop_stream(&self, response: &mut Response<Body>) {
        if let Some(stream) = body::unmark(response) {
            self.platform.streams().cancel(stream);
        }
    }
}
