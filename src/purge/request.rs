//! The purge request model: a validated purge (tags, URLs, prefixes, hosts
//! or everything) and the registry keys it writes. Parsing and validation
//! of the JSON body are in [`super::api`]; the Cloudflare planner reads the
//! same model.

use std::collections::HashSet;

use http::Uri;
use serde::Serialize;
use url::Url;

use crate::purge::tags::{self, EVERYTHING_KEY};

/// A validated purge: every item normalized (lower-cased where
/// case-insensitive) and deduplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeRequest {
    pub tags: Vec<String>,
    /// Absolute http(s) URLs, without fragment.
    pub urls: Vec<String>,
    /// Configured path prefixes (`PURGE_PREFIX_TAGS`).
    pub prefixes: Vec<String>,
    /// Host names, lower-cased.
    pub hosts: Vec<String>,
    pub everything: bool,
    pub soft: bool,
    pub dry_run: bool,
}

impl PurgeRequest {
    /// The registry keys this purge writes: tags as given, `url:`, `prefix:`
    /// and `host:` tags, and `*` for everything. `keying` must be the cache
    /// key's, as when entries are tagged.
    pub fn registry_keys(&self, keying: &dyn tags::QueryKeying) -> Vec<String> {
        let mut keys: Vec<String> = self.tags.clone();
        for url in &self.urls {
            if let Some((host, uri)) = url_parts(url) {
                keys.push(tags::url_tag(
                    &host,
                    &uri,
                    keying.query_filter_for(&host, &uri),
                ));
            }
        }
        keys.extend(self.prefixes.iter().map(|p| tags::prefix_tag(p)));
        keys.extend(self.hosts.iter().map(|h| tags::host_tag(h)));
        if self.everything {
            keys.push(EVERYTHING_KEY.to_owned());
        }
        let mut seen = HashSet::new();
        keys.retain(|k| seen.insert(k.clone()));
        keys
    }

    pub fn item_count(&self) -> usize {
        self.tags.len() + self.urls.len() + self.prefixes.len() + self.hosts.len()
    }
}

/// Whether an entry with `entry_tags` is hit by a purge of `registry_keys`
/// (for counting what a dry run would affect).
pub fn purge_hits_entry(registry_keys: &[String], entry_tags: &[String]) -> bool {
    registry_keys
        .iter()
        .any(|k| k == EVERYTHING_KEY || entry_tags.contains(k))
}

/// The host (with a port when one is given) and path-and-query of an absolute URL.
pub fn url_parts(url: &str) -> Option<(String, Uri)> {
    let parsed = Url::parse(url).ok()?;
    let mut host = parsed.host_str()?.to_owned();
    if let Some(port) = parsed.port() {
        host = format!("{host}:{port}");
    }
    let mut path_and_query = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        path_and_query.push('?');
        path_and_query.push_str(query);
    }
    let uri: Uri = path_and_query.parse().ok()?;
    Some((host, uri))
}
