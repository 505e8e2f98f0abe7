//! The shipped database dashboard shows the catalog example: the example runs against a
//! real PostgreSQL under load, its `/metrics` is scraped twice, the samples become the
//! input series of a `promtool test rules` case, and each query panel's own PromQL
//! (read from docs/ops/grafana/dashboards/cachefront-origin-db.json) must evaluate to a
//! non-empty result in real Prometheus code.
#![cfg(feature = "full")]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{http, spawn_example};

const DASHBOARD: &str = include_str!("../../docs/ops/grafana/dashboards/cachefront-origin-db.json");

/// Panels fed by the query capture and the request metrics of the catalog.
const PANELS: [&str; 7] = [
    "Queries per second by route",
    "Query duration p99 by route",
    "Queries per request by route",
    "N+1 warnings per minute by route",
    "Slow queries per minute by fingerprint",
    "Query capture active",
    "p99 latency by route",
];

fn panel_expr(dashboard: &serde_json::Value, title: &str) -> String {
    let panel = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("the dashboard has no panel {title:?}"));
    panel["targets"][0]["expr"]
        .as_str()
        .expect("expr")
        .replace("$__rate_interval", "2m")
        .replace("$job", ".*")
        .replace("$instance", ".*")
        .replace("$pool", ".*")
}

/// `name{labels}` → value, for the plugin's own samples of a Prometheus text scrape.
fn samples(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| l.starts_with("cachefront_origin_"))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(_, v)| v.parse::<f64>().is_ok_and(f64::is_finite))
        .map(|(s, v)| (s.to_owned(), v.to_owned()))
        .collect()
}

fn yaml_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn load(client: &reqwest::Client, base: &str) {
    for i in 0..20 {
        let path = match i % 4 {
            0 => "/".to_owned(),
            1 => format!("/api/products/{}/similar", 1 + i % 3),
            _ => format!("/products/{}", 1 + i % 5),
        };
        let res = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect(&path);
        assert_eq!(res.status(), 200, "{path}");
    }
}

async fn scrape(client: &reqwest::Client, admin: &str) -> String {
    support::get(client, format!("{admin}/metrics"))
        .await
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_dashboard_panels_show_data_from_the_catalog_under_load() {
    let Some(database_url) = support::database_url() else {
        return;
    };
    let Some(promtool) = support::promtool() else {
        return;
    };
    // Every query counts as slow, so the slow-query panel has data too.
    let (_child, addrs) = spawn_example(
        "catalog",
        &[("DATABASE_URL", &database_url), ("SLOW_QUERY_MS", "0")],
    );
    let base = format!("http://{}", addrs.public);
    let admin = format!("http://{}", addrs.admin);
    let client = http();
    let deadline = Instant::now() + Duration::from_secs(60);
    while support::get(&client, format!("{base}/readyz"))
        .await
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "catalog never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    load(&client, &base).await;
    let first = samples(&scrape(&client, &admin).await);
    load(&client, &base).await;
    let second = samples(&scrape(&client, &admin).await);
    assert!(!second.is_empty());

    // Two scrapes one minute apart (promtool's clock), as Prometheus would store them.
    let mut test = String::from(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n",
    );
    for (series, value) in &second {
        let before = first.get(series).map_or("_", String::as_str);
        let _ = writeln!(
            test,
            "      - series: {}\n        values: '{before} {value}'",
            yaml_quote(series)
        );
    }
    test.push_str("    promql_expr_test:\n");
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("dashboard JSON");
    let mut checks: Vec<String> = PANELS
        .iter()
        .map(|title| format!("count({}) > bool 0", panel_expr(&dashboard, title)))
        .collect();
    // The N+1 panel names the catalog's deliberately naive route.
    checks.push(format!(
        "count(({}) and on(route) cachefront_origin_db_n_plus_one_total{{route=\"/api/products/{{id}}/similar\"}}) > bool 0",
        panel_expr(&dashboard, "N+1 warnings per minute by route")
    ));
    for expr in &checks {
        let _ = writeln!(
            test,
            "      - expr: {}\n        eval_time: 1m\n        exp_samples:\n          - labels: '{{}}'\n            value: 1",
            yaml_quote(expr)
        );
    }

    let dir = std::env::temp_dir().join(format!("cachefront-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("rules.yml"), "groups: []\n").expect("rules");
    std::fs::write(dir.join("test.yml"), &test).expect("test file");
    let out = Command::new(&promtool)
        .args(["test", "rules", "test.yml"])
        .current_dir(&dir)
        .output()
        .expect("run promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "a dashboard panel has no data from the catalog:\n{report}\nchecks:\n{}",
        checks.join("\n")
    );
}
