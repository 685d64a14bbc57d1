"""End-to-end throughput of OnTheFlyGazeDataset: samples/s at 224 px with a per-stage breakdown.

Builds a procedural cache and a folder of synthetic background JPEGs in a temporary directory, then times whole
batches (pose sampling + camera + render (rasterize, vertex-colour texture, Phong light) + background compositing +
photometric jitter + labels) with the ``default`` appearance (50 % colour / 50 % image backgrounds, random light,
jitter). Reports the median over the timed batches (the machine may be shared: medians, not means) and saves
``benchmarks/results/dataset.json``.

    python benchmarks/dataset.py                 # batch 32 and 256, CPU
    python benchmarks/dataset.py --quick         # small and fast
    python benchmarks/dataset.py --device cuda --batch-sizes 256 1024
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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import save_json  # noqa: E402  (benchmarks/ is sys.path[0] for a script)

STAGES = ("sample", "camera", "render", "background", "jitter", "labels")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="batch 8 and 32, 2 timed batches, 32 frames")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default: 32 256")
    ap.add_argument("--repeats", type=int, default=None, help="timed batches per size (default 5; quick 2)")
    ap.add_argument("--frames", type=int, default=None, help="procedural frames in the cache (default 128)")
    ap.add_argument("--camera", default="xgaze224")
    ap.add_argument("--appearance", default="default")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--no-tune-malloc", dest="tune_malloc", action="store_false",
                    help="pass tune_malloc=False to the dataset (glibc's default allocator thresholds; on CPU the "
                         "dataset tunes them by default)")
    ap.add_argument("--cull", choices=("off", "on", "both"), default="off",
                    help="cull_backfaces: off (default), on, or both (interleaved in one run, for the ratio)")
    ap.add_argument("--cache", default=None, help="use this cache instead of building one")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "dataset.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = args.batch_sizes or ([8, 32] if args.quick else [32, 256])
    repeats = args.repeats or (2 if args.quick else 5)
    n_frames = args.frames or (32 if args.quick else 128)

    from onthefly.cache import build_cache
    from onthefly.dataset import OnTheFlyGazeDataset
    from onthefly.sources.procedural import ProceduralSource

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.cache:
            cache = Path(args.cache)
        else:
            cache = tmp / "proc.h5"
            t = time.perf_counter()
            build_cache(ProceduralSource(count=n_frames, seed=0, subjects=max(1, n_frames // 16)), cache)
            print(f"built {n_frames} procedural frames in {time.perf_counter() - t:.1f} s", flush=True)
        import cv2

        bg = tmp / "bg"
        bg.mkdir()
        rng = np.random.default_rng(0)
        for i in range(64):
            small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            cv2.imwrite(str(bg / f"{i:03d}.jpg"), cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC))
        rows = []
        culls = {"off": [False], "on": [True], "both": [False, True]}[args.cull]
        for B in sizes:
            dss, load_s = {}, {}
            for cull in culls:
                dss[cull] = OnTheFlyGazeDataset(cache, batch_size=B, seed=0, device=args.device, camera=args.camera,
                                                appearance=args.appearance, background_dir=bg,
                                                tune_malloc=args.tune_malloc, cull_backfaces=cull)
                t = time.perf_counter()
                dss[cull].batch(0)  # warm-up: loads the frames and the background pool
                load_s[cull] = time.perf_counter() - t
            timed = {cull: ([], [], []) for cull in culls}
            for r in range(repeats):  # interleaved, so both settings see the same machine load
                for cull, ds in dss.items():
                    totals, stages, cpu = timed[cull]
                    ds.stage_times = {}
                    t, c = time.perf_counter(), time.process_time()
                    ds.batch(r + 1)
                    if ds.device.type == "cuda":
                        torch.cuda.synchronize()
                    totals.append(time.perf_counter() - t)
                    cpu.append(time.process_time() - c)
                    stages.append(ds.stage_times)
            for cull in culls:
                totals, stages, cpu = timed[cull]
                med = statistics.median(totals)
                row = {"batch_size": B, "cull_backfaces": cull, "samples_per_s": B / med, "batch_s_median": med,
                       "batch_s": totals,
                       "cpu_s_median": statistics.median(cpu), "best_samples_per_s": B / min(totals),
                       "first_batch_s": load_s[cull],
                       "stages_s_median": {k: statistics.median(s.get(k, 0.0) for s in stages) for k in STAGES}}
                rows.append(row)
                print(f"batch {B}{' cull' if cull else ''}: {row['samples_per_s']:.1f} samples/s "
                      f"(best {row['best_samples_per_s']:.1f}; CPU {row['cpu_s_median']:.2f} s/batch)", flush=True)
    cam = args.camera
    print(f"\nOnTheFlyGazeDataset, {cam}, appearance {args.appearance!r}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, tune_malloc {args.tune_malloc and args.device == 'cpu'}, median of {repeats} batches")
    head = f"{'batch':>6} {'cull':>5} {'samples/s':>10} {'best/s':>8} {'batch s':>8} " + " ".join(f"{k:>10}" for k in STAGES)
    print(head)
    for r in rows:
        st = r["stages_s_median"]
        print(f"{r['batch_size']:>6} {'on' if r['cull_backfaces'] else 'off':>5} {r['samples_per_s']:>10.1f} "
              f"{r['best_samples_per_s']:>8.1f} "
              f"{r['batch_s_median']:>8.3f} "
              + " ".join(f"{st[k]:>10.4f}" for k in STAGES))
    result = {"camera": cam, "appearance": args.appearance, "device": args.device,
              "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
              "torch": torch.__version__, "tune_malloc": args.tune_malloc, "threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(),
              "frames": n_frames if not args.cache else None, "repeats": repeats, "quick": args.quick,
              "results": rows, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    save_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
