#!/usr/bin/env python
"""Single-image reconstruction quality and speed (issue 8), printed as tables and saved as JSON.

Procedural ground truth: ``--heads`` procedural identities (``sample_identities(n, seed)``, not the template's nor
the shape model's seeds) with head pitch ±10°, yaw ±15°, roll ±5° in front of a 640x640 f = 1200 px camera at
650 mm, rendered unlit (vertex colours, 2x SSAA, grey background). Each image, its exact 2-D landmarks, the true
gaze target and face centre go through a manifest and ``ImageSource`` (the real path: PNG, manifest, fit, texture);
the reconstruction and the true mesh are rotated about the true face centre by the views below and rendered with the
same camera; PSNR and SSIM are taken over the true face region (rendered face-region vertices). The gaze label of
every view (the rotated direction face centre → target) is compared with the truth's: 0 by construction, asserted.
Variants: ``default`` (shape model + TPS warp + mirror fill), ``no-mirror`` (unseen regions take the mean face colour),
``template`` (rigid template PnP + TPS warp, no shape model).

Real photos: ``skimage.data.astronaut()`` and matplotlib's ``grace_hopper.jpg`` with dlib 68-point landmarks (fitted
with ``ReconstructOptions.detected()``, as ``--landmarks dlib``) and an
**assumed camera**: f = 1.5 · max(W, H) px, principal point at the image centre, no distortion, no face centre (the
mesh keeps the template's size). Re-render at the source pose against the photo over the reconstruction's face region;
preview PNGs (source, re-render, yaw ±20°, pitch ±15°) go to ``docs/images/``. Skipped with a note when dlib,
face-recognition-models or scikit-image are missing.

Speed: the median wall time of ``reconstruct()`` (checks, pose + shape fit, warp, visibility, texture) per image,
with ``--threads`` torch threads, excluding image decoding and the landmark detector (timed separately).

    python benchmarks/reconstruction.py                 # 8 heads, 2 threads
    python benchmarks/reconstruction.py --heads 3 --no-photos --out /tmp/r.json
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import save_json  # noqa: E402  (benchmarks/ is sys.path[0] for a script)

#: (name, pitch°, yaw°) of the novel views relative to the source
VIEWS = [("source", 0, 0), ("yaw+15", 0, 15), ("yaw-15", 0, -15), ("yaw+30", 0, 30), ("yaw-30", 0, -30),
         ("pitch+15", 15, 0), ("pitch-15", -15, 0)]
FIGURES = {"source": 30.0, "yaw+15": 24.0, "yaw-15": 24.0, "photo_source": 28.0}
PHOTO_VIEWS = [("source", 0, 0), ("yaw-20", 0, -20), ("yaw+20", 0, 20), ("pitch+15", 15, 0), ("pitch-15", -15, 0)]


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.atan2(np.linalg.norm(np.cross(a, b)), float(a @ b)))


def procedural(args, torch) -> dict:
    from onthefly.reconstruct import ReconstructOptions, reconstruct
    from onthefly.reconstruct.groundtruth import (
        GT_CAMERA,
        compare_view,
        groundtruth_frames,
        render_truth,
        view_rotation,
        write_manifest,
    )
    from onthefly.sources.images import ImageSource

    t0 = time.perf_counter()
    gts = groundtruth_frames(args.heads, seed=args.seed)
    reconstruct(gts[0].image, gts[0].K, gts[0].landmarks_2d)   # warm-up: template and shape model (one-time)
    variants = {"default": ReconstructOptions(), "no-mirror": ReconstructOptions(mirror_fill=False),
                "template": ReconstructOptions(shape_model=False)}
    tmp = Path(tempfile.mkdtemp(prefix="recon-bench-"))
    manifest = write_manifest(gts, tmp)
    truths = [{name: render_truth(g, p, y) for name, p, y in VIEWS} for g in gts]
    res: dict = {v: {name: {"psnr": [], "ssim": []} for name, _, _ in VIEWS} for v in variants}
    quality: dict = {v: [] for v in variants}
    gaze_err, pose_err, seconds, cpu = [], [], [], []
    for vname, opt in variants.items():
        src = ImageSource(manifest, options=opt)
        for i, g in enumerate(gts):
            rec = src.load(i)
            quality[vname].append(rec.extra["quality"])
            if vname == "default":
                seconds.append(rec.extra["quality"]["seconds"])
                cpu.append(rec.extra["quality"]["cpu_seconds"])
                dR = rec.head_rotation @ g.head_rotation.T
                pose_err.append(math.degrees(math.acos(np.clip((np.trace(dR) - 1) / 2, -1, 1))))
            g_true = (g.gaze_target - g.face_centre) / np.linalg.norm(g.gaze_target - g.face_centre)
            for name, p, y in VIEWS:
                m = compare_view(g, rec, p, y, truths[i][name])
                res[vname][name]["psnr"].append(m["psnr"])
                res[vname][name]["ssim"].append(m["ssim"])
                R = view_rotation(p, y)
                gaze_err.append(angle_deg(R @ rec.direction(), R @ g_true))
            if vname == "default" and i == 0 and args.images:
                _procedural_preview(g, rec, args.images / "reconstruction-procedural.png")
    assert max(gaze_err) < 1e-6, f"gaze-label error {max(gaze_err)} deg: must be 0 by construction"
    summary = {v: {name: {"psnr_mean": float(np.mean(d["psnr"])), "psnr_min": float(np.min(d["psnr"])),
                          "ssim_mean": float(np.mean(d["ssim"])), "psnr": d["psnr"], "ssim": d["ssim"]}
                   for name, d in r.items()} for v, r in res.items()}
    q = quality["default"]
    return {"heads": args.heads, "seed": args.seed, "camera": list(GT_CAMERA), "views": VIEWS,
            "variants": summary, "gaze_label_error_deg_max": float(max(gaze_err)),
            "head_pose_error_deg": {"median": float(np.median(pose_err)), "max": float(np.max(pose_err))},
            "quality_median": {k: float(np.median([x[k] for x in q])) for k in q[0]},
            "seconds": seconds, "cpu_seconds": cpu, "wall_s": time.perf_counter() - t0}


def _label(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    img = np.ascontiguousarray(img)
    cv2.putText(img, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _crop(img: np.ndarray, box: tuple[int, int, int, int], size: int = 220) -> np.ndarray:
    import cv2

    x0, y0, x1, y1 = box
    c = img[max(y0, 0):y1, max(x0, 0):x1]
    return cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)


def _face_box(lm: np.ndarray, w: int, h: int, k: float = 1.9) -> tuple[int, int, int, int]:
    c = (lm.min(0) + lm.max(0)) / 2
    s = k * max(np.ptp(lm[:, 0]), np.ptp(lm[:, 1])) / 2
    c[1] -= 0.15 * s
    return (max(int(c[0] - s), 0), max(int(c[1] - s), 0), min(int(c[0] + s), w), min(int(c[1] + s), h))


def _procedural_preview(g, rec, path: Path) -> None:
    import cv2

    from onthefly.reconstruct.groundtruth import GT_CAMERA, render_reconstruction, render_truth

    box = _face_box(g.landmarks_2d, *GT_CAMERA[1:])
    top, bottom = [_label(_crop(g.image, box), "source")], [_label(_crop(g.image, box), "source")]
    for name, p, y in VIEWS[1:]:
        img = render_reconstruction(rec, g.K, GT_CAMERA[1:], g.face_centre, p, y)
        tr, _ = render_truth(g, p, y)
        top.append(_label(_crop((img * 255).round().astype(np.uint8), box), f"recon {name}"))
        bottom.append(_label(_crop((tr * 255).round().astype(np.uint8), box), f"truth {name}"))
    grid = np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid[..., ::-1])


def photos(args, torch) -> dict:
    try:
        import skimage.data

        from onthefly.reconstruct.landmarks import DlibLandmarks
        det = DlibLandmarks()
    except ImportError as exc:
        return {"skipped": f"{exc}"}
    import cv2
    import matplotlib

    from onthefly.normalization import face_centre
    from onthefly.reconstruct import ReconstructOptions, reconstruct
    from onthefly.reconstruct.groundtruth import render_image, render_reconstruction
    from onthefly.reconstruct.metrics import masked_psnr, masked_ssim
    from onthefly.render import VertexColors

    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    images = {"astronaut": skimage.data.astronaut(),
              "grace_hopper": np.ascontiguousarray(cv2.imread(str(hopper), cv2.IMREAD_COLOR)[..., ::-1])}
    out = {"camera": "f = 1.5 * max(W, H) px, principal point at the image centre, no distortion"}
    for name, img in images.items():
        h, w = img.shape[:2]
        f = 1.5 * max(w, h)
        K = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
        t = time.perf_counter()
        lm = det(img)
        t_det = time.perf_counter() - t
        times, cpu = [], []
        for _ in range(args.repeats):
            rec = reconstruct(img, K, lm, options=ReconstructOptions.detected())  # as --landmarks dlib
            times.append(rec.quality["seconds"])
            cpu.append(rec.quality["cpu_seconds"])
        fc = face_centre(torch.from_numpy(rec.landmarks), "eye_nose").numpy()
        src = img.astype(np.float64) / 255
        fr = np.repeat(rec.face_region[:, None].astype(np.float32), 3, 1)
        m, cov = render_image(rec.verts, rec.faces, K, (w, h), VertexColors(torch.from_numpy(fr)[None]), ssaa=1)
        mask = (cov > 0.5) & (m[..., 0] > 0.999)
        views = {}
        tiles = []
        box = _face_box(lm, w, h)
        tiles.append(_label(_crop(img, box), "photo"))
        for vname, p, y in PHOTO_VIEWS:
            r = render_reconstruction(rec, K, (w, h), fc, p, y)
            if vname == "source":
                views["source"] = {"psnr": masked_psnr(r, src, mask), "ssim": masked_ssim(r, src, mask),
                                   "mask_pixels": int(mask.sum())}
            tiles.append(_label(_crop((r * 255).round().astype(np.uint8), box), vname))
        if args.images:
            args.images.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(args.images / f"reconstruction-{name}.png"), np.concatenate(tiles, 1)[..., ::-1])
        out[name] = {"size": [w, h], "detector_s": t_det, "seconds": times, "cpu_seconds": cpu, **views["source"],
                     "quality": rec.quality}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="timed reconstructions per photo")
    ap.add_argument("--no-photos", action="store_true")
    ap.add_argument("--images", type=str, default=str(ROOT / "docs" / "images"), help="preview PNG folder ('' = none)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reconstruction.json")
    args = ap.parse_args(argv)
    args.images = Path(args.images) if args.images else None  # (Path('') is '.', which is truthy)
    import torch

    torch.set_num_threads(args.threads)
    proc = procedural(args, torch)
    ph = {"skipped": "--no-photos"} if args.no_photos else photos(args, torch)
    secs = proc["seconds"] + [s for v in ph.values() if isinstance(v, dict) and "seconds" in v for s in v["seconds"]]
    cpu = proc["cpu_seconds"] + [s for v in ph.values() if isinstance(v, dict) and "cpu_seconds" in v
                                 for s in v["cpu_seconds"]]
    result = {"machine": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "threads": args.threads, "procedural": proc, "photos": ph,
              "seconds_per_image_median": statistics.median(secs),
              "cpu_seconds_per_image_median": statistics.median(cpu),
              "load_average": os.getloadavg(), "figures": FIGURES}
    print(f"procedural ground truth: {args.heads} heads, face-region PSNR dB mean (min) / SSIM mean")
    print(f"{'view':>10} | " + " | ".join(f"{v:>21}" for v in proc["variants"]))
    for name, _, _ in VIEWS:
        cells = [f"{d[name]['psnr_mean']:5.1f} ({d[name]['psnr_min']:4.1f}) / {d[name]['ssim_mean']:.3f}"
                 for d in proc["variants"].values()]
        fig = f"  (figure >= {FIGURES[name]:g} dB)" if name in FIGURES else ""
        print(f"{name:>10} | " + " | ".join(f"{c:>21}" for c in cells) + fig)
    print(f"gaze-label error max {proc['gaze_label_error_deg_max']:.2e} deg (0 by construction); head-pose error "
          f"median {proc['head_pose_error_deg']['median']:.2f} deg, max {proc['head_pose_error_deg']['max']:.2f} deg")
    for name in ("astronaut", "grace_hopper"):
        v = ph.get(name)
        if v:
            print(f"{name}: re-render at the source pose {v['psnr']:.1f} dB / SSIM {v['ssim']:.3f} (figure >= 28 dB); "
                  f"dlib {v['detector_s'] * 1000:.0f} ms; reconstruct median {statistics.median(v['seconds']):.3f} s")
    if "skipped" in ph:
        print(f"photos skipped: {ph['skipped']}")
    print(f"reconstruct() median {result['seconds_per_image_median']:.3f} s wall, "
          f"{result['cpu_seconds_per_image_median']:.3f} s CPU per image ({args.threads} threads, excluding decoding "
          f"and the landmark detector; figure <= 1 s; load average {os.getloadavg()[0]:.1f})")
    save_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
