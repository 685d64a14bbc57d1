#!/usr/bin/env python
"""End-to-end OnTheFlyGazeDataset throughput: ``onthefly bench --what dataset`` (see onthefly/benchmark.py),
results saved to ``benchmarks/results/dataset.json``.

Procedural cache and synthetic background JPEGs in a temporary folder; whole batches (pose sampling, camera,
render, background compositing, photometric jitter, labels) at 224 px with the ``default`` appearance, for every CPU
render backend (batches interleaved), medians, the per-stage breakdown and the peak RSS.

    python benchmarks/dataset.py                          # the issue's figure: batch 32
    python benchmarks/dataset.py --dataset-batches 32 256
    python benchmarks/dataset.py --device cuda            # batch 256
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from onthefly.commands.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--what", "dataset", *sys.argv[1:]],
                  default_out=str(ROOT / "benchmarks" / "results" / "dataset.json")))
