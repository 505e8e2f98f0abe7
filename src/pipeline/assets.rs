//! The asset store (the build's manifest) and what the edge does to origin
//! bodies before they are stored.

use std::rc::Rc;

use http::{Request, Response, StatusCode, Uri};

use crate::assets::edge::{self as edge_assets, HtmlOutcome, PageTagging};
use crate::assets::origin_minify::MinifyOutcome;
use crate::assets::Manifest;
use crate::platform::body;
use crate::platform::{Platform, StaticAssets};
use crate::semantics::cache_status::CacheStatus;
use crate::Body;

use super::{Pipeline, Trace};

impl<P: Platform + Clone + 'static> Pipeline<P> {
    /// The asset store's answer for a GET or HEAD, decorated for the edge;
    /// `None` when the path is not an asset. The store is asked once per
    /// path and isolate: its 404s are remembered, so repeated origin paths
    /// skip that subrequest.
    pub(super) async fn serve_asset(
        &self,
        request: &Request<Body>,
        host: Option<&str>,
        trace: &mut Trace,
    ) -> Option<(Response<Body>, CacheStatus)> {
        let path = request.uri().path();
        if self.isolate.known_not_asset(path) {
            return None;
        }
        let stream_above = self.config.stream_bodies_above_bytes;
        match self.platform.assets().fetch(request, stream_above).await {
            Ok(asset) if asset.status() != StatusCode::NOT_FOUND => {
                let manifest = self.manifest(request, trace).await;
                let rules = self
                    .config
                    .purge
                    .auto_tag_rules(self.query_filter(super::rules::rule_of(request)));
                let tagging = host.map(|host| PageTagging {
                    host,
                    uri: request.uri(),
                    rules,
                });
                let asset = edge_assets::decorate_asset(
                    path,
                    asset,
                    manifest.as_deref(),
                    &self.config.assets,
                    tagging,
                );
                Some((asset, CacheStatus::asset()))
            }
            Ok(mut not_found) => {
                self.drop_stream(&mut not_found);
                self.isolate.remember_not_asset(path);
                None
            }
            Err(e) => {
                trace.warnings.push(format!("asset store failed: {e}"));
                None
            }
        }
    }

    /// What the edge does to an origin body before it is stored: HTML is
    /// rewritten against the build's manifest, scripts and stylesheets are
    /// minified. Anything that fails is kept as the origin sent it, with a
    /// warning.
    pub(super) async fn prepare_origin_body(
        &self,
        request: &Request<Body>,
        response: Response<Body>,
        trace: &mut Trace,
    ) -> Response<Body> {
        if body::streamed(&response).is_some()
            && self.config.assets.html_rewrite
            && edge_assets::is_html(response.headers())
        {
            trace.warnings.push(format!(
                "HTML above STREAM_BODIES_ABOVE_BYTES ({} bytes) streamed without rewriting",
                self.config.stream_bodies_above_bytes
            ));
        }
        let response = if edge_assets::should_rewrite(&response, &self.config.assets) {
            let manifest = self.manifest(request, trace).await;
            let page = request.uri().path().to_owned();
            let (rewritten, outcome) = edge_assets::rewrite_origin_html(
                response,
                &page,
                manifest.as_deref(),
                &self.config.assets,
            );
            if let HtmlOutcome::Kept(why) = outcome {
                trace
                    .warnings
                    .push(format!("HTML served as the origin sent it: {why}"));
            }
            rewritten
        } else {
            response
        };
        let (response, minified) =
            edge_assets::minify_origin_script(response, request.uri().path(), &self.config.assets);
        if let MinifyOutcome::Skipped { detail, .. } = minified {
            if !detail.is_empty() {
                trace
                    .warnings
                    .push(format!("script or stylesheet served as sent: {detail}"));
            }
        }
        response
    }

    /// The asset build's manifest from the asset store, read on first use.
    /// Assets only change with a deploy, which starts new isolates.
    pub(super) async fn manifest(
        &self,
        request: &Request<Body>,
        trace: &mut Trace,
    ) -> Option<Rc<Manifest>> {
        if let Some(loaded) = self.isolate.manifest.borrow().as_ref() {
            return loaded.clone();
        }
        let mut url = request.uri().clone().into_parts();
        url.path_and_query = self.config.assets.manifest_path.parse().ok();
        let mut fetch = Request::new(Body::new());
        if let Ok(uri) = Uri::from_parts(url) {
            *fetch.uri_mut() = uri;
        }
        // The manifest is parsed, so it is always read whole.
        let loaded = match self.platform.assets().fetch(&fetch, u64::MAX).await {
            Ok(response) if response.status() == StatusCode::OK => {
                match Manifest::from_json(response.body()) {
                    Ok(manifest) => Some(Rc::new(manifest)),
                    Err(e) => {
                        trace
                            .warnings
                            .push(format!("asset manifest unreadable: {e}"));
                        None
                    }
                }
            }
            Ok(_) => None,
            Err(e) => {
                trace
                    .warnings
                    .push(format!("asset manifest not loaded: {e}"));
                return None;
            }
        };
        *self.isolate.manifest.borrow_mut() = Some(loaded.clone());
        loaded
    }
}
