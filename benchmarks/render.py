#!/usr/bin/env python
"""Renderer throughput against the peers: ``onthefly bench --what render`` (see onthefly/commands/bench.py and
onthefly/benchmark.py), results saved to ``benchmarks/results/render.json``.

onthefly's render (raster + Phong, vertex colours) for every CPU backend (numba, torch), the moderngl/EGL
llvmpipe peer (one draw per view, pixels and gl_PrimitiveID face ids read back) and PyTorch3D's MeshRenderer when
importable, on the reference scene's 40k-face mesh and the same views, interleaved; the ratios are printed.

    python benchmarks/render.py                       # the issue's figures: batch 8, 224 and 448 px
    python benchmarks/render.py --quick               # 224 px, 3 repeats, no PyTorch3D
    python benchmarks/render.py --batches 1 8 32 256 --meshes 40k 150k --no-peers
    python benchmarks/render.py --device cuda         # batch 256
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from onthefly.commands.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["--what", "render", *sys.argv[1:]], default_out=str(ROOT / "benchmarks" / "results" / "render.json")))
