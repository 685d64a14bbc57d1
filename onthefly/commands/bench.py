"""``onthefly bench``: render and end-to-end dataset throughput on this machine, for every available backend and
peer renderer, with a progress bar, a table, the machine described and a JSON file.

``benchmarks/render.py`` and ``benchmarks/dataset.py`` in a clone are this command with ``--what render`` /
``--what dataset`` (and their results saved under ``benchmarks/results/``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

FIGURES = """figures of issue 14 (CPU, 2 cores): raster + shade of 40k faces, batch 8, 224 and 448 px: >= 2x the
llvmpipe peer (must reach 1.5x); OnTheFlyGazeDataset at 224 px, default appearance, batch 32: >= 150 samples/s
(must reach 120)"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Render and end-to-end dataset throughput on this machine, for every available backend and "
                     "peer renderer (moderngl/llvmpipe, PyTorch3D). Renderers are timed interleaved on the same scene "
                     "and views (each repeat runs every renderer once), medians reported; the machine's load is "
                     "recorded with the figures.")
    p.add_argument("--what", choices=("all", "render", "dataset"), default="all",
                   help="render throughput, end-to-end dataset throughput, or both (default)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch and numba; default: torch's)")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="render image sizes (default 224 448)")
    p.add_argument("--batches", type=int, nargs="+", default=None,
                   help="render batch sizes (default 8 on the CPU, 256 on CUDA)")
    p.add_argument("--meshes", nargs="+", default=["40k"], choices=("40k", "150k"), help="meshes (default 40k)")
    p.add_argument("--dataset-batches", "--batch-sizes", dest="dataset_batches", type=int, nargs="+", default=None,
                   help="dataset batch sizes (default 32 on the CPU, 256 on CUDA)")
    p.add_argument("--cull", choices=("off", "on", "both"), default="off",
                   help="the dataset's cull_backfaces: off (default), on, or both (interleaved, for the ratio)")
    p.add_argument("--frames", type=int, default=128, help="procedural frames in the dataset's cache (default 128)")
    p.add_argument("--camera", default="xgaze224", help="the dataset's normalized camera (default xgaze224)")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved timed repeats (median reported; default 5, 3 with --quick)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    p.add_argument("--backends", nargs="+", default=None,
                   help="onthefly render backends to time (default: every one available on the device, e.g. numba "
                        "torch on the CPU)")
    p.add_argument("--no-peers", action="store_true", help="time onthefly's backends only (no moderngl/pytorch3d)")
    p.add_argument("--quick", action="store_true", help="224 px only, 3 repeats, no PyTorch3D peer")
    p.add_argument("--json", dest="out", default="onthefly-bench.json",
                   help="write the results here (default onthefly-bench.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-tune-malloc", dest="tune_malloc", action="store_false",
                   help="keep glibc's default allocator thresholds (by default the CPU benchmark calls "
                        "onthefly.render.tune_malloc(), as OnTheFlyGazeDataset does on the CPU)")


def run(args) -> int:
    import torch

    from .. import benchmark as bm

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available here")
    if args.threads and args.threads != torch.get_num_threads():
        torch.set_num_threads(args.threads)
    cuda = dev.type == "cuda"
    tuned = False
    if not cuda and args.tune_malloc:
        from ..render import tune_malloc

        tuned = tune_malloc()
    sizes = args.sizes or ([224] if args.quick else [224, 448])
    batches = args.batches or ([256] if cuda else [8])
    repeats = args.repeats if args.repeats is not None else 3 if args.quick else 5
    print("machine:", json.dumps({**bm.machine_info(dev), "tune_malloc": tuned}))
    out = {}
    if args.what in ("all", "render"):
        res = bm.bench_render(dev, sizes, batches, args.meshes, repeats, args.warmup, peers=not args.no_peers,
                              progress=not args.no_progress, pytorch3d=not args.quick, backends=args.backends)
        bm.print_render(res)
        out["render"] = res
    if args.what in ("all", "dataset"):
        res = bm.bench_dataset(dev, args.dataset_batches or ([256] if cuda else [32]), repeats, frames=args.frames,
                               camera=args.camera, backends=args.backends, progress=not args.no_progress,
                               culls={"off": (False,), "on": (True,), "both": (False, True)}[args.cull])
        bm.print_dataset(res)
        out["dataset"] = res
    if not cuda:
        print("\n" + FIGURES)
        bm.print_figures(out)
    for res in out.values():
        res["machine"]["tune_malloc"] = tuned
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out if args.what == "all" else out[args.what], indent=1) + "\n")
    print(f"saved {path}")
    return 0


def main(argv=None, default_out=None) -> int:
    """Entry point of the benchmark scripts: the same options as ``onthefly bench``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0].strip("`: "))
    add_arguments(p)
    if default_out:
        p.set_defaults(out=default_out)
    return run(p.parse_args(argv))
