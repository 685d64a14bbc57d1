"""Pose-sampler stage: which head pose each novel view is rendered at (seeded, batched, no per-sample loops).

A sampler draws (pitch, yaw) labels in radians (``docs/conventions.md`` §3-4) from a ``torch.Generator``:

* :class:`Gaussian` — ``mean + std · N(0, 1)`` per angle (degrees in the constructor);
* :class:`Uniform` — uniform in a (pitch, yaw) box (degrees);
* :class:`Empirical` — rows of (pitch, yaw) radians from a ``.txt`` / ``.npy`` / ``.h5`` file (e.g. MPII-NV's
  ``targets/EYEDIAP_CS_head_distribution.txt`` or an h5 dataset's ``face_head_pose``), drawn uniformly with
  replacement, plus optional Gaussian kernel jitter;
* :class:`Source` — the source frame's own normalized head pose (a pure re-render);
* :class:`Cameras` — the frame's **real cameras** (multi-view caches such as ``--source xgaze3d``, whose frames
  store their 18 ETH-XGaze cameras): each view is exactly what that physical camera normalizes to, with its
  labels (the way ETH-XGaze / XGaze3D normalize it: face centre and head pose moved into that camera,
  ``face_mat_norm`` = that camera's normalization rotation). No rejection applies (they are real views).

With ``on="gaze"`` (Gaussian / Uniform / Empirical) the drawn label is the **gaze** of the view, and the head pose
is solved for (:func:`head_pose_for_gaze`): the head turns rigidly with its eyes so that the view's gaze label is
exactly the drawn one (MPII-NV's ``sample_target_gaze``).

:func:`sample_targets` draws a batch and rejects (resampling only the rejected rows, a bounded number of rounds)
targets that turn the head more than ``max_rotation_deg`` away from the source view (single-view meshes are not
visible from behind), whose head pose (pitch, yaw) has an L2 norm above ``max_head_pose_deg`` (80°, MPII-NV's
limit), or
(gaze mode) for which no head pose gives the drawn gaze.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from ._isolated import call_isolated, can_isolate
from .geometry import pitchyaw_to_gaze, pitchyaw_to_rotation, rotation_to_pitchyaw
from .normalization import normalization_rotation

__all__ = ["PoseSampler", "Gaussian", "Uniform", "Empirical", "Source", "Cameras", "make_sampler", "sampler_spec",
           "head_pose_for_gaze", "camera_view_poses",
           "rotation_angle", "sample_targets", "TargetSample", "load_pose_rows"]

_DEG = math.pi / 180.0


def _pair(x, name: str) -> tuple[float, float]:
    if isinstance(x, (int, float)):
        return float(x), float(x)
    try:
        a, b = (float(v) for v in x)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number or a (pitch, yaw) pair, got {x!r}") from None
    return a, b


def _check_on(on: str) -> str:
    if on not in ("head", "gaze"):
        raise ValueError(f"on: expected 'head' or 'gaze', got {on!r}")
    return on


class PoseSampler:
    """Base class: ``sample(n, generator)`` → (n, 2) float64 (pitch, yaw) radians on the CPU.

    ``on`` is ``"head"`` (the drawn label is the view's head pose) or ``"gaze"`` (the view's gaze label)."""

    on: str = "head"

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items() if k[0] != '_')})"


class Gaussian(PoseSampler):
    """(pitch, yaw) ~ N(mean, std²) per angle; ``mean``/``std`` in degrees (a number or a (pitch, yaw) pair).

    MPII-NV's ``gaussian`` mode is ``Gaussian(std=20, on="gaze")`` (or ``on="head"``)."""

    def __init__(self, mean=(0.0, 0.0), std=(20.0, 20.0), on: str = "head"):
        self.mean, self.std, self.on = _pair(mean, "mean"), _pair(std, "std"), _check_on(on)
        if min(self.std) < 0:
            raise ValueError(f"std: must be >= 0, got {std!r}")

    def sample(self, n, generator):
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return (z * torch.tensor(self.std, dtype=torch.float64) + torch.tensor(self.mean, dtype=torch.float64)) * _DEG


class Uniform(PoseSampler):
    """Pitch uniform in ``pitch`` = (lo, hi), yaw uniform in ``yaw`` = (lo, hi), degrees."""

    def __init__(self, pitch=(-40.0, 40.0), yaw=(-60.0, 60.0), on: str = "head"):
        self.pitch, self.yaw, self.on = _pair(pitch, "pitch"), _pair(yaw, "yaw"), _check_on(on)
        if self.pitch[0] > self.pitch[1] or self.yaw[0] > self.yaw[1]:
            raise ValueError(f"Uniform: ranges must be (lo, hi) with lo <= hi, got pitch={pitch}, yaw={yaw}")

    def sample(self, n, generator):
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        lo = torch.tensor([self.pitch[0], self.yaw[0]], dtype=torch.float64)
        hi = torch.tensor([self.pitch[1], self.yaw[1]], dtype=torch.float64)
        return (lo + u * (hi - lo)) * _DEG


def _check_real(a: np.ndarray, p: Path, what: str = "") -> None:
    """Pose angles are real numbers: complex, string or record arrays are refused (a cast would drop parts)."""
    if a.dtype.kind not in "biuf":
        raise ValueError(f"empirical poses: {p}: {what}dtype {a.dtype}, expected real numbers")


def _h5_pose_rows(p: Path, k: str) -> dict:
    try:
        with h5py.File(p, "r") as f:
            if k not in f:
                raise ValueError(f"empirical poses: {p} has no dataset {k!r} (has {sorted(f.keys())[:10]})")
            a = f[k][...]
    except ValueError as exc:
        if str(p) in str(exc):
            raise
        raise ValueError(f"empirical poses: cannot read {p}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file
        raise ValueError(f"empirical poses: cannot read {p}: {type(exc).__name__}: {exc}") from None
    _check_real(a, p, f"dataset {k!r} has ")
    try:
        return {"rows": np.asarray(a, dtype=np.float64)}
    except (ValueError, TypeError) as exc:
        raise ValueError(f"empirical poses: {p}: not an array of numbers ({exc})") from None


def load_pose_rows(path, key: str | None = None, degrees: bool = False) -> torch.Tensor:
    """(N, 2) float64 (pitch, yaw) radians from a ``.txt``/``.csv`` (whitespace or comma separated), ``.npy`` or
    ``.h5``/``.hdf5`` file (dataset ``key``, default ``face_head_pose``); any array whose last axis is 2 is
    flattened to rows (MPII-NV's ``hp_train.npy`` is (frames, 18, 2))."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"empirical poses: file not found: {p}")
    suf = p.suffix.lower()
    try:
        if suf == ".npy":
            a = np.load(p, allow_pickle=False)
        elif suf in (".h5", ".hdf5"):  # read in a forked child: h5py can crash the process on a corrupt file
            k = key or "face_head_pose"
            if can_isolate():
                try:
                    a = call_isolated(_h5_pose_rows, p, k, timeout=300)["rows"]
                except OSError as exc:
                    raise ValueError(f"empirical poses: cannot read {p}: {exc}") from None
            else:
                a = _h5_pose_rows(p, k)["rows"]
        else:
            text = p.read_text().replace(",", " ")
            a = np.array([[float(v) for v in ln.split()] for ln in text.splitlines() if ln.strip()
                          and not ln.lstrip().startswith("#")], dtype=np.float64)
    except ValueError as exc:
        if str(p) in str(exc):
            raise
        raise ValueError(f"empirical poses: cannot read {p}: {exc}") from None
    except Exception as exc:  # corrupt file
        raise ValueError(f"empirical poses: cannot read {p}: {exc}") from None
    _check_real(np.asarray(a), p)
    try:
        a = np.asarray(a, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"empirical poses: {p}: not an array of numbers ({exc})") from None
    if a.ndim < 1 or a.shape[-1] != 2 or a.size == 0:
        raise ValueError(f"empirical poses: {p}: expected rows of (pitch, yaw), got shape {a.shape}")
    a = a.reshape(-1, 2)
    if not np.isfinite(a).all():
        raise ValueError(f"empirical poses: {p} contains NaN or inf")
    if degrees:
        a = a * _DEG
    elif np.abs(a).max() > 2 * math.pi:
        raise ValueError(f"empirical poses: {p}: values up to {np.abs(a).max():.1f} look like degrees; "
                         "pass degrees=True")
    return torch.from_numpy(a)


class Empirical(PoseSampler):
    """Rows drawn uniformly with replacement from a file of (pitch, yaw) radians (:func:`load_pose_rows`), plus
    Gaussian jitter of ``jitter`` degrees (a kernel density estimate; 0 = the rows themselves)."""

    def __init__(self, path=None, key: str | None = None, jitter=0.0, on: str = "head", degrees: bool = False,
                 rows=None):
        self.path, self.key, self.jitter, self.on = path, key, _pair(jitter, "jitter"), _check_on(on)
        self._rows = torch.as_tensor(rows, dtype=torch.float64).reshape(-1, 2) if rows is not None else \
            load_pose_rows(path, key, degrees)
        if len(self._rows) == 0:
            raise ValueError("empirical poses: no rows")

    def sample(self, n, generator):
        i = torch.randint(len(self._rows), (n,), generator=generator)
        out = self._rows[i]
        if max(self.jitter) > 0:
            out = out + torch.randn(n, 2, generator=generator, dtype=torch.float64) * \
                torch.tensor(self.jitter, dtype=torch.float64) * _DEG
        return out


class Source(PoseSampler):
    """Keep the source frame's normalized head pose: a pure re-render (:func:`sample_targets` fills it in)."""

    def sample(self, n, generator):
        return torch.full((n, 2), float("nan"), dtype=torch.float64)


class Cameras(PoseSampler):
    """The frame's real cameras (its cache ``views``) instead of drawn poses.

    ``cameras``: camera names to use (default: all of the frame's cameras, in their stored order), e.g.
    ``["cam00", "cam01"]``. ``order``: ``"sequential"`` (view k of a frame is camera k mod C: with
    ``views_per_frame = C`` a sample holds every camera once, in order; with ``views_per_frame = 1`` the camera
    is drawn uniformly) or ``"random"`` (every view draws a camera uniformly, with replacement).

    The head-pose label of camera m is computed, not drawn (:func:`camera_view_poses`); ``sample`` is not
    defined (``OnTheFlyGazeDataset`` selects cameras with :meth:`select`)."""

    def __init__(self, cameras=None, order: str = "sequential"):
        if order not in ("sequential", "random"):
            raise ValueError(f"cameras: order must be 'sequential' or 'random', got {order!r}")
        self.cameras = None if cameras is None else [str(c) for c in ([cameras] if isinstance(cameras, str)
                                                                       else cameras)]
        if self.cameras is not None and not self.cameras:
            raise ValueError("cameras: an empty camera list")
        self.order = order

    def sample(self, n, generator):
        raise ValueError("the 'cameras' target sampler renders the frames' stored cameras: use it through "
                         "OnTheFlyGazeDataset (it needs a cache whose frames have views, e.g. --source xgaze3d)")

    def select(self, allowed: torch.Tensor, views_per_frame: int, generator: torch.Generator) -> torch.Tensor:
        """Camera slots (n,) int64 for n = rows of ``allowed`` (n, C) bool (the usable slots of each row's frame;
        rows come in groups of ``views_per_frame`` views of one frame)."""
        n, C = allowed.shape
        counts = allowed.sum(1)
        if bool((counts == 0).any()):
            raise ValueError("target 'cameras': a frame has none of the requested cameras "
                             f"({self.cameras or 'any'}); the cache's frames need views (e.g. --source xgaze3d)")
        if self.order == "sequential" and views_per_frame > 1:
            k = torch.arange(n) % views_per_frame
        else:
            k = torch.floor(torch.rand(n, generator=generator, dtype=torch.float64) * counts).to(torch.int64)
        rank = k % counts  # the k-th allowed slot of each row
        cum = allowed.to(torch.int64).cumsum(1) - 1
        hit = allowed & (cum == rank[:, None])
        return hit.to(torch.int64).argmax(1)


def camera_view_poses(c: torch.Tensor, hR: torch.Tensor, R: torch.Tensor, t: torch.Tensor):
    """Normalized views of real cameras: (head-pose labels (..., 2), R_norm (..., 3, 3), V (..., 3, 3)).

    ``c`` (..., 3) face centre and ``hR`` (..., 3, 3) head rotation in the frame's camera; ``R``, ``t`` (..., 3, 3),
    (..., 3) that camera → camera m. Camera m sees ``fc_m = R·c + t``, ``hR_m = R·hR``; its normalization rotation
    is ``R_norm = [right; down; forward]`` of ETH-XGaze (``forward = fc_m/|fc_m|``, ``down = forward × hR_m[:, 0]``),
    the label ``(asin H[1,2], atan2(H[0,2], H[2,2]))`` of ``H = R_norm·hR_m``; ``V = R_norm·R`` maps the frame's
    camera to the normalized view (what the renderer applies)."""
    fc = (R @ c[..., None])[..., 0] + t
    hRm = R @ hR
    Rn = normalization_rotation(fc, hRm)
    return rotation_to_pitchyaw(Rn @ hRm), Rn, Rn @ R


_SAMPLERS = {"gaussian": Gaussian, "uniform": Uniform, "empirical": Empirical, "source": Source,
             "cameras": Cameras}


def sampler_spec(spec, where: str = "target") -> tuple[str, dict]:
    """``(name, constructor args)`` of a sampler spec — a name (``gaussian``, ``uniform``, ``source``, ``cameras``;
    defaults) or a dict ``{"type": name, **args}`` (the YAML form) — checked against the sampler's constructor
    signature without building it (no file is read): an unknown name or argument (a typo) is a ``ValueError``
    naming it and the arguments the sampler takes. Configs are checked with it when they are read."""
    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"{where}: expected a sampler name {sorted(_SAMPLERS)}, a dict with 'type', or a "
                         f"PoseSampler, got {spec!r}")
    args = dict(spec)
    kind = args.pop("type")
    if not isinstance(kind, str) or kind not in _SAMPLERS:
        raise ValueError(f"{where}: unknown sampler {kind!r}; choose one of {sorted(_SAMPLERS)}")
    params = list(inspect.signature(_SAMPLERS[kind]).parameters)
    unknown = [k for k in args if k not in params]
    if unknown:
        raise ValueError(f"{where}: unknown argument{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(k) for k in unknown)} for the {kind!r} sampler; it takes "
                         f"{', '.join(params) if params else 'no arguments'}")
    if kind == "empirical" and "path" not in args and "rows" not in args:
        raise ValueError(f"{where}: the empirical sampler needs 'path' (a .txt/.npy/.h5 file of (pitch, yaw) rows)")
    return kind, args


def make_sampler(spec) -> PoseSampler:
    """A sampler from a :class:`PoseSampler`, a name or a dict ``{"type": name, **constructor args}`` (see
    :func:`sampler_spec`), e.g. ``{"type": "gaussian", "std": 20, "on": "gaze"}``,
    ``{"type": "empirical", "path": "targets/EYEDIAP_CS_head_distribution.txt", "jitter": 2}``."""
    if isinstance(spec, PoseSampler):
        return spec
    kind, args = sampler_spec(spec)
    return _SAMPLERS[kind](**args)


def _wrap(a: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a + math.pi, 2 * math.pi) - math.pi


def rotation_angle(R: torch.Tensor) -> torch.Tensor:
    """Angle (radians) of rotation matrices (..., 3, 3)."""
    tr = R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2]
    return torch.acos(((tr - 1) / 2).clamp(-1.0, 1.0))


def head_pose_for_gaze(gaze_head: torch.Tensor, gaze_label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Head poses (..., 2) whose view shows the gaze label ``gaze_label`` (..., 2).

    ``gaze_head`` (..., 3) is the unit gaze in the head frame (``hRᵀ · g_src``); the view's gaze is
    ``Rot(p, y) · gaze_head`` with ``Rot = Ry(y)·Rx(−p)``. Solved in closed form: the x component is invariant under
    ``Rx``, which fixes ``y`` up to two roots; ``p`` then rotates the (y, z) part. Of the two solutions the one with
    the smaller head rotation from frontal is returned. Also returns ``ok`` (...,) False where no zero-roll head
    pose can show that gaze.
    """
    a = gaze_head
    b = pitchyaw_to_gaze(gaze_label)
    r = torch.hypot(b[..., 0], b[..., 2])
    psi = torch.atan2(b[..., 2], b[..., 0])
    ratio = a[..., 0] / r.clamp_min(1e-12)
    ok = ratio.abs() <= 1.0
    base = torch.acos(ratio.clamp(-1.0, 1.0))
    roots = []
    for sgn in (1.0, -1.0):  # the two roots (not samples)
        y = _wrap(sgn * base - psi)
        cy, sy = torch.cos(y), torch.sin(y)
        wy = b[..., 1]
        wz = sy * b[..., 0] + cy * b[..., 2]
        theta = torch.atan2(wz, wy) - torch.atan2(a[..., 2], a[..., 1])
        p = _wrap(-theta)
        cost = torch.acos((torch.cos(p) * torch.cos(y)).clamp(-1, 1))
        roots.append((torch.stack([p, y], dim=-1), cost))
    (first, cost0), (second, cost1) = roots
    return torch.where((cost1 < cost0)[..., None], second, first), ok


@dataclass
class TargetSample:
    """A batch of targets: ``head_pose`` (B, 2) the views' head-pose labels (radians, float64); ``drawn`` (B, 2)
    what the sampler drew (the head pose, or the gaze label in gaze mode; the source pose for ``Source``);
    ``rounds`` how many rejection rounds were needed."""

    head_pose: torch.Tensor
    drawn: torch.Tensor
    rounds: int


def sample_targets(sampler: PoseSampler, source_pose: torch.Tensor, gaze_head: torch.Tensor,
                   generator: torch.Generator, *, max_rotation_deg: float | None = 60.0,
                   max_head_pose_deg: float | None = 80.0, max_rounds: int = 64) -> TargetSample:
    """Draw one target per row of ``source_pose`` (B, 2) (the frames' normalized source head poses) with
    vectorized rejection sampling.

    A target is rejected when the rotation from the source normalized view to the new view,
    ``Rot(target)·Rot(source)ᵀ`` (= ``V·R_srcᵀ``, the batch's ``rotation_matrix``), is larger than
    ``max_rotation_deg`` (None: no limit), when the L2 norm of the head pose (pitch, yaw) exceeds
    ``max_head_pose_deg`` (MPII-NV's test ``‖hr‖·180/π > 80``; None: no limit), or (gaze mode) when no head
    pose gives the drawn gaze. Rejected rows are
    redrawn (only those), at most ``max_rounds`` rounds; then a ValueError names the sampler and the limits.
    """
    if isinstance(sampler, Cameras):
        sampler.sample(0, generator)  # raises: the stored cameras are selected by the dataset
    B = source_pose.shape[0]
    source_pose = source_pose.to(torch.float64).cpu()
    gaze_head = gaze_head.to(torch.float64).cpu()
    if isinstance(sampler, Source):
        return TargetSample(source_pose.clone(), source_pose.clone(), 0)
    head = torch.zeros(B, 2, dtype=torch.float64)
    drawn = torch.zeros(B, 2, dtype=torch.float64)
    todo = torch.arange(B)
    R_src = pitchyaw_to_rotation(source_pose)
    for rnd in range(1, max_rounds + 1):
        d = sampler.sample(len(todo), generator)
        if sampler.on == "gaze":
            h, ok = head_pose_for_gaze(gaze_head[todo], d)
        else:
            h, ok = d, torch.ones(len(todo), dtype=torch.bool)
        if max_rotation_deg is not None:
            rel = pitchyaw_to_rotation(h) @ R_src[todo].transpose(-1, -2)
            ok &= rotation_angle(rel) <= max_rotation_deg * _DEG
        if max_head_pose_deg is not None:
            ok &= h.norm(dim=1) <= max_head_pose_deg * _DEG  # MPII-NV: ‖(pitch, yaw)‖₂ in degrees
        head[todo[ok]] = h[ok]
        drawn[todo[ok]] = d[ok]
        todo = todo[~ok]
        if len(todo) == 0:
            return TargetSample(head, drawn, rnd)
    raise ValueError(f"target sampler {sampler!r}: {len(todo)} of {B} targets still violate the limits after "
                     f"{max_rounds} rounds (max_rotation_deg={max_rotation_deg}, max_head_pose_deg="
                     f"{max_head_pose_deg}); widen the limits or narrow the sampler")
