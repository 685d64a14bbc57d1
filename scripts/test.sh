#!/usr/bin/env bash
# The test suite (CPU, a few minutes on 2 cores). Extra arguments go to pytest, e.g. `--device all`.
# pytest exits 5 when it collects no test: that fails this script too.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/install.sh
"$PY" -m pytest -q "$@"
