"""Write procedural heads in the layout of the real XGaze3D release and ETH-XGaze root (real-formats.md §1-2).

XGAZE_ROOT::

    calibration/cam_calibration/camXX.xml     original calibration (K, 5 distortion coefficients, R, t, size)
    calibration/face_model.txt                50x3 mm (the procedural head's landmarks, 68 -> 50 order)
    avg_cams_final/subjectXXXX/camXX.xml      averaged cameras (cam00 = world origin: R = I, t = 0)
    data/annotation_updated/subjectXXXX_update.csv   249 fields per (frame, camera)
    data/train/subjectXXXX/frameYYYY/         frame folders (XGaze3D lists them)
    light_meta.yaml                           subjectXXXX: {full_light_frame_end_idx: N}

RECON_DIR::

    2026-01-01/12-00-00/1200_data/subjectXXXX/frameYYYY/final_obj/mvs3d.{obj,mtl,jpg}

The mesh is the procedural head in cam00's frame (the procedural source camera's frame, mm). Each camera's row has
the head's 68 landmarks projected through that averaged camera (pinhole, as the updated file's landmarks are) plus
seeded noise of ``noise_px`` px, so the multi-view fit is not trivially exact; the target is the true gaze target
moved into that camera; the 50 reprojected landmarks are the true model projected.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from onthefly.sources.xgaze3d import CAMERAS, LM68_FROM_50

IMAGE_SIZE = (6000, 4000)


def _look_at(C: np.ndarray, target: np.ndarray, roll: float) -> tuple[np.ndarray, np.ndarray]:
    """World → camera (R, t) of a camera at C looking at target (OpenCV axes), rolled by ``roll`` rad."""
    z = target - C
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    c, s = np.cos(roll), np.sin(roll)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ R
    return R, -R @ C


def camera_rig(centre: np.ndarray, seed: int = 0) -> dict[str, tuple]:
    """18 averaged cameras ``{name: (K, dist, R, t)}`` around a face at ``centre`` (cam00 frame): cam00 is the
    identity; the others on a sphere through cam00's centre, yaw −60°…60°, pitch −30°…30°."""
    rng = np.random.default_rng(seed)
    out = {}
    d = float(np.linalg.norm(centre))
    grid = [(0, 0)] + [(p, y) for p in (-30, 0, 30) for y in (-60, -40, -20, 20, 40, 60)][:17]
    for name, (p, y) in zip(CAMERAS, grid):
        f = 11000 + rng.uniform(-300, 300)
        K = np.array([[f, 0, 3000 + rng.uniform(-40, 40)], [0, f * (1 + rng.uniform(-2e-3, 2e-3)),
                      2000 + rng.uniform(-40, 40)], [0, 0, 1.0]])
        dist = np.array([rng.uniform(-0.1, 0.1), rng.uniform(-0.2, 0.2), 0, 0, 0])
        if name == "cam00":
            R, t = np.eye(3), np.zeros(3)
        else:
            a, b = np.radians(y), np.radians(p)
            dirn = np.array([np.sin(a) * np.cos(b), np.sin(b), -np.cos(a) * np.cos(b)])
            C = centre + dirn * d * rng.uniform(0.9, 1.1)
            R, t = _look_at(C, centre + rng.normal(0, 20, 3), rng.uniform(-0.1, 0.1))
        out[name] = (K, dist, R, t)
    return out


def write_camera_xml(path: Path, K, dist, R=None, t=None, size=IMAGE_SIZE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    fs.write("Camera_Matrix", np.asarray(K, np.float64))
    fs.write("Distortion_Coefficients", np.asarray(dist, np.float64).reshape(1, -1))
    if R is not None:
        fs.write("cam_rotation", np.asarray(R, np.float64))
        fs.write("cam_translation", np.asarray(t, np.float64).reshape(3, 1))
    fs.write("image_Width", int(size[0]))
    fs.write("image_Height", int(size[1]))
    fs.release()


def face_model_of(rec) -> np.ndarray:
    """The 50-row face model of a procedural record: its landmarks in the head frame, about the face centre."""
    return ((rec.landmarks - rec.face_centre) @ rec.head_rotation)[LM68_FROM_50]


def write_mesh(folder: Path, rec, texture: np.ndarray | None = None) -> Path:
    """``final_obj/mvs3d.obj`` (``v x y z r g b`` decimals, ``vt``, ``vn``, ``f v/vt/vn``), ``mvs3d.mtl`` with the
    materials ``Solid`` and ``mvs3d`` (``map_Kd mvs3d.jpg``) and the atlas ``mvs3d.jpg``."""
    fo = folder / "final_obj"
    fo.mkdir(parents=True, exist_ok=True)
    v = rec.verts.astype(np.float64)
    uv = np.clip(v[:, :2] / v[:, 2:] * 0.9 + 0.5, 0.0, 1.0)
    n = np.zeros_like(v)
    tri = v[rec.faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    for k in range(3):
        np.add.at(n, rec.faces[:, k], fn)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    if texture is None:
        texture = np.zeros((256, 256, 3), np.uint8)
        texture[..., 0] = np.linspace(30, 230, 256)[None]
        texture[..., 1] = np.linspace(30, 230, 256)[:, None]
        texture[..., 2] = 128
    cv2.imwrite(str(fo / "mvs3d.jpg"), np.ascontiguousarray(texture[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    (fo / "mvs3d.mtl").write_text(
        "# Metashape-style material library\n\nnewmtl Solid\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 1\n\n"
        "newmtl mvs3d\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nd 1\nillum 2\nNs 0\nmap_Kd mvs3d.jpg\n")
    f = rec.faces + 1
    with open(fo / "mvs3d.obj", "w") as fh:
        fh.write("# Agisoft-style OBJ\nmtllib mvs3d.mtl\n")
        np.savetxt(fh, np.concatenate([v, rec.vert_colors / 255.0], 1), fmt="v %.6f %.6f %.6f %.6f %.6f %.6f")
        np.savetxt(fh, uv, fmt="vt %.6f %.6f")
        np.savetxt(fh, n, fmt="vn %.6f %.6f %.6f")
        fh.write("usemtl mvs3d\n")
        np.savetxt(fh, np.stack([f, f, f], 2).reshape(-1, 9), fmt="f %d/%d/%d %d/%d/%d %d/%d/%d")
    return fo / "mvs3d.obj"


def _fmt(x) -> list[str]:
    return [repr(float(v)) for v in np.asarray(x).ravel()]


def write_xgaze3d(tmp: Path, recs, *, subjects=("subject0000", "subject0003"), frames_per_subject=2,
                  full_light=None, failed=(), noise_px: float = 0.3, seed: int = 0, texture=None,
                  updated: bool = True) -> tuple[Path, Path, dict]:
    """Write the release for ``recs`` (split over ``subjects``, ``frames_per_subject`` each, frames
    ``frame0000``...). ``full_light`` {subject: N} (default: all frames); ``failed`` (subject, frame) pairs get a
    folder without ``final_obj``. Returns (RECON_DIR, XGAZE_ROOT, truth {(subject, frame): dict})."""
    rng = np.random.default_rng(seed)
    root, recon = tmp / "xgaze", tmp / "recon"
    data = recon / "2026-01-01" / "12-00-00" / "1200_data"
    fm = face_model_of(recs[0])
    (root / "calibration").mkdir(parents=True, exist_ok=True)
    np.savetxt(root / "calibration" / "face_model.txt", fm, fmt="%.9f")
    truth: dict = {}
    light: dict = {}
    k = 0
    for s in subjects:
        rig = camera_rig(recs[k % len(recs)].face_centre, seed=int(s[-4:]))
        for name, (K, dist, R, t) in rig.items():
            write_camera_xml(root / "avg_cams_final" / s / f"{name}.xml", K, dist, R, t)
            if not (root / "calibration" / "cam_calibration" / f"{name}.xml").exists():
                # the original calibration: other intrinsics and slightly different extrinsics
                dR = cv2.Rodrigues(rng.normal(0, 0.003, 3))[0]
                write_camera_xml(root / "calibration" / "cam_calibration" / f"{name}.xml",
                                 K * np.array([[1.01, 1, 1.002], [1, 1.01, 0.998], [1, 1, 1]]), dist * 0.9,
                                 dR @ R, t + rng.normal(0, 2, 3))
        rows = []
        for j in range(frames_per_subject):
            rec = recs[k % len(recs)]
            k += 1
            frame = f"frame{j:04d}"
            (root / "data" / "train" / s / frame).mkdir(parents=True, exist_ok=True)
            folder = data / s / frame
            if (s, frame) in failed:
                folder.mkdir(parents=True, exist_ok=True)
            else:
                write_mesh(folder, rec, texture)
            hR, c = rec.head_rotation, rec.face_centre
            P = fm @ hR.T + c                                  # posed model, cam00 frame = world
            for name, (K, dist, R, t) in rig.items():
                L = rec.landmarks @ R.T + t
                lm = (L[:, :2] / L[:, 2:]) @ K[:2, :2].T + K[:2, 2] + rng.normal(0, noise_px, (68, 2))
                Pi = P @ R.T + t
                lm50 = (Pi[:, :2] / Pi[:, 2:]) @ K[:2, :2].T + K[:2, 2]
                row = [frame, f"{name}.JPG", "960", "540", *_fmt(R @ rec.gaze_target + t),
                       *_fmt(cv2.Rodrigues(R @ hR)[0]), *_fmt(R @ c + t), *_fmt(lm)]
                if updated:
                    row += _fmt(lm50)
                rows.append(row)
            truth[(s, frame)] = {"rec": rec, "rig": rig}
        ann = root / "data" / ("annotation_updated" if updated else "annotation_train")
        ann.mkdir(parents=True, exist_ok=True)
        with open(ann / (f"{s}_update.csv" if updated else f"{s}.csv"), "w") as fh:
            for r in rows:
                fh.write(",".join(r) + "\n")
        light[s] = (full_light or {}).get(s, frames_per_subject)
    (root / "light_meta.yaml").write_text("".join(f"{s}:\n  full_light_frame_end_idx: {n}\n"
                                                  for s, n in light.items()))
    return recon, root, truth
