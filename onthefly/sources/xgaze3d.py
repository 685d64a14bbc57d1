"""``xgaze3d`` source: the XGaze3D release (Metashape reconstructions of ETH-XGaze frames) with its labels.

``onthefly reconstruct --source xgaze3d --input RECON_DIR --annotations XGAZE_ROOT --out C.h5``

* ``RECON_DIR``: XGaze3D's reconstruction output, the level holding ``<YYYY-MM-DD>/<HH-MM-SS>/<resize>_data/``
  or directly ``<resize>_data/`` (several runs: a frame found in more than one takes the latest). Below it
  ``<subject>/<frame>/final_obj/mvs3d.obj`` with ``mvs3d.mtl`` (``map_Kd mvs3d.jpg``) and the 8192² atlas
  ``mvs3d.jpg``; the OBJ is in **cam00's frame** (OpenCV axes, mm) of the subject's averaged cameras. A frame
  folder without ``final_obj`` is a failed reconstruction: skipped and reported (``BuildReport.skipped`` and the
  cache's ``skipped_records``); XGaze3D itself would stop there.
* ``XGAZE_ROOT``: the ETH-XGaze root with ``avg_cams_final/subjectXXXX/camXX.xml`` (the averaged cameras the
  meshes are registered to: ``X_i = R_i·X_w + T_i``, cam00 the world origin), ``calibration/cam_calibration/
  camXX.xml`` (the original calibration: its ``Camera_Matrix`` is the normalization K, as XGaze3D renders),
  ``calibration/face_model.txt`` (or ``--face-model``), ``data/annotation_updated/subjectXXXX_update.csv``
  (249 fields; the original 149-field ``data/annotation_train/subjectXXXX.csv`` is accepted when no updated file
  exists, see below) and ``light_meta.yaml``.

Frames: a subject's frames are its sorted ``data/train/subjectXXXX/frame*`` folders when present, else the sorted
frame names of its annotation file; only the first ``full_light_frame_end_idx`` (``light_meta.yaml``, by position)
are used, as XGaze3D does. A subject missing from ``light_meta.yaml`` is an error naming the file.

Labels, the way XGaze3D computes them (``main_render.py`` / ``headpose.py``):

* head pose: one pose per frame fitted over **all 18** averaged cameras from the 6 landmarks 36, 39, 42, 45, 31, 35
  of each camera's updated row and the face-model rows 20, 23, 26, 29, 15, 19: ``scipy.optimize.least_squares``
  (defaults) of the pinhole reprojection residuals (distortion ignored: the updated landmarks are undistorted-image
  coordinates), started from cam00's EPnP + iterative ``solvePnP`` (with cam00's distortion). The posed model
  ``Fc = hR·M + t`` (50 points, world = cam00) gives the 50 landmarks and the face centre ``eye_nose``
  (``½(mean rows 20,23,26,29 + mean rows 15,19)``); camera i sees ``hR_i = R_i·hR``, ``fc_i = R_i·fc + T_i``.
* gaze target: cam00's row ``[4:7]`` (the updated rows' targets are in each camera's frame; their agreement with
  cam00's target moved by the extrinsics is stored as the quality ``target_spread_mm``).
* landmarks 0-7, 9-16, 60, 64 (not in the face model): first hits of cam00's rays through its 68 annotated points
  with the mesh (at the chin's depth on a miss, counted in ``extra['landmark_misses']``).

XGaze3D takes cam00 of ``avg_cams_final`` as the world origin (its fitted cam00 pose is used untransformed); the
release's cam00 has identity extrinsics. Should it not, the record is still exactly in cam00's frame (the fit's
world pose is moved by cam00's R, T) and the views are relative to cam00.

One cache frame per mesh, in cam00's frame (camera ``cam00``), with the frame's 18 averaged cameras as its
``views`` (``R_i``, ``T_i`` relative to cam00, normalization K), so the ``cameras`` target sampler renders exactly
XGaze3D's 18 views (labels equal to XGaze3D's: head pose, gaze, ``face_mat_norm`` = R of camera i) without storing
the mesh 18 times. Ids: subject ``subjectXXXX``, frame ``frameYYYY``, camera ``cam00``.

Texture: the atlas is decoded at reduced scale and downsampled once to ``texture_size`` (default 2048; the JPEG
is never decoded at full size, :func:`onthefly.meshio.read_texture`).

With a 149-field ``annotation_train`` file (no XGaze3D refinement): its 68 landmarks are raw-image pixels of the
original calibration; they are undistorted with it and re-projected through the averaged camera's K before the
fit. This is not what XGaze3D does (it needs the updated file); labels then differ from the release's.
"""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import least_squares

from ..meshio import read_obj, read_texture
from ..normalization import face_centre
from .base import FrameRecord, SourceError
from .readers import (
    XGAZE_UPDATED_FIELDS,
    FormatError,
    read_camera_xml,
    read_face_model,
    read_light_meta,
    read_xgaze_annotation,
)
from .registry import need, register

__all__ = ["XGaze3DSource", "LM68_FROM_50", "CAMERAS", "LM68_FIT", "LM50_FIT", "fit_head_pose", "find_frames",
           "raycast", "cluster_decimate"]

#: 68-point index of each of the 50 face-model rows
LM68_FROM_50 = np.r_[8, np.arange(17, 60), np.arange(61, 64), np.arange(65, 68)]
_MISSING_68 = np.setdiff1d(np.arange(68), LM68_FROM_50)
#: the 18 ETH-XGaze cameras
CAMERAS = tuple(f"cam{i:02d}" for i in range(18))
#: the 6 landmarks of XGaze3D's head-pose fit (68-point indices) and the matching face-model rows
LM68_FIT = (36, 39, 42, 45, 31, 35)
LM50_FIT = (20, 23, 26, 29, 15, 19)
_DATA_RE = re.compile(r"^\d+_data$")


def fit_head_pose(landmarks6: np.ndarray, model6: np.ndarray, cams: list[tuple[np.ndarray, np.ndarray,
                  np.ndarray]], dist0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XGaze3D's multi-view head-pose fit: (rvec (3,), tvec (3,)) of the model in the world frame.

    ``landmarks6`` (C,6,2) px per camera, ``model6`` (6,3) mm, ``cams`` C tuples ``(K, R, T)`` (world → camera),
    ``dist0`` camera 0's distortion (used by the initial EPnP + iterative ``solvePnP`` on camera 0 only). Then
    ``scipy.optimize.least_squares`` (default settings) of the pinhole residuals over all cameras."""
    lm = np.ascontiguousarray(landmarks6, np.float64)
    M = np.ascontiguousarray(model6, np.float64)
    K0 = cams[0][0]
    obj, img = M.reshape(-1, 1, 3), np.ascontiguousarray(lm[0]).reshape(-1, 1, 2)
    ok, rvec, tvec = cv2.solvePnP(obj, img, K0, dist0, flags=cv2.SOLVEPNP_EPNP)
    if ok:
        ok, rvec, tvec = cv2.solvePnP(obj, img, K0, dist0, rvec, tvec, True)
    if not ok or not np.isfinite(rvec).all() or not np.isfinite(tvec).all():
        raise ValueError("the initial PnP on cam00 failed")
    Ks = np.stack([c[0] for c in cams])
    Rs = np.stack([c[1] for c in cams])
    Ts = np.stack([np.asarray(c[2], np.float64).reshape(3) for c in cams])
    target = lm.reshape(-1)

    def residual(x):
        hR = cv2.Rodrigues(x[:3])[0]
        P = M @ hR.T + x[3:]                                          # (6,3) world
        Pc = np.einsum("cij,nj->cni", Rs, P) + Ts[:, None]             # (C,6,3)
        q = Pc / Pc[..., 2:3]
        uv = np.einsum("cij,cnj->cni", Ks, q)[..., :2]
        return uv.reshape(-1) - target

    sol = least_squares(residual, np.r_[rvec.ravel(), tvec.ravel()])
    if not np.isfinite(sol.x).all():
        raise ValueError("the multi-view head-pose fit diverged")
    return sol.x[:3].copy(), sol.x[3:].copy()


def find_frames(recon: Path) -> dict[tuple[str, str], Path]:
    """``{(subject, frame): frame folder}`` of an XGaze3D reconstruction output (``recon`` holds
    ``<date>/<time>/<resize>_data/`` or ``<resize>_data/``); a frame in several runs takes the latest (sorted
    date/time, then resize)."""
    recon = Path(recon)
    if not recon.is_dir():
        raise SourceError(f"{recon}: reconstruction folder not found")
    datas = sorted(p for p in recon.glob("*_data") if p.is_dir() and _DATA_RE.match(p.name))
    datas += sorted(p for p in recon.glob("*/*/*_data") if p.is_dir() and _DATA_RE.match(p.name))
    if not datas:
        if recon.name.endswith("_data") or any(p.is_dir() and p.name.startswith("subject") for p in recon.iterdir()):
            datas = [recon]
        else:
            raise SourceError(f"{recon}: no XGaze3D reconstruction found (expected <YYYY-MM-DD>/<HH-MM-SS>/"
                              "<resize>_data/<subject>/<frame>/final_obj/mvs3d.obj or <resize>_data/...)")
    out: dict[tuple[str, str], Path] = {}
    for d in datas:
        for sub in sorted(p for p in d.iterdir() if p.is_dir()):
            for fr in sorted(p for p in sub.iterdir() if p.is_dir()):
                out[(sub.name, fr.name)] = fr
    if not out:
        raise SourceError(f"{recon}: the reconstruction folders {[str(d) for d in datas][:3]} hold no "
                          "<subject>/<frame> folders")
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
    for i, d in enumerate(rays):  # 18 rays per frame
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


@register
class XGaze3DSource:
    """XGaze3D reconstructions + the ETH-XGaze root (see the module docstring)."""

    name = "xgaze3d"
    help = "XGaze3D reconstructions (RECON_DIR) with the ETH-XGaze root (XGAZE_ROOT)"

    def __init__(self, recon: str | Path, xgaze_root: str | Path, *, face_model: str | Path | None = None,
                 texture_size: int | None = 2048, decimate: float | None = None,
                 image_size: tuple[int, int] = (6000, 4000)):
        self.recon, self.root = Path(recon), Path(xgaze_root)
        if not self.root.is_dir():
            raise SourceError(f"{self.root}: ETH-XGaze root not found")
        fm = Path(face_model) if face_model is not None else self.root / "calibration" / "face_model.txt"
        self.face_model = read_face_model(fm)
        self.face_model_path = fm
        if decimate is not None and not decimate > 0:
            raise ValueError(f"--decimate: expected a positive cell size in mm, got {decimate}")
        if texture_size is not None and texture_size < 1:
            raise ValueError(f"--texture-size: expected a positive int, got {texture_size}")
        self.decimate, self.texture_size, self.image_size = decimate, texture_size, image_size
        self.light_meta_path = self.root / "light_meta.yaml"
        self.light_meta = read_light_meta(self.light_meta_path)
        found = find_frames(self.recon)
        self._frames = found
        self._keys: list[str] = []
        self.excluded: list[tuple[str, str]] = []   # (key, reason): listed by build_cache as skipped
        subjects = sorted({s for s, _ in found})
        for s in subjects:
            recon_frames = sorted(f for (ss, f) in found if ss == s)
            if s not in self.light_meta:
                self._keys += [f"{s}/{f}" for f in recon_frames]  # each load names the missing entry
                continue
            use = self._full_light(s)
            for f in recon_frames:
                if f not in use:
                    continue
                if not (found[(s, f)] / "final_obj").is_dir():  # XGaze3D keeps the folder of a failed frame
                    self.excluded.append((f"{s}/{f}", f"{found[(s, f)]}: no final_obj folder (a failed XGaze3D "
                                          "reconstruction)"))
                    continue
                self._keys.append(f"{s}/{f}")
            for f in use:
                if (s, f) not in found:
                    self.excluded.append((f"{s}/{f}", f"{self.recon}: full-light frame not reconstructed (no "
                                          f"folder {s}/{f} in the reconstruction output)"))
        self._subject_cache: dict[str, dict] = {}
        self._orig: dict | None = None
        self.attrs = {"xgaze3d_recon": str(self.recon), "xgaze3d_root": str(self.root),
                      "xgaze3d_face_model": str(fm)}

    # ------------------------------------------------------------------ CLI
    @classmethod
    def add_arguments(cls, add) -> None:
        add("--input", help="XGaze3D reconstruction output RECON_DIR (holds <date>/<time>/<resize>_data/ or "
            "<resize>_data/)")
        add("--annotations", help="the ETH-XGaze root XGAZE_ROOT (avg_cams_final/, calibration/, "
            "data/annotation_updated/, light_meta.yaml)")
        add("--face-model", help="face_model.txt (default XGAZE_ROOT/calibration/face_model.txt)")
        add("--decimate", type=float, default=None, metavar="MM",
            help="vertex-clustering decimation with this cell size in mm (default off)")

    @classmethod
    def from_args(cls, args):
        ts = getattr(args, "texture_size", None)
        return cls(need(args, "input", cls.name), need(args, "annotations", cls.name),
                   face_model=getattr(args, "face_model", None), decimate=getattr(args, "decimate", None),
                   texture_size=2048 if ts is None else ts)

    # ------------------------------------------------------------------ inputs
    def _full_light(self, subject: str) -> list[str]:
        """The subject's frames XGaze3D uses: sorted frame folders (data/train, else the annotation), first N."""
        train = self.root / "data" / "train" / subject
        if train.is_dir():
            frames = sorted(p.name for p in train.glob("frame*") if p.is_dir())
        else:
            path, rows, _ = self._annotation(subject)
            frames = sorted({f for f, _ in rows})
        n = self.light_meta[subject]
        return frames[:min(len(frames), n)]

    def _annotation(self, subject: str):
        d = self.root / "data"
        upd = d / "annotation_updated" / f"{subject}_update.csv"
        if upd.is_file():
            return upd, read_xgaze_annotation(upd, XGAZE_UPDATED_FIELDS), True
        orig = d / "annotation_train" / f"{subject}.csv"
        if orig.is_file():
            return orig, read_xgaze_annotation(orig), False
        raise SourceError(f"{upd}: annotation file not found (nor {orig}) for subject {subject}")

    def _original(self) -> dict:
        if self._orig is None:
            folder = self.root / "calibration" / "cam_calibration"
            self._orig = {c: read_camera_xml(folder / f"{c}.xml") for c in CAMERAS}
        return self._orig

    def _subject(self, subject: str) -> dict:
        if subject not in self._subject_cache:
            if len(self._subject_cache) > 4:
                self._subject_cache.clear()
            if subject not in self.light_meta:
                raise SourceError(f"{self.light_meta_path}: subject {subject} missing (no "
                                  "full_light_frame_end_idx for it)")
            folder = self.root / "avg_cams_final" / subject
            cams = {}
            for c in CAMERAS:
                cal = read_camera_xml(folder / f"{c}.xml")
                if cal.R is None:
                    raise FormatError(folder / f"{c}.xml", "no extrinsics (cam_rotation, cam_translation): an "
                                      "averaged camera needs them")
                cams[c] = cal
            path, rows, updated = self._annotation(subject)
            self._subject_cache[subject] = {"cams": cams, "ann_path": path, "rows": rows, "updated": updated}
        return self._subject_cache[subject]

    def keys(self) -> list[str]:
        return list(self._keys)

    # ------------------------------------------------------------------ frames
    def load(self, key: str) -> FrameRecord:
        subject, frame = key.split("/")
        folder = self._frames.get((subject, frame))
        if folder is None:
            raise SourceError(f"{self.recon}: no reconstruction folder for {key}")
        obj = folder / "final_obj" / "mvs3d.obj"
        if not (folder / "final_obj").is_dir():
            raise SourceError(f"{folder}: no final_obj folder (a failed XGaze3D reconstruction)")
        if not obj.is_file():
            raise SourceError(f"{obj}: mesh not found (final_obj without mvs3d.obj)")
        S = self._subject(subject)
        cams, rows, ann = S["cams"], S["rows"], S["ann_path"]
        orig = self._original()
        rr = []
        for c in CAMERAS:
            r = rows.get((frame, c))
            if r is None:
                raise SourceError(f"{ann}: no row for {frame}/{c}.JPG (needed by {obj})")
            rr.append(r)
        lm68 = np.stack([r.landmarks for r in rr])                       # (18,68,2)
        if not S["updated"]:  # raw-image pixels of the original calibration -> pinhole pixels of the averaged K
            for i, c in enumerate(CAMERAS):
                n = cv2.undistortPoints(lm68[i].reshape(-1, 1, 2), orig[c].K, orig[c].dist).reshape(-1, 2)
                lm68[i] = n @ cams[c].K[:2, :2].T + cams[c].K[:2, 2]
        model6 = self.face_model[list(LM50_FIT)]
        try:
            rvec, tvec = fit_head_pose(lm68[:, list(LM68_FIT)], model6,
                                       [(cams[c].K, cams[c].R, cams[c].t) for c in CAMERAS], cams["cam00"].dist)
        except ValueError as exc:
            raise SourceError(f"{ann}: {frame}: head-pose fit failed ({exc})") from None
        hR_w = cv2.Rodrigues(rvec)[0]
        Fc_w = self.face_model @ hR_w.T + tvec
        # the record lives in cam00's frame (the OBJ's frame); cam00 of avg_cams_final is the world origin
        R0, T0 = cams["cam00"].R, cams["cam00"].t
        hR = R0 @ hR_w
        Fc = Fc_w @ R0.T + T0
        if (Fc[:, 2] <= 0).any():
            raise SourceError(f"{ann}: {frame}: the fitted face model lies behind cam00")

        fc = face_centre(Fc, "eye_nose").numpy()
        Rrel = np.stack([cams[c].R @ R0.T for c in CAMERAS])
        Trel = np.stack([cams[c].t - Rrel[i] @ T0 for i, c in enumerate(CAMERAS)])
        target = rr[0].target
        moved = target @ Rrel.transpose(0, 2, 1) + Trel                  # cam00's target in every camera
        spread = float(np.linalg.norm(moved - np.stack([r.target for r in rr]), axis=1).max())
        # mesh and texture
        mesh = read_obj(obj)
        texture = None
        if mesh.faces_uv is not None:
            if mesh.texture_path is None:
                raise SourceError(f"{obj}: UV coordinates but no texture (mtllib / map_Kd)")
            texture = read_texture(mesh.texture_path, self.texture_size)
        elif mesh.colors is None:
            raise SourceError(f"{obj}: no UV texture and no vertex colours")
        verts, faces, colors, faces_uv = mesh.verts, mesh.faces, mesh.colors, mesh.faces_uv
        if self.decimate:
            verts, faces, colors, faces_uv = cluster_decimate(verts, faces, self.decimate, colors, faces_uv)
        # landmarks: the 50 posed model points, the other 18 ray-cast through cam00's annotated points
        lm = np.zeros((68, 3))
        lm[LM68_FROM_50] = Fc
        K0 = cams["cam00"].K
        n0 = (lm68[0][_MISSING_68] - K0[:2, 2]) @ np.linalg.inv(K0[:2, :2]).T
        rays = np.concatenate([n0, np.ones((len(n0), 1))], 1)
        pts, hit = raycast(verts, faces, rays)
        pts[~hit] = rays[~hit] * Fc[0, 2]
        lm[_MISSING_68] = pts
        size = orig["cam00"].image_size or self.image_size
        return FrameRecord(
            verts=np.asarray(verts, np.float32), faces=faces, vert_colors=colors,
            uv=None if texture is None else mesh.uv.astype(np.float32), faces_uv=None if texture is None else faces_uv,
            texture=texture, landmarks=lm, head_rotation=hR, face_centre=fc, face_centre_rule="eye_nose",
            gaze_target=target, K=orig["cam00"].K, image_size=size, subject=subject, frame=frame, camera="cam00",
            views={"names": list(CAMERAS), "R": Rrel, "t": Trel, "K": np.stack([orig[c].K for c in CAMERAS])},
            origin=str(obj),
            extra={"landmark_misses": int((~hit).sum()),
                   "quality": {"target_spread_mm": spread, "landmark_misses": float((~hit).sum())}})
