"""Do real face models read the renders? dlib detection, landmark error and head pose fitted from detections
(``benchmarks/realism.py``, ``tests/reconstruct/test_realism.py``).

Renders come from the real path: a mesh cache (procedural heads, or photos reconstructed with dlib landmarks) and
:meth:`onthefly.dataset.OnTheFlyGazeDataset.render` at given head poses, camera and appearance. On each render:

* **detection**: dlib's HOG detector (upsample 1, :class:`~onthefly.reconstruct.landmarks.DlibLandmarks`) finds a
  face whose box contains the label's nose tip (30) and outer eye corners (36, 45);
* **NME**: mean point distance / outer-eye-corner distance (36-45) of the label, over the inner 51 points (17-67)
  and over the jaw (0-16), against the batch's ``landmarks_2d`` (iBUG semantics);
* **head pose**: :func:`~onthefly.reconstruct.pipeline.estimate_head_pose` (the reconstruction's own PnP + shape
  fit) of the detected landmarks, and of the exact label landmarks, against the rendered pose (the view's head
  rotation is ``Rot(pitch, yaw)`` exactly, zero roll). Bias = mean(estimate - truth), slope = least-squares slope of
  estimate on truth, error = angle between the fitted and the true rotation;
* **oracle** (:func:`oracle_pose`): the head pose of dlib's inner points knowing the rendered head's exact 3-D
  landmarks: the detector's share of the error, which no fitter removes.

Each fit weighs the landmarks against the shape prior with the noise of its source (``ReconstructOptions.sigma``,
a fraction of the eye-corner distance): dlib's points with the reconstruction's defaults (0.02, with the
per-landmark weights of ``DLIB_LANDMARK_NOISE`` and the jaw fitted across the outline), the exact labels with
:data:`LABEL_SIGMA`, uniform weights and a point-to-point jaw (float positions of the rendered mesh: the prior then
only fills what the points leave open). With the default noise on exact points the prior pulls the shape toward the
mean and the pose takes up the difference (``benchmarks/realism.py``: median error 0.84-1.15° instead of
0.32-0.39°).
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import torch

from ..dataset import OnTheFlyGazeDataset, batch_generator
from ..geometry import pitchyaw_to_rotation
from .landmarks import NoFaceError
from .pipeline import DETECTED_WEIGHTS, ReconstructOptions, estimate_head_pose

__all__ = ["render_views", "detect_views", "measure_views", "oracle_pose", "summarise", "nme", "pose_bins", "YAW_BINS", "LABEL_SIGMA"]

#: |yaw| bins (degrees) of the detection table
YAW_BINS = ((0.0, 15.0), (15.0, 30.0), (30.0, 45.0))
#: landmark noise (fraction of the eye-corner distance) of the head-pose fit to the exact label landmarks
LABEL_SIGMA = 0.001


def nme(pred: np.ndarray, label: np.ndarray, idx) -> float:
    """Mean distance over points ``idx`` divided by the label's outer-eye-corner distance (36-45)."""
    d = np.linalg.norm(label[45] - label[36])
    return float(np.linalg.norm(pred[idx] - label[idx], axis=1).mean() / d)


def render_views(cache, poses_deg: np.ndarray, frames: np.ndarray, *, camera="xgaze224", appearance="default",
                 seed: int = 0, labels: str = "landmarks_2d") -> dict:
    """Render ``frames`` (n,) local frame indices at head poses ``poses_deg`` (n,2) (pitch, yaw degrees) through
    :class:`~onthefly.dataset.OnTheFlyGazeDataset` → ``images`` (n,H,W,3) uint8, ``landmarks`` (n,68,2) (batch key
    ``labels``), ``K`` (3,3), ``poses`` (n,2) degrees."""
    ds = OnTheFlyGazeDataset(cache, batch_size=1, seed=seed, device="cpu", camera=camera, appearance=appearance,
                             tune_malloc=False)
    n = len(frames)
    poses = np.asarray(poses_deg, np.float64)
    app = ds.appearance.sample(n, batch_generator(seed, 0x5EA1), (ds.camera.height, ds.camera.width))
    out = ds.render(torch.as_tensor(np.asarray(frames), dtype=torch.int64),
                    torch.from_numpy(np.radians(poses)), app).as_dict()
    img = (out["image"].clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return {"images": np.ascontiguousarray(img), "landmarks": out[labels].double().numpy(),
            "K": ds.camera.K().numpy(), "poses": poses, "batch": out}


def _angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    return math.degrees(math.acos(np.clip((np.trace(Ra @ Rb.T) - 1) / 2, -1, 1)))


def _pitchyaw_deg(R: np.ndarray) -> np.ndarray:
    return np.degrees([math.asin(np.clip(R[1, 2], -1, 1)), math.atan2(R[0, 2], R[2, 2])])


def _rot(py_deg) -> np.ndarray:
    return pitchyaw_to_rotation(torch.tensor(np.radians(py_deg), dtype=torch.float64)).numpy()


def detect_views(views: dict, det) -> list[np.ndarray | None]:
    """dlib's 68 points (68,2) on each render of ``views``, or None where it finds no face: a box holding the
    label's nose tip (30) and both outer eye corners (36, 45) (not a false box on the nose), then the predictor."""
    out: list[np.ndarray | None] = []
    for img, lab in zip(views["images"], views["landmarks"]):
        key = lab[[30, 36, 45]]
        boxes = [b for b, _ in det.detect(img) if ((key[:, 0] >= b[0]) & (key[:, 0] <= b[2]) & (key[:, 1] >= b[1])
                                                    & (key[:, 1] <= b[3])).all()]
        lm = None
        if boxes:
            try:
                lm = np.asarray(det(img, boxes[0]), np.float64)
            except NoFaceError:
                lm = None
        out.append(lm)
    return out


def oracle_pose(landmarks: np.ndarray, landmarks_3d: np.ndarray, R_true: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Head rotation (3,3) from detected ``landmarks`` (68,2) knowing the rendered head's exact shape: iterative
    ``cv2.solvePnP`` of the inner 51 points against its true 3-D landmarks ``landmarks_3d`` (68,3, view frame; taken
    to the head frame with the true rotation ``R_true``), started at the truth. No fitter reaches further with these
    points, so its error against the truth is the detector's share (``benchmarks/realism.py``'s ``oracle``)."""
    X = np.asarray(landmarks_3d, np.float64)
    c = X[17:].mean(0)
    Xh = np.ascontiguousarray((X[17:] - c) @ R_true)
    ok, rvec, _ = cv2.solvePnP(Xh, np.ascontiguousarray(landmarks[17:, :2], np.float64), np.asarray(K, np.float64),
                               None, cv2.Rodrigues(np.asarray(R_true, np.float64))[0], c[:, None].copy(),
                               useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise ValueError("solvePnP failed")
    return cv2.Rodrigues(rvec)[0]


def measure_views(views: dict, det, *, options=None, label_options=None, detections=None) -> list[dict]:
    """Per render: ``detected``, ``nme51``, ``nme_jaw``, ``pose_det`` / ``pose_label`` (fitted pitch, yaw
    degrees) and ``err_det`` / ``err_label`` (degrees), ``truth`` (pitch, yaw), ``det_landmarks``. ``options``
    (:class:`~onthefly.reconstruct.pipeline.ReconstructOptions`, default: ``ReconstructOptions.detected()``, the
    reconstruction's for detected landmarks) fit dlib's points;
    ``label_options`` (default: ``options`` with ``sigma =`` :data:`LABEL_SIGMA` and the plain
    ``ReconstructOptions`` weighting: the labels are exact) fit the exact labels. ``detections``: :func:`detect_views`'s result
    when already run (then ``det`` is not used). With the batch in ``views`` (:func:`render_views`), also
    ``pose_oracle`` / ``err_oracle``: :func:`oracle_pose` of the detected points."""
    options = options or ReconstructOptions.detected()
    if label_options is None:
        plain = ReconstructOptions()  # the exact-landmark weighting: uniform, half on the jaw, point-to-point
        label_options = dataclasses.replace(options, sigma=LABEL_SIGMA,
                                            **{k: getattr(plain, k) for k in DETECTED_WEIGHTS})
    if detections is None:
        detections = detect_views(views, det)

    K = views["K"]
    size = views["images"].shape[2], views["images"].shape[1]

    def fit(landmarks, Rt, tag: str, opt) -> dict:
        """Head pose fitted from ``landmarks``: ``pose_<tag>`` (pitch, yaw deg) and ``err_<tag>`` (deg), or {}."""
        try:
            pose = estimate_head_pose(landmarks, K, opt, image_size=size)
        except ValueError:
            return {}
        return {f"pose_{tag}": _pitchyaw_deg(pose.R).tolist(), f"err_{tag}": _angle_deg(pose.R, Rt)}

    lab3d = views["batch"]["landmarks_3d"].double().numpy() if "batch" in views else [None] * len(detections)
    out = []
    for lab, py, lm, X in zip(views["landmarks"], views["poses"], detections, lab3d):
        rec = {"truth": [float(py[0]), float(py[1])], "detected": False}
        Rt = _rot(py)
        rec.update(fit(lab, Rt, "label", label_options))
        if lm is not None:
            rec.update(detected=True, det_landmarks=lm.tolist(), nme51=nme(lm, lab, slice(17, 68)),
                       nme_jaw=nme(lm, lab, slice(0, 17)))
            rec.update(fit(lm, Rt, "det", options))
            if X is not None:
                try:
                    Ro = oracle_pose(lm, X, Rt, K)
                    rec.update(pose_oracle=_pitchyaw_deg(Ro).tolist(), err_oracle=_angle_deg(Ro, Rt))
                except ValueError:
                    pass
        out.append(rec)
    return out


def _fit_stats(recs: list[dict], key: str) -> dict:
    rows = [r for r in recs if key in r]
    if len(rows) < 3:
        return {"n": len(rows)}
    t = np.array([r["truth"] for r in rows])
    e = np.array([r[key] for r in rows])
    err = np.array([r["err_" + key.split("_")[1]] for r in rows])
    res = {"n": len(rows), "median_error_deg": float(np.median(err))}
    for j, name in enumerate(("pitch", "yaw")):
        res[f"{name}_bias_deg"] = float((e[:, j] - t[:, j]).mean())
        tc = t[:, j] - t[:, j].mean()
        res[f"{name}_slope"] = float((tc * (e[:, j] - e[:, j].mean())).sum() / max((tc * tc).sum(), 1e-12))
    return res


def pose_bins(recs: list[dict]) -> dict:
    """Detection per |yaw| bin of :data:`YAW_BINS`: renders ``n``, ``found``, rate ``detected``."""
    out = {}
    for lo, hi in YAW_BINS:
        sel = [r for r in recs if lo <= abs(r["truth"][1]) < hi + (1e-9 if hi == YAW_BINS[-1][1] else 0)]
        out[f"{lo:g}-{hi:g}"] = {"n": len(sel), "found": sum(bool(r["detected"]) for r in sel),
                                 "detected": float(np.mean([r["detected"] for r in sel])) if sel else float("nan")}
    return out


def summarise(recs: list[dict]) -> dict:
    """Detection (overall, per yaw bin, |yaw| <= 30 with its count), median NME51 / jaw NME, pose statistics (detected and exact
    label landmarks)."""
    det = [r for r in recs if r["detected"]]
    le30 = [r for r in recs if abs(r["truth"][1]) <= 30.0]
    return {"n": len(recs), "detected": float(np.mean([r["detected"] for r in recs])),
            "detected_le30": float(np.mean([r["detected"] for r in le30])) if le30 else float("nan"),
            "n_le30": len(le30), "found_le30": sum(bool(r["detected"]) for r in le30),
            "bins": pose_bins(recs),
            "nme51_median": float(np.median([r["nme51"] for r in det])) if det else float("nan"),
            "nme51_mean": float(np.mean([r["nme51"] for r in det])) if det else float("nan"),
            "nme_jaw_median": float(np.median([r["nme_jaw"] for r in det])) if det else float("nan"),
            "pose_detected": _fit_stats(recs, "pose_det"), "pose_label": _fit_stats(recs, "pose_label"),
            "pose_oracle": _fit_stats(recs, "pose_oracle")}
