#!/usr/bin/env bash
# The main job on the embedded default data (procedural heads): set up, then the training demo end to end:
# build the procedural mesh cache, train a gaze CNN on on-the-fly batches, report the held-out angular error
# (last line `held-out angular error: X.XX deg`) and write out/train-demo/predictions.png + learning_curve.png.
# Extra arguments go to `python -m onthefly.train demo` (e.g. --max-epochs 2). Budgeted in steps, on 2 torch threads:
# the result does not depend on the machine's load (a busy machine only takes longer).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
bash scripts/install.sh
"$PY" -m onthefly.train demo --out out/train-demo "$@"
