"""``mesh`` source: any OBJ/PLY mesh plus a small JSON sidecar — the door for other reconstruction tools.

``--input`` is a mesh file or a folder searched recursively for ``*.obj`` / ``*.ply``; each mesh ``NAME.obj``
needs ``NAME.json`` next to it. The mesh carries vertex colours (OBJ ``v x y z r g b`` with colours in [0,1] or
0-255, PLY ``red green blue``) or a UV texture (OBJ ``vt`` + ``f v/vt`` + ``mtllib``/``map_Kd``; PLY per-vertex
``u v`` + ``comment TextureFile NAME``). Sidecar keys (camera frame = OpenCV, millimetres)::

    {
      "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],          required
      "image_size": [width, height],                        required
      "head_rotation": 3x3 head -> camera  | "head_rvec": [3] (Rodrigues)      one required
      "landmarks": 68x3 camera frame mm,                    required
      "gaze_target": [3] camera frame mm | "gaze_direction": [3] (from the face centre)   one required
      "face_centre": [3],                                   optional: default from the landmarks and the rule
      "face_centre_rule": "eye_nose" | "eye_mouth",         optional, default "eye_nose"
      "mesh_to_camera": {"R": 3x3, "t": [3]},               optional: mesh vertices are X_cam = R·X + t
      "texture": "file.png",                                optional: overrides the material's map_Kd
      "face_region": [i, ...] vertex indices | [true, false, ...] one per vertex,   optional: the face vertices
      "subject": "...", "frame": "...", "camera": "..."     optional: default parent folder name, file stem, ""
    }

``face_region`` marks the face (brows to chin, between the face contours; no hair, ears, neck): the batches'
``mask`` is then the face mask instead of the whole mesh's coverage. JSON booleans are per-vertex flags (one per
mesh vertex), numbers are 0-based vertex indices.

Frames are yielded in sorted path order (keep a subject's meshes in one folder so they are stored together).
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ..meshio import read_mesh, read_texture
from ..normalization import face_centre
from .base import FACE_CENTRE_RULES, FrameRecord, SourceError
from .registry import need, register

__all__ = ["MeshSource", "load_mesh_frame"]


def _get(meta: dict, key: str, path: Path, shape, required=True):
    if key not in meta:
        if required:
            raise SourceError(f"{path}: missing key {key!r}")
        return None
    try:
        a = np.asarray(meta[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise SourceError(f"{path}: {key!r} must be numbers") from None
    if key == "landmarks" and a.ndim == 2 and a.shape[1] == 3 and a.shape[0] != 68:
        raise SourceError(f"{path}: 'landmarks' has {a.shape[0]} points, expected 68")
    if a.shape != shape:
        raise SourceError(f"{path}: {key!r} has shape {a.shape}, expected {shape}")
    if not np.isfinite(a).all():
        raise SourceError(f"{path}: {key!r} contains NaN or inf")
    return a


def _face_region(meta: dict, path: Path, n_verts: int) -> np.ndarray:
    """The sidecar's ``face_region``: (V,) bool from per-vertex booleans or from vertex indices."""
    v = meta["face_region"]
    if not isinstance(v, list):
        raise SourceError(f"{path}: 'face_region' must be a list of vertex indices or of booleans")
    if v and all(isinstance(x, bool) for x in v):
        if len(v) != n_verts:
            raise SourceError(f"{path}: 'face_region' has {len(v)} flags, the mesh has {n_verts} vertices")
        return np.array(v, dtype=bool)
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise SourceError(f"{path}: 'face_region' must be a list of vertex indices or of booleans")
    idx = np.asarray(v, dtype=np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= n_verts):
        raise SourceError(f"{path}: 'face_region' indices must lie in [0, {n_verts}), found "
                          f"[{int(idx.min())}, {int(idx.max())}]")
    out = np.zeros(n_verts, bool)
    out[idx] = True
    return out


def read_sidecar(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SourceError(f"{path}: JSON sidecar not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: cannot read ({exc})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise SourceError(f"{path}: invalid JSON (nested too deeply)") from None
    if not isinstance(meta, dict):
        raise SourceError(f"{path}: expected a JSON object")
    return meta


def load_mesh_frame(mesh_path: str | Path) -> FrameRecord:
    """One frame from ``NAME.obj|ply`` + ``NAME.json``."""
    mesh_path = Path(mesh_path)
    side = mesh_path.with_suffix(".json")
    meta = read_sidecar(side)
    K = _get(meta, "K", side, (3, 3))
    size = _get(meta, "image_size", side, (2,))
    if "head_rotation" in meta:
        hR = _get(meta, "head_rotation", side, (3, 3))
    elif "head_rvec" in meta:
        hR = cv2.Rodrigues(_get(meta, "head_rvec", side, (3,)))[0]
    else:
        raise SourceError(f"{side}: missing key 'head_rotation' (or 'head_rvec')")
    lm = _get(meta, "landmarks", side, (68, 3))
    rule = meta.get("face_centre_rule", "eye_nose")
    if rule not in FACE_CENTRE_RULES:
        raise SourceError(f"{side}: 'face_centre_rule' must be one of {FACE_CENTRE_RULES}, got {rule!r}")
    fc = _get(meta, "face_centre", side, (3,), required=False)
    if fc is None:
        fc = face_centre(lm, rule).numpy()
    target = _get(meta, "gaze_target", side, (3,), required=False)
    direction = _get(meta, "gaze_direction", side, (3,), required=False)
    if target is None and direction is None:
        raise SourceError(f"{side}: missing key 'gaze_target' (or 'gaze_direction')")
    if direction is not None:
        n = np.linalg.norm(direction)
        if n < 1e-12:
            raise SourceError(f"{side}: 'gaze_direction' is a zero vector")
        direction = direction / n
    mesh = read_mesh(mesh_path)
    verts = mesh.verts
    if "mesh_to_camera" in meta:
        m = meta["mesh_to_camera"]
        if not isinstance(m, dict):
            raise SourceError(f"{side}: 'mesh_to_camera' must be an object with R and t")
        R, t = _get(m, "R", side, (3, 3)), _get(m, "t", side, (3,))
        verts = verts @ R.T + t
    texture = None
    if mesh.faces_uv is not None:
        tex_path = mesh_path.parent / meta["texture"] if "texture" in meta else mesh.texture_path
        if tex_path is None:
            raise SourceError(f"{mesh_path}: UV coordinates but no texture (no map_Kd / TextureFile / 'texture')")
        texture = read_texture(tex_path)
    elif mesh.colors is None:
        raise SourceError(f"{mesh_path}: no vertex colours and no UV texture")
    face_region = _face_region(meta, side, len(verts)) if "face_region" in meta else None
    return FrameRecord(
        verts=verts.astype(np.float32), faces=mesh.faces, vert_colors=mesh.colors, vert_face_region=face_region,
        uv=None if texture is None else mesh.uv.astype(np.float32), faces_uv=None if texture is None else mesh.faces_uv,
        texture=texture, landmarks=lm, head_rotation=hR, face_centre=fc, face_centre_rule=rule, gaze_target=target,
        gaze_direction=direction if target is None else None, K=K, image_size=(int(size[0]), int(size[1])),
        subject=str(meta.get("subject", mesh_path.parent.name)), frame=str(meta.get("frame", mesh_path.stem)),
        camera=str(meta.get("camera", "")), origin=str(mesh_path))


@register
class MeshSource:
    """OBJ/PLY meshes with JSON sidecars (see the module docstring)."""

    name = "mesh"
    help = "OBJ/PLY meshes with JSON sidecars (docs/cache-format.md)"

    @classmethod
    def add_arguments(cls, add) -> None:
        add("--input", help="a mesh file or a folder of OBJ/PLY + JSON sidecars (searched recursively)")

    @classmethod
    def from_args(cls, args):
        return cls(need(args, "input", cls.name))

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if self.root.is_file():
            self.paths = [self.root]
        elif self.root.is_dir():
            self.paths = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in (".obj", ".ply"))
        else:
            raise SourceError(f"{self.root}: no such file or folder")
        if not self.paths:
            raise SourceError(f"{self.root}: no .obj or .ply meshes found")

    def keys(self) -> list[str]:
        return [str(p) for p in self.paths]

    def load(self, key: str) -> FrameRecord:
        return load_mesh_frame(key)
