//! `cachefront state export|import` over real HTTP against a loopback
//! stand-in for the worker's state endpoint: the requests it sends (method,
//! path, bearer token, body), the files it writes, and its exit codes.

use std::process::{Command, Output};

mod common;
use common::{stand_in, StandIn};

const TOKEN: &str = "state-cli-token-0123456789";

fn cachefront(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachefront"))
        .args(args)
        .env("CACHEFRONT_PURGE_TOKEN", TOKEN)
        .env_remove("CACHEFRONT_ENDPOINT")
        .output()
        .expect("run cachefront")
}

fn document() -> String {
    serde_json::json!({
        "format": "cachefront-state", "version": 1, "exported_ms": 1_700_000_000_000u64,
        "tags": [{"key": "product:7", "hard_ms": 1_699_999_999_000u64, "soft_ms": 0}],
        "origin_health": [{"origin": "primary", "up": true, "checked_ms": 1_699_999_990_000u64, "detail": "200"}]
    })
    .to_string()
}

#[test]
fn export_gets_the_document_with_the_token_and_writes_it_to_the_file() {
    let StandIn { base, seen } = stand_in(vec![(200, Vec::new(), document())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("state.json");
    let output = cachefront(&[
        "state",
        "export",
        "--endpoint",
        &base,
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    assert!(output.status.success(), "{output:?}");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/__cachefront/state");
    assert_eq!(
        seen[0].header("authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("file written")).expect("JSON");
    let sent: serde_json::Value = serde_json::from_str(&document()).expect("JSON");
    assert_eq!(written, sent);
    assert!(String::from_utf8_lossy(&output.stderr).contains("exported 1 registry keys"));
}

#[test]
fn import_puts_the_file_unchanged_and_dry_run_asks_for_validation_only() {
    let receipt =
        r#"{"ok":true,"imported":{"tags":1,"shards_written":0,"origin_health":1,"dry_run":true}}"#;
    let StandIn { base, seen } = stand_in(vec![(200, Vec::new(), receipt.to_owned())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("state.json");
    std::fs::write(&file, document()).expect("write");
    let output = cachefront(&[
        "state",
        "import",
        file.to_str().expect("utf-8 path"),
        "--dry-run",
        "--endpoint",
        &format!("{base}/"),
    ]);
    assert!(output.status.success(), "{output:?}");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].path, "/__cachefront/state?dry_run=true");
    assert_eq!(seen[0].body, document());
    assert!(String::from_utf8_lossy(&output.stderr).contains("would import 1 registry keys"));
}

#[test]
fn a_refused_import_exits_6_with_the_workers_message_and_field() {
    let error = r#"{"ok":false,"error":{"status":400,"code":"invalid_field","message":"tags[0].key: is empty","field":"tags[0].key"}}"#;
    let StandIn { base, .. } = stand_in(vec![(400, Vec::new(), error.to_owned())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("state.json");
    std::fs::write(&file, document()).expect("write");
    let output = cachefront(&[
        "state",
        "import",
        file.to_str().expect("path"),
        "--endpoint",
        &base,
    ]);
    assert_eq!(output.status.code(), Some(6));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tags[0].key: is empty"), "{stderr}");
}

#[test]
fn a_file_that_is_not_a_state_document_is_refused_before_any_request() {
    let StandIn { base, seen } = stand_in(vec![]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("other.json");
    std::fs::write(&file, r#"{"tags":["a"]}"#).expect("write");
    let output = cachefront(&[
        "state",
        "import",
        file.to_str().expect("path"),
        "--endpoint",
        &base,
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(seen.lock().expect("lock").is_empty());
}

#[test]
fn a_wrong_token_exits_3_and_leaves_no_file() {
    let error = r#"{"ok":false,"error":{"status":401,"code":"unauthorized","message":"a valid `Authorization: Bearer <token>` header is required"}}"#;
    let StandIn { base, .. } = stand_in(vec![(401, Vec::new(), error.to_owned())]);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("state.json");
    let output = cachefront(&[
        "state",
        "export",
        "--endpoint",
        &base,
        "--out",
        out.to_str().expect("path"),
    ]);
    assert_eq!(output.status.code(), Some(3));
    assert!(!out.exists());
}
