#!/usr/bin/env bash
# `make test`: Rust unit tests and #[pg_test]s (cargo pgrx test, on a cluster pgrx starts), then the
# end-to-end tests (pytest) on a cluster of our own started with the extension preloaded.
# Every server started here is stopped on exit, pass or fail.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
STACK="$ROOT/.stack"
export PGRX_HOME="$STACK/pgrx"
PG_CONFIG="$STACK/pg/bin/pg_config"
RUN_USER="${RUN_USER:-ragbench}"
export RAGBENCH_MODEL_DIR="$("$PG_CONFIG" --sharedir)/ragbench/all-MiniLM-L6-v2"
export RAGBENCH_MPNET_DIR="$("$PG_CONFIG" --sharedir)/ragbench/all-mpnet-base-v2"

TEST_PGDATA="$STACK/test-pgdata"
export E2E_PGDATA="$STACK/e2e-pgdata"
export E2E_PGPORT="${E2E_PGPORT:-55418}"

cleanup() {
  for d in "$TEST_PGDATA" "$E2E_PGDATA"; do
    if [ -f "$d/postmaster.pid" ]; then
      sudo -u "$RUN_USER" "$STACK/pg/bin/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
    fi
  done
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
started=$(date +%s)

# The tests install the extension into the same PostgreSQL as `make start`; replacing ragbench.so under a
# running cluster that preloads it crashes that cluster (SIGBUS). Stop it first; `make start` brings it back.
if [ -f "$ROOT/.pgdata/postmaster.pid" ]; then
  echo "stopping the local cluster (make start) while the tests reinstall the extension"
  bash "$ROOT/scripts/cluster.sh" stop || true
fi

step "Core crate unit tests (cargo test -p ragbench-core --release)"
cargo test -p ragbench-core --release

step "Extension unit tests and #[pg_test] (cargo pgrx test --release)"
rm -rf "$TEST_PGDATA"
install -d -o "$RUN_USER" "$TEST_PGDATA"   # pgrx creates the cluster below it as $RUN_USER
cargo pgrx test --release pg17 --runas "$RUN_USER" --pgdata "$TEST_PGDATA"

step "end-to-end tests (pytest, cluster with shared_preload_libraries = 'ragbench, pg_search')"
cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null
rm -rf "$E2E_PGDATA" "$E2E_PGDATA.log"
"$STACK/venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit tests/e2e

echo "make test: all green in $(( $(date +%s) - started )) s"
