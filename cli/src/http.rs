//! What the network commands share: the blocking HTTP client (ureq), the
//! worker's operator endpoint and bearer token from flags and environment,
//! and the reading of answers whatever their status.

use std::time::Duration;

use cachefront::purge::cloudflare::ApiReply;

use crate::exit::{fail, Failure, EXIT_USAGE};

/// Environment variable holding the purge API's bearer token.
pub const ENV_TOKEN: &str = "CACHEFRONT_PURGE_TOKEN";
/// Environment variable giving the default `--endpoint`.
pub const ENV_ENDPOINT: &str = "CACHEFRONT_ENDPOINT";
/// Cloudflare API base URL override (a proxy, or a stand-in in tests).
pub const ENV_CF_API_BASE: &str = "CACHEFRONT_CF_API_BASE";
/// CloudFront API base URL override (a proxy, or a stand-in in tests).
pub const ENV_CLOUDFRONT_API_BASE: &str = "CACHEFRONT_CLOUDFRONT_API_BASE";

/// The variable's value, unless it is unset or blank.
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The URL of the worker's operator endpoint at `path` (from `--endpoint` or
/// `$CACHEFRONT_ENDPOINT`) and the bearer token (`$CACHEFRONT_PURGE_TOKEN`,
/// trimmed) that the purge and state commands send to it.
pub fn worker_target(endpoint: Option<&str>, path: &str) -> Result<(String, String), Failure> {
    let token = env_var(ENV_TOKEN).ok_or_else(|| {
        fail(
            EXIT_USAGE,
            format!("{ENV_TOKEN} is not set: export the purge API's bearer token (PURGE_TOKEN of the worker)"),
        )
    })?;
    let endpoint = endpoint
        .map(str::to_owned)
        .or_else(|| env_var(ENV_ENDPOINT))
        .ok_or_else(|| {
            fail(
                EXIT_USAGE,
                format!("no endpoint: pass --endpoint https://your-site or set {ENV_ENDPOINT}"),
            )
        })?;
    Ok((endpoint_url(&endpoint, path)?, token.trim().to_owned()))
}

/// The URL of the worker's endpoint at `path` under `endpoint`, given as the
/// worker's base URL or already as the endpoint's own URL.
pub fn endpoint_url(endpoint: &str, path: &str) -> Result<String, Failure> {
    let url = url::Url::parse(endpoint.trim()).map_err(|e| {
        fail(
            EXIT_USAGE,
            format!("--endpoint {endpoint:?} is not an absolute URL: {e}"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(fail(
            EXIT_USAGE,
            format!("--endpoint {endpoint:?} must be an http(s) URL with a host"),
        ));
    }
    let base = url.as_str().trim_end_matches('/');
    if base.ends_with(path) {
        Ok(base.to_owned())
    } else {
        Ok(format!("{base}{path}"))
    }
}

/// A client that gives up on a request after `timeout_secs` (at least one).
pub fn agent(timeout_secs: u64) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(timeout_secs.max(1)))
        .build()
}

/// Status, `Retry-After` and body of an answer, whatever its status.
pub fn post(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Result<ApiReply, String> {
    let mut request = agent.post(url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let response = match request.send_string(body) {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(transport)) => return Err(transport.to_string()),
    };
    let status = response.status();
    let retry_after = response.header("retry-after").map(str::to_owned);
    let body = response
        .into_string()
        .map_err(|e| format!("reading the answer: {e}"))?;
    Ok(ApiReply {
        status,
        retry_after,
        body,
    })
}

/// The first line of an answer's body, at most 200 characters: enough to
/// show what answered when it is not the JSON we expected.
pub fn first_line(body: &str) -> String {
    body.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}
