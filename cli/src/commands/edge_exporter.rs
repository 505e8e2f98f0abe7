//! `cachefront edge-exporter`: the I/O around `cachefront_cli::edge_metrics`
//! — the Analytics Engine SQL API calls (ureq), the poll loop, and a small
//! HTTP server answering `GET /metrics`. Exit codes: 0 done (`--once`),
//! 2 usage, 4 the first query failed with `--once`.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cachefront_cli::edge_metrics::{
    check_account_id, check_dataset, next_window, parse_answer, render, sql_url, window_sql,
    EdgeCounters, ExporterStatus, Row, Window,
};
use clap::Args;

use crate::exit::{EXIT_NETWORK, EXIT_USAGE};
use crate::http::{agent, env_var, first_line, ENV_CF_API_BASE};

/// Default API base; `CACHEFRONT_CF_API_BASE` or `--api-base` override it.
const API_BASE: &str = "https://api.cloudflare.com/client/v4";
/// Longest window one query covers when catching up.
const MAX_SPAN_SECS: u64 = 3_600;

#[derive(Debug, Args)]
pub struct EdgeExporterArgs {
    /// Cloudflare account ID (32 hex characters) [env: CF_ACCOUNT_ID].
    #[arg(long, value_name = "ID")]
    account_id: Option<String>,
    /// Environment variable holding the API token (permission Account Analytics: Read).
    #[arg(long, default_value = "CF_API_TOKEN", value_name = "NAME")]
    token_env: String,
    /// The Analytics Engine dataset the worker writes (wrangler.toml `dataset`).
    #[arg(long, default_value = "cachefront")]
    dataset: String,
    /// Address to serve /metrics on.
    #[arg(long, default_value = "127.0.0.1:9465", value_name = "ADDR")]
    listen: String,
    /// Seconds between queries.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    interval: u64,
    /// Query only data older than this many seconds (ingestion delay).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    lag: u64,
    /// On start, read this many seconds of history (default: one interval).
    #[arg(long, value_name = "SECS")]
    backfill: Option<u64>,
    /// API base URL [env: CACHEFRONT_CF_API_BASE].
    #[arg(long, value_name = "URL")]
    api_base: Option<String>,
    /// Query one window (the backfill), print the metrics to stdout, exit.
    #[arg(long)]
    once: bool,
    /// Give up on a query after this many seconds.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    timeout: u64,
}

struct Settings {
    url: String,
    token: String,
    dataset: String,
    timeout: u64,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn usage(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

pub fn run(args: EdgeExporterArgs) -> ExitCode {
    let Some(account) = args.account_id.clone().or_else(|| env_var("CF_ACCOUNT_ID")) else {
        return usage("no account: pass --account-id or set CF_ACCOUNT_ID".into());
    };
    if let Err(e) = check_account_id(account.trim()).and(check_dataset(&args.dataset)) {
        return usage(e);
    }
    let Some(token) = env_var(&args.token_env) else {
        return usage(format!(
            "{} is not set: export an API token with Account Analytics: Read",
            args.token_env
        ));
    };
    let base = args
        .api_base
        .clone()
        .or_else(|| env_var(ENV_CF_API_BASE))
        .unwrap_or_else(|| API_BASE.to_owned());
    let settings = Settings {
        url: sql_url(&base, account.trim()),
        token: token.trim().to_owned(),
        dataset: args.dataset.clone(),
        timeout: args.timeout,
    };
    let interval = args.interval.max(1);
    let start = now_s().saturating_sub(args.lag + args.backfill.unwrap_or(interval));
    let shared = Arc::new(Mutex::new((
        EdgeCounters::default(),
        ExporterStatus {
            window_end_s: start,
            ..ExporterStatus::default()
        },
    )));

    if args.once {
        let ok = poll(&settings, &shared, args.lag);
        let Ok(guard) = shared.lock() else {
            return ExitCode::FAILURE;
        };
        print!("{}", render(&guard.0, &guard.1));
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_NETWORK)
        };
    }

    let listener = match TcpListener::bind(&args.listen) {
        Ok(listener) => listener,
        Err(e) => return usage(format!("cannot listen on {}: {e}", args.listen)),
    };
    let address = listener
        .local_addr()
        .map_or(args.listen.clone(), |a| a.to_string());
    eprintln!(
        "edge-exporter: serving http://{address}/metrics, querying {} every {interval} s",
        settings.url
    );
    let served = Arc::clone(&shared);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, &served);
        }
    });
    loop {
        // Poll again at once while catching up; otherwise wait an interval.
        while poll(&settings, &shared, args.lag) && behind(&shared, args.lag, interval) {}
        thread::sleep(Duration::from_secs(interval));
    }
}

fn behind(shared: &Mutex<(EdgeCounters, ExporterStatus)>, lag: u64, interval: u64) -> bool {
    shared
        .lock()
        .is_ok_and(|g| g.1.window_end_s + lag + interval < now_s())
}

/// Queries the next window and folds it in; false when the query failed
/// (the window stays for the next poll).
fn poll(settings: &Settings, shared: &Mutex<(EdgeCounters, ExporterStatus)>, lag: u64) -> bool {
    let cursor = match shared.lock() {
        Ok(guard) => guard.1.window_end_s,
        Err(_) => return false,
    };
    let Some(window) = next_window(cursor, now_s(), lag, MAX_SPAN_SECS) else {
        return true;
    };
    let outcome = query(settings, window);
    let Ok(mut guard) = shared.lock() else {
        return false;
    };
    let (counters, status) = &mut *guard;
    match outcome {
        Ok(rows) => {
            counters.add(&rows);
            status.last_ok = true;
            status.queries_ok += 1;
            status.last_success_s = Some(now_s());
            status.window_end_s = window.end_s;
            status.last_error = None;
            true
        }
        Err(e) => {
            eprintln!(
                "edge-exporter: query for [{}, {}) failed: {e}",
                window.start_s, window.end_s
            );
            status.last_ok = false;
            status.queries_failed += 1;
            status.last_error = Some(e);
            false
        }
    }
}

/// `POST` the SQL as the body with the bearer token, as Cloudflare documents.
fn query(settings: &Settings, window: Window) -> Result<Vec<Row>, String> {
    let agent = agent(settings.timeout);
    let sql = window_sql(&settings.dataset, window);
    let response = agent
        .post(&settings.url)
        .set("Authorization", &format!("Bearer {}", settings.token))
        .set("Content-Type", "text/plain")
        .send_string(&sql);
    match response {
        Ok(response) => {
            let body = response
                .into_string()
                .map_err(|e| format!("reading the answer: {e}"))?;
            parse_answer(&body)
        }
        Err(ureq::Error::Status(status, response)) => {
            let body = response.into_string().unwrap_or_default();
            Err(format!("HTTP {status}: {}", first_line(&body)))
        }
        Err(ureq::Error::Transport(e)) => Err(e.to_string()),
    }
}

/// Answers one connection: `GET /metrics` (and `/`), 404 otherwise.
fn answer(stream: TcpStream, shared: &Mutex<(EdgeCounters, ExporterStatus)>) -> Option<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    let path = target.split('?').next().unwrap_or(target);
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let guard = shared.lock().ok()?;
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                render(&guard.0, &guard.1),
            )
        }
        ("GET", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "cachefront edge-exporter: metrics at /metrics\n".to_owned(),
        ),
        _ => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found\n".to_owned(),
        ),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    stream.flush().ok()
}
