//! `cachefront state export|import`: saves the worker's recoverable state (tag
//! registry, shared origin health) through `GET /__cachefront/state` and
//! restores it with `PUT` (docs/ops/disaster-recovery.md). Same token
//! (`CACHEFRONT_PURGE_TOKEN`), endpoint and exit codes as `cachefront purge`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cachefront::admin::state::{FORMAT, STATE_PATH};
use clap::{Args, Subcommand};

use crate::exit::{
    fail, report, Failure, EXIT_AUTH, EXIT_NETWORK, EXIT_REFUSED, EXIT_SERVER, EXIT_USAGE,
};
use crate::http::{agent, first_line, worker_target, ENV_TOKEN};

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Save the tag registry and origin health results as JSON.
    Export {
        /// Write the document here (atomically) instead of stdout.
        #[arg(long, short)]
        out: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Merge a document written by `state export` into the worker.
    Import {
        /// The document (`-` for stdin).
        file: PathBuf,
        /// Validate only; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Args)]
pub struct Target {
    /// The worker's base URL, e.g. https://www.example.com [env: CACHEFRONT_ENDPOINT].
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Give up on a request after this many seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    timeout: u64,
}

pub fn run(command: StateCommand) -> ExitCode {
    let outcome = match command {
        StateCommand::Export { out, target } => export(out.as_deref(), &target),
        StateCommand::Import {
            file,
            dry_run,
            target,
        } => import(&file, dry_run, &target),
    };
    report(outcome)
}

fn credentials(target: &Target) -> Result<(String, String), Failure> {
    worker_target(target.endpoint.as_deref(), STATE_PATH)
}

/// Sends one request; returns status and body whatever the status.
fn send(
    target: &Target,
    method: &str,
    url: &str,
    token: &str,
    body: Option<&[u8]>,
) -> Result<(u16, String), Failure> {
    let request = agent(target.timeout)
        .request(method, url)
        .set("Authorization", &format!("Bearer {token}"))
        .set("Accept", "application/json");
    let sent = match body {
        Some(bytes) => request
            .set("Content-Type", "application/json")
            .send_bytes(bytes),
        None => request.call(),
    };
    let response = match sent {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(e)) => {
            return Err(fail(EXIT_NETWORK, format!("cannot reach {url}: {e}")))
        }
    };
    let status = response.status();
    let text = response
        .into_string()
        .map_err(|e| fail(EXIT_NETWORK, format!("reading the answer of {url}: {e}")))?;
    Ok((status, text))
}

/// The failure for a non-200 answer, with the worker's own message.
fn refused(what: &str, status: u16, body: &str) -> Failure {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = json
        .as_ref()
        .and_then(|j| j.pointer("/error/message"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| first_line(body));
    let field = json
        .as_ref()
        .and_then(|j| j.pointer("/error/field"))
        .and_then(serde_json::Value::as_str)
        .map(|f| format!(" (field {f})"))
        .unwrap_or_default();
    let code = match status {
        401 | 403 => EXIT_AUTH,
        400..=499 => EXIT_REFUSED,
        _ => EXIT_SERVER,
    };
    let hint = match status {
        401 => format!(" (check {ENV_TOKEN})"),
        404 => " (is STATE_TOKEN or PURGE_TOKEN set on the worker? without one the endpoint is disabled)".into(),
        _ => String::new(),
    };
    fail(
        code,
        format!("{what} refused: HTTP {status}: {message}{field}{hint}"),
    )
}

fn count(document: &serde_json::Value, key: &str) -> usize {
    document
        .get(key)
        .and_then(serde_json::Value::as_array)
        .map_or(0, Vec::len)
}

fn export(out: Option<&Path>, target: &Target) -> Result<(), Failure> {
    let (url, token) = credentials(target)?;
    let (status, body) = send(target, "GET", &url, &token, None)?;
    if status != 200 {
        return Err(refused("export", status, &body));
    }
    let document: serde_json::Value = serde_json::from_str(&body)
        .ok()
        .filter(|d: &serde_json::Value| d.get("format").and_then(|f| f.as_str()) == Some(FORMAT))
        .ok_or_else(|| {
            fail(
                EXIT_SERVER,
                format!("{url} answered 200 without a state document (is --endpoint a Cachefront worker?)"),
            )
        })?;
    let mut text = serde_json::to_string_pretty(&document)
        .map_err(|e| fail(EXIT_SERVER, format!("re-encoding the document: {e}")))?;
    text.push('\n');
    match out {
        Some(path) => write_atomically(path, text.as_bytes())?,
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| fail(EXIT_SERVER, format!("stdout: {e}")))?,
    }
    eprintln!(
        "exported {} registry keys and {} origin health results",
        count(&document, "tags"),
        count(&document, "origin_health")
    );
    Ok(())
}

/// Writes next to `path`, then renames: a failed export never leaves half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            fail(
                EXIT_USAGE,
                format!("--out {} is not a file", path.display()),
            )
        })?;
    let temp = path.with_file_name(format!(".{name}.partial"));
    let io = |e: std::io::Error| fail(EXIT_USAGE, format!("{}: {e}", path.display()));
    std::fs::write(&temp, bytes).map_err(io)?;
    std::fs::rename(&temp, path).map_err(io)
}

fn import(file: &Path, dry_run: bool, target: &Target) -> Result<(), Failure> {
    let mut bytes = Vec::new();
    if file.as_os_str() == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| fail(EXIT_USAGE, format!("stdin: {e}")))?;
    } else {
        bytes = std::fs::read(file)
            .map_err(|e| fail(EXIT_USAGE, format!("{}: {e}", file.display())))?;
    }
    // A quick local check; the worker validates the document fully.
    let document: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| fail(EXIT_USAGE, format!("{}: not JSON: {e}", file.display())))?;
    if document.get("format").and_then(serde_json::Value::as_str) != Some(FORMAT) {
        return Err(fail(
            EXIT_USAGE,
            format!(
                "{}: not a state document (\"format\" is not {FORMAT:?})",
                file.display()
            ),
        ));
    }
    let (mut url, token) = credentials(target)?;
    if dry_run {
        url.push_str("?dry_run=true");
    }
    let (status, body) = send(target, "PUT", &url, &token, Some(&bytes))?;
    if status != 200 {
        return Err(refused("import", status, &body));
    }
    let receipt: serde_json::Value = serde_json::from_str(&body)
        .ok()
        .filter(|r: &serde_json::Value| r.get("ok") == Some(&serde_json::Value::Bool(true)))
        .ok_or_else(|| fail(EXIT_SERVER, format!("{url} answered 200 without a receipt")))?;
    let imported = &receipt["imported"];
    if dry_run {
        // A dry run writes no shard: the receipt's shards_written is 0.
        eprintln!(
            "would import {} registry keys and {} origin health results (dry run: nothing written)",
            imported["tags"], imported["origin_health"]
        );
    } else {
        eprintln!(
            "imported {} registry keys into {} shards and {} origin health results",
            imported["tags"], imported["shards_written"], imported["origin_health"]
        );
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&receipt).unwrap_or_default()
    );
    Ok(())
}
