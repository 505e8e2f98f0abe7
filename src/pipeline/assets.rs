//! The asset store (the build's manifest) and what the edge does to origin
//! bodies before they are stored.

use std::rc::Rc;

use http::{Request, StatusCode, Uri};

use crate::assets::Manifest;
use crate::platform::{Platform, StaticAssets};
use crate::Body;

use super::{Pipeline, Trace};

impl<P: Platform + Clone + 'static> Pipeline<P> {
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
