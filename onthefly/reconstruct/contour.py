"""Outline landmarks with iBUG semantics: the visible face outline, found along fixed contour lines of the mesh.

iBUG 300-W (and so dlib, face-alignment, every detector trained on it) annotates the jaw points 0-16 on the face's
**visible outline**, which slides over the surface as the head turns; a fixed mesh vertex (the AFLW2000-3D
convention of the 3-D landmarks) drifts inside that outline. As 3DMM fitters do ("landmark marching"), every jaw
landmark ``i`` gets a **contour line** on the shared procedural topology: :data:`N_LINE` vertices of the template's
cross-section by the plane through the landmark vertex that holds the depth axis (head z) and the outward normal
``n_i`` of the frontal jaw outline at the landmark (horizontal lines on the cheeks, vertical ones at the chin),
from 25 mm inside the landmark (on the face) to 25 mm behind it (toward the ear / under the chin), ordered inner →
outer. At a pose the jaw landmark is the line's point whose projection lies farthest along the projected outward
normal (the occluding contour of the cross-section), refined between vertices by a parabola through the three
nearest projections.

The **brow ends** (17, 26) are a texture feature, the brow's tail, while it is in view, and the outline when the
head turns far enough for the temple, the brow ridge and the nose bridge to hide it (a 300-W annotator marks the
brow's visible end). Each gets a line in the plane through the tail that holds head z and the brow's chord (from
its head, point 21 / 22, to the tail), from the mid-sagittal plane along the brow **to the tail vertex itself**
(its first ring of neighbours left out). The landmark is the tail while the faces around it turn to the camera,
and the line's farthest point sideways (head x) once they turn away (:func:`select_outline`).

The lines are built once from the template (:func:`onthefly.reconstruct.template.face_template`); every procedural
head and every reconstruction shares its topology, so the same vertex ids serve them all. :data:`OUTLINE` lists
the landmarks the lines belong to, in the lines' order.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..synthetic.template import build_template
from .template import face_template

__all__ = ["ContourLines", "jaw_contour_lines", "outline_lines", "silhouette_select", "select_outline", "ibug_outline", "N_LINE", "JAW",
           "BROW_ENDS", "OUTLINE"]

#: vertices per contour line
N_LINE = 48
#: the jaw landmarks (iBUG 0-16)
JAW = np.arange(17)
#: the brow ends (iBUG 17, 26): the tail while visible, the outline once the temple hides it
BROW_ENDS = np.array([17, 26])
#: the landmarks with contour lines, in the order of :func:`outline_lines`
OUTLINE = np.concatenate([JAW, BROW_ENDS])
_INNER_MM, _OUTER_MM, _PLANE_MM = 25.0, 25.0, 2.0
#: a brow end's line skips the vertices this close to the tail (the mesh's vertex spacing there is 1.5-3 mm): the
#: tail is hidden only when the surface beyond its first ring of neighbours overhangs it, not by a 0.1-1 mm ripple
_RING_MM = 3.0


@dataclass(frozen=True)
class ContourLines:
    """``ids`` (L, N_LINE) int64 vertex ids (inner → outer) of the shared topology; ``normal`` (L, 3) outward
    normals (head frame, unit, z = 0); ``fixed`` (L,) index into each line nearest the fixed landmark vertex;
    ``n_verts``: the topology's vertex count; ``landmarks`` (L,) the iBUG index of each line; ``ring`` (L, R, 3)
    vertex ids of the faces around each line's last vertex (outward winding; repeated to a common count) and
    ``hides`` (L,) bool: the lines (brow ends) whose landmark is that last vertex while its ring faces the camera
    (:func:`select_outline`)."""

    ids: np.ndarray
    normal: np.ndarray
    fixed: np.ndarray
    n_verts: int
    landmarks: np.ndarray
    ring: np.ndarray
    hides: np.ndarray


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


def _section_line(V: np.ndarray, skin: np.ndarray, L: np.ndarray, n: np.ndarray, outer_mm: float | None,
                  inner_mm: float = _INNER_MM, O: tuple[float, float] = (-60.0, 30.0)) -> np.ndarray:
    """(N_LINE,) vertex ids of the outer surface's cross-section through ``L`` by the plane of ``n`` and head z,
    inner → outer, from ``inner_mm`` inside ``L`` to ``outer_mm`` behind it (``None``: ending at ``L``); ``O``
    (outward, depth) mm from ``L``: a point inside the head the outer surface is seen from."""
    z = np.array([0.0, 0.0, 1.0])
    m = np.cross(n, z)
    d = V - L
    near = skin & (np.abs(d @ m) < _PLANE_MM)
    a, b = d[near] @ n, d[near] @ z            # in-plane coordinates: outward, depth (into the head)
    oa, ob = O
    th = np.arctan2(b - ob, a - oa)
    r = np.hypot(a - oa, b - ob)
    th_l = np.arctan2(-ob, -oa)
    # the outer surface: the farthest vertex from O in each 1° bin of angle
    cand = np.flatnonzero(near)
    keep = (a > -inner_mm) & (th > th_l - np.pi / 2) & (th < th_l + np.pi / 2)
    keep &= (b < outer_mm) if outer_mm is not None else (th < th_l)
    cand, th, r = cand[keep], th[keep], r[keep]
    bins = np.floor(np.degrees(th)).astype(int)
    order = np.lexsort((-r, bins))
    first = np.ones(len(order), bool)
    first[1:] = bins[order][1:] != bins[order][:-1]
    sel = order[first]
    cand, th = cand[sel], th[sel]
    if outer_mm is None:  # the line ends at the landmark vertex itself, its first ring of neighbours left out
        lm = int(np.argmin(np.linalg.norm(V - L, axis=1)))
        away = np.linalg.norm(V[cand] - L, axis=1) > _RING_MM
        cand, th = np.append(cand[away], lm), np.append(th[away], th_l)
    ts = np.linspace(th.min(), th.max(), N_LINE)
    return cand[np.abs(th[None, :] - ts[:, None]).argmin(1)]


def _lines(T, which: np.ndarray, normals: np.ndarray, outer_mm: float | None, max_part: int = 3,
           **kw) -> tuple[np.ndarray, np.ndarray]:
    V = T.verts
    skin = np.zeros(len(V), bool)
    skin[np.unique(T.faces)] = True
    skin &= T.part_ids <= max_part                # 3: skin, hair, brow, lips (not lids or eyeballs); 4: + lids
    ids = np.stack([_section_line(V, skin, T.landmarks[i], n, outer_mm, **kw) for i, n in zip(which, normals)])
    fixed = np.array([int(np.argmin(np.linalg.norm(V[row] - T.landmarks[i], axis=1))) for row, i in zip(ids, which)])
    return ids, fixed


def _ring(faces: np.ndarray, v: int, size: int = 8) -> np.ndarray:
    f = faces[(faces == v).any(1)]
    return f[np.arange(size) % len(f)]


def _frozen(ids, normals, fixed, n_verts, landmarks, ring, hides) -> ContourLines:
    for arr in (ids, normals, fixed, landmarks, ring, hides):
        arr.setflags(write=False)
    return ContourLines(ids=ids, normal=normals, fixed=fixed, n_verts=n_verts, landmarks=landmarks, ring=ring,
                        hides=hides)


@functools.lru_cache(maxsize=1)
def jaw_contour_lines() -> ContourLines:
    """The cached jaw contour lines (0-16) of the template (see the module docstring)."""
    T = face_template()
    normals = _outward_normals(T.landmarks[:17])
    ids, fixed = _lines(T, JAW, normals, _OUTER_MM)
    ring = np.stack([_ring(T.faces, int(row[-1])) for row in ids])
    return _frozen(ids, normals, fixed, len(T.verts), JAW.copy(), ring, np.zeros(len(JAW), bool))


@functools.lru_cache(maxsize=1)
def outline_lines() -> ContourLines:
    """The cached lines of every :data:`OUTLINE` landmark: the jaw's, then the brow ends' (along the brow, ending
    at the tail vertex; see the module docstring)."""
    T = face_template()
    jaw = jaw_contour_lines()
    chord = np.zeros((2, 3))  # the lines' planes: along the brow, from its head (21 / 22) to its tail
    chord[:, :2] = T.landmarks[BROW_ENDS, :2] - T.landmarks[[21, 22], :2]
    chord /= np.linalg.norm(chord, axis=1, keepdims=True)
    # to the mid-sagittal plane (the far brow hides behind the brow ridge and the nose bridge at large yaw), seen
    # from a point on that plane 80 mm deep; the chord runs over the upper lids
    half = float(np.abs(T.landmarks[BROW_ENDS, 0]).max())
    ids, fixed = _lines(T, BROW_ENDS, chord, None, max_part=4, inner_mm=half + 20.0, O=(-half, 80.0))
    normals = np.zeros((2, 3))  # selected by the farthest projection sideways (the chord also falls to the tail)
    normals[:, 0] = np.sign(T.landmarks[BROW_ENDS, 0])
    ring = np.stack([_ring(T.faces, int(row[-1])) for row in ids])
    return _frozen(np.concatenate([jaw.ids, ids]), np.concatenate([jaw.normal, normals]),
                   np.concatenate([jaw.fixed, fixed]), jaw.n_verts, OUTLINE.copy(), np.concatenate([jaw.ring, ring]),
                   np.concatenate([jaw.hides, np.ones(len(BROW_ENDS), bool)]))


def silhouette_select(X, normal_cam, K):
    """Silhouette point of each line at a pose (torch, batched).

    ``X`` (..., L, M, 3) camera-frame positions of the line vertices, ``normal_cam`` (..., L, 3) the outward
    normals rotated into the camera frame, ``K`` (..., 3, 3). Returns ``(k, frac, point)``: the line index
    (..., L) of the farthest projection, the signed sub-vertex offset in [-0.5, 0.5] toward the next (+) or
    previous (-) vertex, and the interpolated 3-D point (..., L, 3).
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


def select_outline(X, ring_X, normal_cam, K, hides):
    """:func:`silhouette_select` for the lines of :class:`ContourLines` (camera at the origin): a ``hides`` line
    (a brow end) keeps its last vertex, the tail, while the tail's ring of faces ``ring_X`` (..., L, R, 3, 3)
    faces the camera, and takes the line's silhouette point once it faces away (hidden by the surface in front).
    ``hides`` (L,) bool, array or tensor on the device. Returns ``(k, frac, point)`` as :func:`silhouette_select`."""
    k, frac, point = silhouette_select(X, normal_cam, K)
    n = torch.linalg.cross(ring_X[..., 1, :] - ring_X[..., 0, :], ring_X[..., 2, :] - ring_X[..., 0, :]).sum(-2)
    tail = X[..., -1, :]
    if not torch.is_tensor(hides):
        hides = torch.as_tensor(np.array(hides), device=X.device)
    keep = hides & ((n * tail).sum(-1) <= 0)   # the tail faces the camera
    M = X.shape[-2]
    k = torch.where(keep, torch.full_like(k, M - 1), k)
    frac = torch.where(keep, torch.zeros_like(frac), frac)
    point = torch.where(keep[..., None], tail, point)
    return k, frac, point


def is_contour_topology(faces) -> bool:
    """Whether a mesh topology (F,3) is the shared procedural one the contour lines are defined on (procedural
    heads and every reconstruction)."""
    ref = build_template().faces
    f = faces.detach().cpu().numpy() if torch.is_tensor(faces) else np.asarray(faces)
    return f.shape == ref.shape and bool((f == ref).all())


@functools.lru_cache(maxsize=8)
def _line_tensors(device: str) -> dict:
    """:func:`outline_lines` as tensors on ``device``, made once per device (not once per batch)."""
    lines = outline_lines()
    as_t = lambda a, **kw: torch.as_tensor(np.array(a), device=device, **kw)  # noqa: E731
    return {"ids": as_t(lines.ids), "ring": as_t(lines.ring), "normal": as_t(lines.normal, dtype=torch.float64),
            "hides": as_t(lines.hides)}


def ibug_outline(verts, head_rotation, K):
    """iBUG outline landmarks of meshes of the shared topology, :data:`OUTLINE` order (jaw 0-16, brow ends 17, 26):
    ``verts`` (..., V, 3) camera frame, ``head_rotation`` (..., 3, 3) head → camera, ``K`` (..., 3, 3) (torch;
    float64 maths). Returns ``(points, on_outline)``: the 3-D points (..., L, 3) and (..., L) bool, False for a
    brow end whose tail is in view (its point is then the tail vertex, the fixed landmark: a caller keeps its own
    copy of that, bit for bit)."""
    t = _line_tensors(str(verts.device))
    ids, ring = t["ids"], t["ring"]
    L, M = ids.shape
    X = verts[..., ids.reshape(-1), :].reshape(*verts.shape[:-2], L, M, 3).to(torch.float64)
    RX = verts[..., ring.reshape(-1), :].reshape(*verts.shape[:-2], *ring.shape, 3).to(torch.float64)
    ncam = t["normal"] @ head_rotation.to(torch.float64).transpose(-1, -2)
    k, _, point = select_outline(X, RX, ncam, K.to(torch.float64), t["hides"])
    # on the outline: every jaw point; a brow end whose selected vertex is not its tail
    on = ~t["hides"] | (ids.gather(1, k.reshape(-1, L).T).T.reshape(k.shape) != ids[:, -1])
    return point, on
