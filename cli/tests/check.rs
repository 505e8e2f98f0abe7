//! `cachefront check` on a corpus of bad configurations
//! (`tests/fixtures/bad-configs/`, one file per class of problem) and on the
//! repository's own wrangler.toml.
//!
//! A fixture says what it expects in its leading comments:
//! `# expect: error CACHE_RULES[1] (blog).edge_ttl.mode ~ unknown variant`
//! (the text after `~` must be in the message), `# never: hunter2` (never
//! printed), `# args: --env staging` (extra arguments). The exit status must
//! be 1 when an error is expected, else 0.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cachefront_check(config: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachefront"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .args(extra)
        .output()
        .expect("run cachefront")
}

struct Expect {
    severity: String,
    path: String,
    fragment: Option<String>,
}

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-configs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_bad_config_fixture_reports_each_expected_problem_with_its_path() {
    let files = fixtures();
    assert!(files.len() >= 25, "the corpus is there: {}", files.len());
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("fixture");
        let header: Vec<&str> = text
            .lines()
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches('#').trim())
            .collect();
        let expects: Vec<Expect> = header
            .iter()
            .filter_map(|l| l.strip_prefix("expect:"))
            .map(|rest| {
                let (what, fragment) = match rest.split_once(" ~ ") {
                    Some((what, fragment)) => (what, Some(fragment.trim().to_owned())),
                    None => (rest, None),
                };
                let (severity, path) = what.trim().split_once(' ').expect("severity and path");
                Expect {
                    severity: severity.to_owned(),
                    path: path.trim().to_owned(),
                    fragment,
                }
            })
            .collect();
        assert!(
            !expects.is_empty(),
            "{}: no `# expect:` line",
            file.display()
        );
        let never: Vec<&str> = header
            .iter()
            .filter_map(|l| l.strip_prefix("never:"))
            .map(str::trim)
            .collect();
        let args: Vec<&str> = header
            .iter()
            .filter_map(|l| l.strip_prefix("args:"))
            .flat_map(|a| a.split_whitespace())
            .collect();

        let output = cachefront_check(file, &args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        for expect in &expects {
            let prefix = format!("{}: {}: ", expect.severity, expect.path);
            let found = stdout.lines().any(|line| {
                line.strip_prefix(&prefix).is_some_and(|message| {
                    expect
                        .fragment
                        .as_ref()
                        .is_none_or(|f| message.contains(f.as_str()))
                })
            });
            if !found {
                failures.push(format!(
                    "{name}: no `{prefix}…{}` in\n{stdout}",
                    expect.fragment.as_deref().unwrap_or("")
                ));
            }
        }
        for secret in never {
            if stdout.contains(secret) {
                failures.push(format!("{name}: prints {secret:?}:\n{stdout}"));
            }
        }
        let wants_error = expects.iter().any(|e| e.severity == "error");
        let code = output.status.code();
        if code != Some(if wants_error { 1 } else { 0 }) {
            failures.push(format!(
                "{name}: exit {code:?} (error expected: {wants_error})\n{stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        // Nothing but the expected errors: each fixture shows its own class.
        let errors = stdout.lines().filter(|l| l.starts_with("error: ")).count();
        let expected_errors = expects.iter().filter(|e| e.severity == "error").count();
        if errors != expected_errors {
            failures.push(format!(
                "{name}: {errors} errors printed, {expected_errors} expected:\n{stdout}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_repository_wrangler_toml_passes_with_no_errors() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wrangler.toml");
    let output = cachefront_check(&config, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(!stdout.contains("error:"), "{stdout}");
    assert!(stdout.contains(": 0 errors"), "{stdout}");
}

#[test]
fn dev_vars_beside_the_file_supply_secrets_and_are_validated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("wrangler.toml");
    std::fs::write(
        &config,
        "[vars]\nORIGINS = '[{\"name\":\"web\",\"url\":\"http://127.0.0.1:3000\"}]'\n",
    )
    .expect("write");

    let without = String::from_utf8_lossy(&cachefront_check(&config, &[]).stdout).into_owned();
    assert!(
        without.contains("note: PURGE_TOKEN: ")
            && without.contains("wrangler secret put PURGE_TOKEN"),
        "{without}"
    );

    std::fs::write(dir.path().join(".dev.vars"), "PURGE_TOKEN=too-short\n").expect("write");
    let short = cachefront_check(&config, &[]);
    let stdout = String::from_utf8_lossy(&short.stdout);
    assert_eq!(short.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("error: PURGE_TOKEN: "), "{stdout}");
    assert!(!stdout.contains("too-short"), "never the secret: {stdout}");

    std::fs::write(
        dir.path().join(".dev.vars"),
        "# local secrets\nPURGE_TOKEN=\"purge-token-0123456789\"\n",
    )
    .expect("write");
    let good = cachefront_check(&config, &[]);
    let stdout = String::from_utf8_lossy(&good.stdout);
    assert!(good.status.success(), "{stdout}");
    assert!(
        !stdout.contains("PURGE_TOKEN"),
        "no note, no warning: {stdout}"
    );
}

#[test]
fn json_output_lists_the_problems_and_counts() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bad-configs/rules-missing-seconds.toml");
    let output = cachefront_check(&file, &["--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON document");
    assert_eq!(report["errors"], 2);
    assert_eq!(
        report["problems"][0]["path"],
        "CACHE_RULES[0] (blog).edge_ttl.seconds"
    );
    assert_eq!(report["problems"][0]["severity"], "error");
}

#[test]
fn a_missing_file_or_environment_is_a_usage_error() {
    let output = cachefront_check(Path::new("/nonexistent/wrangler.toml"), &[]);
    assert_eq!(output.status.code(), Some(2));
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wrangler.toml");
    let output = cachefront_check(&config, &["--env", "nowhere"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("[env.nowhere]"));
}
