"""Attribute interpolation over rasterizer fragments, and vertex normals.

Two flavours: :func:`interpolate_vertex_attributes` returns full (B,H,W,C) images (simple, public);
the renderer works on the *compact* foreground list from :func:`foreground` (only covered pixels,
one row each), which is what the shading stage consumes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .rasterize import Fragments

__all__ = ["Foreground", "foreground", "face_vertex_ids", "interpolate_compact", "interpolate_soa",
           "interpolate_vertex_attributes", "vertex_normals"]


@dataclass
class Foreground:
    """Covered pixels of a fragments batch, one row per pixel: ``pidx`` flat index into B*H*W,
    ``batch`` (P,), ``face`` (P,) per-mesh face index, ``bary`` (P,3) perspective-correct weights."""

    pidx: Tensor
    batch: Tensor
    face: Tensor
    bary: Tensor
    shape: tuple  # (B, H, W)


def foreground(fragments: Fragments) -> Foreground:
    B, H, W = fragments.pix_to_face.shape
    p2f = fragments.pix_to_face.reshape(-1)
    pidx = (p2f >= 0).nonzero().squeeze(1)
    batch = torch.div(pidx, H * W, rounding_mode="floor")
    return Foreground(pidx, batch, p2f[pidx], fragments.bary.reshape(-1, 3)[pidx], (B, H, W))


def face_vertex_ids(faces: Tensor, batch: Tensor, face: Tensor) -> Tensor:
    """(P,3) vertex ids of ``face`` for shared (F,3) or per-mesh (B,F,3) ``faces``."""
    if faces.ndim == 2:
        return faces[face]
    return faces[batch, face]


def interpolate_soa(attrs: Tensor, vids: Tensor, batch: Tensor, bary_t: Tensor) -> Tensor:
    """Structure-of-arrays variant used on the hot path: ``bary_t`` (3,P) weights, returns (C,P)
    (rows contiguous, so the shading maths vectorises)."""
    Ba, V, C = attrs.shape
    rows = attrs.reshape(Ba * V, C).t()  # (C, Ba*V)
    if rows.dtype == torch.uint8:
        rows = rows.to(bary_t.dtype) * (1.0 / 255.0)
    else:
        rows = rows.to(bary_t.dtype)
    rows = rows.contiguous()
    ids = vids.t()
    if Ba > 1:
        ids = ids + (batch * V).unsqueeze(0)
    g = rows.index_select(1, ids.reshape(-1)).view(C, 3, -1)
    return g[:, 0] * bary_t[0] + g[:, 1] * bary_t[1] + g[:, 2] * bary_t[2]


def interpolate_compact(attrs: Tensor, vids: Tensor, batch: Tensor, bary: Tensor) -> Tensor:
    """Barycentric interpolation of per-vertex ``attrs`` (Ba,V,C) with Ba in {1, B} at (P,) pixels
    whose face vertex ids are ``vids`` (P,3). Returns (P,C) in ``bary``'s dtype (uint8 attributes are
    converted to [0,1] floats)."""
    Ba, V, C = attrs.shape
    flat = attrs.reshape(Ba * V, C)
    ids = vids.t()
    if Ba > 1:
        ids = ids + (batch * V).unsqueeze(0)
    g = flat.index_select(0, ids.reshape(-1)).view(3, -1, C)
    if g.dtype == torch.uint8:
        g = g.to(bary.dtype) * (1.0 / 255.0)
    else:
        g = g.to(bary.dtype)
    w = bary.t().unsqueeze(2)  # (3,P,1)
    return g[0] * w[0] + g[1] * w[1] + g[2] * w[2]


def interpolate_vertex_attributes(fragments: Fragments, faces: Tensor, attrs: Tensor,
                                  background: float = 0.0) -> Tensor:
    """Interpolate per-vertex ``attrs`` (B or 1, V, C) over the fragments: (B,H,W,C)."""
    fg = foreground(fragments)
    B, H, W = fg.shape
    faces = faces.to(fg.face.device, torch.int64)
    vals = interpolate_compact(attrs, face_vertex_ids(faces, fg.batch, fg.face), fg.batch, fg.bary)
    out = torch.full((B * H * W, vals.shape[1]), background, dtype=vals.dtype, device=vals.device)
    out[fg.pidx] = vals
    return out.view(B, H, W, -1)


def vertex_normals(verts: Tensor, faces: Tensor, eps: float = 1e-6) -> Tensor:
    """Area-weighted vertex normals (B,V,3): sum of the unnormalised face normals
    ``(v1-v0) x (v2-v0)`` of the faces around each vertex, then normalised (PyTorch3D's
    ``Meshes.verts_normals``). ``faces`` (F,3) shared or (B,F,3) padded with -1."""
    B, V, _ = verts.shape
    flat = verts.reshape(B * V, 3)
    offs = (torch.arange(B, device=verts.device) * V).view(B, 1, 1)
    if faces.ndim == 2:
        gid = faces.unsqueeze(0) + offs
        keep = None
    else:
        keep = (faces >= 0).all(-1).reshape(-1, 1)
        gid = faces.clamp_min(0) + offs
    gid = gid.reshape(-1, 3)
    v0, v1, v2 = (flat.index_select(0, gid[:, k]) for k in range(3))
    fn = torch.linalg.cross(v1 - v0, v2 - v0)
    if keep is not None:
        fn = fn * keep
    out = torch.zeros_like(flat)
    for k in range(3):  # three scatter passes (vertex slot), not a per-face loop
        out.index_add_(0, gid[:, k], fn)
    return torch.nn.functional.normalize(out, dim=1, eps=eps).view(B, V, 3)
