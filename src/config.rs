//! Typed, validated worker configuration, read from the worker's variables
//! (`[vars]` in `wrangler.toml`, secrets from `wrangler secret` or `.dev.vars`).
//!
//! Parsing is a pure function of a variable lookup, so every rule is unit-tested
//! natively; the Workers adapter only supplies the lookup.

use serde::Deserialize;

use crate::admin::auth::SecretToken;
use crate::cache::collapse::{self, CollapseSettings};
use crate::origin::health::HealthPolicy;
use crate::origin::pool::{OriginConfig, RetryPolicy};
use crate::origin::shaping::QueryFilter;
use crate::purge::api::PurgeConfig;
use crate::purge::tags::QueryKeying;
use crate::purge::warming::WarmSettings;
use crate::rules::{self, CacheRules, RuleProblem, VAR_CACHE_RULES};
use crate::semantics::policy::PolicySettings;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use url::Url;

/// Variable holding the JSON array of origins.
pub const VAR_ORIGINS: &str = "ORIGINS";
/// Variable naming the cache namespace (bump it on deploy to start from an empty cache).
pub const VAR_CACHE_NAMESPACE: &str = "CACHE_NAMESPACE";
/// Variable bounding the size of a response body the cache stores.
pub const VAR_CACHE_MAX_OBJECT_BYTES: &str = "CACHE_MAX_OBJECT_BYTES";
/// Bodies above this size are streamed through instead of read into memory.
pub const VAR_STREAM_BODIES_ABOVE_BYTES: &str = "STREAM_BODIES_ABOVE_BYTES";
/// Query parameters left out of cache keys (`*` suffix = prefix match).
pub const VAR_CACHE_IGNORE_QUERY_PARAMS: &str = "CACHE_IGNORE_QUERY_PARAMS";
/// Request headers that are part of the cache key (and so may reach the origin).
pub const VAR_CACHE_KEY_HEADERS: &str = "CACHE_KEY_HEADERS";
/// Extra request headers forwarded to origins besides the built-in allow-list.
pub const VAR_FORWARD_REQUEST_HEADERS: &str = "FORWARD_REQUEST_HEADERS";
/// Cookie-name globs: a request carrying one neither reads nor writes the cache.
pub const VAR_BYPASS_COOKIES: &str = "BYPASS_COOKIES";
/// `off` (default) / `explicit`: store 5xx answers that carry explicit freshness.
pub const VAR_CACHE_SERVER_ERRORS: &str = "CACHE_SERVER_ERRORS";
pub const VAR_CACHE_CLIENT_ERRORS: &str = "CACHE_CLIENT_ERRORS";
/// Default stale-while-revalidate window when the origin gives none.
pub const VAR_STALE_WHILE_REVALIDATE_SECS: &str = "STALE_WHILE_REVALIDATE_SECS";
/// Default stale-if-error window when the origin gives none.
pub const VAR_STALE_IF_ERROR_SECS: &str = "STALE_IF_ERROR_SECS";
/// How long a stale entry may stand in while no origin can be reached.
pub const VAR_STALE_IF_DISCONNECTED_SECS: &str = "STALE_IF_DISCONNECTED_SECS";
/// Cap on heuristic freshness (responses with Last-Modified but no explicit lifetime).
pub const VAR_CACHE_HEURISTIC_MAX_SECS: &str = "CACHE_HEURISTIC_MAX_SECS";
/// How long stale entries with validators are kept for conditional revalidation.
pub const VAR_CACHE_REVALIDATION_WINDOW_SECS: &str = "CACHE_REVALIDATION_WINDOW_SECS";
/// Byte budget of the per-isolate memory tier (0 disables it).
pub const VAR_MEMORY_CACHE_BYTES: &str = "MEMORY_CACHE_BYTES";
/// Entries up to this size are also kept in the global KV tier (0: off).
pub const VAR_KV_CACHE_MAX_OBJECT_BYTES: &str = "KV_CACHE_MAX_OBJECT_BYTES";
/// Longest time an entry stays in the memory tier.
pub const VAR_MEMORY_CACHE_MAX_SECS: &str = "MEMORY_CACHE_MAX_SECS";
/// `on` / `off` (default): re-fetch purged pages this isolate held, right after a purge.
pub const VAR_WARM_AFTER_PURGE: &str = "WARM_AFTER_PURGE";
/// Most URLs warmed per purge or per cron run.
pub const VAR_WARM_MAX_URLS: &str = "WARM_MAX_URLS";
/// Pause between two warming requests.
pub const VAR_WARM_INTERVAL_MS: &str = "WARM_INTERVAL_MS";
/// Absolute URLs the cron trigger warms (comma-separated).
pub const VAR_WARM_URLS: &str = "WARM_URLS";
/// Absolute URL of a sitemap the cron trigger warms.
pub const VAR_WARM_SITEMAP: &str = "WARM_SITEMAP";
/// `on` (default) / `off`: rewrite origin HTML (asset URLs, lazy images, preload hints).
pub const VAR_HTML_REWRITE: &str = "HTML_REWRITE";
/// `off` (default), `on`, or a list of widths: responsive `srcset` via image resizing.
pub const VAR_IMAGE_RESIZING: &str = "IMAGE_RESIZING";
/// Cap on the HTML rewriter's buffers.
pub const VAR_HTML_REWRITE_MEMORY_BYTES: &str = "HTML_REWRITE_MEMORY_BYTES";
/// Where the asset build's manifest is served from (the ASSETS binding).
pub const VAR_ASSET_MANIFEST: &str = "ASSET_MANIFEST";
/// `Cache-Control` of HTML pages served from the asset store.
pub const VAR_HTML_CACHE_CONTROL: &str = "HTML_CACHE_CONTROL";
/// `on` / `off` (default): minify origin JavaScript before it is cached.
pub const VAR_EDGE_MINIFY_JS: &str = "EDGE_MINIFY_JS";
/// `on` / `off` (default): minify origin CSS before it is cached.
pub const VAR_EDGE_MINIFY_CSS: &str = "EDGE_MINIFY_CSS";
/// Largest origin script the edge minifies, in bytes.
pub const VAR_EDGE_MINIFY_MAX_BYTES: &str = "EDGE_MINIFY_MAX_BYTES";
/// Consecutive failures that mark an origin down.
pub const VAR_HEALTH_FAILURE_THRESHOLD: &str = "HEALTH_FAILURE_THRESHOLD";
/// Seconds a down origin waits before a probe request may try it again.
pub const VAR_HEALTH_COOLDOWN_SECS: &str = "HEALTH_COOLDOWN_SECS";
/// How long an isolate reuses the shared (active check) health it read.
pub const VAR_HEALTH_SYNC_SECS: &str = "HEALTH_SYNC_SECS";
/// Origin statuses that count as failures (retried, and counted by health).
pub const VAR_ORIGIN_FAILURE_STATUSES: &str = "ORIGIN_FAILURE_STATUSES";
/// Methods retried on another origin besides GET, HEAD and OPTIONS.
pub const VAR_RETRY_METHODS: &str = "RETRY_METHODS";
/// Most attempts per request, first one included.
pub const VAR_ORIGIN_MAX_ATTEMPTS: &str = "ORIGIN_MAX_ATTEMPTS";
/// Time budget of all attempts of one request together.
pub const VAR_ORIGIN_DEADLINE_MS: &str = "ORIGIN_DEADLINE_MS";
/// `json` (default): one JSON log line per request; `off`: none.
pub const VAR_REQUEST_LOG: &str = "REQUEST_LOG";
/// Bearer token of the state endpoint (a secret); `PURGE_TOKEN` when unset.
pub const VAR_STATE_TOKEN: &str = "STATE_TOKEN";
/// `on` (default) or `off`: collapse refills across a data centre's isolates.
pub const VAR_DC_COLLAPSE: &str = "DC_COLLAPSE";
/// Longest wait for another isolate's fill, ms (default 3000).
pub const VAR_DC_COLLAPSE_MAX_WAIT_MS: &str = "DC_COLLAPSE_MAX_WAIT_MS";

const DEFAULT_NAMESPACE: &str = "v1";
/// Cloudflare's Cache API refuses objects above 512 MB; we default far lower
/// because the v0 pipeline buffers bodies it may store.
const DEFAULT_MAX_OBJECT_BYTES: u64 = 25 * 1024 * 1024;
const DEFAULT_STREAM_BODIES_ABOVE_BYTES: u64 = 1024 * 1024;
const MAX_NAMESPACE_LEN: usize = 64;
const DEFAULT_ORIGIN_TIMEOUT_MS: u64 = 10_000;
/// Workers KV's value size limit (25 MiB).
const KV_VALUE_LIMIT: u64 = 25 * 1024 * 1024;
const DEFAULT_MEMORY_CACHE_BYTES: u64 = 8 * 1024 * 1024;
const DEFAULT_IGNORED_QUERY_PARAMS: &str = "utm_*,fbclid,gclid,msclkid";

const MIB: u64 = 1024 * 1024;
// Caps on what one isolate holds. A Workers isolate has 128 MB for
// everything: the wasm module and its heap, the runtime's own buffers and
// every request in flight at once. Each cap leaves room for the others.
/// Largest memory tier: half the isolate, the one structure that stays.
pub const MAX_MEMORY_CACHE_BYTES: u64 = 64 * MIB;
/// Largest body held whole: it can be in memory two or three times over
/// (as read, as rewritten, as stored) while other requests run.
pub const MAX_STREAM_BODIES_ABOVE_BYTES: u64 = 32 * MIB;
/// Largest buffer the HTML rewriter may use for one page.
pub const MAX_HTML_REWRITE_MEMORY_BYTES: u64 = 16 * MIB;
/// Largest script or stylesheet minified at the edge: a parser's syntax tree
/// is many times its source.
pub const MAX_EDGE_MINIFY_MAX_BYTES: u64 = 2 * MIB;
/// The Cache API's largest object (Cloudflare's documented 512 MB limit);
/// bodies this large are streamed, never held.
pub const MAX_CACHE_MAX_OBJECT_BYTES: u64 = 512 * MIB;

/// One origin as written in `ORIGINS`, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrigin {
    name: String,
    url: String,
    priority: Option<u32>,
    weight: Option<u32>,
    timeout_ms: Option<u64>,
    health_path: Option<String>,
    health_status: Option<u16>,
    host: Option<String>,
}

/// The whole, validated configuration of the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Origins in the order they were given; the first is the primary.
    pub origins: Vec<OriginConfig>,
    /// Part of every cache key: changing it makes every cached entry unreachable.
    pub cache_namespace: String,
    /// Responses with a larger body are served but never stored.
    pub cache_max_object_bytes: u64,
    /// Bodies above this size stay streams (see [`crate::platform::body`]): never held
    /// whole in memory, stored (Cache API only) when their length is known.
    pub stream_bodies_above_bytes: u64,
    /// Query parameter names (or `prefix*` patterns) left out of cache keys.
    pub cache_ignore_query_params: Vec<String>,
    /// Lower-cased request headers added to cache keys; they are forwarded
    /// even when they are usually stripped as unkeyed overrides.
    pub cache_key_headers: Vec<String>,
    /// Lower-cased request headers forwarded to origins besides the built-in
    /// allow-list ([`crate::origin::shaping::FORWARDED_REQUEST_FIELDS`]) and the keyed ones.
    pub forward_request_headers: Vec<String>,
    /// Cookie-name globs (`session*`): requests carrying such a cookie bypass
    /// the cache in both directions, as logged-in users do on Varnish setups.
    pub bypass_cookies: Vec<String>,
    /// Store 5xx answers with explicit freshness (`CACHE_SERVER_ERRORS=explicit`);
    /// off by default: an error describes the origin's trouble, not the resource.
    pub cache_server_errors: bool,
    /// Store every 4xx with explicit freshness (`CACHE_CLIENT_ERRORS=explicit`);
    /// by default (`url`) only 404, 405, 410 and 414, which the URL alone decides.
    pub cache_client_errors: bool,
    pub stale_while_revalidate_secs: u64,
    pub stale_if_error_secs: u64,
    /// Staleness served while every origin is unreachable (0: off).
    pub stale_if_disconnected_secs: u64,
    pub heuristic_max_secs: u64,
    pub revalidation_window_secs: u64,
    pub memory_cache_bytes: usize,
    pub memory_cache_max_secs: u64,
    /// Largest body kept in the KV tier; 0 turns the tier off.
    pub kv_cache_max_object_bytes: u64,
    /// Whether the worker logs one JSON line per request.
    pub request_log: bool,
    pub health: HealthPolicy,
    pub health_sync_secs: u64,
    /// Tag purge settings; its token (the operator token) also guards the
    /// health endpoint, and the state endpoint when `state_token` is unset.
    pub purge: PurgeConfig,
    /// `STATE_TOKEN`: a token for the state endpoint alone (export/import).
    pub state_token: Option<SecretToken>,
    pub assets: AssetSettings,
    pub warming: WarmSettings,
    pub retry: RetryPolicy,
    /// `CACHE_RULES`, compiled ([`crate::rules`]).
    pub rules: CacheRules,
    /// `DC_COLLAPSE`, `DC_COLLAPSE_MAX_WAIT_MS` ([`crate::cache::collapse`]).
    pub collapse: CollapseSettings,
}

/// How the edge treats assets and origin HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetSettings {
    pub html_rewrite: bool,
    /// Widths for responsive `srcset`; `None`: image resizing off.
    pub image_widths: Option<Vec<u32>>,
    pub html_rewrite_memory_bytes: usize,
    /// Path of `manifest.json` in the asset store.
    pub manifest_path: String,
    pub html_cache_control: String,
    /// Minify origin JavaScript (once, before it is cached).
    pub minify_js: bool,
    /// Minify origin CSS (once, before it is cached).
    pub minify_css: bool,
    /// Origin scripts larger than this are served as sent.
    pub minify_max_bytes: usize,
}

/// A configuration problem: which variable is wrong and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration variable {variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

impl ConfigError {
    fn new(variable: &'static str, message: impl fmt::Display) -> Self {
        Self {
            variable,
            message: message.to_string(),
        }
    }
}

impl Config {
    /// Builds the configuration from a variable lookup (`None` = not set).
    /// The error is the first of the problems [`check`] lists.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let found = Found::default();
        let config = Self::build(&lookup, &found);
        match found.errors.into_inner().into_iter().next() {
            Some(first) => Err(first),
            None => Ok(config),
        }
    }

    /// Reads every variable. A bad one is noted in `found` and its default
    /// stands in for it, so that the variables after it are still checked;
    /// the result means nothing unless `found` stays empty.
    fn build(lookup: &impl Fn(&str) -> Option<String>, found: &Found) -> Self {
        let raw_origins = lookup(VAR_ORIGINS);
        let origins = match raw_origins.as_deref() {
            None => {
                found.note(ConfigError::new(
                    VAR_ORIGINS,
                    "is not set; expected a JSON array like [{\"name\":\"primary\",\"url\":\"http://127.0.0.1:3000\"}]",
                ));
                Vec::new()
            }
            Some(raw) => parse_origins(raw).unwrap_or_else(|errors| {
                for error in errors {
                    found.note(error);
                }
                Vec::new()
            }),
        };

        let cache_namespace = match lookup(VAR_CACHE_NAMESPACE) {
            None => DEFAULT_NAMESPACE.to_owned(),
            Some(ns) => found.or(validate_namespace(ns.trim()), DEFAULT_NAMESPACE.to_owned()),
        };

        let number = |var: &'static str, default: u64| -> u64 {
            match lookup(var) {
                None => default,
                Some(raw) => found.or(
                    raw.trim().parse::<u64>().map_err(|_| {
                        ConfigError::new(
                            var,
                            format_args!("expected a whole non-negative number, got {raw:?}"),
                        )
                    }),
                    default,
                ),
            }
        };
        // `explicit`, or the variable's default word (also when unset).
        let explicit_or = |var: &'static str, default_word: &str| -> bool {
            match lookup(var).as_deref().map(str::trim) {
                None => false,
                Some("explicit") => true,
                Some(word) if word == default_word => false,
                Some(other) => {
                    found.note(ConfigError::new(
                        var,
                        format_args!("expected {default_word} or explicit, got {other:?}"),
                    ));
                    false
                }
            }
        };
        // A value the isolate cannot hold is refused, naming the variable.
        let bytes = |var: &'static str, default: u64, max: u64| -> u64 {
            found.or(within_isolate(var, number(var, default), max), default)
        };
        let cache_ignore_query_params = found.or(
            name_list(
                VAR_CACHE_IGNORE_QUERY_PARAMS,
                lookup(VAR_CACHE_IGNORE_QUERY_PARAMS)
                    .as_deref()
                    .unwrap_or(DEFAULT_IGNORED_QUERY_PARAMS),
                false,
            ),
            Vec::new(),
        );
        let rules = match lookup(VAR_CACHE_RULES) {
            None => CacheRules::default(),
            Some(raw) => {
                // With ORIGINS invalid, the names it would have are still
                // known when it is a JSON list; when it is not even that, a
                // rule's `origin` cannot be judged and is left alone.
                let fallback = if origins.is_empty() {
                    raw_origins.as_deref().and_then(origin_names)
                } else {
                    None
                };
                let judged = !origins.is_empty() || fallback.is_some();
                let names: Vec<&str> = if origins.is_empty() {
                    fallback.iter().flatten().map(String::as_str).collect()
                } else {
                    origins.iter().map(|o| o.name.as_str()).collect()
                };
                match rules::parse(&raw, &names, &cache_ignore_query_params) {
                    Ok(rules) => rules,
                    Err(mut problems) => {
                        if !judged {
                            problems.retain(|p| !p.path.ends_with(".origin"));
                        }
                        if !problems.is_empty() {
                            let listed: Vec<String> =
                                problems.iter().map(ToString::to_string).collect();
                            found.note(ConfigError::new(VAR_CACHE_RULES, listed.join("; ")));
                            found.rule_problems.replace(problems);
                        }
                        CacheRules::default()
                    }
                }
            }
        };
        let memory_cache_bytes = found.or(
            as_usize(
                VAR_MEMORY_CACHE_BYTES,
                bytes(
                    VAR_MEMORY_CACHE_BYTES,
                    DEFAULT_MEMORY_CACHE_BYTES,
                    MAX_MEMORY_CACHE_BYTES,
                ),
            ),
            0,
        );

        Self {
            origins,
            cache_namespace,
            cache_max_object_bytes: bytes(
                VAR_CACHE_MAX_OBJECT_BYTES,
                DEFAULT_MAX_OBJECT_BYTES,
                MAX_CACHE_MAX_OBJECT_BYTES,
            ),
            stream_bodies_above_bytes: bytes(
                VAR_STREAM_BODIES_ABOVE_BYTES,
                DEFAULT_STREAM_BODIES_ABOVE_BYTES,
                MAX_STREAM_BODIES_ABOVE_BYTES,
            ),
            cache_ignore_query_params,
            cache_key_headers: found.or(
                name_list(
                    VAR_CACHE_KEY_HEADERS,
                    lookup(VAR_CACHE_KEY_HEADERS).as_deref().unwrap_or(""),
                    true,
                ),
                Vec::new(),
            ),
            forward_request_headers: found.or(
                name_list(
                    VAR_FORWARD_REQUEST_HEADERS,
                    lookup(VAR_FORWARD_REQUEST_HEADERS).as_deref().unwrap_or(""),
                    true,
                ),
                Vec::new(),
            ),
            bypass_cookies: found.or(
                cookie_globs(lookup(VAR_BYPASS_COOKIES).as_deref().unwrap_or("")),
                Vec::new(),
            ),
            cache_server_errors: explicit_or(VAR_CACHE_SERVER_ERRORS, "off"),
            cache_client_errors: explicit_or(VAR_CACHE_CLIENT_ERRORS, "url"),
            stale_while_revalidate_secs: number(VAR_STALE_WHILE_REVALIDATE_SECS, 0),
            stale_if_error_secs: number(VAR_STALE_IF_ERROR_SECS, 0),
            stale_if_disconnected_secs: number(VAR_STALE_IF_DISCONNECTED_SECS, 600),
            heuristic_max_secs: number(VAR_CACHE_HEURISTIC_MAX_SECS, 86_400),
            revalidation_window_secs: number(VAR_CACHE_REVALIDATION_WINDOW_SECS, 86_400),
            memory_cache_bytes,
            memory_cache_max_secs: number(VAR_MEMORY_CACHE_MAX_SECS, 30),
            kv_cache_max_object_bytes: found
                .or(kv_value_size(number(VAR_KV_CACHE_MAX_OBJECT_BYTES, 0)), 0),
            health: HealthPolicy {
                failure_threshold: found.or(
                    u32::try_from(number(VAR_HEALTH_FAILURE_THRESHOLD, 3).max(1)).map_err(|_| {
                        ConfigError::new(VAR_HEALTH_FAILURE_THRESHOLD, "is too large")
                    }),
                    3,
                ),
                cooldown_ms: number(VAR_HEALTH_COOLDOWN_SECS, 30).saturating_mul(1000),
            },
            health_sync_secs: number(VAR_HEALTH_SYNC_SECS, 10),
            warming: WarmSettings {
                after_purge: found.or(
                    switch(
                        VAR_WARM_AFTER_PURGE,
                        lookup(VAR_WARM_AFTER_PURGE).as_deref(),
                        false,
                    ),
                    false,
                ),
                max_urls: usize::try_from(number(VAR_WARM_MAX_URLS, 20).min(1000)).unwrap_or(20),
                interval_ms: number(VAR_WARM_INTERVAL_MS, 200),
                urls: found.or(
                    absolute_urls(
                        VAR_WARM_URLS,
                        lookup(VAR_WARM_URLS).as_deref().unwrap_or(""),
                    ),
                    Vec::new(),
                ),
                sitemap: found
                    .or(
                        absolute_urls(
                            VAR_WARM_SITEMAP,
                            lookup(VAR_WARM_SITEMAP).as_deref().unwrap_or(""),
                        ),
                        Vec::new(),
                    )
                    .into_iter()
                    .next(),
            },
            assets: AssetSettings {
                html_rewrite: found.or(
                    switch(VAR_HTML_REWRITE, lookup(VAR_HTML_REWRITE).as_deref(), true),
                    true,
                ),
                image_widths: found.or(image_widths(lookup(VAR_IMAGE_RESIZING).as_deref()), None),
                html_rewrite_memory_bytes: found.or(
                    as_usize(
                        VAR_HTML_REWRITE_MEMORY_BYTES,
                        bytes(
                            VAR_HTML_REWRITE_MEMORY_BYTES,
                            4 * MIB,
                            MAX_HTML_REWRITE_MEMORY_BYTES,
                        ),
                    ),
                    0,
                ),
                minify_js: found.or(
                    edge_minify_js(
                        lookup(VAR_EDGE_MINIFY_JS).as_deref(),
                        crate::assets::origin_minify::AVAILABLE,
                    ),
                    false,
                ),
                minify_css: found.or(
                    switch(
                        VAR_EDGE_MINIFY_CSS,
                        lookup(VAR_EDGE_MINIFY_CSS).as_deref(),
                        false,
                    ),
                    false,
                ),
                minify_max_bytes: found.or(
                    as_usize(
                        VAR_EDGE_MINIFY_MAX_BYTES,
                        bytes(
                            VAR_EDGE_MINIFY_MAX_BYTES,
                            crate::assets::origin_minify::DEFAULT_MAX_BYTES as u64,
                            MAX_EDGE_MINIFY_MAX_BYTES,
                        ),
                    ),
                    0,
                ),
                manifest_path: match lookup(VAR_ASSET_MANIFEST) {
                    None => "/manifest.json".to_owned(),
                    Some(path) if path.starts_with('/') && path.parse::<http::Uri>().is_ok() => {
                        path
                    }
                    Some(path) => {
                        found.note(ConfigError::new(
                            VAR_ASSET_MANIFEST,
                            format_args!("{path:?} must be a path starting with '/'"),
                        ));
                        "/manifest.json".to_owned()
                    }
                },
                html_cache_control: match lookup(VAR_HTML_CACHE_CONTROL) {
                    None => crate::assets::DEFAULT_HTML_CACHE_CONTROL.to_owned(),
                    Some(v) if http::HeaderValue::from_str(&v).is_ok() && !v.trim().is_empty() => v,
                    Some(v) => {
                        found.note(ConfigError::new(
                            VAR_HTML_CACHE_CONTROL,
                            format_args!("{v:?} is not a valid header value"),
                        ));
                        String::new()
                    }
                },
            },
            purge: purge_settings(lookup, found),
            state_token: found.or(
                lookup(VAR_STATE_TOKEN)
                    .filter(|v| !v.trim().is_empty())
                    .map(|raw| {
                        crate::purge::api::secret(
                            VAR_STATE_TOKEN,
                            raw,
                            crate::purge::api::MIN_TOKEN_LEN,
                        )
                    })
                    .transpose()
                    .map_err(|e| ConfigError {
                        variable: e.variable,
                        message: e.message,
                    }),
                None,
            ),
            retry: RetryPolicy {
                failure_statuses: found.or(
                    status_list(
                        VAR_ORIGIN_FAILURE_STATUSES,
                        lookup(VAR_ORIGIN_FAILURE_STATUSES)
                            .as_deref()
                            .unwrap_or("502,503,504"),
                    ),
                    Vec::new(),
                ),
                extra_methods: found.or(
                    method_list(
                        VAR_RETRY_METHODS,
                        lookup(VAR_RETRY_METHODS).as_deref().unwrap_or(""),
                    ),
                    Vec::new(),
                ),
                max_attempts: usize::try_from(number(VAR_ORIGIN_MAX_ATTEMPTS, 3).clamp(1, 10))
                    .unwrap_or(3),
                deadline_ms: number(VAR_ORIGIN_DEADLINE_MS, 30_000).max(1),
            },
            rules,
            collapse: CollapseSettings {
                enabled: found.or(
                    switch(VAR_DC_COLLAPSE, lookup(VAR_DC_COLLAPSE).as_deref(), true),
                    true,
                ),
                max_wait_ms: found.or(
                    collapse_wait(number(
                        VAR_DC_COLLAPSE_MAX_WAIT_MS,
                        collapse::DEFAULT_MAX_WAIT_MS,
                    )),
                    collapse::DEFAULT_MAX_WAIT_MS,
                ),
            },
            request_log: match lookup(VAR_REQUEST_LOG).as_deref().map(str::trim) {
                None | Some("json") => true,
                Some("off") => false,
                Some(other) => {
                    found.note(ConfigError::new(
                        VAR_REQUEST_LOG,
                        format_args!("expected \"json\" or \"off\", got {other:?}"),
                    ));
                    true
                }
            },
        }
    }

    /// The query filter of the rules a plain `GET` of `uri` on `host` meets
    /// (no request fields: a purge has none), else `CACHE_IGNORE_QUERY_PARAMS`.
    pub fn query_filter_for(&self, host: &str, uri: &http::Uri) -> QueryFilter<'_> {
        let path = crate::origin::shaping::normalize_path(uri.path());
        let host = crate::origin::shaping::host_without_port(host);
        let headers = http::HeaderMap::new();
        let request = rules::RuleRequest {
            method: &http::Method::GET,
            host: &host,
            path: &path,
            query: uri.query().unwrap_or(""),
            headers: &headers,
        };
        self.rules
            .query_filter_for(&request, &self.cache_ignore_query_params)
    }

    /// The token of the state endpoint: `STATE_TOKEN`, else `PURGE_TOKEN`.
    pub fn state_token(&self) -> Option<&SecretToken> {
        self.state_token.as_ref().or(self.purge.token.as_ref())
    }

    /// The settings the cache policy works with.
    pub fn policy_settings(&self) -> PolicySettings {
        PolicySettings {
            max_object_bytes: self.cache_max_object_bytes,
            default_swr_secs: self.stale_while_revalidate_secs,
            default_sie_secs: self.stale_if_error_secs,
            heuristic_max_secs: self.heuristic_max_secs,
            disconnected_grace_secs: self.stale_if_disconnected_secs,
            store_server_errors: self.cache_server_errors,
            store_client_errors: self.cache_client_errors,
        }
    }

    /// The origin every cache miss goes to in this version of the pipeline.
    pub fn primary_origin(&self) -> &OriginConfig {
        // `parse_origins` guarantees at least one origin.
        &self.origins[0]
    }
}

impl QueryKeying for Config {
    fn query_filter_for(&self, host: &str, uri: &http::Uri) -> QueryFilter<'_> {
        Config::query_filter_for(self, host, uri)
    }
}

/// `ORIGINS`: every bad entry is reported, each under its index.
fn parse_origins(raw: &str) -> Result<Vec<OriginConfig>, Vec<ConfigError>> {
    // from_slice, not from_str: one serde_json reader in the wasm (docs/assets.md).
    let raw_origins: Vec<RawOrigin> = serde_json::from_slice(raw.as_bytes()).map_err(|e| {
        vec![ConfigError::new(
            VAR_ORIGINS,
            format_args!("is not a valid origin list: {e}"),
        )]
    })?;
    if raw_origins.is_empty() {
        return Err(vec![ConfigError::new(
            VAR_ORIGINS,
            "must list at least one origin",
        )]);
    }
    let mut seen = HashSet::new();
    let mut origins = Vec::with_capacity(raw_origins.len());
    let mut errors = Vec::new();
    for (index, origin) in raw_origins.into_iter().enumerate() {
        match origin_config(index, origin, &mut seen) {
            Ok(origin) => origins.push(origin),
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(origins)
    } else {
        Err(errors)
    }
}

/// The names a bad `ORIGINS` still gives, when it is a JSON list at all.
fn origin_names(raw: &str) -> Option<Vec<String>> {
    // from_slice, not from_str: one serde_json reader in the wasm (docs/assets.md).
    let items: Vec<serde_json::Value> = serde_json::from_slice(raw.as_bytes()).ok()?;
    Some(
        items
            .iter()
            .filter_map(|item| item.get("name")?.as_str().map(str::to_owned))
            .collect(),
    )
}

fn origin_config(
    index: usize,
    origin: RawOrigin,
    seen: &mut HashSet<String>,
) -> Result<OriginConfig, ConfigError> {
    let at = |msg: String| ConfigError::new(VAR_ORIGINS, format_args!("origin #{index}: {msg}"));
    validate_name(&origin.name).map_err(at)?;
    if !seen.insert(origin.name.clone()) {
        return Err(at(format!("name {:?} is used twice", origin.name)));
    }
    let url = Url::parse(&origin.url).map_err(|e| {
        at(format!(
            "({}) url {:?} is not an absolute http(s) URL: {e}",
            origin.name,
            without_credentials(&origin.url)
        ))
    })?;
    validate_origin_url(&url).map_err(|m| at(format!("({}) {m}", origin.name)))?;
    let name = origin.name.clone();
    let weight = origin.weight.unwrap_or(1);
    if !(1..=1000).contains(&weight) {
        return Err(at(format!(
            "({name}) weight {weight} must be between 1 and 1000"
        )));
    }
    let timeout_ms = origin.timeout_ms.unwrap_or(DEFAULT_ORIGIN_TIMEOUT_MS);
    if !(1..=600_000).contains(&timeout_ms) {
        return Err(at(format!(
            "({name}) timeout_ms {timeout_ms} must be between 1 and 600000"
        )));
    }
    if let Some(path) = &origin.health_path {
        if !path.starts_with('/') || path.parse::<http::Uri>().is_err() {
            return Err(at(format!(
                "({name}) health_path {path:?} must be a path starting with '/'"
            )));
        }
    }
    let health_status = origin.health_status.unwrap_or(200);
    if !(100..=599).contains(&health_status) {
        return Err(at(format!(
            "({name}) health_status {health_status} is not an HTTP status"
        )));
    }
    if let Some(host) = &origin.host {
        if host.is_empty()
            || http::HeaderValue::from_str(host).is_err()
            || host.contains(['/', ' '])
        {
            return Err(at(format!(
                "({name}) host {host:?} is not a valid Host value"
            )));
        }
    }
    let priority = origin
        .priority
        .unwrap_or(u32::try_from(index).unwrap_or(u32::MAX));
    Ok(OriginConfig {
        name: origin.name,
        url,
        priority,
        weight,
        timeout_ms,
        health_path: origin.health_path,
        health_status,
        host: origin.host,
    })
}

/// The purge group's settings. [`PurgeConfig::from_vars`] stops at its
/// first problem; each one found is noted and its variable read as unset,
/// so that the next is found too.
fn purge_settings(lookup: &impl Fn(&str) -> Option<String>, found: &Found) -> PurgeConfig {
    let mut unset: Vec<&'static str> = Vec::new();
    loop {
        let read = PurgeConfig::from_vars(|name| {
            if unset.contains(&name) {
                None
            } else {
                lookup(name)
            }
        });
        match read {
            Ok(purge) => return purge,
            // Unsetting it changed nothing (CF_API_TOKEN missing beside
            // CF_ZONE_ID): already noted.
            Err(e) if unset.contains(&e.variable) => return PurgeConfig::default(),
            Err(e) => {
                unset.push(e.variable);
                found.note(ConfigError {
                    variable: e.variable,
                    message: e.message,
                });
            }
        }
    }
}

/// What [`Config::build`] found wrong, in the order it read the variables.
#[derive(Default)]
struct Found {
    errors: RefCell<Vec<ConfigError>>,
    /// `CACHE_RULES`'s own problems, each with its path (noted together as
    /// one error above).
    rule_problems: RefCell<Vec<RuleProblem>>,
}

impl Found {
    fn note(&self, error: ConfigError) {
        self.errors.borrow_mut().push(error);
    }

    /// The value, or with its problem noted, `fallback`.
    fn or<T>(&self, result: Result<T, ConfigError>, fallback: T) -> T {
        result.unwrap_or_else(|error| {
            self.note(error);
            fallback
        })
    }
}

/// How much a [`ConfigProblem`] matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The worker refuses this configuration.
    Error,
    /// Valid, but surely not what was meant.
    Warning,
}

/// One problem [`check`] found: where (a variable, or a place in
/// `CACHE_RULES` such as `CACHE_RULES[3] (blog).edge_ttl.mode`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub severity: Severity,
    pub path: String,
    pub message: String,
}

/// Every problem of a configuration, not only the first: each variable is
/// validated on its own by the code [`Config::from_vars`] runs, a bad one
/// read as its default so that the rest are still judged. Errors come in
/// the order the worker reads the variables, then the warnings of valid
/// `CACHE_RULES` ([`rules::warnings`]). Empty: the worker starts with it.
pub fn check(lookup: impl Fn(&str) -> Option<String>) -> Vec<ConfigProblem> {
    let found = Found::default();
    let config = Config::build(&lookup, &found);
    let mut rule_problems = Some(found.rule_problems.into_inner());
    let mut problems = Vec::new();
    for error in found.errors.into_inner() {
        let each_rule = (error.variable == VAR_CACHE_RULES)
            .then(|| rule_problems.take())
            .flatten();
        match each_rule {
            Some(listed) => problems.extend(listed.into_iter().map(|p| ConfigProblem {
                severity: Severity::Error,
                path: p.path,
                message: p.message,
            })),
            None => problems.push(ConfigProblem {
                severity: Severity::Error,
                path: error.variable.to_owned(),
                message: error.message,
            }),
        }
    }
    problems.extend(
        rules::warnings(&config.rules)
            .into_iter()
            .map(|p| ConfigProblem {
                severity: Severity::Warning,
                path: p.path,
                message: p.message,
            }),
    );
    problems
}

/// The operator token (`PURGE_TOKEN`) read on its own, for when the rest of
/// the configuration is invalid: it still lets the operator read the details
/// at the health endpoint. `None` when unset or itself invalid.
pub fn operator_token(lookup: impl Fn(&str) -> Option<String>) -> Option<SecretToken> {
    let raw = lookup(crate::purge::api::VAR_PURGE_TOKEN).filter(|v| !v.trim().is_empty())?;
    crate::purge::api::secret(
        crate::purge::api::VAR_PURGE_TOKEN,
        raw,
        crate::purge::api::MIN_TOKEN_LEN,
    )
    .ok()
}

/// `value` when it is at most `max` bytes; otherwise the error says why.
fn within_isolate(var: &'static str, value: u64, max: u64) -> Result<u64, ConfigError> {
    if value > max {
        return Err(ConfigError::new(
            var,
            format_args!(
                "is {value} bytes; at most {max} ({} MiB) is accepted, so that one \
                 isolate (128 MB for everything) can hold it",
                max / MIB
            ),
        ));
    }
    Ok(value)
}

/// Workers KV refuses values above 25 MiB: a larger limit would only turn
/// into failed writes, so it is refused here, naming the variable.
fn kv_value_size(value: u64) -> Result<u64, ConfigError> {
    if value > KV_VALUE_LIMIT {
        return Err(ConfigError::new(
            VAR_KV_CACHE_MAX_OBJECT_BYTES,
            format_args!(
                "is {value} bytes; Workers KV stores values of at most {KV_VALUE_LIMIT} (25 MiB)"
            ),
        ));
    }
    Ok(value)
}

fn as_usize(var: &'static str, value: u64) -> Result<usize, ConfigError> {
    usize::try_from(value).map_err(|_| ConfigError::new(var, "is too large"))
}

fn absolute_urls(var: &'static str, raw: &str) -> Result<Vec<String>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match Url::parse(s) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url.to_string()),
            _ => Err(ConfigError::new(
                var,
                format_args!("{s:?} is not an absolute http(s) URL"),
            )),
        })
        .collect()
}

/// `EDGE_MINIFY_JS`: a switch, refused when on in a worker built without the
/// minifier (`available` is false in a slim build).
fn edge_minify_js(raw: Option<&str>, available: bool) -> Result<bool, ConfigError> {
    match switch(VAR_EDGE_MINIFY_JS, raw, false)? {
        true if !available => Err(ConfigError::new(
            VAR_EDGE_MINIFY_JS,
            "this worker was built without the js-minify feature \
             (a slim build, CACHEFRONT_WORKER_FEATURES=\"\"; see docs/assets.md)",
        )),
        on => Ok(on),
    }
}

/// `DC_COLLAPSE_MAX_WAIT_MS`: long enough for one poll, short enough that
/// a stuck claim never holds a client for long.
fn collapse_wait(ms: u64) -> Result<u64, ConfigError> {
    if (collapse::MIN_MAX_WAIT_MS..=collapse::MAX_MAX_WAIT_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(ConfigError::new(
            VAR_DC_COLLAPSE_MAX_WAIT_MS,
            format_args!(
                "expected {} to {} (ms), got {ms}",
                collapse::MIN_MAX_WAIT_MS,
                collapse::MAX_MAX_WAIT_MS
            ),
        ))
    }
}

fn switch(var: &'static str, raw: Option<&str>, default: bool) -> Result<bool, ConfigError> {
    match raw.map(str::trim) {
        None => Ok(default),
        Some("on" | "true" | "1") => Ok(true),
        Some("off" | "false" | "0") => Ok(false),
        Some(other) => Err(ConfigError::new(
            var,
            format_args!("expected \"on\" or \"off\", got {other:?}"),
        )),
    }
}

/// `off`, `on` (default widths) or a comma-separated list of widths.
fn image_widths(raw: Option<&str>) -> Result<Option<Vec<u32>>, ConfigError> {
    let var = VAR_IMAGE_RESIZING;
    match raw.map(str::trim) {
        None | Some("off" | "false" | "0" | "") => Ok(None),
        Some("on" | "true" | "1") => Ok(Some(vec![320, 640, 960, 1280, 1920])),
        Some(list) => {
            let mut widths = list
                .split(',')
                .map(|w| match w.trim().parse::<u32>() {
                    Ok(n) if (1..=8192).contains(&n) => Ok(n),
                    _ => Err(ConfigError::new(
                        var,
                        format_args!("{w:?} is not a width in pixels (1-8192)"),
                    )),
                })
                .collect::<Result<Vec<u32>, _>>()?;
            // `sort`, not `sort_unstable`: one sort algorithm in the wasm (docs/assets.md).
            widths.sort();
            widths.dedup();
            Ok(Some(widths))
        }
    }
}

fn status_list(var: &'static str, raw: &str) -> Result<Vec<u16>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<u16>() {
            Ok(code) if (100..=599).contains(&code) => Ok(code),
            _ => Err(ConfigError::new(
                var,
                format_args!("{s:?} is not an HTTP status"),
            )),
        })
        .collect()
}

fn method_list(var: &'static str, raw: &str) -> Result<Vec<http::Method>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            http::Method::from_bytes(s.to_ascii_uppercase().as_bytes())
                .map_err(|_| ConfigError::new(var, format_args!("{s:?} is not an HTTP method")))
        })
        .collect()
}

/// A comma-separated list of names (query parameters or header fields).
fn name_list(var: &'static str, raw: &str, header_names: bool) -> Result<Vec<String>, ConfigError> {
    let mut names = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let valid = if header_names {
            http::HeaderName::from_bytes(item.as_bytes()).is_ok()
        } else {
            let name = item.strip_suffix('*').unwrap_or(item);
            !name.is_empty() && !name.contains(['&', '=', '#', '*', ' '])
        };
        if !valid {
            return Err(ConfigError::new(
                var,
                format_args!("{item:?} is not a valid name"),
            ));
        }
        names.push(if header_names {
            item.to_ascii_lowercase()
        } else {
            item.to_owned()
        });
    }
    Ok(names)
}

/// `BYPASS_COOKIES`: comma-separated cookie-name globs (`*` wildcard).
fn cookie_globs(raw: &str) -> Result<Vec<String>, ConfigError> {
    let mut globs = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        // Cookie names are RFC 6265 tokens; `*` is our wildcard.
        let valid = item
            .bytes()
            .all(|b| b == b'*' || (b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)));
        if !valid {
            return Err(ConfigError::new(
                VAR_BYPASS_COOKIES,
                format_args!("{item:?} is not a cookie name or a glob of one"),
            ));
        }
        globs.push(item.to_owned());
    }
    Ok(globs)
}

pub(crate) fn validate_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if name.is_empty() || name.len() > 64 || !ok_chars {
        return Err(format!(
            "name {name:?} must be 1-64 characters of letters, digits, '.', '_' or '-'"
        ));
    }
    Ok(())
}

fn validate_origin_url(url: &Url) -> Result<(), String> {
    // Error messages reach logs and the operator's health answer: never the password.
    let shown = without_credentials(url.as_str());
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("url {shown} must use http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("url {shown} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("url {shown} must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "url {shown} must not carry credentials; send them as origin headers"
        ));
    }
    Ok(())
}

/// `raw` with the `user:password@` of its authority replaced by `***@`.
fn without_credentials(raw: &str) -> String {
    let Some(scheme_end) = raw.find("://") else {
        return raw.to_owned();
    };
    let rest = &raw[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &raw[..scheme_end], &rest[at + 1..]),
        None => raw.to_owned(),
    }
}

fn validate_namespace(ns: &str) -> Result<String, ConfigError> {
    let ok_chars = ns
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ns.is_empty() || ns.len() > MAX_NAMESPACE_LEN || !ok_chars {
        return Err(ConfigError::new(
            VAR_CACHE_NAMESPACE,
            format_args!(
                "{ns:?} must be 1-{MAX_NAMESPACE_LEN} characters of letters, digits, '.', '_' or '-'"
            ),
        ));
    }
    Ok(ns.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config_from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_vars(|name| vars.get(name).cloned())
    }

    fn origins_error(json: &str) -> String {
        let err = config_from(&[(VAR_ORIGINS, json)]).expect_err("config should be rejected");
        assert_eq!(err.variable, VAR_ORIGINS);
        err.message
    }

    #[test]
    fn minimal_origin_list_is_accepted_with_defaults() {
        let config = config_from(&[(
            VAR_ORIGINS,
            r#"[{"name":"primary","url":"http://127.0.0.1:3000"}]"#,
        )])
        .expect("valid config");
        assert_eq!(config.origins.len(), 1);
        assert_eq!(config.primary_origin().name, "primary");
        assert_eq!(
            config.primary_origin().url.as_str(),
            "http://127.0.0.1:3000/"
        );
        assert_eq!(config.cache_namespace, "v1");
        assert_eq!(config.cache_max_object_bytes, DEFAULT_MAX_OBJECT_BYTES);
    }

    #[test]
    fn several_origins_keep_their_order() {
        let config = config_from(&[(
            VAR_ORIGINS,
            r#"[{"name":"eu","url":"https://eu.example.com/app"},{"name":"us","url":"https://us.example.com"}]"#,
        )])
        .expect("valid config");
        let names: Vec<_> = config.origins.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["eu", "us"]);
        assert_eq!(config.origins[0].url.path(), "/app");
    }

    #[test]
    fn missing_origins_names_the_variable() {
        let err = config_from(&[]).expect_err("must fail");
        assert_eq!(err.variable, VAR_ORIGINS);
        assert!(err.message.contains("not set"), "{}", err.message);
    }

    #[test]
    fn malformed_origin_json_is_rejected() {
        assert!(origins_error("not json").contains("not a valid origin list"));
        assert!(origins_error(r#"{"name":"a"}"#).contains("not a valid origin list"));
    }

    #[test]
    fn empty_origin_list_is_rejected() {
        assert!(origins_error("[]").contains("at least one origin"));
    }

    #[test]
    fn origin_without_url_or_with_unknown_field_is_rejected() {
        assert!(origins_error(r#"[{"name":"a"}]"#).contains("url"));
        assert!(
            origins_error(r#"[{"name":"a","url":"http://x","colour":"red"}]"#).contains("colour")
        );
    }

    #[test]
    fn origin_url_must_be_absolute_http() {
        assert!(origins_error(r#"[{"name":"a","url":"127.0.0.1:3000"}]"#).contains("http"));
        assert!(origins_error(r#"[{"name":"a","url":"ftp://x.example"}]"#).contains("http"));
        assert!(origins_error(r#"[{"name":"a","url":"/relative"}]"#).contains("absolute"));
        assert!(origins_error(r#"[{"name":"a","url":"http://x.example/?q=1"}]"#).contains("query"));
        assert!(
            origins_error(r#"[{"name":"a","url":"http://u:p@x.example/"}]"#)
                .contains("credentials")
        );
    }

    #[test]
    fn origin_failover_fields_have_defaults_and_limits() {
        let config = config_from(&[(
            VAR_ORIGINS,
            r#"[{"name":"eu","url":"http://a"},{"name":"us","url":"http://b","priority":0,"weight":5,"timeout_ms":2500,"health_path":"/healthz","health_status":204,"host":"api.example"}]"#,
        )])
        .expect("valid");
        let (eu, us) = (&config.origins[0], &config.origins[1]);
        assert_eq!(
            (eu.priority, eu.weight, eu.timeout_ms, eu.health_status),
            (0, 1, 10_000, 200)
        );
        assert_eq!(eu.health_path, None);
        assert_eq!(
            (us.priority, us.weight, us.timeout_ms, us.health_status),
            (0, 5, 2500, 204)
        );
        assert_eq!(us.health_path.as_deref(), Some("/healthz"));
        assert_eq!(us.host.as_deref(), Some("api.example"));
        assert_eq!(config.retry.failure_statuses, [502, 503, 504]);
        assert_eq!(config.health.failure_threshold, 3);

        for (json, needle) in [
            (r#"[{"name":"a","url":"http://a","weight":0}]"#, "weight"),
            (
                r#"[{"name":"a","url":"http://a","timeout_ms":0}]"#,
                "timeout_ms",
            ),
            (
                r#"[{"name":"a","url":"http://a","health_path":"healthz"}]"#,
                "health_path",
            ),
            (
                r#"[{"name":"a","url":"http://a","health_status":99}]"#,
                "health_status",
            ),
            (r#"[{"name":"a","url":"http://a","host":"a b"}]"#, "host"),
        ] {
            let message = origins_error(json);
            assert!(
                message.contains(needle) && message.contains("origin #0"),
                "{json}: {message}"
            );
        }
        let negative = origins_error(r#"[{"name":"a","url":"http://a","priority":-1}]"#);
        assert!(negative.contains("expected u32"), "{negative}");
    }

    #[test]
    fn dc_collapse_is_on_by_default_and_bad_values_name_the_variable() {
        let origins = (VAR_ORIGINS, r#"[{"name":"a","url":"http://x"}]"#);
        let default = config_from(&[origins]).expect("valid").collapse;
        assert_eq!(default, CollapseSettings::default());
        assert!(default.enabled);
        let set = config_from(&[
            origins,
            (VAR_DC_COLLAPSE, "off"),
            (VAR_DC_COLLAPSE_MAX_WAIT_MS, "500"),
        ])
        .expect("valid")
        .collapse;
        assert!(!set.enabled);
        assert_eq!(set.max_wait_ms, 500);
        for (var, bad, needle) in [
            (VAR_DC_COLLAPSE, "maybe", "\"on\" or \"off\""),
            (VAR_DC_COLLAPSE_MAX_WAIT_MS, "0", "10 to 30000"),
            (VAR_DC_COLLAPSE_MAX_WAIT_MS, "60000", "10 to 30000"),
            (
                VAR_DC_COLLAPSE_MAX_WAIT_MS,
                "soon",
                "whole non-negative number",
            ),
        ] {
            let err = config_from(&[origins, (var, bad)]).expect_err(bad);
            assert_eq!(err.variable, var, "{bad}");
            assert!(err.message.contains(needle), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn warming_settings_are_validated() {
        let origins = (VAR_ORIGINS, r#"[{"name":"a","url":"http://x"}]"#);
        let off = config_from(&[origins]).expect("valid").warming;
        assert!(!off.after_purge && off.urls.is_empty() && off.sitemap.is_none());
        let on = config_from(&[
            origins,
            (VAR_WARM_AFTER_PURGE, "on"),
            (
                VAR_WARM_URLS,
                "https://shop.example/, https://shop.example/about",
            ),
            (VAR_WARM_SITEMAP, "https://shop.example/sitemap.xml"),
        ])
        .expect("valid")
        .warming;
        assert!(on.after_purge);
        assert_eq!(on.urls.len(), 2);
        assert_eq!(
            on.sitemap.as_deref(),
            Some("https://shop.example/sitemap.xml")
        );
        assert_eq!(
            config_from(&[origins, (VAR_WARM_URLS, "/relative")])
                .expect_err("bad")
                .variable,
            VAR_WARM_URLS
        );
    }

    #[test]
    fn asset_settings_have_defaults_and_are_validated() {
        let origins = (VAR_ORIGINS, r#"[{"name":"a","url":"http://x"}]"#);
        let defaults = config_from(&[origins]).expect("valid").assets;
        assert!(defaults.html_rewrite);
        assert_eq!(defaults.image_widths, None);
        assert_eq!(defaults.manifest_path, "/manifest.json");
        assert!(!defaults.minify_js);
        let tuned = config_from(&[
            origins,
            (VAR_IMAGE_RESIZING, "640, 320"),
            (VAR_HTML_REWRITE, "off"),
            (VAR_EDGE_MINIFY_JS, "on"),
            (VAR_EDGE_MINIFY_MAX_BYTES, "1000"),
        ])
        .expect("valid")
        .assets;
        assert_eq!(tuned.image_widths, Some(vec![320, 640]));
        assert!(!tuned.html_rewrite);
        assert!(tuned.minify_js);
        assert_eq!(tuned.minify_max_bytes, 1000);
        for (var, bad) in [
            (VAR_IMAGE_RESIZING, "wide"),
            (VAR_HTML_REWRITE, "maybe"),
            (VAR_EDGE_MINIFY_JS, "yes"),
            (VAR_EDGE_MINIFY_MAX_BYTES, "-1"),
            (VAR_ASSET_MANIFEST, "manifest.json"),
        ] {
            assert_eq!(
                config_from(&[origins, (var, bad)]).expect_err(bad).variable,
                var
            );
        }
    }

    #[test]
    fn a_kv_object_limit_above_what_kv_stores_is_refused_by_name() {
        let limit = 25 * 1024 * 1024;
        let at_limit = limit.to_string();
        let origins = (VAR_ORIGINS, r#"[{"name":"a","url":"http://x"}]"#);
        let config =
            config_from(&[origins, (VAR_KV_CACHE_MAX_OBJECT_BYTES, &at_limit)]).expect("25 MiB");
        assert_eq!(config.kv_cache_max_object_bytes, limit);
        let above = (limit + 1).to_string();
        let err = config_from(&[origins, (VAR_KV_CACHE_MAX_OBJECT_BYTES, &above)])
            .expect_err("above 25 MiB");
        assert_eq!(err.variable, VAR_KV_CACHE_MAX_OBJECT_BYTES);
        assert!(err.message.contains("25 MiB"), "{}", err.message);
    }

    #[test]
    fn a_slim_build_refuses_edge_minify_js_on_and_accepts_off() {
        let refused = edge_minify_js(Some("on"), false).expect_err("slim build");
        assert_eq!(refused.variable, VAR_EDGE_MINIFY_JS);
        assert!(refused.to_string().contains("js-minify"), "{refused}");
        assert_eq!(edge_minify_js(Some("off"), false).ok(), Some(false));
        assert_eq!(edge_minify_js(None, false).ok(), Some(false));
        assert_eq!(edge_minify_js(Some("on"), true).ok(), Some(true));
    }

    #[test]
    fn retry_and_health_variables_are_validated() {
        let origins = (VAR_ORIGINS, r#"[{"name":"a","url":"http://x"}]"#);
        let tuned = config_from(&[
            origins,
            (VAR_ORIGIN_FAILURE_STATUSES, "500, 503"),
            (VAR_RETRY_METHODS, "put"),
            (VAR_HEALTH_FAILURE_THRESHOLD, "5"),
            (VAR_HEALTH_COOLDOWN_SECS, "2"),
        ])
        .expect("valid");
        assert_eq!(tuned.retry.failure_statuses, [500, 503]);
        assert_eq!(tuned.retry.extra_methods, [http::Method::PUT]);
        assert_eq!(tuned.health.failure_threshold, 5);
        assert_eq!(tuned.health.cooldown_ms, 2000);
        for (var, bad) in [
            (VAR_ORIGIN_FAILURE_STATUSES, "5xx"),
            (VAR_RETRY_METHODS, "GE T"),
            (VAR_ORIGIN_DEADLINE_MS, "soon"),
        ] {
            assert_eq!(
                config_from(&[origins, (var, bad)]).expect_err(bad).variable,
                var
            );
        }
    }

    #[test]
    fn origin_names_must_be_valid_and_unique() {
        assert!(origins_error(r#"[{"name":"","url":"http://x"}]"#).contains("name"));
        assert!(origins_error(r#"[{"name":"a b","url":"http://x"}]"#).contains("name"));
        let dup = origins_error(r#"[{"name":"a","url":"http://x"},{"name":"a","url":"http://y"}]"#);
        assert!(dup.contains("origin #1") && dup.contains("twice"), "{dup}");
    }

    #[test]
    fn namespace_and_object_limit_are_validated() {
        let origins = (VAR_ORIGINS, r#"[{"name":"a","url":"http://x"}]"#);
        let ok = config_from(&[
            origins,
            (VAR_CACHE_NAMESPACE, " deploy-42 "),
            (VAR_CACHE_MAX_OBJECT_BYTES, "1024"),
        ])
        .expect("valid");
        assert_eq!(ok.cache_namespace, "deploy-42");
        assert_eq!(ok.cache_max_object_bytes, 1024);

        let bad_ns = config_from(&[origins, (VAR_CACHE_NAMESPACE, "a/b")]).expect_err("bad ns");
        assert_eq!(bad_ns.variable, VAR_CACHE_NAMESPACE);
        let bad_max =
            config_from(&[origins, (VAR_CACHE_MAX_OBJECT_BYTES, "-1")]).expect_err("bad max");
        assert_eq!(bad_max.variable, VAR_CACHE_MAX_OBJECT_BYTES);
    }

    #[test]
    fn cache_tuning_variables_have_defaults_and_are_validated() {
        let origins = (VAR_ORIGINS, r#"[{"name":"a","url":"http://x"}]"#);
        let defaults = config_from(&[origins]).expect("valid");
        assert_eq!(
            defaults.cache_ignore_query_params,
            ["utm_*", "fbclid", "gclid", "msclkid"]
        );
        assert!(defaults.cache_key_headers.is_empty());
        assert_eq!(defaults.policy_settings().default_swr_secs, 0);
        assert_eq!(defaults.memory_cache_bytes, 8 * 1024 * 1024);
        assert!(defaults.request_log);

        let tuned = config_from(&[
            origins,
            (VAR_CACHE_IGNORE_QUERY_PARAMS, "ref, utm_*"),
            (VAR_CACHE_KEY_HEADERS, "X-Forwarded-Host"),
            (VAR_STALE_WHILE_REVALIDATE_SECS, "30"),
            (VAR_STALE_IF_ERROR_SECS, "600"),
            (VAR_MEMORY_CACHE_BYTES, "0"),
            (VAR_REQUEST_LOG, "off"),
            (VAR_FORWARD_REQUEST_HEADERS, "X-Tenant, X-Device"),
            (VAR_BYPASS_COOKIES, "session*, wordpress_logged_in_*"),
        ])
        .expect("valid");
        assert_eq!(tuned.forward_request_headers, ["x-tenant", "x-device"]);
        assert_eq!(tuned.bypass_cookies, ["session*", "wordpress_logged_in_*"]);
        assert!(defaults.bypass_cookies.is_empty());
        assert!(!defaults.policy_settings().store_server_errors);
        assert!(!defaults.policy_settings().store_client_errors);
        let explicit =
            config_from(&[origins, (VAR_CACHE_CLIENT_ERRORS, "explicit")]).expect("valid");
        assert!(explicit.policy_settings().store_client_errors);
        assert_eq!(tuned.cache_ignore_query_params, ["ref", "utm_*"]);
        assert_eq!(tuned.cache_key_headers, ["x-forwarded-host"]);
        assert_eq!(tuned.policy_settings().default_swr_secs, 30);
        assert_eq!(tuned.policy_settings().default_sie_secs, 600);
        assert_eq!(tuned.memory_cache_bytes, 0);
        assert!(!tuned.request_log);

        for (var, bad) in [
            (VAR_STALE_IF_ERROR_SECS, "ten"),
            (VAR_CACHE_KEY_HEADERS, "bad header"),
            (VAR_CACHE_IGNORE_QUERY_PARAMS, "a=b"),
            (VAR_MEMORY_CACHE_MAX_SECS, "-3"),
            (VAR_REQUEST_LOG, "verbose"),
            (VAR_FORWARD_REQUEST_HEADERS, "bad header"),
            (VAR_BYPASS_COOKIES, "a=b"),
            (VAR_BYPASS_COOKIES, "sess;ion"),
            (VAR_CACHE_SERVER_ERRORS, "on"),
            (VAR_CACHE_CLIENT_ERRORS, "all"),
        ] {
            let err = config_from(&[origins, (var, bad)]).expect_err(bad);
            assert_eq!(err.variable, var);
        }
    }

    #[test]
    fn byte_sizes_an_isolate_cannot_hold_are_refused_naming_the_variable() {
        let origins = (VAR_ORIGINS, r#"[{"name":"a","url":"http://127.0.0.1"}]"#);
        for (var, max) in [
            (VAR_MEMORY_CACHE_BYTES, MAX_MEMORY_CACHE_BYTES),
            (VAR_STREAM_BODIES_ABOVE_BYTES, MAX_STREAM_BODIES_ABOVE_BYTES),
            (VAR_HTML_REWRITE_MEMORY_BYTES, MAX_HTML_REWRITE_MEMORY_BYTES),
            (VAR_EDGE_MINIFY_MAX_BYTES, MAX_EDGE_MINIFY_MAX_BYTES),
            (VAR_CACHE_MAX_OBJECT_BYTES, MAX_CACHE_MAX_OBJECT_BYTES),
        ] {
            let at_cap = max.to_string();
            config_from(&[origins, (var, &at_cap)])
                .unwrap_or_else(|e| panic!("{var}={max} is accepted: {e}"));
            let above = (max + 1).to_string();
            let err = config_from(&[origins, (var, &above)]).expect_err(var);
            assert_eq!(err.variable, var);
            assert!(err.message.contains("at most"), "{var}: {}", err.message);
            let huge = config_from(&[origins, (var, "18446744073709551615")]).expect_err(var);
            assert_eq!(huge.variable, var);
        }
    }

    #[test]
    fn the_caps_fit_one_isolate_together() {
        // Memory tier plus one body held whole (read and rewritten) plus the
        // rewriter's buffers stay below the 128 MB of an isolate.
        let held = MAX_MEMORY_CACHE_BYTES
            + MAX_STREAM_BODIES_ABOVE_BYTES
            + MAX_HTML_REWRITE_MEMORY_BYTES
            + MAX_EDGE_MINIFY_MAX_BYTES;
        assert!(held < 128 * 1000 * 1000, "{held}");
    }

    #[test]
    fn origin_errors_never_show_a_password() {
        for url in [
            "http://admin:hunter2-secret@origin.example",
            "ftp://admin:hunter2-secret@origin.example",
            "http://admin:hunter2-secret@origin.example/?q=1",
            "http://admin:hunter2-secret@:80",
        ] {
            let json = format!(r#"[{{"name":"a","url":"{url}"}}]"#);
            let message = origins_error(&json);
            assert!(!message.contains("hunter2"), "{message}");
            assert!(message.contains("***@"), "{message}");
        }
    }

    #[test]
    fn state_token_falls_back_to_the_purge_token_and_is_validated() {
        let origins = (VAR_ORIGINS, r#"[{"name":"a","url":"http://127.0.0.1"}]"#);
        let purge = ("PURGE_TOKEN", "purge-token-0123456789");
        let only_purge = config_from(&[origins, purge]).expect("valid");
        assert_eq!(
            only_purge.state_token().map(SecretToken::expose),
            Some("purge-token-0123456789")
        );
        let both = config_from(&[origins, purge, (VAR_STATE_TOKEN, "state-token-0123456789")])
            .expect("valid");
        assert_eq!(
            both.state_token().map(SecretToken::expose),
            Some("state-token-0123456789")
        );
        let short = config_from(&[origins, (VAR_STATE_TOKEN, "short")]).expect_err("too short");
        assert_eq!(short.variable, VAR_STATE_TOKEN);
        assert!(
            !short.message.contains("short\""),
            "never the secret: {}",
            short.message
        );
        assert!(config_from(&[origins])
            .expect("valid")
            .state_token()
            .is_none());
    }

    #[test]
    fn the_operator_token_is_read_even_when_the_rest_is_invalid() {
        let vars = |name: &str| match name {
            "PURGE_TOKEN" => Some("purge-token-0123456789".to_owned()),
            VAR_ORIGINS => Some("not json".to_owned()),
            _ => None,
        };
        assert!(Config::from_vars(vars).is_err());
        assert_eq!(
            operator_token(vars).map(|t| t.expose().to_owned()),
            Some("purge-token-0123456789".to_owned())
        );
        assert_eq!(operator_token(|_| Some("short".to_owned())), None);
        assert_eq!(operator_token(|_| None), None);
    }

    fn check_of(pairs: &[(&str, &str)]) -> Vec<ConfigProblem> {
        let vars: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        check(|name| vars.get(name).cloned())
    }

    #[test]
    fn check_lists_every_bad_variable_and_from_vars_reports_the_first() {
        let pairs = [
            (
                VAR_ORIGINS,
                r#"[{"name":"a","url":"http://x"},{"name":"a","url":"http://y"},{"name":"b","url":"ftp://z"}]"#,
            ),
            (VAR_CACHE_NAMESPACE, "a/b"),
            (VAR_MEMORY_CACHE_BYTES, "lots"),
            (VAR_REQUEST_LOG, "verbose"),
            ("PURGE_SHARDS", "0"),
            ("PURGE_RATE_PER_MIN", "fast"),
            (VAR_STATE_TOKEN, "short"),
        ];
        let found = check_of(&pairs);
        let paths: Vec<&str> = found.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                VAR_ORIGINS,
                VAR_ORIGINS,
                VAR_CACHE_NAMESPACE,
                VAR_MEMORY_CACHE_BYTES,
                "PURGE_SHARDS",
                "PURGE_RATE_PER_MIN",
                VAR_STATE_TOKEN,
                VAR_REQUEST_LOG,
            ],
            "{found:#?}"
        );
        assert!(found.iter().all(|p| p.severity == Severity::Error));
        assert!(found[0].message.contains("origin #1"), "{found:#?}");
        assert!(found[1].message.contains("origin #2"), "{found:#?}");
        let first = config_from(&pairs).expect_err("invalid");
        assert_eq!(
            (first.variable, first.message.as_str()),
            (VAR_ORIGINS, found[0].message.as_str())
        );
    }

    #[test]
    fn check_names_each_rule_problem_by_its_path_and_adds_rule_warnings() {
        let origins = (VAR_ORIGINS, r#"[{"name":"web","url":"http://x"}]"#);
        let bad = check_of(&[
            origins,
            (
                VAR_CACHE_RULES,
                r#"[{"name":"blog","edge_ttl":{"mode":"forever"}},{"origin":"nowhere"}]"#,
            ),
            (VAR_REQUEST_LOG, "verbose"),
        ]);
        let paths: Vec<&str> = bad.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "CACHE_RULES[0] (blog).edge_ttl.mode",
                "CACHE_RULES[1].origin",
                VAR_REQUEST_LOG
            ],
            "{bad:#?}"
        );
        let shadowed = check_of(&[
            origins,
            (
                VAR_CACHE_RULES,
                r#"[{"name":"all"},{"name":"late","match":{"path":"/x"}}]"#,
            ),
        ]);
        assert_eq!(shadowed.len(), 1, "{shadowed:#?}");
        assert_eq!(shadowed[0].severity, Severity::Warning);
        assert_eq!(shadowed[0].path, "CACHE_RULES[1] (late)");
        assert!(check_of(&[origins]).is_empty());
    }

    #[test]
    fn rule_origins_are_judged_against_the_names_of_a_bad_origin_list() {
        let rules = (VAR_CACHE_RULES, r#"[{"origin":"api"}]"#);
        // ORIGINS is a list with one bad entry: its names still count.
        let named = check_of(&[
            (
                VAR_ORIGINS,
                r#"[{"name":"api","url":"ftp://x"},{"name":"web","url":"http://y"}]"#,
            ),
            rules,
        ]);
        assert_eq!(named.len(), 1, "{named:#?}");
        assert_eq!(named[0].path, VAR_ORIGINS);
        // ORIGINS is no list at all: a rule's origin cannot be judged.
        let unreadable = check_of(&[(VAR_ORIGINS, "nope"), rules]);
        assert_eq!(unreadable.len(), 1, "{unreadable:#?}");
        let wrong = check_of(&[(VAR_ORIGINS, r#"[{"name":"web","url":"ftp://y"}]"#), rules]);
        assert!(
            wrong.iter().any(|p| p.path == "CACHE_RULES[0].origin"),
            "{wrong:#?}"
        );
    }
}
