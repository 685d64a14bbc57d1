"""Batch stage: ``OnTheFlyGazeDataset``, an ``IterableDataset`` of rendered, exactly labelled normalized faces.

One straight line per batch: mesh cache (frames on the device, a :class:`~onthefly.structures.Frames`) → pose
sampler (:mod:`onthefly.poses`) → camera (:func:`onthefly.camera.view_from_head_pose`, one
:class:`~onthefly.camera.ViewTransform` for the mesh and the labels) → rasterizer/shader
(:mod:`onthefly.render`) → compositor (:mod:`onthefly.augment`) → labels → a
:class:`~onthefly.structures.GazeBatch`, whose ``as_dict()`` is the dict of tensors on the device that
:meth:`OnTheFlyGazeDataset.batch` returns. No files in between, no per-sample Python loops.

Determinism: batch ``i`` of epoch ``e`` is a pure function of ``(seed, e, i)``: its generator is seeded from
``numpy.random.SeedSequence([seed, e, i])`` and its frames are samples ``i·B … (i+1)·B − 1`` of the epoch's
frame permutation (seeded from ``(seed, e)``, a fresh permutation for every pass over the frames). Each global rank
and DataLoader worker takes every ``world·workers``-th batch index (shard ``rank·workers + worker``), so ranks and
workers get disjoint batches and, within a pass over the frames, disjoint frames; the union over shards is the same
whatever the number of ranks and workers. Rank and world size come from ``torch.distributed`` when it is
initialized, else the ``RANK`` / ``WORLD_SIZE`` environment variables, else 0 / 1 (Lightning does not shard
IterableDatasets: this dataset does).

Use ``DataLoader(ds, batch_size=None, num_workers=0)`` (the batches are already whole). With a CUDA device the
dataset must run in the main process (no CUDA in forked workers): ``num_workers > 0`` raises. Frames are loaded
lazily, on the first batch, in the process that iterates.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from .augment import Appearance, AppearanceParams
from .cache import MeshCache
from .camera import project_points, view_from_head_pose
from .checks import trusted
from .geometry import gaze_to_pitchyaw, pitchyaw_to_rotation
from .normalization import get_camera
from .poses import Cameras, TargetSample, make_sampler, sample_targets
from .reconstruct.contour import OUTLINE, ibug_outline
from .reconstruct.eyes import EYE_SHAPES, eye_geometry
from .render import render, tune_malloc
from .structures import BATCH_KEYS, Frames, GazeBatch

__all__ = ["OnTheFlyGazeDataset", "distributed_info", "batch_generator", "BATCH_KEYS", "IMAGENET_MEAN",
           "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def distributed_info() -> tuple[int, int]:
    """(global rank, world size): ``torch.distributed`` when initialized, else env ``RANK``/``WORLD_SIZE``, else
    (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise ValueError("RANK / WORLD_SIZE environment variables must be integers") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad RANK={rank} / WORLD_SIZE={world}")
    return rank, world


def batch_generator(*key: int) -> torch.Generator:
    """A CPU generator seeded by a hash mix (``numpy.random.SeedSequence``) of the integers ``key``."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, np.uint64)
    return torch.Generator().manual_seed(int(state[0]) & ((1 << 63) - 1))


def _split_subjects(subjects: list[str], split, val_subjects, val_fraction: float, split_seed: int) -> list[str]:
    if split is None:
        return subjects
    if split not in ("train", "val"):
        raise ValueError(f"split: expected None, 'train' or 'val', got {split!r}")
    if val_subjects is not None:
        val = set(val_subjects)
        unknown = val - set(subjects)
        if unknown:
            raise ValueError(f"val_subjects: not in the cache: {sorted(unknown)[:5]}")
    else:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction: expected 0 < f < 1, got {val_fraction}")
        n_val = max(1, round(len(subjects) * val_fraction))
        if n_val >= len(subjects):
            raise ValueError(f"split: {len(subjects)} subject(s) cannot be split with val_fraction={val_fraction}")
        order = np.random.default_rng(split_seed).permutation(len(subjects))
        val = {sorted(subjects)[i] for i in order[:n_val]}
    out = [s for s in subjects if (s in val) == (split == "val")]
    if not out:
        raise ValueError(f"split {split!r}: no subjects left")
    return out


class OnTheFlyGazeDataset(IterableDataset):
    """Normalized face images rendered at sampled head poses from a mesh cache, with exact labels.

    Args:
        cache: path of a mesh cache (``onthefly reconstruct``), or an open :class:`~onthefly.cache.MeshCache`
            (then the dataset must be iterated in the process that opened it).
        batch_size: samples per batch (frames per batch when ``views_per_frame > 1``).
        seed: the seed every batch derives from.
        device: where frames live and batches are rendered (default: ``"cuda"`` when available, else ``"cpu"``).
        camera: normalized-camera preset (``xgaze224``, ``xgaze448``) or a ``NormalizedCamera``.
        target: pose sampler: a name (``gaussian``, ``uniform``, ``source``), a dict ``{"type": ..., ...}``
            (``empirical`` needs ``path``) or a :class:`~onthefly.poses.PoseSampler`; default
            ``{"type": "gaussian", "std": 20}`` on the head pose (MPII-NV's σ).
        appearance: preset name (``default``, ``plain``, ``mpii-nv``, ``xgaze3d``), a dict of
            :class:`~onthefly.augment.Appearance` arguments (``preset`` plus overrides) or an ``Appearance``.
        background_dir: folder of background images (Places365 ``val_256``), passed to the appearance.
        views_per_frame: K views of the same frame per sample; K > 1 gives (B, K, ...) tensors and
            ``relative_rotation`` (B, K, K, 3, 3), ``R_ij = V_j · V_iᵀ`` (view i → view j).
        epoch_length: batches per epoch over all ranks (default: one pass over the frames, ``ceil(N / B)``),
            rounded up to a multiple of the world size so every rank yields the same number.
        subjects: restrict to these subject ids. ``split`` (``"train"``/``"val"``) then keeps the subjects
            outside / inside the validation set: ``val_subjects`` (a list), or a fraction ``val_fraction`` of
            them chosen with ``split_seed``.
        max_rotation_deg: visibility limit: targets that rotate the head more than this away from the source
            view (the angle of ``rotation_matrix``) are resampled; None disables (360° meshes).
        max_head_pose_deg: head poses whose (pitch, yaw) L2 norm exceeds this are resampled (MPII-NV's 80°).
        max_rounds: rejection rounds before a clear error.
        image_format: ``"unit"`` (RGB float in [0, 1]) or ``"imagenet"`` (ImageNet mean/std normalized).
        ssaa: render at ``ssaa``× resolution and average (anti-aliasing; 1 = off).
        shared_appearance: with ``views_per_frame > 1``, the K views of a frame share one background, light and
            jitter draw (MPII-NV uses one background, colour and ambient for all views of a source).
        cull_backfaces: skip faces turned away from the camera before rasterizing. Exact (the same image) for
            closed, outward-oriented meshes such as the procedural heads, and faster to render (the rasterizer's
            cost is dominated by the faces at low resolution; figures in ``docs/dataset.md``); off by default
            because a mesh with inconsistent winding (some scans) would lose visible faces.
        tune_malloc: on CPU, call :func:`onthefly.render.tune_malloc` once in the iterating process before the
            first batch (default ``None`` = yes on CPU, no on CUDA). Rendering allocates and frees tens of MB per
            batch; with glibc's default thresholds every batch page-faults its working set back in (measured
            with ``benchmarks/dataset.py``: ``docs/dataset.md``).
            It changes process-wide allocator thresholds (``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``); pass
            ``False`` to leave the allocator alone.

    Batches are dicts with the keys :data:`BATCH_KEYS` (documented in ``docs/dataset.md``) plus the ``param_*``
    appearance parameters (:meth:`gaze_batch` gives the same batch typed: a
    :class:`~onthefly.structures.GazeBatch`). ``mask`` (B,1,H,W) is the **face mask** (MPII-NV's ``face_mask``:
    brows to chin between the face contours, no hair, ears or neck) when the cache stores face regions
    (``vert_face_region``; frames without one count as all face), else the coverage; ``coverage`` (B,1,H,W) is
    always the coverage of the whole rendered mesh (what the background is composited against). Both are
    fractional at edges with ``ssaa > 1``.
    """

    def __init__(self, cache, batch_size: int = 32, seed: int = 0, device=None, *,
                 camera="xgaze224", target=None, appearance="default", background_dir=None,
                 views_per_frame: int = 1, epoch_length: int | None = None, subjects=None, split=None,
                 val_subjects=None, val_fraction: float = 0.2, split_seed: int = 0,
                 max_rotation_deg: float | None = 60.0, max_head_pose_deg: float | None = 80.0,
                 max_rounds: int = 64, image_format: str = "unit", ssaa: int = 1,
                 shared_appearance: bool = False, tune_malloc: bool | None = None, cull_backfaces: bool = False):
        super().__init__()
        for name, v, lo in (("batch_size", batch_size, 1), ("views_per_frame", views_per_frame, 1),
                            ("ssaa", ssaa, 1), ("max_rounds", max_rounds, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
        if image_format not in ("unit", "imagenet"):
            raise ValueError(f"image_format: expected 'unit' or 'imagenet', got {image_format!r}")
        if epoch_length is not None and (not isinstance(epoch_length, (int, np.integer)) or epoch_length < 1):
            raise ValueError(f"epoch_length: expected a positive int or None, got {epoch_length!r}")
        self.batch_size, self.seed, self.views_per_frame = int(batch_size), int(seed), int(views_per_frame)
        self.device = torch.device(device if device is not None else "cuda" if torch.cuda.is_available() else "cpu")
        self.camera = get_camera(camera)
        self.sampler = make_sampler({"type": "gaussian", "std": 20.0} if target is None else target)
        if isinstance(appearance, Appearance):
            self.appearance = appearance
        else:
            args = {"preset": appearance} if isinstance(appearance, str) else dict(appearance or {})
            if background_dir is not None:
                args.setdefault("background_dir", background_dir)
            self.appearance = Appearance(**args)
        self.max_rotation_deg, self.max_head_pose_deg = max_rotation_deg, max_head_pose_deg
        self.max_rounds, self.image_format, self.ssaa = int(max_rounds), image_format, int(ssaa)
        self.shared_appearance = bool(shared_appearance)
        self.cull_backfaces = bool(cull_backfaces)
        self.tune_malloc = (self.device.type == "cpu") if tune_malloc is None else bool(tune_malloc)
        self.epoch = 0
        # cheap validation now (open, read the subject list, close: nothing survives into forked workers)
        if isinstance(cache, MeshCache):
            self._cache_obj, self.cache_path = cache, Path(cache.path) if hasattr(cache, "path") else None
            mc, close = cache, False
        else:
            p = Path(cache)
            if not p.is_file():
                raise ValueError(f"cache: file not found: {p} (build one with `onthefly reconstruct --out {p}`)")
            self._cache_obj, self.cache_path = None, p
            mc, close = MeshCache(p), True
        try:
            if len(mc) == 0:
                raise ValueError(f"cache {self.cache_path}: has no frames")
            all_subjects = list(mc.subjects)
            if subjects is not None:
                subjects = [subjects] if isinstance(subjects, str) else list(subjects)
                missing = [s for s in subjects if s not in all_subjects]
                if missing:
                    raise ValueError(f"subjects: not in the cache: {missing[:5]} (it has {all_subjects[:5]}...)")
            chosen = _split_subjects(subjects or all_subjects, split, val_subjects, val_fraction, split_seed)
            self.subjects = chosen
            self.n_frames = int(len(mc.indices(chosen)))
        finally:
            if close:
                mc.close()
        if self.n_frames == 0:
            raise ValueError(f"cache {self.cache_path}: no frames for subjects {chosen[:5]}")
        self._epoch_length = epoch_length
        self._loaded: Frames | None = None  # the frames on the device (loaded on first use)
        self._view_allowed: torch.Tensor | None = None  # (n, C) real-camera slots the ``cameras`` sampler may draw
        self._K: torch.Tensor | None = None
        self._perm_cache: dict = {}
        #: set to a dict to accumulate seconds per stage (``benchmarks/dataset.py``); None: no timing
        self.stage_times: dict | None = None

    def _tick(self, stage: str, t0: float) -> float:
        """Add the time since ``t0`` to ``stage`` (synchronizing CUDA) when timing is on; returns now."""
        if self.stage_times is None:
            return t0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t = time.perf_counter()
        self.stage_times[stage] = self.stage_times.get(stage, 0.0) + t - t0
        return t

    # ------------------------------------------------------------------------------------------- set-up
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of the next iteration (batches depend on it).

        Each ``iter(ds)`` uses ``ds.epoch`` and then advances it by one, so successive epochs differ without any
        call; this happens in the iterating process, so with non-persistent DataLoader workers (fresh copies every
        epoch) call ``set_epoch(e)`` at the start of every epoch (Lightning does not do it for IterableDatasets)."""
        self.epoch = int(epoch)

    def epoch_length(self, world_size: int | None = None) -> int:
        """Batches per epoch over all ranks (a multiple of the world size)."""
        world = distributed_info()[1] if world_size is None else world_size
        n = self._epoch_length or math.ceil(self.n_frames / self.batch_size)
        return math.ceil(n / world) * world

    def __len__(self) -> int:
        """Batches this rank yields per epoch (all its workers together)."""
        return self.epoch_length() // distributed_info()[1]

    def _load(self) -> Frames:
        """The frames (:class:`~onthefly.structures.Frames`), loaded onto the device on first use."""
        if self._loaded is not None:
            return self._loaded
        if self.device.type == "cuda" and get_worker_info() is not None:
            raise RuntimeError("OnTheFlyGazeDataset on a CUDA device must be iterated in the main process: use "
                               "DataLoader(ds, batch_size=None, num_workers=0) (no CUDA in worker processes)")
        if self.tune_malloc:
            tune_malloc()
        cameras = isinstance(self.sampler, Cameras)
        mc = self._cache_obj or MeshCache(self.cache_path)
        try:
            # real-camera labels (to 1e-6 rad) need the stored float64 rotations and centres
            frames = mc.load_frames(self.subjects, device=self.device,
                                    label_dtype=torch.float64 if cameras else None, views=cameras)
        finally:
            if self._cache_obj is None:
                mc.close()
        self._view_allowed = frames.views.allowed(self.sampler.cameras) \
            if isinstance(self.sampler, Cameras) and frames.views is not None else None
        self._K = self.camera.K(dtype=torch.float32, device=self.device)
        self.appearance.setup((self.camera.height, self.camera.width), self.device)
        self._loaded = frames
        return frames

    # ------------------------------------------------------------------------------------------- sampling
    def _frames(self, epoch: int, index: int) -> torch.Tensor:
        """Local frame indices (B,) of batch ``index``: samples of the epoch's concatenated permutations."""
        N, B = self.n_frames, self.batch_size
        j = torch.arange(index * B, (index + 1) * B)
        cyc = j // N
        out = torch.empty(B, dtype=torch.int64)
        for cy in torch.unique(cyc).tolist():  # one or two passes over the frames per batch, not samples
            key = (epoch, cy)
            if key not in self._perm_cache:
                if len(self._perm_cache) > 8:
                    self._perm_cache.clear()
                self._perm_cache[key] = torch.randperm(N, generator=batch_generator(self.seed, epoch, cy, 0x70))
            sel = cyc == cy
            out[sel] = self._perm_cache[key][j[sel] % N]
        return out

    def sample_parameters(self, index: int, epoch: int | None = None) -> dict:
        """Everything batch ``index`` of ``epoch`` draws (frames, targets, appearance), before any rendering."""
        fs = self._load()
        epoch = self.epoch if epoch is None else int(epoch)
        gen = batch_generator(self.seed, epoch, index)
        frames = self._frames(epoch, index).repeat_interleave(self.views_per_frame)
        camera = None
        if isinstance(self.sampler, Cameras):  # the frames' real cameras: labels computed, not drawn
            assert self._view_allowed is not None and fs.views is not None  # _load read the cameras
            camera = self.sampler.select(self._view_allowed[frames], self.views_per_frame, gen)
            pose = fs.views.head_pose_cpu[frames, camera]
            tgt = TargetSample(pose, pose.clone(), 0)
        else:
            with trusted():  # the loaded frames' own labels (checked by the cache loader)
                tgt = sample_targets(self.sampler, fs.labels.source_head_pose_cpu[frames],
                                     fs.labels.gaze_head_cpu[frames], gen, max_rotation_deg=self.max_rotation_deg,
                                     max_head_pose_deg=self.max_head_pose_deg, max_rounds=self.max_rounds)
        size = (self.camera.height, self.camera.width)
        if self.shared_appearance and self.views_per_frame > 1:
            app = self.appearance.sample(len(frames) // self.views_per_frame, gen, size)
            app = AppearanceParams(**{k: v.repeat_interleave(self.views_per_frame, 0)
                                      for k, v in app.as_dict().items()})
        else:
            app = self.appearance.sample(len(frames), gen, size)
        return {"frames": frames, "head_pose": tgt.head_pose, "drawn": tgt.drawn, "appearance": app,
                "camera": camera, "epoch": epoch, "index": index}

    def frame_ids(self, frame_index) -> list[tuple[str, str, str]]:
        """(subject, frame, camera) id strings of a batch's ``frame_index`` entries (flattened)."""
        ids = self._load().ids
        return [ids[int(k)] for k in torch.as_tensor(frame_index).reshape(-1).tolist()]

    def sample_labels(self, index: int, epoch: int | None = None) -> dict[str, torch.Tensor]:
        """Labels of batch ``index`` without rendering (CPU, float64): ``head_pose``, ``gaze`` (B·K, 2),
        ``frames`` (local indices); e.g. to plot the sampled distributions quickly."""
        p = self.sample_parameters(index, epoch)
        gh = self._load().labels.gaze_head_cpu[p["frames"]]
        with trusted():  # the sampled targets and the frames' unit gaze directions
            g = (pitchyaw_to_rotation(p["head_pose"]) @ gh[..., None])[..., 0]
            gaze = gaze_to_pitchyaw(g)
        return {"head_pose": p["head_pose"], "gaze": gaze, "frames": p["frames"]}

    def batch(self, index: int, epoch: int | None = None) -> dict[str, torch.Tensor]:
        """Batch ``index`` of ``epoch`` (default: the current epoch): a pure function of (seed, epoch, index)."""
        return self.gaze_batch(index, epoch).as_dict()

    def gaze_batch(self, index: int, epoch: int | None = None) -> GazeBatch:
        """:meth:`batch` typed: a :class:`~onthefly.structures.GazeBatch` (its ``as_dict()`` is the batch)."""
        t0 = time.perf_counter()
        p = self.sample_parameters(index, epoch)
        self._tick("sample", t0)
        return self.render(p["frames"], p["head_pose"], p["appearance"], camera=p["camera"],
                           views=self.views_per_frame, record=(p["drawn"], p["epoch"], p["index"]))

    def replay(self, batch: dict) -> dict[str, torch.Tensor]:
        """Render a batch again from its ``frame_index``, ``target_pose`` and ``param_*`` entries."""
        cache_index = self._load().labels.index
        K = self.views_per_frame
        flat = {k: (v.reshape(-1, *v.shape[2:]) if K > 1 and torch.is_tensor(v) and v.dim() >= 2 else v)
                for k, v in batch.items()}
        lut = torch.full((int(cache_index.max()) + 1,), -1, dtype=torch.int64, device=self.device)
        lut[cache_index] = torch.arange(len(cache_index), device=self.device)
        frames = lut[flat["frame_index"].to(self.device)].cpu()
        if bool((frames < 0).any()):
            raise ValueError("replay: frame_index not loaded by this dataset (other subjects?)")
        app = AppearanceParams.from_dict({k: v.cpu() for k, v in flat.items()}, prefix="param_")
        cam = flat.get("camera_index")
        cam = None if cam is None or bool((cam < 0).all()) else cam.cpu()
        return self.render(frames, flat["target_pose"].double().cpu(), app, camera=cam, views=K).as_dict()

    # ------------------------------------------------------------------------------------------- rendering
    def render(self, frames: torch.Tensor, head_pose: torch.Tensor, app: AppearanceParams, camera=None, *,
               views: int = 1, record=None) -> GazeBatch:
        """Render local frames (n,) at head poses (n, 2) (radians) with appearance parameters: a flat batch.

        ``camera`` (n,) int64: the frames' real-camera slots of the views (``cameras`` sampler; ``head_pose`` is
        then that camera's label) or None; ``face_mat_norm`` is then that camera's normalization rotation.
        ``views``: rows ``k·views … (k+1)·views − 1`` are the views of sample k (the batch dict is then
        (B, views, ...)); ``record``: ``(drawn, epoch, index)`` of a sampled batch (its ``drawn_target``,
        ``epoch`` and ``batch_index``), None for a re-render.

        The hot path: every stage is called inside :func:`onthefly.checks.trusted` (the frames were checked by the
        cache loader, the targets drawn or replayed by this dataset), so their value checks are skipped."""
        fs = self._load()
        with trusted():
            return self._render(fs, frames, head_pose, app, camera, views, record)

    def _render(self, fs: Frames, frames: torch.Tensor, head_pose: torch.Tensor, app: AppearanceParams, camera,
                views: int, record) -> GazeBatch:
        t0 = time.perf_counter()
        dev, cam, n = self.device, self.camera, len(frames)
        assert self._K is not None  # set by _load
        fr = frames.to(dev)
        hp = head_pose.to(dev, torch.float64)
        app_d = app.to(dev)
        # camera: one view transform for the mesh and the labels
        view = view_from_head_pose(hp, fs.labels.face_centre[fr], float(cam.distance),
                                   head_rotation=fs.labels.head_rotation[fr])
        verts = view.apply_mesh(fs.verts_padded[fr])
        t0 = self._tick("camera", t0)
        # renderer: the face-region flag is an extra interpolated channel, its coverage the face mask
        res = render(verts, fs.topologies.select(fr), self._K.expand(n, 3, 3), (cam.height, cam.width),
                     textures=fs.textures.select(fr), lights=self.appearance.lights(app_d),
                     material=self.appearance.material(n, dev), background=None, ssaa=self.ssaa,
                     cull_backfaces=self.cull_backfaces,
                     channels=None if fs.face_region is None else fs.face_region[fr])
        mask = res.mask if res.channels is None else res.channel_mask(0)
        t0 = self._tick("render", t0)
        # compositor: backgrounds against the whole mesh's coverage, photometric jitter, image format
        image = self.appearance.composite(res.image, res.mask, app_d, face=mask)
        t0 = self._tick("background", t0)
        image = self.appearance.jitter(image, app_d)
        if self.image_format == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN, device=dev, dtype=image.dtype).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=dev, dtype=image.dtype).view(1, 3, 1, 1)
            image = (image - mean) / std
        t0 = self._tick("jitter", t0)
        labels = self._labels(fs, frames, fr, hp, view, verts, camera)
        drawn = epoch = index = None
        if record is not None:
            drawn = record[0].to(dev, torch.float32)
            epoch = torch.full((n,), record[1], dtype=torch.int64, device=dev)
            index = torch.full_like(epoch, record[2])
        out = GazeBatch(image=image, mask=mask, coverage=res.mask, **labels, drawn_target=drawn, epoch=epoch,
                        batch_index=index, appearance=app_d, view_rotation=view.R, views_per_frame=views)
        self._tick("labels", t0)
        return out

    def _labels(self, fs: Frames, frames, fr, hp, view, verts, camera) -> dict:
        """The views' labels (float64 maths, float32 out), :class:`~onthefly.structures.GazeBatch` fields:
        ``frames`` (n,) local frame indices on the host, ``fr`` the same on the device, ``hp`` (n, 2) float64 the
        head poses, ``view`` their :class:`~onthefly.camera.ViewTransform`, ``verts`` the mesh in the views."""
        lab, dev, f32, n = fs.labels, self.device, torch.float32, len(fr)
        g = view.apply_directions(lab.gaze_direction[fr])
        lm3 = view.apply(lab.landmarks[fr])
        K64 = self.camera.K(dtype=torch.float64, device=dev)
        lm2_fixed = project_points(lm3, K64)
        lm2 = lm2_fixed.clone()
        ct = fs.topologies.contour[fr]
        any_ct = bool(ct.any())  # one host read per batch, for both labels below
        if any_ct:  # iBUG semantics: the jaw (and a hidden brow end) on the rendered outline (reconstruct.contour)
            pts, on = ibug_outline(verts[ct], pitchyaw_to_rotation(hp[ct]), K64)
            sub = lm2[ct]
            sub[:, OUTLINE] = torch.where(on[..., None], project_points(pts, K64), sub[:, OUTLINE])
            lm2[ct] = sub
        # eye geometry (onthefly.reconstruct.eyes): NaN for frames of other topologies
        eyes = {k: torch.full((n, *shape), float("nan"), dtype=torch.float64, device=dev)
                for k, shape in EYE_SHAPES.items()}
        if any_ct:
            tgt_view = view.apply(lab.gaze_target[fr][:, None])[:, 0]
            e = eye_geometry(verts[ct], tgt_view[ct], g[ct], K64)
            for k in EYE_SHAPES:
                eyes[k][ct] = e[k]
        fmn = view.R
        cam_index = torch.full((n,), -1, dtype=torch.int64, device=dev)
        if camera is not None:  # real cameras: face_mat_norm = that camera -> its normalized view (ETH-XGaze)
            assert fs.views is not None  # the cameras sampler loads the frames' cameras
            cam_index = camera.to(dev)
            fmn = fs.views.rotation[fr, cam_index]
        return dict(gaze=gaze_to_pitchyaw(g).to(f32), head_pose=hp.to(f32), gaze_vector=g.to(f32),
                    face_mat_norm=fmn.to(f32),
                    rotation_matrix=(view.R @ lab.source_rotation[fr].transpose(-1, -2)).to(f32),
                    landmarks_2d=lm2.to(f32), landmarks_2d_fixed=lm2_fixed.to(f32), landmarks_3d=lm3.to(f32),
                    frame_index=lab.index[fr], subject_index=lab.subject_index[fr], target_pose=hp.clone(),
                    source_head_pose=lab.source_head_pose_cpu[frames].to(dev, f32), camera_index=cam_index,
                    eyes={k: v.to(f32) for k, v in eyes.items()})

    # ------------------------------------------------------------------------------------------- iteration
    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.device.type == "cuda" and info is not None:
            raise RuntimeError("OnTheFlyGazeDataset on a CUDA device must be iterated in the main process: use "
                               "DataLoader(ds, batch_size=None, num_workers=0) (no CUDA in worker processes)")
        rank, world = distributed_info()
        self._load()
        shard, n_shards = rank * nw + wid, world * nw
        epoch = self.epoch
        self.epoch = epoch + 1  # the next iteration is the next epoch unless set_epoch() says otherwise
        for i in range(shard, self.epoch_length(world), n_shards):
            yield self.batch(i, epoch)
