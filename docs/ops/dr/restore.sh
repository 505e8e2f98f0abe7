#!/usr/bin/env bash
# Restore a pg_dump custom-format archive (docs/ops/dr/backup.sh) into a database that
# does not exist yet, on any cluster (docs/ops/disaster-recovery.md).
#
#   bash docs/ops/dr/restore.sh DUMP_FILE TARGET_DATABASE_URL [--owner]
#
# - verifies DUMP_FILE against DUMP_FILE.sha256 when that file exists;
# - creates the target database (connecting to the `postgres` maintenance database of
#   the same server) and refuses to touch one that already exists: restore into a
#   fresh name, check it, then switch the application's DATABASE_URL;
# - restores in a single transaction, stopping at the first error, so a failed restore
#   leaves an empty database, never a half-restored one;
# - by default --no-owner --no-privileges: objects belong to the connecting user, so
#   the restore works on a fresh cluster without the old roles. --owner keeps owners
#   and grants (restore the roles first from globals-*.sql);
# - runs ANALYZE afterwards (statistics are not part of a dump).
set -euo pipefail

if [[ $# -lt 2 ]]; then
  sed -n '2,17p' "$0" >&2
  exit 2
fi
dump="$1"
target="$2"
owner_opts=(--no-owner --no-privileges)
if [[ "${3:-}" == "--owner" ]]; then owner_opts=(); fi

[[ -r "$dump" ]] || { echo "restore: cannot read $dump" >&2; exit 1; }
if [[ -f "$dump.sha256" ]]; then
  (cd "$(dirname "$dump")" && sha256sum --check --quiet "$(basename "$dump").sha256") \
    || { echo "restore: checksum mismatch for $dump" >&2; exit 1; }
fi
pg_restore --list "$dump" >/dev/null

# postgres://user@host:port/dbname?params -> the database name and a URL to `postgres`.
if [[ ! "$target" =~ ^(postgres(ql)?://[^/]*)/([^?]+)(\?.*)?$ ]]; then
  echo "restore: TARGET_DATABASE_URL must look like postgres://user@host:port/dbname" >&2
  exit 2
fi
base="${BASH_REMATCH[1]}"
dbname="${BASH_REMATCH[3]}"
params="${BASH_REMATCH[4]:-}"
maint="$base/postgres$params"

# (psql variables are interpolated in scripts read from stdin, not in -c strings)
exists="$(psql "$maint" -X -A -t -v ON_ERROR_STOP=1 -v db="$dbname" \
  <<<"SELECT 1 FROM pg_database WHERE datname = :'db'")"
if [[ "$exists" == "1" ]]; then
  echo "restore: database $dbname already exists on the target; restore into a new name" >&2
  exit 1
fi
psql "$maint" -X -q -v ON_ERROR_STOP=1 -v db="$dbname" <<<'CREATE DATABASE :"db"'

start=$(date +%s)
pg_restore --dbname="$target" --no-password --exit-on-error --single-transaction \
  "${owner_opts[@]}" "$dump"
psql "$target" -X -q -v ON_ERROR_STOP=1 -c 'ANALYZE'
echo "restore: $dump -> $dbname in $(( $(date +%s) - start )) s" >&2
