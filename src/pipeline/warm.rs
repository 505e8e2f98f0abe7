//! Cache warming: fetching URLs through the pipeline as a client would.

use http::header;
use http::{HeaderValue, Request, StatusCode, Uri};
use serde::Serialize;

use crate::platform::{Clock, Platform};
use crate::purge::warming;
use crate::Body;

use super::Pipeline;

/// What warming one URL did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WarmResult {
    pub url: String,
    pub status: u16,
    pub cache: &'static str,
}

impl<P: Platform + Clone + 'static> Pipeline<P> {
    /// Fetches `urls` through the pipeline one after another, `WARM_INTERVAL_MS`
    /// apart, so each lands in the cache as a client's request would.
    pub async fn warm(&self, urls: Vec<String>) -> Vec<WarmResult> {
        let mut results = Vec::with_capacity(urls.len());
        for url in urls {
            // Paced, and never in the same millisecond as the purge that
            // asked for it (an entry fetched then would count as purged).
            self.platform
                .clock()
                .sleep(self.config.warming.interval_ms.max(1))
                .await;
            let Ok(uri) = url.parse::<Uri>() else {
                results.push(WarmResult {
                    url,
                    status: 0,
                    cache: "error",
                });
                continue;
            };
            let mut request = Request::new(Body::new());
            *request.uri_mut() = uri;
            request.headers_mut().insert(
                header::USER_AGENT,
                HeaderValue::from_static("cachefront-warmer"),
            );
            let mut handled = Box::pin(self.handle(request)).await;
            // Only the cache write matters; a streamed body is not read here.
            self.drop_stream(&mut handled.response);
            results.push(WarmResult {
                url,
                status: handled.log.status,
                cache: handled.log.cache,
            });
        }
        results
    }

    /// The cron trigger's warming: `WARM_URLS`, then the pages of `WARM_SITEMAP`,
    /// at most `WARM_MAX_URLS` in all.
    pub async fn warm_configured(&self) -> Vec<WarmResult> {
        let settings = &self.config.warming;
        let mut urls: Vec<String> = settings
            .urls
            .iter()
            .take(settings.max_urls)
            .cloned()
            .collect();
        if let Some(sitemap) = settings
            .sitemap
            .as_ref()
            .and_then(|s| s.parse::<Uri>().ok())
        {
            let mut request = Request::new(Body::new());
            *request.uri_mut() = sitemap;
            let mut handled = Box::pin(self.handle(request)).await;
            // A sitemap above STREAM_BODIES_ABOVE_BYTES is streamed, not parsed.
            self.drop_stream(&mut handled.response);
            if handled.response.status() == StatusCode::OK {
                let xml = String::from_utf8_lossy(handled.response.body());
                for url in warming::sitemap_urls(&xml, settings.max_urls) {
                    if urls.len() < settings.max_urls && !urls.contains(&url) {
                        urls.push(url);
                    }
                }
            }
        }
        self.warm(urls).await
    }
}
