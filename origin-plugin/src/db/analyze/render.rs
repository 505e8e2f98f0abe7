//! The human-readable report.

use std::fmt::Write;

use super::index_health::IndexHealth;
use super::{AnalyzerReport, QueryReport};
use crate::db::pool_sizing::PoolSizing;

/// The whole report as text: queries, index health, pool sizing.
pub fn render_text(report: &AnalyzerReport) -> String {
    let mut out = format!("PostgreSQL {}\n", report.server_version);
    for note in &report.sources {
        let _ = writeln!(out, "source {note}");
    }
    if !report.queries.is_empty() {
        out.push_str("\n== queries\n");
        out.push_str(&render_queries(&report.queries));
    }
    if let Some(health) = &report.index_health {
        out.push_str(&render_index_health(health));
    }
    if let Some(pool) = &report.pool {
        out.push_str(&render_pool(pool));
    }
    if let Some(health) = &report.db_health {
        out.push_str(&render_db_health(health));
    }
    out
}

/// The database health part of the report.
pub fn render_db_health(h: &super::db_health::DbHealth) -> String {
    let mut out = String::from("\n== database health\n");
    let pct =
        |r: Option<f64>| r.map_or_else(|| "n/a".to_owned(), |r| format!("{:.2} %", r * 100.0));
    let _ = writeln!(
        out,
        "cache hit: tables {}, indexes {}{}",
        pct(h.cache_hit.table_ratio),
        pct(h.cache_hit.index_ratio),
        if h.cache_hit.below_target {
            " (below target)"
        } else {
            ""
        }
    );
    for s in &h.long_running {
        let _ = writeln!(
            out,
            "long-running: pid {} ({}) active {:.0} s: {}",
            s.pid, s.user, s.query_secs, s.query
        );
    }
    for s in &h.idle_in_transaction {
        let _ = writeln!(
            out,
            "idle in transaction: pid {} ({}) for {:.0} s, last: {}",
            s.pid, s.user, s.state_secs, s.query
        );
    }
    for c in &h.blocking {
        let _ = writeln!(
            out,
            "blocking: pid {} ({}, {}) blocks {} session(s): {}",
            c.blocker.pid,
            c.blocker.state,
            c.blocker.user,
            c.waiting.len(),
            c.blocker.query
        );
        for w in &c.waiting {
            let _ = writeln!(
                out,
                "  waiting: pid {} for {:.0} s (on {:?}): {}",
                w.pid, w.query_secs, w.blocked_by, w.query
            );
        }
    }
    for b in &h.bloat {
        let _ = writeln!(
            out,
            "bloat: {} {} ~{} KiB wasted of {} KiB ({:.0} %)",
            b.kind,
            b.name,
            b.wasted_bytes / 1024,
            b.actual_bytes / 1024,
            b.ratio * 100.0
        );
    }
    for m in &h.maintenance {
        let last = m
            .last_secs
            .map_or_else(|| "never".to_owned(), |s| format!("{s:.0} s ago"));
        let _ = writeln!(
            out,
            "{} overdue: {} ({} rows vs trigger {}; last {})",
            m.due, m.table, m.count, m.trigger, last
        );
    }
    out
}

/// The per-query part of the report.
pub fn render_queries(reports: &[QueryReport]) -> String {
    let mut out = String::new();
    for (i, r) in reports.iter().enumerate() {
        let _ = write!(
            out,
            "query {} [{}]: {}\n  fingerprint {}",
            i + 1,
            r.source.as_str(),
            r.query,
            r.fingerprint
        );
        if let Some(mode) = r.plan_mode {
            let _ = write!(out, ", {}", mode.as_str());
        }
        if let Some(cost) = r.total_cost {
            let _ = write!(out, ", plan cost {cost:.2}");
        }
        if let Some(ms) = r.execution_ms {
            let _ = write!(out, ", ran in {ms:.1} ms (rolled back)");
        }
        if let (Some(calls), Some(total)) = (r.calls, r.total_ms) {
            let _ = write!(out, ", {calls} calls / {total:.1} ms total");
        }
        out.push('\n');
        for note in &r.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        if let Some(e) = &r.error {
            let _ = writeln!(out, "  error: {e}");
        }
        for f in &r.findings {
            let _ = writeln!(out, "  finding [{}]: {}", f.kind.as_str(), f.message);
        }
        for a in &r.index_advice {
            let _ = writeln!(
                out,
                "  advice: {}  -- HypoPG: cost {:.2} -> {:.2} (-{:.1}%)",
                a.create_index,
                a.cost_before,
                a.cost_after,
                a.cost_reduction * 100.0
            );
        }
        if r.error.is_none() && r.findings.is_empty() {
            out.push_str("  no findings\n");
        }
    }
    out
}

fn size(bytes: i64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.0} kB", b / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

fn render_index_health(h: &IndexHealth) -> String {
    let mut out = format!(
        "\n== index health (usage counted since {})\n",
        h.stats_reset
            .as_deref()
            .unwrap_or("the cluster started counting")
    );
    list(
        &mut out,
        "missing-index candidates",
        &h.missing_index_candidates,
        |c| format!("  {}", c.message),
    );
    list(
        &mut out,
        "duplicate / redundant indexes",
        &h.duplicate_indexes,
        |d| {
            format!(
                "  [{}] {} ({}) is covered by {}: {}",
                d.kind,
                d.index,
                size(d.size_bytes),
                d.covered_by,
                d.drop_statement
            )
        },
    );
    list(&mut out, "unused indexes", &h.unused_indexes, |u| {
        format!(
            "  {} on {}: {} scans, {}: {}",
            u.index,
            u.table,
            u.idx_scan,
            size(u.size_bytes),
            u.drop_statement
        )
    });
    list(&mut out, "invalid indexes", &h.invalid_indexes, |i| {
        format!(
            "  {} on {} ({}): {} then create it again (or REINDEX INDEX CONCURRENTLY)",
            i.index,
            i.table,
            size(i.size_bytes),
            i.drop_statement
        )
    });
    out
}

/// `title:` then one line per item, or `  none` when there is none.
fn list<T>(out: &mut String, title: &str, items: &[T], line: impl Fn(&T) -> String) {
    let _ = writeln!(out, "{title}:");
    for item in items {
        let _ = writeln!(out, "{}", line(item));
    }
    if items.is_empty() {
        out.push_str("  none\n");
    }
}

fn render_pool(p: &PoolSizing) -> String {
    let mut out = format!(
        "\n== pool sizing\nrecommended max_connections per instance: {} (budget {}",
        p.recommended_max_connections, p.per_instance_budget
    );
    if let Some(d) = p.demand {
        let _ = write!(out, ", demand {d}");
    }
    out.push_str(")\n");
    for r in &p.reasons {
        let _ = writeln!(out, "  - {r}");
    }
    for w in &p.warnings {
        let _ = writeln!(out, "  warning: {w}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(8192), "8 kB");
        assert_eq!(size(3 * 1024 * 1024 / 2), "1.5 MB");
    }

    #[test]
    fn index_health_lists_each_section_or_none() {
        use crate::db::analyze::index_health::{DuplicateIndex, UnusedIndex};
        let h = IndexHealth {
            stats_reset: Some("2026-01-01".into()),
            duplicate_indexes: vec![DuplicateIndex {
                kind: "duplicate",
                table: "public.t".into(),
                index: "t_a2".into(),
                definition: String::new(),
                covered_by: "t_a".into(),
                covered_by_definition: String::new(),
                size_bytes: 8192,
                drop_statement: "DROP INDEX t_a2;".into(),
            }],
            unused_indexes: vec![UnusedIndex {
                table: "public.t".into(),
                index: "t_b".into(),
                definition: String::new(),
                idx_scan: 0,
                size_bytes: 512,
                drop_statement: "DROP INDEX t_b;".into(),
            }],
            ..IndexHealth::default()
        };
        assert_eq!(
            render_index_health(&h),
            "\n== index health (usage counted since 2026-01-01)\n\
             missing-index candidates:\n  none\n\
             duplicate / redundant indexes:\n  [duplicate] t_a2 (8 kB) is covered by t_a: DROP INDEX t_a2;\n\
             unused indexes:\n  t_b on public.t: 0 scans, 512 B: DROP INDEX t_b;\n\
             invalid indexes:\n  none\n"
        );
    }
}
