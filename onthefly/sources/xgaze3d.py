"""``xgaze3d`` source: XGaze3D Metashape reconstructions with ETH-XGaze annotations and calibration.

Inputs:

* ``--input`` root with ``subjectXXXX/frameYYYY/final_obj/mvs3d.obj`` (+ ``mvs3d.mtl`` + texture via ``map_Kd``):
  ``v x y z [r g b]``, ``vt u v``, ``f v/vt ...`` — millimetres in the XGaze **world frame** (the frame the
  calibration extrinsics map from; cam00 in XGaze3D).
* ``--annotations`` folder of ``subjectXXXX.csv`` (ETH-XGaze, one row per frame and camera, no header). Fields:
  frame folder, camera image name (``cam00.JPG``), 2D gaze point on the screen (2), 3D gaze target (3, camera frame
  mm), head rotation rvec (3), head translation (3), 68 2D landmarks (136, pixels): 149 fields, as read by the
  ETH-XGaze ``normalization_example.py`` (``[4:7]`` target, ``[7:10]`` rvec, ``[10:13]`` tvec, ``[13:149]``
  landmarks). Rows without the 2D screen point (147 fields) are accepted too.
* ``--calibration`` folder of ``camXX.xml`` (OpenCV FileStorage: ``Camera_Matrix``, ``Distortion_Coefficients``,
  ``cam_rotation``, ``cam_translation``; the extrinsics map world → camera, ``X_c = R·X_w + t``, mm).
* ``--face-model``: ETH-XGaze ``face_model.txt`` (50×3, mm; user-supplied, never shipped): the 68-point iBUG
  landmarks without the jaw contour and the inner mouth corners (``lm50[0]=lm68[8]``, ``lm50[1:44]=lm68[17:60]``,
  ``lm50[44:47]=lm68[61:64]``, ``lm50[47:50]=lm68[65:68]``).

One record per frame, in the frame of ``--camera`` (default cam00) using that camera's CSV row:

* vertices ``X_c = R_c·X_w + t_c`` (optionally decimated by vertex clustering, ``decimate`` = cell size in mm;
  UVs are kept per face corner); texture = the ``map_Kd`` image (RGB; ``--texture-size`` downsamples it in the
  cache); vertex colours when the OBJ has them;
* head rotation ``hR = Rodrigues(rvec)`` (head frame = the face-model frame: x toward the subject's left, y down,
  z into the head), posed model ``Fc = hR·M + t``;
* landmarks: the 50 posed face-model points at their 68 indices; the other 18 (jaw contour 0-7, 9-16 and inner
  mouth corners 60, 64) are the first hits of the rays through the annotated 2D landmarks (undistorted) with the
  mesh; a ray that misses the mesh takes the point on the ray at the depth of the chin (``lm68[8]``), counted in
  ``extra['landmark_misses']``;
* face centre ``eye_nose`` (ETH-XGaze) of the posed model; gaze target = the CSV 3D target;
* K = ``Camera_Matrix``; image size 6000×4000 (ETH-XGaze) unless given. Ids: subject ``subjectXXXX``, frame
  ``frameYYYY``, camera ``camXX``.

The 2D landmarks are assumed in the calibrated (unrotated) image; ETH-XGaze rotates cam03/06/13 images by 180° for
display, which matters here only for the 18 ray-cast landmarks of those cameras.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..meshio import read_obj, read_texture
from .base import FrameRecord, SourceError, read_lines

__all__ = ["XGaze3DSource", "LM68_FROM_50", "read_face_model", "read_camera_xml", "raycast",
           "cluster_decimate"]

#: 68-point index of each of the 50 face-model rows
LM68_FROM_50 = np.r_[8, np.arange(17, 60), np.arange(61, 64), np.arange(65, 68)]
_MISSING_68 = np.setdiff1d(np.arange(68), LM68_FROM_50)


def read_face_model(path: str | Path) -> np.ndarray:
    path = Path(path)
    rows = [(i, ln.split()) for i, ln in enumerate(read_lines(path, "face model"), 1) if ln.strip()]
    if len(rows) != 50:
        raise SourceError(f"{path}: expected 50 rows of x y z (ETH-XGaze face_model.txt), got {len(rows)}")
    out = np.empty((50, 3))
    for k, (lineno, t) in enumerate(rows):
        try:
            if len(t) != 3:
                raise ValueError
            out[k] = [float(x) for x in t]
        except ValueError:
            raise SourceError(f"{path}:{lineno}: expected 3 numbers") from None
    if not np.isfinite(out).all():
        raise SourceError(f"{path}: NaN or inf")
    return out


def read_camera_xml(path: str | Path) -> dict:
    """``{K, dist, R, t}`` from an ETH-XGaze ``camXX.xml``, parsed in a forked child (OpenCV's FileStorage aborts
    or segfaults on some malformed XML: found by tests/fuzz)."""
    from .._isolated import call_isolated

    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: camera calibration not found")
    try:
        return call_isolated(_read_camera_xml, path)
    except ValueError as exc:
        raise SourceError(str(exc)) from None
    except OSError as exc:
        raise SourceError(f"{path}: not a readable OpenCV FileStorage file ({exc})") from None


def _read_camera_xml(path: Path) -> dict:
    import cv2

    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except Exception as exc:  # noqa: BLE001 - cv2.error (as SystemError) on a malformed file
        raise SourceError(f"{path}: not a readable OpenCV FileStorage file ({str(exc)[:200]})") from None
    try:
        if not fs.isOpened():
            raise SourceError(f"{path}: not a readable OpenCV FileStorage file")
        out = {}
        for key, name, shape in (("K", "Camera_Matrix", (3, 3)), ("dist", "Distortion_Coefficients", None),
                                 ("R", "cam_rotation", (3, 3)), ("t", "cam_translation", (3,))):
            m = fs.getNode(name).mat()
            if m is None:
                raise SourceError(f"{path}: missing node {name!r}")
            m = np.asarray(m, np.float64)
            m = m.reshape(-1) if shape is None else m.reshape(shape) if m.size == int(np.prod(shape)) else m
            if (shape is not None and m.shape != shape) or not np.isfinite(m).all():
                raise SourceError(f"{path}: {name!r} must be a finite {shape} matrix")
            out[key] = m
    except SourceError:
        raise
    except Exception as exc:  # cv2.error on corrupt files
        raise SourceError(f"{path}: cannot read ({exc})") from None
    finally:
        fs.release()
    R = out["R"]
    if np.abs(R @ R.T - np.eye(3)).max() > 1e-4 or np.linalg.det(R) < 0:
        raise SourceError(f"{path}: 'cam_rotation' is not a rotation matrix")
    return out


def raycast(verts: np.ndarray, faces: np.ndarray, rays: np.ndarray, eps: float = 1e-9):
    """First intersections of rays from the camera centre (directions (N,3)) with a mesh in the camera frame.

    Returns (points (N,3), hit (N,) bool). Candidate faces are those whose projected bounding box contains the
    ray's image point (vectorised), then an exact Möller–Trumbore test picks the nearest hit.
    """
    verts = np.asarray(verts, np.float64)
    tri = verts[faces]                                   # (F,3,3)
    front = (tri[..., 2] > 1e-9).all(1)
    tri = tri[front]
    xy = tri[..., :2] / tri[..., 2:]
    lo, hi = xy.min(1), xy.max(1)
    rays = np.asarray(rays, np.float64)
    pts = np.zeros((len(rays), 3))
    hit = np.zeros(len(rays), bool)
    for i, d in enumerate(rays):
        p = d[:2] / d[2]
        cand = np.flatnonzero((lo[:, 0] <= p[0] + 1e-9) & (hi[:, 0] >= p[0] - 1e-9) &
                              (lo[:, 1] <= p[1] + 1e-9) & (hi[:, 1] >= p[1] - 1e-9))
        if len(cand) == 0:
            continue
        v0, v1, v2 = tri[cand, 0], tri[cand, 1], tri[cand, 2]
        e1, e2 = v1 - v0, v2 - v0
        pv = np.cross(d, e2)
        det = (e1 * pv).sum(1)
        ok = np.abs(det) > 1e-15
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = -v0
        u = (s * pv).sum(1) * inv
        q = np.cross(s, e1)
        v = (q @ d) * inv
        t = (e2 * q).sum(1) * inv
        good = ok & (u >= -eps) & (v >= -eps) & (u + v <= 1 + eps) & (t > 0)
        if good.any():
            tt = t[good].min()
            pts[i] = tt * d
            hit[i] = True
    return pts, hit


def cluster_decimate(verts, faces, cell: float, colors=None, faces_uv=None):
    """Vertex-clustering decimation: merge vertices within the same ``cell``-mm grid cell (mean position and
    colour), drop collapsed and duplicate faces. Per-corner UVs of the surviving faces are kept."""
    verts = np.asarray(verts, np.float64)
    keys = np.floor(verts / cell).astype(np.int64)
    _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    n = len(counts)
    nv = np.stack([np.bincount(inv, verts[:, k], n) for k in range(3)], 1) / counts[:, None]
    nc = None
    if colors is not None:
        c = np.asarray(colors, np.float64)
        nc = np.rint(np.stack([np.bincount(inv, c[:, k], n) for k in range(3)], 1) / counts[:, None]).astype(np.uint8)
    f = inv[faces]
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    f = f[keep]
    fuv = None if faces_uv is None else np.asarray(faces_uv)[keep]
    _, first = np.unique(np.sort(f, 1), axis=0, return_index=True)
    first.sort()
    f = f[first]
    fuv = None if fuv is None else fuv[first]
    used = np.unique(f)
    remap = np.full(n, -1, np.int64)
    remap[used] = np.arange(len(used))
    return nv[used], remap[f], (None if nc is None else nc[used]), fuv


class XGaze3DSource:
    """Metashape meshes + ETH-XGaze annotations (see the module docstring)."""

    name = "xgaze3d"

    def __init__(self, root: str | Path, annotations: str | Path, calibration: str | Path,
                 face_model: str | Path, *, camera: str = "cam00", decimate: float | None = None,
                 image_size: tuple[int, int] = (6000, 4000)):
        self.root, self.ann_root, self.cal_root = Path(root), Path(annotations), Path(calibration)
        for p, what in ((self.root, "reconstruction"), (self.ann_root, "annotation"),
                        (self.cal_root, "calibration")):
            if not p.is_dir():
                raise SourceError(f"{p}: {what} folder not found")
        self.face_model = read_face_model(face_model)
        self.camera = camera
        self.cam = read_camera_xml(self.cal_root / f"{camera}.xml")
        if decimate is not None and not decimate > 0:
            raise ValueError(f"--decimate: expected a positive cell size in mm, got {decimate}")
        self.decimate, self.image_size = decimate, image_size
        self.paths = sorted(self.root.glob("*/*/final_obj/mvs3d.obj"))
        if not self.paths:
            raise SourceError(f"{self.root}: no meshes in the subjectXXXX/frameYYYY/final_obj/mvs3d.obj layout")
        self._rows: dict[str, tuple[Path, dict]] = {}

    def keys(self) -> list[str]:
        return [str(p.relative_to(self.root)) for p in self.paths]

    def _annotations(self, subject: str):
        if subject not in self._rows:
            path = self.ann_root / f"{subject}.csv"
            try:
                with open(path, newline="") as fh:
                    lines = list(csv.reader(fh))
            except FileNotFoundError:
                raise SourceError(f"{path}: annotation file not found (subject {subject})") from None
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                raise SourceError(f"{path}: cannot read ({exc})") from None
            rows = {}
            for lineno, t in enumerate(lines, 1):
                if not t:
                    continue
                frame = t[0].replace("\\", "/").strip()
                cam = Path(t[1].strip()).stem if len(t) > 1 else ""
                rows[(frame, cam)] = (lineno, t)
            self._rows[subject] = (path, rows)
        return self._rows[subject]

    def _row(self, subject: str, frame: str):
        path, rows = self._annotations(subject)
        row = rows.get((frame, self.camera))
        if row is None:
            for (f, cam), (lineno, _) in rows.items():
                if cam == self.camera and "/" in f and f.split("/")[-1] == frame:
                    other = f.split("/")[-2]
                    if other != subject:
                        raise SourceError(f"{path}:{lineno}: row {f} belongs to {other}, not {subject} "
                                          "(mismatched subject)")
                    row = rows[(f, cam)]
                    break
        if row is None:
            raise SourceError(f"{path}: no annotation row for {frame} / {self.camera} (subject {subject})")
        lineno, t = row
        where = f"{path}:{lineno}"
        if len(t) not in (149, 147):
            raise SourceError(f"{where}: expected 149 fields (or 147 without the 2D screen point), got {len(t)}")
        try:
            vals = np.array([float(x) for x in t[2:]])
        except ValueError:
            raise SourceError(f"{where}: malformed annotation row (not a number)") from None
        if not np.isfinite(vals).all():
            raise SourceError(f"{where}: annotation row contains NaN or inf")
        if len(t) == 149:
            vals = vals[2:]
        return {"target": vals[0:3], "rvec": vals[3:6], "tvec": vals[6:9], "lm2d": vals[9:145].reshape(68, 2),
                "where": where}

    def load(self, key: str) -> FrameRecord:
        import cv2

        obj = self.root / key
        subject, frame = Path(key).parts[:2]
        row = self._row(subject, frame)
        mesh = read_obj(obj)
        texture = None
        if mesh.faces_uv is not None:
            if mesh.texture_path is None:
                raise SourceError(f"{obj}: UV coordinates but no texture (mtllib / map_Kd)")
            texture = read_texture(mesh.texture_path)
        elif mesh.colors is None:
            raise SourceError(f"{obj}: no UV texture and no vertex colours")
        cam = self.cam
        verts = mesh.verts @ cam["R"].T + cam["t"]
        faces, colors, faces_uv = mesh.faces, mesh.colors, mesh.faces_uv
        if self.decimate:
            verts, faces, colors, faces_uv = cluster_decimate(verts, faces, self.decimate, colors, faces_uv)
        hR = cv2.Rodrigues(row["rvec"])[0]
        Fc = self.face_model @ hR.T + row["tvec"]
        if (Fc[:, 2] <= 0).any():
            raise SourceError(f"{row['where']}: the posed face model lies behind the camera")
        lm = np.zeros((68, 3))
        lm[LM68_FROM_50] = Fc
        und = cv2.undistortPoints(row["lm2d"][_MISSING_68].reshape(-1, 1, 2), cam["K"], cam["dist"]).reshape(-1, 2)
        rays = np.concatenate([und, np.ones((len(und), 1))], 1)
        pts, hit = raycast(verts, faces, rays)
        chin_z = Fc[0, 2]
        pts[~hit] = rays[~hit] * chin_z
        lm[_MISSING_68] = pts
        from ..normalization import face_centre

        fc = face_centre(Fc, "eye_nose").numpy()
        return FrameRecord(
            verts=verts.astype(np.float32), faces=faces, vert_colors=colors,
            uv=None if texture is None else mesh.uv.astype(np.float32), faces_uv=None if texture is None else faces_uv,
            texture=texture, landmarks=lm, head_rotation=hR, face_centre=fc, face_centre_rule="eye_nose",
            gaze_target=row["target"], K=cam["K"], image_size=self.image_size, subject=subject, frame=frame,
            camera=self.camera, origin=str(obj), extra={"landmark_misses": int((~hit).sum())})
