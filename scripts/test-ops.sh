#!/usr/bin/env bash
# Operations checks (issue 9): Prometheus config and alert rules, rule unit tests,
# Alertmanager config and routing, Grafana dashboards, runbook links, and the
# PostgreSQL restore drill. Every check runs (a failure does not stop the others);
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
check "grafana dashboards: JSON, PromQL parses, metric names exported" python3 "$OPS/grafana/validate.py"
check "restore drill (backup -> drop -> restore into a fresh cluster -> verify)" \
  bash scripts/with-postgres.sh bash "$OPS/dr/drill.sh"

echo
for f in "${failures[@]}"; do echo "ops: FAILED: $f"; done
echo "ops: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
