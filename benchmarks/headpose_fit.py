#!/usr/bin/env python
"""Head pose from cached detections (issue 17): the reconstruction's pose + shape fit evaluated in seconds on the
dlib points that ``benchmarks/realism.py --save-detections`` saved, and the per-landmark detector noise the fit
weighs the points with (``onthefly.reconstruct.pipeline.DLIB_LANDMARK_NOISE``) measured on them.

Renders are deterministic, so dlib runs once (``realism.py``, ~3 min) and every fitter variant is evaluated on the
saved points. Per setting of the file: head pose fitted by ``estimate_head_pose`` with each variant against the
rendered pose (pitch / yaw bias and slope, median rotation error), and ``oracle``: ``cv2.solvePnP`` of dlib's inner
51 points against the **true** 3-D landmarks of the rendered head (its exact shape): what any fitter reaches with
these points, so the rest of the error is the detector's.

``--floor``: where the oracle's error lives. Per setting, the rotation from the truth to the oracle's pose as a
rotation vector in the camera's axes (x ~ pitch, y ~ yaw, z ~ roll; degrees): its mean, its spread, and its spread
left after a linear fit on the true pitch and yaw (what no pose-dependent correction can remove); and the
oracle's median error again with per-landmark 3-D offsets (head frame) fitted to the same renders, an optimistic
bound of a calibrated landmark embedding.

``--noise``: the per-landmark noise of dlib's points (robust RMS distance to the label, fraction of the outer-eye-
corner distance, after the 2-D similarity that best aligns the inner 51 points, mirror pairs averaged; points
outside the image left out), printed as the table ``DLIB_LANDMARK_NOISE`` holds. It was measured on the
**calibration** renders, not the benchmark's (identities ``--head-seed 11``, poses ``--seed 1``)::

    python benchmarks/realism.py --head-seed 11 --seed 1 --heads 24 --renders 160 --no-photos --sheet '' \\
        --out /tmp/calib.json --save-detections /tmp/calib.npz
    python benchmarks/headpose_fit.py /tmp/calib.npz --noise
    python benchmarks/realism.py --save-detections /tmp/bench.npz      # the benchmark's renders (seeds 3 / 0)
    python benchmarks/headpose_fit.py /tmp/bench.npz
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: iBUG-68 mirror partner of each landmark (left <-> right)
MIRROR = np.array(list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30, 35, 34, 33, 32, 31]
                  + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
                  + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65])
FIELDS = ("det", "label", "label_3d", "poses", "K", "size")


def load(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """The settings of a ``realism.py --save-detections`` file: {setting: {field: array}}."""
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise SystemExit(f"{path}: not a realism.py --save-detections .npz ({exc})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise SystemExit(f"{path}: a single array, not a realism.py --save-detections .npz")
    with z:
        keys = sorted({k.rsplit("/", 1)[0] for k in z.files})
        out = {}
        for k in keys:
            missing = [f for f in FIELDS if f"{k}/{f}" not in z.files]
            if missing:
                raise SystemExit(f"{path}: setting {k!r} lacks {missing} (not a realism.py --save-detections file?)")
            try:
                out[k] = {f: z[f"{k}/{f}"] for f in FIELDS}
            except (OSError, ValueError, zipfile.BadZipFile) as exc:
                raise SystemExit(f"{path}: setting {k!r} unreadable ({exc})") from None
    if not out:
        raise SystemExit(f"{path}: no settings (not a realism.py --save-detections file?)")
    return out


def landmark_noise(settings: dict) -> np.ndarray:
    """(68,) robust RMS error of the detected points (fraction of the eye-corner distance; see the docstring)."""
    errs = []
    for S in settings.values():
        w, h = S["size"]
        for det, lab in zip(S["det"], S["label"]):
            if np.isnan(det[0, 0]):
                continue
            iod = np.linalg.norm(lab[45] - lab[36])
            za = (det[:, 0] - det[17:, 0].mean()) + 1j * (det[:, 1] - det[17:, 1].mean())
            zb = (lab[:, 0] - lab[17:, 0].mean()) + 1j * (lab[:, 1] - lab[17:, 1].mean())
            s = (np.conj(za[17:]) @ zb[17:]) / (np.conj(za[17:]) @ za[17:])
            e = np.abs(s * za - zb) / iod
            inside = (lab[:, 0] > 2) & (lab[:, 1] > 2) & (lab[:, 0] < w - 3) & (lab[:, 1] < h - 3)
            errs.append(np.where(inside, e, np.nan))
    if not errs:
        raise SystemExit("no detections in the file")
    E = np.array(errs)
    rms = np.sqrt(np.nanmedian(E ** 2, 0))
    return np.sqrt((rms ** 2 + rms[MIRROR] ** 2) / 2)


def _stats(truth: np.ndarray, est: np.ndarray, err: np.ndarray) -> dict:
    res = {"n": len(truth), "median_error_deg": float(np.median(err)) if len(err) else float("nan")}
    for j, name in enumerate(("pitch", "yaw")):
        res[f"{name}_bias_deg"] = float((est[:, j] - truth[:, j]).mean())
        tc = truth[:, j] - truth[:, j].mean()
        res[f"{name}_slope"] = float((tc * (est[:, j] - est[:, j].mean())).sum() / max((tc * tc).sum(), 1e-12))
    return res


def evaluate(S: dict, fit) -> dict:
    """Pose statistics of ``fit(landmarks, K, size, i) -> R`` over the detected renders of setting ``S``."""
    from onthefly.reconstruct.realism import _angle_deg, _pitchyaw_deg, _rot

    T, E, Er = [], [], []
    for i in np.flatnonzero(~np.isnan(S["det"][:, 0, 0])):
        try:
            R = fit(S["det"][i], S["K"], tuple(int(v) for v in S["size"]), i)
        except ValueError:
            continue
        T.append(S["poses"][i])
        E.append(_pitchyaw_deg(R))
        Er.append(_angle_deg(R, _rot(S["poses"][i])))
    return _stats(np.array(T).reshape(-1, 2), np.array(E).reshape(-1, 2), np.array(Er))


def oracle_fit(S: dict):
    """:func:`~onthefly.reconstruct.realism.oracle_pose`: dlib's inner points against the true 3-D landmarks."""
    from onthefly.reconstruct.realism import _rot, oracle_pose

    return lambda lm, K, size, i: oracle_pose(lm, S["label_3d"][i], _rot(S["poses"][i]), K)


def variants() -> dict:
    """Named fitter variants: ``ReconstructOptions`` of the pose + shape fit."""
    from onthefly.reconstruct.pipeline import ReconstructOptions

    d = ReconstructOptions.detected()
    return {"detected (default)": d,
            "uniform (before)": ReconstructOptions(),
            "noise, point-to-point jaw": dataclasses.replace(d, jaw_tangent=1.0),
            "no jaw": dataclasses.replace(d, jaw_weight=0.0)}


def _oracle_data(S: dict) -> list[tuple]:
    """Per detected render: (dlib's points, true landmarks in the head frame about their inner centroid, true
    rotation, that centroid in the camera, K)."""
    from onthefly.reconstruct.realism import _rot

    out = []
    for i in np.flatnonzero(~np.isnan(S["det"][:, 0, 0])):
        X = S["label_3d"][i].astype(np.float64)
        R = _rot(S["poses"][i])
        c = X[17:].mean(0)
        out.append((S["det"][i].astype(np.float64), (X - c) @ R, R, c, S["K"].astype(np.float64)))
    return out


def landmark_offsets(data: list[tuple]) -> np.ndarray:
    """(68,3) per-landmark offsets (head frame, mm; 0 on the jaw) that best move the true landmarks to where the
    detector put them across ``data`` (robust least squares of the reprojection)."""
    from scipy.optimize import least_squares

    D = np.zeros((68, 3))
    for lm in range(17, 68):
        def res(d, lm=lm):
            r = []
            for det, Xh, R, c, K in data:
                q = K @ (R @ (Xh[lm] + d) + c)
                r.append(q[:2] / q[2] - det[lm])
            return np.ravel(r)
        D[lm] = least_squares(res, np.zeros(3), loss="soft_l1", f_scale=2.0).x
    return D


def floor(S: dict) -> dict:
    """The ``--floor`` statistics of setting ``S`` (see the module docstring)."""
    import cv2

    from onthefly.reconstruct.realism import _angle_deg, oracle_pose

    data = _oracle_data(S)
    if len(data) < 4:
        return {"n": len(data)}
    # the oracle of realism.py, on the true landmarks and on the true landmarks moved by the fitted offsets
    E = np.degrees([cv2.Rodrigues(oracle_pose(det, Xh @ R.T + c, R, K) @ R.T)[0][:, 0] for det, Xh, R, c, K in data])
    truth = S["poses"][np.flatnonzero(~np.isnan(S["det"][:, 0, 0]))]
    A = np.c_[np.ones(len(data)), truth]
    resid = E - A @ np.linalg.lstsq(A, E, rcond=None)[0]
    D = landmark_offsets(data)
    err_off = [_angle_deg(oracle_pose(det, (Xh + D) @ R.T + c, R, K), R) for det, Xh, R, c, K in data]
    return {"n": len(data), "mean_deg": E.mean(0).tolist(), "std_deg": E.std(0).tolist(),
            "residual_std_deg": resid.std(0).tolist(),
            "oracle_median_deg": float(np.median(np.linalg.norm(E, axis=1))),
            "with_offsets_median_deg": float(np.median(err_off))}


def _fmt(r: dict) -> str:
    if r["n"] < 3:
        return f"n {r['n']:3d}"
    return (f"n {r['n']:3d} | {r['pitch_bias_deg']:+5.1f} {r['pitch_slope']:4.2f} | {r['yaw_bias_deg']:+5.1f} "
            f"{r['yaw_slope']:4.2f} | {r['median_error_deg']:5.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("detections", type=Path, help="a realism.py --save-detections .npz")
    ap.add_argument("--noise", action="store_true", help="print the per-landmark noise table and exit")
    ap.add_argument("--floor", action="store_true", help="print where the oracle's error lives and exit")
    ap.add_argument("--only", default="", help="settings whose name contains this")
    args = ap.parse_args(argv)
    if not args.detections.is_file():
        ap.error(f"{args.detections}: no such file")
    from onthefly.reconstruct.pipeline import estimate_head_pose

    settings = {k: v for k, v in load(args.detections).items() if args.only in k}
    if args.noise:
        sd = landmark_noise(settings)
        print(f"DLIB_LANDMARK_NOISE (fraction of the eye-corner distance), {len(settings)} settings of "
              f"{args.detections}:")
        print("(" + ",\n ".join(", ".join(f"{v:.3f}" for v in sd[i:i + 17]) for i in range(0, 68, 17)) + ")")
        return 0
    if args.floor:
        print(f"{'setting':>28} |   n | oracle error as a rotation vector x / y / z (deg): mean | spread | spread "
              f"left by a linear fit on pitch, yaw | median error: oracle, with fitted offsets")
        for key, S in settings.items():
            r = floor(S)
            if "mean_deg" not in r:
                print(f"{key:>28} | {r['n']:3d} | too few detections")
                continue
            f3 = " / ".join
            print(f"{key:>28} | {r['n']:3d} | {f3(f'{v:+5.1f}' for v in r['mean_deg'])} | "
                  f"{f3(f'{v:4.1f}' for v in r['std_deg'])} | {f3(f'{v:4.1f}' for v in r['residual_std_deg'])} | "
                  f"{r['oracle_median_deg']:4.1f}, {r['with_offsets_median_deg']:4.1f}", flush=True)
        return 0
    print(f"{'setting':>28} {'variant':>26} |   n | pitch bias, slope | yaw bias, slope | median err (deg)")
    for key, S in settings.items():
        for name, opt in variants().items():
            t0 = time.perf_counter()
            r = evaluate(S, lambda lm, K, size, i, opt=opt: estimate_head_pose(lm, K, opt, image_size=size).R)
            print(f"{key:>28} {name:>26} | {_fmt(r)}   ({time.perf_counter() - t0:.0f} s)", flush=True)
        print(f"{key:>28} {'oracle shape (PnP)':>26} | {_fmt(evaluate(S, oracle_fit(S)))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
