"""Write procedural frames in the XGaze3D / ETH-XGaze layout: a Metashape-style textured OBJ in a world frame,
``subjectXXXX.csv`` rows for two cameras, ``camXX.xml`` calibration and a ``face_model.txt`` (from the procedural
landmarks with the 68 → 50 map)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from onthefly.meshio import write_textured_obj
from onthefly.sources.xgaze3d import LM68_FROM_50

#: world → camera extrinsics of the two fixture cameras (R, t mm) and their distortion
CAMERAS = {
    "cam00": (cv2.Rodrigues(np.array([0.05, -0.1, 0.02]))[0], np.array([10.0, -20.0, 30.0]),
              np.array([-0.05, 0.02, 0.0, 0.0, 0.0])),
    "cam01": (cv2.Rodrigues(np.array([0.1, 0.45, -0.05]))[0], np.array([-250.0, 15.0, 80.0]),
              np.zeros(5)),
}


def to_camera(rec, cam: str):
    """(M, t) with X_cam = M·X_rec + t for a point in the record's (= cam00's) frame."""
    R0, t0, _ = CAMERAS["cam00"]
    Rc, tc, _ = CAMERAS[cam]
    M = Rc @ R0.T
    return M, tc - M @ t0


def write_face_model(rec, path: Path) -> None:
    head = (rec.landmarks - rec.face_centre) @ rec.head_rotation  # hRᵀ·(L − c), head frame centred at c
    np.savetxt(path, head[LM68_FROM_50], fmt="%.9f")


def write_xgaze_frame(rec, root: Path, ann: Path, cal: Path, subject: str, frame: str,
                      texture_name: str = "mvs3d.jpg"):
    R0, t0, _ = CAMERAS["cam00"]
    world = (rec.verts.astype(np.float64) - t0) @ R0          # X_w = R0ᵀ·(X_0 − t0)
    uv = rec.verts[:, :2] / rec.verts[:, 2:] * 1200 / np.array([1280, 960]) + 0.5
    tex = np.zeros((128, 128, 3), np.uint8)
    tex[..., 0] = np.linspace(0, 255, 128)[None]
    tex[..., 1] = np.linspace(0, 255, 128)[:, None]
    folder = root / subject / frame / "final_obj"
    write_textured_obj(folder / "mvs3d.obj", world, rec.faces, uv, rec.faces, tex, colors=rec.vert_colors,
                       texture_name=texture_name)
    cal.mkdir(parents=True, exist_ok=True)
    ann.mkdir(parents=True, exist_ok=True)
    rows = []
    for cam, (R, t, dist) in CAMERAS.items():
        K = rec.K
        fs = cv2.FileStorage(str(cal / f"{cam}.xml"), cv2.FILE_STORAGE_WRITE)
        fs.write("Camera_Matrix", K)
        fs.write("Distortion_Coefficients", dist.reshape(1, -1))
        fs.write("cam_rotation", R)
        fs.write("cam_translation", t.reshape(3, 1))
        fs.release()
        M, tt = to_camera(rec, cam)
        hR = M @ rec.head_rotation
        tvec = M @ rec.face_centre + tt
        target = M @ rec.gaze_target + tt
        L = rec.landmarks @ M.T + tt
        lm2d = cv2.projectPoints(L.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), K, dist)[0].reshape(-1)
        rows.append([frame, f"{cam}.JPG", "960", "540", *(f"{x:.9f}" for x in target),
                     *(f"{x:.9f}" for x in cv2.Rodrigues(hR)[0].ravel()), *(f"{x:.9f}" for x in tvec),
                     *(f"{x:.6f}" for x in lm2d)])
    with open(ann / f"{subject}.csv", "a") as fh:
        for r in rows:
            fh.write(",".join(r) + "\n")
    return folder / "mvs3d.obj"
