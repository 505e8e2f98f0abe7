//! The purge API's core: its configuration ([`PurgeConfig`]), the request
//! model and its validation, authentication (bearer token, constant-time
//! comparison), the per-isolate rate limit, the typed errors and their one
//! mapping to status + JSON, and the receipt. [`authorize_and_parse`] decides
//! a request; [`execute_purge`] writes it to the tag registry.
//!
//! The token is a secret: it is kept in [`SecretToken`], whose `Debug` is
//! redacted, and no error message or receipt ever contains it.

use std::cell::RefCell;
use std::fmt;

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use url::Url;

use super::cloudflare::{self, CloudflareZone};
use super::request::{url_parts, PurgeRequest};
use crate::admin::auth::{self, SecretToken, TokenCheck};
use crate::purge::registry::{purge_keys, TagRegistryStore};
use crate::purge::tags::{self, DropReason};
use crate::responses::{api_error_response, json_response};
use crate::Body;

/// Where the purge API is served.
pub const PURGE_PATH: &str = "/__cachefront/purge";
/// Largest request body accepted, in bytes (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most items (tags + urls + prefixes + hosts) in one request.
pub const MAX_ITEMS: usize = 1000;
/// Longest URL accepted in `urls`, in bytes.
pub const MAX_URL_BYTES: usize = 4096;
/// Shortest `PURGE_TOKEN` accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// The bearer token that enables and guards the purge API (a secret).
pub const VAR_PURGE_TOKEN: &str = "PURGE_TOKEN";
/// How long an isolate trusts a registry answer, in ms.
pub const VAR_PURGE_SYNC_MS: &str = "PURGE_SYNC_MS";
/// Number of registry shards (Durable Objects) tags are spread over.
pub const VAR_PURGE_SHARDS: &str = "PURGE_SHARDS";
/// Comma-separated path prefixes that get `prefix:` tags.
pub const VAR_PURGE_PREFIX_TAGS: &str = "PURGE_PREFIX_TAGS";
/// Purge requests accepted per minute per isolate (also the burst).
pub const VAR_PURGE_RATE_PER_MIN: &str = "PURGE_RATE_PER_MIN";
/// `true` (default) / `false`: remove `Cache-Tag` / `Surrogate-Key` from client responses.
pub const VAR_PURGE_STRIP_TAG_HEADERS: &str = "PURGE_STRIP_TAG_HEADERS";
/// `on` (default) / `off`: refresh registry answers in the background in
/// the second half of their window, so hot tags never wait on a lookup.
pub const VAR_PURGE_REFRESH_AHEAD: &str = "PURGE_REFRESH_AHEAD";
/// `on` / `off` (default): share registry answers between the isolates of a
/// data centre through the Cache API (one lookup per data centre per window).
pub const VAR_PURGE_DC_MEMO: &str = "PURGE_DC_MEMO";
/// `on`/`off`: ask the registry for the purges since a cursor, once per
/// window per shard, instead of per key (`purge::sync`).
pub const VAR_PURGE_CHANGE_SYNC: &str = "PURGE_CHANGE_SYNC";
/// Cloudflare zone whose cache purges are forwarded to.
pub const VAR_CF_ZONE_ID: &str = "CF_ZONE_ID";
/// API token with the zone's Cache Purge permission (a secret).
pub const VAR_CF_API_TOKEN: &str = "CF_API_TOKEN";
/// Items per Cloudflare purge call.
pub const VAR_CF_PURGE_BATCH: &str = "CF_PURGE_BATCH";
/// Where Cloudflare's API is reached: its public base unless set (an
/// `https://` URL, or `http://` on a loopback address for a local stand-in).
pub const VAR_CF_API_BASE: &str = "CF_API_BASE";

const DEFAULT_SYNC_MS: u64 = 1000;
const MAX_SYNC_MS: u64 = 60_000;
const DEFAULT_SHARDS: u32 = 4;
const MAX_SHARDS: u32 = 64;
const DEFAULT_RATE_PER_MIN: u32 = 60;
const MAX_PREFIXES: usize = 64;
const MAX_PREFIX_BYTES: usize = 256;

/// The purge feature's configuration, read from the worker's variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeConfig {
    /// `None`: the purge API is disabled and answers 404.
    pub token: Option<SecretToken>,
    pub sync_ms: u64,
    pub shards: u32,
    /// Lower-cased path prefixes, each starting with `/`.
    pub prefix_tags: Vec<String>,
    pub rate_per_min: u32,
    pub strip_tag_headers: bool,
    /// Refresh answers in the background before they expire.
    pub refresh_ahead: bool,
    /// Share answers through the data centre's Cache API.
    pub dc_memo: bool,
    /// Sync "purges since a cursor" per shard instead of asking per key.
    pub change_sync: bool,
    pub cloudflare: Option<CloudflareZone>,
    /// The API base forwarded purges go to (`CF_API_BASE`, default [`cloudflare::API_BASE`]).
    pub cloudflare_api_base: String,
}

/// A configuration problem: which variable is wrong and why (never its value
/// when the variable is a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration variable {variable}: {message}")]
pub struct PurgeConfigError {
    pub variable: &'static str,
    pub message: String,
}

/// An `on` / `off` variable (`default` when unset).
fn on_off(
    variable: &'static str,
    raw: Option<String>,
    default: bool,
) -> Result<bool, PurgeConfigError> {
    match raw.as_deref().map(str::trim) {
        None => Ok(default),
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => Err(config_error(
            variable,
            format_args!("expected \"on\" or \"off\", got {other:?}"),
        )),
    }
}

fn config_error(variable: &'static str, message: impl fmt::Display) -> PurgeConfigError {
    PurgeConfigError {
        variable,
        message: message.to_string(),
    }
}

impl Default for PurgeConfig {
    fn default() -> Self {
        Self {
            token: None,
            sync_ms: DEFAULT_SYNC_MS,
            shards: DEFAULT_SHARDS,
            prefix_tags: Vec::new(),
            rate_per_min: DEFAULT_RATE_PER_MIN,
            strip_tag_headers: true,
            refresh_ahead: true,
            dc_memo: true,
            change_sync: true,
            cloudflare: None,
            cloudflare_api_base: cloudflare::API_BASE.to_owned(),
        }
    }
}

impl PurgeConfig {
    /// Builds the configuration from a variable lookup (`None` = not set).
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, PurgeConfigError> {
        let set = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let number = |var: &'static str, default: u64, min: u64, max: u64| match set(var) {
            None => Ok(default),
            Some(raw) => match raw.trim().parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(config_error(
                    var,
                    format_args!("expected a whole number from {min} to {max}, got {raw:?}"),
                )),
            },
        };

        let token = set(VAR_PURGE_TOKEN)
            .map(|raw| secret(VAR_PURGE_TOKEN, raw, MIN_TOKEN_LEN))
            .transpose()?;
        let sync_ms = number(VAR_PURGE_SYNC_MS, DEFAULT_SYNC_MS, 0, MAX_SYNC_MS)?;
        let shards = number(
            VAR_PURGE_SHARDS,
            DEFAULT_SHARDS.into(),
            1,
            MAX_SHARDS.into(),
        )?;
        let rate = number(
            VAR_PURGE_RATE_PER_MIN,
            DEFAULT_RATE_PER_MIN.into(),
            1,
            100_000,
        )?;
        let strip_tag_headers = match set(VAR_PURGE_STRIP_TAG_HEADERS).as_deref().map(str::trim) {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(config_error(
                    VAR_PURGE_STRIP_TAG_HEADERS,
                    format_args!("expected \"true\" or \"false\", got {other:?}"),
                ))
            }
        };
        let prefix_tags = parse_prefixes(set(VAR_PURGE_PREFIX_TAGS).as_deref().unwrap_or(""))?;

        let cloudflare = match (set(VAR_CF_ZONE_ID), set(VAR_CF_API_TOKEN)) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(config_error(
                    VAR_CF_API_TOKEN,
                    "is not set, but CF_ZONE_ID is; set both or neither",
                ))
            }
            (None, Some(_)) => {
                return Err(config_error(
                    VAR_CF_ZONE_ID,
                    "is not set, but CF_API_TOKEN is; set both or neither",
                ))
            }
            (Some(zone), Some(api_token)) => {
                let zone_id = zone.trim().to_owned();
                if zone_id.len() != 32 || !zone_id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(config_error(
                        VAR_CF_ZONE_ID,
                        format_args!("expected a 32-digit hexadecimal zone id, got {zone_id:?}"),
                    ));
                }
                let batch = number(
                    VAR_CF_PURGE_BATCH,
                    cloudflare::DEFAULT_BATCH as u64,
                    1,
                    cloudflare::MAX_BATCH as u64,
                )?;
                Some(CloudflareZone {
                    zone_id,
                    api_token: secret(VAR_CF_API_TOKEN, api_token, 1)?,
                    batch_size: usize::try_from(batch).unwrap_or(cloudflare::DEFAULT_BATCH),
                })
            }
        };

        let cloudflare_api_base = match set(VAR_CF_API_BASE) {
            None => cloudflare::API_BASE.to_owned(),
            Some(raw) => cloudflare::parse_api_base(&raw)
                .map_err(|reason| config_error(VAR_CF_API_BASE, reason))?,
        };

        Ok(Self {
            token,
            sync_ms,
            shards: u32::try_from(shards).unwrap_or(DEFAULT_SHARDS),
            prefix_tags,
            rate_per_min: u32::try_from(rate).unwrap_or(DEFAULT_RATE_PER_MIN),
            strip_tag_headers,
            refresh_ahead: on_off(VAR_PURGE_REFRESH_AHEAD, set(VAR_PURGE_REFRESH_AHEAD), true)?,
            dc_memo: on_off(VAR_PURGE_DC_MEMO, set(VAR_PURGE_DC_MEMO), true)?,
            change_sync: on_off(VAR_PURGE_CHANGE_SYNC, set(VAR_PURGE_CHANGE_SYNC), true)?,
            cloudflare,
            cloudflare_api_base,
        })
    }

    /// The rules that give entries their automatic tags.
    pub fn auto_tag_rules<'a>(
        &'a self,
        query: crate::origin::shaping::QueryFilter<'a>,
    ) -> tags::AutoTagRules<'a> {
        tags::AutoTagRules {
            path_prefixes: &self.prefix_tags,
            query,
        }
    }
}

pub(crate) fn secret(
    variable: &'static str,
    raw: String,
    min_len: usize,
) -> Result<SecretToken, PurgeConfigError> {
    let value = raw.trim();
    if value.len() < min_len {
        return Err(config_error(
            variable,
            format_args!(
                "is too short: use at least {min_len} characters (e.g. `openssl rand -hex 32`)"
            ),
        ));
    }
    if !value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(config_error(
            variable,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(SecretToken::new(value))
}

fn parse_prefixes(raw: &str) -> Result<Vec<String>, PurgeConfigError> {
    let mut prefixes: Vec<String> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let valid = item.starts_with('/')
            && item.len() <= MAX_PREFIX_BYTES
            && item.bytes().all(|b| (0x21..=0x7e).contains(&b))
            && !item.contains(['?', '#']);
        if !valid {
            return Err(config_error(
                VAR_PURGE_PREFIX_TAGS,
                format_args!(
                    "{item:?} must be a path starting with '/', without query, at most {MAX_PREFIX_BYTES} bytes"
                ),
            ));
        }
        let item = item.to_ascii_lowercase();
        if !prefixes.contains(&item) {
            prefixes.push(item);
        }
    }
    if prefixes.len() > MAX_PREFIXES {
        return Err(config_error(
            VAR_PURGE_PREFIX_TAGS,
            format_args!("lists {} prefixes; at most {MAX_PREFIXES}", prefixes.len()),
        ));
    }
    Ok(prefixes)
}

/// Why the purge API refused a request. `status()` and `to_response()` are
/// the one place errors become HTTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PurgeError {
    #[error("the purge API is disabled: no PURGE_TOKEN is configured")]
    Disabled,
    #[error("method {0} is not allowed; use POST")]
    MethodNotAllowed(String),
    #[error("missing Authorization header; send `Authorization: Bearer <token>`")]
    MissingToken,
    #[error("the Authorization header is not of the form `Bearer <token>`")]
    MalformedAuthorization,
    #[error("the bearer token is not valid")]
    BadToken,
    #[error("too many purge requests; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request lists {count} items; at most {limit} are allowed per request")]
    TooManyItems { count: usize, limit: usize },
    #[error("the request body is not valid JSON for a purge: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    UnknownField(String),
    #[error(
        "the request purges nothing: give tags, urls, prefixes, hosts or \"everything\": true"
    )]
    EmptyRequest,
    #[error("tag {tag:?} is invalid: {reason}")]
    InvalidTag { tag: String, reason: String },
    #[error("url {url:?} is invalid: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("prefix {prefix:?} is invalid: {reason}")]
    InvalidPrefix { prefix: String, reason: String },
    #[error("host {host:?} is invalid: {reason}")]
    InvalidHost { host: String, reason: String },
    #[error("the tag registry could not be written: {0}")]
    RegistryUnavailable(String),
}

impl PurgeError {
    pub fn status(&self) -> StatusCode {
        match self {
            PurgeError::Disabled => StatusCode::NOT_FOUND,
            PurgeError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            PurgeError::MissingToken
            | PurgeError::MalformedAuthorization
            | PurgeError::BadToken => StatusCode::UNAUTHORIZED,
            PurgeError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            PurgeError::BodyTooLarge { .. } | PurgeError::TooManyItems { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            PurgeError::MalformedJson(_)
            | PurgeError::UnknownField(_)
            | PurgeError::EmptyRequest
            | PurgeError::InvalidTag { .. }
            | PurgeError::InvalidUrl { .. }
            | PurgeError::InvalidPrefix { .. }
            | PurgeError::InvalidHost { .. } => StatusCode::BAD_REQUEST,
            PurgeError::RegistryUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable machine-readable code, for the JSON body, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            PurgeError::Disabled => "disabled",
            PurgeError::MethodNotAllowed(_) => "method_not_allowed",
            PurgeError::MissingToken => "missing_token",
            PurgeError::MalformedAuthorization => "malformed_authorization",
            PurgeError::BadToken => "bad_token",
            PurgeError::RateLimited { .. } => "rate_limited",
            PurgeError::BodyTooLarge { .. } => "body_too_large",
            PurgeError::TooManyItems { .. } => "too_many_items",
            PurgeError::MalformedJson(_) => "malformed_json",
            PurgeError::UnknownField(_) => "unknown_field",
            PurgeError::EmptyRequest => "empty_request",
            PurgeError::InvalidTag { .. } => "invalid_tag",
            PurgeError::InvalidUrl { .. } => "invalid_url",
            PurgeError::InvalidPrefix { .. } => "invalid_prefix",
            PurgeError::InvalidHost { .. } => "invalid_host",
            PurgeError::RegistryUnavailable(_) => "registry_unavailable",
        }
    }

    /// `{"ok":false,"error":{"status":401,"code":"bad_token","message":"..."}}`
    /// with `Allow`, `WWW-Authenticate` or `Retry-After` where they belong.
    pub fn to_response(&self) -> Response<Body> {
        let mut response = api_error_response(self.status(), self.code(), &self.to_string(), None);
        let headers = response.headers_mut();
        match self {
            PurgeError::MethodNotAllowed(_) => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            PurgeError::MissingToken
            | PurgeError::MalformedAuthorization
            | PurgeError::BadToken => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"cachefront-purge\""),
                );
            }
            PurgeError::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

/// A token bucket: `rate_per_min` requests a minute, bursts up to the same
/// number. Time is passed in; state lives per isolate.
#[derive(Debug, Clone)]
pub struct PurgeRateLimiter {
    rate_per_min: u64,
    /// In 1/60000ths of a request: at `rate_per_min`, exactly `rate_per_min`
    /// units come back every millisecond, so refills are whole numbers.
    units: u64,
    last_ms: u64,
}

/// One request's cost in bucket units.
const UNITS_PER_REQUEST: u64 = 60_000;

impl PurgeRateLimiter {
    pub fn new(rate_per_min: u32, now_ms: u64) -> Self {
        let rate = u64::from(rate_per_min.max(1));
        Self {
            rate_per_min: rate,
            units: rate * UNITS_PER_REQUEST,
            last_ms: now_ms,
        }
    }

    /// Takes one request's token, or says in how many seconds one will be there.
    pub fn try_acquire(&mut self, now_ms: u64) -> Result<(), u64> {
        let capacity = self.rate_per_min * UNITS_PER_REQUEST;
        let elapsed = now_ms.saturating_sub(self.last_ms);
        let refill = elapsed.saturating_mul(self.rate_per_min);
        self.units = self.units.saturating_add(refill).min(capacity);
        self.last_ms = self.last_ms.max(now_ms);
        if self.units >= UNITS_PER_REQUEST {
            self.units -= UNITS_PER_REQUEST;
            return Ok(());
        }
        let wait_ms = (UNITS_PER_REQUEST - self.units).div_ceil(self.rate_per_min);
        Err(wait_ms.div_ceil(1000).max(1))
    }

    pub fn rate_per_min(&self) -> u32 {
        u32::try_from(self.rate_per_min).unwrap_or(u32::MAX)
    }
}

/// The JSON body as sent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPurgeRequest {
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    urls: Vec<String>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    everything: bool,
    #[serde(default)]
    soft: bool,
    #[serde(default)]
    dry_run: bool,
}

/// Decides a request to the purge API: enabled (404), method (405), bearer
/// token (401), rate (429; only authenticated requests spend it), body size
/// (413), JSON shape (400), item count (413), items (400) — in that order.
pub fn authorize_and_parse(
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    config: &PurgeConfig,
    limiter: &mut PurgeRateLimiter,
    now_ms: u64,
) -> Result<PurgeRequest, PurgeError> {
    let Some(token) = &config.token else {
        return Err(PurgeError::Disabled);
    };
    if method != Method::POST {
        return Err(PurgeError::MethodNotAllowed(method.to_string()));
    }
    check_bearer(headers, token)?;
    limiter
        .try_acquire(now_ms)
        .map_err(|retry_after_secs| PurgeError::RateLimited { retry_after_secs })?;
    if body.len() > MAX_BODY_BYTES {
        return Err(PurgeError::BodyTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    parse_purge_body(body, &config.prefix_tags)
}

fn check_bearer(headers: &HeaderMap, token: &SecretToken) -> Result<(), PurgeError> {
    match auth::check_bearer(headers, token.expose()) {
        TokenCheck::Valid => Ok(()),
        TokenCheck::Missing => Err(PurgeError::MissingToken),
        TokenCheck::Malformed => Err(PurgeError::MalformedAuthorization),
        TokenCheck::Invalid => Err(PurgeError::BadToken),
    }
}

/// Parses and validates a purge body (no auth): `prefix_tags` are the configured prefixes.
pub fn parse_purge_body(body: &[u8], prefix_tags: &[String]) -> Result<PurgeRequest, PurgeError> {
    let raw: RawPurgeRequest = serde_json::from_slice(body).map_err(|e| {
        let message = e.to_string();
        if message.starts_with("unknown field") {
            PurgeError::UnknownField(message)
        } else {
            PurgeError::MalformedJson(message)
        }
    })?;
    let count = raw.tags.len() + raw.urls.len() + raw.prefixes.len() + raw.hosts.len();
    if count > MAX_ITEMS {
        return Err(PurgeError::TooManyItems {
            count,
            limit: MAX_ITEMS,
        });
    }
    let mut request = PurgeRequest {
        everything: raw.everything,
        soft: raw.soft,
        dry_run: raw.dry_run,
        ..PurgeRequest::default()
    };
    for tag in &raw.tags {
        let normalized = tags::normalize_tag(tag).map_err(|reason| PurgeError::InvalidTag {
            tag: shown(tag),
            reason: match reason {
                DropReason::TooLong => format!("longer than {} bytes", tags::MAX_TAG_BYTES),
                _ => "must be printable ASCII without spaces or control characters".to_owned(),
            },
        })?;
        if normalized.is_empty() {
            return Err(PurgeError::InvalidTag {
                tag: String::new(),
                reason: "is empty".to_owned(),
            });
        }
        if tags::is_reserved(&normalized) {
            return Err(PurgeError::InvalidTag {
                tag: shown(tag),
                reason: "is a reserved edge tag; use \"urls\", \"prefixes\", \"hosts\" or \"everything\""
                    .to_owned(),
            });
        }
        push_unique(&mut request.tags, normalized);
    }
    for url in &raw.urls {
        push_unique(&mut request.urls, validate_url(url)?);
    }
    for prefix in &raw.prefixes {
        push_unique(&mut request.prefixes, validate_prefix(prefix, prefix_tags)?);
    }
    for host in &raw.hosts {
        push_unique(&mut request.hosts, validate_host(host)?);
    }
    if request.item_count() == 0 && !request.everything {
        return Err(PurgeError::EmptyRequest);
    }
    Ok(request)
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// An item as echoed in an error message: at most 100 characters.
fn shown(item: &str) -> String {
    item.chars().take(100).collect()
}

fn validate_url(raw: &str) -> Result<String, PurgeError> {
    let invalid = |reason: &str| PurgeError::InvalidUrl {
        url: shown(raw),
        reason: reason.to_owned(),
    };
    if raw.len() > MAX_URL_BYTES {
        return Err(invalid(&format!("longer than {MAX_URL_BYTES} bytes")));
    }
    let mut url =
        Url::parse(raw.trim()).map_err(|e| invalid(&format!("not an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must use http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not contain credentials"));
    }
    url.set_fragment(None);
    if url_parts(url.as_str()).is_none() {
        return Err(invalid("cannot be used as a request target"));
    }
    Ok(url.to_string())
}

fn validate_prefix(raw: &str, configured: &[String]) -> Result<String, PurgeError> {
    let prefix = raw.trim().to_ascii_lowercase();
    if configured.contains(&prefix) {
        return Ok(prefix);
    }
    let reason = if configured.is_empty() {
        "no prefixes are configured (PURGE_PREFIX_TAGS); entries carry only configured prefix tags"
            .to_owned()
    } else {
        format!(
            "is not one of the configured PURGE_PREFIX_TAGS: {}",
            configured.join(", ")
        )
    };
    Err(PurgeError::InvalidPrefix {
        prefix: shown(raw),
        reason,
    })
}

fn validate_host(raw: &str) -> Result<String, PurgeError> {
    let host = raw.trim().to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !valid {
        return Err(PurgeError::InvalidHost {
            host: shown(raw),
            reason: "must be a host name such as www.example.com".to_owned(),
        });
    }
    Ok(host)
}

/// What a purge did (or, for a dry run, would do). Serialized as the API's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PurgeReceipt {
    pub ok: bool,
    pub dry_run: bool,
    pub soft: bool,
    /// The registry time of the purge (ms since the Unix epoch).
    pub purged_at_ms: u64,
    /// The normalized items.
    pub purged: PurgeRequest,
    /// How many registry keys the purge writes.
    pub registry_keys: usize,
    /// How many registry shards were written (0 for a dry run).
    pub shards_written: usize,
    /// For a dry run: how many entries cached in this isolate's memory tier
    /// it would affect (filled in by the caller; `null` when not counted).
    pub local_entries_affected: Option<u64>,
    pub cloudflare: CloudflareForwarding,
}

impl PurgeReceipt {
    pub fn to_response(&self) -> Response<Body> {
        let body = serde_json::to_value(self).unwrap_or_default();
        json_response(StatusCode::OK, &body)
    }
}

/// What happens on Cloudflare's side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CloudflareForwarding {
    /// `CF_ZONE_ID` / `CF_API_TOKEN` are not set.
    Disabled,
    /// The calls run in the background after the answer.
    Queued { calls: usize },
    /// Dry run: the calls that would be made.
    WouldSend { calls: usize },
    /// Each call was tried once before the answer: what the API said. Calls
    /// that failed with a retryable answer (429, 5xx, no answer) are
    /// `retrying` in the background; `ok` is true only when every call
    /// succeeded at once.
    Sent {
        calls: usize,
        ok: bool,
        succeeded: usize,
        failed: Vec<cloudflare::FailedCall>,
        retrying: usize,
    },
}

/// A purge carried out: the answer, plus what the caller does next.
#[derive(Debug, Clone)]
pub struct PurgeOutcome {
    pub receipt: PurgeReceipt,
    /// The keys purged: give them to `RegistryMemo::note_purge` (empty for a dry run).
    pub registry_keys: Vec<String>,
    /// Cloudflare calls to run in the background with `cloudflare::forward`
    /// (empty when disabled or for a dry run).
    pub cloudflare_calls: Vec<cloudflare::ApiCall>,
}

/// The request-independent inputs of [`execute_purge`].
#[derive(Debug, Clone, Copy)]
pub struct PurgeContext<'a> {
    pub config: &'a PurgeConfig,
    /// How cache keys hold a URL's query (`CACHE_IGNORE_QUERY_PARAMS`, cache rules).
    pub keying: &'a dyn tags::QueryKeying,
    /// The host the purge API was called on: forwarded prefixes are qualified with it.
    pub site_host: &'a str,
    pub now_ms: u64,
}

/// What the request log says about a purge request: status, code and
/// counts, never a header (so never the token) and never the items.
pub fn purge_log_fields(result: &Result<PurgeOutcome, PurgeError>) -> serde_json::Value {
    match result {
        Ok(outcome) => {
            let receipt = &outcome.receipt;
            serde_json::json!({
                "status": 200,
                "code": if receipt.dry_run { "dry_run" } else { "purged" },
                "soft": receipt.soft,
                "registry_keys": receipt.registry_keys,
                "shards_written": receipt.shards_written,
                "cloudflare_calls": outcome.cloudflare_calls.len(),
            })
        }
        Err(err) => serde_json::json!({
            "status": err.status().as_u16(),
            "code": err.code(),
        }),
    }
}

/// Serves one request to [`PURGE_PATH`]: decides it, writes the purge, and
/// answers with the receipt or the error. The outcome, when there is one,
/// says what to do next (note the keys in the isolate's memo, spawn the
/// Cloudflare calls). The limiter is borrowed only while deciding.
pub async fn serve_purge<S: TagRegistryStore>(
    request: &Request<Body>,
    store: &S,
    limiter: &RefCell<PurgeRateLimiter>,
    ctx: PurgeContext<'_>,
) -> (Response<Body>, Result<PurgeOutcome, PurgeError>) {
    let decided = {
        let mut limiter = limiter.borrow_mut();
        authorize_and_parse(
            request.method(),
            request.headers(),
            request.body(),
            ctx.config,
            &mut limiter,
            ctx.now_ms,
        )
    };
    let outcome = match decided {
        Ok(purge) => execute_purge(store, &purge, ctx).await,
        Err(err) => Err(err),
    };
    let response = match &outcome {
        Ok(outcome) => outcome.receipt.to_response(),
        Err(err) => err.to_response(),
    };
    (response, outcome)
}

/// Writes a validated purge to the registry (nothing for a dry run) and
/// plans its Cloudflare forwarding.
pub async fn execute_purge<S: TagRegistryStore>(
    store: &S,
    request: &PurgeRequest,
    ctx: PurgeContext<'_>,
) -> Result<PurgeOutcome, PurgeError> {
    let keys = request.registry_keys(ctx.keying);
    let shards_written = if request.dry_run {
        0
    } else {
        purge_keys(store, &keys, ctx.config.shards, request.soft, ctx.now_ms)
            .await
            .map_err(|e| PurgeError::RegistryUnavailable(e.0))?
    };
    let calls = match &ctx.config.cloudflare {
        Some(zone) => cloudflare::plan(request, ctx.site_host, zone),
        None => Vec::new(),
    };
    let cloudflare = match (&ctx.config.cloudflare, request.dry_run) {
        (None, _) => CloudflareForwarding::Disabled,
        (Some(_), true) => CloudflareForwarding::WouldSend { calls: calls.len() },
        (Some(_), false) => CloudflareForwarding::Queued { calls: calls.len() },
    };
    Ok(PurgeOutcome {
        receipt: PurgeReceipt {
            ok: true,
            dry_run: request.dry_run,
            soft: request.soft,
            purged_at_ms: ctx.now_ms,
            purged: request.clone(),
            registry_keys: keys.len(),
            shards_written,
            local_entries_affected: None,
            cloudflare,
        },
        registry_keys: if request.dry_run { Vec::new() } else { keys },
        cloudflare_calls: if request.dry_run { Vec::new() } else { calls },
    })
}

#[cfg(test)]
mod tests;
