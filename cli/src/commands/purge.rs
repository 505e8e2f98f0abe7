//! `cachefront purge`: calls the edge's purge API (`POST /__cachefront/purge`)
//! with the token from `CACHEFRONT_PURGE_TOKEN` and prints the receipt; or,
//! with `--cloudflare`, purges the Cloudflare zone cache directly through the
//! worker crate's planner and retry policy (`CF_ZONE_ID`, `CF_API_TOKEN`).
//!
//! Exit codes: `crate::exit` (documented in docs/purge.md); a Cloudflare call
//! that failed is a server error.

use std::process::ExitCode;
use std::time::Duration;

use cachefront::admin::auth::SecretToken;
use cachefront::platform::Clock;
use cachefront::purge::api::{parse_purge_body, PURGE_PATH};
use cachefront::purge::cloudflare::CloudflareZone;
use cachefront::purge::cloudflare::{
    self, ApiReply, CloudflareApi, ForwardReport, RetryPolicy, API_BASE,
};
use clap::Args;
use futures_executor::block_on;

use crate::exit::{
    fail, report, Failure, EXIT_AUTH, EXIT_NETWORK, EXIT_REFUSED, EXIT_SERVER, EXIT_USAGE,
};
use crate::http::{agent, env_var, first_line, post, worker_target, ENV_CF_API_BASE, ENV_TOKEN};

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Purge every entry carrying this cache tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Purge this absolute URL, all its variants (repeatable).
    #[arg(long = "url", value_name = "URL")]
    urls: Vec<String>,
    /// Purge a configured path prefix (PURGE_PREFIX_TAGS), e.g. /products/ (repeatable).
    #[arg(long = "prefix", value_name = "PATH")]
    prefixes: Vec<String>,
    /// Purge everything served for this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Purge the whole cache.
    #[arg(long)]
    everything: bool,
    /// Mark entries stale (served while revalidated) instead of removing them.
    #[arg(long)]
    soft: bool,
    /// Report what would be purged; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The worker's base URL, e.g. https://www.example.com [env: CACHEFRONT_ENDPOINT].
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Give up on a request after this many seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
    /// Purge the Cloudflare zone cache directly (CF_ZONE_ID, CF_API_TOKEN)
    /// instead of calling the edge.
    #[arg(long)]
    cloudflare: bool,
    /// With --cloudflare: the host that qualifies --prefix (the API wants host/path).
    #[arg(long, value_name = "HOST")]
    site_host: Option<String>,
}

pub fn run(args: PurgeArgs) -> ExitCode {
    let outcome = if args.cloudflare {
        purge_zone(&args)
    } else {
        purge_edge(&args)
    };
    report(outcome)
}

fn request_body(args: &PurgeArgs) -> Result<serde_json::Value, Failure> {
    if args.tags.is_empty()
        && args.urls.is_empty()
        && args.prefixes.is_empty()
        && args.hosts.is_empty()
        && !args.everything
    {
        return Err(fail(
            EXIT_USAGE,
            "nothing to purge: give --tag, --url, --prefix, --host or --everything",
        ));
    }
    let mut body = serde_json::Map::new();
    for (key, list) in [
        ("tags", &args.tags),
        ("urls", &args.urls),
        ("prefixes", &args.prefixes),
        ("hosts", &args.hosts),
    ] {
        if !list.is_empty() {
            body.insert(key.to_owned(), serde_json::json!(list));
        }
    }
    for (key, flag) in [
        ("everything", args.everything),
        ("soft", args.soft),
        ("dry_run", args.dry_run),
    ] {
        if flag {
            body.insert(key.to_owned(), serde_json::Value::Bool(true));
        }
    }
    Ok(serde_json::Value::Object(body))
}

fn purge_edge(args: &PurgeArgs) -> Result<(), Failure> {
    let body = request_body(args)?;
    let (url, token) = worker_target(args.endpoint.as_deref(), PURGE_PATH)?;
    let reply = post(
        &agent(args.timeout),
        &url,
        &[
            ("Authorization", format!("Bearer {token}")),
            ("Content-Type", "application/json".to_owned()),
            ("Accept", "application/json".to_owned()),
        ],
        &body.to_string(),
    )
    .map_err(|e| fail(EXIT_NETWORK, format!("cannot reach {url}: {e}")))?;

    let json: Option<serde_json::Value> = serde_json::from_str(&reply.body).ok();
    if reply.status == 200 {
        let receipt = json
            .filter(|j| j.get("ok") == Some(&serde_json::Value::Bool(true)))
            .ok_or_else(|| {
                fail(
                    EXIT_SERVER,
                    format!("{url} answered 200 without a purge receipt (is --endpoint a Cachefront worker?)"),
                )
            })?;
        eprintln!("{}", summary(&receipt));
        println!(
            "{}",
            serde_json::to_string_pretty(&receipt).unwrap_or_default()
        );
        return Ok(());
    }
    let message = json
        .as_ref()
        .and_then(|j| j.pointer("/error/message"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| first_line(&reply.body));
    let code = match reply.status {
        401 | 403 => EXIT_AUTH,
        400..=499 => EXIT_REFUSED,
        _ => EXIT_SERVER,
    };
    let hint = match reply.status {
        401 => format!(" (check {ENV_TOKEN})"),
        404 => " (is PURGE_TOKEN set on the worker? without it the API is disabled)".to_owned(),
        429 => match &reply.retry_after {
            Some(secs) => format!(" (retry after {secs} s)"),
            None => String::new(),
        },
        _ => String::new(),
    };
    Err(fail(
        code,
        format!("purge refused: HTTP {}: {message}{hint}", reply.status),
    ))
}

/// One line saying what the receipt says was done.
fn summary(receipt: &serde_json::Value) -> String {
    let count = |key: &str| {
        receipt
            .pointer(&format!("/purged/{key}"))
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len)
    };
    let flag = |key: &str| receipt.get(key).and_then(serde_json::Value::as_bool) == Some(true);
    let mut parts = Vec::new();
    for key in ["tags", "urls", "prefixes", "hosts"] {
        let n = count(key);
        if n > 0 {
            parts.push(format!("{n} {key}"));
        }
    }
    if receipt.pointer("/purged/everything") == Some(&serde_json::Value::Bool(true)) {
        parts.push("everything".to_owned());
    }
    let verb = match (flag("dry_run"), flag("soft")) {
        (true, _) => "would purge",
        (false, true) => "soft-purged",
        (false, false) => "purged",
    };
    let shards = receipt
        .get("shards_written")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    format!(
        "{verb} {} ({shards} registry shards written)",
        parts.join(", ")
    )
}

/// The Cloudflare API over blocking HTTP.
struct UreqApi(ureq::Agent);

impl CloudflareApi for UreqApi {
    async fn send(&self, request: http::Request<String>) -> Result<ApiReply, String> {
        let headers: Vec<(&str, String)> = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?.to_owned())))
            .collect();
        post(
            &self.0,
            &request.uri().to_string(),
            &headers,
            request.body(),
        )
    }
}

/// Wall-clock time; waiting blocks the thread (the CLI does one thing at a time).
struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    async fn sleep(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

fn purge_zone(args: &PurgeArgs) -> Result<(), Failure> {
    let body = request_body(args)?;
    for prefix in &args.prefixes {
        if !prefix.starts_with('/') {
            return Err(fail(
                EXIT_USAGE,
                format!("--prefix {prefix:?} must be a path starting with '/'"),
            ));
        }
    }
    let site_host = match (&args.site_host, &args.endpoint) {
        (Some(host), _) => host.clone(),
        (None, Some(endpoint)) => url::Url::parse(endpoint)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default(),
        (None, None) => String::new(),
    };
    if !args.prefixes.is_empty() && site_host.is_empty() {
        return Err(fail(
            EXIT_USAGE,
            "--prefix with --cloudflare needs --site-host (prefixes are purged as host/path)",
        ));
    }
    let prefixes: Vec<String> = args
        .prefixes
        .iter()
        .map(|p| p.to_ascii_lowercase())
        .collect();
    let request = parse_purge_body(body.to_string().as_bytes(), &prefixes)
        .map_err(|e| fail(EXIT_USAGE, e.to_string()))?;

    let zone_id = env_var("CF_ZONE_ID")
        .ok_or_else(|| fail(EXIT_USAGE, "CF_ZONE_ID is not set (the zone's 32-digit id)"))?;
    let api_token = env_var("CF_API_TOKEN").ok_or_else(|| {
        fail(
            EXIT_USAGE,
            "CF_API_TOKEN is not set (a token with the zone's Cache Purge permission)",
        )
    })?;
    let zone = CloudflareZone {
        zone_id: zone_id.trim().to_owned(),
        api_token: SecretToken::new(api_token.trim()),
        batch_size: cloudflare::DEFAULT_BATCH,
    };
    let calls = cloudflare::plan(&request, &site_host, &zone);
    if request.dry_run {
        let planned: Vec<serde_json::Value> = calls
            .iter()
            .map(|c| serde_json::json!({"method": "POST", "path": c.path(), "body": c.body}))
            .collect();
        eprintln!("would send {} Cloudflare purge call(s)", planned.len());
        println!(
            "{}",
            serde_json::to_string_pretty(&planned).unwrap_or_default()
        );
        return Ok(());
    }
    let base = env_var(ENV_CF_API_BASE).unwrap_or_else(|| API_BASE.to_owned());
    let report = block_on(cloudflare::forward(
        &UreqApi(agent(args.timeout)),
        &SystemClock,
        &zone,
        &base,
        &calls,
        RetryPolicy::default(),
    ));
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    zone_outcome(&report, calls.len())
}

fn zone_outcome(report: &ForwardReport, planned: usize) -> Result<(), Failure> {
    let Some(first) = report.failed.first() else {
        eprintln!(
            "purged on Cloudflare: {} call(s), {} retried",
            report.succeeded, report.retries
        );
        return Ok(());
    };
    let code = match first.status {
        Some(401 | 403) => EXIT_AUTH,
        None => EXIT_NETWORK,
        Some(_) => EXIT_SERVER,
    };
    Err(fail(
        code,
        format!(
            "{} of {planned} Cloudflare purge call(s) failed; first: {}{}",
            report.failed.len(),
            first
                .status
                .map(|s| format!("HTTP {s}: "))
                .unwrap_or_default(),
            first.message
        ),
    ))
}
