//! The purge batch in the edge's JSON shape, and how it is cut into provider-sized calls.

use serde::Serialize;

/// One batch to purge, in the Cachefront edge's JSON shape
/// (`{"tags": [...], "urls": [...], "prefixes": [...], "hosts": [...], "everything": true, "soft": true}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PurgeRequest {
    /// Cache tags (lowercase).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Absolute URLs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// URL prefixes (`example.com/blog/`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// Hostnames.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Purge everything.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub everything: bool,
    /// Soft purge: keep entries usable as stale while they revalidate.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub soft: bool,
}

impl PurgeRequest {
    /// Number of items (everything counts as one).
    pub fn len(&self) -> usize {
        self.tags.len()
            + self.urls.len()
            + self.prefixes.len()
            + self.hosts.len()
            + usize::from(self.everything)
    }

    /// Whether there is nothing to purge.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Split into requests of at most `max` items each; with `one_kind`, each request
    /// carries a single kind (APIs like Cloudflare's refuse mixed bodies).
    pub fn split(&self, max: usize, one_kind: bool) -> Vec<PurgeRequest> {
        self.split_bounded(max, one_kind, usize::MAX)
    }

    /// Like [`split`](Self::split), also keeping the items of each request within about
    /// `max_item_bytes` (each item counted with 4 bytes of JSON quoting and separators).
    pub fn split_bounded(
        &self,
        max: usize,
        one_kind: bool,
        max_item_bytes: usize,
    ) -> Vec<PurgeRequest> {
        let max = max.max(1);
        let mut bytes = 0usize;
        if self.everything {
            return vec![PurgeRequest {
                everything: true,
                soft: self.soft,
                ..Default::default()
            }];
        }
        let mut out: Vec<PurgeRequest> = Vec::new();
        // A request with no items yet, as soft as this one.
        let empty = || PurgeRequest {
            soft: self.soft,
            ..Default::default()
        };
        let mut cur = empty();
        let kinds: [(&Vec<String>, KindField); 4] = [
            (&self.tags, |r| &mut r.tags),
            (&self.urls, |r| &mut r.urls),
            (&self.prefixes, |r| &mut r.prefixes),
            (&self.hosts, |r| &mut r.hosts),
        ];
        for (items, field) in kinds {
            if one_kind && !cur.is_empty() {
                bytes = 0;
                out.push(std::mem::replace(&mut cur, empty()));
            }
            for item in items {
                let cost = item.len() + 4;
                if cur.len() >= max || (!cur.is_empty() && bytes + cost > max_item_bytes) {
                    bytes = 0;
                    out.push(std::mem::replace(&mut cur, empty()));
                }
                bytes += cost;
                field(&mut cur).push(item.clone());
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }
}

/// Accessor of one item list of a [`PurgeRequest`].
type KindField = fn(&mut PurgeRequest) -> &mut Vec<String>;

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i}")).collect()
    }

    #[test]
    fn split_respects_max_and_keeps_every_item() {
        let req = PurgeRequest {
            tags: tags(5),
            urls: vec!["https://a/x".into()],
            ..Default::default()
        };
        let parts = req.split(2, false);
        assert!(parts.iter().all(|p| p.len() <= 2));
        assert_eq!(parts.iter().map(PurgeRequest::len).sum::<usize>(), 6);
    }

    #[test]
    fn split_one_kind_never_mixes() {
        let req = PurgeRequest {
            tags: tags(3),
            urls: vec!["https://a/x".into()],
            soft: true,
            ..Default::default()
        };
        let parts = req.split(30, true);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.soft));
        assert_eq!(parts[0].tags.len(), 3);
        assert_eq!(parts[1].urls.len(), 1);
    }

    #[test]
    fn everything_dominates() {
        let req = PurgeRequest {
            tags: tags(3),
            everything: true,
            ..Default::default()
        };
        assert_eq!(
            req.split(1, true),
            vec![PurgeRequest {
                everything: true,
                ..Default::default()
            }]
        );
    }

    #[test]
    fn edge_body_has_documented_shape() {
        let req = PurgeRequest {
            tags: vec!["a".into()],
            soft: true,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&req).ok(),
            Some(serde_json::json!({"tags": ["a"], "soft": true}))
        );
    }
}
