#!/usr/bin/env python3
"""A loopback stand-in for Cloudflare's Workers Analytics Engine SQL API (stdlib only).

    python3 docs/ops/edge/analytics_engine_standin.py --account ID --token T \
        [--dataset cachefront] --port-file FILE

It checks every request the way Cloudflare documents the API
(developers.cloudflare.com/analytics/analytics-engine/sql-api/):
  - POST to /client/v4/accounts/<account_id>/analytics_engine/sql,
  - `Authorization: Bearer <token>`,
  - the SQL query as the request body,
and answers in the documented `FORMAT JSON` shape: {"meta": [...], "data": [...], "rows": n}.
The SQL must be exactly the query `cachefront edge-exporter` sends for a time window
(cli/src/edge_metrics.rs `window_sql`), with whole-second bounds, start < end.
Anything else is refused (401 / 404 / 405 / 400, Cloudflare's error envelope) and counted;
GET /__standin/stats answers {"accepted": n, "rejected": m, "last_rejection": "..."}.

The rows are fixed: each accepted query returns the same small mix of hits by tier,
misses, a stale answer, an origin 5xx and a purge call, with quoted (string) and plain
numbers mixed, as ClickHouse-style JSON may quote 64-bit integers.
"""
import argparse
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROWS = [
    # cache, tier, origin, status_class, purge, requests, worker_ms, origin_ms
    ("hit", "memory", "", "2xx", 0, "600", 600.0, 0),
    ("hit", "edge", "", "2xx", 0, 200, 1000.0, 0),
    ("asset", "assets", "", "2xx", 0, 100, 300.0, 0),
    ("miss", "origin", "primary", "2xx", 0, "80", 4400.0, "4000"),
    ("stale", "edge", "", "2xx", 0, 5, 20.0, 0),
    ("error", "origin", "primary", "5xx", 0, 4, 8000.0, 7600.0),
    ("bypass", "origin", "", "2xx", 1, "2", 30.0, 0),
]


def expected_sql(dataset):
    return re.compile(
        r"SELECT blob1 AS cache, blob2 AS tier, blob3 AS origin, blob4 AS status_class, "
        r"if\(blob6 = '/__cachefront/purge', 1, 0\) AS purge, "
        r"SUM\(_sample_interval\) AS requests, "
        r"SUM\(_sample_interval \* double2\) AS worker_ms, "
        r"SUM\(_sample_interval \* double3\) AS origin_ms "
        rf"FROM {re.escape(dataset)} "
        r"WHERE timestamp >= toDateTime\((\d+)\) AND timestamp < toDateTime\((\d+)\) "
        r"GROUP BY cache, tier, origin, status_class, purge "
        r"FORMAT JSON"
    )


def answer_body():
    names = ["cache", "tier", "origin", "status_class", "purge", "requests", "worker_ms", "origin_ms"]
    types = ["String", "String", "String", "String", "UInt8", "UInt64", "Float64", "Float64"]
    return {
        "meta": [{"name": n, "type": t} for n, t in zip(names, types)],
        "data": [dict(zip(names, row)) for row in ROWS],
        "rows": len(ROWS),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--account", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--dataset", default="cachefront")
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    path = f"/client/v4/accounts/{args.account}/analytics_engine/sql"
    sql = expected_sql(args.dataset)
    stats = {"accepted": 0, "rejected": 0, "last_rejection": None}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def send_json(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def refuse(self, status, message):
            stats["rejected"] += 1
            stats["last_rejection"] = message
            print(f"standin: refused: {message}", file=sys.stderr, flush=True)
            self.send_json(status, {"success": False, "errors": [{"code": status, "message": message}]})

        def do_GET(self):
            if self.path == "/__standin/stats":
                return self.send_json(200, stats)
            return self.refuse(405, f"GET {self.path}: the SQL API takes POST")

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            if self.path != path:
                return self.refuse(404, f"unexpected path {self.path!r}, want {path!r}")
            if self.headers.get("Authorization") != f"Bearer {args.token}":
                return self.refuse(401, "Authentication error: missing or wrong bearer token")
            m = sql.fullmatch(body.strip())
            if not m:
                return self.refuse(400, f"unexpected SQL: {body!r}")
            start, end = int(m.group(1)), int(m.group(2))
            if not start < end:
                return self.refuse(400, f"empty or reversed window [{start}, {end})")
            stats["accepted"] += 1
            return self.send_json(200, answer_body())

        def do_PUT(self):
            self.refuse(405, "the SQL API takes POST")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(args.port_file, "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
