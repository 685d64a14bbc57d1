"""Write procedural frames in the MPII-NV / 3DDFA + MPIIFaceGaze layout, constructed so the lift is exact.

For a camera-frame mesh X (mm) with landmarks L: project into the original image (with distortion), map to a
120×120 crop with C, and write ``z = (‖X‖ − β)/α`` where α, β satisfy the importer's own definitions:
``α = peri(model6)/peri(lm6)`` and ``β = mean(‖Fc‖ − α·z6)``. The MPII 6-point model is posed with the true head
rotation and a translation chosen so that ``mean‖Fc‖ = mean‖L6‖`` (then β is self-consistent), and the annotated
2D points are its exact projections (so PnP recovers that pose).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import scipy.io

from onthefly.sources.nv_gaze import LM6, MPII_FACE_MODEL, perimeter6


def _project(X, K, dist):
    return cv2.projectPoints(np.asarray(X, np.float64).reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K,
                             dist)[0].reshape(-1, 2)


def write_nv_frame(rec, root: Path, ann: Path, subject: str, day: str, stem: str, dist=None,
                   gaze_xy=(640, 400), ref6=None, integer_landmarks=False):
    """``ref6``: the 6 reference points the lift's scale α uses (default the MPII model; MPII-NV: OpenFace's).
    ``integer_landmarks``: write pXX.txt's 12 landmark values as integers, as the real files do (the PnP pose then
    differs from the true one by the rounding; by default they are exact decimals)."""
    K = rec.K
    dist = np.zeros(5) if dist is None else np.asarray(dist, np.float64)
    X, L = rec.verts.astype(np.float64), rec.landmarks.astype(np.float64)
    hR = rec.head_rotation
    L6 = L[list(LM6)]
    c = L6.mean(0)
    chat = c / np.linalg.norm(c)
    t0 = c - hR @ MPII_FACE_MODEL.mean(0)
    target = np.linalg.norm(L6, axis=1).mean()
    lam = 0.0
    for _ in range(20):  # Newton on the offset along the ray: mean‖Fc‖ = mean‖L6‖
        Fc = MPII_FACE_MODEL @ hR.T + t0 + lam * chat
        n = np.linalg.norm(Fc, axis=1)
        lam -= (n.mean() - target) / (Fc @ chat / n).mean()
    Fc = MPII_FACE_MODEL @ hR.T + t0 + lam * chat
    lm2d = _project(Fc, K, dist)
    # crop: square ROI around the projected landmarks (3DDFA style), 120×120
    p = _project(L, K, dist)
    (x0, y0), (x1, y1) = p.min(0), p.max(0)
    side = np.hypot(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    x0, y0 = cx - side / 2, cy - side / 2
    s = side / 119
    C = np.array([[1 / s, 0, -x0 / s], [0, 1 / s, -y0 / s], [0, 0, 1]])

    def crop(P):
        q = np.concatenate([_project(P, K, dist), np.ones((len(P), 1))], 1) @ C.T
        return q[:, :2]

    uv6 = crop(L6)
    d6 = np.linalg.norm(L6, axis=1)
    beta = d6.mean()
    ref = perimeter6(MPII_FACE_MODEL if ref6 is None else ref6)
    lo, hi = 1e-4, 1e4
    for _ in range(200):  # α·peri(u, v, (d − β)/α) = peri(α u, α v, d − β) grows with α
        a = np.sqrt(lo * hi)
        if perimeter6(np.concatenate([a * uv6, (d6 - beta)[:, None]], 1)) < ref:
            lo = a
        else:
            hi = a
    alpha = np.sqrt(lo * hi)
    zX = (np.linalg.norm(X, axis=1) - beta) / alpha
    zL = (np.linalg.norm(L, axis=1) - beta) / alpha
    folder = root / subject / day
    folder.mkdir(parents=True, exist_ok=True)
    v = np.concatenate([crop(X), zX[:, None]], 1)
    with open(folder / f"{stem}.obj", "w") as fh:
        for (a_, b_, c_), (r, g, b) in zip(v, rec.vert_colors.astype(int)):
            fh.write(f"v {a_:.6f} {b_:.6f} {c_:.6f} {r} {g} {b}\n")
        for f in rec.faces[:, ::-1] + 1:  # 3DDFA writes faces reversed
            fh.write(f"f {f[0]} {f[1]} {f[2]}\n")
    np.savetxt(folder / f"{stem}_crop_params.txt", C, fmt="%.10f")
    np.savetxt(folder / f"{stem}_lm.txt", np.concatenate([crop(L), zL[:, None]], 1), fmt="%.6f")
    sub = ann / subject
    (sub / "Calibration").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(sub / "Calibration" / "Camera.mat", {"cameraMatrix": K, "distCoeffs": dist.reshape(1, -1)})
    rvec = cv2.Rodrigues(hR)[0].ravel()
    tvec = t0 + lam * chat - hR @ np.zeros(3)
    fields = [f"{day}/{stem}.jpg", *map(str, gaze_xy), *((str(int(round(x))) if integer_landmarks else f"{x:.9f}") for x in lm2d.ravel()),
              *(f"{x:.9f}" for x in rvec), *(f"{x:.9f}" for x in tvec), *(f"{x:.9f}" for x in Fc.mean(0)),
              *(f"{x:.9f}" for x in rec.gaze_target), "left"]
    with open(sub / f"{subject}.txt", "a") as fh:
        fh.write(" ".join(fields) + "\n")
    return {"face_centre": Fc.mean(0), "alpha": alpha, "beta": beta, "obj": folder / f"{stem}.obj",
            "txt": sub / f"{subject}.txt"}
