"""Batch stage: ``OnTheFlyGazeDataset``, an ``IterableDataset`` of rendered, exactly labelled normalized faces.

One straight line per batch: mesh cache (frames on the device) → pose sampler (:mod:`onthefly.poses`) → camera
(:func:`onthefly.camera.novel_view`) → rasterizer/shader (:mod:`onthefly.render`) → compositor
(:mod:`onthefly.augment`) → labels → a dict of tensors on the device. No files in between, no per-sample Python
loops.

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
from torch.utils.data import IterableDataset, get_worker_info

from .augment import Appearance, AppearanceParams
from .camera import novel_view, project_points
from .geometry import _gaze_to_pitchyaw, _pitchyaw_to_rotation, rotation_to_pitchyaw
from .normalization import _normalization_rotation, get_camera
from .poses import Cameras, TargetSample, camera_view_poses, make_sampler, sample_targets

__all__ = ["OnTheFlyGazeDataset", "distributed_info", "batch_generator", "BATCH_KEYS", "IMAGENET_MEAN",
           "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: keys of a batch (besides the ``param_*`` appearance parameters); see :class:`OnTheFlyGazeDataset`
BATCH_KEYS = ("image", "mask", "coverage", "gaze", "head_pose", "gaze_vector", "face_mat_norm",
              "rotation_matrix", "landmarks_2d", "landmarks_2d_fixed", "landmarks_3d", "frame_index",
              "subject_index", "target_pose", "drawn_target", "source_head_pose", "camera_index", "epoch",
              "batch_index", "eyeball_centres_3d", "eyeball_centres_2d", "iris_centres_3d", "iris_centres_2d",
              "iris_contours_3d", "iris_contours_2d")


def distributed_info() -> tuple[int, int]:
    """(global rank, world size): ``torch.distributed`` when initialized, else env ``RANK``/``WORLD_SIZE``, else
    (0, 1)."""
    import torch.distributed as dist

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
    appearance parameters. ``mask`` (B,1,H,W) is the **face mask** (MPII-NV's ``face_mask``: brows to chin between
    the face contours, no hair, ears or neck) when the cache stores face regions (``vert_face_region``; frames
    without one count as all face), else the coverage; ``coverage`` (B,1,H,W) is always the coverage of the whole
    rendered mesh (what the background is composited against). Both are fractional at edges with ``ssaa > 1``.
    """

    def __init__(self, cache, batch_size: int = 32, seed: int = 0, device=None, *,
                 camera="xgaze224", target=None, appearance="default", background_dir=None,
                 views_per_frame: int = 1, epoch_length: int | None = None, subjects=None, split=None,
                 val_subjects=None, val_fraction: float = 0.2, split_seed: int = 0,
                 max_rotation_deg: float | None = 60.0, max_head_pose_deg: float | None = 80.0,
                 max_rounds: int = 64, image_format: str = "unit", ssaa: int = 1,
                 shared_appearance: bool = False, tune_malloc: bool | None = None, cull_backfaces: bool = False):
        super().__init__()
        from .cache import MeshCache

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
        self._state = None
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

    def _load(self):
        if self._state is not None:
            return self._state
        from .cache import MeshCache

        if self.device.type == "cuda" and get_worker_info() is not None:
            raise RuntimeError("OnTheFlyGazeDataset on a CUDA device must be iterated in the main process: use "
                               "DataLoader(ds, batch_size=None, num_workers=0) (no CUDA in worker processes)")
        if self.tune_malloc:
            from .render import tune_malloc

            tune_malloc()
        mc = self._cache_obj or MeshCache(self.cache_path)
        try:
            # real-camera labels (to 1e-6 rad) need the stored float64 rotations and centres
            pf = mc.load(self.subjects, device=self.device,
                         label_dtype=torch.float64 if isinstance(self.sampler, Cameras) else None)
        finally:
            if self._cache_obj is None:
                mc.close()
        use_uv = not bool(pf.has_vertex_colors.all())
        if use_uv and not bool((pf.texture_id >= 0).all()):
            raise ValueError(f"cache {self.cache_path}: mixes frames with only vertex colours and frames with only "
                             "UV textures; select subjects of one kind")
        dev, f64 = self.device, torch.float64
        n = len(pf)
        counts = pf.vert_offsets.diff()
        Vmax = int(counts.max())
        c = pf.face_centre.to(f64)
        hR = pf.head_rotation.to(f64)
        # float32 vertices relative to their face centre, padded to the largest topology
        f32 = torch.float32
        # face region (n, V, 1) float32 flags (None: no loaded frame has one, the mask is the coverage)
        has_face = pf.vert_face_region is not None
        if bool((counts == Vmax).all()):
            verts = pf.verts.view(n, Vmax, 3).to(f32) - c.to(f32)[:, None]
            colors = pf.vert_colors.view(n, Vmax, 3)
            face = pf.vert_face_region.view(n, Vmax, 1).to(f32) if has_face else None
        else:
            verts = torch.zeros(n, Vmax, 3, dtype=f32, device=dev)
            colors = torch.zeros(n, Vmax, 3, dtype=torch.uint8, device=dev)
            local = torch.arange(len(pf.verts), device=dev) - pf.vert_offsets[pf.vert_frame]
            verts[pf.vert_frame, local] = pf.verts.to(f32) - c.to(f32)[pf.vert_frame]
            colors[pf.vert_frame, local] = pf.vert_colors
            face = None
            if has_face:
                face = torch.zeros(n, Vmax, 1, dtype=f32, device=dev)
                face[pf.vert_frame, local, 0] = pf.vert_face_region.to(f32)
        verts = verts.contiguous()
        if len(pf.faces) == 1:
            faces, faces_pad = pf.faces[0], None
        else:
            Fmax = max(len(f) for f in pf.faces)
            faces_pad = torch.full((len(pf.faces), Fmax, 3), -1, dtype=torch.int64, device=dev)
            for t, f in enumerate(pf.faces):  # once per topology, at load
                faces_pad[t, :len(f)] = f
            faces = None
        uv_tex = self._uv_textures(pf) if use_uv else None
        g = pf.gaze_direction.to(f64)
        g = g / g.norm(dim=-1, keepdim=True)
        R_src = _normalization_rotation(c, hR)
        src_pose = rotation_to_pitchyaw(R_src @ hR)
        subj_of = {s: i for i, s in enumerate(self.subjects)}
        views = self._views(pf, c, hR) if isinstance(self.sampler, Cameras) else {}
        from .reconstruct.contour import is_contour_topology  # iBUG jaw labels: topologies with contour lines
        contour = torch.tensor([is_contour_topology(f) for f in pf.faces], device=dev)[pf.topology_id]
        self._state = dict(**views,
            verts=verts, colors=None if use_uv else colors, face=face, uv=uv_tex, texture_id=pf.texture_id, faces=faces,
            faces_pad=faces_pad, topology=pf.topology_id, contour=contour,
            hR=hR, c=c, g=g, lm=pf.landmarks.to(f64), R_src=R_src, target=pf.gaze_target.to(f64),
            src_pose_cpu=src_pose.cpu(), gaze_head_cpu=(hR.transpose(-1, -2) @ g[..., None])[..., 0].cpu(),
            cache_index=pf.index, subject_index=torch.tensor([subj_of[s] for s in pf.subject], device=dev),
            K=self.camera.K(dtype=torch.float32, device=dev),
            ids={int(k): (s, f, cm) for k, s, f, cm in zip(pf.index.tolist(), pf.subject, pf.frame, pf.camera)})
        self.appearance.setup((self.camera.height, self.camera.width), dev)
        return self._state

    def _views(self, pf, c, hR) -> dict:
        """The frames' real cameras for the ``cameras`` sampler: per frame and camera slot (padded to the most
        cameras of a frame) the head-pose label, the normalization rotation and which slots may be drawn."""
        if pf.view_offsets is None:
            raise ValueError(f"cache {self.cache_path}: target 'cameras' needs frames with stored cameras (views), "
                             "e.g. a cache built with --source xgaze3d; this cache has none")
        dev, f64 = self.device, torch.float64
        n = len(pf)
        counts = pf.view_offsets.diff()
        C = int(counts.max())
        R = torch.eye(3, dtype=f64, device=dev).repeat(n, C, 1, 1)
        t = torch.zeros(n, C, 3, dtype=f64, device=dev)
        frame = torch.repeat_interleave(torch.arange(n, device=dev), counts)
        slot = torch.arange(len(frame), device=dev) - pf.view_offsets[frame]
        R[frame, slot] = pf.view_R.to(f64)
        t[frame, slot] = pf.view_t.to(f64)
        pose, Rn, _ = camera_view_poses(c[:, None], hR[:, None], R, t)
        want = self.sampler.cameras
        allowed = torch.zeros(n, C, dtype=torch.bool)
        for i, names in enumerate(pf.view_names):  # once per frame, at load
            for k, name in enumerate(names):
                allowed[i, k] = want is None or name in want
        return {"view_pose_cpu": pose.cpu(), "view_Rn": Rn, "view_allowed_cpu": allowed,
                "view_names": pf.view_names}

    @staticmethod
    def _uv_textures(pf):
        """(maps (X,Ht,Wt,3) uint8, verts_uvs (X or 1,T,2), faces_uvs (F,3) or (X,F,3)) for UV-textured frames.

        Maps of different sizes are resized (bilinear, once) to the largest; each texture's UVs are those of the
        topology of the frames using it (padded per texture when there are several topologies)."""
        import torch.nn.functional as Fnn

        dev = pf.verts.device
        Ht = max(int(t.shape[0]) for t in pf.textures)
        Wt = max(int(t.shape[1]) for t in pf.textures)
        maps = torch.stack([t if tuple(t.shape[:2]) == (Ht, Wt) else Fnn.interpolate(
            t.permute(2, 0, 1)[None].float(), size=(Ht, Wt), mode="bilinear", align_corners=True)[0]
            .round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0) for t in pf.textures])
        topo_of_tex = torch.full((len(pf.textures),), -1, dtype=torch.int64, device=dev)
        topo_of_tex[pf.texture_id] = pf.topology_id
        if bool((topo_of_tex[pf.texture_id] != pf.topology_id).any()):
            raise ValueError("cache: a texture is shared by frames of different topologies; not supported")
        if len(pf.faces) == 1:
            return maps, pf.uv[0][None], pf.faces_uv[0]
        Tmax = max(len(u) for u in pf.uv if u is not None)
        Fmax = max(len(f) for f in pf.faces)
        vuv = torch.zeros(len(maps), Tmax, 2, dtype=torch.float32, device=dev)
        fuv = torch.zeros(len(maps), Fmax, 3, dtype=torch.int64, device=dev)
        for x, t in enumerate(topo_of_tex.tolist()):  # once per texture, at load
            vuv[x, :len(pf.uv[t])] = pf.uv[t]
            fuv[x, :len(pf.faces_uv[t])] = pf.faces_uv[t]
        return maps, vuv, fuv

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
        st = self._load()
        epoch = self.epoch if epoch is None else int(epoch)
        gen = batch_generator(self.seed, epoch, index)
        frames = self._frames(epoch, index).repeat_interleave(self.views_per_frame)
        camera = None
        if isinstance(self.sampler, Cameras):  # the frames' real cameras: labels computed, not drawn
            camera = self.sampler.select(st["view_allowed_cpu"][frames], self.views_per_frame, gen)
            pose = st["view_pose_cpu"][frames, camera]
            tgt = TargetSample(pose, pose.clone(), 0)
        else:
            tgt = sample_targets(self.sampler, st["src_pose_cpu"][frames], st["gaze_head_cpu"][frames], gen,
                                 max_rotation_deg=self.max_rotation_deg, max_head_pose_deg=self.max_head_pose_deg,
                                 max_rounds=self.max_rounds)
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
        ids = self._load()["ids"]
        return [ids[int(k)] for k in torch.as_tensor(frame_index).reshape(-1).tolist()]

    def sample_labels(self, index: int, epoch: int | None = None) -> dict[str, torch.Tensor]:
        """Labels of batch ``index`` without rendering (CPU, float64): ``head_pose``, ``gaze`` (B·K, 2),
        ``frames`` (local indices); e.g. to plot the sampled distributions quickly."""
        p = self.sample_parameters(index, epoch)
        gh = self._state["gaze_head_cpu"][p["frames"]]
        g = (_pitchyaw_to_rotation(p["head_pose"]) @ gh[..., None])[..., 0]
        return {"head_pose": p["head_pose"], "gaze": _gaze_to_pitchyaw(g), "frames": p["frames"]}

    def batch(self, index: int, epoch: int | None = None) -> dict[str, torch.Tensor]:
        """Batch ``index`` of ``epoch`` (default: the current epoch): a pure function of (seed, epoch, index)."""
        t0 = time.perf_counter()
        p = self.sample_parameters(index, epoch)
        self._tick("sample", t0)
        out = self.render(p["frames"], p["head_pose"], p["appearance"], camera=p["camera"])
        out["drawn_target"] = p["drawn"].to(self.device, torch.float32)
        out["epoch"] = torch.full((len(p["frames"]),), p["epoch"], dtype=torch.int64, device=self.device)
        out["batch_index"] = torch.full_like(out["epoch"], p["index"])
        return self._shape_views(out)

    def replay(self, batch: dict) -> dict[str, torch.Tensor]:
        """Render a batch again from its ``frame_index``, ``target_pose`` and ``param_*`` entries."""
        st = self._load()
        K = self.views_per_frame
        flat = {k: (v.reshape(-1, *v.shape[2:]) if K > 1 and torch.is_tensor(v) and v.dim() >= 2 else v)
                for k, v in batch.items()}
        lut = torch.full((int(st["cache_index"].max()) + 1,), -1, dtype=torch.int64, device=self.device)
        lut[st["cache_index"]] = torch.arange(len(st["cache_index"]), device=self.device)
        frames = lut[flat["frame_index"].to(self.device)].cpu()
        if bool((frames < 0).any()):
            raise ValueError("replay: frame_index not loaded by this dataset (other subjects?)")
        app = AppearanceParams.from_dict({k: v.cpu() for k, v in flat.items()}, prefix="param_")
        cam = flat.get("camera_index")
        cam = None if cam is None or bool((cam < 0).all()) else cam.cpu()
        out = self.render(frames, flat["target_pose"].double().cpu(), app, camera=cam)
        return self._shape_views(out)

    # ------------------------------------------------------------------------------------------- rendering
    def render(self, frames: torch.Tensor, head_pose: torch.Tensor, app: AppearanceParams, camera=None) -> dict:
        """Render local frames (n,) at head poses (n, 2) (radians) with appearance parameters: flat batch dict.

        ``camera`` (n,) int64: the frames' real-camera slots of the views (``cameras`` sampler; ``head_pose`` is
        then that camera's label) or None; ``face_mat_norm`` is then that camera's normalization rotation."""
        from .render import UVTexture, VertexColors, render

        st = self._load()
        t0 = time.perf_counter()
        dev, cam = self.device, self.camera
        fr = frames.to(dev)
        hp = head_pose.to(dev, torch.float64)
        d = float(cam.distance)
        view = novel_view(st["hR"][fr], st["c"][fr], hp, d)
        V = view.R  # (n, 3, 3) float64: source camera → view ("face_mat_norm")
        n = len(fr)
        verts = st["verts"][fr] @ V.to(torch.float32).transpose(-1, -2)
        verts[..., 2] += d
        faces = st["faces"] if st["faces"] is not None else st["faces_pad"][st["topology"][fr]]
        app_d = app.to(dev)
        H, W = cam.height, cam.width
        t0 = self._tick("camera", t0)
        if st["uv"] is None:
            tex = VertexColors(st["colors"][fr])
        else:
            maps, vuv, fuv = st["uv"]
            tex = UVTexture(maps, vuv, fuv, texture_index=st["texture_id"][fr])
        res = render(verts, faces, st["K"].expand(n, 3, 3), (H, W), textures=tex,
                     lights=self.appearance.lights(app_d), material=self.appearance.material(n, dev),
                     background=None, ssaa=self.ssaa, cull_backfaces=self.cull_backfaces, check=False,
                     channels=None if st["face"] is None else st["face"][fr])
        mask = res.mask
        if res.channels is not None:  # face mask: interpolated face flag >= 0.5 per (super-sampled) pixel
            mask = (res.channels[:, :1] >= 0.5).to(torch.float32)
            mask = torch.nn.functional.avg_pool2d(mask, self.ssaa) if self.ssaa > 1 else mask
        t0 = self._tick("render", t0)
        img = self.appearance.composite(res.image, res.mask, app_d)  # backgrounds: the whole mesh's coverage
        t0 = self._tick("background", t0)
        img = self.appearance.jitter(img, app_d)
        if self.image_format == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN, device=dev, dtype=img.dtype).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=dev, dtype=img.dtype).view(1, 3, 1, 1)
            img = (img - mean) / std
        t0 = self._tick("jitter", t0)
        # labels (float64 maths, float32 out)
        g = (V @ st["g"][fr][..., None])[..., 0]
        lm3 = view.apply(st["lm"][fr])
        K64 = cam.K(dtype=torch.float64, device=dev)
        lm2_fixed = project_points(lm3, K64)
        lm2 = lm2_fixed.clone()
        from .reconstruct.contour import ibug_jaw
        from .reconstruct.eyes import EYE_SHAPES, eye_geometry

        ct = st["contour"][fr]
        any_ct = bool(ct.any())  # one host read per batch, for both labels below
        if any_ct:  # iBUG semantics: the jaw points on the rendered outline (onthefly.reconstruct.contour)
            jaw = ibug_jaw(verts[ct], _pitchyaw_to_rotation(hp[ct]), K64)
            lm2[ct, :17] = project_points(jaw, K64)
        # eye geometry (onthefly.reconstruct.eyes): NaN for frames of other topologies
        eyes = {k: torch.full((n, *shape), float("nan"), dtype=torch.float64, device=dev)
                for k, shape in EYE_SHAPES.items()}
        if any_ct:
            tgt_view = view.apply(st["target"][fr][:, None])[:, 0]
            e = eye_geometry(verts[ct], tgt_view[ct], g[ct], K64)
            for k in EYE_SHAPES:
                eyes[k][ct] = e[k]
        rot = V @ st["R_src"][fr].transpose(-1, -2)
        f32 = torch.float32
        fmn = V
        cam_index = torch.full((n,), -1, dtype=torch.int64, device=dev)
        if camera is not None:  # real cameras: face_mat_norm = that camera -> its normalized view (ETH-XGaze)
            cam_index = camera.to(dev)
            fmn = st["view_Rn"][fr, cam_index]
        out = {"image": img, "mask": mask, "coverage": res.mask, "gaze": _gaze_to_pitchyaw(g).to(f32),
               "head_pose": hp.to(f32),
               "gaze_vector": g.to(f32), "face_mat_norm": fmn.to(f32), "rotation_matrix": rot.to(f32),
               "landmarks_2d": lm2.to(f32), "landmarks_2d_fixed": lm2_fixed.to(f32), "landmarks_3d": lm3.to(f32),
               "frame_index": st["cache_index"][fr], "subject_index": st["subject_index"][fr],
               "target_pose": hp.clone(), "source_head_pose": st["src_pose_cpu"][frames].to(dev, f32),
               "camera_index": cam_index, "_view_rotation": V}
        out.update({k: v.to(f32) for k, v in eyes.items()})
        out.update(app_d.as_dict("param_"))
        self._tick("labels", t0)
        return out

    def _shape_views(self, out: dict) -> dict:
        K = self.views_per_frame
        V = out.pop("_view_rotation", None)  # source camera -> view (face_mat_norm differs for real cameras)
        if K == 1:
            return out
        out = {k: v.reshape(-1, K, *v.shape[1:]) for k, v in out.items()}
        V = (out["face_mat_norm"] if V is None else V.to(torch.float32).reshape(-1, K, 3, 3)).double()
        out["relative_rotation"] = (V[:, None] @ V[:, :, None].transpose(-1, -2)).to(torch.float32)
        return out

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
