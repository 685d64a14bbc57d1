#!/usr/bin/env bash
# Install onthefly and what it needs into the active Python (a venv if one is active).
# torch is installed only when missing, and then as torch==2.13.0 (a CPU build where one is available).
# EXTRAS (default "test") picks the optional dependency groups of setup.py, e.g. EXTRAS=test,reconstruct.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "onthefly: torch not found, installing torch==2.13.0"
  "$PY" -m pip install --disable-pip-version-check "torch==2.13.0"
fi
"$PY" -m pip install --disable-pip-version-check -q -e ".[${EXTRAS:-test}]"
