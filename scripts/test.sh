#!/usr/bin/env bash
# The test suite (CPU, a few minutes on 2 cores). Extra arguments go to pytest, e.g. `--device all`.
# pytest exits 5 when it collects no test: that fails this script too.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# the reconstruction extra too, so the dlib landmark and face-alignment loading tests run instead of skipping
EXTRAS=test,reconstruct bash scripts/install.sh
"$PY" -m pytest -q "$@"
