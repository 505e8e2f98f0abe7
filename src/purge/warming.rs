//! Cache warming: which URLs to fetch ahead of clients. After a purge, the
//! purged pages this isolate recently held; on the cron trigger, a configured
//! list and the pages of a sitemap. Pure selection and parsing; the pipeline
//! does the (rate-limited, background) fetching.

use crate::cache::stored::EntryMeta;
use crate::purge::request::purge_hits_entry;

/// Warming settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WarmSettings {
    /// Re-fetch purged pages this isolate held, right after a purge.
    pub after_purge: bool,
    /// Most URLs warmed per purge or per cron run.
    pub max_urls: usize,
    /// Pause between two warming requests.
    pub interval_ms: u64,
    /// Absolute URLs the cron trigger warms.
    pub urls: Vec<String>,
    /// Absolute URL of a sitemap whose `<loc>` pages the cron trigger warms.
    pub sitemap: Option<String>,
}

/// The page URL an entry was stored for: the one it remembers, else (an
/// entry stored before it remembered one) its automatic `url:` tag.
pub fn entry_url(meta: &EntryMeta, scheme: &str) -> Option<String> {
    if let Some(url) = &meta.url {
        return Some(url.clone());
    }
    let host_and_path = meta
        .tags
        .iter()
        .find_map(|t| t.strip_prefix("url:"))
        .filter(|t| !t.starts_with('#'))?;
    Some(format!("{scheme}://{host_and_path}"))
}

/// The URLs of held entries a purge of `registry_keys` reaches, at most `max`,
/// without duplicates (variants share a URL), in the order given.
pub fn purged_urls<'a>(
    metas: impl IntoIterator<Item = &'a EntryMeta>,
    registry_keys: &[String],
    scheme: &str,
    max: usize,
) -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for meta in metas {
        if urls.len() >= max {
            break;
        }
        if meta.vary_index.is_some() || !purge_hits_entry(registry_keys, &meta.tags) {
            continue;
        }
        if let Some(url) = entry_url(meta, scheme) {
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    urls
}

/// The `<loc>` URLs of a sitemap (entities decoded), at most `max`.
pub fn sitemap_urls(xml: &str, max: usize) -> Vec<String> {
    let mut urls = Vec::new();
    let mut rest = xml;
    while urls.len() < max {
        let Some(start) = rest.find("<loc>") else {
            break;
        };
        rest = &rest[start + "<loc>".len()..];
        let Some(end) = rest.find("</loc>") else {
            break;
        };
        let url = rest[..end]
            .trim()
            .replace("&amp;", "&")
            .replace("&apos;", "'")
            .replace("&quot;", "\"")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
        if url.starts_with("http://") || url.starts_with("https://") {
            urls.push(url);
        }
        rest = &rest[end..];
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semantics::policy::ResponseTimes;

    fn meta(tags: &[&str]) -> EntryMeta {
        let mut m = EntryMeta::new(
            ResponseTimes {
                request_time_ms: 0,
                response_time_ms: 0,
            },
            0,
        );
        m.tags = tags.iter().map(|t| (*t).to_owned()).collect();
        m
    }

    #[test]
    fn purged_pages_are_found_by_their_tags_once_each() {
        let held = [
            meta(&["product:1", "url:shop.example/products/1"]),
            meta(&["product:1", "url:shop.example/products/1"]),
            meta(&["pages", "url:shop.example/about"]),
            meta(&["product:1"]),
        ];
        let keys = vec!["product:1".to_owned()];
        assert_eq!(
            purged_urls(&held, &keys, "https", 10),
            ["https://shop.example/products/1"]
        );
        let everything = vec![crate::purge::tags::EVERYTHING_KEY.to_owned()];
        assert_eq!(
            purged_urls(&held, &everything, "https", 1).len(),
            1,
            "bounded"
        );
    }

    #[test]
    fn sitemap_locations_are_read_and_bounded() {
        let xml = r#"<?xml version="1.0"?><urlset><url><loc> https://shop.example/ </loc></url>
            <url><loc>https://shop.example/search?a=1&amp;b=2</loc></url><url><loc>/relative</loc></url>
            <url><loc>https://shop.example/about</loc></url></urlset>"#;
        assert_eq!(
            sitemap_urls(xml, 10),
            [
                "https://shop.example/",
                "https://shop.example/search?a=1&b=2",
                "https://shop.example/about"
            ]
        );
        assert_eq!(sitemap_urls(xml, 1).len(), 1);
        assert!(sitemap_urls("<urlset><loc>unterminated", 5).is_empty());
    }
}
