"""Textures: per-vertex colours and UV maps (one uint8 map per *mesh*, shared by all its views).

UV convention (same as PyTorch3D ``TexturesUV`` / OBJ): ``u`` runs left to right, ``v`` runs from the
**bottom** (v=0) to the top (v=1) of the map. With ``align_corners=True`` (PyTorch3D's default),
u=0/1 are the centres of the first/last texel column: ``x = u*(Wt-1)``, ``y = (1-v)*(Ht-1)``; with
``align_corners=False`` they are the outer edges: ``x = u*Wt - 0.5``, ``y = (1-v)*Ht - 0.5``.
Sampling is bilinear with border clamping. uint8 maps are read as value/255.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from .interpolate import Foreground, face_vertex_ids, interpolate_compact, interpolate_soa

__all__ = ["VertexColors", "UVTexture", "sample_bilinear", "as_texture"]


@dataclass
class VertexColors:
    """Per-vertex RGB colours (B or 1, V, 3), uint8 (0-255) or float (used as given)."""

    colors: Tensor

    def sample(self, fg: Foreground, faces: Tensor) -> Tensor:
        """(P,3) colours of the covered pixels."""
        return self.sample_soa(fg, faces, fg.bary.t().contiguous()).t()

    def sample_soa(self, fg: Foreground, faces: Tensor, bary_t: Tensor, vids: Tensor | None = None) -> Tensor:
        """(3,P) colours; ``bary_t`` (3,P) barycentrics."""
        c = self.colors
        if c.ndim == 2:
            c = c.unsqueeze(0)
        if c.ndim != 3:
            raise ValueError(f"VertexColors.colors must be (B,V,C) or (V,C), got {tuple(c.shape)}")
        B = fg.shape[0]
        if c.shape[0] not in (1, B):
            raise ValueError(f"VertexColors.colors has batch {c.shape[0]}, expected 1 or {B}")
        c = c.to(fg.bary.device)
        if vids is None:
            vids = face_vertex_ids(faces, fg.batch, fg.face)
        return interpolate_soa(c, vids, fg.batch, bary_t)

    def texels(self, fg: Foreground, faces: Tensor, bary_t: Tensor, vids: Tensor) -> Tensor:
        """(3,P) colours of the covered pixels (the renderer's torch path)."""
        return self.sample_soa(fg, faces, bary_t, vids)

    def kernel_inputs(self, B: int, dtype: torch.dtype) -> dict:
        """The arrays the compiled shader reads (numba backend): colours (1 or B, V, 3), uint8 ones with the
        scale 1/255 (``map_scale``)."""
        c = self.colors if self.colors.ndim == 3 else self.colors.unsqueeze(0)
        if c.ndim != 3 or c.shape[0] not in (1, B):
            raise ValueError(f"VertexColors.colors must be (1 or {B}, V, 3), got {tuple(self.colors.shape)}")
        if c.dtype == torch.uint8:  # read as /255 by the kernel: no float copy of the colours
            return dict(tex_kind=1, colors=c.contiguous(), map_scale=1.0 / 255.0)
        return dict(tex_kind=1, colors=c.to(dtype).contiguous(), map_scale=1.0)


def sample_bilinear(maps: Tensor, index: Tensor, uv: Tensor, align_corners: bool = True,
                    out_dtype: Optional[torch.dtype] = None) -> Tensor:
    """Bilinear lookup in ``maps`` (M,Ht,Wt,C) (uint8 or float) of map ``index`` (P,) at ``uv`` (P,2).
    Returns (P,C) floats (uint8 -> /255). No map is copied: texels are gathered from the flat view."""
    M, Ht, Wt, C = maps.shape
    dt = out_dtype or (uv.dtype if uv.is_floating_point() else torch.float32)
    u, v = uv.to(dt).unbind(1)
    if align_corners:
        x = u * (Wt - 1)
        y = (1.0 - v) * (Ht - 1)
    else:
        x = u * Wt - 0.5
        y = (1.0 - v) * Ht - 0.5
    x = x.clamp(0, Wt - 1)
    y = y.clamp(0, Ht - 1)
    x0f = torch.floor(x)
    y0f = torch.floor(y)
    fx = (x - x0f).unsqueeze(1)
    fy = (y - y0f).unsqueeze(1)
    x0 = x0f.to(torch.int64)
    y0 = y0f.to(torch.int64)
    x1 = (x0 + 1).clamp_max(Wt - 1)
    y1 = (y0 + 1).clamp_max(Ht - 1)
    flat = maps.reshape(M * Ht * Wt, C)
    base = index.to(torch.int64) * (Ht * Wt)
    r0 = base + y0 * Wt
    r1 = base + y1 * Wt
    ids = torch.stack((r0 + x0, r0 + x1, r1 + x0, r1 + x1), 0).reshape(-1)
    g = flat.index_select(0, ids).view(4, -1, C).to(dt)
    top = g[0] + (g[1] - g[0]) * fx
    bot = g[2] + (g[3] - g[2]) * fx
    out = top + (bot - top) * fy
    if maps.dtype == torch.uint8:
        out = out * (1.0 / 255.0)
    return out


@dataclass
class UVTexture:
    """UV texturing with one map per mesh.

    Args:
        maps: (M,Ht,Wt,3) uint8 (preferred) or float texture maps, one per mesh.
        verts_uvs: (M or 1, T, 2) texture coordinates.
        faces_uvs: (F,3) (shared) or (M,F,3) indices into ``verts_uvs`` per face.
        texture_index: (B,) which mesh/map each rendered sample uses (default: ``arange(B)`` when M == B,
            zeros when M == 1). Many views of one mesh share its map: nothing is copied per view.
        align_corners: see module docstring (default True, as PyTorch3D).
    """

    maps: Tensor
    verts_uvs: Tensor
    faces_uvs: Tensor
    texture_index: Optional[Tensor] = None
    align_corners: bool = True

    def _index(self, B: int, dev) -> Tensor:
        maps = self.maps
        if maps.ndim != 4:
            raise ValueError(f"UVTexture.maps must be (M,Ht,Wt,C), got {tuple(maps.shape)}")
        M = maps.shape[0]
        if self.texture_index is None:
            if M == B:
                tex_idx = torch.arange(B, device=dev)
            elif M == 1:
                tex_idx = torch.zeros(B, dtype=torch.int64, device=dev)
            else:
                raise ValueError(f"UVTexture.texture_index is required: {M} maps for a batch of {B}")
        else:
            tex_idx = self.texture_index.to(dev, torch.int64)
            if tex_idx.shape != (B,):
                raise ValueError(f"UVTexture.texture_index must have shape ({B},), got {tuple(tex_idx.shape)}")
            if B and (int(tex_idx.min()) < 0 or int(tex_idx.max()) >= M):
                raise ValueError(f"UVTexture.texture_index out of range for {M} maps")
        return tex_idx

    def texels(self, fg: Foreground, faces: Tensor, bary_t: Tensor, vids: Tensor) -> Tensor:
        """(3,P) colours of the covered pixels (the renderer's torch path)."""
        return self.sample(fg, faces).t()

    def kernel_inputs(self, B: int, dtype: torch.dtype) -> dict:
        """The arrays the compiled shader reads (numba backend); the maps are passed as they are (no copy)."""
        tex_idx = self._index(B, self.maps.device)
        fuv = self.faces_uvs.to(torch.int64)
        vuv = self.verts_uvs if self.verts_uvs.ndim == 3 else self.verts_uvs.unsqueeze(0)
        maps = self.maps if self.maps.dtype == torch.uint8 else self.maps.to(dtype)
        if maps.shape[-1] != 3:
            raise ValueError(f"UVTexture.maps must have 3 channels for rendering, got {maps.shape[-1]}")
        return dict(tex_kind=2, maps=maps.contiguous(), map_scale=1.0 / 255.0 if maps.dtype == torch.uint8 else 1.0,
                    vuv=vuv.to(dtype).contiguous(), fuv=(fuv if fuv.ndim == 3 else fuv.unsqueeze(0)).contiguous(),
                    tidx=tex_idx.contiguous(), align=bool(self.align_corners))

    def sample(self, fg: Foreground, faces: Tensor | None = None) -> Tensor:
        B = fg.shape[0]
        dev = fg.bary.device
        maps = self.maps
        tex_idx = self._index(B, dev)
        m = tex_idx[fg.batch]  # (P,) map / mesh of each pixel
        fuv = self.faces_uvs.to(dev, torch.int64)
        vids = fuv[fg.face] if fuv.ndim == 2 else fuv[m, fg.face]
        vuv = self.verts_uvs.to(dev)
        if vuv.ndim == 2:
            vuv = vuv.unsqueeze(0)
        uv = interpolate_compact(vuv, vids, m, fg.bary)  # verts_uvs is per mesh: index with m
        return sample_bilinear(maps if maps.device == dev else maps.to(dev), m, uv, self.align_corners,
                               out_dtype=fg.bary.dtype)


def as_texture(textures):
    """``None`` (white), a texture object (anything with ``texels`` and ``kernel_inputs``, such as
    :class:`VertexColors` and :class:`UVTexture`), or a bare (B or 1, V, 3) colour tensor (vertex colours)."""
    if textures is None or (hasattr(textures, "texels") and hasattr(textures, "kernel_inputs")):
        return textures
    if torch.is_tensor(textures):
        return VertexColors(textures)
    raise ValueError(f"textures must be VertexColors, UVTexture, a tensor or None, got {type(textures).__name__}")
