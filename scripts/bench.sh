#!/usr/bin/env bash
# Slow tests and the benchmarks (tables printed, JSON saved under benchmarks/results/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/install.sh
"$PY" -m pytest -q --runslow -m slow "$@" || [ $? -eq 5 ]
for b in benchmarks/[!_]*.py; do
  echo "== $b"
  "$PY" "$b"
done
