//! Export and import of the worker's state that matters for recovery
//! (`GET` / `PUT /__cachefront/state`): the tag registry (per key, the time
//! of its last hard and soft purge) and the origin health results the active
//! check shares through storage. Cached responses are not state: they come
//! back from the origins.
//!
//! The document is plain JSON ([`StateDocument`]). Keys are listed, not
//! shards, so a document imports into a worker with another `PURGE_SHARDS`.
//! An import is validated whole before anything is written, and merges:
//! purge times only move forward and a health result replaces another only
//! when it is newer, so importing an old or repeated document never loses
//! a later purge. A time later than the worker's clock is never imported as
//! such: up to [`MAX_FUTURE_MS`] ahead it is clamped to now (and counted in
//! the receipt), further ahead the document is refused. An import body above
//! `STREAM_BODIES_ABOVE_BYTES` arrives as a stream and is read through the
//! platform up to [`MAX_IMPORT_BYTES`]. The endpoints take `STATE_TOKEN`, or
//! the purge API's `PURGE_TOKEN` when that is not set.

use std::collections::{BTreeMap, HashSet};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::admin::auth::{self, OperatorAccess, SecretToken};
use crate::origin::health::SharedHealth;
use crate::platform::body;
use crate::platform::{BodyStreams, HealthStore, StreamReadError};
use crate::purge::api::PurgeConfig;
use crate::purge::registry::{keys_by_shard, shard_of, RegistryEntry, TagRegistryStore};
use crate::purge::tags::MAX_TAG_BYTES;
use crate::responses::{api_error_response, json_response};
use crate::Body;

/// The operator endpoint: `GET` exports, `PUT` imports.
pub const STATE_PATH: &str = "/__cachefront/state";
/// The `format` field of every document.
pub const FORMAT: &str = "cachefront-state";
/// The document version this worker writes and reads.
pub const VERSION: u32 = 1;
/// Largest import body accepted (read whole: it is parsed as one document).
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;
/// Most registry keys one document may hold (export and import).
pub const MAX_KEYS: usize = 250_000;
/// Most origin health results one document may hold.
pub const MAX_ORIGINS: usize = 256;
/// Registry keys asked for per shard call while exporting.
pub const EXPORT_PAGE: usize = 1000;
/// Times this far past the worker's clock are refused; nearer ones are
/// clamped to now. Imported as such, a purge time in the future would make
/// every entry with that key uncacheable until then, and a health result
/// from the future would outrank every real check until then.
pub const MAX_FUTURE_MS: u64 = 5 * 60 * 1000;
/// Registry keys are tags, or tags with a short kind prefix (`url:`...).
const MAX_KEY_BYTES: usize = MAX_TAG_BYTES + 64;
const MAX_ORIGIN_NAME_BYTES: usize = 256;
const MAX_DETAIL_BYTES: usize = 4096;

/// The exported state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDocument {
    pub format: String,
    pub version: u32,
    /// When the export was taken (ms since the Unix epoch).
    pub exported_ms: u64,
    /// Every registry key that was ever purged, in key order.
    pub tags: Vec<RegistryEntry>,
    /// The active health check's last results, one per origin.
    #[serde(deserialize_with = "strict_health")]
    pub origin_health: Vec<SharedHealth>,
}

/// A health result as a document must spell it: unlike the `HEALTH` store,
/// which tolerates fields from another worker version, an import refuses
/// any field it would silently drop.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictHealth {
    origin: String,
    up: bool,
    checked_ms: u64,
    detail: String,
}

fn strict_health<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<SharedHealth>, D::Error> {
    let results = Vec::<StrictHealth>::deserialize(deserializer)?;
    Ok(results
        .into_iter()
        .map(|h| SharedHealth {
            origin: h.origin,
            up: h.up,
            checked_ms: h.checked_ms,
            detail: h.detail,
        })
        .collect())
}

/// What an import wrote (or, for a dry run, would write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImportReceipt {
    pub tags: usize,
    pub shards_written: usize,
    pub origin_health: usize,
    pub dry_run: bool,
    /// Entries whose times lay ahead of the worker's clock, imported as now.
    pub clamped_to_now: ClampedTimes,
}

/// How many entries had a time ahead of the worker's clock (set to now).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClampedTimes {
    /// Registry keys with a hard or soft purge time ahead.
    pub tags: usize,
    /// Health results checked "later" than now.
    pub origin_health: usize,
}

/// Why a state request was refused; mapped to a status in [`StateError::status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("the state endpoint is disabled: set STATE_TOKEN (or PURGE_TOKEN) to enable it")]
    Disabled,
    #[error("a valid `Authorization: Bearer <token>` header is required")]
    Unauthorized,
    #[error("method {0} is not allowed; use GET to export or PUT to import")]
    MethodNotAllowed(String),
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request body could not be read: {0}")]
    UnreadableBody(String),
    #[error("the body is not a state document: {0}")]
    MalformedJson(String),
    #[error("format is {found:?}; expected {FORMAT:?}")]
    WrongFormat { found: String },
    #[error("version {found} is not supported; this worker reads version {VERSION}")]
    UnsupportedVersion { found: u32 },
    #[error("the document lists {count} {what}; at most {limit} are allowed")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("{field}: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("the query string is not understood: {0}")]
    BadQuery(String),
    #[error("the registry holds more than {limit} keys; too many to export in one document")]
    ExportTooLarge { limit: usize },
    #[error("storage could not be reached: {0}")]
    StoreUnavailable(String),
}

impl StateError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Disabled => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge { .. } | Self::TooMany { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MalformedJson(_)
            | Self::WrongFormat { .. }
            | Self::InvalidField { .. }
            | Self::UnreadableBody(_)
            | Self::BadQuery(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedVersion { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::ExportTooLarge { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Stable machine-readable code, for the JSON body and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Unauthorized => "unauthorized",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::UnreadableBody(_) => "unreadable_body",
            Self::MalformedJson(_) => "malformed_json",
            Self::WrongFormat { .. } => "wrong_format",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::TooMany { .. } => "too_many_items",
            Self::InvalidField { .. } => "invalid_field",
            Self::BadQuery(_) => "bad_query",
            Self::ExportTooLarge { .. } => "export_too_large",
            Self::StoreUnavailable(_) => "store_unavailable",
        }
    }

    /// `{"ok":false,"error":{"status":..,"code":..,"message":..[,"field":..]}}`,
    /// the purge API's error shape.
    pub fn to_response(&self) -> Response<Body> {
        let field = match self {
            Self::InvalidField { field, .. } => Some(field.as_str()),
            _ => None,
        };
        let mut response = api_error_response(self.status(), self.code(), &self.to_string(), field);
        let headers = response.headers_mut();
        match self {
            Self::MethodNotAllowed(_) => {
                headers.insert(header::ALLOW, HeaderValue::from_static("GET, PUT"));
            }
            Self::Unauthorized => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"cachefront-state\""),
                );
            }
            _ => {}
        }
        response
    }
}

/// What a state request needs besides the stores.
#[derive(Debug, Clone, Copy)]
pub struct StateContext<'a> {
    /// Its `shards` are where the registry keys live.
    pub config: &'a PurgeConfig,
    /// The token guarding the endpoint (`STATE_TOKEN`, else `PURGE_TOKEN`).
    pub token: Option<&'a SecretToken>,
    pub now_ms: u64,
}

/// The operation a request asks for, once it is authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateOperation {
    Export,
    Import { dry_run: bool },
}

/// Token first (so the method of an unauthenticated caller tells nothing),
/// then method and query.
pub fn authorize(
    method: &Method,
    headers: &http::HeaderMap,
    query: Option<&str>,
    token: Option<&SecretToken>,
) -> Result<StateOperation, StateError> {
    match auth::operator_access(headers, token) {
        OperatorAccess::Granted => {}
        OperatorAccess::Disabled => return Err(StateError::Disabled),
        OperatorAccess::Denied => return Err(StateError::Unauthorized),
    }
    let dry_run = parse_query(query)?;
    match *method {
        Method::GET if !dry_run => Ok(StateOperation::Export),
        Method::GET => Err(StateError::BadQuery("dry_run applies to PUT only".into())),
        Method::PUT => Ok(StateOperation::Import { dry_run }),
        _ => Err(StateError::MethodNotAllowed(method.to_string())),
    }
}

/// The only parameter is `dry_run` (`true`/`false`/`1`/`0`, or bare).
fn parse_query(query: Option<&str>) -> Result<bool, StateError> {
    let mut dry_run = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, "true"));
        if name != "dry_run" {
            return Err(StateError::BadQuery(format!("unknown parameter {name:?}")));
        }
        dry_run = match value {
            "true" | "1" | "" => true,
            "false" | "0" => false,
            other => {
                return Err(StateError::BadQuery(format!(
                    "dry_run must be true or false, not {other:?}"
                )))
            }
        };
    }
    Ok(dry_run)
}

/// Parses and validates an import body. Nothing is written unless this
/// succeeds, so a bad document changes nothing.
pub fn parse_document(body: &[u8], now_ms: u64) -> Result<StateDocument, StateError> {
    if body.len() > MAX_IMPORT_BYTES {
        return Err(StateError::BodyTooLarge {
            limit: MAX_IMPORT_BYTES,
        });
    }
    // Format and version first, so an older or foreign document gets the
    // right error rather than a complaint about its fields.
    #[derive(Deserialize)]
    struct Header {
        format: Option<serde_json::Value>,
        version: Option<serde_json::Value>,
    }
    let header: Header =
        serde_json::from_slice(body).map_err(|e| StateError::MalformedJson(e.to_string()))?;
    match header.format.as_ref().and_then(serde_json::Value::as_str) {
        Some(FORMAT) => {}
        Some(other) => {
            return Err(StateError::WrongFormat {
                found: other.to_owned(),
            })
        }
        None => {
            return Err(StateError::InvalidField {
                field: "format".into(),
                reason: format!("missing; expected the string {FORMAT:?}"),
            })
        }
    }
    let version = header
        .version
        .as_ref()
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| StateError::InvalidField {
            field: "version".into(),
            reason: "missing or not a whole number".into(),
        })?;
    if version != u64::from(VERSION) {
        return Err(StateError::UnsupportedVersion {
            found: u32::try_from(version).unwrap_or(u32::MAX),
        });
    }
    let document = deserialize_document(body)?;
    validate(&document, now_ms)?;
    Ok(document)
}

/// Deserializes a document whose header is known to be good. A field that
/// is unknown or of the wrong type is named by its path (`tags[3].extra`),
/// as every other refusal of a field is; only text that is not JSON at all
/// stays `malformed_json`.
fn deserialize_document(body: &[u8]) -> Result<StateDocument, StateError> {
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            let (path, reason) = crate::json_path::locate(body, &e);
            if !path.is_empty() {
                return invalid(path, reason);
            }
        }
        StateError::MalformedJson(e.to_string())
    })
}

fn invalid(field: String, reason: impl Into<String>) -> StateError {
    StateError::InvalidField {
        field,
        reason: reason.into(),
    }
}

/// Sets every time ahead of `now_ms` to `now_ms` (validation has refused
/// those more than [`MAX_FUTURE_MS`] ahead), and counts the entries changed.
pub fn clamp_future_times(document: &mut StateDocument, now_ms: u64) -> ClampedTimes {
    let mut clamped = ClampedTimes::default();
    for entry in &mut document.tags {
        if entry.hard_ms > now_ms || entry.soft_ms > now_ms {
            entry.hard_ms = entry.hard_ms.min(now_ms);
            entry.soft_ms = entry.soft_ms.min(now_ms);
            clamped.tags += 1;
        }
    }
    for result in &mut document.origin_health {
        if result.checked_ms > now_ms {
            result.checked_ms = now_ms;
            clamped.origin_health += 1;
        }
    }
    clamped
}

fn check_time(field: String, time_ms: u64, now_ms: u64) -> Result<(), StateError> {
    if time_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(invalid(
            field,
            format!(
                "{time_ms} is more than {} s after the worker's clock ({now_ms}); refusing a time in the future",
                MAX_FUTURE_MS / 1000
            ),
        ));
    }
    Ok(())
}

fn check_text(field: String, text: &str, max: usize) -> Result<(), StateError> {
    if text.is_empty() {
        return Err(invalid(field, "is empty"));
    }
    if text.len() > max {
        return Err(invalid(field, format!("is longer than {max} bytes")));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

/// The checks of a parsed document: bounds, no duplicates, no times in the
/// future, names that could have been written by a worker.
pub fn validate(document: &StateDocument, now_ms: u64) -> Result<(), StateError> {
    if document.tags.len() > MAX_KEYS {
        return Err(StateError::TooMany {
            what: "tags",
            count: document.tags.len(),
            limit: MAX_KEYS,
        });
    }
    if document.origin_health.len() > MAX_ORIGINS {
        return Err(StateError::TooMany {
            what: "origin_health results",
            count: document.origin_health.len(),
            limit: MAX_ORIGINS,
        });
    }
    let mut seen = HashSet::with_capacity(document.tags.len());
    for (i, entry) in document.tags.iter().enumerate() {
        check_text(format!("tags[{i}].key"), &entry.key, MAX_KEY_BYTES)?;
        if !seen.insert(entry.key.as_str()) {
            return Err(invalid(
                format!("tags[{i}].key"),
                format!("{:?} is listed twice", entry.key),
            ));
        }
        check_time(format!("tags[{i}].hard_ms"), entry.hard_ms, now_ms)?;
        check_time(format!("tags[{i}].soft_ms"), entry.soft_ms, now_ms)?;
    }
    let mut origins = HashSet::with_capacity(document.origin_health.len());
    for (i, result) in document.origin_health.iter().enumerate() {
        check_text(
            format!("origin_health[{i}].origin"),
            &result.origin,
            MAX_ORIGIN_NAME_BYTES,
        )?;
        if !origins.insert(result.origin.as_str()) {
            return Err(invalid(
                format!("origin_health[{i}].origin"),
                format!("{:?} is listed twice", result.origin),
            ));
        }
        if result.detail.len() > MAX_DETAIL_BYTES {
            return Err(invalid(
                format!("origin_health[{i}].detail"),
                format!("is longer than {MAX_DETAIL_BYTES} bytes"),
            ));
        }
        check_time(
            format!("origin_health[{i}].checked_ms"),
            result.checked_ms,
            now_ms,
        )?;
    }
    Ok(())
}

/// Health results after an import: per origin, the newer of the stored and
/// the imported result; origins only in the store are kept.
pub fn merge_health(stored: &[SharedHealth], imported: &[SharedHealth]) -> Vec<SharedHealth> {
    let mut merged: BTreeMap<&str, &SharedHealth> =
        stored.iter().map(|h| (h.origin.as_str(), h)).collect();
    for result in imported {
        match merged.get(result.origin.as_str()) {
            Some(current) if current.checked_ms >= result.checked_ms => {}
            _ => {
                merged.insert(result.origin.as_str(), result);
            }
        }
    }
    merged.into_values().cloned().collect()
}

/// Reads every key of every shard (in pages) and the shared health results.
pub async fn export<R: TagRegistryStore, H: HealthStore>(
    registry: &R,
    health: &H,
    shards: u32,
    now_ms: u64,
) -> Result<StateDocument, StateError> {
    let unavailable = |e: crate::platform::StoreError| StateError::StoreUnavailable(e.0);
    let mut tags: Vec<RegistryEntry> = Vec::new();
    for shard in 0..shards.max(1) {
        let mut after = String::new();
        loop {
            let page = registry
                .entries(shard, &after, EXPORT_PAGE)
                .await
                .map_err(unavailable)?;
            let full = page.len() >= EXPORT_PAGE;
            if let Some(last) = page.last() {
                after.clone_from(&last.key);
            }
            tags.extend(page);
            if tags.len() > MAX_KEYS {
                return Err(StateError::ExportTooLarge { limit: MAX_KEYS });
            }
            if !full {
                break;
            }
        }
    }
    tags.sort_by(RegistryEntry::key_order);
    let mut origin_health = health.load().await.map_err(unavailable)?;
    origin_health.sort_by(|a, b| a.origin.cmp(&b.origin));
    Ok(StateDocument {
        format: FORMAT.to_owned(),
        version: VERSION,
        exported_ms: now_ms,
        tags,
        origin_health,
    })
}

/// Merges a validated document into the stores (nothing for a dry run).
pub async fn import<R: TagRegistryStore, H: HealthStore>(
    registry: &R,
    health: &H,
    document: &StateDocument,
    shards: u32,
    dry_run: bool,
) -> Result<ImportReceipt, StateError> {
    let unavailable = |e: crate::platform::StoreError| StateError::StoreUnavailable(e.0);
    let grouped = keys_by_shard(document.tags.iter().map(|e| e.key.as_str()), shards);
    if !dry_run {
        let mut by_shard: BTreeMap<u32, Vec<RegistryEntry>> = BTreeMap::new();
        for entry in &document.tags {
            by_shard
                .entry(shard_of(&entry.key, shards))
                .or_default()
                .push(entry.clone());
        }
        for (shard, entries) in &by_shard {
            registry.merge(*shard, entries).await.map_err(unavailable)?;
        }
        if !document.origin_health.is_empty() {
            let stored = health.load().await.map_err(unavailable)?;
            let merged = merge_health(&stored, &document.origin_health);
            health.save(&merged).await.map_err(unavailable)?;
        }
    }
    Ok(ImportReceipt {
        tags: document.tags.len(),
        // A dry run writes nothing; the receipt says what was written.
        shards_written: if dry_run { 0 } else { grouped.len() },
        origin_health: document.origin_health.len(),
        dry_run,
        clamped_to_now: ClampedTimes::default(),
    })
}

/// The stores a state request reads and writes, and the platform's streams
/// (an import body above `STREAM_BODIES_ABOVE_BYTES` is one).
pub struct StateStores<'a, R, H, S> {
    pub registry: &'a R,
    pub health: &'a H,
    pub streams: &'a S,
}

/// Serves `GET` / `PUT` [`STATE_PATH`]: every refusal is a JSON error. A
/// streamed body is read only for an authorized import, and is dropped
/// unread otherwise.
pub async fn serve_state<R: TagRegistryStore, H: HealthStore, S: BodyStreams>(
    request: &Request<Body>,
    stores: StateStores<'_, R, H, S>,
    ctx: StateContext<'_>,
) -> Response<Body> {
    match run(request, &stores, ctx).await {
        Ok(response) => response,
        Err(err) => err.to_response(),
    }
}

async fn run<R: TagRegistryStore, H: HealthStore, S: BodyStreams>(
    request: &Request<Body>,
    stores: &StateStores<'_, R, H, S>,
    ctx: StateContext<'_>,
) -> Result<Response<Body>, StateError> {
    let upload = body::streamed_request(request);
    let operation = authorize(
        request.method(),
        request.headers(),
        request.uri().query(),
        ctx.token,
    );
    let dry_run = match operation {
        Ok(StateOperation::Import { dry_run }) => dry_run,
        refused_or_export => {
            // A streamed body is not wanted: dropped unread.
            if let Some(stream) = upload {
                stores.streams.cancel(stream);
            }
            refused_or_export?;
            return export_response(stores, ctx).await;
        }
    };
    let bytes = match upload {
        Some(stream) => read_upload(stores.streams, stream).await?,
        None => request.body().clone(),
    };
    import_body(bytes, stores, ctx, dry_run).await
}

async fn read_upload<S: BodyStreams>(
    streams: &S,
    stream: body::Streamed,
) -> Result<Body, StateError> {
    streams
        .read_to_end(stream, MAX_IMPORT_BYTES as u64)
        .await
        .map_err(|e| match e {
            StreamReadError::TooLarge { .. } => StateError::BodyTooLarge {
                limit: MAX_IMPORT_BYTES,
            },
            StreamReadError::Failed(reason) => StateError::UnreadableBody(reason),
        })
}

async fn import_body<R: TagRegistryStore, H: HealthStore, S>(
    bytes: Body,
    stores: &StateStores<'_, R, H, S>,
    ctx: StateContext<'_>,
    dry_run: bool,
) -> Result<Response<Body>, StateError> {
    let mut document = parse_document(&bytes, ctx.now_ms)?;
    // The document is all that is needed from here: the body's bytes go.
    drop(bytes);
    let clamped = clamp_future_times(&mut document, ctx.now_ms);
    let mut receipt = import(
        stores.registry,
        stores.health,
        &document,
        ctx.config.shards,
        dry_run,
    )
    .await?;
    receipt.clamped_to_now = clamped;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "ok": true, "imported": receipt }),
    ))
}

async fn export_response<R: TagRegistryStore, H: HealthStore, S>(
    stores: &StateStores<'_, R, H, S>,
    ctx: StateContext<'_>,
) -> Result<Response<Body>, StateError> {
    let document = export(
        stores.registry,
        stores.health,
        ctx.config.shards,
        ctx.now_ms,
    )
    .await?;
    let body =
        serde_json::to_value(&document).map_err(|e| StateError::StoreUnavailable(e.to_string()))?;
    Ok(json_response(StatusCode::OK, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::memory::{MemoryHealthStore, MemoryStreams};
    use crate::purge::registry::{lookup_keys, purge_keys, MemoryTagRegistry};
    use futures::executor::block_on;

    const NOW: u64 = 1_700_000_000_000;
    const TOKEN: &str = "state-test-token";

    fn config(shards: u32) -> PurgeConfig {
        PurgeConfig {
            token: Some(SecretToken::new(TOKEN.to_owned())),
            shards,
            ..PurgeConfig::default()
        }
    }

    fn request(method: Method, uri: &str, token: Option<&str>, body: &str) -> Request<Body> {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder
            .body(Body::from(body.to_owned()))
            .expect("test request")
    }

    fn keys(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn json(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(response.body()).expect("JSON body")
    }

    fn health(origin: &str, up: bool, checked_ms: u64) -> SharedHealth {
        SharedHealth {
            origin: origin.into(),
            up,
            checked_ms,
            detail: if up { "200" } else { "connection refused" }.into(),
        }
    }

    fn serve(
        registry: &MemoryTagRegistry,
        health: &MemoryHealthStore,
        shards: u32,
        req: Request<Body>,
    ) -> Response<Body> {
        serve_streamed(registry, health, &MemoryStreams::default(), shards, req)
    }

    fn serve_streamed(
        registry: &MemoryTagRegistry,
        health: &MemoryHealthStore,
        streams: &MemoryStreams,
        shards: u32,
        req: Request<Body>,
    ) -> Response<Body> {
        let config = config(shards);
        block_on(serve_state(
            &req,
            StateStores {
                registry,
                health,
                streams,
            },
            StateContext {
                config: &config,
                token: config.token.as_ref(),
                now_ms: NOW,
            },
        ))
    }

    /// A request whose body is a platform stream, as the adapter hands one
    /// above `STREAM_BODIES_ABOVE_BYTES` (`announced`: its Content-Length).
    fn streamed_request(
        streams: &MemoryStreams,
        method: Method,
        token: &str,
        body: Vec<u8>,
        announced: Option<u64>,
    ) -> Request<Body> {
        let mut req = request(method, STATE_PATH, Some(token), "");
        let stream = streams.start(body.into(), announced);
        req.extensions_mut().insert(stream);
        req
    }

    fn document_with(tags: &str, origin_health: &str) -> String {
        format!(
            r#"{{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[{tags}],"origin_health":[{origin_health}]}}"#
        )
    }

    #[test]
    fn export_then_import_restores_every_key_and_health_result_in_a_fresh_worker() {
        let old = MemoryTagRegistry::new();
        let old_health = MemoryHealthStore::default();
        block_on(purge_keys(
            &old,
            &keys(&["product:7", "pages"]),
            8,
            false,
            NOW - 5_000,
        ))
        .expect("purge");
        block_on(purge_keys(&old, &keys(&["blog"]), 8, true, NOW - 4_000)).expect("purge");
        block_on(old_health.save(&[health("primary", false, NOW - 1_000)])).expect("save");

        let exported = serve(
            &old,
            &old_health,
            8,
            request(Method::GET, STATE_PATH, Some(TOKEN), ""),
        );
        assert_eq!(exported.status(), StatusCode::OK);
        let document = json(&exported);
        assert_eq!(document["format"], FORMAT);
        assert_eq!(document["tags"].as_array().map(Vec::len), Some(3));

        // A fresh worker, even with another shard count.
        let fresh = MemoryTagRegistry::new();
        let fresh_health = MemoryHealthStore::default();
        let body = String::from_utf8(exported.body().to_vec()).expect("utf-8");
        let imported = serve(
            &fresh,
            &fresh_health,
            4,
            request(Method::PUT, STATE_PATH, Some(TOKEN), &body),
        );
        assert_eq!(imported.status(), StatusCode::OK, "{:?}", json(&imported));
        assert_eq!(json(&imported)["imported"]["tags"], 3);

        let found = block_on(lookup_keys(
            &fresh,
            &keys(&["product:7", "pages", "blog"]),
            4,
        ))
        .expect("lookup");
        assert_eq!(found["product:7"].hard_ms, NOW - 5_000);
        assert_eq!(found["blog"].soft_ms, NOW - 4_000);
        assert_eq!(
            block_on(fresh_health.load()).expect("load"),
            [health("primary", false, NOW - 1_000)]
        );

        let again = serve(
            &fresh,
            &fresh_health,
            4,
            request(Method::GET, STATE_PATH, Some(TOKEN), ""),
        );
        let mut round_trip = json(&again);
        let mut original = document.clone();
        round_trip["exported_ms"] = 0.into();
        original["exported_ms"] = 0.into();
        assert_eq!(
            round_trip, original,
            "the restored state exports the same document"
        );
    }

    #[test]
    fn export_pages_through_shards_larger_than_one_page() {
        let registry = MemoryTagRegistry::new();
        let many: Vec<String> = (0..EXPORT_PAGE * 2 + 5)
            .map(|i| format!("t{i:05}"))
            .collect();
        block_on(purge_keys(&registry, &many, 2, false, NOW)).expect("purge");
        let document =
            block_on(export(&registry, &MemoryHealthStore::default(), 2, NOW)).expect("export");
        assert_eq!(document.tags.len(), many.len());
        assert!(document.tags.windows(2).all(|w| w[0].key < w[1].key));
    }

    #[test]
    fn import_never_moves_a_purge_time_backwards() {
        let registry = MemoryTagRegistry::new();
        block_on(purge_keys(&registry, &keys(&["a"]), 4, false, NOW)).expect("purge");
        let document = StateDocument {
            format: FORMAT.into(),
            version: VERSION,
            exported_ms: NOW - 10_000,
            tags: vec![RegistryEntry {
                key: "a".into(),
                hard_ms: NOW - 10_000,
                soft_ms: NOW - 9_000,
            }],
            origin_health: vec![],
        };
        block_on(import(
            &registry,
            &MemoryHealthStore::default(),
            &document,
            4,
            false,
        ))
        .expect("import");
        let found = block_on(lookup_keys(&registry, &keys(&["a"]), 4)).expect("lookup");
        assert_eq!(found["a"].hard_ms, NOW, "the later purge is kept");
        assert_eq!(found["a"].soft_ms, NOW - 9_000);
    }

    #[test]
    fn newer_stored_health_results_win_over_imported_ones() {
        let merged = merge_health(
            &[health("a", true, 200), health("b", true, 100)],
            &[
                health("a", false, 150),
                health("b", false, 300),
                health("c", false, 50),
            ],
        );
        assert_eq!(
            merged,
            [
                health("a", true, 200),
                health("b", false, 300),
                health("c", false, 50)
            ]
        );
    }

    #[test]
    fn bad_documents_are_refused_with_the_problem_named_and_nothing_written() {
        let registry = MemoryTagRegistry::new();
        let store = MemoryHealthStore::default();
        let future = NOW + MAX_FUTURE_MS + 1;
        let cases: Vec<(String, StatusCode, &str, Option<&str>)> = vec![
            ("{not json".into(), StatusCode::BAD_REQUEST, "malformed_json", None),
            (r#"{"format":"other","version":1}"#.into(), StatusCode::BAD_REQUEST, "wrong_format", None),
            (r#"{"version":1,"tags":[]}"#.into(), StatusCode::BAD_REQUEST, "invalid_field", Some("format")),
            (r#"{"format":"cachefront-state","version":2}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, "unsupported_version", None),
            (r#"{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[],"origin_health":[],"extra":1}"#.into(), StatusCode::BAD_REQUEST, "invalid_field", Some("extra")),
            (r#"{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[{"key":"a","hard_ms":1,"soft_ms":0,"colour":"red"}],"origin_health":[]}"#.into(), StatusCode::BAD_REQUEST, "invalid_field", Some("tags[0].colour")),
            (r#"{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[],"origin_health":[{"origin":"a","up":true,"checked_ms":1,"detail":"ok","note":1}]}"#.into(), StatusCode::BAD_REQUEST, "invalid_field", Some("origin_health[0].note")),
            (r#"{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[{"key":"a","hard_ms":-1,"soft_ms":0}],"origin_health":[]}"#.into(), StatusCode::BAD_REQUEST, "invalid_field", Some("tags[0].hard_ms")),
            (r#"{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[{"key":"a","hard_ms":1,"soft_ms":0},{"key":"b","hard_ms":1}],"origin_health":[]}"#.into(), StatusCode::BAD_REQUEST, "invalid_field", Some("tags[1]")),
            (r#"{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[],"origin_health":[{"origin":"a","up":"yes","checked_ms":1,"detail":"ok"}]}"#.into(), StatusCode::BAD_REQUEST, "invalid_field", Some("origin_health[0].up")),
            (r#"{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[]}"#.into(), StatusCode::BAD_REQUEST, "malformed_json", None),
            (r#"{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[],"origin_health":[]} trailing"#.into(), StatusCode::BAD_REQUEST, "malformed_json", None),
            (r#"{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[{"key":"a","hard_ms":1,"soft_ms":0},{"key":"","hard_ms":1,"soft_ms":0}],"origin_health":[]}"#.into(), StatusCode::BAD_REQUEST, "invalid_field", Some("tags[1].key")),
            (r#"{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[{"key":"a","hard_ms":1,"soft_ms":0},{"key":"a","hard_ms":2,"soft_ms":0}],"origin_health":[]}"#.into(), StatusCode::BAD_REQUEST, "invalid_field", Some("tags[1].key")),
            (format!(r#"{{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[{{"key":"a","hard_ms":1,"soft_ms":{future}}}],"origin_health":[]}}"#), StatusCode::BAD_REQUEST, "invalid_field", Some("tags[0].soft_ms")),
            (r#"{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[],"origin_health":[{"origin":"a","up":true,"checked_ms":1,"detail":"ok"},{"origin":"a","up":false,"checked_ms":2,"detail":"x"}]}"#.into(), StatusCode::BAD_REQUEST, "invalid_field", Some("origin_health[1].origin")),
        ];
        for (body, status, code, field) in cases {
            // Some carry valid entries before the bad one: none may be written.
            let response = serve(
                &registry,
                &store,
                4,
                request(Method::PUT, STATE_PATH, Some(TOKEN), &body),
            );
            assert_eq!(response.status(), status, "{body}");
            let answer = json(&response);
            assert_eq!(answer["ok"], false);
            assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
            if let Some(field) = field {
                assert_eq!(answer["error"]["field"], field, "{body}");
            }
        }
        let document = block_on(export(&registry, &store, 4, NOW)).expect("export");
        assert!(
            document.tags.is_empty(),
            "nothing was written: {document:?}"
        );
        assert!(document.origin_health.is_empty());
    }

    #[test]
    fn oversized_bodies_are_refused_before_parsing() {
        let body = vec![b' '; MAX_IMPORT_BYTES + 1];
        assert_eq!(
            parse_document(&body, NOW),
            Err(StateError::BodyTooLarge {
                limit: MAX_IMPORT_BYTES
            })
        );
    }

    #[test]
    fn a_dry_run_validates_and_writes_nothing() {
        let registry = MemoryTagRegistry::new();
        let store = MemoryHealthStore::default();
        let body = r#"{"format":"cachefront-state","version":1,"exported_ms":1,"tags":[{"key":"a","hard_ms":1,"soft_ms":0}],"origin_health":[]}"#;
        let response = serve(
            &registry,
            &store,
            4,
            request(
                Method::PUT,
                "/__cachefront/state?dry_run=true",
                Some(TOKEN),
                body,
            ),
        );
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(json(&response)["imported"]["dry_run"], true);
        assert_eq!(json(&response)["imported"]["tags"], 1);
        assert_eq!(
            json(&response)["imported"]["shards_written"],
            0,
            "a dry run writes no shard"
        );
        assert!(registry.calls().iter().all(|(_, op)| *op != "merge"));
    }

    #[test]
    fn the_endpoint_needs_the_token_and_takes_only_get_and_put() {
        let registry = MemoryTagRegistry::new();
        let store = MemoryHealthStore::default();
        let missing = serve(
            &registry,
            &store,
            4,
            request(Method::GET, STATE_PATH, None, ""),
        );
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert!(missing.headers().contains_key(header::WWW_AUTHENTICATE));
        let wrong = serve(
            &registry,
            &store,
            4,
            request(Method::GET, STATE_PATH, Some("nope"), ""),
        );
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let delete = serve(
            &registry,
            &store,
            4,
            request(Method::DELETE, STATE_PATH, Some(TOKEN), ""),
        );
        assert_eq!(delete.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(delete.headers()[header::ALLOW], "GET, PUT");
        let query = serve(
            &registry,
            &store,
            4,
            request(Method::GET, "/__cachefront/state?x=1", Some(TOKEN), ""),
        );
        assert_eq!(json(&query)["error"]["code"], "bad_query");

        assert_eq!(
            authorize(&Method::GET, &http::HeaderMap::new(), None, None),
            Err(StateError::Disabled)
        );
        assert!(
            registry.calls().is_empty(),
            "refused requests never reach the registry"
        );
    }

    #[test]
    fn an_unreachable_registry_is_a_503_not_an_empty_export() {
        let registry = MemoryTagRegistry::new();
        registry.set_failing(true);
        let response = serve(
            &registry,
            &MemoryHealthStore::default(),
            4,
            request(Method::GET, STATE_PATH, Some(TOKEN), ""),
        );
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json(&response)["error"]["code"], "store_unavailable");
    }

    #[test]
    fn a_streamed_import_is_read_through_the_platform_and_imported() {
        let registry = MemoryTagRegistry::new();
        let store = MemoryHealthStore::default();
        let streams = MemoryStreams::default();
        // Padded past any streaming threshold; JSON whitespace is free.
        let mut body = document_with(r#"{"key":"big","hard_ms":5,"soft_ms":0}"#, "").into_bytes();
        body.splice(1..1, std::iter::repeat_n(b' ', 2 * 1024 * 1024));
        let len = body.len() as u64;
        for announced in [Some(len), None] {
            let req = streamed_request(&streams, Method::PUT, TOKEN, body.clone(), announced);
            let response = serve_streamed(&registry, &store, &streams, 4, req);
            assert_eq!(response.status(), StatusCode::OK, "{:?}", json(&response));
            assert_eq!(json(&response)["imported"]["tags"], 1);
        }
        let found = block_on(lookup_keys(&registry, &keys(&["big"]), 4)).expect("lookup");
        assert_eq!(found["big"].hard_ms, 5);
        assert_eq!(streams.open(), 0);
    }

    #[test]
    fn a_streamed_import_above_the_maximum_is_a_413_and_writes_nothing() {
        let registry = MemoryTagRegistry::new();
        let store = MemoryHealthStore::default();
        let streams = MemoryStreams::default();
        let mut body = document_with(r#"{"key":"a","hard_ms":5,"soft_ms":0}"#, "").into_bytes();
        body.splice(1..1, std::iter::repeat_n(b' ', MAX_IMPORT_BYTES));
        // Refused from its announced length, and when only reading tells.
        for announced in [Some(body.len() as u64), None] {
            let req = streamed_request(&streams, Method::PUT, TOKEN, body.clone(), announced);
            let response = serve_streamed(&registry, &store, &streams, 4, req);
            assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
            assert_eq!(json(&response)["error"]["code"], "body_too_large");
            assert_eq!(streams.open(), 0, "the stream is dropped");
        }
        assert!(registry.calls().is_empty(), "nothing was written");
    }

    #[test]
    fn a_streamed_body_without_the_token_or_on_export_is_dropped_unread() {
        let registry = MemoryTagRegistry::new();
        let store = MemoryHealthStore::default();
        let streams = MemoryStreams::default();
        let body = document_with(r#"{"key":"a","hard_ms":5,"soft_ms":0}"#, "").into_bytes();
        let req = streamed_request(&streams, Method::PUT, "wrong-token", body.clone(), None);
        let response = serve_streamed(&registry, &store, &streams, 4, req);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let req = streamed_request(&streams, Method::GET, TOKEN, body, None);
        let response = serve_streamed(&registry, &store, &streams, 4, req);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(streams.open(), 0);
        assert!(registry.calls().iter().all(|(_, op)| *op != "merge"));
    }

    #[test]
    fn times_ahead_of_the_clock_are_imported_as_now_and_counted() {
        let registry = MemoryTagRegistry::new();
        let store = MemoryHealthStore::default();
        let ahead = NOW + MAX_FUTURE_MS;
        let body = document_with(
            &format!(
                r#"{{"key":"a","hard_ms":{ahead},"soft_ms":0}},{{"key":"b","hard_ms":1,"soft_ms":{ahead}}},{{"key":"c","hard_ms":{NOW},"soft_ms":0}}"#
            ),
            &format!(
                r#"{{"origin":"primary","up":false,"checked_ms":{ahead},"detail":"down"}},{{"origin":"backup","up":true,"checked_ms":1,"detail":"200"}}"#
            ),
        );
        let response = serve(
            &registry,
            &store,
            4,
            request(Method::PUT, STATE_PATH, Some(TOKEN), &body),
        );
        assert_eq!(response.status(), StatusCode::OK, "{:?}", json(&response));
        let clamped = &json(&response)["imported"]["clamped_to_now"];
        assert_eq!(clamped["tags"], 2, "{clamped}");
        assert_eq!(clamped["origin_health"], 1, "{clamped}");
        let found = block_on(lookup_keys(&registry, &keys(&["a", "b", "c"]), 4)).expect("lookup");
        assert_eq!((found["a"].hard_ms, found["a"].soft_ms), (NOW, 0));
        assert_eq!((found["b"].hard_ms, found["b"].soft_ms), (1, NOW));
        assert_eq!(found["c"].hard_ms, NOW);
        let health = block_on(store.load()).expect("load");
        let primary = health
            .iter()
            .find(|h| h.origin == "primary")
            .expect("primary");
        assert_eq!(primary.checked_ms, NOW);
        // A later real check now replaces the imported result.
        let merged = merge_health(&health, &[self::health("primary", true, NOW + 1)]);
        assert!(merged.iter().any(|h| h.origin == "primary" && h.up));
    }
}
