"""``procedural`` source: procedural heads (:mod:`onthefly.synthetic`) placed in front of a source camera.

* Source camera (:data:`SOURCE_CAMERA`): f = 1200 px, 1280×960 px, principal point (640, 480) (OpenCV pixel
  centres), no distortion.
* Subjects: ``subjects`` identities ``sample_identities(subjects, Generator(seed))``, ids ``proc0000``, ...
  ``count`` frames in all; subject s gets ``count // subjects`` frames, plus one for ``s < count % subjects``.
  Frames are yielded subject by subject (``frame`` id ``f0000``, ...), camera id ``cam0``.
* Per frame (from ``np.random.default_rng([seed, 1])``): head pitch and yaw uniform in ±``max_angle`` (30°),
  roll uniform in ±``max_roll`` (10°), ``hR = Ry(yaw)·Rx(−pitch)·Rz(roll)`` (head → camera); face-centre distance
  uniform in ``distance`` (450-750 mm) along the ray through a pixel uniform within ±15 % of the image size around
  the principal point; gaze target ``sample_gaze_targets`` of the heads (within 30° of straight ahead, 300-800 mm
  from the head origin). ``X_cam = hR·X_head + t`` with ``t`` putting the face centre (``eye_nose`` rule of the
  head's own 68 landmarks) on that ray.

The record's labels are exact: landmarks are mesh vertices, the gaze target is the point the eyeballs fixate.
``vert_face_region`` is the heads' shared ``face_region`` (brows to chin, between the face contours; no ears, neck
or back of the head) without the vertices of the identity's hair (``part_ids`` 1).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..normalization import face_centre
from ..synthetic import build_heads, generator_fingerprint, sample_gaze_targets, sample_identities
from .base import FrameRecord, SourceError
from .registry import register

__all__ = ["ProceduralSource", "SOURCE_CAMERA"]

#: (focal px, width px, height px) of the procedural source camera
SOURCE_CAMERA = (1200.0, 1280, 960)


def _rot(axis: str, a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    m = {"x": [o, z, z, z, c, -s, z, s, c], "y": [c, z, s, z, o, z, -s, z, c], "z": [c, -s, z, s, c, z, z, z, o]}
    return np.stack(m[axis], -1).reshape(*a.shape, 3, 3)


@register
class ProceduralSource:
    """Procedural heads as a source; see the module docstring for every sampling choice."""

    name = "procedural"
    help = "the embedded procedural heads"

    @classmethod
    def add_arguments(cls, add) -> None:
        add("--count", type=int, default=64, help="frames in all (default 64)")
        add("--seed", type=int, default=0, help="random seed (default 0)")
        add("--subjects", type=int, default=None,
            help="identities; frames are split evenly (default min(8, --count))")

    @classmethod
    def from_args(cls, args):
        count = getattr(args, "count", 64)
        subjects = getattr(args, "subjects", None)
        if subjects is None:  # the default follows --count: --count 6 gives 6 identities, not an error
            subjects = min(8, count) if isinstance(count, int) and count >= 1 else 8
        return cls(count, getattr(args, "seed", 0), subjects)

    def __init__(self, count: int = 64, seed: int = 0, subjects: int = 8, *, max_angle: float = 30.0,
                 max_roll: float = 10.0, distance: tuple[float, float] = (450.0, 750.0), batch: int = 32):
        for flag, v in (("count", count), ("subjects", subjects)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"--{flag}: expected a positive int, got {v!r}")
        if subjects > count:
            raise ValueError(f"--subjects ({subjects}) cannot exceed --count ({count})")
        self.count, self.seed, self.subjects = int(count), int(seed), int(subjects)
        self.batch = max(1, int(batch))
        self.attrs = {"procedural_seed": self.seed, "procedural_subjects": self.subjects,
                      "procedural_count": self.count, "procedural_generator": generator_fingerprint()}
        per = np.full(self.subjects, self.count // self.subjects)
        per[: self.count % self.subjects] += 1
        self._subject_of = np.repeat(np.arange(self.subjects), per)
        self._frame_of = np.concatenate([np.arange(n) for n in per])
        rng = np.random.default_rng([self.seed, 1])
        n = self.count
        deg = math.pi / 180
        pitch = rng.uniform(-max_angle, max_angle, n) * deg
        yaw = rng.uniform(-max_angle, max_angle, n) * deg
        roll = rng.uniform(-max_roll, max_roll, n) * deg
        self.head_rotation = _rot("y", yaw) @ _rot("x", -pitch) @ _rot("z", roll)
        f, w, h = SOURCE_CAMERA
        self.K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
        px = np.stack([w / 2 + rng.uniform(-0.15, 0.15, n) * w, h / 2 + rng.uniform(-0.15, 0.15, n) * h], 1)
        ray = np.concatenate([(px - self.K[:2, 2]) / f, np.ones((n, 1))], 1)
        self.centre = ray / np.linalg.norm(ray, axis=1, keepdims=True) * rng.uniform(*distance, n)[:, None]

        self.targets = sample_gaze_targets(n, torch.Generator().manual_seed(int(rng.integers(2**62))))
        self._cache: dict[int, FrameRecord] = {}

    def keys(self) -> list[int]:
        return list(range(self.count))

    def _build(self, start: int) -> None:
        stop = min(self.count, start + self.batch)
        g = torch.Generator().manual_seed(self.seed)
        ids = sample_identities(self.subjects, g)
        sel = torch.from_numpy(self._subject_of[start:stop])
        heads = build_heads(ids[sel], self.targets[start:stop])

        verts = heads.verts.double().numpy()
        lm_t = heads.landmarks.double()
        c_head = face_centre(lm_t, "eye_nose").numpy()
        lm = lm_t.numpy()
        tgt = heads.gaze_targets.double().numpy()
        faces = heads.faces.numpy()
        # face region: the shared face vertices minus this identity's hair (a low hairline overlaps the top)
        face = (heads.face_region[None] & (heads.part_ids != 1)).numpy()
        w, h = SOURCE_CAMERA[1:]
        for k, i in enumerate(range(start, stop)):
            R = self.head_rotation[i]
            t = self.centre[i] - R @ c_head[k]
            s = int(self._subject_of[i])
            self._cache[i] = FrameRecord(
                verts=(verts[k] @ R.T + t).astype(np.float32), faces=faces,
                vert_colors=heads.vert_colors[k].numpy(), vert_face_region=face[k], landmarks=lm[k] @ R.T + t,
                head_rotation=R,
                face_centre=self.centre[i].copy(), face_centre_rule="eye_nose", gaze_target=R @ tgt[k] + t,
                K=self.K.copy(), image_size=(w, h), subject=f"proc{s:04d}", frame=f"f{int(self._frame_of[i]):04d}",
                camera="cam0", origin=f"procedural(seed={self.seed})[{i}]")

    def load(self, key: int) -> FrameRecord:
        if not 0 <= key < self.count:
            raise SourceError(f"procedural(seed={self.seed}): no frame {key}")
        if key not in self._cache:
            self._cache.clear()
            self._build(key - key % self.batch)
        return self._cache.pop(key)
