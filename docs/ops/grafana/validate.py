#!/usr/bin/env python3
"""Validate the Grafana dashboards and provisioning under docs/ops/grafana/ (stdlib only).

    python3 docs/ops/grafana/validate.py [--edge-metrics FILE] [--self-test]

Checks:
  1. every dashboards/*.json parses as JSON and has a uid, a title and panels, with
     unique uids across files and unique panel ids within a dashboard;
  2. every PromQL expression (panel targets, annotation queries, and the metric selector
     inside `label_values(...)` / `query_result(...)` variable queries) parses: they are
     written, with Grafana's variables replaced by legal values, into a temporary rules
     file with one recording rule each, and `promtool check rules` parses them;
  3. every metric name the expressions reference is one the origin plugin exports: the
     constants of `pub mod names` in origin-plugin/src/metrics/mod.rs, plus the `process_*`
     metrics, with `_bucket`/`_sum`/`_count` allowed on histograms, and the series
     Prometheus itself makes (`up`, `ALERTS`); and every `cachefront_edge_*` name is one
     the edge exporter really serves: FILE is a scrape of `cachefront edge-exporter`'s
     /metrics (scripts/test-ops.sh runs the exporter against an Analytics Engine
     stand-in and passes its output here); without FILE such names are errors;
  4. the provisioning YAML files exist and name the expected keys (apiVersion,
     datasources / providers).
Also checks the metric names used by the alerting rules (prometheus/rules/*.yml).
The database-query metrics of issue 8 are allowed as PENDING (a note, not an error)
while metrics/mod.rs does not list them yet; see PENDING below.

--self-test runs the checks on broken fixtures and fails unless each is caught.
Exit status 0 when everything passes, 1 otherwise.
"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
METRICS_RS = os.path.join(ROOT, "origin-plugin", "src", "metrics", "mod.rs")
PLUGIN_DOC = os.path.join(ROOT, "docs", "origin-plugin.md")

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMETHEUS_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE"}
# Metrics of issue 8 (database query capture). While origin-plugin/src/metrics/mod.rs does
# not list them yet, they are reported as PENDING notes instead of errors; once listed
# they are checked like every other name (histogram suffixes included).
PENDING = {
    "cachefront_origin_db_n_plus_one_total": "issue 8 (N+1 detection)",
    "cachefront_origin_db_queries_total": "issue 8 (query capture)",
    "cachefront_origin_db_query_duration_seconds_bucket": "issue 8 (query capture)",
}

KEYWORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
    "quantile", "count_values", "group", "by", "without", "on", "ignoring",
    "group_left", "group_right", "and", "or", "unless", "bool", "offset", "inf",
    "nan", "atan2", "start", "end",
}


def exported_names():
    """Metric names from `pub mod names` in metrics/mod.rs and in every other
    plugin module that exports its own (memory/mod.rs), and histograms, from the doc."""
    src = open(METRICS_RS, encoding="utf-8").read()
    m = re.search(r"pub mod names \{(.*?)\n\}", src, re.S)
    if not m:
        raise SystemExit(f"validate: no `pub mod names` block in {METRICS_RS}")
    names = set(re.findall(r'pub const \w+: &str =\s*"([^"]+)"', m.group(1)))
    plugin_src = os.path.join(ROOT, "origin-plugin", "src")
    for path in glob.glob(os.path.join(plugin_src, "**", "*.rs"), recursive=True):
        if os.path.samefile(path, METRICS_RS):
            continue
        other = re.search(r"pub mod names \{(.*?)\n\}", open(path, encoding="utf-8").read(), re.S)
        if other:
            names |= set(re.findall(r'pub const \w+: &str =\s*"([^"]+)"', other.group(1)))
    if not names:
        raise SystemExit(f"validate: no names found in {METRICS_RS}")
    histograms = {n for n in names if n.endswith("_seconds")}
    # The doc's table says which are histograms; prefer it when it is there.
    if os.path.exists(PLUGIN_DOC):
        doc = open(PLUGIN_DOC, encoding="utf-8").read()
        histograms |= set(re.findall(r"^\| `([a-z_:]+)` \| histogram \|", doc, re.M))
    return names, histograms


def substitute_grafana_vars(expr):
    """Grafana template variables -> legal PromQL with the same structure."""
    expr = re.sub(r"\$__rate_interval|\$\{__rate_interval\}", "5m", expr)
    expr = re.sub(r"\$__interval|\$\{__interval\}|\$__range|\$\{__range\}", "1m", expr)
    expr = re.sub(r"\$__range_s|\$__interval_ms", "60", expr)
    # Any other variable is a label value inside a matcher string.
    expr = re.sub(r"\$\{[A-Za-z0-9_]+(:[a-z]+)?\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[A-Za-z0-9_]+\]\]", "x", expr)
    return expr


def metric_names_in(expr):
    """Metric names referenced by a PromQL expression (a lexer-level approximation)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    s = re.sub(r"#[^\n]*", "", s)                                                # comments
    s = re.sub(r"\{[^{}]*\}", "{}", s)                                            # matchers
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)
    s = re.sub(r"\[[^\]]*\]", "[]", s)                                            # ranges
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w(])(?!\s*\()", s):
        tok = m.group(1)
        if tok.lower() in KEYWORDS:
            continue
        # durations such as 5m are excluded by the lookbehind; numbers by the first char
        names.add(tok)
    return names


def edge_names_in(text):
    """Metric names of a Prometheus text exposition (TYPE lines and samples)."""
    names = set(re.findall(r"^# TYPE ([A-Za-z_:][A-Za-z0-9_:]*) ", text, re.M))
    names |= set(re.findall(r"^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]", text, re.M))
    return names


def check_name(name, names, histograms, pending=None, edge=None):
    if name.startswith("cachefront_edge_"):
        if edge is None:
            return (f"edge metric {name!r} cannot be checked: pass --edge-metrics with a scrape "
                    "of `cachefront edge-exporter` (scripts/test-ops.sh does)")
        if name in edge:
            return None
        return f"unknown metric {name!r} (not served by cachefront edge-exporter /metrics)"
    if name in names or name in PROMETHEUS_SERIES or name.startswith("process_"):
        return None
    for suf in HISTOGRAM_SUFFIXES:
        if name.endswith(suf) and name[: -len(suf)] in histograms:
            return None
    if pending and name in pending:
        return f"PENDING {name}: {pending[name]}"
    return f"unknown metric {name!r} (not in any `pub mod names` of origin-plugin/src)"


def walk_panels(panels):
    for p in panels or []:
        yield p
        yield from walk_panels(p.get("panels"))


def variable_exprs(var):
    q = var.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    if not isinstance(q, str) or var.get("type") != "query":
        return []
    m = re.match(r"^\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", q, re.S)
    if m:
        return [m.group(1)]
    m = re.match(r"^\s*label_values\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", q)
    if m:
        return []
    m = re.match(r"^\s*(?:query_result|metrics)\((.*)\)\s*$", q, re.S)
    if m:
        return [m.group(1)]
    return [q]


def collect_dashboard(path, errors):
    """[(where, expr)] of one dashboard; appends structural errors."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        errors.append(f"{path}: not valid JSON: {e}")
        return None, []
    for key in ("uid", "title", "panels"):
        if not d.get(key):
            errors.append(f"{path}: missing {key!r}")
    exprs = []
    ids = set()
    for p in walk_panels(d.get("panels")):
        pid = p.get("id")
        if pid in ids:
            errors.append(f"{path}: duplicate panel id {pid}")
        ids.add(pid)
        if p.get("type") != "row" and not p.get("targets"):
            errors.append(f"{path}: panel {p.get('title')!r} has no targets")
        for t in p.get("targets") or []:
            if not t.get("expr"):
                errors.append(f"{path}: panel {p.get('title')!r} target {t.get('refId')} has no expr")
                continue
            exprs.append((f"{os.path.basename(path)} panel {p.get('title')!r} {t.get('refId')}", t["expr"]))
    for a in (d.get("annotations") or {}).get("list", []):
        if a.get("expr"):
            exprs.append((f"{os.path.basename(path)} annotation {a.get('name')!r}", a["expr"]))
    for v in (d.get("templating") or {}).get("list", []):
        for e in variable_exprs(v):
            exprs.append((f"{os.path.basename(path)} variable {v.get('name')!r}", e))
    return d.get("uid"), exprs


def promtool_parse(exprs, errors):
    """Parse every expression with promtool (one recording rule each)."""
    if not exprs:
        return
    lines = ["groups:", "  - name: grafana-exprs", "    rules:"]
    for i, (_, e) in enumerate(exprs):
        lines.append(f"      - record: grafana:expr_{i}")
        lines.append(f"        expr: {json.dumps(substitute_grafana_vars(e))}")
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        tmp = f.name
    try:
        r = subprocess.run(["promtool", "check", "rules", tmp], capture_output=True, text=True)
    finally:
        os.unlink(tmp)
    if r.returncode != 0:
        out = r.stdout + r.stderr
        # Name the failing expressions: promtool reports "group ..., rule N, ...".
        bad = {int(n) for n in re.findall(r"rule (\d+)", out)}
        for n in sorted(bad):
            if 1 <= n <= len(exprs):
                where, e = exprs[n - 1]
                errors.append(f"{where}: PromQL does not parse: {e}")
        if not bad:
            errors.append("promtool check rules failed on the dashboard expressions:\n" + out)


def rule_exprs(paths):
    out = []
    for path in paths:
        text = open(path, encoding="utf-8").read()
        # Block scalars (`expr: |`) and one-line exprs, without a YAML library.
        for m in re.finditer(r"^(\s*)expr:\s*\|[-+]?\n((?:\1\s+.*\n|\s*\n)+)|^\s*expr:\s*(\S.*)$", text, re.M):
            e = m.group(2) if m.group(2) is not None else m.group(3)
            out.append((os.path.basename(path), e))
    return out


def validate(dash_dir, prov_dir, rules_glob, log=print, edge=None):
    errors, notes = [], []
    names, histograms = exported_names()
    files = sorted(glob.glob(os.path.join(dash_dir, "*.json")))
    if not files:
        errors.append(f"no dashboards in {dash_dir}")
    all_exprs, uids = [], {}
    for path in files:
        uid, exprs = collect_dashboard(path, errors)
        if uid in uids:
            errors.append(f"{path}: uid {uid!r} also used by {uids[uid]}")
        uids[uid] = path
        all_exprs += exprs
    promtool_parse(all_exprs, errors)
    for where, e in all_exprs:
        for n in sorted(metric_names_in(substitute_grafana_vars(e))):
            msg = check_name(n, names, histograms, PENDING, edge)
            if msg and msg.startswith("PENDING"):
                notes.append(f"{where}: {msg}")
            elif msg:
                errors.append(f"{where}: {msg}")
    for where, e in rule_exprs(sorted(glob.glob(rules_glob))):
        for n in sorted(metric_names_in(e)):
            msg = check_name(n, names, histograms, PENDING, edge)
            if msg and msg.startswith("PENDING"):
                notes.append(f"{where}: {msg}")
            elif msg:
                errors.append(f"{where}: {msg}")
    for sub, key in (("datasources", "datasources:"), ("dashboards", "providers:")):
        ymls = glob.glob(os.path.join(prov_dir, sub, "*.yml")) + glob.glob(os.path.join(prov_dir, sub, "*.yaml"))
        if not ymls:
            errors.append(f"no provisioning file in {os.path.join(prov_dir, sub)}")
        for y in ymls:
            t = open(y, encoding="utf-8").read()
            if not re.search(r"^apiVersion:\s*1\s*$", t, re.M) or not re.search(rf"^{key}", t, re.M):
                errors.append(f"{y}: needs apiVersion: 1 and {key}")
    for n in sorted(set(notes)):
        log(f"grafana-validate: note: {n}")
    for e in errors:
        log(f"grafana-validate: FAIL {e}")
    log(f"grafana-validate: {len(files)} dashboards, {len(all_exprs)} expressions, "
        f"{len(errors)} errors")
    return not errors


def self_test():
    """Each broken fixture must be caught."""
    good = {"uid": "t", "title": "t", "panels": [{"id": 1, "type": "timeseries", "title": "p",
            "targets": [{"refId": "A", "expr": "sum(rate(cachefront_origin_http_requests_total[$__rate_interval]))"}]}]}
    cases = {
        "valid dashboard": (json.dumps(good), True),
        "not JSON": ("{\"uid\": ", False),
        "PromQL syntax error": (json.dumps({**good, "panels": [{**good["panels"][0], "targets": [{"refId": "A", "expr": "sum(rate(cachefront_origin_http_requests_total[5m])"}]}]}), False),
        "unknown metric": (json.dumps({**good, "panels": [{**good["panels"][0], "targets": [{"refId": "A", "expr": "rate(cachefront_origin_no_such_metric_total[5m])"}]}]}), False),
        "bad histogram suffix": (json.dumps({**good, "panels": [{**good["panels"][0], "targets": [{"refId": "A", "expr": "rate(cachefront_origin_http_requests_total_bucket[5m])"}]}]}), False),
        "edge metric the exporter serves": (json.dumps({**good, "panels": [{**good["panels"][0], "targets": [{"refId": "A", "expr": "sum(rate(cachefront_edge_requests_total[5m]))"}]}]}), True),
        "edge metric the exporter does not serve": (json.dumps({**good, "panels": [{**good["panels"][0], "targets": [{"refId": "A", "expr": "sum(rate(cachefront_edge_no_such_total[5m]))"}]}]}), False),
    }
    edge = edge_names_in("# TYPE cachefront_edge_requests_total counter\n"
                         'cachefront_edge_requests_total{cache="hit"} 1\n')
    ok = True
    prov = os.path.join(HERE, "provisioning")
    for name, (text, want) in cases.items():
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "x.json"), "w").write(text)
            got = validate(d, prov, os.path.join(d, "none-*.yml"), log=lambda *_: None, edge=edge)
        status = "ok" if got == want else "WRONG"
        ok &= got == want
        print(f"grafana-validate: self-test {name}: {'passes' if got else 'fails'} ({status})")
    return ok


def main():
    args = sys.argv[1:]
    if "--self-test" in args:
        return 0 if self_test() else 1
    edge = None
    if "--edge-metrics" in args:
        i = args.index("--edge-metrics")
        if i + 1 >= len(args):
            print("validate: --edge-metrics needs a file", file=sys.stderr)
            return 2
        with open(args[i + 1], encoding="utf-8") as f:
            edge = edge_names_in(f.read())
        if not any(n.startswith("cachefront_edge_") for n in edge):
            print(f"validate: {args[i + 1]} holds no cachefront_edge_* metrics", file=sys.stderr)
            return 1
    ok = validate(os.path.join(HERE, "dashboards"), os.path.join(HERE, "provisioning"),
                  os.path.join(HERE, "..", "prometheus", "rules", "*.yml"), edge=edge)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
