"""Head pose and geometry: the template posed by PnP, then warped so its landmarks project onto the observed ones.

* :func:`solve_head_pose`: ``cv2.solvePnP`` (EPnP, then Levenberg-Marquardt refinement) of the template's 3D
  landmarks against the observed 2D landmarks (undistorted pixels). The jaw contour (points 0-16) is left out of
  the pose: on a photo it is the silhouette, which slides over the face as the head turns. With an annotated
  head rotation only the translation is solved (linear least squares).
* :func:`fit_geometry`: every posed template vertex is projected into the image (pixel ``p``, depth ``z``); a 2-D
  thin-plate-spline warp (``scipy.interpolate.RBFInterpolator``, degree-1 polynomial) moves the 68 template
  landmark projections onto the observed landmarks, and each vertex is put back on the ray of its warped pixel at
  its own depth: ``X' = z' · K⁻¹ [p', 1]``. So the fitted landmarks project onto the observations (exactly with
  ``smoothing=0``), and depth comes from the template, or from 3-D landmarks when given (their relative depth,
  warped the same way, replaces the template's).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator

__all__ = ["HeadPose", "solve_head_pose", "fit_geometry", "POSE_LANDMARKS", "project", "normalized_coords"]

#: landmarks used for the head pose: everything but the jaw contour (0-16)
POSE_LANDMARKS = np.arange(17, 68)


def project(X: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection (N,3) camera-frame points → (N,2) pixels (OpenCV pixel centres, no distortion)."""
    q = X @ K.T
    return q[:, :2] / q[:, 2:3]


def normalized_coords(p: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N,2) pixels → (N,2) normalized image coordinates ``(K⁻¹ [p, 1])[:2]`` (the ray through p at z = 1)."""
    q = np.concatenate([p, np.ones((len(p), 1))], 1) @ np.linalg.inv(K).T
    return q[:, :2] / q[:, 2:3]


@dataclass
class HeadPose:
    """``R`` (3,3) head → camera, ``t`` (3,) mm, ``rms_px`` rigid reprojection error of the pose landmarks."""

    R: np.ndarray
    t: np.ndarray
    rms_px: float


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum(1).mean()))


def solve_head_pose(landmarks_2d: np.ndarray, K: np.ndarray, model: np.ndarray, *,
                    rotation: np.ndarray | None = None, use: np.ndarray = POSE_LANDMARKS) -> HeadPose:
    """Head pose of the 3D ``model`` landmarks (68,3, head frame) seen at ``landmarks_2d`` (68,2, undistorted px).

    With ``rotation`` (3,3, head → camera, e.g. from the dataset's annotations) only ``t`` is solved.
    Raises ``ValueError`` when the pose puts the face behind the camera.
    """
    obj = np.ascontiguousarray(model[use], np.float64)
    img = np.ascontiguousarray(landmarks_2d[use], np.float64)
    K = np.asarray(K, np.float64)
    if rotation is None:
        ok, rvec, tvec = cv2.solvePnP(obj, img, K, None, flags=cv2.SOLVEPNP_EPNP)
        if not ok:
            raise ValueError("solvePnP (EPnP) failed")
        if tvec[2, 0] <= 0:  # EPnP's mirror solution: start from a frontal face at the same distance instead
            rvec, tvec = np.zeros((3, 1)), np.array([[0.0], [0.0], [abs(float(tvec[2, 0])) + 1.0]])
        ok, rvec, tvec = cv2.solvePnP(obj, img, K, None, rvec, tvec, useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok:
            raise ValueError("solvePnP (iterative) failed")
        R = cv2.Rodrigues(rvec)[0]
        t = tvec[:, 0]
    else:
        R = np.asarray(rotation, np.float64)
        # x_i = (fx (RX+t)_x + cx (RX+t)_z) / (RX+t)_z  ->  linear in t
        RX = obj @ R.T
        n = normalized_coords(img, K)
        A = np.zeros((2 * len(obj), 3))
        b = np.zeros(2 * len(obj))
        A[0::2, 0], A[0::2, 2] = 1.0, -n[:, 0]
        A[1::2, 1], A[1::2, 2] = 1.0, -n[:, 1]
        b[0::2] = n[:, 0] * RX[:, 2] - RX[:, 0]
        b[1::2] = n[:, 1] * RX[:, 2] - RX[:, 1]
        t = np.linalg.lstsq(A, b, rcond=None)[0]
    Xc = model @ R.T + t
    if (Xc[:, 2] <= 0).any():
        raise ValueError("the head pose puts landmarks behind the camera")
    return HeadPose(R=R, t=t, rms_px=_rms(project(Xc[use], K), landmarks_2d[use]))


def _relative_depth(depth_obs: np.ndarray, z_model: np.ndarray, mm_per_unit: float) -> np.ndarray:
    """Observed relative landmark depths (any sign convention, ``mm_per_unit`` mm per unit) as camera depths (mm):
    the sign that correlates with the template's depths, offset to the template's mean depth."""
    d = np.asarray(depth_obs, np.float64) * mm_per_unit
    if np.corrcoef(d, z_model)[0, 1] < 0:
        d = -d
    return d - d.mean() + z_model.mean()


def fit_geometry(template_verts: np.ndarray, landmark_ids, pose: HeadPose, K: np.ndarray,
                 landmarks_2d: np.ndarray, *, depth: np.ndarray | None = None, depth_scale: float | None = None,
                 smoothing: float = 0.0) -> np.ndarray:
    """Fitted vertices (V,3) in the camera frame (mm); see the module docstring.

    ``landmark_ids`` (68,) vertex ids, or a correspondence ``(a, b, w)`` (68,) each: landmark i is the blend
    ``(1 - w) X[a] + w X[b]`` (the silhouette points of the contour-aware fit).
    ``depth`` (68,) optional relative landmark depths in units of ``depth_scale`` mm (default: pixels at the
    face's distance, ``z̄ / f``, as 3D-FAN outputs them); either sign convention. ``smoothing`` is the
    ``RBFInterpolator`` smoothing (px²): 0 interpolates the landmarks exactly.
    """
    K = np.asarray(K, np.float64)
    X = template_verts @ pose.R.T + pose.t
    z = X[:, 2]
    p = project(X, K)
    if isinstance(landmark_ids, tuple):
        a, b, wt = (np.asarray(v) for v in landmark_ids)
    else:
        a = b = np.asarray(landmark_ids)
        wt = np.zeros(len(a))
    src = p[a] * (1 - wt[:, None]) + p[b] * wt[:, None]
    vals = [landmarks_2d - src]
    if depth is not None:
        zl = z[a] * (1 - wt) + z[b] * wt
        scale = depth_scale if depth_scale is not None else float(zl.mean() / K[0, 0])
        vals.append((_relative_depth(depth, zl, scale) - zl)[:, None])
    # landmarks at the same model point (the closed mouth's inner lips 61-63 / 67-65) become one centre
    # with the mean target (duplicate centres make the spline system singular)
    _, first, inv = np.unique(np.round(src, 6), axis=0, return_index=True, return_inverse=True)
    inv = inv.ravel()
    y = np.concatenate(vals, 1)
    y_u = np.zeros((len(first), y.shape[1]))
    np.add.at(y_u, inv, y)
    y_u /= np.bincount(inv, minlength=len(first))[:, None]
    rbf = RBFInterpolator(src[first], y_u, kernel="thin_plate_spline", degree=1, smoothing=smoothing)
    out = rbf(p)
    p2 = p + out[:, :2]
    z2 = z + out[:, 2] if depth is not None else z
    rays = np.concatenate([normalized_coords(p2, K), np.ones((len(p2), 1))], 1)
    return rays * z2[:, None]
