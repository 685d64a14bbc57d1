"""``onthefly preview``: a grid of dataset samples with gaze and head-pose arrows, and a plot of the sampled
head-pose and gaze distributions (PNG, drawn with OpenCV).

``--config FILE`` is YAML whose keys are :class:`onthefly.dataset.OnTheFlyGazeDataset` constructor arguments
(``target``, ``appearance``, ``background_dir``, ``camera``, ``views_per_frame``, ``max_rotation_deg``, ...; the
schema is the dataset's signature, :mod:`onthefly.config`), or a training config (its ``data:`` section): the same
file configures training, preview and export. ``--seed`` / ``--device`` override the file; the grid shows
``--count`` samples (the file's ``batch_size`` is not used here).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np


def add_arguments(p) -> None:
    p.add_argument("--cache", required=True, help="mesh cache (onthefly reconstruct --out CACHE)")
    p.add_argument("--config", default=None, help="YAML file of OnTheFlyGazeDataset arguments")
    p.add_argument("--out", required=True, help="output PNG of the sample grid (e.g. grid.png)")
    p.add_argument("--plot", default=None,
                   help="output PNG of the sampled head-pose and gaze distributions (default: OUT_dist.png)")
    p.add_argument("--count", type=int, default=16, help="samples in the grid (default 16)")
    p.add_argument("--cols", type=int, default=None, help="grid columns (default: about sqrt(count))")
    p.add_argument("--plot-samples", type=int, default=4000,
                   help="targets drawn for the distribution plot (sampling only, no rendering; default 4000)")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--device", default=None, help="override the config's device (default cpu)")


def load_config(path) -> dict:
    """The dataset arguments of a YAML config (:func:`onthefly.config.load_dataset_config`: a mapping of
    :class:`~onthefly.dataset.OnTheFlyGazeDataset` arguments, a ``dataset:`` section, or a training config's
    ``data:`` section), checked against the dataset's signature and its sampler's."""
    from ..config import load_dataset_config  # torch: imported when the command runs, not for --help

    def data_section(section: dict, where: str) -> dict:
        from ..train.data import dataset_args_from_data  # lightning: only for a training config

        return dataset_args_from_data(section, where)

    return load_dataset_config(path, "--config", data_section)


def _axes_panel(points_deg: np.ndarray, title: str, size: int = 360, lim: float = 90.0) -> np.ndarray:
    """A scatter panel of (pitch, yaw) degrees: yaw on x (positive to the left, as in the image), pitch on y (up)."""
    import cv2

    m = 40
    img = np.full((size + 2 * m, size + 2 * m, 3), 255, np.uint8)
    to_px = (lambda yaw, pitch: (m + (lim - yaw) / (2 * lim) * size, m + (lim - pitch) / (2 * lim) * size))
    for v in range(-int(lim), int(lim) + 1, 30):
        x, _ = to_px(v, 0)
        _, y = to_px(0, v)
        col = (150, 150, 150) if v == 0 else (225, 225, 225)
        cv2.line(img, (int(x), m), (int(x), m + size), col, 1)
        cv2.line(img, (m, int(y)), (m + size, int(y)), col, 1)
        cv2.putText(img, str(v), (int(x) - 10, m + size + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        cv2.putText(img, str(v), (4, int(y) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    # density: a 2D histogram drawn as translucent dots
    layer: np.ndarray = np.zeros((size + 2 * m, size + 2 * m), np.float32)
    if len(points_deg):
        xs, ys = to_px(points_deg[:, 1], points_deg[:, 0])
        ok = (xs >= m) & (xs < m + size) & (ys >= m) & (ys < m + size)
        np.add.at(layer, (ys[ok].astype(int), xs[ok].astype(int)), 1.0)
        layer = cv2.GaussianBlur(layer, (0, 0), 1.5)
        layer = layer / max(float(layer.max()), 1e-9)
        heat = cv2.applyColorMap((255 * (1 - layer)).astype(np.uint8), cv2.COLORMAP_BONE)[..., ::-1]
        a = np.clip(layer * 3, 0, 1)[..., None]
        img = (img * (1 - a) + heat * a).astype(np.uint8)
    mean = points_deg.mean(0) if len(points_deg) else np.zeros(2)
    std = points_deg.std(0) if len(points_deg) else np.zeros(2)
    cv2.putText(img, title, (m, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.putText(img, f"pitch {mean[0]:.1f}+-{std[0]:.1f}  yaw {mean[1]:.1f}+-{std[1]:.1f} deg", (m, 34),
                cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1)
    cv2.putText(img, "yaw (deg, + = image left)", (m + size // 2 - 80, m + size + 32), cv2.FONT_HERSHEY_SIMPLEX,
                0.38, (0, 0, 0), 1)
    return img


def distribution_plot(head_pose: np.ndarray, gaze: np.ndarray) -> np.ndarray:
    """Side-by-side panels of sampled head poses and gazes (radians in, RGB uint8 out)."""
    a = _axes_panel(np.degrees(head_pose), f"head pose (n={len(head_pose)})")
    b = _axes_panel(np.degrees(gaze), f"gaze (n={len(gaze)})")
    return np.concatenate([a, b], axis=1)


def run(args) -> int:
    from .. import viz
    from ..dataset import OnTheFlyGazeDataset

    try:
        if args.count < 1 or args.plot_samples < 0:
            raise ValueError("--count must be >= 1 and --plot-samples >= 0")
        cfg = load_config(args.config) if args.config else {}
        if args.seed is not None:
            cfg["seed"] = args.seed
        if args.device is not None:
            cfg["device"] = args.device
        cfg.pop("batch_size", None)
        K = int(cfg.get("views_per_frame", 1))
        n_frames = max(1, math.ceil(args.count / K))
        ds = OnTheFlyGazeDataset(args.cache, batch_size=n_frames, **cfg)
        b = ds.batch(0)
    except (ValueError, TypeError) as exc:  # bad cache, config or arguments: one clear line, exit status 1
        print(f"onthefly preview: error: {exc}", file=sys.stderr)
        return 1
    tiles = sample_tiles(ds, b, args.count)
    cols = args.cols or max(1, math.ceil(math.sqrt(len(tiles))))
    out = viz.save_png(args.out, viz.grid(tiles, cols))
    plot = Path(args.plot) if args.plot else Path(args.out).with_name(Path(args.out).stem + "_dist.png")
    n = write_distribution_plot(ds, args.plot_samples, plot)
    print(f"wrote {out} ({len(tiles)} samples: green = gaze, blue = head pose) and {plot} "
          f"({n} sampled targets)")
    return 0


def sample_tiles(ds, batch: dict, count: int) -> list[np.ndarray]:
    """Images of a dataset batch as uint8 tiles with landmarks, head-pose (blue) and gaze (green) arrows."""
    import torch

    from .. import viz
    from ..dataset import IMAGENET_MEAN, IMAGENET_STD

    K = int(ds.views_per_frame)
    flat = (lambda t: t.reshape(-1, *t.shape[2:]) if K > 1 else t)
    img = flat(batch["image"])[:count].float()
    if ds.image_format == "imagenet":
        img = img * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1).to(img) + torch.tensor(IMAGENET_MEAN).view(
            1, 3, 1, 1).to(img)
    ims = viz.to_uint8_images(img)
    gaze, head = flat(batch["gaze"]).cpu(), flat(batch["head_pose"]).cpu()
    lm = flat(batch["landmarks_2d"]).cpu()
    tiles = []
    for i in range(len(ims)):  # drawing for people, not the data path
        im = np.ascontiguousarray(ims[i])
        viz.draw_points(im, lm[i].numpy())
        viz.draw_arrow(im, head[i], viz.BLUE)
        viz.draw_arrow(im, gaze[i], viz.GREEN)
        viz.put_label(im, f"g {math.degrees(gaze[i, 0]):.0f},{math.degrees(gaze[i, 1]):.0f}", 0)
        viz.put_label(im, f"h {math.degrees(head[i, 0]):.0f},{math.degrees(head[i, 1]):.0f}", 1)
        tiles.append(im)
    return tiles


def write_distribution_plot(ds, samples: int, path) -> int:
    """Sample ``samples`` targets (labels only, no rendering) and write the distribution PNG; returns the count."""
    from .. import viz

    hs, gs, n, i = [], [], 0, 0
    while n < samples:
        lab = ds.sample_labels(i)
        hs.append(lab["head_pose"].numpy())
        gs.append(lab["gaze"].numpy())
        n += len(lab["head_pose"])
        i += 1
    hp = np.concatenate(hs)[:samples] if hs else np.zeros((0, 2))
    gz = np.concatenate(gs)[:samples] if gs else np.zeros((0, 2))
    viz.save_png(path, distribution_plot(hp, gz))
    return len(hp)
