"""Eye geometry per view: eyeball centres, iris centres and an 8-point iris contour, 3-D and projected.

Defined on the shared procedural topology (procedural heads and every reconstruction; :mod:`.contour`). Per eye
(subject's right eye first, as everywhere):

* **eyeball centre** ``c``: the midpoint of the eyeball sphere's front and back poles (mesh vertices), radius ``R``
  half their distance;
* **eye axis** ``a``: unit(gaze target − c) when the frame knows its gaze target, else the frame's gaze direction
  (face centre → target);
* **iris centre**: ``c + R a`` (the pole of the iris cap: the centre of the pupil on the eyeball surface);
* **iris contour**: 8 points of the limbus, ``c + R (cos θ a + sin θ (cos φ_k e1 + sin φ_k e2))`` with the
  limbus polar angle θ of the mesh (its last iris ring sits at 0.99 θ, ``onthefly.synthetic.heads``),
  ``e1`` the camera x axis made orthogonal to ``a``, ``e2 = e1 × a`` (image down for an eye facing the camera),
  ``φ_k = k · 45°``: point 0 toward image right, then clockwise on the screen.

For procedural heads all of it is exact: the eyeballs are rotated onto ``unit(target − c)`` and the limbus is a
vertex ring at the iris radius. For reconstructed photos it is an approximation: the eyeballs are the face model's,
warped with the face, and the axis is the frame's gaze, not an iris seen in the photo.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from ..camera import project_points
from ..synthetic.template import N_BALL, N_IRIS_RINGS, N_PUPIL_RINGS, build_template

__all__ = ["EYE_KEYS", "EYE_SHAPES", "eye_geometry", "eye_vertex_ids"]

#: batch keys of :func:`eye_geometry` → shape per sample
EYE_SHAPES = {"eyeball_centres_3d": (2, 3), "eyeball_centres_2d": (2, 2), "iris_centres_3d": (2, 3),
              "iris_centres_2d": (2, 2), "iris_contours_3d": (2, 8, 3), "iris_contours_2d": (2, 8, 2)}
EYE_KEYS = tuple(EYE_SHAPES)


@functools.lru_cache(maxsize=1)
def eye_vertex_ids() -> dict:
    """Vertex ids of the shared topology: ``front`` / ``back`` (2,) eyeball poles, ``limbus`` (2,) a vertex of
    each eye's last iris ring."""
    T = build_template()
    base = T.ball_offset + np.arange(2) * T.n_ball
    ring = N_PUPIL_RINGS + N_IRIS_RINGS - 1
    return {"front": base, "back": base + T.n_ball - 1, "limbus": base + 1 + ring * N_BALL}


def eye_geometry(verts, target, gaze, K) -> dict:
    """Eye geometry of meshes of the shared topology (torch, batched, float64 maths).

    ``verts`` (n,V,3) camera frame; ``target`` (n,3) gaze targets (NaN rows: unknown), ``gaze`` (n,3) unit gaze
    directions, both in the same camera frame; ``K`` (3,3) or (n,3,3). Returns :data:`EYE_KEYS` → tensors.
    """
    ids = eye_vertex_ids()
    f64 = torch.float64
    v = lambda k: verts[:, torch.as_tensor(ids[k], device=verts.device)].to(f64)  # noqa: E731
    front, back, limb = v("front"), v("back"), v("limbus")
    c = 0.5 * (front + back)                                                   # (n,2,3)
    R = 0.5 * (front - back).norm(dim=-1, keepdim=True)
    a_mesh = (front - c) / R
    cos_l = ((limb - c) * a_mesh).sum(-1, keepdim=True) / (limb - c).norm(dim=-1, keepdim=True)
    theta = torch.acos(cos_l.clamp(-1, 1)) / 0.99                              # limbus polar angle (n,2,1)
    t = target.to(f64)[:, None]
    a = t - c
    a = a / a.norm(dim=-1, keepdim=True)
    known = torch.isfinite(target).all(-1)[:, None, None]
    g = gaze.to(f64)[:, None].expand_as(c)
    a = torch.where(known, a, g / g.norm(dim=-1, keepdim=True))
    ex = torch.zeros_like(a)
    ex[..., 0] = 1.0
    e1 = ex - (ex * a).sum(-1, keepdim=True) * a
    e1 = e1 / e1.norm(dim=-1, keepdim=True)
    e2 = torch.cross(e1, a, dim=-1)
    phi = torch.arange(8, dtype=f64, device=verts.device) * (np.pi / 4)
    ring = torch.cos(phi)[:, None] * e1[..., None, :] + torch.sin(phi)[:, None] * e2[..., None, :]   # (n,2,8,3)
    contour = c[..., None, :] + R[..., None, :] * (torch.cos(theta)[..., None] * a[..., None, :]
                                                   + torch.sin(theta)[..., None] * ring)
    iris = c + R * a
    Kb = K.to(f64)
    Kb = Kb if Kb.dim() == 3 else Kb.expand(len(verts), 3, 3)
    out = {"eyeball_centres_3d": c, "iris_centres_3d": iris, "iris_contours_3d": contour}
    out["eyeball_centres_2d"] = project_points(c, Kb)
    out["iris_centres_2d"] = project_points(iris, Kb)
    out["iris_contours_2d"] = project_points(contour.reshape(len(verts), 16, 3), Kb).reshape(len(verts), 2, 8, 2)
    return out
