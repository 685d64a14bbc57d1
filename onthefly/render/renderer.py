"""``render``: rasterize -> interpolate / texture -> shade -> coverage mask (-> SSAA)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as Fnn
from torch import Tensor

from .interpolate import face_vertex_ids, foreground, interpolate_rows, interpolate_soa, vertex_normals_rows
from .rasterize import Fragments, prepare_inputs, rasterize
from .shading import Material, as_batch, phong_shading_soa
from .texture import UVTexture, VertexColors

__all__ = ["RenderResult", "render", "scale_intrinsics"]

# rendered (super-sampled) pixels per pass; larger batches run as sub-batches (see rasterize.py)
_MAX_PIXELS_PER_PASS = 1 << 21
_MAX_PIXELS_PER_PASS_CUDA = 1 << 26


def _slice_batch(obj, sl: slice, B: int, vec: bool = False):
    """Slice the per-sample parts of ``obj`` (tensor, light/material/texture dataclass, list of lights).
    Tensors are per-sample when their leading dim is B and they have >= 2 dims ((B,3) colours, (B,V,3)
    vertex data), or 1 dim when ``vec`` ((B,) shininess / texture_index)."""
    if obj is None:
        return None
    if isinstance(obj, (list, tuple)):
        if obj and all(dataclasses.is_dataclass(x) for x in obj):  # several lights
            return type(obj)(_slice_batch(x, sl, B) for x in obj)
        try:
            obj = torch.as_tensor(obj)
        except (TypeError, ValueError, RuntimeError):
            return obj
    if torch.is_tensor(obj):
        per = obj.ndim >= 1 and obj.shape[0] == B and (obj.ndim >= 2 or vec)
        return obj[sl] if per else obj
    if isinstance(obj, UVTexture):
        idx = obj.texture_index
        if idx is None:
            M = obj.maps.shape[0]
            idx = torch.arange(B) if M == B else torch.zeros(B, dtype=torch.int64)
        return dataclasses.replace(obj, texture_index=torch.as_tensor(idx)[sl])  # maps are never sliced
    if dataclasses.is_dataclass(obj):
        return dataclasses.replace(obj, **{f.name: _slice_batch(getattr(obj, f.name), sl, B,
                                                                f.name in ("shininess", "texture_index"))
                                           for f in dataclasses.fields(obj) if f.init})
    return obj


@dataclass
class RenderResult:
    """``image`` (B,3,H,W) float RGB (background pixels = ``background``; with SSAA, the average of
    the sub-samples), ``mask`` (B,1,H,W) float coverage in [0,1] (exactly 0/1 without SSAA),
    ``fragments`` at the rendered (super-sampled) resolution."""

    image: Tensor
    mask: Tensor
    fragments: Fragments


def scale_intrinsics(K: Tensor, k: int) -> Tensor:
    """Intrinsics for a k-times finer pixel grid covering the same image (OpenCV pixel centres):
    ``f' = k f``, ``c' = k (c + 0.5) - 0.5``."""
    Ks = K.clone()
    Ks[..., 0, 0] = K[..., 0, 0] * k
    Ks[..., 1, 1] = K[..., 1, 1] * k
    Ks[..., 0, 2] = (K[..., 0, 2] + 0.5) * k - 0.5
    Ks[..., 1, 2] = (K[..., 1, 2] + 0.5) * k - 0.5
    return Ks


def render(verts, faces, K, image_size, *, textures=None, lights=None, material: Optional[Material] = None,
           verts_normals: Optional[Tensor] = None, background=None, ssaa: int = 1, shading: str = "phong",
           cull_backfaces: bool = False, znear: float = 1e-6, backend: str = "torch",
           check: bool = True) -> RenderResult:
    """Render a batch of B meshes in the OpenCV camera frame.

    Args:
        verts, faces, K, image_size, cull_backfaces, znear, backend, check: as :func:`rasterize`.
        textures: :class:`VertexColors`, :class:`UVTexture`, a (B or 1, V, 3) colour tensor, or None (white).
        lights: None (unlit: the image is the texture colour), one :class:`PointLights` /
            :class:`DirectionalLights` or a sequence of them, per-sample tensors in the camera frame.
        material: :class:`Material` (default PyTorch3D's: all ones, shininess 64).
        verts_normals: (B or 1, V, 3) vertex normals; default: area-weighted normals of ``verts``.
        background: (B,3) or (3,) RGB for uncovered pixels (default 0, so the image is premultiplied
            by coverage and ``image + (1 - mask) * bg`` composites over any background).
        ssaa: supersampling factor k >= 1: render at k*H x k*W and average k x k blocks.
        shading: ``"phong"`` (PyTorch3D's HardPhongShader) or ``"blinn"``.
    """
    k = int(ssaa)
    if k < 1:
        raise ValueError(f"ssaa must be an integer >= 1, got {ssaa!r}")
    verts, faces, K, (H, W) = prepare_inputs(verts, faces, K, image_size, check=check)
    B = verts.shape[0]
    max_pix = _MAX_PIXELS_PER_PASS_CUDA if verts.is_cuda else _MAX_PIXELS_PER_PASS
    per = max(1, max_pix // (H * W * k * k))
    if B > per:  # bounded memory: sub-batches of many samples each (not a per-sample loop)
        parts = []
        for a in range(0, B, per):
            sl = slice(a, min(a + per, B))
            parts.append(render(
                verts[sl], faces if faces.ndim == 2 else faces[sl], K[sl], (H, W),
                textures=_slice_batch(textures, sl, B), lights=_slice_batch(lights, sl, B),
                material=_slice_batch(material, sl, B), verts_normals=_slice_batch(verts_normals, sl, B),
                background=_slice_batch(background, sl, B), ssaa=k, shading=shading,
                cull_backfaces=cull_backfaces, znear=znear, backend=backend, check=False))
        frags = Fragments(*(torch.cat(x) for x in zip(*(p.fragments for p in parts))))
        return RenderResult(torch.cat([p.image for p in parts]), torch.cat([p.mask for p in parts]), frags)
    dt, dev = verts.dtype, verts.device
    Kr = scale_intrinsics(K, k) if k > 1 else K
    Hr, Wr = H * k, W * k
    frags = rasterize(verts, faces, Kr, (Hr, Wr), znear=znear, cull_backfaces=cull_backfaces,
                      backend=backend, check=False)
    fg = foreground(frags)
    vids = face_vertex_ids(faces, fg.batch, fg.face)
    bary_t = fg.bary.t().contiguous()  # (3,P): structure of arrays from here on
    P = fg.pidx.shape[0]

    if textures is None:
        texels = torch.ones((3, 1), dtype=dt, device=dev)
    elif torch.is_tensor(textures):
        texels = VertexColors(textures).sample_soa(fg, faces, bary_t, vids)
    elif isinstance(textures, VertexColors):
        texels = textures.sample_soa(fg, faces, bary_t, vids)
    elif isinstance(textures, UVTexture):
        texels = textures.sample(fg, faces).t()
    else:
        raise ValueError(f"textures must be VertexColors, UVTexture, a tensor or None, got {type(textures).__name__}")

    if lights is None:
        rgb = texels.expand(3, P)
    else:
        points = interpolate_soa(verts, vids, fg.batch, bary_t)
        if verts_normals is None:
            normals = interpolate_rows(vertex_normals_rows(verts, faces), verts.shape[1], vids, fg.batch, bary_t)
        else:
            vn = verts_normals.to(dev, dt)
            if vn.ndim == 2:
                vn = vn.unsqueeze(0)
            if vn.shape[0] not in (1, B) or vn.shape[1:] != verts.shape[1:]:
                raise ValueError(f"verts_normals must be (B or 1, V, 3) = (*, {verts.shape[1]}, 3), "
                                 f"got {tuple(vn.shape)}")
            normals = interpolate_soa(vn, vids, fg.batch, bary_t)
        rgb = phong_shading_soa(points, normals, texels, fg.batch, B, lights, material, shading)

    bg = torch.zeros((B, 3), dtype=dt, device=dev) if background is None else \
        as_batch(background, B, 3, dt, dev, "background")
    HW = Hr * Wr
    img = bg.reshape(B, 3, 1).expand(B, 3, HW).contiguous()
    # flat (b, c, pixel) index of every covered pixel, one row per channel
    rem = fg.pidx - fg.batch * HW
    base = fg.batch * (3 * HW) + rem
    idx = torch.stack((base, base + HW, base + 2 * HW), 0)
    img.view(-1).index_put_((idx.view(-1),), rgb.reshape(-1))
    img = img.view(B, 3, Hr, Wr)
    mask = (frags.pix_to_face >= 0).unsqueeze(1).to(dt)
    if k > 1:
        img = Fnn.avg_pool2d(img, k)
        mask = Fnn.avg_pool2d(mask, k)
    return RenderResult(img, mask, frags)
