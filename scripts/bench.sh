#!/usr/bin/env bash
# Slow tests and the benchmarks (tables printed, JSON saved under benchmarks/results/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${EXTRAS:-test,bench} bash scripts/install.sh  # moderngl: the llvmpipe peer of benchmarks/render.py
# the peer needs an EGL/OpenGL driver (Debian/Ubuntu: apt-get install -y libegl-mesa0 libgl1-mesa-dri); without one
# the render benchmark says so and times the other renderers
"$PY" -m pytest -q --runslow -m slow "$@"  # exit 5 (no slow test collected) fails too
for b in benchmarks/[!_]*.py; do
  echo "== $b"
  "$PY" "$b"
done
