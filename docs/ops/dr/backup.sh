#!/usr/bin/env bash
# Logical backup of the origin's PostgreSQL database: pg_dump custom format (-Fc),
# compressed, restorable table by table with pg_restore (docs/ops/disaster-recovery.md).
#
#   bash docs/ops/dr/backup.sh [-d DATABASE_URL] [-o DIR] [--globals]
#
#   -d URL      database to dump (default: $DATABASE_URL, else libpq's PG* variables)
#   -o DIR      where to write (default: ./backups); created if missing
#   --globals   also dump roles and tablespaces (pg_dumpall --globals-only; needs a
#               superuser) - a custom-format dump does not contain them
#
# Writes DIR/<db>-<UTC timestamp>.dump and a .sha256 next to it, checks the archive
# is readable (pg_restore --list), and prints the dump's path on stdout (last line).
# Exit status non-zero on any failure; a partial file is removed.
set -euo pipefail

url="${DATABASE_URL:-}"
out="./backups"
globals=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -d) url="$2"; shift 2 ;;
    -o) out="$2"; shift 2 ;;
    --globals) globals=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "backup: unknown argument $1" >&2; exit 2 ;;
  esac
done

conn=()
if [[ -n "$url" ]]; then conn=(--dbname="$url"); fi

db="$(psql "${conn[@]}" -X -A -t -v ON_ERROR_STOP=1 -c 'SELECT current_database()')"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
file="$out/$db-$stamp.dump"
tmp="$file.partial"
trap 'rm -f "$tmp"' EXIT

# --no-password: never prompt (use ~/.pgpass or PGPASSFILE for credentials).
pg_dump "${conn[@]}" --no-password --format=custom --compress=6 --file="$tmp"
pg_restore --list "$tmp" >/dev/null     # the archive's table of contents is readable
mv "$tmp" "$file"
(cd "$out" && sha256sum "$(basename "$file")" > "$(basename "$file").sha256")

if [[ -n "$globals" ]]; then
  pg_dumpall "${conn[@]}" --no-password --globals-only --file="$out/globals-$stamp.sql"
fi

echo "backup: $db -> $file ($(stat -c %s "$file") bytes)" >&2
echo "$file"
