//! Test support: loopback axum servers, child processes and throwaway PostgreSQL clusters,
//! each stopped by a Drop guard so nothing outlives a failing test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use axum::Router;

/// An axum app served on 127.0.0.1 at a free port; aborted on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    handle: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(app: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// An HTTP client that never goes through a proxy from the environment.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// `GET url` with `client`; panics (naming the URL) when no answer comes.
pub async fn get(client: &reqwest::Client, url: impl AsRef<str>) -> reqwest::Response {
    let url = url.as_ref();
    client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// `GET url` with `Authorization: Bearer token`; panics (naming the URL) when no answer comes.
pub async fn get_bearer(
    client: &reqwest::Client,
    url: impl AsRef<str>,
    token: &str,
) -> reqwest::Response {
    let url = url.as_ref();
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// A child process killed (and reaped) on drop.
pub struct ChildGuard {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the process to exit, up to `timeout`; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Path of a compiled example of this crate (built by `cargo test` / `cargo build --examples`).
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> → target/<profile>/examples/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p cachefront-origin --examples` (scripts/test-origin.sh does)",
        bin.display()
    );
    bin
}

/// Operator paths (metrics, debug reports, CPU profile, queries); none of them may answer
/// on a public listener.
pub const OPERATOR_PATHS: [&str; 5] = [
    "/metrics",
    "/metrics.json",
    "/debug/requests",
    "/debug/pprof/profile?seconds=1",
    "/debug/queries",
];

/// Where a started example listens.
#[derive(Debug, Clone, Copy)]
pub struct ExampleAddrs {
    /// The public listener (what the edge forwards to).
    pub public: SocketAddr,
    /// The admin listener (operator routes).
    pub admin: SocketAddr,
}

/// Start an example with `BIND=127.0.0.1:0` and `ADMIN_BIND=127.0.0.1:0` and wait for its
/// "listening on" and "admin on" lines.
pub fn spawn_example(name: &str, envs: &[(&str, &str)]) -> (ChildGuard, ExampleAddrs) {
    let mut cmd = Command::new(example_bin(name));
    cmd.env("BIND", "127.0.0.1:0")
        .env("ADMIN_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn example");
    let stdout = child.stdout.take().expect("stdout");
    let tag = name.to_owned();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("[{tag}] {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let guard = ChildGuard { child, lines: rx };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (mut public, mut admin) = (None, None);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = guard
            .lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("{name} did not report its addresses"));
        if let Some(addr) = line.split("listening on http://").nth(1) {
            public = Some(addr.trim().parse().expect("address"));
        } else if let Some(addr) = line.split("admin on http://").nth(1) {
            admin = Some(addr.trim().parse().expect("admin address"));
        }
        if let (Some(public), Some(admin)) = (public, admin) {
            return (guard, ExampleAddrs { public, admin });
        }
    }
}

/// `DATABASE_URL`, or `None` (the test is skipped) unless `CACHEFRONT_TEST_STRICT` is set,
/// in which case a missing database fails the test.
pub fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CACHEFRONT_TEST_STRICT").is_some() => {
            panic!("DATABASE_URL is not set; run under scripts/with-postgres.sh")
        }
        _ => {
            eprintln!("skipping: DATABASE_URL not set (run under scripts/with-postgres.sh)");
            None
        }
    }
}

/// A pool of `max_connections` whose `search_path` is `schema`, after creating `schema`
/// afresh (dropping what a killed earlier run left). Pair with [`drop_schema`].
#[cfg(feature = "postgres")]
pub async fn pool_in_fresh_schema(
    database_url: &str,
    schema: &str,
    max_connections: u32,
) -> sqlx::PgPool {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(database_url)
        .expect("DATABASE_URL parses")
        .options([("search_path", schema)]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await
        .expect("connect to DATABASE_URL");
    for statement in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ] {
        sqlx::query(&statement)
            .execute(&pool)
            .await
            .expect("create the test schema");
    }
    pool
}

/// Drops a schema made by [`pool_in_fresh_schema`] and closes its pool.
#[cfg(feature = "postgres")]
pub async fn drop_schema(pool: sqlx::PgPool, schema: &str) {
    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&pool)
        .await;
    pool.close().await;
}

/// Directory with `initdb` and `pg_ctl`, or `None` when PostgreSQL is not installed.
pub fn pg_bindir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BINDIR").map(PathBuf::from) {
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|d| d.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A throwaway PostgreSQL cluster of its own, which a test may stop and start.
pub struct PgCluster {
    bindir: PathBuf,
    dir: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl PgCluster {
    pub fn start() -> Self {
        let bindir = pg_bindir().expect(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql",
        );
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("cachefront-test-pg-{}-{stamp}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create cluster dir");
        let as_postgres = is_root();
        if as_postgres {
            run(Command::new("chown").arg("postgres").arg(&dir));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let cluster = Self {
            bindir,
            dir,
            port,
            as_postgres,
        };
        let data = cluster.dir.join("data");
        run(cluster.pg_cmd("initdb").arg("-D").arg(&data).args([
            "-U",
            "cachefront",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]));
        cluster.start_server();
        cluster
    }

    fn pg_cmd(&self, tool: &str) -> Command {
        let bin = self.bindir.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        }
    }

    pub fn start_server(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        run(self
            .pg_cmd("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"]));
    }

    pub fn stop_server(&self) {
        run(self
            .pg_cmd("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]));
    }

    pub fn url(&self) -> String {
        format!("postgres://cachefront@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if data.join("postmaster.pid").exists() {
            let _ = self
                .pg_cmd("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deterministic pseudo-random numbers (xorshift64*), so tests need no RNG crate.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Path of `promtool`, or `None` (the test is skipped) unless `CACHEFRONT_TEST_STRICT` is set.
pub fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.exists())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CACHEFRONT_TEST_STRICT").is_none(),
            "promtool not found (apt-get install prometheus)"
        );
        eprintln!("skipping: promtool not found");
    }
    found
}

/// Run `promtool check metrics` on `text`; returns (success, combined output).
pub fn promtool_check_metrics(promtool: &Path, text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("promtool output");
    let mut combined = String::from_utf8_lossy(&out.stdout).into_owned();
    combined.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), combined)
}

/// One request a stand-in API received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: serde_json::Value,
    pub at: std::time::Instant,
}

/// Scripted answer of a stand-in: status and optional `Retry-After` seconds.
#[derive(Debug, Clone, Copy)]
pub struct Reply(pub u16, pub Option<u64>);

/// A loopback stand-in for a purge API. Every request is recorded; requests that break
/// the API's documented contract are answered 400 and listed in `violations`. Scripted
/// replies are used in order, then 200.
pub struct PurgeStandIn {
    pub server: TestServer,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    pub violations: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// What a stand-in checks; returns the success body or a violation.
pub type Contract = fn(&Received) -> Result<serde_json::Value, String>;

impl PurgeStandIn {
    pub async fn start(contract: Contract, script: Vec<Reply>) -> Self {
        use axum::body::Bytes;
        use axum::response::IntoResponse;
        use std::sync::{Arc, Mutex};
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let violations: Arc<Mutex<Vec<String>>> = Arc::default();
        let script = Arc::new(Mutex::new(std::collections::VecDeque::from(script)));
        let (rec, vio) = (received.clone(), violations.clone());
        let handler =
            move |method: http::Method, uri: http::Uri, headers: http::HeaderMap, body: Bytes| {
                let (rec, vio, script) = (rec.clone(), vio.clone(), script.clone());
                async move {
                    let body_json = if body.is_empty() {
                        serde_json::Value::Null
                    } else {
                        serde_json::from_slice(&body)
                            .unwrap_or(serde_json::Value::String("<not json>".into()))
                    };
                    let r = Received {
                        method: method.to_string(),
                        path: uri.path().to_owned(),
                        headers,
                        body: body_json,
                        at: std::time::Instant::now(),
                    };
                    rec.lock().expect("lock").push(r.clone());
                    let ok_body = match contract(&r) {
                        Ok(b) => b,
                        Err(v) => {
                            vio.lock().expect("lock").push(v.clone());
                            return (http::StatusCode::BAD_REQUEST, v).into_response();
                        }
                    };
                    let reply = script.lock().expect("lock").pop_front();
                    match reply {
                        Some(Reply(status, retry_after)) if status != 200 => {
                            let mut res = (
                                http::StatusCode::from_u16(status).expect("status"),
                                axum::Json(serde_json::json!({"success": false})),
                            )
                                .into_response();
                            if let Some(s) = retry_after {
                                res.headers_mut()
                                    .insert(http::header::RETRY_AFTER, s.into());
                            }
                            res
                        }
                        _ => axum::Json(ok_body).into_response(),
                    }
                }
            };
        let server = TestServer::start(Router::new().fallback(handler)).await;
        Self {
            server,
            received,
            violations,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().expect("lock").clone()
    }
}

fn header<'a>(r: &'a Received, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

fn string_array(v: &serde_json::Value, key: &str) -> Result<usize, String> {
    let arr = v[key].as_array().ok_or(format!("{key} must be an array"))?;
    if arr.is_empty()
        || !arr
            .iter()
            .all(|x| x.as_str().is_some_and(|s| !s.is_empty()))
    {
        return Err(format!(
            "{key} must be a non-empty array of non-empty strings"
        ));
    }
    Ok(arr.len())
}

/// The Cachefront edge purge API: `POST /__cachefront/purge`,
/// `Authorization: Bearer edge-secret`, a JSON body of at most
/// [`MAX_BODY_BYTES`](cachefront::purge::api::MAX_BODY_BYTES), and the body through the
/// edge's own parser ([`parse_purge_body`](cachefront::purge::api::parse_purge_body)),
/// configured with the prefix `/products/`, so items are judged exactly as the worker judges
/// them. One bad item makes the edge refuse the whole request.
///
/// On top of the edge, what the edge tolerates but the plugin must never send is refused
/// too: an empty item array (the plugin skips empty kinds), `dry_run`, duplicates, and
/// items the edge would still have to trim or lowercase (the plugin sends them normalized).
pub fn edge_contract(r: &Received) -> Result<serde_json::Value, String> {
    use cachefront::purge::api::{parse_purge_body, MAX_BODY_BYTES};
    if r.method != "POST" || r.path != "/__cachefront/purge" {
        return Err(format!("unexpected {} {}", r.method, r.path));
    }
    if header(r, "authorization") != Some("Bearer edge-secret") {
        return Err("missing or wrong bearer token".into());
    }
    if !header(r, "content-type").is_some_and(|c| c.starts_with("application/json")) {
        return Err("content-type must be application/json".into());
    }
    let body = serde_json::to_vec(&r.body).map_err(|e| e.to_string())?;
    if body.len() > MAX_BODY_BYTES {
        return Err("body larger than 64 KiB".into());
    }
    let obj = r.body.as_object().ok_or("body must be a JSON object")?;
    for key in ["tags", "urls", "prefixes", "hosts"] {
        if obj.contains_key(key) {
            string_array(&r.body, key)?;
        }
    }
    if obj.contains_key("dry_run") {
        return Err("the plugin never sends dry_run".into());
    }
    let request = parse_purge_body(&body, &["/products/".to_owned()])
        .map_err(|e| format!("edge refuses the body: {e}"))?;
    // The plugin normalizes before sending: what the edge would store must be what was sent.
    let sent = |key: &str| -> Vec<String> {
        obj.get(key)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    };
    for (key, parsed) in [
        ("tags", &request.tags),
        ("prefixes", &request.prefixes),
        ("hosts", &request.hosts),
    ] {
        if &sent(key) != parsed {
            return Err(format!(
                "{key} not sent as the edge normalizes them: {:?}",
                sent(key)
            ));
        }
    }
    if let Some(url) = sent("urls").iter().find(|u| u.trim() != u.as_str()) {
        return Err(format!("url sent with surrounding whitespace: {url:?}"));
    }
    Ok(serde_json::json!({"ok": true, "purged": request.item_count()}))
}

/// Runs this test binary's test `test_name` alone again, as a child process with `marker`
/// set (the child sees it and does the work: for a setup that installs the global
/// subscriber and logs to stdout), `RUST_LOG` unset, colours off and `envs` added.
/// Asserts that it succeeded; returns its stdout and stderr.
pub fn rerun_as_child(test_name: &str, marker: &str, envs: &[(&str, &str)]) -> (String, String) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(marker, "1")
        .envs(envs.iter().copied())
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// A pool in a fresh `schema` (see [`pool_in_fresh_schema`]) holding the catalog the
/// database tests query: `categories (id, name)` with ids 1..=`categories`, and `products
/// (id, name, category_id)` with ids 1..=`products`, product `g` in category
/// `1 + g % categories`.
#[cfg(feature = "postgres")]
pub async fn catalog_in_fresh_schema(
    database_url: &str,
    schema: &str,
    categories: u32,
    products: u32,
) -> sqlx::PgPool {
    let pool = pool_in_fresh_schema(database_url, schema, 2).await;
    for statement in [
        format!("CREATE TABLE {schema}.categories (id bigint PRIMARY KEY, name text NOT NULL)"),
        format!(
            "CREATE TABLE {schema}.products (id bigint PRIMARY KEY, name text NOT NULL, \
             category_id bigint NOT NULL REFERENCES {schema}.categories (id))"
        ),
        format!(
            "INSERT INTO {schema}.categories \
             SELECT g, 'category ' || g FROM generate_series(1, {categories}) g"
        ),
        format!(
            "INSERT INTO {schema}.products \
             SELECT g, 'product ' || g, 1 + g % {categories} FROM generate_series(1, {products}) g"
        ),
    ] {
        sqlx::query(&statement)
            .execute(&pool)
            .await
            .expect("create the test catalog");
    }
    pool
}

/// The N+1 shape the database tests serve: `products` lists `(id, name, category_id)`, then
/// `category` (`$1` = a category id, answering `(id, name)`) runs once per product. One line
/// per product, `id name category`. Generic over the executor: `&PgPool` or a wrapper.
#[cfg(feature = "postgres")]
pub async fn products_one_by_one<P>(
    pool: &P,
    products: &str,
    category: &str,
) -> Result<Vec<String>, sqlx::Error>
where
    for<'c> &'c P: sqlx::Executor<'c, Database = sqlx::Postgres>,
{
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(products).fetch_all(pool).await?;
    let mut lines = Vec::with_capacity(rows.len());
    for (id, name, category_id) in rows {
        let (_, category): (i64, String) = sqlx::query_as(category)
            .bind(category_id)
            .fetch_one(pool)
            .await?;
        lines.push(format!("{id} {name} {category}"));
    }
    Ok(lines)
}

/// Log output of a `fmt` subscriber (`.with_writer(lines.clone())`), kept for assertions.
#[derive(Clone, Default)]
pub struct LogLines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogLines {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

impl std::io::Write for LogLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogLines {
    type Writer = LogLines;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
