"""``nv-gaze`` source: MPII-NV / 3DDFA meshes lifted into metric camera space with MPIIFaceGaze annotations.

Inputs (``--input`` = 3DDFA output root, ``--annotations`` = MPIIFaceGaze root):

* ``pXX/dayYY/NNNN.obj``: ``v x y z r g b`` — x, y in 120×120 **crop pixels**, ``z = −z_3ddfa`` (crop-pixel units,
  larger = farther from the camera), r g b uint8 RGB; ``f`` lines 1-based (3DDFA writes them in reversed order;
  the winding is kept exactly as in the file). One topology for every mesh (deduplicated in the cache).
* ``pXX/dayYY/NNNN_crop_params.txt``: 3×3 ``C`` mapping original-image pixels to crop pixels.
* ``pXX/dayYY/NNNN_lm.txt``: 68×3 landmarks in the same crop frame as the OBJ.
* ``<annotations>/pXX/pXX.txt``: one line per image, 28 whitespace-separated fields (MPIIFaceGaze readme):
  image path (``dayYY/NNNN.jpg``), 2D gaze target on the screen (2), 6 facial landmarks (12: 4 eye corners, 2 mouth
  corners, pixels of the original image), head rotation rvec (3), head translation (3), face centre (3), 3D gaze
  target (3, camera frame, mm), evaluation eye (``left``/``right``).
* ``<annotations>/pXX/Calibration/Camera.mat``: ``cameraMatrix`` (3×3) and ``distCoeffs``.

The lift ("projective matching", anchor-pipelines §2.2), re-implemented:

1. Head pose: ``cv2.solvePnP`` (EPnP, then iterative refinement) of the 6 annotated 2D points with the MPIIGaze
   6-point face model ``MPII_FACE_MODEL`` and the camera's distortion → ``hR`` (head → camera; the head frame is the
   6-point model frame: x toward the subject's left, y down, z into the head), ``t``, posed points ``Fc = hR·M + t``.
   ``head_pose="annotation"`` takes rvec/tvec from ``pXX.txt`` instead (the dataset's own fit of the same model).
2. ``α = peri(ref6) / peri(lm6)`` (mm per crop unit), where ``lm6`` are 3DDFA landmarks 36, 39, 42, 45, 48, 54
   (3D, crop units) and ``peri`` is the mean of the 3 pairwise distances between the right-eye centre (mean of
   points 0, 1), the left-eye centre (2, 3) and the mouth centre (4, 5). NV uses the OpenFace 68-point mean shape as
   ``ref6``; it is not public, so the reference here is the same 6-point MPII model (``reference6`` overrides it).
3. ``β = mean_i(‖Fc_i‖ − α·z_i)`` over the 6 points, with ``z_i`` the OBJ/lm z of landmark i as written
   (``z = −z_3ddfa``, so depth grows with z).
4. Every vertex and landmark goes to ``X = (α·z + β)·r̂``, the Euclidean distance along the viewing ray of its
   original-image pixel ``C⁻¹·[u, v, 1]``: ``r = K⁻¹·p`` after undistorting ``p`` with ``distCoeffs``
   (``undistort=False`` reproduces NV, which ignores the distortion).

Labels: head rotation ``hR`` from step 1; face centre = mean of the 6 posed model points ``Fc`` (rule
``eye_mouth``, as MPIIFaceGaze); gaze target = the annotated 3D target; landmarks = the lifted 68 3DDFA landmarks;
K = ``cameraMatrix``; image size 1280×720 (MPIIFaceGaze) unless given. Ids: subject ``pXX``, frame ``dayYY/NNNN``,
camera ``""``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..meshio import read_obj
from .base import FrameRecord, SourceError, read_lines

__all__ = ["NVGazeSource", "MPII_FACE_MODEL", "perimeter6", "lift_crop_points", "LM6"]

#: MPIIGaze 6-point face model (mm, rows: right-eye outer/inner corner, left-eye inner/outer corner, right/left mouth
#: corner), from anchor-pipelines §1.1
MPII_FACE_MODEL = np.array([
    [-45.096768, -0.483773, 2.397030],
    [-21.312858, 0.483773, -2.397030],
    [21.312858, 0.483773, -2.397030],
    [45.096768, -0.483773, 2.397030],
    [-26.299577, 68.595035, 0.0],
    [26.299577, 68.595035, 0.0],
])
#: iBUG-68 indices of the 6 model points
LM6 = (36, 39, 42, 45, 48, 54)
N_FIELDS = 28


def perimeter6(p6: np.ndarray) -> float:
    """Mean of the 3 pairwise distances between right-eye centre, left-eye centre and mouth centre of 6 points."""
    p6 = np.asarray(p6, np.float64)
    a, b, c = p6[0:2].mean(0), p6[2:4].mean(0), p6[4:6].mean(0)
    return float((np.linalg.norm(a - b) + np.linalg.norm(b - c) + np.linalg.norm(a - c)) / 3)


def lift_crop_points(pts: np.ndarray, C: np.ndarray, K: np.ndarray, dist: np.ndarray | None, alpha: float,
                     beta: float) -> np.ndarray:
    """Crop-frame points (N,3) (u, v, z) → camera frame mm: ``(α·z + β)·unit(ray of C⁻¹·[u, v, 1])``."""
    import cv2

    pts = np.asarray(pts, np.float64)
    orig = np.concatenate([pts[:, :2], np.ones((len(pts), 1))], 1) @ np.linalg.inv(C).T
    orig = orig[:, :2] / orig[:, 2:]
    if dist is not None and np.any(dist):
        n = cv2.undistortPoints(orig.reshape(-1, 1, 2), K, dist).reshape(-1, 2)
    else:
        n = (orig - K[:2, 2]) @ np.linalg.inv(K[:2, :2]).T
    ray = np.concatenate([n, np.ones((len(n), 1))], 1)
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    return (alpha * pts[:, 2:3] + beta) * ray


def _read_matrix(path: Path, shape: tuple[int, int], what: str) -> np.ndarray:
    lines = read_lines(path, f"{what} file")
    rows = [(i, ln.split()) for i, ln in enumerate(lines, 1) if ln.strip() and not ln.lstrip().startswith("#")]
    if len(rows) != shape[0]:
        raise SourceError(f"{path}: expected {shape[0]} rows of {shape[1]} numbers ({what}), got {len(rows)} rows")
    out = np.empty(shape)
    for k, (lineno, t) in enumerate(rows):
        if len(t) != shape[1]:
            raise SourceError(f"{path}:{lineno}: expected {shape[1]} numbers, got {len(t)}")
        try:
            out[k] = [float(x) for x in t]
        except ValueError:
            raise SourceError(f"{path}:{lineno}: not a number in {' '.join(t)!r}") from None
        if not np.isfinite(out[k]).all():
            raise SourceError(f"{path}:{lineno}: NaN or inf")
    return out


class NVGazeSource:
    """3DDFA meshes + MPIIFaceGaze annotations (see the module docstring)."""

    name = "nv-gaze"

    def __init__(self, root: str | Path, annotations: str | Path, *, reference6: np.ndarray | None = None,
                 undistort: bool = True, image_size: tuple[int, int] = (1280, 720), head_pose: str = "pnp"):
        self.root, self.ann_root = Path(root), Path(annotations)
        if not self.root.is_dir():
            raise SourceError(f"{self.root}: 3DDFA output folder not found")
        if not self.ann_root.is_dir():
            raise SourceError(f"{self.ann_root}: MPIIFaceGaze folder not found")
        self.reference6 = MPII_FACE_MODEL if reference6 is None else np.asarray(reference6, np.float64)
        if self.reference6.shape != (6, 3):
            raise ValueError(f"reference6: expected (6, 3), got {self.reference6.shape}")
        if head_pose not in ("pnp", "annotation"):
            raise ValueError(f"head_pose: expected 'pnp' or 'annotation', got {head_pose!r}")
        self.undistort, self.image_size, self.head_pose = undistort, image_size, head_pose
        objs = []
        for p in sorted(self.root.rglob("*.obj")):
            rel = p.relative_to(self.root).parts
            if len(rel) == 3:
                objs.append(p)
        if not objs:
            raise SourceError(f"{self.root}: no meshes in the pXX/dayYY/NNNN.obj layout")
        self.paths = objs
        self._ann: dict[str, dict] = {}
        self._cam: dict[str, tuple] = {}

    def keys(self) -> list[str]:
        return [str(p.relative_to(self.root)) for p in self.paths]

    # ------------------------------------------------------------------ annotations
    def _annotations(self, subject: str) -> tuple[Path, dict]:
        if subject not in self._ann:
            path = self.ann_root / subject / f"{subject}.txt"
            lines = read_lines(path, f"annotation file (subject {subject})")
            rows: dict = {}
            for lineno, line in enumerate(lines, 1):
                t = line.split()
                if not t:
                    continue
                name = t[0].replace("\\", "/")
                parts = name.split("/")
                if len(parts) >= 3 and parts[-3] != subject:
                    rows.setdefault("__mismatch__", []).append((lineno, parts[-3], "/".join(parts[-2:])))
                    continue
                key = "/".join(parts[-2:])
                rows[key] = (lineno, t)
            self._ann[subject] = {"path": path, "rows": rows}
        a = self._ann[subject]
        return a["path"], a["rows"]

    def _camera(self, subject: str) -> tuple[np.ndarray, np.ndarray]:
        if subject not in self._cam:
            from .._isolated import load_mat_arrays

            path = self.ann_root / subject / "Calibration" / "Camera.mat"
            if not path.is_file():
                raise SourceError(f"{path}: camera calibration not found (subject {subject})")
            try:  # in a forked child: scipy's MAT reader can segfault on a corrupt file
                m = load_mat_arrays(path, ("cameraMatrix", "distCoeffs"))
            except Exception as exc:  # scipy raises several types for corrupt files
                raise SourceError(f"{path}: cannot read ({exc})") from None
            if "cameraMatrix" not in m:
                raise SourceError(f"{path}: no 'cameraMatrix'")
            K = np.asarray(m["cameraMatrix"], np.float64)
            dist = np.asarray(m.get("distCoeffs", np.zeros(5)), np.float64).reshape(-1)
            if K.shape != (3, 3) or not np.isfinite(K).all() or not np.isfinite(dist).all():
                raise SourceError(f"{path}: cameraMatrix must be a finite 3x3 matrix")
            self._cam[subject] = (K, dist)
        return self._cam[subject]

    def _row(self, subject: str, day: str, stem: str):
        path, rows = self._annotations(subject)
        key = f"{day}/{stem}.jpg"
        for lineno, other, name in rows.get("__mismatch__", []):
            if name == key:
                raise SourceError(f"{path}:{lineno}: image {other}/{name} belongs to subject {other}, "
                                  f"not {subject} (mismatched subject)")
        if key not in rows:
            raise SourceError(f"{path}: no annotation row for {key} (needed by {subject}/{day}/{stem}.obj)")
        lineno, t = rows[key]
        if len(t) != N_FIELDS:
            raise SourceError(f"{path}:{lineno}: expected {N_FIELDS} fields, got {len(t)}")
        try:
            vals = np.array([float(x) for x in t[1:27]])
        except ValueError:
            raise SourceError(f"{path}:{lineno}: malformed annotation row (not a number)") from None
        if not np.isfinite(vals).all():
            raise SourceError(f"{path}:{lineno}: annotation row contains NaN or inf")
        return {"lm2d": vals[2:14].reshape(6, 2), "rvec": vals[14:17], "tvec": vals[17:20],
                "face_centre": vals[20:23], "gaze_target": vals[23:26], "eye": t[27], "where": f"{path}:{lineno}"}

    # ------------------------------------------------------------------ frames
    def load(self, key: str) -> FrameRecord:
        import cv2

        obj = self.root / key
        subject, day, name = Path(key).parts
        stem = Path(name).stem
        row = self._row(subject, day, stem)
        K, dist = self._camera(subject)
        C = _read_matrix(obj.with_name(f"{stem}_crop_params.txt"), (3, 3), "crop params")
        if abs(np.linalg.det(C)) < 1e-12:
            raise SourceError(f"{obj.with_name(stem + '_crop_params.txt')}: crop matrix is singular")
        lm_path = obj.with_name(f"{stem}_lm.txt")
        lm_crop = _read_landmarks(lm_path)
        mesh = read_obj(obj, with_texture=False)
        if mesh.colors is None:
            raise SourceError(f"{obj}: no vertex colours (expected 'v x y z r g b' lines)")
        if self.head_pose == "annotation":
            ok, rvec, tvec = True, row["rvec"].reshape(3, 1), row["tvec"].reshape(3, 1)
        else:
            ok, rvec, tvec = cv2.solvePnP(MPII_FACE_MODEL, row["lm2d"], K, dist, flags=cv2.SOLVEPNP_EPNP)
        if ok and self.head_pose == "pnp":
            ok, rvec, tvec = cv2.solvePnP(MPII_FACE_MODEL, row["lm2d"], K, dist, rvec, tvec,
                                          useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok or not np.isfinite(rvec).all():
            raise SourceError(f"{row['where']}: head pose (PnP of the 6 landmarks) failed")
        hR = cv2.Rodrigues(rvec)[0]
        Fc = MPII_FACE_MODEL @ hR.T + tvec.reshape(1, 3)
        if (Fc[:, 2] <= 0).any():
            raise SourceError(f"{row['where']}: the fitted face model lies behind the camera")
        lm6 = lm_crop[list(LM6)]
        p = perimeter6(lm6)
        if p <= 1e-9:
            raise SourceError(f"{lm_path}: degenerate landmarks (eye and mouth centres coincide)")
        alpha = perimeter6(self.reference6) / p
        beta = float(np.mean(np.linalg.norm(Fc, axis=1) - alpha * lm6[:, 2]))
        d = None if not self.undistort else dist
        verts = lift_crop_points(mesh.verts, C, K, d, alpha, beta)
        landmarks = lift_crop_points(lm_crop, C, K, d, alpha, beta)
        return FrameRecord(
            verts=verts.astype(np.float32), faces=mesh.faces, vert_colors=mesh.colors, landmarks=landmarks,
            head_rotation=hR, face_centre=Fc.mean(0), face_centre_rule="eye_mouth",
            gaze_target=row["gaze_target"], K=K, image_size=self.image_size, subject=subject,
            frame=f"{day}/{stem}", camera="", origin=str(obj),
            extra={"alpha": alpha, "beta": beta, "eye": row["eye"]})


def _read_landmarks(path: Path) -> np.ndarray:
    lines = [ln for ln in read_lines(path, "landmark file") if ln.strip()]
    if len(lines) != 68:
        raise SourceError(f"{path}: expected 68 landmarks (rows of x y z), got {len(lines)}")
    return _read_matrix(path, (68, 3), "landmarks")
