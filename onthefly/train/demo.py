"""The CPU demo end to end: procedural mesh cache → train the small CNN on on-the-fly batches (``configs/demo.yaml``)
→ held-out angular error on subjects never seen in training → PNGs of predictions and of the learning curve.

    python -m onthefly.train demo [--out out/train-demo] [--subjects 1024] [--views 4] [--max-epochs N] [--config ...]
                         [--threads N] [any LightningCLI override, e.g. --trainer.precision 32-true]

The last line printed is ``held-out angular error: X.XX deg``. The run is budgeted in optimizer steps
(``trainer.max_epochs`` x ``data.epoch_length`` x ``data.repeat``), never in wall time, and trains on
``--threads`` torch threads (default 2) whatever the machine: the result is a function of the seed, the config and
the thread count (which orders the floating-point sums), not of the machine's load; a busy machine only takes longer.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer

from onthefly import viz
from onthefly.cache import MeshCache, build_cache
from onthefly.geometry import angular_error
from onthefly.sources.procedural import ProceduralSource
from onthefly.synthetic import generator_fingerprint

from .cli import cli_main

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
#: torch threads of the demo on every machine (its figures are measured at 2, on a 2-core CPU)
DEMO_THREADS = 2


def learning_curve(log_dir: Path) -> list[dict]:
    """Per-epoch rows ``{epoch, step, val, train}`` (mean angular errors in degrees; ``train`` is the epoch mean
    of the training batches, None when not logged) from the CSVLogger's newest metrics.csv."""
    files = sorted(log_dir.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not files:
        return []
    rows: dict[int, dict] = {}
    with open(files[-1]) as f:
        for r in csv.DictReader(f):
            if not r.get("epoch"):  # e.g. the learning-rate monitor's rows
                continue
            e = int(r["epoch"])
            row = rows.setdefault(e, {"epoch": e, "step": None, "val": None, "train": None})
            if r.get("val/angular_error"):
                row["val"], row["step"] = float(r["val/angular_error"]), int(r["step"])
            if r.get("train/angular_error_epoch"):
                row["train"] = float(r["train/angular_error_epoch"])
    return [rows[e] for e in sorted(rows) if rows[e]["val"] is not None]


def curve_plot(rows: list[dict], size: tuple[int, int] = (640, 360)) -> "np.ndarray":
    """The learning curve as an RGB image (OpenCV): held-out (red) and training (blue) error per epoch."""
    W, H = size
    img = np.full((H, W, 3), 255, np.uint8)
    m, top = 50, 30
    vals = [r[k] for r in rows for k in ("val", "train") if r[k] is not None]
    ymax = max(5.0, float(np.ceil(max(vals) / 5) * 5)) if vals else 5.0
    n = max(1, len(rows) - 1)

    def xy(i: int, v: float) -> tuple[int, int]:
        return int(m + i * (W - 2 * m) / n), int(H - m - v / ymax * (H - m - top))

    for v in np.arange(0, ymax + 1e-9, ymax / 5):
        y = xy(0, v)[1]
        cv2.line(img, (m, y), (W - m, y), (225, 225, 225), 1)
        cv2.putText(img, f"{v:.0f}", (8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    for k, colour in (("train", (40, 90, 220)), ("val", (220, 40, 40))):
        pts = [xy(i, r[k]) for i, r in enumerate(rows) if r[k] is not None]
        for a, b in zip(pts, pts[1:]):
            cv2.line(img, a, b, colour, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, p, 3, colour, -1, cv2.LINE_AA)
    for i, r in enumerate(rows):
        cv2.putText(img, str(r["epoch"]), (xy(i, 0)[0] - 4, H - m + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    cv2.putText(img, "mean angular error (deg) per epoch: held-out (red), training (blue)", (m, 18),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.putText(img, "epoch", (W // 2 - 20, H - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    return img


def evaluate(model, batches) -> tuple[float, "torch.Tensor", "torch.Tensor"]:
    model.eval()
    preds, gazes = [], []
    with torch.no_grad():
        for b in batches:
            preds.append(model(b["image"]).float())
            gazes.append(b["gaze"].float())
    pred, gaze = torch.cat(preds), torch.cat(gazes)
    return float(angular_error(pred, gaze).mean()), pred, gaze


def write_preview(path: Path, batches, pred, gaze, n: int = 16, size: int = 128) -> Path:
    """Held-out samples upscaled to ``size`` px with the true (green) and predicted (red) gaze arrows."""
    images = torch.cat([b["image"] for b in batches])[:n]
    tiles = []
    for img, p, g in zip(viz.to_uint8_images(images), pred[:n], gaze[:n]):
        t = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR).copy()
        viz.draw_arrow(t, g, viz.GREEN)
        viz.draw_arrow(t, p, viz.RED)
        viz.put_label(t, f"{float(angular_error(p, g)):.1f} deg")
        tiles.append(t)
    return viz.save_png(path, viz.grid(tiles, cols=min(8, len(tiles))))


def _cache_matches(path: Path, subjects: int, views: int) -> bool:
    """Whether an existing demo cache holds ``subjects`` x ``views`` frames of this version's procedural heads
    (else it is rebuilt: a cache from before a change of the head generator holds other faces)."""
    try:
        with MeshCache(path) as mc:
            same_heads = str(mc.attrs.get("procedural_generator", "")) == generator_fingerprint()
            return same_heads and len(mc) == subjects * views and len(mc.subjects) == subjects
    except (OSError, ValueError):
        return False


def _cpu_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX512-BF16 / AMX); emulated bf16 is slower than float32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m onthefly.train demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/train-demo", help="output folder (default out/train-demo)")
    ap.add_argument("--subjects", type=int, default=1024, help="procedural identities (default 1024; 25%% held out)")
    ap.add_argument("--views", type=int, default=4, help="source frames (gaze targets) per identity (default 4)")
    ap.add_argument("--config", default=str(CONFIG), help="LightningCLI config (default configs/demo.yaml)")
    ap.add_argument("--max-epochs", type=int, default=None, help="override trainer.max_epochs")
    ap.add_argument("--epoch-length", type=int, default=None, help="override data.epoch_length (batches)")
    ap.add_argument("--threads", type=int, default=DEMO_THREADS,
                    help=f"torch threads (default {DEMO_THREADS}, whatever the machine: another count sums in another "
                         "order and gives another, equally valid, result)")
    args, extra = ap.parse_known_args(argv)
    if args.threads < 1:
        ap.error(f"--threads: expected an int >= 1, got {args.threads}")
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args, extra)
    finally:
        torch.set_num_threads(threads)


def _run(args, extra) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cache = out / "cache.h5"
    if cache.is_file() and not _cache_matches(cache, args.subjects, args.views):
        print(f"      {cache} holds another set of frames (or heads of another onthefly version): rebuilding it", flush=True)
        cache.unlink()
    if not cache.is_file():
        build_cache(ProceduralSource(count=args.subjects * args.views, seed=0, subjects=args.subjects), cache,
                    skip_bad=False)
    print(f"[1/4] mesh cache: {args.subjects} procedural subjects x {args.views} frames -> {cache} "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)

    # the config's paths are relative to out/train-demo: rewrite them for --out
    text = Path(args.config).read_text().replace("out/train-demo", out.as_posix())
    cfg = out / "demo-config.yaml"
    cfg.write_text(text)
    cli_args = ["--config", str(cfg), "--data.cache", str(cache)]
    if args.max_epochs is not None:
        cli_args += ["--trainer.max_epochs", str(args.max_epochs)]
    if args.epoch_length is not None:
        cli_args += ["--data.epoch_length", str(args.epoch_length)]
    if "bf16" in text and not any(a.startswith("--trainer.precision") for a in extra) and not _cpu_bf16():
        print("      this CPU has no native bfloat16: training in float32 (slower)", flush=True)
        cli_args += ["--trainer.precision", "32-true"]
    cli = cli_main(cli_args + list(extra), run=False)

    if any(isinstance(c, Timer) for c in cli.trainer.callbacks):
        print("python -m onthefly.train demo: error: trainer.max_time: the demo is budgeted in optimizer steps "
              "(trainer.max_epochs x data.epoch_length x data.repeat), not in time (a wall-clock cap makes the "
              "result depend on the machine's load)", file=sys.stderr)
        return 2
    t1 = time.perf_counter()
    cli.trainer.fit(cli.model, cli.datamodule)
    t_fit = time.perf_counter() - t1
    print(f"[2/4] trained {cli.trainer.global_step} steps x {cli.datamodule.hparams.batch_size} on-the-fly samples "
          f"in {t_fit:.0f} s ({args.threads} torch threads)", flush=True)

    curve = learning_curve(out / "logs")
    print("[3/4] learning curve (held-out subjects at novel head poses; training batches):")
    for r in curve:
        train = f"{r['train']:6.2f}" if r["train"] is not None else "   n/a"
        print(f"      epoch {r['epoch']:3d}  step {r['step']:5d}  held-out {r['val']:6.2f} deg  train {train} deg")
    (out / "learning_curve.json").write_text(json.dumps(curve, indent=1))

    viz.save_png(out / "learning_curve.png", curve_plot(curve))
    batches = cli.datamodule.val_batches()
    err, pred, gaze = evaluate(cli.model.cpu(), batches)
    png = write_preview(out / "predictions.png", batches, pred, gaze)
    n_subj = len(cli.datamodule._dataset("val", 0, 1, "cpu").subjects)
    print(f"[4/4] {len(gaze)} held-out samples of {n_subj} unseen subjects; predictions (green true, red predicted): "
          f"{png}; learning curve: {out / 'learning_curve.png'}; total {time.perf_counter() - t0:.0f} s")
    print(f"held-out angular error: {err:.2f} deg")
    return 0
