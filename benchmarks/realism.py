#!/usr/bin/env python
"""Do real face models read the renders? (issue 17) dlib detection per pose bin, landmark error and head pose
fitted from the detections, printed as a table and saved as JSON, with a contact sheet of label vs detected points.

Settings (every render through the real path: mesh cache → ``OnTheFlyGazeDataset.render`` at a given head pose):

* ``procedural``: ``--heads`` procedural identities (``ProceduralSource(count=heads, seed=3)``), ``--renders`` head
  poses pitch uniform ±20°, yaw uniform ±45° (``default_rng(seed)``), each at the ``xgaze224`` camera (224 px,
  f = 960, 600 mm: the chin is cut) and a wide one (224 px, f = 960, 900 mm: the whole face), ``default`` and
  ``plain`` appearance.
* ``photos``: ``skimage.data.astronaut()`` and matplotlib's ``grace_hopper.jpg`` reconstructed with dlib landmarks
  (``onthefly reconstruct --source images --landmarks dlib``, assumed camera f = 1.5·max(W, H)), re-rendered at yaw
  0, ±15°, ±30° × pitch 0, ±15° (``default`` appearance, both cameras). Their truth is the reconstruction's own
  head frame.

Per setting (see :mod:`onthefly.reconstruct.realism`): detection rate per |yaw| bin, NME over the inner 51 points and
the jaw (outer-eye-corner distance, against ``landmarks_2d``: iBUG semantics), head pose fitted
(``estimate_head_pose``: PnP + contour-aware shape fit) from dlib's landmarks (the reconstruction's defaults: landmark
noise 0.02 of the eye-corner distance, per-landmark weights from ``DLIB_LANDMARK_NOISE``, jaw fitted across the
outline) and from the exact labels (``LABEL_SIGMA`` = 0.001, uniform weights): pitch / yaw bias and slope, median
rotation error; and the **oracle**: dlib's inner points with the rendered head's true 3-D landmarks (PnP), what no
fitter can beat with these points (the rest is the detector's error).

``--save-detections`` keeps dlib's points, the labels and the truth of every setting in an ``.npz``, so that
``benchmarks/headpose_fit.py`` evaluates fitter variants on them in seconds (renders are deterministic).

    python benchmarks/realism.py                       # 16 heads, 96 renders per setting
    python benchmarks/realism.py --renders 24 --no-photos --out /tmp/realism.json --sheet ''
    python benchmarks/realism.py --save-detections /tmp/bench.npz && python benchmarks/headpose_fit.py /tmp/bench.npz
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: issue 17's figures
FIGURES = {"default_le30": 0.90, "default_30_45": 0.60, "plain_le30": 0.80, "nme51": 0.045, "pitch_bias": 2.0,
           "yaw_bias": 1.0, "slope": (0.95, 1.05), "median_error": 2.0, "label_median_error": 0.5}
PHOTO_POSES = [(p, y) for p in (-15.0, 0.0, 15.0) for y in (-30.0, -15.0, 0.0, 15.0, 30.0)]


def cameras():
    from onthefly.normalization import NormalizedCamera, get_camera

    return {"xgaze224": get_camera("xgaze224"), "wide900": NormalizedCamera(960.0, 900.0, 224, 224, "wide900")}


def procedural_cache(folder: Path, heads: int, seed: int = 3) -> Path:
    from onthefly.cache import build_cache
    from onthefly.sources.procedural import ProceduralSource

    path = folder / "procedural.h5"
    build_cache(ProceduralSource(count=heads, seed=seed, subjects=heads), path)
    return path


def photo_cache(folder: Path, det) -> Path | None:
    """The two photos reconstructed with dlib landmarks into a cache (None without scikit-image)."""
    try:
        import skimage.data
    except ImportError:
        return None
    import cv2
    import matplotlib

    from onthefly.cache import build_cache
    from onthefly.sources.images import ImageSource

    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    images = {"astronaut": skimage.data.astronaut(),
              "grace_hopper": np.ascontiguousarray(cv2.imread(str(hopper), cv2.IMREAD_COLOR)[..., ::-1])}
    lines = []
    for name, img in images.items():
        h, w = img.shape[:2]
        f = 1.5 * max(w, h)
        cv2.imwrite(str(folder / f"{name}.png"), img[..., ::-1])
        lines.append(json.dumps({"image": f"{name}.png", "subject": name, "gaze_pitchyaw": [0.0, 0.0],
                                 "K": [[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]]}))
    (folder / "photos.jsonl").write_text("\n".join(lines) + "\n")
    path = folder / "photos.h5"
    build_cache(ImageSource(folder / "photos.jsonl", landmarks="dlib"), path)
    return path


def contact_sheet(rows: list[tuple[str, dict, list]], path: Path, per_row: int = 8, scale: float = 1.0) -> None:
    """Tiles (``scale``x) with the label landmarks (green; jaw yellow) and dlib's (red); 'no face' when missed."""
    import cv2

    out = []
    for name, views, recs in rows:
        tiles = []
        for img, lab, rec in list(zip(views["images"], views["landmarks"], recs))[:per_row]:
            im = cv2.resize(img, (round(img.shape[1] * scale), round(img.shape[0] * scale)),
                            interpolation=cv2.INTER_LINEAR).copy()
            for j, q in enumerate(lab):
                cv2.circle(im, (int(q[0] * scale), int(q[1] * scale)), 1, (255, 255, 0) if j < 17 else (0, 255, 0), -1)
            if rec["detected"]:
                for q in np.array(rec["det_landmarks"]):
                    cv2.circle(im, (int(q[0] * scale), int(q[1] * scale)), 1, (255, 0, 0), -1)
            txt = f"p{rec['truth'][0]:+.0f} y{rec['truth'][1]:+.0f}" + ("" if rec["detected"] else " no face")
            cv2.putText(im, txt, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            tiles.append(im)
        while len(tiles) < per_row:
            tiles.append(np.zeros_like(tiles[0]))
        row = np.concatenate(tiles, 1)
        label = np.zeros((20, row.shape[1], 3), np.uint8)
        cv2.putText(label, name, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        out += [label, row]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate(out, 0)[..., ::-1])
    print(f"saved {path}")


def _fmt(s: dict) -> str:
    b = s["bins"]
    pd, pl, po = s["pose_detected"], s["pose_label"], s.get("pose_oracle", {})

    def g(d, k, f="{:+5.1f}"):
        return f.format(d[k]) if k in d else "  -  "
    return (f"{b['0-15']['detected']:5.0%} {b['15-30']['detected']:5.0%} {b['30-45']['detected']:5.0%} | "
            f"{s['nme51_median']:.3f} {s['nme_jaw_median']:.3f} | "
            f"{g(pd, 'pitch_bias_deg')} {g(pd, 'pitch_slope', '{:4.2f}')} {g(pd, 'yaw_bias_deg')} "
            f"{g(pd, 'yaw_slope', '{:4.2f}')} {g(pd, 'median_error_deg', '{:4.1f}')} | "
            f"{g(pl, 'pitch_bias_deg')} {g(pl, 'yaw_bias_deg')} {g(pl, 'median_error_deg', '{:4.2f}')} | "
            f"{g(po, 'pitch_slope', '{:4.2f}')} {g(po, 'yaw_slope', '{:4.2f}')} {g(po, 'median_error_deg', '{:4.1f}')}")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95 % by default) of a rate of ``k`` in ``n``."""
    if n == 0:
        return float("nan"), float("nan")
    p, d = k / n, 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def detection_rates(results: dict) -> dict:
    """Per 224 px procedural setting: found / renders at |yaw| <= 30 and 30-45 (the figures' bins, counted by
    :func:`~onthefly.reconstruct.realism.summarise`), with the Wilson 95 % interval: how far the benchmark's sample
    size lets a rate be read."""
    out = {}
    for key, r in results.items():
        if not key.startswith("procedural/") or not key.endswith("xgaze224"):
            continue
        s = r["summary"]
        for name, (k, m) in (("le30", (s["found_le30"], s["n_le30"])),
                             ("30_45", (s["bins"]["30-45"]["found"], s["bins"]["30-45"]["n"]))):
            out[f"{key}/{name}"] = {"found": k, "renders": m, "rate": k / m if m else float("nan"),
                                    "wilson95": list(wilson(k, m))}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heads", type=int, default=16, help="procedural identities")
    ap.add_argument("--renders", type=int, default=96, help="renders per procedural setting")
    ap.add_argument("--seed", type=int, default=0, help="seed of the head poses and appearance draws")
    ap.add_argument("--head-seed", type=int, default=3, help="seed of the procedural identities")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-photos", action="store_true")
    ap.add_argument("--sheet", type=str, default=str(ROOT / "docs" / "images" / "realism.jpg"),
                    help="contact sheet PNG ('' = none)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "realism.json")
    ap.add_argument("--save-detections", type=Path, default=None, metavar="NPZ",
                    help="also save dlib's points, the labels and the truth per setting (for benchmarks/headpose_fit.py)")
    args = ap.parse_args(argv)
    import torch
    from _results import save_json  # benchmarks/ is sys.path[0] for a script (tests load this file by path)

    from onthefly.reconstruct.landmarks import DlibLandmarks
    from onthefly.reconstruct.realism import detect_views, measure_views, render_views, summarise

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    det = DlibLandmarks()
    tmp = Path(tempfile.mkdtemp(prefix="realism-"))
    rng = np.random.default_rng(args.seed)
    n = args.renders
    poses = np.stack([rng.uniform(-20, 20, n), rng.uniform(-45, 45, n)], 1)
    frames = np.arange(n) % args.heads
    settings = [("procedural", app, cam) for app in ("default", "plain") for cam in cameras()]
    caches = {"procedural": procedural_cache(tmp, args.heads, args.head_seed)}
    if not args.no_photos:
        pc = photo_cache(tmp, det)
        if pc is not None:
            caches["photos"] = pc
            settings += [("photos", "default", cam) for cam in cameras()]
    results, sheet, saved = {}, [], {}
    for src, app, cam in settings:
        if src == "photos":
            pp = np.array(PHOTO_POSES * 2)
            fr = np.repeat([0, 1], len(PHOTO_POSES))
        else:
            pp, fr = poses, frames
        views = render_views(caches[src], pp, fr, camera=cameras()[cam], appearance=app, seed=args.seed)
        dets = detect_views(views, det)
        recs = measure_views(views, det, detections=dets)
        key = f"{src}/{app}/{cam}"
        if args.save_detections:
            b = views["batch"]
            saved.update({f"{key}/det": np.stack([np.full((68, 2), np.nan) if d is None else d for d in dets]),
                          f"{key}/label": views["landmarks"], f"{key}/label_3d": b["landmarks_3d"].double().numpy(),
                          f"{key}/fixed": b["landmarks_2d_fixed"].double().numpy(), f"{key}/poses": pp,
                          f"{key}/frames": fr, f"{key}/K": views["K"],
                          f"{key}/size": np.array(views["images"].shape[1:3][::-1])})
        results[key] = {"summary": summarise(recs),
                        "renders": [{k: v for k, v in r.items() if k != "det_landmarks"} for r in recs]}
        order = np.argsort(np.abs(pp[:, 1]), kind="stable")
        pick = order[np.linspace(0, len(order) - 1, 8).round().astype(int)]
        sheet.append((key, {k: views[k][pick] for k in ("images", "landmarks")}, [recs[i] for i in pick]))
    print("dlib 20 HOG + 68-point predictor; detection per |yaw| bin, median NME (inner 51, jaw), head pose from "
          "dlib landmarks (pitch bias, slope, yaw bias, slope, median error deg) | from exact labels | oracle: "
          "dlib's inner points with the true 3-D shape (PnP)")
    print(f"{'setting':>30} | {'0-15':>5} {'15-30':>5} {'30-45':>5} | nme51 jaw   | "
          f"{'pitch':>5} {'slp':>4} {'yaw':>5} {'slp':>4} {'err':>4} | label p, y, err  | oracle slopes, err")
    for key, r in results.items():
        print(f"{key:>30} | {_fmt(r['summary'])}")
    rates = detection_rates(results)
    print("detection, found / renders (Wilson 95 % interval): " + "; ".join(
        f"{k.split('/')[1]} {'|yaw| <= 30' if k.endswith('le30') else '30-45'} {v['found']}/{v['renders']} = "
        f"{v['rate']:.0%} [{v['wilson95'][0]:.0%}-{v['wilson95'][1]:.0%}]" for k, v in rates.items()))
    print("figures: default >= 90 % at |yaw| <= 30, >= 60 % at 30-45; plain >= 80 % at |yaw| <= 30; NME51 <= 0.045; "
          "|pitch bias| <= 2, |yaw bias| <= 1, slopes 0.95-1.05, median error <= 2 deg; exact labels <= 0.5 deg")
    if args.sheet:
        contact_sheet(sheet, Path(args.sheet))
    result = {"machine": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "heads": args.heads, "renders": n, "seed": args.seed, "photo_poses": PHOTO_POSES,
              "cameras": {k: [c.focal, c.distance, c.width, c.height] for k, c in cameras().items()},
              "settings": results, "detection": rates, "figures": FIGURES, "wall_s": time.perf_counter() - t0,
              "load_average": os.getloadavg()}
    save_json(args.out, result)
    if args.save_detections:
        args.save_detections.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.save_detections, **saved)
        print(f"saved {args.save_detections}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
