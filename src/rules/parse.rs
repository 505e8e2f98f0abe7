//! Reading `CACHE_RULES`: JSON (what wrangler hands the worker for TOML
//! tables too) into compiled [`CacheRules`], every problem named by its
//! path (`CACHE_RULES[3].edge_ttl.mode: …`), unknown fields refused.
//! [`warnings`] finds what is valid but surely not meant (a rule no request
//! can reach); `cachefront check` prints both.

use std::collections::{BTreeMap, HashSet};

use http::header::{HeaderName, HeaderValue};
use http::Method;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::glob::Glob;
use super::{
    Adaptive, BrowserTtl, CacheMode, CacheRules, Conditions, EdgeTtl, HeaderEdits, KeySpec,
    QueryKey, Rule, RuleAction, StatusMatch, TtlMode,
};
use crate::config::validate_name;
use crate::purge::tags;
use crate::semantics::cache_control::is_tchar;

/// Most rules a configuration may have: each request is matched against
/// them in order.
pub const MAX_RULES: usize = 200;
/// Longest TTL or stale window a rule may give: one year.
pub const MAX_SECONDS: u64 = 365 * 24 * 3600;
/// Most entries of any one list in a rule.
const MAX_LIST: usize = 64;

/// Fields a rule may not set or remove on responses: they frame the body
/// or belong to other settings (`browser_ttl` owns `Cache-Control`).
const UNEDITABLE_RESPONSE_FIELDS: &[&str] = &[
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-range",
    "keep-alive",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// One problem in `CACHE_RULES`, named by where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProblem {
    /// `CACHE_RULES[3].edge_ttl.mode` (with the rule's name when it has one:
    /// `CACHE_RULES[3] (blog).edge_ttl.mode`).
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    #[serde(rename = "continue", default)]
    layered: bool,
    #[serde(rename = "match", default)]
    conditions: RawConditions,
    cache: Option<RawCacheMode>,
    override_private: Option<bool>,
    deception_armor: Option<bool>,
    edge_ttl: Option<RawEdgeTtl>,
    browser_ttl: Option<RawBrowserTtl>,
    stale_while_revalidate: Option<u64>,
    stale_if_error: Option<u64>,
    cache_key: Option<RawKey>,
    bypass_cookies: Option<Vec<String>>,
    origin: Option<OneOrMany>,
    #[serde(default)]
    tags: Vec<String>,
    response_headers: Option<RawHeaderEdits>,
    adaptive_ttl: Option<RawAdaptive>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConditions {
    path: Option<OneOrMany>,
    host: Option<OneOrMany>,
    methods: Option<Vec<String>>,
    extensions: Option<Vec<String>>,
    query: Option<RawQueryCondition>,
    header: Option<BTreeMap<String, String>>,
    cookie: Option<OneOrMany>,
}

/// A string or a list of strings. Read by hand rather than as an untagged
/// enum: serde's untagged enums buffer the value and lose where a problem
/// was (json_path names it from serde_json's position).
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Shape;
        impl<'de> Visitor<'de> for Shape {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, one: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany::One(one.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut many = Vec::new();
                while let Some(one) = seq.next_element()? {
                    many.push(one);
                }
                Ok(OneOrMany::Many(many))
            }
        }
        deserializer.deserialize_any(Shape)
    }
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueryCondition {
    #[serde(default)]
    present: Vec<String>,
    #[serde(default)]
    absent: Vec<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawCacheMode {
    Bypass,
    Standard,
    Everything,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdgeTtl {
    mode: RawTtlMode,
    seconds: Option<u64>,
    #[serde(default)]
    status: BTreeMap<String, u64>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawTtlMode {
    RespectOrigin,
    Override,
    Minimum,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBrowserTtl {
    mode: RawBrowserMode,
    seconds: Option<u64>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawBrowserMode {
    RespectOrigin,
    Override,
    Bypass,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    query: Option<RawQueryKey>,
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    cookies: Vec<String>,
    #[serde(default)]
    device: bool,
    #[serde(default)]
    country: bool,
}

/// `"all"`, `"none"` (checked when compiled), `{ include = [...] }` or
/// `{ exclude = [...] }`; read by hand like [`OneOrMany`]. As the untagged
/// enum it replaces did, `include` wins over `exclude` and other keys are
/// ignored.
enum RawQueryKey {
    Word(String),
    Include { include: Vec<String> },
    Exclude { exclude: Vec<String> },
}

const QUERY_KEY_SHAPES: &str = "\"all\", \"none\", { include = [...] } or { exclude = [...] }";

impl<'de> Deserialize<'de> for RawQueryKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Shape;
        impl<'de> Visitor<'de> for Shape {
            type Value = RawQueryKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(QUERY_KEY_SHAPES)
            }
            fn visit_str<E: de::Error>(self, word: &str) -> Result<RawQueryKey, E> {
                Ok(RawQueryKey::Word(word.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawQueryKey, A::Error> {
                let (mut include, mut exclude) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "include" => include = Some(map.next_value()?),
                        "exclude" => exclude = Some(map.next_value()?),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                match (include, exclude) {
                    (Some(include), _) => Ok(RawQueryKey::Include { include }),
                    (None, Some(exclude)) => Ok(RawQueryKey::Exclude { exclude }),
                    (None, None) => Err(de::Error::custom(format!("expected {QUERY_KEY_SHAPES}"))),
                }
            }
        }
        deserializer.deserialize_any(Shape)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeaderEdits {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    remove: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdaptive {
    min: u64,
    max: u64,
}

/// Collects the problems of one rule, each under its path.
struct Problems<'a> {
    at: &'a str,
    found: Vec<RuleProblem>,
}

impl Problems<'_> {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.found.push(RuleProblem {
            path: format!("{}.{field}", self.at),
            message: message.into(),
        });
    }
}

/// Compiles `CACHE_RULES` (a JSON array). `origins` are the names in
/// `ORIGINS`, in order; `global_ignored` is `CACHE_IGNORE_QUERY_PARAMS`
/// (a rule's `exclude` adds to it). Every problem is reported, not only
/// the first.
pub fn parse(
    raw: &str,
    origins: &[&str],
    global_ignored: &[String],
) -> Result<CacheRules, Vec<RuleProblem>> {
    let top = |message: String| {
        vec![RuleProblem {
            path: super::VAR_CACHE_RULES.to_owned(),
            message,
        }]
    };
    // from_slice, not from_str: one serde_json reader in the wasm (docs/assets.md).
    let items: Vec<serde_json::Value> = serde_json::from_slice(raw.as_bytes()).map_err(|e| {
        top(format!(
            "expected a JSON array of rules (or TOML [[vars.CACHE_RULES]] tables): {e}"
        ))
    })?;
    if items.len() > MAX_RULES {
        return Err(top(format!(
            "{} rules; at most {MAX_RULES} are allowed",
            items.len()
        )));
    }
    let mut rules = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for (index, item) in items.into_iter().enumerate() {
        let name = item.get("name").and_then(|n| n.as_str()).map(str::to_owned);
        let at = match &name {
            Some(name) => format!("CACHE_RULES[{index}] ({name})"),
            None => format!("CACHE_RULES[{index}]"),
        };
        // Read again from its own text, so an error's place names the field.
        let text = serde_json::to_vec(&item).unwrap_or_default();
        let raw: RawRule = match serde_json::from_slice(&text) {
            Ok(raw) => raw,
            Err(e) => {
                let (field, message) = crate::json_path::locate(&text, &e);
                problems.push(RuleProblem {
                    path: if field.is_empty() {
                        at
                    } else {
                        format!("{at}.{field}")
                    },
                    message,
                });
                continue;
            }
        };
        let mut found = Problems {
            at: &at,
            found: Vec::new(),
        };
        if let Some(name) = &raw.name {
            if let Err(message) = validate_name(name) {
                found.add("name", message);
            } else if !names.insert(name.clone()) {
                found.add("name", format!("{name:?} is used by an earlier rule"));
            }
        }
        let label = raw.name.clone().unwrap_or_else(|| format!("#{index}"));
        let rule = compile(raw, label, origins, global_ignored, &mut found);
        if found.found.is_empty() {
            rules.push(rule);
        } else {
            problems.extend(found.found);
        }
    }
    if problems.is_empty() {
        Ok(CacheRules::new(rules))
    } else {
        Err(problems)
    }
}

fn compile(
    raw: RawRule,
    label: String,
    origins: &[&str],
    global_ignored: &[String],
    found: &mut Problems<'_>,
) -> Rule {
    let conditions = conditions(raw.conditions, found);
    let cache = raw.cache.map(|mode| match mode {
        RawCacheMode::Bypass => CacheMode::Bypass,
        RawCacheMode::Standard => CacheMode::Standard,
        RawCacheMode::Everything => CacheMode::Everything,
    });
    let bypass = cache == Some(CacheMode::Bypass);
    if bypass {
        let pointless = [
            ("override_private", raw.override_private.is_some()),
            ("deception_armor", raw.deception_armor.is_some()),
            ("edge_ttl", raw.edge_ttl.is_some()),
            (
                "stale_while_revalidate",
                raw.stale_while_revalidate.is_some(),
            ),
            ("stale_if_error", raw.stale_if_error.is_some()),
            ("cache_key", raw.cache_key.is_some()),
            ("bypass_cookies", raw.bypass_cookies.is_some()),
            ("tags", !raw.tags.is_empty()),
            ("adaptive_ttl", raw.adaptive_ttl.is_some()),
        ];
        for (field, set) in pointless {
            if set {
                found.add(
                    field,
                    "has no effect with cache = \"bypass\" (nothing is read or stored)",
                );
            }
        }
    }
    if raw.override_private == Some(true) && cache != Some(CacheMode::Everything) {
        found.add(
            "override_private",
            "only applies with cache = \"everything\" in the same rule",
        );
    }
    for (field, value) in [
        ("stale_while_revalidate", raw.stale_while_revalidate),
        ("stale_if_error", raw.stale_if_error),
    ] {
        if value.is_some_and(|v| v > MAX_SECONDS) {
            found.add(field, format!("at most {MAX_SECONDS} seconds (one year)"));
        }
    }
    let edge_ttl = raw.edge_ttl.map(|ttl| edge_ttl(ttl, found));
    let browser_ttl = raw.browser_ttl.map(|ttl| browser_ttl(ttl, found));
    let cache_key = raw
        .cache_key
        .map(|key| key_spec(key, global_ignored, found));
    let bypass_cookies = raw.bypass_cookies.inspect(|globs| {
        check_len(found, "bypass_cookies", globs.len());
        for (i, glob) in globs.iter().enumerate() {
            if glob.is_empty() || !glob.bytes().all(|b| b == b'*' || is_tchar(b)) {
                found.add(
                    &format!("bypass_cookies[{i}]"),
                    format!("{glob:?} is not a cookie name glob (token characters and '*')"),
                );
            }
        }
    });
    let origin_indices = raw.origin.map(|names| {
        let names = names.into_vec();
        if names.is_empty() {
            found.add("origin", "names no origin");
        }
        names
            .iter()
            .filter_map(|name| {
                let index = origins.iter().position(|o| o == name);
                if index.is_none() {
                    found.add(
                        "origin",
                        format!("{name:?} is not in ORIGINS (known: {})", origins.join(", ")),
                    );
                }
                index
            })
            .collect()
    });
    check_len(found, "tags", raw.tags.len());
    let tags = raw
        .tags
        .iter()
        .enumerate()
        .filter_map(|(i, tag)| match tags::normalize_tag(tag) {
            Ok(t) if tags::is_reserved(&t) => {
                found.add(
                    &format!("tags[{i}]"),
                    format!("{tag:?} uses a name reserved for automatic tags"),
                );
                None
            }
            Ok(t) if !t.is_empty() => Some(t),
            Ok(_) => {
                found.add(&format!("tags[{i}]"), "is empty");
                None
            }
            Err(reason) => {
                found.add(
                    &format!("tags[{i}]"),
                    format!("{tag:?}: {}", reason.as_str()),
                );
                None
            }
        })
        .collect();
    let response_headers = raw
        .response_headers
        .map(|edits| header_edits(edits, found))
        .unwrap_or_default();
    let adaptive_ttl = raw.adaptive_ttl.map(|a| {
        if a.min == 0 || a.min > a.max || a.max > MAX_SECONDS {
            found.add(
                "adaptive_ttl",
                format!(
                    "needs 1 <= min <= max <= {MAX_SECONDS}, got min = {}, max = {}",
                    a.min, a.max
                ),
            );
        }
        Adaptive {
            min: a.min,
            max: a.max,
        }
    });
    Rule {
        label: label.into(),
        layered: raw.layered,
        conditions,
        action: std::sync::Arc::new(RuleAction {
            cache,
            override_private: raw.override_private,
            deception_armor: raw.deception_armor,
            edge_ttl,
            browser_ttl,
            stale_while_revalidate: raw.stale_while_revalidate,
            stale_if_error: raw.stale_if_error,
            cache_key,
            bypass_cookies,
            origins: origin_indices,
            tags,
            response_headers,
            adaptive_ttl,
        }),
    }
}

fn check_len(found: &mut Problems<'_>, field: &str, len: usize) {
    if len > MAX_LIST {
        found.add(field, format!("{len} entries; at most {MAX_LIST}"));
    }
}

fn conditions(raw: RawConditions, found: &mut Problems<'_>) -> Conditions {
    let globs =
        |found: &mut Problems<'_>, field: &str, list: Option<OneOrMany>, sep: u8, lower: bool| {
            let list = list.map(OneOrMany::into_vec).unwrap_or_default();
            check_len(found, field, list.len());
            list.iter()
                .enumerate()
                .filter_map(|(i, pattern)| {
                    let pattern = if lower {
                        pattern.to_ascii_lowercase()
                    } else {
                        pattern.clone()
                    };
                    if sep == b'/' && !pattern.starts_with('/') && !pattern.starts_with('*') {
                        found.add(
                            &format!("match.{field}[{i}]"),
                            format!("{pattern:?} must start with '/' (or '*')"),
                        );
                        return None;
                    }
                    Glob::new(&pattern, Some(sep))
                        .map_err(|m| found.add(&format!("match.{field}[{i}]"), m))
                        .ok()
                })
                .collect::<Vec<_>>()
        };
    let paths = globs(found, "path", raw.path, b'/', false);
    let hosts = globs(found, "host", raw.host, b'.', true);
    let methods = raw
        .methods
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let upper = m.to_ascii_uppercase();
            match Method::from_bytes(upper.as_bytes()) {
                Ok(method) if !upper.is_empty() => Some(method),
                _ => {
                    found.add(
                        &format!("match.methods[{i}]"),
                        format!("{m:?} is not an HTTP method"),
                    );
                    None
                }
            }
        })
        .collect();
    let extensions = raw
        .extensions
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter_map(|(i, ext)| {
            let ext = ext.trim_start_matches('.').to_ascii_lowercase();
            if ext.is_empty() || !ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
                found.add(
                    &format!("match.extensions[{i}]"),
                    format!("{ext:?} is not a file extension (letters and digits)"),
                );
                return None;
            }
            Some(ext)
        })
        .collect();
    let (query_present, query_absent) = match raw.query {
        None => (Vec::new(), Vec::new()),
        Some(q) => {
            param_names(found, "match.query.present", &q.present);
            param_names(found, "match.query.absent", &q.absent);
            (q.present, q.absent)
        }
    };
    let headers = raw
        .header
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, glob)| {
            let field = format!("match.header.{name}");
            let header_name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| found.add(&field, "is not a request field name"))
                .ok()?;
            let glob = Glob::new(&glob, None)
                .map_err(|m| found.add(&field, m))
                .ok()?;
            Some((header_name, glob))
        })
        .collect();
    let cookies = raw.cookie.map(OneOrMany::into_vec).unwrap_or_default();
    cookie_names(found, "match.cookie", &cookies);
    Conditions {
        path_lead: [0; 8],
        path_lead_len: 0,
        paths,
        hosts,
        methods,
        extensions,
        query_present,
        query_absent,
        headers,
        cookies,
    }
    .with_path_lead()
}

fn edge_ttl(raw: RawEdgeTtl, found: &mut Problems<'_>) -> EdgeTtl {
    let mode = match raw.mode {
        RawTtlMode::RespectOrigin => TtlMode::RespectOrigin,
        RawTtlMode::Override => TtlMode::Override,
        RawTtlMode::Minimum => TtlMode::Minimum,
    };
    match (mode, raw.seconds) {
        (TtlMode::RespectOrigin, Some(_)) => found.add(
            "edge_ttl.seconds",
            "has no effect with mode = \"respect_origin\"",
        ),
        (TtlMode::Override | TtlMode::Minimum, None) => found.add(
            "edge_ttl.seconds",
            "is required with mode = \"override\" or \"minimum\"",
        ),
        (_, Some(secs)) if secs > MAX_SECONDS => found.add(
            "edge_ttl.seconds",
            format!("at most {MAX_SECONDS} seconds (one year)"),
        ),
        _ => {}
    }
    let mut status: Vec<(StatusMatch, u64)> = Vec::new();
    for (key, secs) in raw.status {
        let field = format!("edge_ttl.status.{key}");
        let matcher = if let Some(class) = key.strip_suffix("xx") {
            match class.parse::<u16>() {
                Ok(c) if (1..=5).contains(&c) && class.len() == 1 => Some(StatusMatch::Class(c)),
                _ => None,
            }
        } else {
            match key.parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) && key.len() == 3 => {
                    Some(StatusMatch::Exact(code))
                }
                _ => None,
            }
        };
        match matcher {
            None => found.add(&field, "expected a status (\"404\") or a class (\"4xx\")"),
            Some(_) if secs > MAX_SECONDS => {
                found.add(&field, format!("at most {MAX_SECONDS} seconds (one year)"))
            }
            Some(m) => status.push((m, secs)),
        }
    }
    // An exact status wins over its class.
    status.sort_by_key(|(m, _)| matches!(m, StatusMatch::Class(_)));
    EdgeTtl {
        mode,
        seconds: raw.seconds,
        status,
    }
}

fn browser_ttl(raw: RawBrowserTtl, found: &mut Problems<'_>) -> BrowserTtl {
    match (raw.mode, raw.seconds) {
        (RawBrowserMode::Override, Some(secs)) if secs <= MAX_SECONDS => BrowserTtl::Override(secs),
        (RawBrowserMode::Override, Some(_)) => {
            found.add(
                "browser_ttl.seconds",
                format!("at most {MAX_SECONDS} seconds (one year)"),
            );
            BrowserTtl::RespectOrigin
        }
        (RawBrowserMode::Override, None) => {
            found.add(
                "browser_ttl.seconds",
                "is required with mode = \"override\"",
            );
            BrowserTtl::RespectOrigin
        }
        (_, Some(_)) => {
            found.add(
                "browser_ttl.seconds",
                "only applies with mode = \"override\"",
            );
            BrowserTtl::RespectOrigin
        }
        (RawBrowserMode::RespectOrigin, None) => BrowserTtl::RespectOrigin,
        (RawBrowserMode::Bypass, None) => BrowserTtl::Bypass,
    }
}

fn cookie_names(found: &mut Problems<'_>, field: &str, names: &[String]) {
    check_len(found, field, names.len());
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            found.add(
                &format!("{field}[{i}]"),
                format!("{name:?} is not a cookie name"),
            );
        }
    }
}

fn param_names(found: &mut Problems<'_>, field: &str, names: &[String]) {
    check_len(found, field, names.len());
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() || name.contains(['&', '=']) {
            found.add(
                &format!("{field}[{i}]"),
                format!("{name:?} is not a parameter name"),
            );
        }
    }
}

fn key_spec(raw: RawKey, global_ignored: &[String], found: &mut Problems<'_>) -> KeySpec {
    let query = raw.query.and_then(|q| match q {
        RawQueryKey::Word(word) => match word.as_str() {
            "all" => Some(QueryKey::All),
            "none" => Some(QueryKey::Nothing),
            _ => {
                found.add(
                    "cache_key.query",
                    format!("{word:?}: expected \"all\", \"none\", {{ include = [...] }} or {{ exclude = [...] }}"),
                );
                None
            }
        },
        RawQueryKey::Include { include } => {
            param_names(found, "cache_key.query.include", &include);
            Some(QueryKey::Include(include))
        }
        RawQueryKey::Exclude { exclude } => {
            param_names(found, "cache_key.query.exclude", &exclude);
            let mut all = global_ignored.to_vec();
            all.extend(exclude);
            Some(QueryKey::Exclude(all))
        }
    });
    check_len(found, "cache_key.headers", raw.headers.len());
    let headers: Vec<String> = raw
        .headers
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let lower = name.to_ascii_lowercase();
            let field = format!("cache_key.headers[{i}]");
            if HeaderName::from_bytes(lower.as_bytes()).is_err() {
                found.add(&field, format!("{name:?} is not a request field name"));
                None
            } else if lower == "cookie" {
                found.add(&field, "key cookies by name with cache_key.cookies");
                None
            } else {
                Some(lower)
            }
        })
        .collect();
    cookie_names(found, "cache_key.cookies", &raw.cookies);
    let mut forwarded: Vec<String> = headers.clone();
    if raw.device {
        forwarded.push(super::DEVICE_TYPE_FIELD.to_owned());
    }
    KeySpec {
        query,
        headers,
        cookies: raw.cookies,
        device: raw.device,
        country: raw.country,
        forwarded,
    }
}

fn header_edits(raw: RawHeaderEdits, found: &mut Problems<'_>) -> HeaderEdits {
    let mut edits = HeaderEdits::default();
    let name_of = |found: &mut Problems<'_>, field: &str, name: &str| {
        let lower = name.to_ascii_lowercase();
        match HeaderName::from_bytes(lower.as_bytes()) {
            Err(_) => {
                found.add(field, format!("{name:?} is not a field name"));
                None
            }
            Ok(_) if UNEDITABLE_RESPONSE_FIELDS.contains(&lower.as_str()) => {
                found.add(
                    field,
                    format!("{name:?} cannot be edited by a rule (it frames the body or belongs to browser_ttl)"),
                );
                None
            }
            Ok(header) => Some(header),
        }
    };
    check_len(found, "response_headers.set", raw.set.len());
    for (name, value) in raw.set {
        let field = format!("response_headers.set.{name}");
        let Some(header) = name_of(found, &field, &name) else {
            continue;
        };
        match HeaderValue::from_str(&value) {
            Ok(v) => edits.set.push((header, v)),
            Err(_) => found.add(&field, format!("{value:?} is not a valid field value")),
        }
    }
    check_len(found, "response_headers.remove", raw.remove.len());
    for (i, name) in raw.remove.iter().enumerate() {
        if let Some(header) = name_of(found, &format!("response_headers.remove[{i}]"), name) {
            edits.remove.push(header);
        }
    }
    edits
}

/// Valid but surely not meant: a rule after one that catches every request
/// (without `continue`) can never apply; an `override_private` rule (a
/// risk the operator should see named); `adaptive_ttl` beside an
/// `edge_ttl` override (adaptive wins for 2xx).
pub fn warnings(rules: &CacheRules) -> Vec<RuleProblem> {
    let mut found = Vec::new();
    let mut catcher: Option<&str> = None;
    for (index, rule) in rules.rules.iter().enumerate() {
        let at = if rule.label.starts_with('#') {
            format!("CACHE_RULES[{index}]")
        } else {
            format!("CACHE_RULES[{index}] ({})", rule.label)
        };
        if let Some(earlier) = catcher {
            found.push(RuleProblem {
                path: at.clone(),
                message: format!(
                    "can never match: the earlier rule {earlier} catches every request"
                ),
            });
        } else if !rule.layered && rule.conditions.catch_all() {
            catcher = Some(rule.label.as_ref());
        }
        if rule.action.override_private == Some(true) {
            found.push(RuleProblem {
                path: format!("{at}.override_private"),
                message: "stores answers their origin marked private or that set cookies; make sure no page under this rule is personal (docs/cache-rules.md)".to_owned(),
            });
        }
        let overridden = rule
            .action
            .edge_ttl
            .as_ref()
            .is_some_and(|t| t.mode != TtlMode::RespectOrigin);
        if overridden && rule.action.adaptive_ttl.is_some() {
            found.push(RuleProblem {
                path: format!("{at}.adaptive_ttl"),
                message: "replaces edge_ttl's lifetime for 2xx answers; edge_ttl applies to the other statuses".to_owned(),
            });
        }
    }
    found
}
