#!/usr/bin/env python
"""What the input checks cost, and what ``onthefly.checks.trusted()`` leaves of them on the hot path.

For each public function the dataset's batch calls, three variants are timed interleaved (every repeat runs each
variant ``--calls`` times; medians of ``--repeats`` reported, in microseconds per call):

* ``raw``: the bare computation, with no check at all: what the hot path ran before the one mechanism (the module's
  private twin, or the old ``camera.novel_view`` formula, written out here);
* ``trusted``: the public function inside ``with trusted():`` (the hot path now: metadata checks only);
* ``checked``: the public function outside it (a user's call: the value checks run too).

The ``hot path`` row is the sequence of these calls one batch of ``OnTheFlyGazeDataset`` makes (camera, gaze label,
jaw rotation, the target sampler's two rotations); ``prepare_inputs`` (the renderer's input checks) is timed on a
batch of ``--batch`` meshes of ``--verts`` vertices. The last line compares the hot path's ``trusted - raw`` to the
time of one dataset batch measured here (numba backend when available, ``--batch`` samples, 224 px).

    python benchmarks/checks.py                 # prints the table, saves benchmarks/results/checks.json
    python benchmarks/checks.py --quick
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import save_json  # noqa: E402  (benchmarks/ is sys.path[0] for a script)

from onthefly import geometry  # noqa: E402
from onthefly.camera import ViewTransform, view_from_head_pose  # noqa: E402
from onthefly.checks import trusted  # noqa: E402
from onthefly.render.fragments import prepare_inputs  # noqa: E402


def _old_novel_view(hR, c, target, distance):
    """camera.novel_view before the one mechanism (no checks), for the ``raw`` column."""
    V = geometry._pitchyaw_to_rotation(target) @ hR.transpose(-1, -2)
    t = -(V @ c[..., None])[..., 0]
    t[..., 2] = t[..., 2] + distance
    return ViewTransform(R=V, t=t, centre=c, distance=distance)


def cases(B: int, V: int) -> dict:
    g = torch.Generator().manual_seed(0)
    f64 = torch.float64
    hp = (torch.rand(B, 2, generator=g, dtype=f64) - 0.5)
    hR = torch.linalg.qr(torch.randn(B, 3, 3, generator=g, dtype=f64))[0]
    hR = hR * torch.linalg.det(hR)[:, None, None]
    c = torch.randn(B, 3, generator=g, dtype=f64) * 20 + torch.tensor([0.0, 0.0, 600.0], dtype=f64)
    gaze = geometry.pitchyaw_to_gaze(hp)
    verts = torch.randn(B, V, 3, generator=g) * 50 + torch.tensor([0.0, 0.0, 600.0])
    faces = torch.randint(0, V, (2 * V, 3), generator=g)
    K = torch.tensor([[960.0, 0, 111.5], [0, 960.0, 111.5], [0, 0, 1]]).expand(B, 3, 3)
    return {
        "view_from_head_pose": (lambda: _old_novel_view(hR, c, hp, 600.0),
                                lambda: view_from_head_pose(hp, c, 600.0, head_rotation=hR)),
        "gaze_to_pitchyaw": (lambda: geometry._gaze_to_pitchyaw(gaze), lambda: geometry.gaze_to_pitchyaw(gaze)),
        "pitchyaw_to_rotation": (lambda: geometry._pitchyaw_to_rotation(hp),
                                 lambda: geometry.pitchyaw_to_rotation(hp)),
        "prepare_inputs": (None, lambda: prepare_inputs(verts, faces, K, 224)),
    }


# the public calls one batch makes: camera, gaze label, jaw rotation, the sampler's source and target rotations
HOT_PATH = {"view_from_head_pose": 1, "gaze_to_pitchyaw": 1, "pitchyaw_to_rotation": 3}


def time_calls(fn, calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls * 1e6


def dataset_batch_ms(B: int, repeats: int) -> float:
    from onthefly.cache import build_cache
    from onthefly.dataset import OnTheFlyGazeDataset
    from onthefly.sources.procedural import ProceduralSource

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "proc.h5"
        build_cache(ProceduralSource(count=max(B, 32), seed=0, subjects=2), cache)
        ds = OnTheFlyGazeDataset(cache, batch_size=B, seed=0, appearance="default")
        ds.batch(0)
        times = []
        for i in range(repeats):
            t = time.perf_counter()
            ds.batch(i + 1)
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32, help="batch size (default 32, the dataset's CPU default)")
    ap.add_argument("--verts", type=int, default=20000, help="vertices per mesh for prepare_inputs (default 20000)")
    ap.add_argument("--calls", type=int, default=200, help="calls per variant per repeat (default 200)")
    ap.add_argument("--repeats", type=int, default=15, help="interleaved repeats (default 15)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--quick", action="store_true", help="5 repeats of 50 calls, 3 dataset batches")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "checks.json"), help="output JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.calls = 5, 50
    if args.threads:
        torch.set_num_threads(args.threads)
    cs = cases(args.batch, args.verts)
    times: dict[str, dict[str, list[float]]] = {k: {"raw": [], "trusted": [], "checked": []} for k in cs}
    for _ in range(args.repeats):
        for name, (raw, public) in cs.items():
            calls = max(5, args.calls // 20) if name == "prepare_inputs" else args.calls
            if raw is not None:
                times[name]["raw"].append(time_calls(raw, calls))
            with trusted():
                times[name]["trusted"].append(time_calls(public, calls))
            times[name]["checked"].append(time_calls(public, calls))
    med = {k: {v: (statistics.median(x) if x else None) for v, x in d.items()} for k, d in times.items()}
    hot = {v: sum(n * med[k][v] for k, n in HOT_PATH.items()) for v in ("raw", "trusted", "checked")}
    batch_ms = dataset_batch_ms(args.batch, 3 if args.quick else 7)
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    print(f"input checks, us per call (median of {args.repeats} interleaved repeats), batch {args.batch}, "
          f"torch threads {torch.get_num_threads()}, loadavg {load}")
    print(f"{'function':>22} {'raw':>9} {'trusted':>9} {'checked':>9}")
    for k, d in med.items():
        cells = " ".join(f"{'-' if d[v] is None else f'{d[v]:.1f}':>9}" for v in ("raw", "trusted", "checked"))
        print(f"{k:>22} {cells}")
    print(f"{'hot path (per batch)':>22} {hot['raw']:>9.1f} {hot['trusted']:>9.1f} {hot['checked']:>9.1f}")
    over = hot["trusted"] - hot["raw"]
    print(f"trusted - raw on the hot path: {over:.1f} us per batch = {over / (batch_ms * 1e3):.2e} of one dataset "
          f"batch ({batch_ms:.0f} ms, batch {args.batch}); the renderer's value checks that trusted() skips: "
          f"{med['prepare_inputs']['checked'] - med['prepare_inputs']['trusted']:.0f} us per batch")
    save_json(args.json, {"batch": args.batch, "verts": args.verts, "repeats": args.repeats, "calls": args.calls,
                          "torch_threads": torch.get_num_threads(), "loadavg": load,
                          "python": platform.python_version(), "torch": torch.__version__,
                          "us_per_call": med, "hot_path_calls": HOT_PATH, "hot_path_us": hot,
                          "dataset_batch_ms": batch_ms, "trusted_minus_raw_us_per_batch": over})
    return 0


if __name__ == "__main__":
    sys.exit(main())
