//! Request entry: the operator endpoints first, then the shaped request is
//! admitted (host, key, bypass), the memory tier and the asset store are
//! asked, and the request goes to the cache or straight to the origin.

use http::header;
use http::{Method, Request, Response};

use crate::error::EdgeError;
use crate::origin::request::request_host;
use crate::origin::shaping;
use crate::platform::body;
use crate::platform::Platform;
use crate::semantics::cache_status::{CacheStatus, Forward, Outcome};
use crate::semantics::policy::RequestDirectives;
use crate::Body;

use super::lookup::{Lookup, Tiers};
use super::rules::rule_of;
use super::store::join_vary_generation;
use super::{Pipeline, Trace};
use crate::rules::CacheMode;

fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// How the cache may treat one shaped request.
struct Admission {
    host: Option<String>,
    /// GET or HEAD: the only methods a stored response may answer.
    readable: bool,
    /// Neither read from nor written to the cache, and why: a
    /// `BYPASS_COOKIES` or rule `bypass_cookies` cookie (`bypass-cookie`), or
    /// a rule's `cache = "bypass"` (`rule`).
    bypass: Option<&'static str>,
    /// The primary key, when the cache may read and write this request.
    key: Option<String>,
}

impl<P: Platform + Clone + 'static> Pipeline<P> {
    pub(super) async fn serve(
        &self,
        mut request: Request<Body>,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        if let Some(answer) = self.serve_operator(&request, trace).await {
            return answer;
        }
        // The rules see the normalised path and the query as sent; from here
        // on the key, the asset store and the origin all see the shaped URI:
        // normalised path, the query the rule (or the global list) keys.
        let matched = self.match_rules(&mut request);
        let rule = matched.as_ref().map(|m| &*m.action);
        if let Some(shaped) = shaping::shaped_uri(request.uri(), self.query_filter(rule)) {
            *request.uri_mut() = shaped;
        }
        trace.rule = matched.clone();
        let admission = self.admit(&request);
        if admission.key.is_some() {
            self.shape_for_rule(&mut request);
        }
        let directives = RequestDirectives::from_headers(request.headers());

        // A memory-tier entry was stored moments ago by this isolate, after the
        // asset store had said "not an asset": it may answer before that store
        // is asked again, which keeps the hottest hits free of subrequests.
        if let Some(key) = &admission.key {
            if let Lookup::Found(entry) = self
                .lookup(key, request.headers(), Tiers::Memory, trace)
                .await
            {
                return self
                    .serve_stored(request, key.clone(), *entry, &directives, trace)
                    .await;
            }
        }
        if admission.readable {
            let host = admission.host.as_deref();
            if let Some(asset) = self.serve_asset(&request, host, trace).await {
                return asset;
            }
        }
        let Some(host) = admission.host else {
            let err = EdgeError::BadRequest("the request has no host".into());
            return (
                err.to_response(),
                CacheStatus::forward(Forward::Bypass).with_outcome(Outcome::Error),
            );
        };
        if let Some(why) = admission.bypass {
            // A logged-in user's request (BYPASS_COOKIES or a rule's
            // bypass_cookies), or a rule's `cache = "bypass"`: neither read
            // nor written.
            let (response, status) = self.pass_through(&request, Forward::Bypass, trace).await;
            return (response, status.with_detail(why));
        }
        if !admission.readable {
            return self.serve_other_method(&request, &host, trace).await;
        }
        let Some(key) = admission.key else {
            // A GET with a body may mean anything to the origin; never share its answer.
            let (response, status) = self.pass_through(&request, Forward::Bypass, trace).await;
            return (response, status.with_detail("get-with-body"));
        };
        self.serve_cacheable(request, key, &directives, trace).await
    }

    /// Whether, and under which key, the cache may take part in a request.
    fn admit(&self, request: &Request<Body>) -> Admission {
        let method = request.method();
        let readable = method == Method::GET || method == Method::HEAD;
        let host = request_host(request);
        let rule = rule_of(request);
        let bypass = if readable && rule.is_some_and(|r| r.cache_mode() == CacheMode::Bypass) {
            Some("rule")
        } else if readable
            && (shaping::has_matching_cookie(request.headers(), &self.config.bypass_cookies)
                || rule.is_some_and(|r| r.bypass_cookie(request.headers())))
        {
            Some("bypass-cookie")
        } else {
            None
        };
        let key = match &host {
            Some(host)
                if readable
                    && bypass.is_none()
                    && request.body().is_empty()
                    && body::streamed_request(request).is_none() =>
            {
                Some(self.primary_key(host, request.uri(), request))
            }
            _ => None,
        };
        Admission {
            host,
            readable,
            bypass,
            key,
        }
    }

    /// Methods the cache does not answer: sent on, and a successful unsafe
    /// one invalidates what it may have changed.
    async fn serve_other_method(
        &self,
        request: &Request<Body>,
        host: &str,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        let (response, status) = self.pass_through(request, Forward::Method, trace).await;
        if is_unsafe(request.method())
            && (response.status().is_success() || response.status().is_redirection())
        {
            self.invalidate(request, host, response.headers()).await;
        }
        (response, status)
    }

    /// A GET or HEAD the cache may answer: from any tier, or from the origin.
    async fn serve_cacheable(
        &self,
        request: Request<Body>,
        key: String,
        directives: &RequestDirectives,
        trace: &mut Trace,
    ) -> (Response<Body>, CacheStatus) {
        match self
            .lookup(&key, request.headers(), Tiers::All, trace)
            .await
        {
            Lookup::Found(entry) => {
                self.serve_stored(request, key, *entry, directives, trace)
                    .await
            }
            Lookup::VaryMiss(..) | Lookup::Miss if directives.only_if_cached => (
                EdgeError::NotCached.to_response(),
                CacheStatus::forward(Forward::UriMiss).with_outcome(Outcome::Error),
            ),
            Lookup::VaryMiss(fields, generation) => {
                let mut request = request;
                join_vary_generation(&mut request, generation);
                self.fill(request, key, Forward::VaryMiss, None, fields, trace)
                    .await
            }
            Lookup::Miss => {
                let fwd = if request.headers().contains_key(header::RANGE) {
                    Forward::Partial
                } else {
                    Forward::UriMiss
                };
                self.fill(request, key, fwd, None, Vec::new(), trace).await
            }
        }
    }
}
