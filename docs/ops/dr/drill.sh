#!/usr/bin/env bash
# Restore drill (a test): load data, back up with backup.sh, destroy the database,
# restore with restore.sh into a FRESH cluster, verify every row and every sequence.
#
#   bash scripts/with-postgres.sh bash docs/ops/dr/drill.sh      (scripts/test-ops.sh runs it)
#
# Needs what scripts/with-postgres.sh exports: DATABASE_URL / PGHOST PGPORT PGUSER (the
# source cluster) and PG_BINDIR (initdb, pg_ctl for the second cluster, started as the
# `postgres` system user when run as root, like with-postgres.sh does).
# DRILL_PRODUCTS / DRILL_ORDERS set the data size (default 5000 / 3000 rows).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

: "${DATABASE_URL:?drill: run it under scripts/with-postgres.sh (DATABASE_URL unset)}"
: "${PG_BINDIR:?drill: PG_BINDIR unset (scripts/with-postgres.sh exports it)}"
products="${DRILL_PRODUCTS:-5000}"
orders="${DRILL_ORDERS:-3000}"
db="cachefront_drill"

src_base="${DATABASE_URL%/*}"          # postgres://cachefront@127.0.0.1:PORT
src_url="$src_base/$db"

work="$(mktemp -d /tmp/cachefront-drill.XXXXXX)"
chmod 755 "$work"
runas=()
if [[ "$(id -u)" -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  if command -v runuser >/dev/null 2>&1; then runas=(runuser -u postgres --); else runas=(setpriv --reuid=postgres --regid=postgres --init-groups); fi
fi
pgdir="$work/pg"                  # owned by the cluster's user
mkdir -p "$pgdir"
chmod 755 "$pgdir"
if [[ "$(id -u)" -eq 0 ]]; then chown postgres "$pgdir"; fi
pgdata="$pgdir/data"

cleanup() {
  local rc=$?
  if [[ -f "$pgdata/postmaster.pid" ]]; then
    "${runas[@]}" "$PG_BINDIR/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  psql "$src_base/postgres" -X -q -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT

say() { echo "drill: $*" >&2; }
fail() { echo "drill: FAIL: $*" >&2; exit 1; }

# ---- 1. load ---------------------------------------------------------------------------
PGOPTIONS='-c client_min_messages=warning' psql "$src_base/postgres" -X -q -v ON_ERROR_STOP=1 \
  -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql "$src_url" -X -q -v ON_ERROR_STOP=1 -v products="$products" -v orders="$orders" >/dev/null <<'SQL'
CREATE TABLE products (
  id          bigserial PRIMARY KEY,
  sku         text NOT NULL UNIQUE,
  name        text NOT NULL,
  price_cents integer NOT NULL CHECK (price_cents >= 0),
  attrs       jsonb NOT NULL DEFAULT '{}',
  tags        text[] NOT NULL DEFAULT '{}',
  updated_at  timestamptz NOT NULL
);
CREATE SEQUENCE order_number_seq START 100000 INCREMENT 7;
CREATE TABLE orders (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  number      bigint NOT NULL DEFAULT nextval('order_number_seq') UNIQUE,
  product_id  bigint NOT NULL REFERENCES products(id),
  quantity    integer NOT NULL,
  note        text,
  placed_at   timestamptz NOT NULL
);
CREATE INDEX orders_product_idx ON orders (product_id);
CREATE VIEW product_sales AS
  SELECT p.id, p.sku, sum(o.quantity) AS units FROM products p JOIN orders o ON o.product_id = p.id GROUP BY p.id, p.sku;

INSERT INTO products (sku, name, price_cents, attrs, tags, updated_at)
SELECT 'SKU-' || lpad(g::text, 6, '0'),
       'Product ' || g || CASE WHEN g % 97 = 0 THEN E' with \'quotes\', tabs\tand ünïcödé' ELSE '' END,
       (g * 137) % 100000,
       jsonb_build_object('colour', (ARRAY['red','green','blue'])[1 + g % 3], 'weight_g', g % 5000),
       ARRAY['product:' || g, 'cat:' || (g % 20)],
       timestamptz '2026-01-01 00:00:00+00' + g * interval '37 seconds'
FROM generate_series(1, :products) AS g;
-- a gap in the id sequence (deleted rows) and a sequence ahead of max(id)
DELETE FROM products WHERE id % 500 = 0 AND id NOT IN (SELECT 1);
SELECT nextval('products_id_seq') FROM generate_series(1, 3);

INSERT INTO orders (product_id, quantity, note, placed_at)
SELECT 1 + (g * 7919) % :products - CASE WHEN (1 + (g * 7919) % :products) % 500 = 0 THEN 1 ELSE 0 END,
       1 + g % 9,
       CASE WHEN g % 11 = 0 THEN NULL ELSE 'order ' || g END,
       timestamptz '2026-06-01 00:00:00+00' + g * interval '1 minute'
FROM generate_series(1, :orders) AS g;
SQL

# A fingerprint of everything that must survive: per table the row count and an md5 over
# every row in primary-key order; per sequence its last_value and is_called.
fingerprint() {
  psql "$1" -X -A -t -v ON_ERROR_STOP=1 <<'SQL'
SELECT 'products ' || count(*) || ' ' || md5(coalesce(string_agg(p::text, E'\n' ORDER BY id), '')) FROM products p;
SELECT 'orders ' || count(*) || ' ' || md5(coalesce(string_agg(o::text, E'\n' ORDER BY id), '')) FROM orders o;
SELECT 'product_sales ' || count(*) || ' ' || md5(coalesce(string_agg(s::text, E'\n' ORDER BY id), '')) FROM product_sales s;
SELECT 'sequence ' || sequencename || ' ' || coalesce(last_value::text, 'null') FROM pg_sequences WHERE schemaname = 'public' ORDER BY sequencename;
SELECT 'seqstate products_id_seq ' || last_value || ' ' || is_called FROM products_id_seq;
SELECT 'seqstate order_number_seq ' || last_value || ' ' || is_called FROM order_number_seq;
SELECT 'seqstate orders_id_seq ' || last_value || ' ' || is_called FROM orders_id_seq;
SQL
}
before="$(fingerprint "$src_url")"
rows="$(psql "$src_url" -X -A -t -c 'SELECT (SELECT count(*) FROM products) + (SELECT count(*) FROM orders)')"
say "loaded $rows rows into $db (products, orders, a view, 3 sequences)"

# ---- 2. back up ------------------------------------------------------------------------
dump="$(bash "$here/backup.sh" -d "$src_url" -o "$work/backups" | tail -n 1)"
[[ -s "$dump" && -s "$dump.sha256" ]] || fail "backup.sh produced no dump"

# ---- 3. destroy ------------------------------------------------------------------------
psql "$src_base/postgres" -X -q -v ON_ERROR_STOP=1 -c "DROP DATABASE $db"
if psql "$src_url" -X -q -c 'SELECT 1' >/dev/null 2>&1; then fail "database still reachable after DROP"; fi
say "dropped $db on the source cluster"

# ---- 4. a fresh cluster ----------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
"${runas[@]}" "$PG_BINDIR/initdb" -D "$pgdata" -U cachefront --auth=trust -E UTF8 --locale=C.UTF-8 >"$work/initdb.log" 2>&1 \
  || "${runas[@]}" "$PG_BINDIR/initdb" -D "$pgdata" -U cachefront --auth=trust -E UTF8 --no-locale >"$work/initdb.log" 2>&1 \
  || { cat "$work/initdb.log" >&2; fail "initdb of the fresh cluster"; }
started=""
for _ in 1 2 3 4 5; do
  port2="$(free_port)"
  if "${runas[@]}" "$PG_BINDIR/pg_ctl" -D "$pgdata" -l "$pgdir/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $port2 -k $pgdir -c fsync=off" start >/dev/null 2>&1; then
    started=1; break
  fi
done
[[ -n "$started" ]] || { cat "$pgdir/server.log" >&2; fail "fresh cluster did not start"; }
dst_url="postgres://cachefront@127.0.0.1:$port2/$db"
say "fresh cluster on port $port2"

# ---- 5. restore ------------------------------------------------------------------------
t0=$(date +%s%N)
bash "$here/restore.sh" "$dump" "$dst_url"
t1=$(date +%s%N)
# restore.sh must refuse to overwrite an existing database
if bash "$here/restore.sh" "$dump" "$dst_url" 2>/dev/null; then fail "restore.sh overwrote an existing database"; fi

# ---- 6. verify -------------------------------------------------------------------------
after="$(fingerprint "$dst_url")"
if [[ "$before" != "$after" ]]; then
  diff <(echo "$before") <(echo "$after") >&2 || true
  fail "restored data differs from the original"
fi
# The sequences continue where they were: the next values do not collide.
next="$(psql "$dst_url" -X -A -t -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO products (sku, name, price_cents, updated_at) VALUES ('SKU-NEW', 'new', 1, now()) RETURNING id;
SQL
)"
next="$(echo "$next" | head -n 1)"
expect="$(echo "$before" | awk '$1 == "seqstate" && $2 == "products_id_seq" {print $3 + 1}')"
[[ "$next" == "$expect" ]] || fail "products_id_seq continued at $next, expected $expect"
num="$(psql "$dst_url" -X -A -t -v ON_ERROR_STOP=1 -c "SELECT nextval('order_number_seq')")"
expect_num="$(echo "$before" | awk '$1 == "seqstate" && $2 == "order_number_seq" {print $3 + 7}')"
[[ "$num" == "$expect_num" ]] || fail "order_number_seq continued at $num, expected $expect_num"
fk="$(psql "$dst_url" -X -A -t -c "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'orders'::regclass")"
[[ "$fk" == "1" ]] || fail "foreign key missing after restore"

echo "$before" | sed 's/^/drill:   /' >&2
say "OK: $rows rows and 3 sequences identical after backup -> drop -> restore into a fresh cluster (restore took $(( (t1 - t0) / 1000000 )) ms)"
