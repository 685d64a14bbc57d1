"""Texture: the source image projected onto the fitted mesh, with visibility and mirror fill.

* :func:`vertex_visibility`: the mesh is rasterized from the source camera with the project's rasterizer
  (:func:`onthefly.render.rasterize`, over the face's bounding box, at most ``max_side`` px); a vertex is
  *visible* when it lies inside the image, faces the camera (``cos`` between its normal and the direction to
  the camera ≥ ``min_cos``: grazing surfaces smear when rotated) and is not behind the z-buffer
  (by more than ``tol_mm``).
* :func:`build_texture`: UVs are the source pixel coordinates of the vertices (with the lens distortion, so the
  texture is the source image as it was taken), cropped to the face. Each triangle takes one of three UV sets,
  whole (no triangle mixes them, so nothing smears across the face):

  1. **source**: all three vertices visible → their own pixels;
  2. **mirror**: otherwise, when the mirror vertices (:attr:`FaceTemplate.mirror`) of all three are visible →
     the mirror vertices' pixels (faces are nearly symmetric);
  3. **unseen**: otherwise → a reserved strip of the texture filled with the mean colour of the visible face
     (``UNSEEN_RGB`` marks it instead with ``mark_unseen=True``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..checks import trusted
from ..render import rasterize
from .fit import project

__all__ = ["vertex_visibility", "vertex_normals", "build_texture", "TextureResult", "UNSEEN_RGB"]

#: colour of unseen triangles with ``mark_unseen=True`` (magenta: obviously not skin)
UNSEEN_RGB = (255, 0, 255)
_STRIP = 4  # rows of the reserved strip under the cropped image


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V,3) (outward for outward-wound faces)."""
    v = verts[faces]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    out = np.zeros_like(verts)
    for k in range(3):
        np.add.at(out, faces[:, k], n)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def vertex_visibility(verts: np.ndarray, faces: np.ndarray, K: np.ndarray, image_size: tuple[int, int], *,
                      min_cos: float = 0.2, tol_mm: float = 1.5, max_side: int = 640) -> np.ndarray:
    """(V,) bool: vertices seen by the source camera (see the module docstring). ``image_size`` is (w, h)."""
    w, h = image_size
    K = np.asarray(K, np.float64)
    p = project(verts, K)
    inside = (p[:, 0] >= -0.5) & (p[:, 0] <= w - 0.5) & (p[:, 1] >= -0.5) & (p[:, 1] <= h - 0.5) & (verts[:, 2] > 0)
    n = vertex_normals(verts, faces)
    cos = -(n * verts).sum(1) / np.linalg.norm(verts, axis=1)
    vis = inside & (cos >= min_cos)
    if not vis.any():
        return vis
    # z-buffer over the bounding box of the candidate vertices, downscaled to at most max_side px
    x0, y0 = np.floor(p[vis].min(0)).astype(int) - 2
    x1, y1 = np.ceil(p[vis].max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    s = min(1.0, max_side / max(x1 - x0 + 1, y1 - y0 + 1))
    Kc = K.copy()
    Kc[0, 2] -= x0
    Kc[1, 2] -= y0
    Kc[:2] *= s  # (OpenCV centres; a sub-pixel shift of the z-buffer grid is irrelevant at tol_mm)
    Hc, Wc = int(np.ceil((y1 - y0 + 1) * s)), int(np.ceil((x1 - x0 + 1) * s))
    # one thread: at this size (36k faces, <= 384 px) intra-op threads only add synchronisation (measured: 2 threads
    # are 2x slower on a quiet 2-core machine and up to 17x slower on a busy one)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with trusted():  # the fitted mesh and the crop's intrinsics, made here
            frags = rasterize(torch.from_numpy(verts.astype(np.float32))[None], torch.from_numpy(faces),
                              torch.from_numpy(Kc.astype(np.float32))[None], (Hc, Wc), cull_backfaces=True)
    finally:
        torch.set_num_threads(threads)
    zbuf = frags.zbuf[0].numpy().astype(np.float64)
    zbuf[frags.pix_to_face[0].numpy() < 0] = np.inf
    pc = project(verts, Kc)
    j = np.clip(np.rint(pc[:, 0]).astype(int), 0, Wc - 1)
    i = np.clip(np.rint(pc[:, 1]).astype(int), 0, Hc - 1)
    # the farthest of the 2x2 nearest z-buffer samples: lenient at depth edges inside a triangle fan
    i1, j1 = np.clip(i + 1, 0, Hc - 1), np.clip(j + 1, 0, Wc - 1)
    zmax = np.maximum(np.maximum(zbuf[i, j], zbuf[i1, j]), np.maximum(zbuf[i, j1], zbuf[i1, j1]))
    return vis & (verts[:, 2] <= zmax + tol_mm)


@dataclass
class TextureResult:
    """``texture`` (Ht,Wt,3) uint8 (the cropped source image plus the reserved strip), ``uv`` (3V,2) float32
    (OBJ convention: source UVs, mirror UVs, the unseen texel), ``faces_uv`` (F,3) int64, per-face mode
    ``face_mode`` (F,) int8 (0 source, 1 mirror, 2 unseen), ``crop`` (x0, y0, x1, y1) of the source image."""

    texture: np.ndarray
    uv: np.ndarray
    faces_uv: np.ndarray
    face_mode: np.ndarray
    crop: tuple[int, int, int, int]


def build_texture(image: np.ndarray, pix: np.ndarray, faces: np.ndarray, visible: np.ndarray, mirror: np.ndarray,
                  face_region: np.ndarray, *, mark_unseen: bool = False, margin: int = 2) -> TextureResult:
    """UV texture of the mesh from the source ``image`` (H,W,3) uint8 RGB.

    ``pix`` (V,2) source pixel of every vertex (distorted, as in the image); ``visible`` (V,) bool;
    ``mirror`` (V,) mirror vertex ids; ``face_region`` (V,) bool (for the fill colour).
    """
    H, W = image.shape[:2]
    V = len(pix)
    fvis = visible[faces].all(1)
    fmir = ~fvis & visible[mirror[faces]].all(1)
    mode = np.where(fvis, 0, np.where(fmir, 1, 2)).astype(np.int8)
    used = np.zeros(V, bool)
    used[faces[mode == 0].ravel()] = True
    used[mirror[faces[mode == 1]].ravel()] = True
    if used.any():
        x0, y0 = np.floor(pix[used].min(0)).astype(int) - margin
        x1, y1 = np.ceil(pix[used].max(0)).astype(int) + margin
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W - 1), min(y1, H - 1)
    else:
        x0, y0, x1, y1 = 0, 0, W - 1, H - 1
    crop = image[y0:y1 + 1, x0:x1 + 1]
    if mark_unseen:
        fill = np.array(UNSEEN_RGB, np.uint8)
    else:
        sel = visible & face_region
        q = np.rint(pix[sel]).astype(int) if sel.any() else np.zeros((0, 2), int)
        fill = (image[np.clip(q[:, 1], 0, H - 1), np.clip(q[:, 0], 0, W - 1)].mean(0) if len(q)
                else crop.reshape(-1, 3).mean(0))
        fill = np.rint(fill).astype(np.uint8)
    strip = np.broadcast_to(fill, (_STRIP, crop.shape[1], 3))
    tex = np.ascontiguousarray(np.concatenate([crop, strip], 0))
    Ht, Wt = tex.shape[:2]
    # OBJ convention with align_corners=True (onthefly.render.texture): x = u (Wt-1), y = (1 - v)(Ht-1)
    px = np.clip(pix[:, 0] - x0, 0, x1 - x0)
    py = np.clip(pix[:, 1] - y0, 0, y1 - y0)
    src = np.stack([px / max(Wt - 1, 1), 1 - py / max(Ht - 1, 1)], 1)
    unseen = np.array([[0.5, 1 - (Ht - 1 - _STRIP / 2) / max(Ht - 1, 1)]])
    uv = np.concatenate([src, src[mirror], unseen]).astype(np.float32)
    fuv = np.where(mode[:, None] == 0, faces, np.where(mode[:, None] == 1, faces + V, 2 * V)).astype(np.int64)
    return TextureResult(texture=tex, uv=uv, faces_uv=fuv, face_mode=mode, crop=(int(x0), int(y0), int(x1), int(y1)))
