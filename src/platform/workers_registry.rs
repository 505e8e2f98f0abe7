//! The purge machinery on Workers (wasm32 only): the `TagRegistry` Durable
//! Object class (SQLite-backed, one object per shard) that stores
//! key → (hard_ms, soft_ms), the [`DurableTagRegistry`] store that reaches
//! its shards through the `TAG_REGISTRY` binding, and [`FetchCloudflareApi`],
//! the transport for forwarding purges to Cloudflare's API. The decisions
//! live in `registry` and `purge`; this is only plumbing.
//!
//! The object speaks the JSON of `registry::PurgeMessage` / `LookupMessage`:
//! `POST /purge {"tags":[..],"soft":false,"now_ms":..}` → `{"written":n}` and
//! `POST /lookup {"tags":[..]}` → `{"<tag>":{"hard_ms":..,"soft_ms":..}}`
//! (only tags that were ever purged). For export and import (`state`):
//! `POST /entries {"after":"k","limit":n}` → `[{"key":..,"hard_ms":..,"soft_ms":..}]`
//! (keys after `after`, in key order) and `POST /merge {"entries":[..]}` →
//! `{"written":n}` (times only move forward).
//!
//! Every row written (purge or merge) gets the object's next sequence number,
//! and `POST /sync {"after":n,"limit":k}` →
//! `{"cursor":c,"changes":[{"key":..,"hard_ms":..,"soft_ms":..,"seq":..}],"more":b}`
//! answers the rows written after `n` in sequence order (`"after":null`: no
//! rows, only the current sequence number and, as `latest_ms`, the latest
//! purge time held): see `purge::sync`.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use worker::wasm_bindgen::JsValue;
use worker::{
    durable_object, DurableObject, Env, Headers, Method, ObjectNamespace, Request, RequestInit,
    Response, SqlStorageValue, State,
};

use crate::platform::StoreError;
use crate::purge::cloudflare::{ApiReply, CloudflareApi};
use crate::purge::registry::{
    shard_name, EntriesMessage, LookupAnswer, LookupMessage, MergeMessage, PurgeMessage,
    RegistryEntry, TagPurgeTimes, TagRegistryStore, MAX_KEYS_PER_MESSAGE,
};
use crate::purge::sync::{SyncChange, SyncMessage, SyncPage, SYNC_PAGE_LIMIT};

/// The Durable Object binding in `wrangler.toml`.
pub const TAG_REGISTRY_BINDING: &str = "TAG_REGISTRY";

/// SQLite limits bound parameters per statement; stay well under.
const LOOKUP_CHUNK: usize = 50;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS tag_purges (\
    tag TEXT PRIMARY KEY, \
    hard_ms INTEGER NOT NULL DEFAULT 0, \
    soft_ms INTEGER NOT NULL DEFAULT 0)";

/// Objects created before the sync protocol get the column (their old rows
/// keep 0: callers see them through per-key lookups, see `purge::sync`).
const ADD_SEQ: &str = "ALTER TABLE tag_purges ADD COLUMN seq INTEGER NOT NULL DEFAULT 0";
const SEQ_INDEX: &str = "CREATE INDEX IF NOT EXISTS tag_purges_seq ON tag_purges (seq)";
const MAX_SEQ: &str = "SELECT coalesce(max(seq), 0) AS seq FROM tag_purges";
/// A first sync's backfill: the latest writes (rows of before the protocol,
/// seq 0, are never changes).
const NEWEST: &str =
    "SELECT tag, hard_ms, soft_ms, seq FROM tag_purges WHERE seq > 0 ORDER BY seq DESC LIMIT ?";
/// The latest purge time among the rows older than the backfill: the horizon
/// of a view started now.
const LATEST_MS_BEFORE: &str =
    "SELECT coalesce(max(max(hard_ms, soft_ms)), 0) AS seq FROM tag_purges WHERE seq < ?";

/// Times only move forward: a replayed or late purge cannot resurrect
/// entries. Every write takes a new sequence number.
const UPSERT: &str = "INSERT INTO tag_purges (tag, hard_ms, soft_ms, seq) VALUES (?, ?, ?, ?) \
    ON CONFLICT(tag) DO UPDATE SET \
    hard_ms = max(hard_ms, excluded.hard_ms), \
    soft_ms = max(soft_ms, excluded.soft_ms), \
    seq = excluded.seq";

/// One shard of the tag registry.
#[durable_object(fetch)]
pub struct TagRegistry {
    state: State,
}

#[derive(Deserialize)]
struct PurgeRow {
    tag: String,
    hard_ms: f64,
    soft_ms: f64,
}

#[derive(Deserialize)]
struct SeqRow {
    seq: f64,
}

#[derive(Deserialize)]
struct SyncRow {
    tag: String,
    hard_ms: f64,
    soft_ms: f64,
    seq: f64,
}

impl SyncRow {
    fn change(self) -> SyncChange {
        SyncChange {
            key: self.tag,
            hard_ms: ms(self.hard_ms),
            soft_ms: ms(self.soft_ms),
            seq: ms(self.seq),
        }
    }
}

#[derive(Serialize)]
struct PurgeWritten {
    written: usize,
}

impl DurableObject for TagRegistry {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        if let Err(err) = sql.exec(CREATE_TABLE, None) {
            worker::console_error!("tag registry: cannot create its table: {err}");
        }
        // Fails with "duplicate column" once the column exists: expected.
        let _ = sql.exec(ADD_SEQ, None);
        if let Err(err) = sql.exec(SEQ_INDEX, None) {
            worker::console_error!("tag registry: cannot index sequence numbers: {err}");
        }
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        if req.method() != Method::Post {
            return Response::error("use POST", 405);
        }
        match req.path().as_str() {
            "/purge" => {
                let message: PurgeMessage = match req.json().await {
                    Ok(message) => message,
                    Err(err) => return Response::error(format!("bad purge message: {err}"), 400),
                };
                if message.tags.len() > MAX_KEYS_PER_MESSAGE {
                    return Response::error("too many tags in one message", 413);
                }
                let times = TagPurgeTimes::default().with_purge(message.soft, message.now_ms);
                write_times(
                    &self.state.storage().sql(),
                    message.tags.iter().map(|tag| (tag.as_str(), times)),
                )
            }
            "/lookup" => {
                let message: LookupMessage = match req.json().await {
                    Ok(message) => message,
                    Err(err) => return Response::error(format!("bad lookup message: {err}"), 400),
                };
                if message.tags.len() > MAX_KEYS_PER_MESSAGE {
                    return Response::error("too many tags in one message", 413);
                }
                let sql = self.state.storage().sql();
                let mut answer = LookupAnswer::new();
                for chunk in message.tags.chunks(LOOKUP_CHUNK) {
                    let placeholders = vec!["?"; chunk.len()].join(", ");
                    let query = format!(
                        "SELECT tag, hard_ms, soft_ms FROM tag_purges WHERE tag IN ({placeholders})"
                    );
                    let bindings = chunk
                        .iter()
                        .map(|t| SqlStorageValue::from(t.as_str()))
                        .collect::<Vec<_>>();
                    let rows: Vec<PurgeRow> = sql.exec(&query, bindings)?.to_array()?;
                    for row in rows {
                        answer.insert(
                            row.tag,
                            TagPurgeTimes {
                                hard_ms: ms(row.hard_ms),
                                soft_ms: ms(row.soft_ms),
                            },
                        );
                    }
                }
                Response::from_json(&answer)
            }
            "/entries" => {
                let message: EntriesMessage = match req.json().await {
                    Ok(message) => message,
                    Err(err) => return Response::error(format!("bad entries message: {err}"), 400),
                };
                let limit = i64::try_from(message.limit.min(MAX_KEYS_PER_MESSAGE)).unwrap_or(1);
                let rows: Vec<PurgeRow> = self
                    .state
                    .storage()
                    .sql()
                    .exec(
                        "SELECT tag, hard_ms, soft_ms FROM tag_purges WHERE tag > ? ORDER BY tag LIMIT ?",
                        vec![
                            SqlStorageValue::from(message.after.as_str()),
                            SqlStorageValue::from(limit),
                        ],
                    )?
                    .to_array()?;
                let entries: Vec<RegistryEntry> = rows
                    .into_iter()
                    .map(|row| RegistryEntry {
                        key: row.tag,
                        hard_ms: ms(row.hard_ms),
                        soft_ms: ms(row.soft_ms),
                    })
                    .collect();
                Response::from_json(&entries)
            }
            "/merge" => {
                let message: MergeMessage = match req.json().await {
                    Ok(message) => message,
                    Err(err) => return Response::error(format!("bad merge message: {err}"), 400),
                };
                if message.entries.len() > MAX_KEYS_PER_MESSAGE {
                    return Response::error("too many entries in one message", 413);
                }
                write_times(
                    &self.state.storage().sql(),
                    message
                        .entries
                        .iter()
                        .map(|entry| (entry.key.as_str(), entry.times())),
                )
            }
            "/sync" => {
                let message: SyncMessage = match req.json().await {
                    Ok(message) => message,
                    Err(err) => return Response::error(format!("bad sync message: {err}"), 400),
                };
                let sql = self.state.storage().sql();
                let current = u64::try_from(current_seq(&sql)?).unwrap_or(0);
                let limit = message.limit.clamp(1, SYNC_PAGE_LIMIT);
                let Some(after) = message.after else {
                    let mut newest: Vec<SyncRow> = sql
                        .exec(
                            NEWEST,
                            vec![SqlStorageValue::from(i64::try_from(limit).unwrap_or(1))],
                        )?
                        .to_array()?;
                    newest.reverse();
                    // Every row not in the backfill has a smaller sequence number.
                    let oldest_taken = newest
                        .first()
                        .map_or(current.saturating_add(1), |row| ms(row.seq));
                    let rows: Vec<SeqRow> = sql
                        .exec(
                            LATEST_MS_BEFORE,
                            vec![SqlStorageValue::from(
                                i64::try_from(oldest_taken).unwrap_or(i64::MAX),
                            )],
                        )?
                        .to_array()?;
                    return Response::from_json(&SyncPage {
                        cursor: current,
                        changes: newest.into_iter().map(SyncRow::change).collect(),
                        more: false,
                        latest_ms: rows.first().map_or(0, |row| ms(row.seq)),
                    });
                };
                // One more than asked tells whether another page follows.
                let rows: Vec<SyncRow> = sql
                    .exec(
                        "SELECT tag, hard_ms, soft_ms, seq FROM tag_purges WHERE seq > ? ORDER BY seq LIMIT ?",
                        vec![
                            SqlStorageValue::from(i64::try_from(after).unwrap_or(i64::MAX)),
                            SqlStorageValue::from(i64::try_from(limit + 1).unwrap_or(1)),
                        ],
                    )?
                    .to_array()?;
                let more = rows.len() > limit;
                let changes: Vec<SyncChange> =
                    rows.into_iter().take(limit).map(SyncRow::change).collect();
                let cursor = match changes.last() {
                    Some(last) if more => last.seq,
                    _ => current.max(after),
                };
                Response::from_json(&SyncPage {
                    cursor,
                    changes,
                    more,
                    latest_ms: 0,
                })
            }
            _ => Response::error("not found", 404),
        }
    }
}

/// Writes each key's purge times (`/purge` and `/merge`), every row with the
/// object's next sequence number, and answers `{"written":n}`.
fn write_times<'a>(
    sql: &worker::SqlStorage,
    rows: impl Iterator<Item = (&'a str, TagPurgeTimes)>,
) -> worker::Result<Response> {
    let mut seq = current_seq(sql)?;
    let mut written = 0;
    // No await between the writes: the runtime commits them together.
    for (key, times) in rows {
        seq += 1;
        sql.exec(
            UPSERT,
            vec![
                SqlStorageValue::from(key),
                SqlStorageValue::from(i64::try_from(times.hard_ms).unwrap_or(i64::MAX)),
                SqlStorageValue::from(i64::try_from(times.soft_ms).unwrap_or(i64::MAX)),
                SqlStorageValue::from(seq),
            ],
        )?;
        written += 1;
    }
    Response::from_json(&PurgeWritten { written })
}

/// The last sequence number the object gave.
fn current_seq(sql: &worker::SqlStorage) -> worker::Result<i64> {
    let rows: Vec<SeqRow> = sql.exec(MAX_SEQ, None)?.to_array()?;
    Ok(rows.first().map_or(0, |row| ms(row.seq) as i64))
}

/// SQLite integers come back as JS numbers; purge times are far below 2^53.
fn ms(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value as u64
    } else {
        0
    }
}

/// The registry's shards, reached through the `TAG_REGISTRY` binding.
#[derive(Clone)]
pub struct DurableTagRegistry {
    namespace: ObjectNamespace,
}

impl DurableTagRegistry {
    pub fn from_env(env: &Env) -> Result<Self, StoreError> {
        env.durable_object(TAG_REGISTRY_BINDING)
            .map(|namespace| Self { namespace })
            .map_err(|e| StoreError(format!("binding {TAG_REGISTRY_BINDING}: {e}")))
    }

    async fn call<M: Serialize, A: DeserializeOwned>(
        &self,
        shard: u32,
        path: &str,
        message: &M,
    ) -> Result<A, StoreError> {
        let failed = |e: worker::Error| StoreError(format!("tag registry shard {shard}: {e}"));
        let stub = self
            .namespace
            .get_by_name(&shard_name(shard))
            .map_err(failed)?;
        let body = serde_json::to_string(message).map_err(|e| StoreError(e.to_string()))?;
        let headers = Headers::new();
        headers
            .set("content-type", "application/json")
            .map_err(failed)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(JsValue::from_str(&body)));
        let request = Request::new_with_init(&format!("https://tag-registry{path}"), &init)
            .map_err(failed)?;
        let mut response = stub.fetch_with_request(request).await.map_err(failed)?;
        if response.status_code() != 200 {
            let text = response.text().await.unwrap_or_default();
            return Err(StoreError(format!(
                "tag registry shard {shard} answered {}: {text}",
                response.status_code()
            )));
        }
        // `Response::json` parses with `serde_json::from_str`; parsing the
        // same text from bytes shares one serde_json reader with the rest of
        // the crate (`from_str` would compile a second one into the wasm).
        let text = response.text().await.map_err(failed)?;
        serde_json::from_slice(text.as_bytes()).map_err(|e| failed(worker::Error::from(e)))
    }
}

impl TagRegistryStore for DurableTagRegistry {
    async fn purge(
        &self,
        shard: u32,
        keys: &[String],
        soft: bool,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        for chunk in keys.chunks(MAX_KEYS_PER_MESSAGE) {
            let message = PurgeMessage {
                tags: chunk.to_vec(),
                soft,
                now_ms,
            };
            let _: serde_json::Value = self.call(shard, "/purge", &message).await?;
        }
        Ok(())
    }

    async fn lookup(
        &self,
        shard: u32,
        keys: &[String],
    ) -> Result<HashMap<String, TagPurgeTimes>, StoreError> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(MAX_KEYS_PER_MESSAGE) {
            let message = LookupMessage {
                tags: chunk.to_vec(),
            };
            let answer: LookupAnswer = self.call(shard, "/lookup", &message).await?;
            found.extend(answer);
        }
        Ok(found)
    }

    async fn entries(
        &self,
        shard: u32,
        after: &str,
        limit: usize,
    ) -> Result<Vec<RegistryEntry>, StoreError> {
        let message = EntriesMessage {
            after: after.to_owned(),
            limit: limit.min(MAX_KEYS_PER_MESSAGE),
        };
        self.call(shard, "/entries", &message).await
    }

    async fn merge(&self, shard: u32, entries: &[RegistryEntry]) -> Result<(), StoreError> {
        for chunk in entries.chunks(MAX_KEYS_PER_MESSAGE) {
            let message = MergeMessage {
                entries: chunk.to_vec(),
            };
            let _: serde_json::Value = self.call(shard, "/merge", &message).await?;
        }
        Ok(())
    }

    async fn sync(
        &self,
        shard: u32,
        after: Option<u64>,
        limit: usize,
    ) -> Result<SyncPage, StoreError> {
        let message = SyncMessage {
            after,
            limit: limit.clamp(1, SYNC_PAGE_LIMIT),
        };
        self.call(shard, "/sync", &message).await
    }
}

/// Cloudflare's API reached with the runtime's `fetch`.
#[derive(Clone, Copy, Default)]
pub struct FetchCloudflareApi;

impl CloudflareApi for FetchCloudflareApi {
    async fn send(&self, request: http::Request<String>) -> Result<ApiReply, String> {
        let headers = Headers::new();
        for (name, value) in request.headers() {
            let value = value.to_str().map_err(|e| e.to_string())?;
            headers
                .set(name.as_str(), value)
                .map_err(|e| e.to_string())?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::from(request.method().as_str().to_owned()))
            .with_headers(headers)
            .with_body(Some(JsValue::from_str(request.body())));
        let js_request =
            Request::new_with_init(&request.uri().to_string(), &init).map_err(|e| e.to_string())?;
        let mut response = worker::Fetch::Request(js_request)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let retry_after = response.headers().get("retry-after").ok().flatten();
        Ok(ApiReply {
            status: response.status_code(),
            retry_after,
            body: response.text().await.unwrap_or_default(),
        })
    }
}
