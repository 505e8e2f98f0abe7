//! `cachefront purge`: calls the edge's purge API (`POST /__cachefront/purge`)
//! with the token from `CACHEFRONT_PURGE_TOKEN` and prints the receipt; with
//! `--cloudflare`, purges the Cloudflare zone cache directly through the
//! worker crate's planner and retry policy (`CF_ZONE_ID`, `CF_API_TOKEN`);
//! with `--cloudfront`, creates CloudFront invalidations (SigV4-signed by the
//! `cachefront-cloudfront` crate the origin plugin also uses; `AWS_*` keys).
//! Several providers at once (`--provider edge,cloudfront`) is a fan-out:
//! every provider is checked before any call, then purged on its own (its
//! own retries; one failing does not stop the others), with one receipt each.
//! Every provider's calls, the edge's included, are retried by the worker's
//! Cloudflare retry policy (`--retries` of them at most).
//!
//! Exit codes: `crate::exit` (documented in docs/purge.md); a Cloudflare or
//! CloudFront call that failed is a server error; a fan-out where some
//! providers failed and others did not exits `EXIT_PARTIAL`.

use std::process::ExitCode;
use std::time::Duration;

use cachefront::admin::auth::SecretToken;
use cachefront::platform::Clock;
use cachefront::purge::api::{parse_purge_body, PURGE_PATH};
use cachefront::purge::cloudflare::CloudflareZone;
use cachefront::purge::cloudflare::{
    self, ApiReply, CloudflareApi, ForwardReport, NextStep, RetryPolicy, API_BASE,
};
use cachefront_cloudfront::AwsCredentials;
use clap::Args;
use futures_executor::block_on;

use crate::exit::{
    fail, report, Failure, EXIT_AUTH, EXIT_NETWORK, EXIT_PARTIAL, EXIT_REFUSED, EXIT_SERVER,
    EXIT_USAGE,
};
use crate::http::{
    agent, env_var, first_line, post, worker_target, ENV_CF_API_BASE, ENV_CLOUDFRONT_API_BASE,
    ENV_TOKEN,
};

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
    /// Retries per call after a retryable failure (429 after its Retry-After; 5xx and
    /// no answer with backoff 1 s, 2 s, 4 s, …), for every provider; 0 for none.
    #[arg(long, default_value_t = 4, value_name = "N")]
    retries: u32,
    /// Purge the Cloudflare zone cache directly (CF_ZONE_ID, CF_API_TOKEN)
    /// instead of calling the edge.
    #[arg(long)]
    cloudflare: bool,
    /// With --cloudflare: the host that qualifies --prefix (the API wants host/path).
    #[arg(long, value_name = "HOST")]
    site_host: Option<String>,
    /// Create CloudFront invalidations (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_SESSION_TOKEN; --distribution-id) instead of calling the edge.
    #[arg(long)]
    cloudfront: bool,
    /// With --cloudfront: the distribution [env: CLOUDFRONT_DISTRIBUTION_ID].
    #[arg(long, value_name = "ID")]
    distribution_id: Option<String>,
    /// Purge these providers in one call (edge, cloudflare, cloudfront; comma-separated
    /// or repeated), each with its own receipt. --cloudflare and --cloudfront add theirs.
    #[arg(long = "provider", value_name = "NAME", value_delimiter = ',')]
    providers: Vec<Provider>,
}

/// Where a purge goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    /// The edge's purge API (`CACHEFRONT_ENDPOINT`, `CACHEFRONT_PURGE_TOKEN`).
    Edge,
    /// Cloudflare's zone cache (`CF_ZONE_ID`, `CF_API_TOKEN`).
    Cloudflare,
    /// CloudFront invalidations (`AWS_*`, the distribution id).
    Cloudfront,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Self::Edge => "edge",
            Self::Cloudflare => "cloudflare",
            Self::Cloudfront => "cloudfront",
        }
    }
}

/// The providers the flags ask for, in the order given, without repeats; the edge
/// when none is named.
fn chosen_providers(args: &PurgeArgs) -> Vec<Provider> {
    let mut out: Vec<Provider> = Vec::new();
    let flagged = [
        (args.cloudflare, Provider::Cloudflare),
        (args.cloudfront, Provider::Cloudfront),
    ];
    let named = args.providers.iter().copied();
    for p in named.chain(flagged.iter().filter(|(on, _)| *on).map(|(_, p)| *p)) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if out.is_empty() {
        out.push(Provider::Edge);
    }
    out
}

pub fn run(args: PurgeArgs) -> ExitCode {
    let providers = chosen_providers(&args);
    let outcome = match providers.as_slice() {
        [Provider::Edge] => purge_edge(&args),
        [Provider::Cloudflare] => purge_zone(&args),
        [Provider::Cloudfront] => purge_cloudfront(&args),
        several => fan_out(&args, several),
    };
    report(outcome)
}

/// The retry policy of every provider's calls: the worker's, with `--retries`.
fn retry_policy(args: &PurgeArgs) -> RetryPolicy {
    RetryPolicy {
        max_attempts: args.retries.saturating_add(1),
        ..RetryPolicy::default()
    }
}

/// A provider checked and ready to send.
enum Prepared {
    Edge(EdgePlan),
    Cloudflare(ZonePlan),
    Cloudfront(CloudFrontPlan),
}

fn prepare(args: &PurgeArgs, provider: Provider) -> Result<Prepared, Failure> {
    Ok(match provider {
        Provider::Edge => Prepared::Edge(prepare_edge(args)?),
        Provider::Cloudflare => Prepared::Cloudflare(prepare_zone(args)?),
        Provider::Cloudfront => Prepared::Cloudfront(prepare_cloudfront(args)?),
    })
}

/// Purges every provider: all are checked first (a usage error stops everything before
/// any call), then each is sent on its own, a failure not stopping the next. Prints a
/// JSON document with one receipt per provider on stdout and a line each on stderr.
fn fan_out(args: &PurgeArgs, providers: &[Provider]) -> Result<(), Failure> {
    let prepared = providers
        .iter()
        .map(|p| {
            prepare(args, *p).map_err(|f| fail(f.code, format!("{}: {}", p.name(), f.message)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut receipts = Vec::new();
    let mut failures: Vec<(Provider, Failure)> = Vec::new();
    for (provider, plan) in providers.iter().zip(prepared) {
        // The edge's receipt is the worker's own: its retries go beside it.
        let (receipt, outcome, retries) = match plan {
            Prepared::Edge(plan) => match send_edge(args, &plan) {
                (Ok(receipt), retries) => (receipt, Ok(()), Some(retries)),
                (Err(f), retries) => (serde_json::Value::Null, Err(f), Some(retries)),
            },
            Prepared::Cloudflare(plan) => {
                let (receipt, outcome) = send_zone(args, &plan);
                (receipt, outcome, None)
            }
            Prepared::Cloudfront(plan) => {
                let (receipt, outcome) = send_cloudfront(args, &plan);
                (receipt, outcome, None)
            }
        };
        let mut entry = serde_json::json!({ "provider": provider.name(), "ok": outcome.is_ok() });
        if let Some(retries) = retries {
            entry["retries"] = serde_json::json!(retries);
        }
        if !receipt.is_null() {
            entry["receipt"] = receipt;
        }
        match outcome {
            Ok(()) => eprintln!("{}: done", provider.name()),
            Err(f) => {
                eprintln!(
                    "{}: failed (exit {}): {}",
                    provider.name(),
                    f.code,
                    f.message
                );
                entry["exit_code"] = serde_json::json!(f.code);
                entry["error"] = serde_json::json!(f.message);
                failures.push((*provider, f));
            }
        }
        receipts.push(entry);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "providers": receipts }))
            .unwrap_or_default()
    );
    match failures.as_slice() {
        [] => Ok(()),
        all if all.len() == providers.len() => {
            let (_, first) = &all[0];
            Err(fail(
                first.code,
                format!("every provider failed; first: {}", first.message),
            ))
        }
        some => Err(fail(
            EXIT_PARTIAL,
            format!(
                "partial purge: {} of {} providers failed ({})",
                some.len(),
                providers.len(),
                some.iter()
                    .map(|(p, _)| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
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

/// The edge's purge API call, checked.
struct EdgePlan {
    url: String,
    token: String,
    body: serde_json::Value,
}

fn prepare_edge(args: &PurgeArgs) -> Result<EdgePlan, Failure> {
    let body = request_body(args)?;
    let (url, token) = worker_target(args.endpoint.as_deref(), PURGE_PATH)?;
    Ok(EdgePlan { url, token, body })
}

fn purge_edge(args: &PurgeArgs) -> Result<(), Failure> {
    let plan = prepare_edge(args)?;
    let (receipt, retries) = send_edge(args, &plan);
    let receipt = receipt?;
    match retries {
        0 => eprintln!("{}", summary(&receipt)),
        n => eprintln!("{} (after {n} retried call(s))", summary(&receipt)),
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&receipt).unwrap_or_default()
    );
    Ok(())
}

/// The edge's purge call, retried as the other providers' calls are (its API is
/// idempotent: a purge sent twice purges the same entries): a `429` after its
/// `Retry-After`, a `5xx` or no answer with backoff, up to `--retries` times. Returns
/// the receipt (or the last attempt's failure) and the number of retries.
fn send_edge(args: &PurgeArgs, plan: &EdgePlan) -> (Result<serde_json::Value, Failure>, u32) {
    let EdgePlan { url, token, body } = plan;
    let agent = agent(args.timeout);
    let policy = retry_policy(args);
    let clock = SystemClock;
    let headers = [
        ("Authorization", format!("Bearer {token}")),
        ("Content-Type", "application/json".to_owned()),
        ("Accept", "application/json".to_owned()),
    ];
    let body = body.to_string();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let reply = post(&agent, url, &headers, &body);
        let (status, retry_after) = match &reply {
            Ok(r) => (Some(r.status), r.retry_after.as_deref()),
            Err(_) => (None, None),
        };
        match policy.next_step(attempt, status, retry_after, clock.now_ms()) {
            NextStep::RetryAfterMs(ms) => {
                let what = status.map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
                eprintln!("edge: attempt {attempt} failed ({what}); retrying in {ms} ms");
                std::thread::sleep(Duration::from_millis(ms));
            }
            NextStep::Done | NextStep::GiveUp => {
                let outcome = edge_outcome(url, reply).map_err(|f| match attempt {
                    1 => f,
                    n => fail(f.code, format!("{} (after {n} attempts)", f.message)),
                });
                return (outcome, attempt - 1);
            }
        }
    }
}

/// The receipt in a purge call's answer, or the failure it amounts to.
fn edge_outcome(url: &str, reply: Result<ApiReply, String>) -> Result<serde_json::Value, Failure> {
    let reply = reply.map_err(|e| fail(EXIT_NETWORK, format!("cannot reach {url}: {e}")))?;

    let json: Option<serde_json::Value> = serde_json::from_str(&reply.body).ok();
    if reply.status == 200 {
        return json
            .filter(|j| j.get("ok") == Some(&serde_json::Value::Bool(true)))
            .ok_or_else(|| {
                fail(
                    EXIT_SERVER,
                    format!("{url} answered 200 without a purge receipt (is --endpoint a Cachefront worker?)"),
                )
            });
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

/// Cloudflare zone purge calls, planned.
struct ZonePlan {
    zone: CloudflareZone,
    calls: Vec<cloudflare::ApiCall>,
    base: String,
    dry_run: bool,
}

fn prepare_zone(args: &PurgeArgs) -> Result<ZonePlan, Failure> {
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
    let base = env_var(ENV_CF_API_BASE).unwrap_or_else(|| API_BASE.to_owned());
    Ok(ZonePlan {
        zone,
        calls,
        base,
        dry_run: request.dry_run,
    })
}

fn purge_zone(args: &PurgeArgs) -> Result<(), Failure> {
    let plan = prepare_zone(args)?;
    let (report, outcome) = send_zone(args, &plan);
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    outcome
}

/// The calls (or, dry run, what they would be) and the outcome.
fn send_zone(args: &PurgeArgs, plan: &ZonePlan) -> (serde_json::Value, Result<(), Failure>) {
    if plan.dry_run {
        let planned: Vec<serde_json::Value> = plan
            .calls
            .iter()
            .map(|c| serde_json::json!({"method": "POST", "path": c.path(), "body": c.body}))
            .collect();
        eprintln!("would send {} Cloudflare purge call(s)", planned.len());
        return (serde_json::Value::Array(planned), Ok(()));
    }
    let report = block_on(cloudflare::forward(
        &UreqApi(agent(args.timeout)),
        &SystemClock,
        &plan.zone,
        &plan.base,
        &plan.calls,
        retry_policy(args),
    ));
    (
        serde_json::to_value(&report).unwrap_or_default(),
        zone_outcome(&report, plan.calls.len()),
    )
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

/// Paths per invalidation (CloudFront allows 3000 paths in progress per distribution).
const CLOUDFRONT_BATCH: usize = 1000;

/// CloudFront invalidations, checked: the distribution, the credentials (none on a dry
/// run) and the paths in batches.
struct CloudFrontPlan {
    distribution_id: String,
    credentials: Option<AwsCredentials>,
    api_base: String,
    batches: Vec<Vec<String>>,
    dry_run: bool,
}

fn prepare_cloudfront(args: &PurgeArgs) -> Result<CloudFrontPlan, Failure> {
    request_body(args)?;
    if !args.tags.is_empty() || !args.hosts.is_empty() {
        return Err(fail(
            EXIT_USAGE,
            "CloudFront has no cache tags or host purge: use --url, --prefix or --everything \
             for it (and purge tags on the edge in a separate call)",
        ));
    }
    if let Some(bad) = args.prefixes.iter().find(|p| !p.starts_with('/')) {
        return Err(fail(
            EXIT_USAGE,
            format!("--prefix {bad:?} must be a path starting with '/'"),
        ));
    }
    let distribution_id = args
        .distribution_id
        .clone()
        .or_else(|| env_var("CLOUDFRONT_DISTRIBUTION_ID"))
        .map(|d| d.trim().to_owned())
        .ok_or_else(|| {
            fail(
                EXIT_USAGE,
                "no CloudFront distribution: pass --distribution-id or set CLOUDFRONT_DISTRIBUTION_ID",
            )
        })?;
    if distribution_id.is_empty() || !distribution_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(fail(
            EXIT_USAGE,
            format!("--distribution-id {distribution_id:?} must be letters and digits (e.g. EDFDVBD6EXAMPLE)"),
        ));
    }
    let credentials = if args.dry_run {
        None
    } else {
        Some(AwsCredentials::from_env().ok_or_else(|| {
            fail(
                EXIT_USAGE,
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set (keys allowed \
                 cloudfront:CreateInvalidation; AWS_SESSION_TOKEN too for temporary ones)",
            )
        })?)
    };
    // The AWS keys sign every call: only https, or http on loopback (a stand-in).
    let api_base = match env_var(ENV_CLOUDFRONT_API_BASE) {
        Some(raw) => cloudflare::parse_api_base(&raw).map_err(|e| {
            fail(
                EXIT_USAGE,
                format!("{ENV_CLOUDFRONT_API_BASE}={raw:?}: {e}"),
            )
        })?,
        None => cachefront_cloudfront::API_BASE.to_owned(),
    };
    let paths =
        cachefront_cloudfront::invalidation_paths(&args.urls, &args.prefixes, args.everything);
    Ok(CloudFrontPlan {
        distribution_id,
        credentials,
        api_base,
        batches: paths
            .chunks(CLOUDFRONT_BATCH)
            .map(<[String]>::to_vec)
            .collect(),
        dry_run: args.dry_run,
    })
}

fn purge_cloudfront(args: &PurgeArgs) -> Result<(), Failure> {
    let plan = prepare_cloudfront(args)?;
    let (receipt, outcome) = send_cloudfront(args, &plan);
    println!(
        "{}",
        serde_json::to_string_pretty(&receipt).unwrap_or_default()
    );
    if outcome.is_ok() && !plan.dry_run {
        eprintln!(
            "CloudFront: {} invalidation(s) created on {}",
            plan.batches.len(),
            plan.distribution_id
        );
    }
    outcome
}

/// One invalidation per batch, each retried on its own per the Cloudflare forwarder's
/// policy (throttling codes and `429` after `Retry-After`, network errors and `5xx`
/// with backoff); stops at the first batch that fails for good.
fn send_cloudfront(
    args: &PurgeArgs,
    plan: &CloudFrontPlan,
) -> (serde_json::Value, Result<(), Failure>) {
    if args.soft {
        eprintln!("CloudFront has no soft purge: sending invalidations");
    }
    let path = format!(
        "/{}/distribution/{}/invalidation",
        cachefront_cloudfront::API_VERSION,
        plan.distribution_id
    );
    let (Some(credentials), false) = (&plan.credentials, plan.dry_run) else {
        let planned: Vec<serde_json::Value> = plan
            .batches
            .iter()
            .map(|paths| serde_json::json!({"method": "POST", "path": path, "paths": paths}))
            .collect();
        eprintln!("would create {} CloudFront invalidation(s)", planned.len());
        return (serde_json::Value::Array(planned), Ok(()));
    };
    let agent = agent(args.timeout);
    let policy = retry_policy(args);
    let clock = SystemClock;
    let mut created = Vec::new();
    let mut retries = 0u32;
    for (index, paths) in plan.batches.iter().enumerate() {
        let mut attempt = 0;
        let failure = loop {
            attempt += 1;
            let now = std::time::SystemTime::now();
            // Unique per call: a reused reference with the same paths would return the
            // earlier invalidation instead of starting a new one.
            let reference = format!("cachefront-cli-{}-{index}-{attempt}", clock.now_ms());
            let request = match cachefront_cloudfront::create_invalidation(
                &plan.api_base,
                &plan.distribution_id,
                credentials,
                paths,
                &reference,
                now,
            ) {
                Ok(r) => r,
                Err(e) => break Some(fail(EXIT_USAGE, e)),
            };
            let headers: Vec<(&str, String)> = request
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            let reply = post(&agent, &request.url, &headers, &request.body);
            let (status, retry_after, body) = match &reply {
                Ok(r) => (Some(r.status), r.retry_after.as_deref(), r.body.as_str()),
                Err(_) => (None, None, ""),
            };
            // The policy's notion of retryable, with CloudFront's throttling codes
            // (sent as 400) counted as 429.
            let policy_status = match status {
                Some(s)
                    if !(200..300).contains(&s)
                        && cachefront_cloudfront::is_retryable(s, body)
                        && s < 500 =>
                {
                    Some(429)
                }
                other => other,
            };
            match policy.next_step(attempt, policy_status, retry_after, clock.now_ms()) {
                NextStep::Done => {
                    created.push(serde_json::json!({
                        "id": cachefront_cloudfront::invalidation_id(body),
                        "paths": paths,
                    }));
                    break None;
                }
                NextStep::RetryAfterMs(ms) => {
                    retries += 1;
                    std::thread::sleep(Duration::from_millis(ms));
                }
                NextStep::GiveUp => {
                    break Some(match (&reply, status) {
                        (Err(e), _) => {
                            fail(EXIT_NETWORK, format!("cannot reach {}: {e}", request.url))
                        }
                        (Ok(r), Some(s)) => {
                            let code = match s {
                                401 | 403 => EXIT_AUTH,
                                _ if cachefront_cloudfront::is_retryable(s, body) => EXIT_SERVER,
                                400..=499 => EXIT_REFUSED,
                                _ => EXIT_SERVER,
                            };
                            let what = cachefront_cloudfront::error_code(&r.body)
                                .map_or_else(|| first_line(&r.body), str::to_owned);
                            fail(
                                code,
                                format!("CloudFront refused the invalidation: HTTP {s}: {what}"),
                            )
                        }
                        (Ok(_), None) => fail(EXIT_SERVER, "no answer"),
                    });
                }
            }
        };
        if let Some(f) = failure {
            let receipt = serde_json::json!({
                "distribution_id": plan.distribution_id,
                "invalidations": created,
                "retries": retries,
                "failed": {"paths": paths, "message": f.message},
            });
            return (receipt, Err(f));
        }
    }
    (
        serde_json::json!({
            "distribution_id": plan.distribution_id,
            "invalidations": created,
            "retries": retries,
        }),
        Ok(()),
    )
}
