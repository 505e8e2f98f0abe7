#!/usr/bin/env bash
# Run a command with DATABASE_URL pointing at a real PostgreSQL.
#
#   bash scripts/with-postgres.sh CMD [ARGS...]
#
# If DATABASE_URL is already set, CMD runs as is. Otherwise a throwaway cluster is
# created (initdb into a temp dir, as the `postgres` system user when run as root),
# listening only on 127.0.0.1 at a free port with its socket in the temp dir, a database
# `cachefront` is created, and CMD runs with these exported:
#   DATABASE_URL   postgres://cachefront@127.0.0.1:PORT/cachefront
#   PGHOST PGPORT PGUSER PGDATABASE   for psql & co.
#   PG_BINDIR      the server binaries (initdb, pg_ctl) - tests start their own clusters with it
# The cluster is stopped and its directory removed on exit, whatever happens; CMD's exit
# code is propagated. Extensions packaged for the server (e.g. hypopg) can be created
# later with CREATE EXTENSION: the cluster user is a superuser. When the server ships
# pg_stat_statements (Debian's postgresql-15 does), it is preloaded
# (shared_preload_libraries), so `CREATE EXTENSION pg_stat_statements` works; nothing else
# changes for callers that do not create it.
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi

if [[ -n "${DATABASE_URL:-}" ]]; then
  exec "$@"
fi

find_bindir() {
  if [[ -n "${PG_BINDIR:-}" && -x "$PG_BINDIR/initdb" ]]; then echo "$PG_BINDIR"; return; fi
  if command -v pg_config >/dev/null 2>&1; then
    local d; d="$(pg_config --bindir)"
    if [[ -x "$d/initdb" ]]; then echo "$d"; return; fi
  fi
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$d/initdb" ]]; then echo "$d"; return; fi
  done
  if command -v initdb >/dev/null 2>&1; then dirname "$(command -v initdb)"; return; fi
  return 1
}

PG_BINDIR="$(find_bindir)" || {
  echo "with-postgres: PostgreSQL server binaries not found (apt-get install postgresql)" >&2
  exit 127
}
export PG_BINDIR

# A port nobody listens on right now.
free_port() {
  python3 - <<'PY' 2>/dev/null && return
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
  local p
  for p in $(seq 55432 55532); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  return 1
}

PGTMP="$(mktemp -d /tmp/cachefront-pg.XXXXXX)"
chmod 755 "$PGTMP"
RUNAS=()
if [[ "$(id -u)" -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  chown postgres "$PGTMP"
  if command -v runuser >/dev/null 2>&1; then RUNAS=(runuser -u postgres --); else RUNAS=(setpriv --reuid=postgres --regid=postgres --init-groups); fi
fi
PGDATA_DIR="$PGTMP/data"

cleanup() {
  local rc=$?
  if [[ -f "$PGDATA_DIR/postmaster.pid" ]]; then
    "${RUNAS[@]}" "$PG_BINDIR/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$PGTMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${RUNAS[@]}" "$PG_BINDIR/initdb" -D "$PGDATA_DIR" -U cachefront --auth=trust -E UTF8 --locale=C.UTF-8 >"$PGTMP/initdb.log" 2>&1 \
  || "${RUNAS[@]}" "$PG_BINDIR/initdb" -D "$PGDATA_DIR" -U cachefront --auth=trust -E UTF8 --no-locale >"$PGTMP/initdb.log" 2>&1 \
  || { cat "$PGTMP/initdb.log" >&2; exit 1; }

# pg_stat_statements must be preloaded to collect anything; only ask for it when present.
PRELOAD=""
PKGLIBDIR="$("$PG_BINDIR/pg_config" --pkglibdir 2>/dev/null || true)"
if [[ -z "$PKGLIBDIR" ]]; then PKGLIBDIR="$(dirname "$PG_BINDIR")/lib"; fi
if [[ -f "$PKGLIBDIR/pg_stat_statements.so" ]]; then
  PRELOAD="-c shared_preload_libraries=pg_stat_statements"
fi

started=""
for attempt in 1 2 3 4 5; do
  pg_port="$(free_port)"
  if "${RUNAS[@]}" "$PG_BINDIR/pg_ctl" -D "$PGDATA_DIR" -l "$PGTMP/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $PGTMP -c fsync=off -c synchronous_commit=off -c full_page_writes=off $PRELOAD" \
      start >/dev/null 2>&1; then
    started=1
    break
  fi
done
if [[ -z "$started" ]]; then
  echo "with-postgres: PostgreSQL did not start" >&2
  cat "$PGTMP/server.log" >&2 || true
  exit 1
fi

"$PG_BINDIR/createdb" -h 127.0.0.1 -p "$pg_port" -U cachefront cachefront

export PGHOST=127.0.0.1 PGPORT="$pg_port" PGUSER=cachefront PGDATABASE=cachefront
export DATABASE_URL="postgres://cachefront@127.0.0.1:$pg_port/cachefront"
echo "with-postgres: PostgreSQL $("$PG_BINDIR/postgres" --version | awk '{print $3}') at $DATABASE_URL" >&2

set +e
"$@"
rc=$?
set -e
exit "$rc"
