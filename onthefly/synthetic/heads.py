"""Seeded, batched procedural heads with eyeballs that look at a gaze target.

Conventions
-----------
* **Head frame** (the ETH-XGaze face-model frame): millimetres, x toward the subject's left, y down, z into
  the head; the face looks toward -z (a head with rotation I at t = (0, 0, 600) looks straight into an OpenCV
  camera at the origin). **Origin: the midpoint of the two eyeball centres**; the eyeball centres are
  ``(-ipd/2, 0, 0)`` (subject's right eye, listed first everywhere) and ``(+ipd/2, 0, 0)``.
* **Landmarks**: iBUG-68, 0-based, dlib / face-alignment semantics ("right" = subject's right = -x). Every
  landmark is a mesh vertex (``landmark_vertex_ids``), so it lies exactly on the surface; the eye landmarks
  36-47 are vertices of the lid margins (36/39, 42/45 where the lids meet). The mouth is closed, so the inner
  lip points 61-63 coincide with 67-65. Being vertices, the jaw points 0-16 are fixed on the surface
  (AFLW2000-3D semantics); the iBUG jaw of a view, on the face's outline, comes from
  :mod:`onthefly.reconstruct.contour`. Jaw 0 / 16 sit beside the outer eye corners and the brow points on the
  drawn brow, where 300-W annotators put them.
* **Layout**: the mouth, nostrils and brows sit where they sit on a real face (OpenFace's 68-point mean shape; see
  :mod:`.features`): a narrower, lower mouth and high brow heads made real face detectors miss turned heads.
* **Skin shading**: the albedo carries a view-independent cavity term (:func:`_cavity_shading`: concavity against
  the smoothed surface darkens eye sockets, the sides of the nose, nostrils and folds), a stand-in for ambient
  occlusion and subsurface light loss that makes unlit renders read as faces; low-frequency blotches and fine
  noise, blush, darker lips, lip line and nostrils, drawn brows, upper lashes (a dark band over the lid margin,
  densest laterally) and, for about half the identities, a beard shadow on the upper lip, chin and jaw.
* **Silhouette**: one star-shaped skin surface carries the skull, the face, a neck (~108 mm wide), pinnae that
  stand ~18 mm out of the head at the helix, and hair whose volume (2.5-17 mm per identity) builds up behind the
  hairline and lies flat around the ears; all of it is outside ``face_region`` and no landmark lies on it.
* **Eyes**: each eyeball is a sphere of radius ``eyeball_radius`` whose optical axis is rotated (Listing's
  law: minimal rotation from -z) onto its visual axis ``eye_axes`` = unit(target - eyeball centre), so both
  eyes fixate the common 3D ``gaze_targets`` point (vergence). The **iris centre** is the pole of the iris cap
  on the eyeball sphere, ``eyeball_centre + eyeball_radius * eye_axis`` (a mesh vertex, the centre of the
  pupil). Pupil and limbus are vertex rings at exactly ``pupil_radius`` / ``iris_radius`` from the axis, so
  per-vertex colour draws sharp boundaries. There is no separate cornea bulge. The gaze label downstream is
  the direction from the caller's face centre to the target; only the target is stored here.
* **Lids**: upper and lower lids are rings of skin vertices around the palpebral fissure, lying just
  outside the eyeball sphere; the upper lid follows the eye's elevation (0.8 x), the lower lid a little
  (0.3 x). Inside the fissure the skin folds inward into a hidden cup behind the eyeball (part
  "conjunctiva"), so the skin is one closed surface and nothing ever shows the inside of the head.
* **Topology**: one ``faces`` tensor for every seed and gaze; identity and gaze only move vertices and
  change colours. Faces are wound so that ``(v1-v0) x (v2-v0)`` points out of the surface.
* **Randomness**: only the generator/seed passed in (no global RNG state). Equal seeds give bit-identical
  heads; head ``i`` does not depend on the batch size (up to float rounding).

Typical use::

    ids = sample_identities(64, generator=torch.Generator().manual_seed(0))
    heads = build_heads(ids, gaze_targets)          # (64,3) points in front of the face, head frame mm
    heads.verts, heads.faces, heads.vert_colors, heads.landmarks, heads.iris_centres, ...

or simply ``procedural_heads(64, seed=0)`` (random plausible gaze targets).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from . import features as F
from .template import (
    CORNER_Q,
    CUP_SCALE,
    FISSURE0,
    IPD0,
    LOWER_K,
    MARGIN_RING,
    MEDIAL_K,
    N_BALL,
    N_EYE,
    N_IRIS_RINGS,
    N_PUPIL_RINGS,
    N_SCLERA_RINGS,
    RING_OFFSETS,
    ZREF,
    C,
    build_template,
    fissure_ring,
    ring_param,
)

__all__ = ["HeadIdentity", "HeadBatch", "sample_identities", "build_heads", "procedural_heads",
           "sample_gaze_targets", "PART_NAMES", "MAX_GAZE_ANGLE_DEG", "MIN_TARGET_DISTANCE"]

#: part label of each vertex, see :attr:`HeadBatch.part_ids`
PART_NAMES = {0: "skin", 1: "hair", 2: "brow", 3: "lips", 4: "eyelid", 5: "conjunctiva", 6: "sclera",
              7: "iris", 8: "pupil"}
#: targets must be at least this far (mm) from the head origin ...
MIN_TARGET_DISTANCE = 50.0
#: ... and no eye may have to turn more than this from straight ahead (-z) to look at them
MAX_GAZE_ANGLE_DEG = 55.0

# ring-wise constants of the eye region (see template.RING_OFFSETS)
#   radial thickness over the eyeball sphere, skin blend weight, weight of the canonical (identity-free) shape
_RING_DELTA = np.array([-6.0, -2.2, -0.35, 0.6, 1.1, 1.5, 1.9, 2.3, 2.6, 2.8, 3.0, 3.0, 3.0])
_RING_W = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.03, 0.12, 0.3, 0.6, 0.88, 1.0, 1.0])
_RING_FLAT = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.02, 1.08, 1.18, 1.32, 1.45, 1.55, 1.6, 1.6])   # flatter outward
_RING_CANON = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.4, 0.75, 1.0])
_CUP_INWARD = (0.6, 0.3, 0.1)     # cup rings: fraction of the way from the lid margin to the eyeball centre
_KX_LAT, _KX_MED = 1.42, 1.38   # lid ellipsoid: lateral / medial widening of the lid surface over the eyeball


# ====================================================================== identity
@dataclass(eq=False)
class HeadIdentity:
    """Batched identity parameters (leading dim n). Build with :func:`sample_identities`.

    All tensors are float32 except ``noise_seed`` (int64). Shapes: ``(n,)`` unless noted.
    """

    ipd: torch.Tensor            # distance between eyeball centres, mm
    eye_radius: torch.Tensor     # eyeball radius, mm
    iris_radius: torch.Tensor    # radius of the limbus (iris disc), mm
    pupil_radius: torch.Tensor   # mm
    fissure: torch.Tensor        # (n,5) lateral/medial half widths, upper/lower lid heights, canthal tilt (mm)
    head: torch.Tensor           # (n,8) cranium width/height/length, face width/length, jaw taper, neck, hair vol
    shape: torch.Tensor          # (n,J) magnitudes of features.SHAPE_BASES (1 = canonical)
    warp: torch.Tensor           # (n,5) nose width, mouth width (scales), nose, lip, chin length shifts (mm)
    skin_rgb: torch.Tensor       # (n,3) in [0,1]
    hair_rgb: torch.Tensor       # (n,3)
    iris_rgb: torch.Tensor       # (n,3)
    lip_tint: torch.Tensor       # (n,3) multiplicative tint of the lips relative to the skin
    brow: torch.Tensor           # (n,4) height offset, arch, thickness, density
    hairline: torch.Tensor       # (n,4) front height (rad), temple recession, side level, nape level
    noise_seed: torch.Tensor     # (n,) int64 seed of the per-vertex skin / iris texture noise

    def __len__(self) -> int:
        return self.ipd.shape[0]

    def to(self, device) -> "HeadIdentity":
        return HeadIdentity(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __getitem__(self, idx) -> "HeadIdentity":
        """Identities ``idx`` (int, slice or index tensor); always keeps the leading batch dimension."""
        if isinstance(idx, (int, np.integer)):
            idx = slice(int(idx), int(idx) + 1 if idx != -1 else None)
        return HeadIdentity(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def cat(items: "list[HeadIdentity]") -> "HeadIdentity":
        """Concatenate identity batches (e.g. to build the same people with several gaze targets)."""
        return HeadIdentity(**{f.name: torch.cat([getattr(i, f.name) for i in items]) for f in fields(HeadIdentity)})


_SKIN_PALETTE = torch.tensor([[0.96, 0.80, 0.71], [0.92, 0.72, 0.60], [0.84, 0.62, 0.48], [0.72, 0.50, 0.36],
                              [0.55, 0.37, 0.26], [0.40, 0.26, 0.18], [0.30, 0.20, 0.14]])
_HAIR_PALETTE = torch.tensor([[0.05, 0.04, 0.035], [0.12, 0.08, 0.06], [0.24, 0.16, 0.10], [0.40, 0.28, 0.17],
                              [0.62, 0.48, 0.30], [0.78, 0.66, 0.45], [0.45, 0.20, 0.10], [0.55, 0.54, 0.52]])
_HAIR_P = torch.tensor([0.28, 0.24, 0.18, 0.1, 0.06, 0.05, 0.04, 0.05])
_IRIS_PALETTE = torch.tensor([[0.25, 0.13, 0.06], [0.38, 0.22, 0.10], [0.45, 0.35, 0.17], [0.33, 0.42, 0.25],
                              [0.30, 0.45, 0.62], [0.45, 0.52, 0.58]])
_IRIS_P = torch.tensor([0.38, 0.3, 0.12, 0.06, 0.09, 0.05])


def _as_generator(generator: torch.Generator | int | None) -> torch.Generator:
    if generator is None:
        generator = 0
    if isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise ValueError(f"generator: expected a torch.Generator or an int seed, got {type(generator).__name__}")


_N_UNIFORMS = 96      # uniforms reserved per head (only the first ~70 are used; room to add parameters)


def sample_identities(n: int, generator: torch.Generator | int | None = None) -> HeadIdentity:
    """Sample ``n`` random head identities (CPU tensors) from ``generator`` (a CPU ``torch.Generator`` or int).

    Only the given generator is used (no global RNG state), so equal seeds give equal identities, and
    identity ``i`` does not depend on ``n`` (``sample_identities(8, s)[:4]`` equals ``sample_identities(4, s)``).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    n = int(n)
    g = _as_generator(generator)
    # one row of uniforms per head, drawn in one call: head i depends only on the generator state and i
    # (so the first k heads of a batch of n equal a batch of k from the same seed)
    U = torch.rand(n, _N_UNIFORMS, generator=g, dtype=torch.float64)
    col = [0]

    def take(k):
        c = col[0]
        col[0] += k
        return U[:, c:c + k]

    def u(n_, k=None, lo=0.0, hi=1.0):
        x = take(1 if k is None else k)
        x = x[:, 0] if k is None else x
        return (lo + (hi - lo) * x).float()

    def nrm(n_, k=None, sd=1.0, clip=2.5):
        x = take(1 if k is None else k)
        x = x[:, 0] if k is None else x
        z = math.sqrt(2.0) * torch.erfinv((2 * x - 1).clamp(-1 + 1e-12, 1 - 1e-12))
        return (z * sd).clamp(-clip * sd, clip * sd).float()

    def choice(p):
        return torch.searchsorted(torch.cumsum(p.double(), 0)[:-1].contiguous(), take(1)[:, 0].contiguous())

    ipd = 63.0 + nrm(n, sd=2.6)
    eye_radius = 12.0 + nrm(n, sd=0.25)
    iris_radius = 6.0 + nrm(n, sd=0.12)
    pupil_radius = u(n, lo=1.5, hi=2.8)
    f0 = torch.tensor([FISSURE0["w_lat"], FISSURE0["w_med"], FISSURE0["h_up"], FISSURE0["h_lo"], 0.0])
    fissure = f0 + torch.stack([nrm(n, sd=0.6), nrm(n, sd=0.5), nrm(n, sd=0.6), nrm(n, sd=0.45),
                                nrm(n, sd=0.9)], -1)
    head = torch.stack([1 + nrm(n, sd=0.04), 1 + nrm(n, sd=0.035), 1 + nrm(n, sd=0.04), 1 + nrm(n, sd=0.05),
                        1 + nrm(n, sd=0.04), nrm(n, sd=0.07), 1 + nrm(n, sd=0.05), u(n, lo=0.0, hi=1.0)], -1)
    J = len(F.SHAPE_BASES)
    shape = 1.0 + nrm(n, J, sd=0.2)
    warp = torch.stack([1 + nrm(n, sd=0.08), 1 + nrm(n, sd=0.07), nrm(n, sd=2.5), nrm(n, sd=1.8),
                        nrm(n, sd=3.5)], -1)
    # skin: a continuous position on a light..dark palette plus small hue/saturation jitter
    tone = u(n) ** 1.1 * (len(_SKIN_PALETTE) - 1)
    i0 = tone.floor().long().clamp(max=len(_SKIN_PALETTE) - 2)
    fr = (tone - i0)[:, None]
    skin_rgb = _SKIN_PALETTE[i0] * (1 - fr) + _SKIN_PALETTE[i0 + 1] * fr
    skin_rgb = (skin_rgb * (1 + nrm(n, 3, sd=0.03)) * torch.tensor([1.0, 1.0, 1.0])
                + nrm(n, 1, sd=0.015) * torch.tensor([0.5, 0.0, -0.5])).clamp(0.05, 1.0)
    # hair colour: light (blond/red/grey) hair mostly with light skin
    hair_i = choice(_HAIR_P)
    hair_i = torch.where((tone > 2.2) & (hair_i >= 3) & (hair_i != 7), hair_i % 3, hair_i)
    hair_rgb = (_HAIR_PALETTE[hair_i] * (1 + nrm(n, 3, sd=0.08))).clamp(0.0, 1.0)
    # iris colour: light (blue/green/grey) irises mostly with light skin
    iris_i = choice(_IRIS_P)
    dark_skin = tone > 2.2
    iris_i = torch.where(dark_skin & (iris_i >= 2), iris_i % 2, iris_i)
    iris_rgb = (_IRIS_PALETTE[iris_i] * (1 + nrm(n, 3, sd=0.1))).clamp(0.0, 1.0)
    lip_tint = torch.tensor([0.88, 0.66, 0.68]) * (1 + nrm(n, 3, sd=0.04))
    brow = torch.stack([nrm(n, sd=1.6), u(n, lo=1.0, hi=5.0), u(n, lo=2.2, hi=4.2), u(n, lo=0.55, hi=0.95)], -1)
    hairline = torch.stack([-0.80 + nrm(n, sd=0.06), u(n, lo=0.0, hi=0.14), u(n, lo=-0.15, hi=0.2),
                            u(n, lo=0.6, hi=0.85)], -1)
    noise_seed = (take(1)[:, 0] * (2 ** 31 - 1)).long()
    assert col[0] <= _N_UNIFORMS
    return HeadIdentity(ipd=ipd, eye_radius=eye_radius, iris_radius=iris_radius, pupil_radius=pupil_radius,
                        fissure=fissure, head=head, shape=shape, warp=warp, skin_rgb=skin_rgb,
                        hair_rgb=hair_rgb, iris_rgb=iris_rgb, lip_tint=lip_tint, brow=brow,
                        hairline=hairline, noise_seed=noise_seed)


# ====================================================================== output
@dataclass(eq=False)
class HeadBatch:
    """A batch of ``n`` heads sharing one topology (all in the head frame, mm).

    * ``verts`` (n,V,3) float32; ``faces`` (F,3) int64, shared by every head, wound so that
      ``(v1-v0) x (v2-v0)`` points out of the surface; ``vert_colors`` (n,V,3) uint8 RGB.
    * ``landmarks`` (n,68,3) float32: iBUG-68 points (0-based, dlib semantics), each a mesh vertex
      (``landmark_vertex_ids`` (68,) int64).
    * ``eyeball_centres`` (n,2,3), ``eyeball_radius`` (n,), ``iris_radius`` (n,), ``pupil_radius`` (n,):
      subject-right eye first. ``eye_axes`` (n,2,3) unit visual axes (eyeball centre -> target).
    * ``iris_centres`` (n,2,3): the pole of the iris cap on the eyeball sphere,
      ``eyeball_centres + eyeball_radius * eye_axes`` (a mesh vertex: ``iris_centre_vertex_ids`` (2,)).
    * ``gaze_targets`` (n,3): the 3D point both eyes fixate (vergence).
    * ``part_ids`` (n,V) int8 (see :data:`PART_NAMES`; hair/brow/lips vary with identity; the iris
      disc is ``iris`` + ``pupil``); ``face_region`` (V,) bool, shared: the face from ~15 mm above the brows
      down to the jaw line and sideways to the face contour in front of the ears, eyes included, without
      ears, neck and the back of the head (a low hairline may overlap its top: use ``part_ids`` for hair).
    """

    verts: torch.Tensor
    faces: torch.Tensor
    vert_colors: torch.Tensor
    landmarks: torch.Tensor
    landmark_vertex_ids: torch.Tensor
    eyeball_centres: torch.Tensor
    eyeball_radius: torch.Tensor
    iris_radius: torch.Tensor
    pupil_radius: torch.Tensor
    eye_axes: torch.Tensor
    iris_centres: torch.Tensor
    iris_centre_vertex_ids: torch.Tensor
    gaze_targets: torch.Tensor
    part_ids: torch.Tensor
    face_region: torch.Tensor

    def __len__(self) -> int:
        return self.verts.shape[0]

    _SHARED = ("faces", "landmark_vertex_ids", "iris_centre_vertex_ids", "face_region")

    def __getitem__(self, idx) -> "HeadBatch":
        """Heads ``idx`` (int, slice, index tensor); shared fields are kept as they are."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return HeadBatch(**{f.name: getattr(self, f.name) if f.name in self._SHARED else getattr(self, f.name)[idx]
                            for f in fields(self)})

    def to(self, device) -> "HeadBatch":
        return HeadBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


# ====================================================================== template as torch (cached)
_TORCH_CACHE: dict = {}


def _tt(device) -> dict:
    key = str(device)
    if key in _TORCH_CACHE:
        return _TORCH_CACHE[key]
    T = build_template()
    f32: dict[str, Any] = dict(dtype=torch.float32, device=device)
    front = np.clip((-T.skin_dir[:, 2] - 0.12) / 0.25, 0, 1)
    Xc, Yc = np.where(front > 0, T.skin_X, 0.0), np.where(front > 0, T.skin_Y, 0.0)
    Xc, Yc = np.clip(Xc, -400, 400), np.clip(Yc, -400, 400)
    phi = np.arctan2(T.skin_dir[:, 0], -T.skin_dir[:, 2])
    psi = np.arcsin(np.clip(T.skin_dir[:, 1], -1, 1))
    nR = len(RING_OFFSETS)
    canon = np.zeros((2, nR, N_EYE, 2))
    for k, o in enumerate(RING_OFFSETS):
        canon[:, k, :, 0], canon[:, k, :, 1] = fissure_ring(float(o), **FISSURE0)
    cm = F.colour_masks(Xc, Yc, front, phi, psi)
    bases = F.shape_bases(Xc, Yc, front, phi, psi)
    face_region = _face_region(T, Yc, phi, bases, cm)
    d = dict(
        T=T,
        faces=torch.as_tensor(T.faces, dtype=torch.int64, device=device),
        dir=torch.as_tensor(T.skin_dir, **f32),
        X=torch.as_tensor(Xc, **f32), Y=torch.as_tensor(Yc, **f32),
        front=torch.as_tensor(front, **f32),
        front_idx=torch.as_tensor(np.nonzero(front > 0)[0], dtype=torch.int64, device=device),
        warp_basis=_warp_basis(torch.as_tensor(Xc[front > 0], **f32), torch.as_tensor(Yc[front > 0], **f32)),
        phi=torch.as_tensor(phi, **f32), psi=torch.as_tensor(psi, **f32),
        bases=torch.as_tensor(bases, **f32),
        masks=torch.as_tensor(cm, **f32),
        eye_vert=torch.as_tensor(T.eye_vert, dtype=torch.int64, device=device),
        canon=torch.as_tensor(canon, **f32),
        ring_delta=torch.as_tensor(_RING_DELTA, **f32),
        ring_w=torch.as_tensor(_RING_W, **f32),
        ring_canon=torch.as_tensor(_RING_CANON, **f32),
        ring_flat=torch.as_tensor(_RING_FLAT, **f32),
        ring_off=torch.as_tensor(RING_OFFSETS, **f32),
        lm=torch.as_tensor(T.landmark_vert, dtype=torch.int64, device=device),
        face_region=torch.as_tensor(face_region, device=device),
    )
    _TORCH_CACHE[key] = d
    return d


def _face_region(T, Yc, phi, bases, cm) -> np.ndarray:
    """Shared face mask (V,): from ~15 mm above the brows down to the jaw line, sideways to the face contour
    in front of the ears; eyes included; ears, neck and the back of the head excluded. Evaluated on the
    canonical (mean-identity) head."""
    d = torch.as_tensor(T.skin_dir, dtype=torch.float64)[None]
    head0 = torch.tensor([[1.0, 1, 1, 1, 1, 0, 1, 0.5]], dtype=torch.float64)
    r = _base_radius(d, head0)[0].numpy() + bases.sum(0)
    p = C + r[:, None] * T.skin_dir
    jaw = F.canonical_landmark_points()[:17]
    # jaw line height at each x (the jaw landmarks' directions hit the canonical surface near these points)
    order = np.argsort(jaw[:, 0])
    jaw_y = np.interp(p[:, 0], jaw[order, 0], jaw[order, 1], left=-1e9, right=-1e9)
    inside = (np.abs(phi) < 1.05) & (Yc > -40.0) & (p[:, 1] < jaw_y + 1.0) & (p[:, 2] < 45.0)
    inside &= cm[F.COLOUR_MASKS.index("ear")] < 0.05
    fr = np.zeros(T.n_verts, bool)
    fr[:T.n_skin] = inside
    fr[T.eye_vert.ravel()] = True
    fr[T.ball_offset:] = True
    return fr


def _smoothstep(a, b, x):
    t = ((x - a) / (b - a)).clamp(0.0, 1.0)
    return t * t * (3 - 2 * t)


_NOISE_TABLE: dict = {}


def _hash_noise(seed: torch.Tensor, idx: torch.Tensor, salt: int) -> torch.Tensor:
    """Deterministic per-(seed, index) noise in [-1, 1) without any RNG state. seed (n,), idx (V,) -> (n,V).

    A fixed table of 2^16 values (from a private numpy generator) read at a per-seed affine hash of the index.
    """
    key = str(idx.device)
    if key not in _NOISE_TABLE:
        tab = np.random.default_rng(20240607).uniform(-1.0, 1.0, 1 << 16).astype(np.float32)
        _NOISE_TABLE[key] = torch.as_tensor(tab, device=idx.device)
    tab = _NOISE_TABLE[key]
    s = (seed * 2654435761 + salt * 40503) & 0xFFFFFFFF
    mul = ((s >> 8) & 0xFFFE) + 1                       # odd multiplier per head
    off = s & 0xFFFF
    j = (idx[None, :] * mul[:, None] + off[:, None]) & 0xFFFF
    return tab[j]


# ====================================================================== geometry pieces
def _superq(d, ax, ay_up, ay_dn, az_fr, az_bk, p):
    """Radius along unit directions d (n,V,3) of a super-ellipsoid centred at the ray origin."""
    ay = torch.where(d[..., 1] < 0, ay_up, ay_dn)
    az = torch.where(d[..., 2] < 0, az_fr, az_bk)
    s = (d[..., 0].abs() / ax) ** p + (d[..., 1].abs() / ay) ** p + (d[..., 2].abs() / az) ** p
    return s.clamp_min(1e-12) ** (-1.0 / p)


def _softmin(rs, k):
    return -torch.logsumexp(torch.stack([-k * r for r in rs]), 0) / k


#: top view of the face (vertical elliptic cylinder): front depth at the midline, centre depth, half width (mm)
_FACE_FRONT_Z, _FACE_CENTRE_Z, _FACE_HALF_W, _FACE_BACK = -10.0, 35.0, 74.0, 55.0


def _face_cylinder(dx, dy, dz, h):
    """Radius (mm from C) of the face cylinder along unit directions (dx, dy, dz).

    In top view the face is an egg of two half-ellipses (front half 45 mm deep, back half 55 mm) centred
    ~35 mm behind the eyeball centres, so its surface turns back gradually from the nose bridge over the
    eyes, temples and cheekbones toward the ears (with the shape bases: outer eye corners ~15 mm behind the
    nasion, zygion ~35 mm behind the midline face plane) instead of a flat front with sharp corners. It
    narrows toward the jaw (jaw taper ``h[5]``); ``h[3]`` scales its width.
    """
    A = _FACE_HALF_W * h[3] * (1.0 - (0.38 + h[5]) * dy.clamp_min(0.0))
    zc = _FACE_CENTRE_Z * (0.75 + 0.25 * h[2])
    bf = zc - _FACE_FRONT_Z
    c0 = C[2] - zc                        # ray origin relative to the ellipse centre (inside: 0 < c0 < bf, bb)
    rs = []
    for b in (bf, torch.full_like(bf, _FACE_BACK)):
        qa = ((dx / A) ** 2 + (dz / b) ** 2).clamp_min(1e-9)
        qb = c0 * dz / b ** 2
        qc = (c0 / b) ** 2 - 1.0
        rs.append((-qb + torch.sqrt((qb * qb - qa * qc).clamp_min(0.0))) / qa)
    front = c0 + rs[0] * dz < 0
    return torch.where(front, rs[0], rs[1])


#: rounding of the jaw line under the chin (direction units squared; 0.003 was a V-shaped chin)
_CHIN_ROUND = 0.02
#: half width of the neck (mm; real necks are ~110-120 mm wide seen from the front)
_NECK_HALF_W = 54.0


def _base_radius(d: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """Skull + face + neck radius (mm from C) along unit directions d (n,V,3); head (n,8) identity factors.

    The cranium is a super-ellipsoid around C whose front recedes below the forehead; the face is a vertical
    cylinder with an egg-shaped (two half-ellipses) cross-section (:func:`_face_cylinder`) cut by a jaw plane
    (bottom) and a plane at the hairline (top); the neck is a vertical cylinder. They are united with a smooth
    maximum.
    """
    h = [head[:, i, None] for i in range(head.shape[1])]
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    az_front = 93.0 - 45.0 * _smoothstep(-0.55, 0.15, dy)
    cran = _superq(d, 74.0 * h[0], 133.0 * h[1], 84.0, az_front, 112.0 * h[2], 2.4)
    big = torch.full_like(dx, 1e4)
    cyl = _face_cylinder(dx, dy, dz, h)
    # jaw line: a plane tilted up toward the sides, rounded under the chin (a hyperbola in x: a U, not a V)
    den = dy + 0.1 * dz + 0.24 * (torch.sqrt(dx * dx + _CHIN_ROUND) - math.sqrt(_CHIN_ROUND) + math.sqrt(0.003))
    bot = torch.where(den > 0.02, (121.0 * h[4] - C[1] - 0.1 * C[2]) / den.clamp_min(0.02), big)
    top = torch.where(dy < -0.02, (C[1] + 75.0) / (-dy).clamp_min(0.02), big)
    face = _softmin([cyl, bot, top], 0.2)
    cylk = 1.0 / torch.sqrt((dx / (_NECK_HALF_W * h[6])) ** 2 + (dz / 50.0) ** 2 + 1e-9)
    neck = torch.minimum(cylk, 180.0 / dy.clamp_min(1e-3)) * _smoothstep(0.2, 0.5, dy)
    k = 0.14
    return torch.logsumexp(torch.stack([k * cran, k * face, k * neck]), 0) / k - 2.0


def _warp_basis(X, Y):
    """Identity-free pieces of the warp at feature-plane coords (...,V) -> (6,...,V)."""
    ax = X.abs()
    g_m = torch.exp(-0.5 * ((Y - F.MOUTH_Y) / 12.0) ** 2) * (1 - _smoothstep(30.0, 52.0, ax))
    g_n = torch.exp(-0.5 * ((Y - 38.0) / 13.0) ** 2) * (1 - _smoothstep(14.0, 27.0, ax))
    return torch.stack([X * g_n, X * g_m, torch.tanh(X / 6.0), torch.sigmoid((Y - 24.0) / 6.0),
                        torch.sigmoid((Y - 58.0) / 5.0), torch.sigmoid((Y - 96.0) / 7.0)])


def _warp(X, Y, ids: HeadIdentity, basis=None):
    """Identity warp of feature-plane coordinates (n,V) -> (n,V): proportions and widths.

    Nose / mouth widths scale X locally, the IPD moves each half of the face sideways, nose, upper-lip and
    chin lengths shift Y below the nose / mouth / chin (all smooth and monotone).
    """
    g = _warp_basis(X, Y) if basis is None else basis[:, None]
    w = ids.warp
    de = (ids.ipd - IPD0) / 2
    Xw = X + (w[:, 0, None] - 1) * g[0] + (w[:, 1, None] - 1) * g[1] + de[:, None] * g[2]
    Yw = Y + w[:, 2, None] * g[3] + w[:, 3, None] * g[4] + w[:, 4, None] * g[5]
    return Xw, Yw


def _plane_dir(X, Y, Z=None):
    v = torch.stack([X - C[0], Y - C[1], (torch.full_like(X, ZREF) if Z is None else Z) - C[2]], -1)
    return v / v.norm(dim=-1, keepdim=True)


def _fissure(off: torch.Tensor, scale: torch.Tensor, fis: torch.Tensor, t: torch.Tensor):
    """Per-head eye-plane ring points. off/scale (R,), fis (n,5) [w_lat,w_med,h_up,h_lo,tilt] -> (n,R,N)."""
    c, s = torch.cos(t), torch.sin(t)
    o = off[None, :, None]
    q = CORNER_Q * torch.exp(-o / 3.0)
    wl, wm, hu, hl, tilt = [fis[:, i, None, None] for i in range(5)]
    w = torch.where(c >= 0, wl + o, wm + MEDIAL_K * o)
    h = torch.where(s >= 0, hu + o, hl + LOWER_K * o)
    sc = scale[None, :, None]
    a = sc * w * c
    b = sc * h * s * s.abs() ** q
    b = b + tilt * a / 15.0
    return a, b


def _rot_from_minus_z(a: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (...,3,3) taking (0,0,-1) to unit vectors a (...,3) (minimal rotation, Listing)."""
    ax, ay, az = a[..., 0], a[..., 1], a[..., 2]
    v = torch.stack([ay, -ax, torch.zeros_like(ax)], -1)
    c = -az
    z = torch.zeros_like(ax)
    K = torch.stack([torch.stack([z, -v[..., 2], v[..., 1]], -1),
                     torch.stack([v[..., 2], z, -v[..., 0]], -1),
                     torch.stack([-v[..., 1], v[..., 0], z], -1)], -2)
    eye = torch.eye(3, dtype=a.dtype, device=a.device).expand(K.shape)
    return eye + K + K @ K / (1 + c)[..., None, None]


def eyeball_ring_angles(pupil_radius, iris_radius, eye_radius) -> torch.Tensor:
    """Polar angles (n, rings) of the eyeball vertex rings, measured from the optical axis."""
    tp = torch.asin(pupil_radius / eye_radius)[:, None]
    ti = torch.asin(iris_radius / eye_radius)[:, None]
    dev = tp.device
    pup = tp * torch.tensor([0.35, 0.7, 0.985], device=dev)
    fr = torch.tensor([0.0, 0.2, 0.45, 0.7, 0.88, 0.96, 1.0], device=dev)
    iris = tp * 1.015 + (ti * 0.99 - tp * 1.015) * fr
    sc = torch.linspace(0.0, 1.0, N_SCLERA_RINGS, device=dev)
    scl = ti * 1.012 + (math.pi - 0.22 - ti * 1.012) * sc ** 1.3
    return torch.cat([pup, iris, scl], 1)


# ====================================================================== main builder
def _check_targets(gaze_targets, n: int) -> torch.Tensor:
    if not isinstance(gaze_targets, torch.Tensor):
        try:
            gaze_targets = torch.as_tensor(np.asarray(gaze_targets, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise ValueError(f"gaze_targets: not convertible to a tensor ({e})") from None
    if gaze_targets.shape != (n, 3):
        raise ValueError(f"gaze_targets: expected shape ({n}, 3), got {tuple(gaze_targets.shape)}")
    if not gaze_targets.is_floating_point():
        gaze_targets = gaze_targets.double()
    if not torch.isfinite(gaze_targets).all():
        raise ValueError("gaze_targets: contains NaN or inf")
    if (gaze_targets[:, 2] >= 0).any():
        raise ValueError("gaze_targets: every target must lie in front of the face (z < 0 in the head frame)")
    if (gaze_targets.norm(dim=1) < MIN_TARGET_DISTANCE).any():
        raise ValueError(f"gaze_targets: targets must be at least {MIN_TARGET_DISTANCE} mm from the head origin")
    return gaze_targets


def build_heads(ids: HeadIdentity, gaze_targets: torch.Tensor) -> HeadBatch:
    """Build the meshes of identities ``ids`` whose eyes fixate ``gaze_targets`` (n,3) (head frame, mm).

    Raises ``ValueError`` (naming the argument) on wrong shapes, NaN/inf, targets not in front of the face
    (z >= 0), closer than :data:`MIN_TARGET_DISTANCE` to the origin, or needing an eye rotation of more than
    :data:`MAX_GAZE_ANGLE_DEG`.
    """
    if not isinstance(ids, HeadIdentity):
        raise ValueError(f"ids: expected a HeadIdentity, got {type(ids).__name__}")
    n = len(ids)
    for f in fields(ids):
        v = getattr(ids, f.name)
        if not isinstance(v, torch.Tensor) or v.shape[0] != n:
            raise ValueError(f"ids: field {f.name} must be a tensor with leading dimension {n}")
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ValueError(f"ids: field {f.name} contains NaN or inf")
    device = ids.ipd.device
    tgt = _check_targets(gaze_targets, n).to(device=device, dtype=torch.float32)
    tt = _tt(device)
    T = tt["T"]
    f32: dict[str, Any] = dict(dtype=torch.float32, device=device)

    # ------------------------------------------------------------ eyes: centres, axes (vergence)
    R = ids.eye_radius
    ex = ids.ipd / 2
    zeros = torch.zeros_like(ex)
    centres = torch.stack([torch.stack([-ex, zeros, zeros], -1), torch.stack([ex, zeros, zeros], -1)], 1)
    axes = tgt[:, None, :] - centres
    axes = axes / axes.norm(dim=-1, keepdim=True)
    cos_max = math.cos(math.radians(MAX_GAZE_ANGLE_DEG))
    if (-axes[..., 2] < cos_max).any():
        raise ValueError(f"gaze_targets: an eye would have to rotate more than {MAX_GAZE_ANGLE_DEG} deg "
                         "from straight ahead")

    # ------------------------------------------------------------ skin directions (identity warp)
    fi = tt["front_idx"]
    X, Y, front = tt["X"][fi], tt["Y"][fi], tt["front"][fi]
    Xw, Yw = _warp(X[None], Y[None], ids, tt["warp_basis"])
    d = tt["dir"][None].repeat(n, 1, 1)
    d0 = d[:, fi]
    d[:, fi] = d0 + (_plane_dir(Xw, Yw) - d0) * front[None, :, None]
    # eye-ring vertices: per-head lid rings
    nR = len(RING_OFFSETS)
    t = ring_param(N_EYE, torch).to(**f32)
    off = tt["ring_off"].clamp_min(0.0)
    scale = torch.tensor([CUP_SCALE.get(float(o), 1.0) for o in RING_OFFSETS], **f32)
    pitch = torch.asin((-axes[..., 1]).clamp(-1, 1))            # (n,2) eye elevation, + = up
    fis = ids.fissure[:, None, :].expand(n, 2, 5).clone()
    Rs = R[:, None]
    fis[..., 2] = (fis[..., 2] + 0.8 * Rs * torch.sin(pitch)).clamp_min(-1.0)
    fis[..., 3] = (fis[..., 3] - 0.3 * Rs * torch.sin(pitch)).clamp_min(2.0)
    a_h, b_h = _fissure(off, scale, fis.reshape(2 * n, 5), t)           # (2n,R,N)
    a_h, b_h = a_h.reshape(n, 2, nR, N_EYE), b_h.reshape(n, 2, nR, N_EYE)
    lam = tt["ring_canon"][None, None, :, None]
    a = a_h + (tt["canon"][None, ..., 0] - a_h) * lam
    b = b_h + (tt["canon"][None, ..., 1] - b_h) * lam
    side = torch.tensor([-1.0, 1.0], **f32)[None, :, None, None]
    # lid surface: an ellipsoid around the eyeball centre, slightly wider than the eyeball sideways
    rho = R[:, None, None, None] + tt["ring_delta"][None, None, :, None]                  # (n,1,R,1)
    kx = torch.where(a >= 0, _KX_LAT, _KX_MED)
    flat = tt["ring_flat"][None, None, :, None]
    q2 = (a / (kx * flat * rho)) ** 2 + (b / (flat * rho)) ** 2
    cup = (tt["ring_off"] < 0)[None, None, :, None]
    q2 = torch.where(cup, q2.clamp(max=0.97), q2)
    zl = -rho * torch.sqrt((1 - q2).clamp_min(0.0))
    # skin directions of the eye-ring vertices: through the lid point (inner rings), through the feature
    # plane (outer rings, identity-free like their generic neighbours)
    Xe, Ye = _warp((side * (IPD0 / 2 + a)).reshape(n, -1), (-b).reshape(n, -1), ids)
    Ze = (zl + (ZREF - zl) * lam).reshape(n, -1)
    ev = tt["eye_vert"].reshape(-1)
    d[:, ev] = _plane_dir(Xe, Ye, Ze)

    # ------------------------------------------------------------ skin radius
    r = _base_radius(d, ids.head)
    for j in range(tt["bases"].shape[0]):     # explicit sum: per-element results independent of n
        r = r + ids.shape[:, j, None] * tt["bases"][j]
    # hair volume / hair mask
    phi, psi = tt["phi"], tt["psi"]
    hl = [ids.hairline[:, i, None] for i in range(4)]
    aphi = phi.abs()[None]
    psi_h = (hl[0] - hl[1] * torch.exp(-0.5 * ((aphi - 0.5) / 0.12) ** 2)
             + (hl[2] - hl[0]) * _smoothstep(0.62, 1.1, aphi) + (hl[3] - hl[2]) * _smoothstep(1.55, 2.5, aphi))
    ear = tt["masks"][F.COLOUR_MASKS.index("ear")][None]
    hair = torch.sigmoid((psi_h - psi[None]) / 0.04) * (1 - _smoothstep(0.0, 0.6, ear))
    # volume: thin at the hairline, building up over ~25 mm behind it (hair lies flat at the hairline), fullest on
    # top, flat over and around the ears (so the pinnae stand out of it); 2.5 mm (cropped) to ~17 mm (full)
    around_ear = torch.exp(-0.5 * ((aphi - F.EAR_PHI) / 0.3) ** 2) * _smoothstep(-0.75, -0.35, psi[None])
    vol = 2.5 + 14.5 * ids.head[:, 7, None] ** 2
    hair_vol = (vol * _smoothstep(0.0, 0.3, psi_h - psi[None]) * (1 - _smoothstep(0.0, 0.6, ear))
                * (0.45 + 0.55 * _smoothstep(-0.2, -1.0, psi[None])) * (1 - 0.75 * around_ear))
    r = r + hair_vol
    skin = torch.as_tensor(C, **f32) + r[..., None] * d

    # ------------------------------------------------------------ lids: blend skin with the lid surface
    lid = torch.stack([centres[:, :, None, None, 0] + side * a, -b + centres[:, :, None, None, 1],
                       zl + centres[:, :, None, None, 2]], -1)
    w = torch.maximum(tt["ring_w"][None, None, :, None], _smoothstep(0.72, 0.97, q2.sqrt()))
    w = torch.where(cup, torch.zeros_like(w), w)
    sk = skin[:, ev].reshape(n, 2, nR, N_EYE, 3)
    # lid offset from the skin surface, smoothed across the rings outside the margin; rings with full skin
    # weight stay exactly on the (smooth) skin surface, so the lids blend into the face without a crease
    off_lid = (lid - sk) * (1 - w[..., None])
    k0 = MARGIN_RING + 3
    for _ in range(3):
        inner = 0.5 * off_lid[:, :, k0:-1] + 0.25 * (off_lid[:, :, k0 - 1:-2] + off_lid[:, :, k0 + 1:])
        off_lid = torch.cat([off_lid[:, :, :k0], inner * (w[:, :, k0:-1, :, None] < 1), off_lid[:, :, -1:]], 2)
    p = sk + off_lid
    # lids never dip into the eyeball (keeps the margin at least 0.3 mm above the sphere)
    rel = p - centres[:, :, None, None, :]
    dist = rel.norm(dim=-1, keepdim=True)
    push = ((R[:, None, None, None, None] + 0.3) / dist).clamp_min(1.0)
    p = centres[:, :, None, None, :] + rel * push
    # cup rings: straight from the lid margin toward the eyeball centre (hidden behind the eyeball except in
    # the corners of the fissure, where they show as conjunctiva)
    margin = p[:, :, MARGIN_RING:MARGIN_RING + 1]
    f_in = torch.tensor(_CUP_INWARD, **f32)[None, None, :, None, None]
    p_cup = margin + (centres[:, :, None, None, :] - margin) * f_in
    p = torch.cat([p_cup, p[:, :, MARGIN_RING:]], 2)
    skin = skin.clone()
    skin[:, ev] = p.reshape(n, -1, 3)

    # ------------------------------------------------------------ eyeballs
    ang = eyeball_ring_angles(ids.pupil_radius, ids.iris_radius, R)                     # (n,Rb)
    seg = torch.arange(N_BALL, **f32) * (2 * math.pi / N_BALL)
    st, ct = torch.sin(ang)[..., None], torch.cos(ang)[..., None]
    ring = torch.stack([st * torch.cos(seg), st * torch.sin(seg), -ct.expand(-1, -1, N_BALL)], -1)
    local = torch.cat([torch.tensor([0.0, 0.0, -1.0], **f32).expand(n, 1, 3), ring.reshape(n, -1, 3),
                       torch.tensor([0.0, 0.0, 1.0], **f32).expand(n, 1, 3)], 1)               # (n,Vb,3)
    rot = _rot_from_minus_z(axes)                                                        # (n,2,3,3)
    rl = sum(rot[:, :, None, :, j] * local[:, None, :, j, None] for j in range(3))          # (n,2,Vb,3)
    balls = centres[:, :, None, :] + R[:, None, None, None] * rl
    verts = torch.cat([skin, balls.reshape(n, -1, 3)], 1)
    iris_c = centres + R[:, None, None] * axes

    # the upper lid and lashes shade the top of the visible eyeball (a stand-in for their shadow, like the cavity term)
    up = -(balls[..., 1] - centres[:, :, None, 1]) / R[:, None, None]                  # (n,2,Vb) elevation / R
    lid_shadow = 1.0 - _LID_SHADOW * _smoothstep(-0.1, 0.4, up)
    colors, parts = _colours(ids, tt, hair, a, b, n, _cavity_shading(verts[:, :T.n_skin], tt), lid_shadow)
    lm = verts[:, tt["lm"]]
    iris_vid = torch.tensor([T.ball_offset, T.ball_offset + T.n_ball], dtype=torch.int64, device=device)
    return HeadBatch(verts=verts, faces=tt["faces"], vert_colors=colors, landmarks=lm,
                     landmark_vertex_ids=tt["lm"], eyeball_centres=centres, eyeball_radius=R.clone(),
                     iris_radius=ids.iris_radius.clone(), pupil_radius=ids.pupil_radius.clone(),
                     eye_axes=axes, iris_centres=iris_c, iris_centre_vertex_ids=iris_vid,
                     gaze_targets=tgt, part_ids=parts, face_region=tt["face_region"])


# ====================================================================== colours
_AO_STRENGTH, _AO_SCALE_MM = 0.55, 4.0
#: darkening of the top of the visible eyeball under the upper lid
_LID_SHADOW = 0.3


def _skin_laplacian(tt: dict):
    """Row-normalized adjacency (sparse, n_skin x n_skin) of the skin surface, cached in ``tt``."""
    if "skin_adj" not in tt:
        T = tt["T"]
        f = tt["faces"]
        f = f[(f < T.n_skin).all(1)]
        e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        e = torch.cat([e, e.flip(1)])
        e = torch.unique(e, dim=0)
        deg = torch.bincount(e[:, 0], minlength=T.n_skin).float()
        vals = 1.0 / deg[e[:, 0]]
        tt["skin_adj"] = torch.sparse_coo_tensor(e.T, vals, (T.n_skin, T.n_skin), check_invariants=False).coalesce()
        tt["skin_faces"] = f
        keep = torch.ones(T.n_skin, dtype=torch.float32, device=f.device)
        # the eye rings fade in: cup, lid margin and lash rings untouched, full shading at the outermost ring
        nR = tt["eye_vert"].shape[1]
        ramp = ((torch.arange(nR, dtype=torch.float32) - (MARGIN_RING + 2)) / (nR - 1 - (MARGIN_RING + 2)))
        keep[tt["eye_vert"]] = ramp.clamp(0, 1).to(keep.device)[None, :, None].expand_as(tt["eye_vert"])
        tt["ao_mask"] = keep
    return tt["skin_adj"]


def _cavity_shading(skin: torch.Tensor, tt: dict) -> torch.Tensor:
    """(n, n_skin) multiplicative shading of the skin albedo by its concavity, a stand-in for ambient occlusion
    and subsurface light loss in creases (eye sockets, the sides of the nose, nostrils, under the nose and the
    lower lip, the mentolabial fold, around the ears): view-independent, so it stays right under every light
    and head pose. Concavity = how far each vertex lies inside its smoothed surface (uniform Laplacian, 6 and 30
    iterations), along the outward normal; 1 on convex skin, down to ``1 - _AO_STRENGTH`` in deep creases."""
    A = _skin_laplacian(tt)
    n, V, _ = skin.shape
    x = skin.permute(1, 0, 2).reshape(V, 3 * n)
    s6 = x
    for _ in range(6):
        s6 = A @ s6
    s30 = s6
    for _ in range(24):
        s30 = A @ s30
    f = tt["skin_faces"]
    v = skin
    fn = torch.cross(v[:, f[:, 1]] - v[:, f[:, 0]], v[:, f[:, 2]] - v[:, f[:, 0]], dim=-1)
    nrm = torch.zeros_like(v)
    for k in range(3):
        nrm.index_add_(1, f[:, k], fn)
    nrm = nrm / nrm.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    d6 = ((x - s6).reshape(V, n, 3).permute(1, 0, 2) * nrm).sum(-1)
    d30 = ((x - s30).reshape(V, n, 3).permute(1, 0, 2) * nrm).sum(-1)
    occ = (-(0.7 * d6 + 0.5 * d30) / _AO_SCALE_MM).clamp(0.0, 1.0)
    return 1.0 - _AO_STRENGTH * occ * tt["ao_mask"][None]


def _colours(ids: HeadIdentity, tt: dict, hair: torch.Tensor, a, b, n: int, shade: torch.Tensor | None = None,
             ball_shade: torch.Tensor | None = None):
    T = tt["T"]
    dev = ids.ipd.device
    f32: dict[str, Any] = dict(dtype=torch.float32, device=dev)
    X, Y = tt["X"][None], tt["Y"][None]
    M = {k: tt["masks"][i][None] for i, k in enumerate(F.COLOUR_MASKS)}
    vidx = torch.arange(T.n_skin, device=dev)
    seed = ids.noise_seed.to(dev)
    n_fine = _hash_noise(seed, vidx, 1)
    # low-frequency blotches: a few random plane waves (phases/frequencies from the noise seed)
    kk = torch.arange(6, device=dev)
    hk = (_hash_noise(seed, kk, 2), _hash_noise(seed, kk, 3), _hash_noise(seed, kk, 4))
    fx, fy, ph = hk[0][..., None] * 0.12, hk[1][..., None] * 0.12, hk[2][..., None] * math.pi
    low = torch.sin(fx * X[:, None] + fy * Y[:, None] + ph).mean(1)                           # (n,V)
    skin_rgb = ids.skin_rgb[:, None, :]
    base = skin_rgb * (1 + 0.05 * low[..., None] + 0.025 * n_fine[..., None])
    blush = (M["blush"][..., None] * torch.tensor([0.04, -0.03, -0.03], **f32)
             + M["ear"][..., None] * torch.tensor([0.01, -0.02, -0.02], **f32))
    col = base * (1 + blush)
    # lips, lip line, nostrils
    lips = M["lips"][..., None]
    col = col * (1 - lips) + col * ids.lip_tint[:, None, :] * lips * 0.9 + col * lips * 0.1
    col = col * (1 - 0.45 * M["lip_line"][..., None]) * (1 - 0.8 * M["nostril"][..., None])
    # brows (per identity)
    br = [ids.brow[:, i, None] for i in range(4)]
    ax = X.abs()
    u = ((ax - 11.0) / 57.0).clamp(0, 1)
    yb = -15.5 - br[0] - (br[1] + 3.0) * torch.sin(math.pi * u ** 0.8) + 0.5 * u ** 2
    thick = br[2] * (1.15 - 0.55 * u)
    brow = (torch.exp(-0.5 * ((Y - yb) / thick) ** 2) * _smoothstep(8.0, 14.0, ax) * (1 - _smoothstep(64.0, 72.0, ax))
            * tt["front"][None])
    brow_n = (brow * 1.25).clamp(max=1.0) * br[3] * (0.88 + 0.12 * n_fine)
    brow_rgb = ids.hair_rgb[:, None, :] * 0.7 + 0.03
    col = col * (1 - brow_n[..., None]) + brow_rgb * brow_n[..., None]
    # beard shadow (stubble) for about half the identities: upper lip, chin and jaw, up the cheek to the sideburns
    y_top = 49.5 - 30.0 * _smoothstep(25.0, 66.0, ax)
    beard = (_smoothstep(-4.0, 4.0, Y - y_top) * (1 - _smoothstep(60.0, 72.0, ax)) * (1 - M["lips"])
             * _smoothstep(0.3, 0.8, tt["front"][None]))
    stubble = (_hash_noise(seed, torch.zeros(1, dtype=torch.long, device=dev), 9) * 0.4).clamp_min(0.0)   # (n,1)
    st = (stubble * beard * (0.75 + 0.25 * n_fine))[..., None]
    col = col * (1 - st) + (ids.hair_rgb[:, None, :] * 0.6 + 0.02) * st
    # hair
    streak = _hash_noise(seed, vidx, 5)
    hair_col = ids.hair_rgb[:, None, :] * (1 + 0.12 * streak[..., None]) + 0.01
    col = col * (1 - hair[..., None]) + hair_col * hair[..., None]
    # eye rings: lids, lash line, conjunctiva
    ev = tt["eye_vert"]
    nR = len(RING_OFFSETS)
    ring = torch.arange(nR, device=dev)
    sk = col[:, ev.reshape(-1)].reshape(n, 2, nR, N_EYE, 3)
    upper = (b >= 0)
    off = tt["ring_off"][None, None, :, None, None]
    tone_w = torch.exp(-off.clamp_min(0.0) / 2.5)
    lidtone = sk * (1 - tone_w * torch.tensor([0.04, 0.1, 0.1], **f32))
    crease = torch.exp(-0.5 * ((off - 5.0) / 1.5) ** 2) * upper[..., None]
    lid_col = lidtone * (1 - 0.12 * crease)
    conj = torch.tensor([0.80, 0.47, 0.44], **f32) * (0.6 + 0.4 * ids.skin_rgb.mean(1))[:, None, None, None, None]
    is_cup = (ring < MARGIN_RING)[None, None, :, None, None]
    lash = ((ring >= MARGIN_RING) & (ring <= MARGIN_RING + 3))[None, None, :, None] & upper
    lash_col = torch.tensor([0.05, 0.04, 0.035], **f32) + 0.1 * ids.hair_rgb[:, None, None, None, :]
    lower_margin = ((ring == MARGIN_RING) | (ring == MARGIN_RING + 1))[None, None, :, None] & ~upper
    new = torch.where(is_cup, conj.expand_as(sk), torch.where(lower_margin[..., None], sk * torch.tensor(
        [0.78, 0.6, 0.58], **f32), lid_col))
    # upper lashes: a dark band over the margin, thinning outward (+2: 0.8, +3: 0.35), densest toward the lateral
    # corner (t near 0, where lashes are longest) and thin at the medial corner
    lash_w = torch.where(ring == MARGIN_RING + 2, 0.8, torch.where(ring == MARGIN_RING + 3, 0.35, 1.0))
    lat = (0.75 + 0.25 * torch.cos(ring_param(N_EYE, torch).to(dev)))[None, None, None, :]
    lash_w = lash_w[None, None, :, None] * lash * torch.where((ring > MARGIN_RING + 1)[None, None, :, None], lat, 1.0)
    new = new * (1 - lash_w[..., None]) + lash_col * lash_w[..., None]
    col = col.clone()
    col[:, ev.reshape(-1)] = new.reshape(n, -1, 3)
    if shade is not None:
        col = col * shade[..., None]
    # eyeballs
    nb = N_PUPIL_RINGS + N_IRIS_RINGS + N_SCLERA_RINGS
    rk = torch.arange(nb, device=dev)
    vb = torch.arange(2 * T.n_ball, device=dev)
    bn = _hash_noise(seed, vb, 7).reshape(n, 2, T.n_ball)
    ring_idx = torch.cat([torch.zeros(1, device=dev, dtype=torch.long), 1 + rk.repeat_interleave(N_BALL),
                          torch.full((1,), nb + 1, device=dev, dtype=torch.long)])      # 0 pole, nb+1 back
    segn = torch.cat([torch.zeros(1, device=dev, dtype=torch.long), torch.arange(N_BALL, device=dev).repeat(nb),
                      torch.zeros(1, device=dev, dtype=torch.long)])
    # iris streaks: per-segment noise shared along rays (radial texture)
    sn = _hash_noise(seed, torch.arange(N_BALL, device=dev), 8)[:, segn]             # (n,Vb)
    ri = ring_idx[None, None, :]
    iris_fr = ((ri - 1 - N_PUPIL_RINGS).float() / (N_IRIS_RINGS - 1)).clamp(0, 1)
    iris_c = ids.iris_rgb[:, None, None, :] * (0.85 + 0.3 * sn[:, None, :, None] + 0.1 * bn[..., None])
    iris_c = iris_c * (1.15 - 0.35 * iris_fr[..., None] ** 2)
    iris_c = iris_c * torch.where(ri == N_PUPIL_RINGS + N_IRIS_RINGS, 0.45, 1.0)[..., None]  # limbal ring
    pupil_c = torch.tensor([0.025, 0.02, 0.02], **f32).expand(n, 2, T.n_ball, 3)
    scl_fr = ((ri - 1 - N_PUPIL_RINGS - N_IRIS_RINGS).float() / N_SCLERA_RINGS).clamp(0, 1)
    sclera = (torch.tensor([0.92, 0.89, 0.86], **f32) - scl_fr[..., None] * torch.tensor([0.05, 0.14, 0.14], **f32)
              + 0.015 * bn[..., None])
    is_pupil = (ri <= N_PUPIL_RINGS)[..., None]
    is_iris = ((ri > N_PUPIL_RINGS) & (ri <= N_PUPIL_RINGS + N_IRIS_RINGS))[..., None]
    ball = torch.where(is_pupil, pupil_c, torch.where(is_iris, iris_c, sclera.expand(n, 2, -1, -1)))
    if ball_shade is not None:
        ball = ball * ball_shade[..., None]
    col = torch.cat([col, ball.reshape(n, -1, 3)], 1)
    colors = (col.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    # part ids
    parts = torch.zeros(n, T.n_verts, dtype=torch.int8, device=dev)
    sp = parts[:, :T.n_skin]
    sp[M["lips"].expand(n, -1) > 0.5] = 3
    sp[brow_n > 0.35] = 2
    sp[hair > 0.5] = 1
    ring_part = torch.where(ring < MARGIN_RING, 5, 4).to(torch.int8)
    sp[:, ev.reshape(-1)] = ring_part[None, None, :, None].expand(n, 2, nR, N_EYE).reshape(n, -1)
    bp = torch.where(is_pupil[..., 0], 8, torch.where(is_iris[..., 0], 7, 6)).to(torch.int8)
    parts[:, T.ball_offset:] = bp.expand(n, 2, T.n_ball).reshape(n, -1)
    return colors, parts


# ====================================================================== convenience
def sample_gaze_targets(n: int, generator: torch.Generator | int | None = None, max_angle_deg: float = 30.0,
                        distance: tuple[float, float] = (300.0, 800.0)) -> torch.Tensor:
    """Random fixation targets (n,3), head frame mm: within ``max_angle_deg`` of straight ahead (-z), at a
    distance in ``distance`` from the origin."""
    g = _as_generator(generator)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    if not (0 < max_angle_deg <= MAX_GAZE_ANGLE_DEG - 5):
        raise ValueError(f"max_angle_deg: expected a value in (0, {MAX_GAZE_ANGLE_DEG - 5}], got {max_angle_deg}")
    if not (MIN_TARGET_DISTANCE * 2 <= distance[0] <= distance[1]):
        raise ValueError(f"distance: expected (lo, hi) with {MIN_TARGET_DISTANCE * 2} <= lo <= hi, got {distance}")
    U = torch.rand(int(n), 3, generator=g, dtype=torch.float64).float()     # one row per target
    ang = U[:, 0].sqrt() * math.radians(max_angle_deg)
    az = U[:, 1] * (2 * math.pi)
    dist = distance[0] + (distance[1] - distance[0]) * U[:, 2]
    dirs = torch.stack([torch.sin(ang) * torch.cos(az), torch.sin(ang) * torch.sin(az), -torch.cos(ang)], -1)
    return dirs * dist[:, None]


def procedural_heads(n: int, seed: int = 0, gaze_targets: torch.Tensor | None = None) -> HeadBatch:
    """``n`` random heads from ``seed``; random plausible gaze targets (±30 deg, 300-800 mm) when none given."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an int, got {type(seed).__name__}")
    ids = sample_identities(n, torch.Generator().manual_seed(int(seed)))
    if gaze_targets is None:
        # an independent stream, so that head i's target does not depend on n either
        gaze_targets = sample_gaze_targets(n, torch.Generator().manual_seed(int(seed) * 7919 + 104729))
    return build_heads(ids, gaze_targets)
