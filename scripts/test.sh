#!/usr/bin/env bash
# The checks (ruff, the import check, mypy), then the test suite (CPU, a few minutes on 2 cores). Extra arguments go
# to pytest, e.g. `--device all`.
# pytest exits 5 when it collects no test: that fails this script too.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# the reconstruction extra too, so the dlib landmark and face-alignment loading tests run instead of skipping
EXTRAS=test,reconstruct bash scripts/install.sh
# PyTorch3D has no Linux wheel on PyPI; a CI machine may provide one in ../shared/wheels/ (built for one Python and
# one torch). Install it when it fits the running interpreter and torch, so backend="pytorch3d" and its parity tests
# run instead of skipping; a user's clone has no ../shared and skips cleanly.
WHEELS=../shared/wheels
if ls "$WHEELS"/pytorch3d-*.whl >/dev/null 2>&1 && ! "$PY" -c "import pytorch3d" >/dev/null 2>&1; then
  for whl in "$WHEELS"/pytorch3d-*.whl; do
    if "$PY" - "$whl" "$WHEELS/README.md" <<'PYEOF'
import re, sys, torch
try:
    from packaging.tags import sys_tags
except ImportError:
    sys.exit(1)
whl, readme = sys.argv[1], sys.argv[2]
tags = whl.rsplit("/", 1)[-1][:-4].split("-")[-3:]  # python tag, abi tag, platform tag
ok = any(t.interpreter == tags[0] and t.abi == tags[1] and t.platform == tags[2] for t in sys_tags())
try:  # the README names the torch the wheel was built against ("against `torch==X`")
    m = re.search(r"against `torch==([^`+]+)", open(readme).read())
    ok = ok and (m is None or torch.__version__.split("+")[0] == m.group(1))
except OSError:
    pass
sys.exit(0 if ok else 1)
PYEOF
    then
      echo "onthefly: installing $whl (PyTorch3D for the pytorch3d backend tests)"
      "$PY" -m pip install --disable-pip-version-check -q --no-deps "$whl" && \
        "$PY" -m pip install --disable-pip-version-check -q iopath
    else
      echo "onthefly: $whl does not fit this Python/torch, PyTorch3D tests will skip"
    fi
  done
fi
# habits: lint + import order (ruff.toml), import cycles / layers / lazy imports, types of the core (mypy.ini)
"$PY" -m ruff check .
"$PY" scripts/check_imports.py
"$PY" -m mypy
"$PY" -m pytest -q "$@"
