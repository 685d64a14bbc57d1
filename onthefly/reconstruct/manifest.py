"""The image manifest of ``onthefly reconstruct --source images``: JSON Lines, one frame per line.

Every non-blank line that does not start with ``#`` is a JSON object. The first such line may instead be
``{"defaults": {...}}``: its keys apply to every frame that does not set them (e.g. a shared ``K``). Keys
(``docs/reconstruction.md`` has the full table):

* ``image`` (required): path, relative to the manifest's folder; ``subject`` (required), ``frame`` (default the
  image's stem), ``camera`` (default ``""``);
* ``K`` (required): 3x3 intrinsics, OpenCV pixel centres; ``dist``: OpenCV distortion coefficients (4, 5, 8, 12 or
  14 values); ``image_size``: [w, h], checked against the image;
* gaze, exactly one of: ``gaze_target`` [x, y, z] mm camera frame; ``gaze_direction`` unit [x, y, z] camera frame;
  ``gaze_pitchyaw`` [pitch, yaw] radians in the camera frame (``onthefly.geometry`` convention);
* ``landmarks``: 68 [x, y] pixels (iBUG order) or 68 [x, y, depth] (relative depth, e.g. 3D-FAN's); without them a
  detector must be chosen (``--landmarks``); ``face_box`` [x0, y0, x1, y1] for detectors;
* ``head_rotation`` 3x3 or ``head_rvec`` [3] (head → camera, head frame of ``docs/conventions.md``): the
  annotated head pose (default: fitted);
* ``face_centre`` [x, y, z] mm: the dataset's gaze origin (sets the metric scale and makes the gaze label exactly
  the dataset's); ``face_centre_rule``: ``eye_nose`` (default) or ``eye_mouth``.

Errors raise :class:`~onthefly.sources.base.SourceError` naming the manifest and line.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..geometry import pitchyaw_to_gaze
from ..sources.base import FACE_CENTRE_RULES, SourceError, read_lines

__all__ = ["ManifestEntry", "read_manifest", "KEYS"]

KEYS = {"image", "subject", "frame", "camera", "K", "dist", "image_size", "gaze_target", "gaze_direction",
        "gaze_pitchyaw", "landmarks", "face_box", "head_rotation", "head_rvec", "face_centre", "face_centre_rule"}
_GAZE = ("gaze_target", "gaze_direction", "gaze_pitchyaw")


@dataclass
class ManifestEntry:
    """One parsed manifest line (arrays float64). ``where`` is ``manifest:line`` for messages."""

    where: str
    image: Path
    subject: str
    frame: str
    camera: str
    K: np.ndarray
    dist: np.ndarray | None = None
    image_size: tuple[int, int] | None = None
    gaze_target: np.ndarray | None = None
    gaze_direction: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    face_box: np.ndarray | None = None
    head_rotation: np.ndarray | None = None
    face_centre: np.ndarray | None = None
    face_centre_rule: str = "eye_nose"


def _array(where: str, obj: dict, key: str, shapes: tuple) -> np.ndarray | None:
    if key not in obj or obj[key] is None:
        return None
    try:
        a = np.asarray(obj[key], np.float64)
    except (TypeError, ValueError):
        raise SourceError(f"{where}: {key} must be numbers") from None
    if a.shape not in shapes:
        want = " or ".join(str(list(s)) for s in shapes)
        raise SourceError(f"{where}: {key} has shape {list(a.shape)}, expected {want}")
    if not np.isfinite(a).all():
        raise SourceError(f"{where}: {key} contains NaN or inf")
    return a


def _entry(where: str, obj: dict, root: Path) -> ManifestEntry:
    unknown = sorted(set(obj) - KEYS)
    if unknown:
        raise SourceError(f"{where}: unknown key(s) {unknown} (known: {sorted(KEYS)})")
    for key in ("image", "subject", "K"):
        if key not in obj:
            raise SourceError(f"{where}: missing required key {key!r}")
    for key in ("image", "subject", "frame", "camera", "face_centre_rule"):
        if key in obj and not isinstance(obj[key], str):
            raise SourceError(f"{where}: {key} must be a string, got {type(obj[key]).__name__}")
    if not obj["subject"]:
        raise SourceError(f"{where}: subject must be non-empty")
    gaze = [k for k in _GAZE if obj.get(k) is not None]
    if len(gaze) != 1:
        raise SourceError(f"{where}: give exactly one of {', '.join(_GAZE)} (got {gaze or 'none'})")
    rule = obj.get("face_centre_rule", "eye_nose")
    if rule not in FACE_CENTRE_RULES:
        raise SourceError(f"{where}: face_centre_rule must be one of {FACE_CENTRE_RULES}, got {rule!r}")
    image = root / obj["image"]
    K = _array(where, obj, "K", ((3, 3),))
    if K is None:  # "K": null
        raise SourceError(f"{where}: K must be a 3x3 matrix of numbers, got null")
    e = ManifestEntry(where=where, image=image, subject=obj["subject"], frame=obj.get("frame") or image.stem,
                      camera=obj.get("camera", ""), K=K, face_centre_rule=rule)
    e.dist = _array(where, obj, "dist", ((4,), (5,), (8,), (12,), (14,)))
    size = _array(where, obj, "image_size", ((2,),))
    if size is not None:
        if (size <= 0).any() or (size != np.round(size)).any():
            raise SourceError(f"{where}: image_size must be two positive integers [w, h]")
        e.image_size = (int(size[0]), int(size[1]))
    e.gaze_target = _array(where, obj, "gaze_target", ((3,),))
    e.gaze_direction = _array(where, obj, "gaze_direction", ((3,),))
    py = _array(where, obj, "gaze_pitchyaw", ((2,),))
    if py is not None:
        e.gaze_direction = pitchyaw_to_gaze(py).numpy().astype(np.float64)
    if e.gaze_direction is not None:
        n = np.linalg.norm(e.gaze_direction)
        if abs(n - 1) > 1e-3:
            raise SourceError(f"{where}: gaze_direction must be a unit vector (norm {n:.4f})")
        e.gaze_direction = e.gaze_direction / n
    e.landmarks = _array(where, obj, "landmarks", ((68, 2), (68, 3)))
    e.face_box = _array(where, obj, "face_box", ((4,),))
    if e.face_box is not None and not (e.face_box[2] > e.face_box[0] and e.face_box[3] > e.face_box[1]):
        raise SourceError(f"{where}: face_box must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0")
    R = _array(where, obj, "head_rotation", ((3, 3),))
    rv = _array(where, obj, "head_rvec", ((3,),))
    if R is not None and rv is not None:
        raise SourceError(f"{where}: give head_rotation or head_rvec, not both")
    if rv is not None:
        R = cv2.Rodrigues(rv)[0]
    if R is not None and (not np.isfinite(R).all() or np.abs(R @ R.T - np.eye(3)).max() > 1e-5
                          or np.linalg.det(R) < 0):  # a huge head_rvec gives NaN (tests/fuzz)
        raise SourceError(f"{where}: head_rotation is not a rotation matrix")
    e.head_rotation = R
    e.face_centre = _array(where, obj, "face_centre", ((3,),))
    if e.face_centre is not None and e.face_centre[2] <= 0:
        raise SourceError(f"{where}: face_centre z must be positive (in front of the camera)")
    return e


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Parse a manifest; raises :class:`SourceError` naming ``path:line`` on the first bad line."""
    path = Path(path)
    lines = read_lines(path, "manifest")
    root = path.parent
    defaults: dict = {}
    entries: list[ManifestEntry] = []
    seen: dict[str, str] = {}
    first = True
    for i, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        where = f"{path}:{i}"
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise SourceError(f"{where}: not valid JSON (nested too deeply)") from None
        if not isinstance(obj, dict):
            raise SourceError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        if "defaults" in obj:
            if not first or len(obj) != 1 or not isinstance(obj["defaults"], dict):
                raise SourceError(f"{where}: {{\"defaults\": {{...}}}} is allowed only as the first entry, alone")
            unknown = sorted(set(obj["defaults"]) - KEYS)
            if unknown:
                raise SourceError(f"{where}: unknown key(s) {unknown} in defaults")
            defaults = obj["defaults"]
            first = False
            continue
        first = False
        e = _entry(where, {**defaults, **obj}, root)
        key = "/".join(p for p in (e.subject, e.frame, e.camera) if p)
        if key in seen:
            raise SourceError(f"{where}: frame {key} already listed at {seen[key]}")
        seen[key] = where
        entries.append(e)
    if not entries:
        raise SourceError(f"{path}: the manifest lists no frames")
    return entries
