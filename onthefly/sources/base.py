"""Frame records, the unit every source yields and the cache stores, and the source interface.

A :class:`FrameRecord` is one source frame (one image of a subject, or one multi-view capture) as a textured mesh
in the **source camera frame** (OpenCV: x right, y down, z forward, millimetres) with its exact labels.
A source is an object with ``keys()`` (a cheap list of record ids, e.g. file names) and ``load(key)`` (does the
work, returns a :class:`FrameRecord` or raises :class:`SourceError`), so a build can skip one bad frame and go on.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

__all__ = ["SourceError", "FrameRecord", "Source", "FACE_CENTRE_RULES", "check_record"]

#: face-centre rules, stored in the cache as the index into this tuple (see :func:`onthefly.normalization.face_centre`)
FACE_CENTRE_RULES = ("eye_nose", "eye_mouth")


class SourceError(ValueError):
    """Bad input: the message names the file and the line or record."""


def read_lines(path, what: str) -> list[str]:
    """The lines of a text file, or a :class:`SourceError` naming the file and what it should have been."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        raise SourceError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read ({exc})") from None


@dataclass
class FrameRecord:
    """One source frame: a mesh in the source camera frame (mm) and its labels.

    Geometry: ``verts`` (V,3) float32; ``faces`` (F,3) int64 (0-based). Texture: per-vertex ``vert_colors``
    (V,3) uint8 RGB, and/or ``uv`` (T,2) float32 in [0,1] (OpenGL convention: v up, as in OBJ ``vt``) with
    ``faces_uv`` (F,3) int64 into ``uv`` and ``texture`` (H,W,3) uint8 RGB. At least one of the two is required.

    Labels (camera frame, mm): ``landmarks`` (68,3) iBUG order; ``head_rotation`` (3,3) head → camera;
    ``face_centre`` (3,) with ``face_centre_rule`` (``eye_nose`` or ``eye_mouth``); ``gaze_target`` (3,) or, when
    only a direction is known, ``gaze_direction`` (3,) unit vector from the face centre (one of them is required;
    the direction is derived from the target when both are not given). ``K`` (3,3) source intrinsics,
    ``image_size`` (width, height) px of the source image.

    Optional ``vert_face_region`` (V,) bool: the vertices of the face (brows to chin, between the face contours;
    no hair, ears, neck), used for the batches' face ``mask``; None means unknown (the whole mesh counts as face).

    Optional ``views``: the frame's real cameras (a multi-view capture such as ETH-XGaze's 18), a dict with
    ``names`` (M,) str, ``R`` (M,3,3) and ``t`` (M,3) mapping this record's camera frame to camera m
    (``X_m = R_m·X + t_m``, mm) and ``K`` (M,3,3) their (normalization) intrinsics. Stored once per frame in the
    cache; the ``cameras`` target sampler (:class:`onthefly.poses.Cameras`) renders exactly these views.

    Identifiers: ``subject``, ``frame``, ``camera`` (strings); ``origin`` is the file (or record) it came from,
    used in error messages.
    """

    verts: np.ndarray
    faces: np.ndarray
    landmarks: np.ndarray
    head_rotation: np.ndarray
    face_centre: np.ndarray
    face_centre_rule: str
    K: np.ndarray
    image_size: tuple[int, int]
    subject: str
    frame: str
    camera: str = ""
    gaze_target: np.ndarray | None = None
    gaze_direction: np.ndarray | None = None
    vert_colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    faces_uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    vert_face_region: np.ndarray | None = None
    views: dict | None = None
    origin: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``subject/frame/camera`` (empty parts dropped)."""
        return "/".join(p for p in (self.subject, self.frame, self.camera) if p)

    @property
    def where(self) -> str:
        """``origin (subject/frame/camera)``: what an error about this record names."""
        return f"{self.origin or '<record>'} ({self.key})"

    def direction(self) -> np.ndarray:
        """Unit gaze direction (face centre → target) in the camera frame."""
        if self.gaze_target is not None:
            d = np.asarray(self.gaze_target, np.float64) - np.asarray(self.face_centre, np.float64)
        else:
            d = np.asarray(self.gaze_direction, np.float64)
        return d / np.linalg.norm(d)


class Source(Protocol):
    """What ``build_cache`` needs from a source."""

    name: str

    def keys(self) -> Iterable[Hashable]:
        """Record ids, cheap to list (file names, CSV rows ...), in subject order."""

    def load(self, key) -> FrameRecord:
        """The record for ``key``; raises :class:`SourceError` naming the file and line/record on bad input."""


def _where(rec: FrameRecord) -> str:
    return rec.where


def _arr(rec, name, shape, dtype=np.float64, *, finite=True) -> np.ndarray:
    x = getattr(rec, name)
    if x is None:
        raise SourceError(f"{_where(rec)}: {name} is missing")
    x = np.asarray(x)
    if x.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, x.shape)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise SourceError(f"{_where(rec)}: {name} has shape {x.shape}, expected {want}")
    if finite and np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise SourceError(f"{_where(rec)}: {name} contains NaN or inf (first at index {tuple(int(b) for b in bad)})")
    return x.astype(dtype, copy=False)


def check_record(rec: FrameRecord) -> FrameRecord:
    """Validate a record (shapes, finiteness, index ranges, rotation, intrinsics) and normalise its dtypes.

    Raises :class:`SourceError` naming ``rec.origin`` and the record key. Returns the record with float32 verts,
    int64 faces, uint8 colours/texture, bool face region and float64 labels.
    """
    rec.verts = _arr(rec, "verts", (None, 3), np.float32)
    V = rec.verts.shape[0]
    if V == 0:
        raise SourceError(f"{_where(rec)}: the mesh has no vertices")
    rec.faces = _arr(rec, "faces", (None, 3), np.int64)
    if rec.faces.shape[0] == 0:
        raise SourceError(f"{_where(rec)}: the mesh has no faces")
    if rec.faces.min() < 0 or rec.faces.max() >= V:
        raise SourceError(f"{_where(rec)}: face indices must lie in [0, {V}), found "
                          f"[{int(rec.faces.min())}, {int(rec.faces.max())}]")
    if rec.vert_colors is not None:
        c = np.asarray(rec.vert_colors)
        if c.shape != (V, 3) or c.dtype != np.uint8:
            raise SourceError(f"{_where(rec)}: vert_colors must be ({V}, 3) uint8, got {c.shape} {c.dtype}")
    if rec.vert_face_region is not None:
        m = np.asarray(rec.vert_face_region)
        if m.shape != (V,) or m.dtype != np.bool_:
            raise SourceError(f"{_where(rec)}: vert_face_region must be ({V},) bool, got {m.shape} {m.dtype}")
        rec.vert_face_region = m
    if rec.texture is not None or rec.uv is not None or rec.faces_uv is not None:
        if rec.texture is None or rec.uv is None or rec.faces_uv is None:
            raise SourceError(f"{_where(rec)}: a UV texture needs uv, faces_uv and texture together")
        rec.uv = _arr(rec, "uv", (None, 2), np.float32)
        rec.faces_uv = _arr(rec, "faces_uv", (rec.faces.shape[0], 3), np.int64)
        if rec.faces_uv.min() < 0 or rec.faces_uv.max() >= rec.uv.shape[0]:
            raise SourceError(f"{_where(rec)}: faces_uv indices must lie in [0, {rec.uv.shape[0]})")
        t = np.asarray(rec.texture)
        if t.ndim != 3 or t.shape[2] != 3 or t.dtype != np.uint8 or t.size == 0:
            raise SourceError(f"{_where(rec)}: texture must be (H, W, 3) uint8, got {t.shape} {t.dtype}")
    elif rec.vert_colors is None:
        raise SourceError(f"{_where(rec)}: no texture (need vertex colours or a UV texture)")
    lm = np.asarray(rec.landmarks) if rec.landmarks is not None else None
    if lm is not None and lm.ndim == 2 and lm.shape[0] != 68:
        raise SourceError(f"{_where(rec)}: expected 68 landmarks, got {lm.shape[0]}")
    rec.landmarks = _arr(rec, "landmarks", (68, 3))
    hR = _arr(rec, "head_rotation", (3, 3))
    if np.abs(hR @ hR.T - np.eye(3)).max() > 1e-5 or np.linalg.det(hR) < 0:
        raise SourceError(f"{_where(rec)}: head_rotation is not a rotation matrix")
    rec.head_rotation = hR
    rec.face_centre = _arr(rec, "face_centre", (3,))
    if rec.face_centre[2] <= 0:
        raise SourceError(f"{_where(rec)}: face_centre z must be positive (in front of the camera)")
    if rec.face_centre_rule not in FACE_CENTRE_RULES:
        raise SourceError(f"{_where(rec)}: face_centre_rule must be one of {FACE_CENTRE_RULES}, "
                          f"got {rec.face_centre_rule!r}")
    if rec.gaze_target is None and rec.gaze_direction is None:
        raise SourceError(f"{_where(rec)}: needs a gaze_target or a gaze_direction")
    if rec.gaze_target is not None:
        rec.gaze_target = _arr(rec, "gaze_target", (3,))
        if np.linalg.norm(rec.gaze_target - rec.face_centre) < 1e-6:
            raise SourceError(f"{_where(rec)}: gaze_target coincides with the face centre")
    if rec.gaze_direction is not None:
        g = _arr(rec, "gaze_direction", (3,))
        if abs(np.linalg.norm(g) - 1) > 1e-6:
            raise SourceError(f"{_where(rec)}: gaze_direction must be a unit vector")
        rec.gaze_direction = g
    K = _arr(rec, "K", (3, 3))
    if K[0, 0] <= 0 or K[1, 1] <= 0 or np.abs(K[2] - [0, 0, 1]).max() > 1e-9:
        raise SourceError(f"{_where(rec)}: K must have positive focal lengths and last row [0, 0, 1]")
    rec.K = K
    w, h = (int(v) for v in rec.image_size)
    if w <= 0 or h <= 0:
        raise SourceError(f"{_where(rec)}: image_size must be positive, got {rec.image_size}")
    rec.image_size = (w, h)
    if rec.views is not None:
        v = rec.views
        if not isinstance(v, dict) or not {"names", "R", "t", "K"} <= set(v):
            raise SourceError(f"{_where(rec)}: views must be a dict with names, R, t and K")
        names = [str(n) for n in v["names"]]
        M = len(names)
        R = np.asarray(v["R"], np.float64)
        t = np.asarray(v["t"], np.float64)
        Kv = np.asarray(v["K"], np.float64)
        if M == 0 or R.shape != (M, 3, 3) or t.shape != (M, 3) or Kv.shape != (M, 3, 3):
            raise SourceError(f"{_where(rec)}: views: expected names (M,), R (M,3,3), t (M,3), K (M,3,3) with M > 0, "
                              f"got {M}, {R.shape}, {t.shape}, {Kv.shape}")
        if not (np.isfinite(R).all() and np.isfinite(t).all() and np.isfinite(Kv).all()):
            raise SourceError(f"{_where(rec)}: views contain NaN or inf")
        if np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max() > 1e-5 or (np.linalg.det(R) < 0).any():
            raise SourceError(f"{_where(rec)}: views: R is not a rotation matrix")
        if len(set(names)) != M or not all(names):
            raise SourceError(f"{_where(rec)}: views: camera names must be unique and non-empty")
        rec.views = {"names": names, "R": R, "t": t, "K": Kv}
    if not rec.subject or not rec.frame:
        raise SourceError(f"{_where(rec)}: subject and frame ids must be non-empty")
    return rec
