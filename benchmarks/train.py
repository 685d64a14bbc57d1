"""Fraction of each training step spent waiting for data: on-the-fly rendering vs the same samples from memory.

For a model and image size, runs ``--steps`` optimizer steps in each mode: (1) batches from
``OnTheFlyGazeDataset`` rendered in the training process on the training device (the ``onthefly.train.data`` design),
(2) the same batches, pre-rendered and held in a device tensor, and with ``--repeat K`` (3) the replay stream of
``onthefly.train.data.replay`` (K steps per rendered batch drawn from the last ``--pool`` batches, mirrored at random: the
CPU demo's setting). Per step it times the wait for the next batch and the forward/backward/optimizer step (CUDA
synchronized). The wait fraction is total wait / total step time (with replay only every K-th step waits for a
render, so a median would hide it); medians per step are printed too. Results go to ``benchmarks/results/train.json``.

    python benchmarks/train.py                                  # small CNN, CPU, 64 px, batch 64 (the demo)
    python benchmarks/train.py --device cuda --model resnet50 --image-size 224 --batch-size 256
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import save_json  # noqa: E402  (benchmarks/ is sys.path[0] for a script)


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run_steps(model, opt, batches_iter, steps: int, dev, amp: bool):
    waits, computes = [], []
    it = iter(batches_iter)
    for _ in range(steps):
        _sync(dev)
        t0 = time.perf_counter()
        batch = next(it)
        _sync(dev)
        t1 = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            x = batch["image"]
            if x.dim() == 4 and next(model.parameters()).is_contiguous(memory_format=torch.channels_last):
                x = x.contiguous(memory_format=torch.channels_last)
            loss = torch.nn.functional.l1_loss(model(x).float(), batch["gaze"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(dev)
        t2 = time.perf_counter()
        waits.append(t1 - t0)
        computes.append(t2 - t1)
    return waits, computes


def main(argv=None) -> int:
    from onthefly.cache import build_cache
    from onthefly.dataset import OnTheFlyGazeDataset
    from onthefly.sources.procedural import ProceduralSource
    from onthefly.train.data import make_camera
    from onthefly.train.models import build_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--model", default="small")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per mode (after 2 warm-up steps)")
    ap.add_argument("--appearance", default="default")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast for the model")
    ap.add_argument("--cull-backfaces", action="store_true", help="dataset cull_backfaces (the CPU demo's setting)")
    ap.add_argument("--channels-last", action="store_true", help="model and inputs in channels-last format")
    ap.add_argument("--repeat", type=int, default=1, help="also time the replay stream: steps per rendered batch")
    ap.add_argument("--pool", type=int, default=4, help="replay pool in rendered batches (default 4)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "train.json"))
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache.h5"
        build_cache(ProceduralSource(count=128, seed=0, subjects=32), cache)
        ds = OnTheFlyGazeDataset(cache, batch_size=args.batch_size, seed=0, device=dev,
                                 camera=make_camera("xgaze224", args.image_size), appearance=args.appearance,
                                 cull_backfaces=args.cull_backfaces,
                                 epoch_length=args.steps + 2 + (args.steps // max(1, args.repeat) + 3))
        model = build_model(args.model).to(dev)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        n = args.steps + 2

        def onthefly():
            for b in ds:
                yield {"image": b["image"], "gaze": b["gaze"]}

        ds.set_epoch(0)
        w1, c1 = run_steps(model, opt, onthefly(), n, dev, args.amp)
        ds.set_epoch(0)
        held = [{"image": b["image"].clone(), "gaze": b["gaze"].clone()} for b in ds]
        images = torch.stack([b["image"] for b in held])
        gazes = torch.stack([b["gaze"] for b in held])

        def memory():
            for i in range(len(images)):
                yield {"image": images[i], "gaze": gazes[i]}

        w2, c2 = run_steps(model, opt, memory(), n, dev, args.amp)
        modes = [("onthefly", w1[2:], c1[2:]), ("memory", w2[2:], c2[2:])]
        if args.repeat > 1:
            from onthefly.dataset import batch_generator
            from onthefly.train.data import replay

            ds.set_epoch(1)
            m = 2 * args.repeat + args.steps
            w3, c3 = run_steps(model, opt, replay(onthefly(), args.repeat, args.pool, True,
                                                  lambda i: batch_generator(0, 1, 0, i, 11)), m, dev, args.amp)
            modes.append((f"replay{args.repeat}", w3[2 * args.repeat:], c3[2 * args.repeat:]))
    res = {"device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else
           platform.processor() or platform.machine(), "threads": torch.get_num_threads(), "model": args.model,
           "image_size": args.image_size, "batch_size": args.batch_size, "appearance": args.appearance,
           "amp": args.amp, "timed_steps": args.steps, "cull_backfaces": args.cull_backfaces,
           "channels_last": args.channels_last, "repeat": args.repeat, "pool": args.pool}
    print(f"{'mode':9s} {'wait median':>12s} {'step median':>12s} {'wait mean':>10s} {'wait fraction':>14s} "
          f"{'samples/s':>10s}")
    for name, w, c in modes:
        mw, mc = statistics.median(w), statistics.median(c)
        tw, tc = sum(w) / len(w), sum(c) / len(c)
        res[name] = {"wait_median_s": round(mw, 5), "compute_median_s": round(mc, 5), "wait_mean_s": round(tw, 5),
                     "compute_mean_s": round(tc, 5), "wait_fraction": round(tw / (tw + tc), 4),
                     "samples_per_s": round(args.batch_size / (tw + tc), 1)}
        print(f"{name:9s} {mw * 1e3:9.1f} ms {mc * 1e3:9.1f} ms {tw * 1e3:7.1f} ms {100 * tw / (tw + tc):12.1f} % "
              f"{args.batch_size / (tw + tc):10.0f}")
    out = Path(args.out)
    allres = json.loads(out.read_text()) if out.is_file() else {}  # one entry per configuration
    allres[f"{args.device}-{args.model}-{args.image_size}-b{args.batch_size}" + ("-amp" if args.amp else "")] = res
    save_json(out, allres)
    return 0


if __name__ == "__main__":
    sys.exit(main())
