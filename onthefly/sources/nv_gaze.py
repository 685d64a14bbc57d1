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
   points 0, 1), the left-eye centre (2, 3) and the mouth centre (4, 5). ``ref6`` = the same 6 points of the
   **OpenFace 68-point model** (``openface``: MPII-NV's ``OpenFace.txt``, user-supplied, 68×3 mm), as MPII-NV
   does. Without it the MPII 6-point model is the fallback, with a warning: its perimeter is 72.94 mm against
   OpenFace's 70.70 mm, so α and the lifted depth relief are 3.17 % too large (:data:`FALLBACK_RELIEF_ERROR`).
3. ``β = mean_i(‖Fc_i‖ − α·z_i)`` over the 6 points, with ``z_i`` the OBJ/lm z of landmark i as written
   (``z = −z_3ddfa``, so depth grows with z).
4. Every vertex and landmark goes to ``X = (α·z + β)·r̂``, the Euclidean distance along the viewing ray of its
   original-image pixel ``C⁻¹·[u, v, 1]``: ``r = K⁻¹·p`` after undistorting ``p`` with ``distCoeffs``
   (``undistort=False`` reproduces NV, which ignores the distortion).

Labels: face centre = mean of the 6 posed model points ``Fc`` (rule ``eye_mouth``, as MPIIFaceGaze and MPII-NV);
gaze target = the annotated 3D target; landmarks = the lifted 68 3DDFA landmarks; K = ``cameraMatrix``; image size
1280×720 (MPIIFaceGaze) unless given. Ids: subject ``pXX``, frame ``dayYY/NNNN``, camera ``""``.

Head rotation: MPII-NV normalizes with ``R`` built from the 6-point ``hR`` (step 1) but takes the head-pose
**label** from a second PnP (EPnP + iterative, with distortion) of the OpenFace 68-point model on the dlib 68
landmarks stored in ``source_supply/pXX.h5`` (``landmarks_2d_detect``): ``label = pitchyaw(R·hR_68)``. The record
stores ``hR = Rᵀ·Rot(label)`` (``Rot(p, y) = Ry(y)·Rx(−p)``), the zero-roll head whose normalization rotation is
exactly MPII-NV's ``R`` and whose label is exactly MPII-NV's. Without ``source_supply`` (or without the OpenFace
model) the head rotation is the 6-point ``hR`` (``head_pose="annotation"``: pXX.txt's rvec).

Frames: with ``source_supply`` (a ``pXX.h5`` file or the folder of them) only its sources, 1500 per person, in that
file's order (MPII-NV's set; a source without an OBJ is reported and skipped, as MPII-NV writes nothing for it);
without, every ``pXX/dayYY/NNNN.obj``. ``undistort=False`` (``--no-undistort``) reproduces MPII-NV exactly (it
ignores the distortion of the rays); the default undistorts them (more accurate geometry, labels unchanged).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from ..meshio import read_obj
from ..normalization import normalization_rotation
from .base import FrameRecord, SourceError, read_lines
from .readers import read_camera_mat, read_mpii_annotation, read_openface_model, read_source_supply
from .registry import need, register

__all__ = ["NVGazeSource", "MPII_FACE_MODEL", "perimeter6", "lift_crop_points", "LM6", "FALLBACK_RELIEF_ERROR",
           "nv_head_label"]

#: MPIIGaze 6-point face model (mm, rows: right-eye outer/inner corner, left-eye inner/outer corner, right/left mouth
#: corner), from anchor-pipelines §1.1; rounded to float32 as MPIIFaceGaze / MPII-NV store it (``dt: f``), so the
#: PnP pose equals MPII-NV's
MPII_FACE_MODEL = np.array([
    [-45.096768, -0.483773, 2.397030],
    [-21.312858, 0.483773, -2.397030],
    [21.312858, 0.483773, -2.397030],
    [45.096768, -0.483773, 2.397030],
    [-26.299577, 68.595035, 0.0],
    [26.299577, 68.595035, 0.0],
], np.float32).astype(np.float64)
#: iBUG-68 indices of the 6 model points
LM6 = (36, 39, 42, 45, 48, 54)
N_FIELDS = 28
#: relative depth-relief error of the MPII-model fallback: peri(MPII 6-point) / peri(OpenFace) − 1 = 72.94/70.70 − 1
FALLBACK_RELIEF_ERROR = 0.0317


def _rot_pitchyaw(p: float, y: float) -> np.ndarray:
    """``Ry(y)·Rx(−p)`` (the head rotation of a zero-roll (pitch, yaw) label)."""
    cp, sp, cy, sy = np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    return Ry @ Rx


def nv_head_label(R: np.ndarray, lm68: np.ndarray, openface: np.ndarray, K: np.ndarray, dist: np.ndarray):
    """MPII-NV's head-pose label: (pitch, yaw) of ``R·hR_68``, with ``hR_68`` the EPnP + iterative ``solvePnP`` of
    the OpenFace 68-point model on the 68 landmarks (px, with distortion) and ``R`` the 6-point normalization
    rotation. Returns (label (2,), hR_68)."""
    obj, img = openface.reshape(68, 1, 3), np.asarray(lm68).astype(np.float32).reshape(68, 1, 2)
    ok, rvec, tvec = cv2.solvePnP(obj, img, K, dist, flags=cv2.SOLVEPNP_EPNP)
    if ok:
        ok, rvec, tvec = cv2.solvePnP(obj, img, K, dist, rvec, tvec, True)
    if not ok or not np.isfinite(rvec).all():
        raise ValueError("PnP of the OpenFace 68-point model failed")
    hR = cv2.Rodrigues(rvec)[0]
    H = R @ hR
    return np.array([np.arcsin(H[1, 2]), np.arctan2(H[0, 2], H[2, 2])]), hR


def perimeter6(p6: np.ndarray) -> float:
    """Mean of the 3 pairwise distances between right-eye centre, left-eye centre and mouth centre of 6 points."""
    p6 = np.asarray(p6, np.float64)
    a, b, c = p6[0:2].mean(0), p6[2:4].mean(0), p6[4:6].mean(0)
    return float((np.linalg.norm(a - b) + np.linalg.norm(b - c) + np.linalg.norm(a - c)) / 3)


def lift_crop_points(pts: np.ndarray, C: np.ndarray, K: np.ndarray, dist: np.ndarray | None, alpha: float,
                     beta: float) -> np.ndarray:
    """Crop-frame points (N,3) (u, v, z) → camera frame mm: ``(α·z + β)·unit(ray of C⁻¹·[u, v, 1])``."""
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


@register
class NVGazeSource:
    """3DDFA meshes + MPIIFaceGaze annotations (see the module docstring)."""

    name = "nv-gaze"
    help = "MPII-NV / 3DDFA meshes (pXX/dayYY/NNNN.obj) with the MPIIFaceGaze root"

    @classmethod
    def add_arguments(cls, add) -> None:
        add("--input", help="3DDFA output root (pXX/dayYY/NNNN.obj, _lm.txt, _crop_params.txt)")
        add("--annotations", help="the MPIIFaceGaze root (pXX/pXX.txt, pXX/Calibration/Camera.mat)")
        add("--openface", metavar="OpenFace.txt",
            help="the OpenFace 68-point model MPII-NV uses (68x3 mm; its supplementary/OpenFace.txt); without it "
            "the MPII 6-point model scales the lift (+3.17 %% depth relief, a warning)")
        add("--source-supply", metavar="PATH",
            help="MPII-NV's source_supply/pXX.h5 (a file or the folder of them): its sources in its order, and the "
            "head-pose label from the OpenFace-68 fit of its dlib landmarks")
        add("--no-undistort", action="store_true",
            help="do not undistort the rays of the lift: MPII-NV exactly (default: undistorted)")

    @classmethod
    def from_args(cls, args):
        return cls(need(args, "input", cls.name), need(args, "annotations", cls.name),
                   openface=getattr(args, "openface", None), source_supply=getattr(args, "source_supply", None),
                   undistort=not getattr(args, "no_undistort", False))

    def __init__(self, root: str | Path, annotations: str | Path, *, openface: str | Path | None = None,
                 source_supply: str | Path | None = None, reference6: np.ndarray | None = None,
                 undistort: bool = True, image_size: tuple[int, int] = (1280, 720), head_pose: str = "pnp"):
        self.root, self.ann_root = Path(root), Path(annotations)
        if not self.root.is_dir():
            raise SourceError(f"{self.root}: 3DDFA output folder not found")
        if not self.ann_root.is_dir():
            raise SourceError(f"{self.ann_root}: MPIIFaceGaze folder not found")
        self.openface = None if openface is None else read_openface_model(openface)
        if reference6 is not None:
            self.reference6 = np.asarray(reference6, np.float64)
        elif self.openface is not None:
            self.reference6 = self.openface[list(LM6)]
        else:
            self.reference6 = MPII_FACE_MODEL
            msg = (f"nv-gaze: no OpenFace.txt given (--openface; MPII-NV reads supplementary/OpenFace.txt): the lift's "
                   f"scale uses the MPII 6-point model instead, whose eye-mouth perimeter is 72.94 mm against "
                   f"OpenFace's 70.70 mm, so the lifted depth relief is {100 * FALLBACK_RELIEF_ERROR:.2f} % larger "
                   "than MPII-NV's: 0.0317 mm per mm of depth from the eye-mouth landmarks")
            warnings.warn(msg, stacklevel=2)
        if self.reference6.shape != (6, 3):
            raise ValueError(f"reference6: expected (6, 3), got {self.reference6.shape}")
        if head_pose not in ("pnp", "annotation"):
            raise ValueError(f"head_pose: expected 'pnp' or 'annotation', got {head_pose!r}")
        self.undistort, self.image_size, self.head_pose = undistort, image_size, head_pose
        self.excluded: list[tuple[str, str]] = []
        self._supply_lm: dict[str, tuple[str, int, np.ndarray]] = {}
        if source_supply is not None:
            sp = Path(source_supply)
            files = sorted(sp.glob("p*.h5")) if sp.is_dir() else [sp]
            if not files:
                raise SourceError(f"{sp}: no source_supply pXX.h5 files")
            if self.openface is None:
                raise SourceError(f"{sp}: the source_supply head-pose label needs the OpenFace model (--openface)")
            objs = []
            for f in files:
                sup = read_source_supply(f)
                for i, name in enumerate(sup.file_name):
                    subj, day, img = name.split("/")
                    key = f"{subj}/{day}/{Path(img).stem}.obj"
                    if (self.root / key).is_file():
                        objs.append(self.root / key)
                        self._supply_lm[key] = (str(f), i, sup.landmarks[i])
                    else:
                        self.excluded.append((key, f"{f}: row {i} ({name}): no 3DDFA mesh {self.root / key} "
                                              "(MPII-NV writes nothing for this source)"))
        else:
            objs = [p for p in sorted(self.root.rglob("*.obj")) if len(p.relative_to(self.root).parts) == 3]
        if not objs:
            raise SourceError(f"{self.root}: no meshes in the pXX/dayYY/NNNN.obj layout")
        self.paths = objs
        self._ann: dict[str, tuple[Path, dict]] = {}
        self._cam: dict[str, tuple] = {}
        self.attrs = {"nv_gaze_openface": str(openface) if openface is not None else "",
                      "nv_gaze_source_supply": str(source_supply) if source_supply is not None else "",
                      "nv_gaze_undistort": bool(undistort)}

    def keys(self) -> list[str]:
        return [str(p.relative_to(self.root)) for p in self.paths]

    # ------------------------------------------------------------------ annotations
    def _annotations(self, subject: str) -> tuple[Path, dict]:
        if subject not in self._ann:
            path = self.ann_root / subject / f"{subject}.txt"
            self._ann[subject] = (path, read_mpii_annotation(path))
        return self._ann[subject]

    def _camera(self, subject: str) -> tuple[np.ndarray, np.ndarray]:
        if subject not in self._cam:
            self._cam[subject] = read_camera_mat(self.ann_root / subject / "Calibration" / "Camera.mat")
        return self._cam[subject]

    def _row(self, subject: str, day: str, stem: str):
        path, rows = self._annotations(subject)
        key = f"{day}/{stem}.jpg"
        for name, r in rows.items():
            parts = name.split("/")
            if len(parts) >= 3 and "/".join(parts[-2:]) == key and parts[-3] != subject:
                raise SourceError(f"{path}:{r.line}: image {name} belongs to subject {parts[-3]}, "
                                  f"not {subject} (mismatched subject)")
        r = rows.get(key)
        if r is None:
            r = next((v for n, v in rows.items() if n.endswith("/" + key)), None)
        if r is None:
            raise SourceError(f"{path}: no annotation row for {key} (needed by {subject}/{day}/{stem}.obj)")
        return {"lm2d": r.landmarks, "rvec": r.rvec, "tvec": r.tvec, "face_centre": r.face_centre,
                "gaze_target": r.target, "eye": r.eye, "where": f"{path}:{r.line}"}

    # ------------------------------------------------------------------ frames
    def load(self, key: str) -> FrameRecord:
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
        else:  # as MPII-NV calls it: float32 (6,1,2) points, (6,1,3) model
            pts, img = MPII_FACE_MODEL.reshape(6, 1, 3), row["lm2d"].astype(np.float32).reshape(6, 1, 2)
            ok, rvec, tvec = cv2.solvePnP(pts, img, K, dist, flags=cv2.SOLVEPNP_EPNP)
        if ok and self.head_pose == "pnp":
            ok, rvec, tvec = cv2.solvePnP(pts, img, K, dist, rvec, tvec, useExtrinsicGuess=True,
                                          flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok or not np.isfinite(rvec).all():
            raise SourceError(f"{row['where']}: head pose (PnP of the 6 landmarks) failed")
        hR = cv2.Rodrigues(rvec)[0]
        Fc = MPII_FACE_MODEL @ hR.T + tvec.reshape(1, 3)
        if (Fc[:, 2] <= 0).any():
            raise SourceError(f"{row['where']}: the fitted face model lies behind the camera")
        fc = Fc.mean(0)
        extra: dict[str, object] = {}
        head = hR
        if key in self._supply_lm:  # MPII-NV's label: OpenFace-68 PnP on the supply's dlib landmarks, R from hR

            src, i, lm68 = self._supply_lm[key]
            assert self.openface is not None  # a source_supply needs it (checked in __init__)
            R = normalization_rotation(torch.from_numpy(fc), torch.from_numpy(hR)).numpy()
            try:
                label, _ = nv_head_label(R, lm68, self.openface, K, dist)
            except ValueError as exc:
                raise SourceError(f"{src}: row {i}: {exc}") from None
            head = R.T @ _rot_pitchyaw(*label)
            extra.update(supply_row=i, nv_head_label=label)
        lm6 = lm_crop[list(LM6)]
        p = perimeter6(lm6)
        if p <= 1e-9:
            raise SourceError(f"{lm_path}: degenerate landmarks (eye and mouth centres coincide)")
        alpha = perimeter6(self.reference6) / p
        beta = float(np.mean(np.linalg.norm(Fc, axis=1) - alpha * lm6[:, 2]))
        d = None if not self.undistort else dist
        verts = lift_crop_points(mesh.verts, C, K, d, alpha, beta)
        landmarks = lift_crop_points(lm_crop, C, K, d, alpha, beta)
        extra.update(alpha=alpha, beta=beta, eye=row["eye"])
        return FrameRecord(
            verts=verts.astype(np.float32), faces=mesh.faces, vert_colors=mesh.colors, landmarks=landmarks,
            head_rotation=head, face_centre=fc, face_centre_rule="eye_mouth",
            gaze_target=row["gaze_target"], K=K, image_size=self.image_size, subject=subject,
            frame=f"{day}/{stem}", camera="", origin=str(obj), extra=extra)


def _read_landmarks(path: Path) -> np.ndarray:
    lines = [ln for ln in read_lines(path, "landmark file") if ln.strip()]
    if len(lines) != 68:
        raise SourceError(f"{path}: expected 68 landmarks (rows of x y z), got {len(lines)}")
    return _read_matrix(path, (68, 3), "landmarks")
