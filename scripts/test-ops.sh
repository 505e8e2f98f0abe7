#!/usr/bin/env bash
# Operations checks (issue 9): Prometheus config and alert rules, rule unit tests,
# Alertmanager config and routing, the edge exporter against an Analytics Engine
# stand-in, Grafana dashboards, runbook links, and the PostgreSQL restore drill. Every check runs (a failure does not stop the others);
# the last line is exactly `ops: N passed, M failed` and the exit status is non-zero
# when M > 0.
#
#   bash scripts/with-postgres.sh bash scripts/test-ops.sh
#
# Without DATABASE_URL the drill starts its own throwaway cluster through
# scripts/with-postgres.sh. Missing tools are installed with apt (Debian packages
# `prometheus` for promtool, `prometheus-alertmanager` for amtool).
set -uo pipefail
cd "$(dirname "$0")/.."

OPS=docs/ops
passed=0
failed=0
failures=()

need() {  # need COMMAND DEBIAN_PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "ops: $1 missing, installing Debian package $2" >&2
  local sudo=()
  [[ "$(id -u)" -eq 0 ]] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq >&2 \
    && "${sudo[@]}" apt-get install -y -q --no-install-recommends "$2" >&2
  command -v "$1" >/dev/null 2>&1
}

check() {  # check NAME COMMAND...
  local name="$1"; shift
  printf '\n=== ops: %s\n' "$name"
  if "$@"; then
    passed=$((passed + 1))
    echo "--- ok: $name"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "--- FAILED: $name"
  fi
}

route_is() {  # route_is EXPECTED_RECEIVERS LABEL=VALUE...
  local want="$1"; shift
  amtool config routes test --config.file="$OPS/alertmanager/alertmanager.yml" \
    --verify.receivers="$want" "$@" 2>/dev/null
}

runbook_links() {
  python3 - "$OPS" <<'PY'
import glob, re, sys
ops = sys.argv[1]
text = open(f"{ops}/runbooks.md", encoding="utf-8").read()
def slug(h):  # GitHub's heading anchors
    h = re.sub(r"[^\w\- ]", "", h.strip().lower())
    return h.replace(" ", "-")
anchors = {slug(m) for m in re.findall(r"^#{1,6}\s+(.*?)\s*$", text, re.M)}
anchors |= set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
bad, n, alerts = [], 0, set()
for path in glob.glob(f"{ops}/prometheus/rules/*.yml"):
    rules = open(path, encoding="utf-8").read()
    alerts |= set(re.findall(r"^\s*- alert:\s*(\S+)", rules, re.M))
    for url in re.findall(r'runbook_url:\s*"?([^"\s]+)', rules):
        n += 1
        if "/docs/ops/runbooks.md#" not in url:
            bad.append(f"{path}: runbook_url {url} does not point into docs/ops/runbooks.md")
        elif url.split("#", 1)[1] not in anchors:
            bad.append(f"{path}: anchor #{url.split('#', 1)[1]} not in runbooks.md")
for a in sorted(alerts):  # every alert has its own section
    if a.lower() not in anchors:
        bad.append(f"alert {a} has no section in runbooks.md")
for b in bad:
    print("runbooks:", b)
print(f"runbooks: {n} runbook_url links, {len(alerts)} alerts, {len(bad)} problems")
sys.exit(1 if bad else 0)
PY
}

# The edge exporter, for real: `cachefront edge-exporter` queries a loopback stand-in
# of the Workers Analytics Engine SQL API (docs/ops/edge/analytics_engine_standin.py,
# which checks method, path, bearer token and SQL as Cloudflare documents them), and
# its served /metrics is linted by promtool and handed to the Grafana validator, so
# dashboards and rules may only use edge metrics the exporter really serves.
EDGE_DIR="$(mktemp -d)"
EDGE_METRICS="$EDGE_DIR/edge-metrics.prom"
EDGE_ACCOUNT=0123456789abcdef0123456789abcdef
EDGE_TOKEN=ops-test-analytics-read-token
edge_pids=()
cleanup_edge() {
  for pid in "${edge_pids[@]}"; do kill "$pid" 2>/dev/null; done
  rm -rf "$EDGE_DIR"
}
trap cleanup_edge EXIT

edge_standin() {  # starts the stand-in; sets EDGE_PORT (not in $(...): it would wait for it)
  rm -f "$EDGE_DIR/port"
  python3 "$OPS/edge/analytics_engine_standin.py" --account "$EDGE_ACCOUNT" --token "$EDGE_TOKEN" \
    --port-file "$EDGE_DIR/port" >/dev/null 2>>"$EDGE_DIR/standin.log" &
  edge_pids+=($!)
  for _ in $(seq 50); do [[ -s "$EDGE_DIR/port" ]] && break; sleep 0.1; done
  EDGE_PORT="$(cat "$EDGE_DIR/port" 2>/dev/null)"
  [[ -n "$EDGE_PORT" ]] || { echo "edge: the stand-in did not start" >&2; return 1; }
}

edge_exporter_bin() {
  cargo build -q -p cachefront-cli >&2 || return 1
  echo "${CARGO_TARGET_DIR:-target}/debug/cachefront"
}

edge_exporter_scrape() {
  local bin port address="" stats
  bin="$(edge_exporter_bin)" || return 1
  edge_standin || return 1
  port="$EDGE_PORT"
  CF_API_TOKEN="$EDGE_TOKEN" "$bin" edge-exporter --account-id "$EDGE_ACCOUNT" \
    --api-base "http://127.0.0.1:$port/client/v4" --listen 127.0.0.1:0 \
    --interval 1 --lag 0 --backfill 60 >/dev/null 2>"$EDGE_DIR/exporter.log" &
  local exporter=$!
  edge_pids+=("$exporter")
  for _ in $(seq 100); do
    address="$(sed -n 's|.*serving http://\([^/]*\)/metrics.*|\1|p' "$EDGE_DIR/exporter.log")"
    [[ -n "$address" ]] && break; sleep 0.1
  done
  [[ -n "$address" ]] || { cat "$EDGE_DIR/exporter.log" >&2; return 1; }
  # Two successful queries: the counters are summed over windows, not replaced.
  for _ in $(seq 100); do
    curl -fsS "http://$address/metrics" >"$EDGE_METRICS" 2>/dev/null \
      && grep -qx 'cachefront_edge_exporter_up 1' "$EDGE_METRICS" \
      && grep -Eq '^cachefront_edge_exporter_queries_total\{result="ok"\} ([2-9]|[1-9][0-9]+)$' "$EDGE_METRICS" \
      && break
    sleep 0.2
  done
  kill "$exporter" 2>/dev/null
  stats="$(curl -fsS "http://127.0.0.1:$port/__standin/stats")"
  echo "edge: stand-in $stats"
  cat "$EDGE_METRICS"
  python3 - "$EDGE_METRICS" "$stats" <<'PY' || return 1
import json, re, sys
text = open(sys.argv[1]).read()
stats = json.loads(sys.argv[2])
want = [
    r'cachefront_edge_exporter_up 1',
    r'cachefront_edge_requests_total\{cache="hit",tier="memory",status_class="2xx"\} [1-9]',
    r'cachefront_edge_requests_total\{cache="error",tier="origin",status_class="5xx"\} [1-9]',
    r'cachefront_edge_origin_requests_total\{origin="primary",status_class="5xx"\} [1-9]',
    r'cachefront_edge_origin_wait_seconds_total\{origin="primary"\} [1-9]',
    r'cachefront_edge_purge_requests_total\{status_class="2xx"\} [1-9]',
]
bad = [w for w in want if not re.search("^" + w, text, re.M)]
if stats["rejected"] or stats["accepted"] < 2:
    bad.append(f"the stand-in accepted {stats['accepted']} and refused {stats['rejected']} queries "
               f"(last refusal: {stats['last_rejection']})")
for b in bad:
    print("edge: missing or wrong:", b)
sys.exit(1 if bad else 0)
PY
  promtool check metrics <"$EDGE_METRICS"
}

edge_exporter_refused() {
  local bin port out code
  bin="$(edge_exporter_bin)" || return 1
  edge_standin || return 1
  port="$EDGE_PORT"
  out="$(CF_API_TOKEN=wrong-token "$bin" edge-exporter --once --account-id "$EDGE_ACCOUNT" \
    --api-base "http://127.0.0.1:$port/client/v4" --lag 0 --backfill 60 2>"$EDGE_DIR/refused.log")"
  code=$?
  cat "$EDGE_DIR/refused.log"
  [[ "$code" -eq 4 ]] && grep -qx 'cachefront_edge_exporter_up 0' <<<"$out" \
    && curl -fsS "http://127.0.0.1:$port/__standin/stats" | grep -q '"rejected": 1'
}

have_promtool=1; need promtool prometheus || have_promtool=""
have_amtool=1; need amtool prometheus-alertmanager || have_amtool=""
missing_tool() { echo "ops: $1 is not available" >&2; return 1; }

if [[ -n "$have_promtool" ]]; then
  check "promtool check config (prometheus.yml)" promtool check config "$OPS/prometheus/prometheus.yml"
  check "promtool check rules (alerting rules)" promtool check rules "$OPS"/prometheus/rules/*.yml
  check "promtool test rules (each alert fires on a bad series, quiet on a healthy one)" \
    promtool test rules "$OPS"/prometheus/tests/*.yml
else
  check "promtool" missing_tool promtool
fi

if [[ -n "$have_amtool" ]]; then
  check "amtool check-config (alertmanager.yml)" amtool check-config "$OPS/alertmanager/alertmanager.yml"
  check "alertmanager route: critical -> PagerDuty + Slack + escalation" \
    route_is pagerduty-oncall,slack-alerts,cachefront-escalation severity=critical alertname=CachefrontOriginDown instance=x
  check "alertmanager route: warning -> Slack + email" \
    route_is slack-alerts,ops-email severity=warning alertname=CachefrontOriginNotReady instance=x
  check "alertmanager route: no severity -> default email" \
    route_is ops-email alertname=Unlabelled
else
  check "amtool" missing_tool amtool
fi

check "runbook_url anchors exist in docs/ops/runbooks.md" runbook_links
check "grafana validator catches broken dashboards (self-test)" python3 "$OPS/grafana/validate.py" --self-test
if [[ -n "$have_promtool" ]]; then
  check "edge-exporter: real /metrics from the Analytics Engine stand-in, promtool check metrics" \
    edge_exporter_scrape
  check "edge-exporter: a refused query (wrong token) reports up 0 and exits 4" edge_exporter_refused
fi
check "grafana dashboards: JSON, PromQL parses, metric names exported (edge: from the real scrape)" \
  python3 "$OPS/grafana/validate.py" --edge-metrics "$EDGE_METRICS"
check "restore drill (backup -> drop -> restore into a fresh cluster -> verify)" \
  bash scripts/with-postgres.sh bash "$OPS/dr/drill.sh"

echo
for f in "${failures[@]}"; do echo "ops: FAILED: $f"; done
echo "ops: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
