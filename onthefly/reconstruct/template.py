"""The reconstruction template: the mean procedural head (``onthefly.synthetic``), built once and cached.

The template is the project's own: the identity whose float parameters are the mean of 512 identities sampled
from a fixed seed (:data:`TEMPLATE_SEED`), with zero texture noise, looking straight ahead (-z) at 600 mm. It has
the shared topology of every procedural head (18,190 vertices, 36,368 faces: skin with eyelids, two eyeballs),
68 iBUG landmark vertices, the face region (brows to chin, between the face contours) and a **mirror
correspondence**: ``mirror[v]`` is the template vertex nearest to the reflection of ``v`` in the head's
mid-sagittal plane (x -> -x), used to fill the side of the face a source camera did not see.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..synthetic import HeadIdentity, build_heads, sample_identities

__all__ = ["FaceTemplate", "face_template", "TEMPLATE_SEED"]

#: seed of the identities whose mean is the template identity
TEMPLATE_SEED = 20261121
_N_MEAN = 512


@dataclass(frozen=True)
class FaceTemplate:
    """Arrays of the template head (numpy, head frame of ``docs/conventions.md``, mm).

    ``verts`` (V,3) float64; ``faces`` (F,3) int64 (outward winding); ``landmark_ids`` (68,) int64;
    ``landmarks`` (68,3) = ``verts[landmark_ids]``; ``face_region`` (V,) bool (shared face region minus hair);
    ``part_ids`` (V,) int8 (``onthefly.synthetic.PART_NAMES``); ``mirror`` (V,) int64 mirror vertex;
    ``mirror_dist`` (V,) mm from the reflected vertex to ``verts[mirror]``; ``eyeball`` (V,) bool.
    """

    verts: np.ndarray
    faces: np.ndarray
    landmark_ids: np.ndarray
    landmarks: np.ndarray
    face_region: np.ndarray
    part_ids: np.ndarray
    mirror: np.ndarray
    mirror_dist: np.ndarray
    eyeball: np.ndarray

    @property
    def n_verts(self) -> int:
        return int(self.verts.shape[0])


def mean_identity():
    """The template identity: float fields averaged over :data:`_N_MEAN` seeded samples, noise seed 0."""
    ids = sample_identities(_N_MEAN, torch.Generator().manual_seed(TEMPLATE_SEED))
    vals = {}
    for f in fields(HeadIdentity):
        v = getattr(ids, f.name)
        vals[f.name] = v.float().mean(0, keepdim=True) if v.is_floating_point() else torch.zeros_like(v[:1])
    return HeadIdentity(**vals)


@functools.lru_cache(maxsize=1)
def face_template() -> FaceTemplate:
    """The cached :class:`FaceTemplate` (built on the first call)."""
    heads = build_heads(mean_identity(), torch.tensor([[0.0, 0.0, -600.0]]))
    verts = heads.verts[0].double().numpy()
    parts = heads.part_ids[0].numpy()
    face = heads.face_region.numpy() & (parts != 1)
    tree = cKDTree(verts)
    d, mirror = tree.query(verts * np.array([-1.0, 1.0, 1.0]))
    eyeball = parts >= 6
    for a in (verts, d, mirror, face, parts, eyeball):
        a.setflags(write=False)
    lm_ids = heads.landmark_vertex_ids.numpy().astype(np.int64)
    return FaceTemplate(verts=verts, faces=heads.faces.numpy().astype(np.int64), landmark_ids=lm_ids,
                        landmarks=verts[lm_ids].copy(), face_region=face, part_ids=parts,
                        mirror=mirror.astype(np.int64), mirror_dist=d, eyeball=eyeball)
