//! The native test harness shared by the pipeline test files: a pipeline on
//! the in-memory platform whose origins answer by a per-test script, with the
//! clock and the origins under the test's control.
#![allow(dead_code)] // each test file uses a different part of it

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use cachefront::config::Config;
use cachefront::origin::pool::OriginConfig;
pub use cachefront::pipeline::Handled;
use cachefront::pipeline::{IsolateState, Pipeline};
use cachefront::platform::memory::{MemoryAssets, MemoryOrigin, MemoryPlatform};
use cachefront::platform::OriginError;
use cachefront::Body;
use futures::executor::block_on;
use http::{Request, Response};

pub const T0: u64 = 1_790_000_000_000;

/// What a stand-in origin answers: status, headers, body.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// An origin whose every page is public for 10 minutes and tagged `pages`; the body
/// names the path and the how-many-th origin request it was (`/x v1`).
pub fn cached_pages(vars: &[(&str, &str)]) -> Harness {
    Harness::with_vars(vars, |req, n| {
        reply(
            200,
            &[("cache-control", "max-age=600"), ("cache-tag", "pages")],
            &format!("{} v{n}", req.uri().path()),
        )
    })
}

pub fn reply(
    status: u16,
    headers: &[(&'static str, &str)],
    body: &str,
) -> Result<Reply, OriginError> {
    Ok(Reply {
        status,
        headers: headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        body: body.to_owned(),
    })
}

type Script = dyn Fn(&OriginConfig, &Request<Body>, u32) -> Result<Reply, OriginError>;

pub struct Harness {
    pub pipeline: Pipeline<MemoryPlatform>,
    /// Calls per "path" (any origin) and per "origin path".
    calls: Rc<RefCell<HashMap<String, u32>>>,
}

impl Harness {
    /// One origin named `primary`; the script sees (request, call number for the path).
    pub fn new(
        script: impl Fn(&Request<Body>, u32) -> Result<Reply, OriginError> + 'static,
    ) -> Self {
        Self::with_vars(&[], script)
    }

    pub fn with_vars(
        vars: &[(&str, &str)],
        script: impl Fn(&Request<Body>, u32) -> Result<Reply, OriginError> + 'static,
    ) -> Self {
        let origins = r#"[{"name":"primary","url":"http://127.0.0.1:3000"}]"#;
        Self::with_origins(origins, vars, move |_, req, n| script(req, n))
    }

    /// Any `ORIGINS`; the script also sees which origin was asked.
    pub fn with_origins(
        origins: &str,
        vars: &[(&str, &str)],
        script: impl Fn(&OriginConfig, &Request<Body>, u32) -> Result<Reply, OriginError> + 'static,
    ) -> Self {
        let mut all: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        all.insert("ORIGINS".into(), origins.to_owned());
        let config = Config::from_vars(|name| all.get(name).cloned()).expect("valid config");
        let calls: Rc<RefCell<HashMap<String, u32>>> = Rc::default();
        let counter = Rc::clone(&calls);
        let script: Rc<Script> = Rc::new(script);
        let origin = MemoryOrigin::new(move |origin, req| {
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            let n = {
                let mut calls = counter.borrow_mut();
                *calls.entry(format!("{} {path}", origin.name)).or_insert(0) += 1;
                let n = calls.entry(path).or_insert(0);
                *n += 1;
                *n
            };
            let r = script(origin, req, n)?;
            let mut builder = Response::builder().status(r.status);
            for (k, v) in &r.headers {
                builder = builder.header(*k, v.as_str());
            }
            Ok(builder.body(Body::from(r.body)).expect("response"))
        });
        let assets = MemoryAssets::new([(
            "/index.html",
            "text/html",
            Body::from_static(b"<h1>home</h1>"),
        )]);
        let isolate = IsolateState::new(&config);
        Self {
            pipeline: Pipeline::new(config, MemoryPlatform::new(origin, assets, T0), isolate),
            calls,
        }
    }

    pub fn send(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> Handled {
        let mut handled = self.send_streamed(method, uri, headers, body);
        handled.response = self.pipeline.platform().streams.resolve(handled.response);
        handled
    }

    /// Like [`Self::send`], but a streamed body is left as a stream (see
    /// `cachefront::platform::body`) for the test to inspect and read.
    pub fn send_streamed(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> Handled {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("https://shop.example{uri}"));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let request = builder
            .body(Body::from_static(body.as_bytes()))
            .expect("request");
        let handled = block_on(self.pipeline.handle(request));
        block_on(self.pipeline.platform().tasks.run_all());
        handled
    }

    /// Sends a request whose body is a streamed upload of `bytes` (as the
    /// adapter hands over one above `STREAM_BODIES_ABOVE_BYTES`).
    pub fn send_upload(&self, method: &str, uri: &str, bytes: Vec<u8>) -> Handled {
        let len = bytes.len() as u64;
        let upload = self
            .pipeline
            .platform()
            .streams
            .start(bytes.into(), Some(len));
        let mut request = Request::builder()
            .method(method)
            .uri(format!("https://shop.example{uri}"))
            .body(Body::new())
            .expect("request");
        request.extensions_mut().insert(upload);
        let mut handled = block_on(self.pipeline.handle(request));
        block_on(self.pipeline.platform().tasks.run_all());
        handled.response = self.pipeline.platform().streams.resolve(handled.response);
        handled
    }

    /// Streams started but neither read nor dropped: a leak when a request is done.
    pub fn open_streams(&self) -> usize {
        self.pipeline.platform().streams.open()
    }

    pub fn get(&self, uri: &str) -> Handled {
        self.send("GET", uri, &[], "")
    }

    pub fn get_with(&self, uri: &str, headers: &[(&str, &str)]) -> Handled {
        self.send("GET", uri, headers, "")
    }

    pub fn advance(&self, secs: u64) {
        self.pipeline.platform().clock.advance_secs(secs);
    }

    /// Origin calls for a path, over all origins.
    pub fn origin_calls(&self, path: &str) -> u32 {
        self.calls.borrow().get(path).copied().unwrap_or(0)
    }

    /// Calls that reached one origin for a path.
    pub fn calls_to(&self, origin: &str, path: &str) -> u32 {
        self.calls
            .borrow()
            .get(&format!("{origin} {path}"))
            .copied()
            .unwrap_or(0)
    }

    pub fn origin(&self) -> &MemoryOrigin {
        &self.pipeline.platform().origin
    }
}

/// The value of a header the response must carry: a missing one fails the
/// test here (an empty value is returned as ""), so "absent" and "empty"
/// cannot be confused. Check absence with [`absent`].
pub fn header<'a>(h: &'a Handled, name: &str) -> &'a str {
    match h.response.headers().get(name) {
        Some(value) => value
            .to_str()
            .unwrap_or_else(|_| panic!("header {name} is not visible ASCII: {value:?}")),
        None => panic!(
            "the response has no {name} header; it has {:?}",
            h.response.headers().keys().collect::<Vec<_>>()
        ),
    }
}

/// Whether the response carries no `name` header at all.
pub fn absent(h: &Handled, name: &str) -> bool {
    !h.response.headers().contains_key(name)
}

pub fn status_of(h: &Handled) -> &str {
    header(h, "cache-status")
}

pub fn body(h: &Handled) -> String {
    String::from_utf8_lossy(h.response.body()).into_owned()
}
