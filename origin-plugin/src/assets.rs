//! Fingerprinted asset URLs for backend-rendered HTML: [`AssetManifest`] reads the asset
//! build's `manifest.json` and maps logical names (`app.js`) to fingerprinted URLs
//! (`/assets/app.3f2a1b9c.js`); [`asset_url`] does it through a process-wide manifest.
//!
//! Accepted manifest shapes (the first that fits wins):
//! - a flat object `{"app.js": "app.3f2a1b9c.js", ...}`;
//! - `{"assets": {...}}` or `{"files": {...}}` wrapping such an object;
//! - values that are objects with a `file`, `path`, `url` or `fingerprinted` string field.
//!
//! A name missing from the manifest falls back to the unfingerprinted URL (and is logged
//! once), so a stale manifest degrades to slower caching, never to a broken page.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};

use crate::Error;

/// Logical asset name → fingerprinted URL.
#[derive(Debug, Default)]
pub struct AssetManifest {
    base: String,
    entries: HashMap<String, String>,
    missing_logged: Mutex<HashSet<String>>,
}

impl AssetManifest {
    /// Read and parse a manifest file. `base` is the URL prefix (`/` or `/assets/`).
    pub fn load(path: impl AsRef<Path>, base: &str) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)?;
        Self::from_json(&text, base).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parse manifest JSON. `base` is the URL prefix (`/` or `/assets/`).
    pub fn from_json(json: &str, base: &str) -> Result<Self, Error> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::Config(format!("manifest is not JSON: {e}")))?;
        let map = value
            .get("assets")
            .or_else(|| value.get("files"))
            .filter(|v| v.is_object())
            .unwrap_or(&value)
            .as_object()
            .ok_or_else(|| Error::Config("manifest must be a JSON object".to_owned()))?;
        let mut entries = HashMap::new();
        for (name, v) in map {
            let target = match v {
                serde_json::Value::String(s) => Some(s.as_str()),
                serde_json::Value::Object(o) => ["file", "path", "url", "fingerprinted"]
                    .iter()
                    .find_map(|k| o.get(*k).and_then(|v| v.as_str())),
                _ => None,
            };
            if let Some(t) = target {
                entries.insert(name.trim_start_matches('/').to_owned(), t.to_owned());
            }
        }
        let mut base = base.to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        Ok(Self {
            base,
            entries,
            missing_logged: Mutex::new(HashSet::new()),
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the manifest is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// URL for `name`: fingerprinted when known, else the plain URL under the base.
    pub fn url(&self, name: &str) -> String {
        let key = name.trim_start_matches('/');
        match self.entries.get(key) {
            Some(target) if is_absolute(target) => target.clone(),
            Some(target) => format!("{}{}", self.base, target.trim_start_matches('/')),
            None => {
                let mut logged = self
                    .missing_logged
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if logged.len() < 1024 && logged.insert(key.to_owned()) {
                    tracing::warn!(target: "cachefront_origin::assets", asset = key, "asset not in manifest; serving unfingerprinted URL");
                }
                format!("{}{}", self.base, key)
            }
        }
    }

    /// Make this the manifest [`asset_url`] uses. Only the first call wins.
    pub fn install(self) -> Result<(), Error> {
        GLOBAL
            .set(self)
            .map_err(|_| Error::Config("an asset manifest is already installed".to_owned()))
    }
}

fn is_absolute(target: &str) -> bool {
    target.starts_with('/') || target.starts_with("http://") || target.starts_with("https://")
}

static GLOBAL: OnceLock<AssetManifest> = OnceLock::new();

/// Fingerprinted URL of `name` from the installed manifest, or `/name` when none is
/// installed or the name is unknown.
pub fn asset_url(name: &str) -> String {
    match GLOBAL.get() {
        Some(m) => m.url(name),
        None => format!("/{}", name.trim_start_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_manifest_maps_names_under_base() {
        let m = AssetManifest::from_json(
            r#"{"app.js":"app.3f2a.js","css/site.css":"/css/site.9a.css"}"#,
            "/assets",
        )
        .expect("valid");
        assert_eq!(m.url("app.js"), "/assets/app.3f2a.js");
        assert_eq!(m.url("/css/site.css"), "/css/site.9a.css");
        assert_eq!(m.url("missing.png"), "/assets/missing.png");
    }

    #[test]
    fn wrapped_and_object_entries_are_read() {
        let m = AssetManifest::from_json(r#"{"assets":{"a.js":{"file":"a.1.js","size":3}}}"#, "/")
            .expect("valid");
        assert_eq!(m.url("a.js"), "/a.1.js");
    }

    #[test]
    fn manifest_file_is_loaded_and_errors_name_it() {
        let dir = std::env::temp_dir().join(format!("cachefront-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("manifest.json");
        std::fs::write(&good, r#"{"app.js":"app.1a2b.js"}"#).expect("write");
        let m = AssetManifest::load(&good, "/static/").expect("loads");
        assert_eq!(
            (m.len(), m.url("app.js")),
            (1, "/static/app.1a2b.js".to_owned())
        );
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "not json").expect("write");
        let err = AssetManifest::load(&bad, "/").expect_err("invalid");
        assert!(err.to_string().contains("bad.json"), "{err}");
        assert!(matches!(
            AssetManifest::load(dir.join("missing.json"), "/"),
            Err(Error::Io(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn non_object_manifest_is_a_config_error() {
        assert!(matches!(
            AssetManifest::from_json("[1,2]", "/"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            AssetManifest::from_json("{", "/"),
            Err(Error::Config(_))
        ));
    }
}
