//! Health, second round: cached public readiness, warn-only checks, per-check timeouts,
//! the built-in disk and memory checks against this machine, and the admin `/status` page.
#![cfg(feature = "health")]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cachefront_origin::health::builtin::{DiskSpaceCheck, MemoryCheck};
use cachefront_origin::health::{CheckOptions, FnCheck, Health};
use support::{http, TestServer};

fn counting(
    name: &str,
    runs: &Arc<AtomicUsize>,
) -> FnCheck<impl Fn() -> std::future::Ready<Result<(), String>> + Send + Sync + 'static> {
    let runs = runs.clone();
    FnCheck::new(name, move || {
        runs.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(()))
    })
}

async fn public_probes(health: &Health, n: usize) {
    let public = TestServer::start(health.router()).await;
    let client = http();
    // Half one after the other, half at once: concurrent probes share one run too.
    for _ in 0..n / 2 {
        let res = support::get(&client, public.url("/readyz")).await;
        assert_eq!(res.status(), 200);
    }
    let mut at_once = tokio::task::JoinSet::new();
    for _ in 0..n - n / 2 {
        let (client, url) = (client.clone(), public.url("/readyz"));
        at_once.spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) });
    }
    while let Some(r) = at_once.join_next().await {
        assert_eq!(r.ok().and_then(Result::ok), Some(200));
    }
}

#[tokio::test]
async fn public_readyz_reuses_one_result_within_the_ttl_so_probes_do_not_reach_the_database() {
    let runs = Arc::new(AtomicUsize::new(0));
    let health = Health::builder()
        .readiness_check(counting("postgres", &runs))
        .cache_ttl(Duration::from_secs(3600))
        .build();
    public_probes(&health, 40).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // The admin answer always runs the checks (operators want the current truth).
    let admin = TestServer::start(health.admin_router()).await;
    let res = support::get(&http(), admin.url("/readyz")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn with_a_zero_ttl_every_public_probe_runs_the_checks() {
    let runs = Arc::new(AtomicUsize::new(0));
    let health = Health::builder()
        .readiness_check(counting("postgres", &runs))
        .cache_ttl(Duration::ZERO)
        .build();
    public_probes(&health, 10).await;
    assert_eq!(runs.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn a_failing_warn_only_check_is_reported_but_never_fails_readiness() {
    let health = Health::builder()
        .readiness_check(FnCheck::new("postgres", || async { Ok(()) }))
        .warn_check(FnCheck::new("disk", || async {
            Err("12 MiB free".to_owned())
        }))
        .build();
    let report = health.readiness().await;
    assert_eq!(report.status, "ready", "{report:?}");
    assert!(report.failing.is_empty());
    assert_eq!(report.warnings, ["disk"]);
    assert_eq!(report.checks["disk"].severity, "warn");
    assert_eq!(report.checks["disk"].status, "failed");
    assert_eq!(report.checks["postgres"].severity, "critical");

    let critical = Health::builder()
        .readiness_check(FnCheck::new("disk", || async {
            Err("12 MiB free".to_owned())
        }))
        .build();
    assert_eq!(critical.readiness().await.status, "unready");
}

#[tokio::test]
async fn each_check_keeps_its_own_timeout() {
    let health = Health::builder()
        .check_timeout(Duration::from_secs(3600))
        .readiness_check_with(
            FnCheck::new("cache", || async {
                std::future::pending::<()>().await;
                Ok(())
            }),
            CheckOptions::critical().timeout(Duration::from_millis(50)),
        )
        .build();
    let report = health.readiness().await;
    assert_eq!(report.checks["cache"].status, "timeout");
    assert_eq!(
        report.checks["cache"].error.as_deref(),
        Some("no answer within 50 ms")
    );
}

#[tokio::test]
async fn disk_and_memory_checks_read_this_machine() {
    let relaxed = Health::builder()
        .readiness_check(
            DiskSpaceCheck::new("/")
                .min_free_bytes(0)
                .min_free_ratio(0.0),
        )
        .readiness_check(MemoryCheck::new(0))
        .build();
    let report = relaxed.readiness().await;
    assert_eq!(report.status, "ready", "{report:?}");

    let impossible = Health::builder()
        .readiness_check(DiskSpaceCheck::new(std::env::temp_dir()).min_free_bytes(u64::MAX))
        .readiness_check(MemoryCheck::new(u64::MAX))
        .readiness_check(DiskSpaceCheck::new("/no/such/dir").named("missing"))
        .build();
    let report = impossible.readiness().await;
    assert_eq!(report.failing, ["disk", "memory", "missing"], "{report:?}");
    let disk = report.checks["disk"].error.clone().unwrap_or_default();
    assert!(
        disk.contains(&std::env::temp_dir().display().to_string()) && disk.contains("MiB free"),
        "{disk}"
    );
    let memory = report.checks["memory"].error.clone().unwrap_or_default();
    assert!(memory.contains("MiB of memory available"), "{memory}");
    let missing = report.checks["missing"].error.clone().unwrap_or_default();
    assert!(missing.contains("statvfs failed"), "{missing}");
}

#[tokio::test]
async fn admin_status_page_shows_every_check_escaped_and_the_public_app_has_none() {
    let health = Health::builder()
        .readiness_check(FnCheck::new("postgres", || async { Ok(()) }))
        .warn_check(FnCheck::new("queue", || async {
            Err("<script>alert(1)</script>".to_owned())
        }))
        .build();
    let admin = TestServer::start(health.admin_router()).await;
    let res = support::get(&http(), admin.url("/status")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.headers()["content-type"]
        .to_str()
        .is_ok_and(|c| c.starts_with("text/html")));
    let page = res.text().await.expect("body");
    assert!(page.contains("<h1>ready</h1>"), "{page}");
    assert!(
        page.contains("<td>postgres</td><td>critical</td><td>ok</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td>queue</td><td>warn</td><td>failed</td>"),
        "{page}"
    );
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!page.contains("<script>"));

    let public = TestServer::start(health.router()).await;
    let res = support::get(&http(), public.url("/status")).await;
    assert_eq!(res.status(), 404);
}
