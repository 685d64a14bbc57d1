"""Raw MPIIFaceGaze and ETH-XGaze roots written from rendered procedural heads (real-formats.md §1, §3).

MPIIFaceGaze: ``p00/day01/0001.jpg`` ..., ``p00/p00.txt`` (28 fields: the 6 landmarks as integers, the 6-point model
posed with the head's rotation (rvec) at the translation that puts its mean on the head's eye-mouth centre (tvec),
that mean (face centre), the gaze target, ``left``) and ``p00/Calibration/Camera.mat`` (``cameraMatrix``,
``distCoeffs`` (zero: the pinhole renderer cannot distort), ``retval``, ``rvecs``, ``tvecs``). The image size is
the ground-truth camera's 640×640 (the real one is 1280×720; K matches the images).

ETH-XGaze: one head seen by cam00 (the ground-truth camera) and cam03 (turned 12° about the head), written as
``data/train/subject0000/frame0000/camXX.JPG``; cam03's JPG is stored rotated 180° (as the rig stores it), while its
XML and CSV row refer to the upright image. ``calibration/cam_calibration/camXX.xml`` (K, 5 zero distortion
coefficients, R, t, size), ``calibration/face_model.txt`` (the head's 50 landmarks about its face centre),
``data/annotation_train/subject0000.csv`` (149 fields: target, the head's rvec / tvec of the face model, 68
landmarks) and ``light_meta.yaml``.
"""
from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import scipy.io
import torch

from onthefly.reconstruct.groundtruth import GT_CAMERA, groundtruth_frames, render_image
from onthefly.render import VertexColors
from onthefly.sources.nv_gaze import MPII_FACE_MODEL
from onthefly.sources.xgaze3d import LM68_FROM_50

from .xgaze3d_real_fixture import write_camera_xml


@functools.lru_cache(maxsize=None)
def heads(n: int = 2):
    return tuple(groundtruth_frames(n, seed=5))


def _f(x) -> list[str]:
    return [repr(float(v)) for v in np.ravel(x)]


def write_mpiifacegaze(tmp: Path, n: int = 2) -> tuple[Path, list]:
    root = tmp / "MPIIFaceGaze"
    sd = root / "p00"
    (sd / "day01").mkdir(parents=True)
    (sd / "Calibration").mkdir()
    frames = heads(n)
    K = frames[0].K
    scipy.io.savemat(sd / "Calibration" / "Camera.mat", {"cameraMatrix": K, "distCoeffs": np.zeros((1, 5)),
                                                         "retval": 0.3, "rvecs": np.zeros((3, 1)),
                                                         "tvecs": np.zeros((3, 1))})
    lines, truth = [], []
    for k, fr in enumerate(frames):
        name = f"day01/{k + 1:04d}.jpg"
        cv2.imwrite(str(sd / name), fr.image[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 95])
        L6 = fr.landmarks[[36, 39, 42, 45, 48, 54]]
        t = L6.mean(0) - fr.head_rotation @ MPII_FACE_MODEL.mean(0)
        P = MPII_FACE_MODEL @ fr.head_rotation.T + t
        lm6 = fr.landmarks_2d[[36, 39, 42, 45, 48, 54]]
        fields = [name, "640", "400", *(str(int(round(v))) for v in lm6.ravel()),
                  *_f(cv2.Rodrigues(fr.head_rotation)[0]), *_f(t), *_f(P.mean(0)), *_f(fr.gaze_target), "left"]
        assert len(fields) == 28
        lines.append(" ".join(fields))
        truth.append({"frame": fr, "rvec": cv2.Rodrigues(fr.head_rotation)[0].ravel(), "fc": P.mean(0),
                      "target": fr.gaze_target})
    (sd / "p00.txt").write_text("\n".join(lines) + "\n")
    return root, truth


def _yaw(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def write_eth_xgaze(tmp: Path) -> tuple[Path, dict]:
    root = tmp / "xgaze"
    fr = heads(1)[0]
    K = fr.K
    w, h = GT_CAMERA[1:]
    fm = (fr.landmarks - fr.face_centre) @ fr.head_rotation
    (root / "calibration").mkdir(parents=True)
    np.savetxt(root / "calibration" / "face_model.txt", fm[LM68_FROM_50], fmt="%.9f")
    c = fr.face_centre
    rigs = {"cam00": (np.eye(3), np.zeros(3)), "cam03": (_yaw(np.radians(12)), None)}
    R3 = rigs["cam03"][0]
    rigs["cam03"] = (R3, c - R3 @ c)                     # turned about the face centre
    folder = root / "data" / "train" / "subject0000" / "frame0000"
    folder.mkdir(parents=True)
    rows, truth = [], {}
    for cam, (R, t) in rigs.items():
        write_camera_xml(root / "calibration" / "cam_calibration" / f"{cam}.xml", K, np.zeros(5), R, t, (w, h))
        verts = fr.verts @ R.T + t
        img, _ = render_image(verts, fr.faces, K, (w, h), VertexColors(torch.from_numpy(fr.colors)[None]))
        upright = np.rint(img * 255).astype(np.uint8)
        stored = upright[::-1, ::-1] if cam == "cam03" else upright
        cv2.imwrite(str(folder / f"{cam}.JPG"), stored[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 95])
        L = fr.landmarks @ R.T + t
        q = L @ K.T
        lm = q[:, :2] / q[:, 2:]
        hR = R @ fr.head_rotation
        tv = R @ fr.face_centre + t                       # the face model is centred at the face centre
        rows.append(["frame0000", f"{cam}.JPG", "960", "540", *_f(R @ fr.gaze_target + t),
                     *_f(cv2.Rodrigues(hR)[0]), *_f(tv), *_f(lm)])
        truth[cam] = {"upright": upright, "hR": hR, "tvec": tv, "target": R @ fr.gaze_target + t, "K": K}
    (root / "data" / "annotation_train").mkdir(parents=True)
    (root / "data" / "annotation_train" / "subject0000.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")
    (root / "light_meta.yaml").write_text("subject0000:\n  full_light_frame_end_idx: 1\n")
    return root, truth
