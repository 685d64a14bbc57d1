"""Jaw landmarks with iBUG semantics: the visible face outline, found along fixed contour lines of the mesh.

iBUG 300-W (and so dlib, face-alignment, every detector trained on it) annotates the jaw points 0-16 on the face's
**visible outline**, which slides over the surface as the head turns; a fixed mesh vertex (the AFLW2000-3D
convention of the 3-D landmarks) drifts inside that outline. As 3DMM fitters do ("landmark marching"), every jaw
landmark ``i`` gets a **contour line** on the shared procedural topology: :data:`N_LINE` vertices of the template's
cross-section by the plane through the landmark vertex that holds the depth axis (head z) and the outward normal
``n_i`` of the frontal jaw outline at the landmark (horizontal lines on the cheeks, vertical ones at the chin),
from 25 mm inside the landmark (on the face) to 25 mm behind it (toward the ear / under the chin), ordered inner →
outer. At a pose the jaw landmark is the line's point whose projection lies farthest along the projected outward
normal (the occluding contour of the cross-section), refined between vertices by a parabola through the three
nearest projections. The lines are built once from the template (:func:`onthefly.reconstruct.template.face_template`);
every procedural head and every reconstruction shares its topology, so the same vertex ids serve them all.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..synthetic.template import build_template
from .template import face_template

__all__ = ["ContourLines", "jaw_contour_lines", "silhouette_select", "N_LINE", "JAW"]

#: vertices per contour line
N_LINE = 48
#: the jaw landmarks (iBUG 0-16)
JAW = np.arange(17)
_INNER_MM, _OUTER_MM, _PLANE_MM = 25.0, 25.0, 2.0


@dataclass(frozen=True)
class ContourLines:
    """``ids`` (17, N_LINE) int64 vertex ids (inner → outer) of the shared topology; ``normal`` (17, 3) outward
    normals (head frame, unit, z = 0); ``fixed`` (17,) index into each line nearest the fixed landmark vertex;
    ``n_verts``: the topology's vertex count."""

    ids: np.ndarray
    normal: np.ndarray
    fixed: np.ndarray
    n_verts: int


def _outward_normals(L: np.ndarray) -> np.ndarray:
    """(17,3) unit outward normals (xy plane) of the frontal jaw polyline L (17,3)."""
    n = np.zeros((17, 3))
    for i in range(17):
        a, b = L[max(i - 1, 0), :2], L[min(i + 1, 16), :2]
        t = (b - a) / np.linalg.norm(b - a)
        nn = np.array([t[1], -t[0]])
        if nn @ (L[i, :2] - np.array([0.0, 50.0])) < 0:
            nn = -nn
        n[i, :2] = nn
    return n


@functools.lru_cache(maxsize=1)
def jaw_contour_lines() -> ContourLines:
    """The cached contour lines of the template (see the module docstring)."""
    T = face_template()
    V = T.verts
    skin = np.zeros(len(V), bool)
    skin[np.unique(T.faces)] = True
    skin &= T.part_ids <= 3                       # skin, hair, brow, lips: not lids or eyeballs
    normals = _outward_normals(T.landmarks[:17])
    ids = np.zeros((17, N_LINE), np.int64)
    fixed = np.zeros(17, np.int64)
    z = np.array([0.0, 0.0, 1.0])
    for i in range(17):
        L, n = T.landmarks[i], normals[i]
        m = np.cross(n, z)
        d = V - L
        near = skin & (np.abs(d @ m) < _PLANE_MM)
        a, b = d[near] @ n, d[near] @ z            # in-plane coordinates: outward, depth (into the head)
        O = np.array([-60.0, 30.0])               # a point inside the head, in the plane
        th = np.arctan2(b - O[1], a - O[0])
        r = np.hypot(a - O[0], b - O[1])
        th_l = np.arctan2(-O[1], -O[0])
        # the outer surface: the farthest vertex from O in each 1° bin of angle
        cand = np.flatnonzero(near)
        keep = (a > -_INNER_MM) & (b < _OUTER_MM) & (th > th_l - np.pi / 2) & (th < th_l + np.pi / 2)
        cand, th, r, a, b = cand[keep], th[keep], r[keep], a[keep], b[keep]
        bins = np.floor(np.degrees(th)).astype(int)
        order = np.lexsort((-r, bins))
        first = np.ones(len(order), bool)
        first[1:] = bins[order][1:] != bins[order][:-1]
        sel = order[first]
        cand, th = cand[sel], th[sel]
        lo, hi = th.min(), th.max()
        ts = np.linspace(lo, hi, N_LINE)
        ids[i] = cand[np.abs(th[None, :] - ts[:, None]).argmin(1)]
        fixed[i] = int(np.argmin(np.linalg.norm(V[ids[i]] - L, axis=1)))
    for arr in (ids, normals, fixed):
        arr.setflags(write=False)
    return ContourLines(ids=ids, normal=normals, fixed=fixed, n_verts=len(V))


def silhouette_select(X, normal_cam, K):
    """Silhouette point of each line at a pose (torch, batched).

    ``X`` (..., 17, M, 3) camera-frame positions of the line vertices, ``normal_cam`` (..., 17, 3) the outward
    normals rotated into the camera frame, ``K`` (..., 3, 3). Returns ``(k, frac, point)``: the line index
    (..., 17) of the farthest projection, the signed sub-vertex offset in [-0.5, 0.5] toward the next (+) or
    previous (-) vertex, and the interpolated 3-D point (..., 17, 3).
    """
    Kb = K.unsqueeze(-3).unsqueeze(-3)                                   # (..., 1, 1, 3, 3)
    qh = (Kb @ X[..., None])[..., 0]
    p = qh[..., :2] / qh[..., 2:3]                                       # (..., 17, M, 2)
    X0 = X.mean(-2)
    q0 = (K.unsqueeze(-3) @ X0[..., None])[..., 0]
    q1 = (K.unsqueeze(-3) @ (X0 + 10.0 * normal_cam)[..., None])[..., 0]
    u = q1[..., :2] / q1[..., 2:3] - q0[..., :2] / q0[..., 2:3]
    u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    s = (p * u[..., None, :]).sum(-1)                                    # (..., 17, M)
    M = s.shape[-1]
    k = s.argmax(-1)
    km, kp = (k - 1).clamp(0, M - 1), (k + 1).clamp(0, M - 1)
    g = lambda t, idx: t.gather(-1, idx[..., None]).squeeze(-1)  # noqa: E731
    sm, s0, sp = g(s, km), g(s, k), g(s, kp)
    den = sm - 2 * s0 + sp
    frac = torch.where(den < -1e-12, 0.5 * (sm - sp) / den.where(den < -1e-12, torch.ones_like(den)),
                       torch.zeros_like(den)).clamp(-0.5, 0.5)
    frac = torch.where((k == 0) | (k == M - 1), torch.zeros_like(frac), frac)
    nb = torch.where(frac >= 0, kp, km)
    gx = lambda idx: X.gather(-2, idx[..., None, None].expand(*idx.shape, 1, 3)).squeeze(-2)  # noqa: E731
    point = gx(k) + frac.abs()[..., None] * (gx(nb) - gx(k))
    return k, frac, point


def is_contour_topology(faces) -> bool:
    """Whether a mesh topology (F,3) is the shared procedural one the contour lines are defined on (procedural
    heads and every reconstruction)."""
    ref = build_template().faces
    f = faces.detach().cpu().numpy() if torch.is_tensor(faces) else np.asarray(faces)
    return f.shape == ref.shape and bool((f == ref).all())


def ibug_jaw(verts, head_rotation, K):
    """iBUG jaw landmarks (..., 17, 3) of meshes of the shared topology: ``verts`` (..., V, 3) camera frame,
    ``head_rotation`` (..., 3, 3) head → camera, ``K`` (..., 3, 3) (torch; float64 maths)."""
    lines = jaw_contour_lines()
    ids = torch.as_tensor(np.array(lines.ids), device=verts.device)
    X = verts[..., ids.reshape(-1), :].reshape(*verts.shape[:-2], 17, ids.shape[1], 3).to(torch.float64)
    n = torch.as_tensor(np.array(lines.normal), dtype=torch.float64, device=verts.device)
    ncam = n @ head_rotation.to(torch.float64).transpose(-1, -2)
    return silhouette_select(X, ncam, K.to(torch.float64))[2]
