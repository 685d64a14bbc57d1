"""Attribute interpolation over rasterizer fragments, and vertex normals.

Two flavours: :func:`interpolate_vertex_attributes` returns full (B,H,W,C) images (simple, public);
the renderer works on the *compact* foreground list from :func:`foreground` (only covered pixels,
one row each), which is what the shading stage consumes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .fragments import Fragments

__all__ = ["Foreground", "foreground", "face_vertex_ids", "interpolate_compact", "interpolate_soa",
           "interpolate_rows", "vertex_normals_rows",
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


def interpolate_rows(rows: Tensor, V: int, vids: Tensor, batch: Tensor, bary_t: Tensor) -> Tensor:
    """Interpolate per-vertex data given as rows (C, Ba*V) (Ba in {1, B}) at P pixels with face vertex ids
    ``vids`` (P,3), sample ``batch`` (P,) and barycentrics ``bary_t`` (3,P). Returns (C,P)."""
    C = rows.shape[0]
    ids = vids.t()
    if rows.shape[1] > V:
        ids = ids + (batch * V).unsqueeze(0)
    g = rows.index_select(1, ids.reshape(-1)).view(C, 3, -1)
    return g[:, 0] * bary_t[0] + g[:, 1] * bary_t[1] + g[:, 2] * bary_t[2]


def interpolate_soa(attrs: Tensor, vids: Tensor, batch: Tensor, bary_t: Tensor) -> Tensor:
    """Structure-of-arrays variant used on the hot path: ``attrs`` (Ba,V,C), ``bary_t`` (3,P) weights,
    returns (C,P) (rows contiguous, so the shading maths vectorises). uint8 attributes -> [0,1]."""
    Ba, V, C = attrs.shape
    rows = attrs.reshape(Ba * V, C).t()  # (C, Ba*V)
    if rows.dtype == torch.uint8:
        rows = rows.to(bary_t.dtype) * (1.0 / 255.0)
    else:
        rows = rows.to(bary_t.dtype)
    return interpolate_rows(rows.contiguous(), V, vids, batch, bary_t)


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


def vertex_normals_rows(verts: Tensor, faces: Tensor, eps: float = 1e-6) -> Tensor:
    """Area-weighted vertex normals as rows (3, B*V): the sum of the unnormalised face normals
    ``(v1-v0) x (v2-v0)`` of the faces around each vertex, normalised (PyTorch3D's
    ``Meshes.verts_normals``). ``faces`` (F,3) shared or (B,F,3) padded with -1."""
    B, V, _ = verts.shape
    rows = verts.reshape(B * V, 3).t().contiguous()
    offs = (torch.arange(B, device=verts.device) * V).view(1, B, 1)
    if faces.ndim == 2:
        gid = faces.t().unsqueeze(1) + offs
        keep = None
    else:
        keep = (faces >= 0).all(-1).reshape(-1)
        gid = faces.clamp_min(0).permute(2, 0, 1) + offs
    gid = gid.reshape(3, -1)
    P = rows.index_select(1, gid.reshape(-1)).view(3, 3, -1)  # (xyz, vertex, face)
    a = P[:, 1] - P[:, 0]
    b = P[:, 2] - P[:, 0]
    n = torch.stack((a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]))
    if keep is not None:
        n = n * keep
    out = torch.zeros_like(rows)
    for k in range(3):  # three scatter passes (vertex slot), not a per-face loop
        out.index_add_(1, gid[k], n)
    return out / torch.sqrt(out[0] * out[0] + out[1] * out[1] + out[2] * out[2]).clamp_min(eps)


def vertex_normals(verts: Tensor, faces: Tensor, eps: float = 1e-6) -> Tensor:
    """Area-weighted, normalised vertex normals (B,V,3) (PyTorch3D's ``Meshes.verts_normals``)."""
    B, V, _ = verts.shape
    return vertex_normals_rows(verts, faces, eps).t().reshape(B, V, 3)
