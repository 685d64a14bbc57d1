"""Shared topology of the procedural heads (built once, cached).

Every head produced by :mod:`onthefly.synthetic` uses the same vertex order and the same ``faces`` tensor;
identity and gaze only move vertices and change colours. This module builds that shared template:

* **skin**: one closed surface, star-shaped around the ray origin :data:`C`. Its vertices are unit directions
  from :data:`C` (a per-head radius places them). They are triangulated once as the convex hull of the
  directions (a spherical Delaunay triangulation), so the mesh is dense where detail matters (nose, mouth,
  eyelids) and coarse on the back of the head. Inside each eye opening the skin folds inward into a hidden
  "cup" (conjunctiva) behind the eyeball, so the lid margins are real mesh edges and no gap ever shows the
  inside of the head.
* **eye rings**: around each eye the skin vertices are structured rings around the palpebral fissure
  (lid margin ring, lid rings outward, cup rings inward), so the lid edge follows the per-head lid curves.
* **eyeballs**: two UV spheres whose pole is the optical axis, with vertex rings exactly at the pupil and
  limbus (iris) boundaries, so per-vertex colour draws sharp iris/pupil edges.

Nothing here is random: the template is a pure function of the constants below.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import ConvexHull

from .features import EAR_PHI, EAR_PSI, EAR_R, ZREF, canonical_landmark_points

# ---------------------------------------------------------------- frame constants (head frame, mm)
#: Ray origin of the star-shaped skin surface (inside the skull, behind the eyes).
C = np.array([0.0, 20.0, 75.0])
FOCAL = C[2] - ZREF
#: Canonical interpupillary distance and eyeball radius of the template.
IPD0 = 63.0
EYE_R0 = 12.0

# eye rings: offsets (mm) of the rings around the fissure; negative = inside (cup), 0 = lid margin.
N_EYE = 72                      # vertices per eye ring
RING_OFFSETS = np.array([-6.0, -2.5, -0.6, 0.0, 0.35, 0.9, 1.8, 3.0, 4.5, 6.5, 9.0, 12.0, 15.5])
MARGIN_RING = 3                 # index of the lid margin ring in RING_OFFSETS
# eyeball rings (see eyeball_ring_angles in heads.py): pole + pupil 3 + iris 7 + sclera 11 (+ back pole)
N_BALL = 64
N_PUPIL_RINGS = 3
N_IRIS_RINGS = 7
N_SCLERA_RINGS = 12

# canonical fissure (mm on the eye plane): half widths (lateral, medial), lid heights (upper, lower)
FISSURE0: dict[str, Any] = dict(w_lat=15.5, w_med=13.6, h_up=4.6, h_lo=5.4)
CUP_SCALE = {-6.0: 0.35, -2.5: 0.75, -0.6: 0.95}   # cup rings: scaled copies of the margin ring
CORNER_Q = 0.85                 # pointiness of the fissure corners (0 = ellipse)
MEDIAL_K = 0.55                 # rings spread less toward the nose ...
LOWER_K = 0.85                  # ... and toward the cheek


def gnomonic(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feature-plane coordinates (X, Y) in mm of unit directions ``d`` (..., 3) from :data:`C`."""
    t = FOCAL / np.maximum(-d[..., 2], 0.05)
    return d[..., 0] * t + C[0], d[..., 1] * t + C[1]


def plane_to_dir(x: np.ndarray, y: np.ndarray, z: float = ZREF) -> np.ndarray:
    v = np.stack([x - C[0], y - C[1], np.full_like(x, z - C[2])], -1)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def ring_param(n: int = N_EYE, xp=np):
    """Angle parameter of the eye-ring vertices: uniform u, stretched so the corners are not crowded."""
    u = xp.arange(n) * (2 * np.pi / n)
    return u + 0.25 * xp.sin(2 * u)


def fissure_ring(offset: float, w_lat: float, w_med: float, h_up: float, h_lo: float,
                 n: int = N_EYE) -> tuple[np.ndarray, np.ndarray]:
    """Canonical eye-plane points (lateral mm, up mm) of the ring at ``offset`` mm from the lid margin.

    Numpy twin of :func:`onthefly.synthetic.heads._fissure_ring` (the batched per-head version).
    ``t`` runs 0..2pi from the lateral corner through the upper lid, the medial corner (t = pi) and the
    lower lid. Negative offsets are the cup rings inside the opening (scaled copies of the margin).
    """
    t = ring_param(n)
    c, s = np.cos(t), np.sin(t)
    scale = 1.0
    if offset < 0:
        scale, offset = CUP_SCALE[float(offset)], 0.0
    q = CORNER_Q * np.exp(-offset / 3.0)
    w = np.where(c >= 0, w_lat + offset, w_med + MEDIAL_K * offset)
    h = np.where(s >= 0, h_up + offset, h_lo + LOWER_K * offset)
    return scale * w * c, scale * h * s * np.abs(s) ** q


@dataclass(frozen=True)
class Template:
    """Static topology + per-vertex constants. Arrays are numpy (converted to torch in heads.py)."""

    faces: np.ndarray           # (F,3) int64, all parts
    n_skin: int                 # skin vertices come first: [0, n_skin)
    skin_dir: np.ndarray        # (n_skin,3) canonical unit directions from C
    skin_X: np.ndarray          # (n_skin,) canonical feature-plane coords (mm)
    skin_Y: np.ndarray
    eye_vert: np.ndarray        # (2, R, N_EYE) skin vertex index of each eye ring vertex (eye 0 = subject right)
    ball_offset: int            # eyeball vertices start here: eye e occupies [ball_offset + e*n_ball, ...)
    n_ball: int                 # vertices per eyeball
    n_verts: int
    landmark_vert: np.ndarray   # (68,) vertex index of each iBUG landmark


def _hex_chart(h: float, phi_lim: float, psi_lim: float) -> np.ndarray:
    """Hex-ish grid on the sphere in (yaw phi, pitch psi) with angular spacing h (rad)."""
    pts = []
    rows = np.arange(-psi_lim, psi_lim + 1e-9, h * 0.8660254)
    for k, psi in enumerate(rows):
        hp = h / max(np.cos(psi), 0.2)
        off = (k % 2) * hp / 2
        phis = np.arange(-phi_lim - off, phi_lim + 1e-9, hp) + off
        pts.append(np.stack([phis, np.full_like(phis, psi)], -1))
    return np.concatenate(pts)


def _angles_to_dir(phi: np.ndarray, psi: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(psi) * np.sin(phi), np.sin(psi), -np.cos(psi) * np.cos(phi)], -1)


def _fibonacci(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    th = np.pi * (1 + 5 ** 0.5) * i
    return np.stack([r * np.cos(th), r * np.sin(th), z], -1)


def _eye_plane_points(side: int, a: np.ndarray, b: np.ndarray, ex: float) -> tuple[np.ndarray, np.ndarray]:
    """Eye-plane (lateral a, up b) -> feature plane X, Y for eye ``side`` (-1 right, +1 left)."""
    return ex + side * a, -b


def _sphere_faces(n_rings_total: int, n_seg: int, base: int) -> np.ndarray:
    """Faces of a UV sphere: vertex 0 = front pole, then n_rings_total rings of n_seg, then back pole."""
    f = []
    j = np.arange(n_seg)
    jn = (j + 1) % n_seg
    first = base + 1
    f.append(np.stack([np.full(n_seg, base), first + jn, first + j], -1))
    for r in range(n_rings_total - 1):
        a = base + 1 + r * n_seg
        b = a + n_seg
        f.append(np.stack([a + j, a + jn, b + j], -1))
        f.append(np.stack([a + jn, b + jn, b + j], -1))
    last = base + 1 + (n_rings_total - 1) * n_seg
    back = last + n_seg
    f.append(np.stack([last + j, last + jn, np.full(n_seg, back)], -1))
    return np.concatenate(f)


@functools.lru_cache(maxsize=1)
def build_template() -> Template:
    ex0 = IPD0 / 2
    # ------------------------------------------------------------ eye ring points (canonical)
    eye_pts = []      # directions
    for side in (-1, 1):
        for o in RING_OFFSETS:
            a, b = fissure_ring(float(o), **FISSURE0)
            X, Y = _eye_plane_points(side, a, b, side * ex0)
            eye_pts.append(plane_to_dir(X, Y))
    eye_dirs = np.concatenate(eye_pts)
    # outermost ring (for exclusion of generic points)
    aO, bO = fissure_ring(float(RING_OFFSETS[-1]), **FISSURE0)

    # ------------------------------------------------------------ generic skin points
    def region_spacing(X, Y):
        ax = np.abs(X)
        fine = (((ax < 21) & (Y > -8) & (Y < 60)) | ((ax < 34) & (Y > 56) & (Y < 94))
                | ((ax < 64) & (Y > -40) & (Y < -8)))             # nose, mouth, brows + glabella
        mid = (ax < 72) & (Y > -95) & (Y < 138)
        return np.where(fine, 1.15, np.where(mid, 2.1, 4.2))

    R0 = 90.0
    phi_lim, psi_lim = 1.25, 1.35
    cand = []
    for h_mm in (1.15, 2.1, 4.2):
        pts = _hex_chart(h_mm / R0, phi_lim, psi_lim)
        d = _angles_to_dir(pts[:, 0], pts[:, 1])
        X, Y = gnomonic(d)
        keep = np.isclose(region_spacing(X, Y), h_mm)
        cand.append(d[keep])
    d = np.concatenate(cand)
    X, Y = gnomonic(d)
    # drop points in / near the eye ring regions
    keep = np.ones(len(d), bool)
    for side in (-1, 1):
        # inside test in eye-plane coords against the outermost ring (star-shaped around the eye centre)
        a = (X - side * ex0) * side
        b = -Y
        ang = np.arctan2(b, a)
        ra = np.hypot(a, b)
        ring_ang = np.arctan2(bO, aO)
        ring_r = np.hypot(aO, bO)
        order = np.argsort(ring_ang)
        rr = np.interp(ang, ring_ang[order], ring_r[order], period=2 * np.pi)
        keep &= ra > rr + 1.6
    d = d[keep]
    # ears: a denser patch around each ear
    ear = _hex_chart(1.8 / EAR_R, 0.42, 0.52)
    ears = np.concatenate([_angles_to_dir(sgn * (EAR_PHI + ear[:, 0]), EAR_PSI + ear[:, 1]) for sgn in (-1, 1)])
    phi_d = np.arctan2(d[:, 0], -d[:, 2])
    psi_d = np.arcsin(np.clip(d[:, 1], -1, 1))
    in_ear = (np.abs(np.abs(phi_d) - EAR_PHI) < 0.42 + 0.03) & (np.abs(psi_d - EAR_PSI) < 0.52 + 0.03)
    d = np.concatenate([d[~in_ear], ears])
    # back of the head: Fibonacci points outside the chart window
    fib = _fibonacci(2600)
    phi = np.arctan2(fib[:, 0], -fib[:, 2])
    psi = np.arcsin(np.clip(fib[:, 1], -1, 1))
    out = (np.abs(phi) > phi_lim + 0.06) | (np.abs(psi) > psi_lim + 0.06)
    out &= ~((np.abs(np.abs(phi) - EAR_PHI) < 0.42 + 0.07) & (np.abs(psi - EAR_PSI) < 0.52 + 0.07))
    d = np.concatenate([d, fib[out]])

    skin_dir = np.concatenate([eye_dirs, d])
    n_skin = len(skin_dir)
    nR = len(RING_OFFSETS)
    eye_vert = np.arange(2 * nR * N_EYE).reshape(2, nR, N_EYE)
    # generic region: spherical Delaunay (convex hull of the directions) of the generic points plus the
    # outermost eye rings; the inside of each outermost ring is then replaced by structured ring strips.
    outer = eye_vert[:, -1].ravel()
    sub = np.concatenate([outer, np.arange(2 * nR * N_EYE, n_skin)])
    hull = ConvexHull(skin_dir[sub])
    faces = sub[hull.simplices.astype(np.int64)]
    in_eye = np.isin(faces, outer).all(1)
    faces = faces[~in_eye]
    strips = []
    j = np.arange(N_EYE)
    jn = (j + 1) % N_EYE
    for s in range(2):
        for k in range(nR - 1):
            a, b = eye_vert[s, k], eye_vert[s, k + 1]
            strips.append(np.stack([a[j], a[jn], b[j]], -1))
            strips.append(np.stack([a[jn], b[jn], b[j]], -1))
        c0 = eye_vert[s, 0]          # close the innermost cup ring with a zig-zag strip (upper <-> lower)
        h = N_EYE // 2
        up, lo = c0[np.arange(0, h)], c0[(N_EYE - np.arange(0, h)) % N_EYE]
        strips.append(np.stack([up[1:-1], up[2:], lo[1:-1]], -1))
        strips.append(np.stack([up[2:], lo[2:], lo[1:-1]], -1))
        strips.append(np.array([[up[0], up[1], lo[1]], [up[-1], c0[h], lo[-1]]]))
    faces = np.concatenate([faces] + strips)
    # orient outward (in direction space, the surface is a sphere around the origin)
    p = skin_dir[faces]
    nrm = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    flip = (nrm * p.mean(1)).sum(-1) < 0
    faces[flip] = faces[flip][:, [0, 2, 1]]
    # canonical order (deterministic, independent of qhull's output order)
    rot = np.argmin(faces, 1)
    faces = np.stack([faces[np.arange(len(faces)), (rot + k) % 3] for k in range(3)], -1)
    faces = faces[np.lexsort(faces.T[::-1])]
    _check_closed(faces, n_skin)

    # ------------------------------------------------------------ eyeballs
    n_rings = N_PUPIL_RINGS + N_IRIS_RINGS + N_SCLERA_RINGS
    n_ball = 2 + n_rings * N_BALL
    ball_offset = n_skin
    ball_faces = [_sphere_faces(n_rings, N_BALL, ball_offset + e * n_ball) for e in range(2)]
    faces = np.concatenate([faces] + ball_faces)
    n_verts = n_skin + 2 * n_ball
    X, Y = gnomonic(skin_dir)
    lm = _landmark_vertices(skin_dir, X, Y, eye_vert)
    return Template(faces=faces, n_skin=n_skin, skin_dir=skin_dir, skin_X=X, skin_Y=Y, eye_vert=eye_vert,
                    ball_offset=ball_offset, n_ball=n_ball, n_verts=n_verts, landmark_vert=lm)


def _check_closed(faces: np.ndarray, n_verts: int) -> None:
    """The skin must be a closed, consistently oriented 2-manifold using every vertex."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = e[:, 0] * n_verts + e[:, 1]
    rev = e[:, 1] * n_verts + e[:, 0]
    if len(np.unique(key)) != len(key) or not np.isin(rev, key).all():
        raise RuntimeError("template: skin surface is not a closed oriented manifold")
    if len(np.unique(faces)) != n_verts:
        raise RuntimeError("template: unused skin vertices")


def _landmark_vertices(d, X, Y, eye_vert) -> np.ndarray:
    """Vertex index per iBUG-68 landmark (nearest template vertex to the canonical landmark position).

    Eye landmarks are exact lid-margin ring vertices; the rest are the skin vertices nearest to canonical
    feature-plane positions (the features are defined in the same canonical coordinates, so the landmarks
    track them under every identity warp).
    """
    lm = np.zeros(68, np.int64)
    p = canonical_landmark_points()
    u = (p - C) / np.linalg.norm(p - C, axis=1, keepdims=True)
    eye = np.zeros(len(d), bool)
    eye[eye_vert.ravel()] = True
    for k in range(68):
        if 36 <= k <= 47:
            continue
        score = d @ u[k]
        score[eye] = -2
        lm[k] = int(np.argmax(score))
    # eyes: ring index t along the margin; t=0 lateral corner, t=N/2 medial corner, upper lid t in (0, N/2)
    n = N_EYE
    m = MARGIN_RING
    # right eye (side 0): 36 outer(lateral), 37, 38 upper (lateral->medial), 39 inner, 40, 41 lower (medial->lat)
    right = eye_vert[0, m]
    lm[36] = right[0]
    t = ring_param(n)[: n // 2]
    i1 = int(np.argmin(np.abs(np.cos(t) - 1 / 3)))    # a = +w/3 (upper lid, lateral third)
    i2 = int(np.argmin(np.abs(np.cos(t) + 1 / 3)))    # a = -w/3 (upper lid, medial third)
    lm[37] = right[i1]
    lm[38] = right[i2]
    lm[39] = right[n // 2]
    lm[40] = right[n // 2 + i1]
    lm[41] = right[n // 2 + i2]
    left = eye_vert[1, m]
    lm[42] = left[n // 2]          # inner
    lm[43] = left[i2]              # upper, medial -> lateral
    lm[44] = left[i1]
    lm[45] = left[0]               # outer
    lm[46] = left[n // 2 + i2]     # lower, lateral -> medial
    lm[47] = left[n // 2 + i1]
    return lm
