"""Ground truth for measuring reconstruction: procedural heads rendered from a source camera, novel views of
both the true and the reconstructed mesh, and their face-region PSNR/SSIM (``benchmarks/reconstruction.py``).

A :class:`GroundTruthFrame` is a procedural head (an identity that is not the template) posed in front of
:data:`GT_CAMERA`, its source image (unlit vertex colours, 2x supersampled, grey background) and its exact labels:
the 2-D landmarks are the projections of the head's landmark vertices, the jaw's on the face outline (iBUG
semantics). A novel view rotates a mesh rigidly about the
true face centre by (pitch, yaw) in the camera frame (``Ry(yaw)·Rx(-pitch)``, the convention of
``onthefly.geometry``) and renders it with the source camera.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..geometry import pitchyaw_to_rotation
from ..normalization import face_centre
from ..render import UVTexture, VertexColors, render
from ..synthetic import build_heads, sample_gaze_targets, sample_identities
from .contour import OUTLINE, ibug_outline
from .metrics import masked_psnr, masked_ssim

__all__ = ["GT_CAMERA", "GroundTruthFrame", "groundtruth_frames", "rotate_about", "render_truth",
           "render_reconstruction", "compare_view", "BACKGROUND", "view_rotation", "camera_K", "write_manifest"]

#: (focal px, width px, height px) of the ground-truth source camera; principal point at the image centre
GT_CAMERA = (1200.0, 640, 640)
#: background grey of every ground-truth render
BACKGROUND = (0.35, 0.35, 0.35)


@dataclass
class GroundTruthFrame:
    """``verts`` (V,3) camera frame; ``faces``; ``colors`` (V,3) uint8; ``face_region`` (V,) bool; ``image``
    (H,W,3) uint8; ``K``; ``landmarks_2d`` (68,2) iBUG semantics (jaw, and a brow end hidden by the turn, on the outline,
    :mod:`onthefly.reconstruct.contour`: what an annotator or a 300-W detector marks); ``landmarks_2d_fixed``
    (68,2) projections of the fixed landmark vertices ``landmarks`` (68,3); ``landmarks_ibug`` (68,3) the 3-D
    points of ``landmarks_2d``; ``head_rotation``; ``face_centre`` (eye_nose rule); ``gaze_target`` (camera
    frame)."""

    verts: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    face_region: np.ndarray
    image: np.ndarray
    K: np.ndarray
    landmarks_2d: np.ndarray
    landmarks_2d_fixed: np.ndarray
    landmarks: np.ndarray
    landmarks_ibug: np.ndarray
    head_rotation: np.ndarray
    face_centre: np.ndarray
    gaze_target: np.ndarray


def _rot(pitch: float, yaw: float, roll: float = 0.0) -> np.ndarray:
    R = pitchyaw_to_rotation(torch.tensor([pitch, yaw], dtype=torch.float64)).numpy()
    c, s = math.cos(roll), math.sin(roll)
    return R @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def camera_K() -> np.ndarray:
    f, w, h = GT_CAMERA
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])


def render_image(verts: np.ndarray, faces: np.ndarray, K: np.ndarray, size: tuple[int, int], textures,
                 ssaa: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Unlit render → (H,W,3) float image in [0,1] over :data:`BACKGROUND`, (H,W) coverage."""
    w, h = size
    r = render(torch.from_numpy(np.asarray(verts, np.float32))[None], torch.from_numpy(np.asarray(faces)),
               torch.from_numpy(np.asarray(K, np.float32))[None], (h, w), textures=textures,
               background=torch.tensor(BACKGROUND), ssaa=ssaa)
    return r.image[0].permute(1, 2, 0).numpy().astype(np.float64), r.mask[0, 0].numpy()


def groundtruth_frames(n: int, seed: int = 1, *, max_yaw: float = 15.0, max_pitch: float = 10.0,
                       max_roll: float = 5.0, distance: float = 650.0,
                       poses: list[tuple[float, float, float]] | None = None) -> list[GroundTruthFrame]:
    """``n`` procedural heads of identities ``sample_identities(n, seed)`` (seed != the template's) with head
    pitch/yaw/roll uniform in ±max (degrees, from ``default_rng(seed)``; or the given ``poses``, (pitch, yaw, roll)
    degrees per head), face centre ``distance`` mm in front of :data:`GT_CAMERA` on its optical axis, eyes
    fixating ``sample_gaze_targets(n, seed + 1)``."""
    heads = build_heads(sample_identities(n, torch.Generator().manual_seed(seed)),
                        sample_gaze_targets(n, torch.Generator().manual_seed(seed + 1)))
    rng = np.random.default_rng(seed)
    deg = math.pi / 180
    K = camera_K()
    out = []
    for k in range(n):
        pyr = (rng.uniform(-max_pitch, max_pitch), rng.uniform(-max_yaw, max_yaw), rng.uniform(-max_roll, max_roll))
        if poses is not None:
            pyr = poses[k]
        R = _rot(pyr[0] * deg, pyr[1] * deg, pyr[2] * deg)
        v = heads.verts[k].double().numpy()
        lm = heads.landmarks[k].double().numpy()
        c = face_centre(torch.from_numpy(lm), "eye_nose").numpy()
        t = np.array([0, 0, distance]) - R @ c
        verts = v @ R.T + t
        colors = heads.vert_colors[k].numpy()
        img, _ = render_image(verts, heads.faces.numpy(), K, GT_CAMERA[1:],
                              VertexColors(torch.from_numpy(colors)[None]))
        lm_c = lm @ R.T + t
        q = lm_c @ K.T
        ib = lm_c.copy()  # iBUG semantics: the jaw (and a hidden brow end) on the face's outline in this view
        pts, on = ibug_outline(torch.from_numpy(verts)[None], torch.from_numpy(R)[None], torch.from_numpy(K)[None])
        ib[OUTLINE[on[0].numpy()]] = pts[0].numpy()[on[0].numpy()]
        qi = ib @ K.T
        out.append(GroundTruthFrame(
            verts=verts, faces=heads.faces.numpy(), colors=colors,
            face_region=(heads.face_region & (heads.part_ids[k] != 1)).numpy(),
            image=np.rint(img * 255).astype(np.uint8), K=K, landmarks_2d=qi[:, :2] / qi[:, 2:],
            landmarks_2d_fixed=q[:, :2] / q[:, 2:], landmarks=lm_c, landmarks_ibug=ib,
            head_rotation=R, face_centre=R @ c + t, gaze_target=R @ heads.gaze_targets[k].double().numpy() + t))
    return out


def view_rotation(pitch_deg: float, yaw_deg: float) -> np.ndarray:
    """The rotation ``Ry(yaw)·Rx(-pitch)`` (camera frame) of a novel view."""
    return _rot(math.radians(pitch_deg), math.radians(yaw_deg))


def rotate_about(verts: np.ndarray, centre: np.ndarray, pitch_deg: float, yaw_deg: float) -> np.ndarray:
    """Rotate points rigidly about ``centre`` by ``Ry(yaw)·Rx(-pitch)`` (camera frame, degrees)."""
    R = _rot(math.radians(pitch_deg), math.radians(yaw_deg))
    return (verts - centre) @ R.T + centre


def render_truth(gt: GroundTruthFrame, pitch: float, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth view (H,W,3) and its face mask (H,W) bool (face-region vertices, coverage > 0.5)."""
    v = rotate_about(gt.verts, gt.face_centre, pitch, yaw)
    img, _ = render_image(v, gt.faces, gt.K, GT_CAMERA[1:], VertexColors(torch.from_numpy(gt.colors)[None]))
    fr = np.repeat(gt.face_region[:, None].astype(np.float32), 3, 1)
    m, cov = render_image(v, gt.faces, gt.K, GT_CAMERA[1:], VertexColors(torch.from_numpy(fr)[None]), ssaa=1)
    return img, (cov > 0.5) & (m[..., 0] > 0.999)


def render_reconstruction(rec, K: np.ndarray, size: tuple[int, int], centre: np.ndarray,
                          pitch: float, yaw: float, ssaa: int = 2) -> np.ndarray:
    """View of a reconstruction (a :class:`Reconstruction` or a :class:`~onthefly.sources.base.FrameRecord`: UV
    texture) rotated about ``centre``, rendered with ``K`` at ``size`` (w, h)."""
    v = rotate_about(np.asarray(rec.verts, np.float64), centre, pitch, yaw)
    tex = UVTexture(torch.from_numpy(np.ascontiguousarray(rec.texture))[None],
                    torch.from_numpy(np.asarray(rec.uv, np.float32))[None], torch.from_numpy(np.asarray(rec.faces_uv)))
    return render_image(v, rec.faces, K, size, tex, ssaa=ssaa)[0]


def compare_view(gt: GroundTruthFrame, rec, pitch: float, yaw: float, truth=None) -> dict:
    """Face-region PSNR (dB) and SSIM of the reconstruction's view against the truth's (``truth``: a
    precomputed :func:`render_truth` result)."""
    truth, mask = render_truth(gt, pitch, yaw) if truth is None else truth
    img = render_reconstruction(rec, gt.K, GT_CAMERA[1:], gt.face_centre, pitch, yaw)
    return {"psnr": masked_psnr(img, truth, mask), "ssim": masked_ssim(img, truth, mask),
            "mask_pixels": int(mask.sum())}


def write_manifest(frames: list[GroundTruthFrame], folder, *, subject: str = "gt", face_centre: bool = True):
    """Write the frames as PNGs plus ``frames.jsonl`` (exact 2-D landmarks, gaze target, optionally the true face
    centre) into ``folder``; returns the manifest path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"defaults": {"K": frames[0].K.tolist(), "subject": subject,
                                      "image_size": list(GT_CAMERA[1:])}})]
    for i, g in enumerate(frames):
        name = f"frame{i:03d}.png"
        if not cv2.imwrite(str(folder / name), np.ascontiguousarray(g.image[..., ::-1])):
            raise OSError(f"{folder / name}: cannot write")
        row = {"image": name, "landmarks": np.round(g.landmarks_2d, 4).tolist(), "gaze_target": g.gaze_target.tolist()}
        if face_centre:
            row["face_centre"] = g.face_centre.tolist()
        lines.append(json.dumps(row))
    path = folder / "frames.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path
