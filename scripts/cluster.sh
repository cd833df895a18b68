#!/usr/bin/env bash
# A local PostgreSQL cluster for ragbench: start | stop | status | url.
# Data directory inside the project (PGDATA), fixed non-default port (PGPORT), run by an unprivileged
# user (RUN_USER, since PostgreSQL refuses root), with `shared_preload_libraries = 'ragbench, pg_search'`
# and the extension created (or updated) in database $DB.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PG_BIN="${PG_BIN:-$ROOT/.stack/pg/bin}"
PGDATA="${PGDATA:-$ROOT/.pgdata}"
PGPORT="${PGPORT:-55417}"
RUN_USER="${RUN_USER:-ragbench}"
DB="${DB:-ragbench}"
PSQL="${PSQL:-/usr/lib/postgresql/15/bin/psql}"
EXTRA_CONF="${EXTRA_CONF:-}"
LOG="$PGDATA/../$(basename "$PGDATA").log"

as_user() {
  if [ "$(id -u)" = 0 ]; then sudo -u "$RUN_USER" -- "$@"; else "$@"; fi
}
url() { echo "postgresql://$RUN_USER@127.0.0.1:$PGPORT/$DB"; }

case "${1:-}" in
  start)
    if [ ! -f "$PGDATA/PG_VERSION" ]; then
      mkdir -p "$PGDATA"
      [ "$(id -u)" = 0 ] && chown "$RUN_USER" "$PGDATA"
      chmod 700 "$PGDATA"
      as_user "$PG_BIN/initdb" -D "$PGDATA" -U "$RUN_USER" --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
      cat >> "$PGDATA/postgresql.conf" <<CONF
# --- ragbench ---
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '/tmp'
shared_preload_libraries = 'ragbench, pg_search'
rag.worker_databases = '$DB'
max_worker_processes = 16
$EXTRA_CONF
CONF
    fi
    touch "$LOG"; [ "$(id -u)" = 0 ] && chown "$RUN_USER" "$LOG"
    # The library is preloaded: a newer build only takes effect after a restart.
    lib="$("$PG_BIN/pg_config" --pkglibdir)/ragbench.so"
    if [ -f "$PGDATA/postmaster.pid" ] && [ "$lib" -nt "$PGDATA/postmaster.pid" ]; then
      as_user "$PG_BIN/pg_ctl" -D "$PGDATA" -w -t 60 -m fast stop >/dev/null || true
    fi
    if ! as_user "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
      as_user "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$LOG" -w -t 60 start >/dev/null || { tail -n 30 "$LOG" >&2; exit 1; }
    fi
    "$PSQL" -qAtX "postgresql://$RUN_USER@127.0.0.1:$PGPORT/postgres" \
      -c "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 ||
      "$PSQL" -qX "postgresql://$RUN_USER@127.0.0.1:$PGPORT/postgres" -c "CREATE DATABASE $DB" >/dev/null
    "$PSQL" -qX -v ON_ERROR_STOP=1 "$(url)" >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS ragbench CASCADE;
ALTER EXTENSION ragbench UPDATE;
SQL
    ;;
  stop)
    if [ -f "$PGDATA/PG_VERSION" ] && as_user "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
      as_user "$PG_BIN/pg_ctl" -D "$PGDATA" -w -t 60 -m "${STOP_MODE:-fast}" stop >/dev/null
    fi
    ;;
  status) as_user "$PG_BIN/pg_ctl" -D "$PGDATA" status ;;
  url) url ;;
  *) echo "usage: $0 start|stop|status|url" >&2; exit 2 ;;
esac
