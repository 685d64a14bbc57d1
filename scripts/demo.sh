#!/usr/bin/env bash
# The main job on the embedded default data (procedural heads): set up, then run `onthefly demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/install.sh
"$PY" -m onthefly demo --out out/demo "$@"
