#![cfg(all(
    feature = "metrics",
    feature = "profiling",
    feature = "health",
    feature = "cache-tags"
))]
mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{http, spawn_example};

async fn in_flight_sleeps(client: &reqwest::Client, admin: &str) -> f64 {
    let text = support::get(client, format!("{admin}/metrics"))
        .await
        .text()
        .await
        .expect("text");
    text.lines()
        .find(|l| {
            l.starts_with(
                r#"cachefront_origin_http_requests_in_flight{method="GET",route="/sleep/{ms}"}"#,
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let (mut child, addrs) = spawn_example(
        "minimal",
        &[
            ("SHUTDOWN_DRAIN_MS", "3000"),
            ("SHUTDOWN_DEADLINE_MS", "30000"),
        ],
    );
    let base = format!("http://{}", addrs.public);
    let admin = format!("http://{}", addrs.admin);
    let client = http();

    // Five slow requests, each on its own connection.
    let slow: Vec<_> = (0..5)
        .map(|_| {
            let url = format!("{base}/sleep/9000");
            tokio::spawn(async move {
                let res = support::get(&http(), url).await;
                (res.status().as_u16(), res.text().await.expect("body"))
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while in_flight_sleeps(&client, &admin).await < 5.0 {
        assert!(
            Instant::now() < deadline,
            "slow requests never got in flight"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    kill(Pid::from_raw(child.pid() as i32), Signal::SIGTERM).expect("send SIGTERM");

    // Readiness flips as soon as the signal is handled (signal delivery is asynchronous,
    // so poll); the drain window keeps the listener open to tell us so.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let res = support::get(&client, format!("{base}/readyz")).await;
        if res.status() == 503 {
            let body: serde_json::Value = res.json().await.expect("json");
            assert_eq!(body, serde_json::json!({"status": "unavailable"}));
            break;
        }
        assert_eq!(res.status(), 200);
        assert!(Instant::now() < deadline, "readiness never flipped to 503");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The admin listener stays up through the drain and tells why.
    let res = support::get(&client, format!("{admin}/readyz")).await;
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["status"], "shutting_down");

    // After the drain window, new connections are refused while the slow ones still run.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let fresh = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        match fresh.get(format!("{base}/livez")).send().await {
            Err(e) if e.is_connect() => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "listener still accepting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        slow.iter().all(|t| !t.is_finished()),
        "in-flight requests ended before the listener closed"
    );

    for task in slow {
        let (status, body) = task.await.expect("task");
        assert_eq!(status, 200);
        assert_eq!(body, "slept 9000 ms\n");
    }
    let status = child
        .wait_timeout(Duration::from_secs(30))
        .expect("process exits after draining");
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_deadline_bounds_the_wait_for_stuck_requests() {
    let (mut child, addrs) = spawn_example(
        "minimal",
        &[("SHUTDOWN_DRAIN_MS", "0"), ("SHUTDOWN_DEADLINE_MS", "500")],
    );
    let base = format!("http://{}", addrs.public);
    let admin = format!("http://{}", addrs.admin);
    let client = http();
    let stuck = {
        let url = format!("{base}/sleep/30000");
        tokio::spawn(async move { http().get(url).send().await.map(|r| r.status().as_u16()) })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while in_flight_sleeps(&client, &admin).await < 1.0 {
        assert!(Instant::now() < deadline, "request never got in flight");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill(Pid::from_raw(child.pid() as i32), Signal::SIGTERM).expect("send SIGTERM");
    // The 30 s request is abandoned after the 0.5 s deadline: the process exits 0 long
    // before the handler would have finished.
    let status = child
        .wait_timeout(Duration::from_secs(20))
        .expect("process exits once the deadline passes");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let outcome = stuck.await.expect("task");
    assert!(
        outcome.is_err(),
        "the stuck request cannot have completed: {outcome:?}"
    );
}
