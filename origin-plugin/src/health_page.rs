//! The admin listener's `/status`: the readiness report as one small HTML page for
//! humans (no script, no external asset; every value escaped — errors carry driver text).

use std::fmt::Write as _;

use super::ReadinessReport;
use crate::html::escape;

/// The page for `report`.
pub(super) fn render(report: &ReadinessReport) -> String {
    let mut rows = String::new();
    for (name, check) in &report.checks {
        let class = match (check.status, check.severity) {
            ("ok", _) => "ok",
            (_, "warn") => "warn",
            _ => "fail",
        };
        let _ = write!(
            rows,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{:.1} ms</td><td>{}</td></tr>",
            escape(name),
            check.severity,
            check.status,
            check.duration_ms,
            escape(check.error.as_deref().unwrap_or("")),
        );
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=\"5\">no checks registered</td></tr>");
    }
    let summary = if report.warnings.is_empty() {
        String::new()
    } else {
        format!("<p>warnings: {}</p>", escape(&report.warnings.join(", ")))
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>status: {status}</title>\
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.ok td:nth-child(3){{color:#070}}\
.warn td:nth-child(3){{color:#a60}}.fail td:nth-child(3){{color:#b00;font-weight:bold}}</style></head>\
<body><h1>{status}</h1>{summary}<table><tr><th>check</th><th>severity</th><th>status</th>\
<th>took</th><th>error</th></tr>{rows}</table>\
<p>JSON: <a href=\"readyz\">readyz</a></p></body></html>",
        status = report.status,
    )
}
