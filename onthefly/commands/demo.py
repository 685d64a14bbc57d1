"""``onthefly demo``: the main job on the embedded default data, end to end.

1. build a mesh cache of procedural heads (``onthefly reconstruct --source procedural``),
2. stream normalized, exactly labelled batches from it with :class:`OnTheFlyGazeDataset` (timed),
3. write a preview grid (gaze in green, head pose in blue), the sampled distributions and the labels.
"""
from __future__ import annotations

import json
import time
from pathlib import Path


def run(args) -> int:
    import torch

    from .. import viz
    from ..cache import build_cache
    from ..dataset import OnTheFlyGazeDataset
    from ..sources.procedural import ProceduralSource
    from .preview import sample_tiles, write_distribution_plot

    if args.subjects < 1 or args.views < 1 or args.batches < 1:
        raise ValueError("--subjects, --views and --batches must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frames = args.subjects * args.views

    t0 = time.perf_counter()
    report = build_cache(ProceduralSource(count=frames, seed=args.seed, subjects=args.subjects),
                         out / "cache.h5", skip_bad=False)
    t_cache = time.perf_counter() - t0
    print(f"[1/3] mesh cache: {report.written} source frames of {args.subjects} procedural subjects "
          f"-> {report.path} ({t_cache:.1f} s)")

    ds = OnTheFlyGazeDataset(report.path, batch_size=args.batch_size, seed=args.seed, device=args.device,
                             camera=args.camera, epoch_length=args.batches)
    times, first = [], None
    t_prev = time.perf_counter()
    for batch in ds:  # one epoch of --batches batches
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        now = time.perf_counter()
        times.append(now - t_prev)
        t_prev = now
        first = batch if first is None else first
    rate = args.batch_size * len(times) / sum(times)
    print(f"[2/3] on-the-fly dataset: {len(times)} batches x {args.batch_size} normalized {args.camera} samples "
          f"on {args.device}: {rate:.1f} samples/s (including the first batch's set-up)")

    assert first is not None  # the epoch had batches (a rate was printed)
    tiles = sample_tiles(ds, first, min(args.batch_size, 4 * args.views))
    grid = viz.save_png(out / "preview.png", viz.grid(tiles, cols=min(len(tiles), args.views)))
    dist = out / "distributions.png"
    n = write_distribution_plot(ds, 2000, dist)
    labels = {k: first[k].cpu() for k in ("gaze", "head_pose", "subject_index", "frame_index")}
    records = [{"subject": int(labels["subject_index"][i]), "frame": int(labels["frame_index"][i]),
                "gaze_pitch_yaw_rad": [round(float(v), 6) for v in labels["gaze"][i]],
                "head_pose_pitch_yaw_rad": [round(float(v), 6) for v in labels["head_pose"][i]]}
               for i in range(len(labels["gaze"]))]
    (out / "labels.json").write_text(json.dumps({"seed": args.seed, "camera": args.camera,
                                                 "convention": "docs/conventions.md", "samples": records}, indent=1))
    g = torch.rad2deg(labels["gaze"]).abs().amax(0)
    print(f"[3/3] preview: {grid} (green: gaze, blue: head pose; first batch, |gaze| up to "
          f"{g[0]:.0f} deg pitch, {g[1]:.0f} deg yaw)")
    print(f"      sampled head-pose and gaze distributions ({n} targets): {dist}")
    print(f"      labels of the first batch: {out / 'labels.json'}")
    return 0
