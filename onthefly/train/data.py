"""``GazeDataModule``: on-the-fly training batches, fixed validation sets, real ETH-XGaze-layout h5 files.

* **train**: :class:`~onthefly.dataset.OnTheFlyGazeDataset` rendered *on the module's device* in the main process
  (``DataLoader(batch_size=None, num_workers=0)``; batches are whole, already on the device), optionally mixed with
  real samples from h5 files (``train_h5`` + ``real_ratio``: that fraction of every batch is real, as MPII-NV).
* **val / test**: (a) a fixed-seed synthetic set from held-out subjects (``split="val"``), rendered once into memory
  at ``setup`` (the same images every epoch and every run), and/or (b) real normalized h5 files in the ETH-XGaze
  layout (``face_patch`` (N,H,W,3) BGR uint8, ``face_gaze`` (N,2) pitch-yaw radians).

Every configuration error (missing cache or h5, an h5 without ``face_gaze``/``face_patch``, an image size that does
not match the camera) is raised by :meth:`GazeDataModule.check`, called from ``__init__`` — before any training.
"""
from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from onthefly.config import check_appearance, check_dataset_args, check_target, dataset_parameters
from onthefly.dataset import OnTheFlyGazeDataset, batch_generator, distributed_info

# the h5 reader lives in onthefly.h5 (exports and ETH-XGaze-layout files); re-exported for existing imports
from onthefly.h5 import H5GazeDataset, check_h5  # noqa: F401
from onthefly.normalization import NormalizedCamera, get_camera

#: the keys the training and evaluation code uses (the rest of the on-the-fly batch is dropped from held sets)
KEYS = ("image", "gaze", "head_pose", "subject_index")
#: dataset parameters the data module sets itself (per split: batch size, seed, device, length, split; the camera
#: from ``camera`` + ``image_size``); every other parameter of ``OnTheFlyGazeDataset`` is a parameter of
#: :class:`GazeDataModule` of the same name and default, passed through unchanged (tests/training pins this)
MODULE_OWNED = ("batch_size", "seed", "device", "epoch_length", "split", "camera")


def make_camera(camera: "str | dict | NormalizedCamera" = "xgaze224", image_size: int | None = None) -> NormalizedCamera:
    """A normalized camera: a preset name, a dict of :class:`NormalizedCamera` fields (``focal``, ``distance``,
    ``width``, ``height``, optional ``name``) or a camera, optionally rescaled to ``image_size`` px (same field of
    view and distance: ``focal · image_size / width``), e.g. 64 px for the CPU demo (cheaper to render than 224;
    ``docs/training.md``)."""
    if isinstance(camera, dict):
        unknown = set(camera) - {"focal", "distance", "width", "height", "name"}
        if unknown or not {"focal", "distance", "width", "height"} <= set(camera):
            raise ValueError(f"camera: a dict needs focal, distance, width, height (and optionally name), got "
                             f"{sorted(camera)}")
        camera = NormalizedCamera(float(camera["focal"]), float(camera["distance"]), int(camera["width"]),
                                  int(camera["height"]), str(camera.get("name", "custom")))
    cam = get_camera(camera)
    if image_size is None or image_size == cam.width:
        return cam
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size: expected an int >= 8 or None, got {image_size!r}")
    return cam.rescaled(image_size)


def dataset_args_from_data(data: dict, where: str = "data") -> dict:
    """The dataset arguments of a training config's ``data:`` section (for ``onthefly preview`` / ``export``
    ``--config TRAIN.yaml``): its keys checked against :class:`GazeDataModule`'s signature, the dataset's
    parameters taken as they are and ``camera`` + ``image_size`` made into the camera; the training-only keys
    (replay, validation, real h5 files) are not used."""
    params = [n for n in inspect.signature(GazeDataModule.__init__).parameters if n != "self"]
    unknown = sorted(str(k) for k in data if k not in params)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; GazeDataModule takes {', '.join(params)}")
    out = {k: v for k, v in data.items() if k in dataset_parameters() and k not in ("camera", "device")}
    if "camera" in data or "image_size" in data:
        out["camera"] = make_camera(data.get("camera", "xgaze224"), data.get("image_size"))
    if data.get("device", "auto") != "auto":
        out["device"] = data["device"]
    return check_dataset_args(out, where)


def flat_views(batch: dict, views_per_frame: int) -> dict:
    """A dataset batch with ``views_per_frame = K > 1`` ((B, K, ...) tensors) as B·K samples ((B·K, ...)): the
    model trains on samples; the K views of one frame stay next to each other."""
    if views_per_frame == 1:
        return batch
    return {k: v.flatten(0, 1) if torch.is_tensor(v) and v.dim() >= 2 else v for k, v in batch.items()}


class _Batches(Dataset):
    """A list of whole batches (``DataLoader(batch_size=None)``)."""

    def __init__(self, batches: list[dict]):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i]


class TrainStream(IterableDataset):
    """The training stream: on-the-fly batches of this rank (optionally mixed with real h5 samples), with the
    epoch taken from the trainer at every ``iter`` (so resumed runs continue the exact batch sequence).

    ``repeat`` > 1 turns it into a replay stream for machines where rendering costs more than a training step:
    every rendered batch is followed by ``repeat`` optimizer steps, each drawing ``batch_size`` samples at random
    from the last ``pool`` rendered batches, each mirrored with probability 0.5 when ``mirror`` (exact labels,
    :func:`mirror`). Draws are seeded by ``(seed, epoch, rank, batch, 11)``, so the stream stays a pure function of
    the seed and the epoch."""

    def __init__(self, dm: "GazeDataModule", ds: OnTheFlyGazeDataset, real: H5GazeDataset | None, n_real: int,
                 repeat: int = 1, pool: int = 1, mirror: bool = False):
        self.dm, self.ds, self.real, self.n_real = dm, ds, real, n_real
        self.repeat, self.pool, self.mirror = int(repeat), int(pool), bool(mirror)

    def steps_per_render(self) -> int:
        return self.repeat

    def __len__(self) -> int:
        return len(self.ds) * self.steps_per_render()

    def _rendered(self):
        """This rank's rendered batches of the current epoch (with the real rows when mixing)."""
        epoch = self.dm.current_epoch()
        self.ds.seed = self.dm.seed  # a restored checkpoint's seed (load_state_dict runs after setup)
        self.ds.set_epoch(epoch)
        self.dm.epoch = epoch
        dev = self.ds.device
        for batch in self.ds:
            batch = flat_views(batch, self.ds.views_per_frame)
            out = {k: batch[k] for k in KEYS}
            if self.real is not None and self.n_real > 0:
                g = batch_generator(self.dm.seed, epoch, int(batch["batch_index"][0]), 7)
                idx = torch.randint(len(self.real), (self.n_real,), generator=g).numpy()
                r = self.real.take(idx)
                r["subject_index"] = torch.full((self.n_real,), -1, dtype=torch.int64)
                out = {k: torch.cat([out[k], r[k].to(dev)]) for k in KEYS}
            out["batch_index"] = batch["batch_index"][:1].expand(out["gaze"].shape[0])
            out["frame_index"] = batch["frame_index"]
            yield out

    def __iter__(self):
        if self.repeat > 1:
            seed, epoch, rank = self.dm.seed, self.dm.current_epoch(), distributed_info()[0]
            yield from replay(self._rendered(), self.repeat, self.pool, self.mirror,
                              lambda i: batch_generator(seed, epoch, rank, i, 11))
            return
        yield from self._rendered()


def replay(batches, repeat: int, pool: int, mirror_p: bool, generator_for) -> Iterator[dict]:
    """After each batch of ``batches``, ``repeat`` batches of the same size drawn at random (without replacement
    within a draw) from the last ``pool`` batches, each sample mirrored with probability 0.5 when ``mirror_p``;
    ``generator_for(i)`` seeds the draws after batch i (so the stream stays a pure function of its seed)."""
    recent: list[dict] = []
    for i, out in enumerate(batches):
        recent = (recent + [out])[-pool:]
        keys = [k for k in out if all(k in b for b in recent)]
        sizes = torch.tensor([b["gaze"].shape[0] for b in recent])
        n, bs = int(sizes.sum()), out["gaze"].shape[0]
        g = generator_for(i)
        for _ in range(repeat):
            idx = torch.randperm(n, generator=g)[:bs]
            flip = torch.rand(bs, generator=g) < 0.5 if mirror_p else torch.zeros(bs, dtype=torch.bool)
            yield mirror(_take_rows(recent, keys, sizes, idx), flip)


def _take_rows(batches: list[dict], keys, sizes: torch.Tensor, idx: torch.Tensor) -> dict:
    """Rows ``idx`` of the batches' concatenation, without concatenating them (only the drawn rows are copied)."""
    ends = sizes.cumsum(0)
    src = torch.bucketize(idx, ends, right=True)  # which batch each row comes from
    row = idx - (ends - sizes)[src]
    order = torch.argsort(src, stable=True)
    inverse = torch.argsort(order)
    parts: dict[str, list] = {k: [] for k in keys}
    for j in torch.unique(src).tolist():
        rows = row[order][src[order] == j]
        for k in keys:
            parts[k].append(batches[j][k].index_select(0, rows.to(batches[j][k].device)))
    return {k: torch.cat(v).index_select(0, inverse.to(v[0].device)) for k, v in parts.items()}


def mirror(batch: dict, which: torch.Tensor | None = None) -> dict:
    """The horizontally mirrored batch with exact labels: mirroring the scene through the camera's y-z plane
    negates x, so yaw → -yaw and pitch is unchanged (gaze and head pose). ``which`` (B,) bool mirrors only those
    samples. (The principal point is W/2 while the flip maps pixel x → W-1-x: a half-pixel shift of the image,
    irrelevant to direction labels.)"""
    out = dict(batch)
    dev = batch["gaze"].device
    sign = torch.tensor([1.0, -1.0], device=dev)
    w = torch.ones(len(batch["gaze"]), dtype=torch.bool, device=dev) if which is None else which.to(dev)
    out["image"] = torch.where(w.view(-1, 1, 1, 1), batch["image"].flip(-1), batch["image"])
    for k in ("gaze", "head_pose"):
        if k in batch:
            out[k] = torch.where(w.view(-1, 1), batch[k] * sign, batch[k])
    return out


class GazeDataModule(L.LightningDataModule):
    """Data for :class:`~onthefly.train.module.GazeRegressor` (see the module docstring and ``docs/training.md``).

    Args:
        cache: mesh cache of the synthetic subjects (``onthefly reconstruct`` / ``onthefly demo``); None only
            with ``train_h5`` and ``real_ratio = 1``.
        batch_size: samples per training batch (real + synthetic); with ``views_per_frame = K`` the synthetic part
            is ``batch_size / K`` frames, K views each (flattened to samples, a frame's views side by side).
        seed: seed of the training stream (saved in checkpoints with the epoch).
        camera, image_size: normalized camera (preset name or dict of ``NormalizedCamera`` fields) and optional
            rescaled size (``make_camera``).
        device: where training batches are rendered: ``"auto"`` = the module's device (the trainer's root device).
        epoch_length: training batches per epoch (over all ranks); default one pass over the training frames.
        target, appearance, background_dir, image_format, ssaa, max_rotation_deg, max_head_pose_deg, max_rounds,
            cull_backfaces, views_per_frame, subjects, shared_appearance, tune_malloc: passed to the dataset
            unchanged (training and the synthetic validation set; :class:`~onthefly.dataset.OnTheFlyGazeDataset`
            documents them). ``target`` and ``appearance`` are checked when the module is built (a typo in a
            sampler's arguments is an error before anything is rendered).
        val_subjects / val_fraction / split_seed: held-out subjects (never rendered for training).
        val_batches, val_batch_size, val_seed, val_target, val_appearance: the fixed synthetic validation set.
        val_h5, test_h5: real ETH-XGaze-layout h5 files for validation / test (``val_h5_max`` caps each set).
        train_h5, real_ratio: real training samples and the fraction of each batch they fill.
        num_workers: workers for the real h5 val/test loaders.
        repeat, pool, mirror: replay (see :class:`TrainStream`): ``repeat`` optimizer steps per rendered batch,
            each drawing a batch from the last ``pool`` rendered batches, mirroring each sample with probability
            0.5 when ``mirror``. ``repeat = 1`` (default) trains on every rendered batch once, as rendered.
    """

    def __init__(self, cache: str | None = None, batch_size: int = 64, seed: int = 0,
                 camera: str | dict = "xgaze224",
                 image_size: int | None = None, device: str = "auto", epoch_length: int | None = None,
                 target: dict | str | None = None, appearance: dict | str = "default",
                 background_dir: str | None = None, image_format: str = "unit", ssaa: int = 1,
                 max_rotation_deg: float | None = 60.0, val_subjects: list[str] | None = None,
                 val_fraction: float = 0.2, split_seed: int = 0, val_batches: int = 8,
                 val_batch_size: int | None = None, val_seed: int = 1_000_003, val_target: dict | str | None = None,
                 val_appearance: dict | str | None = None, val_h5: list[str] | None = None,
                 test_h5: list[str] | None = None, val_h5_max: int | None = None,
                 train_h5: list[str] | None = None, real_ratio: float = 0.0, num_workers: int = 0,
                 repeat: int = 1, pool: int = 1, mirror: bool = False,
                 cull_backfaces: bool = False, views_per_frame: int = 1, subjects: list[str] | None = None,
                 max_head_pose_deg: float | None = 80.0, max_rounds: int = 64, shared_appearance: bool = False,
                 tune_malloc: bool | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.seed, self.epoch = int(seed), 0
        self.cam = make_camera(camera, image_size)
        self._train = self._val = self._test = None
        self._trainer_epoch = None
        self.check()

    # ------------------------------------------------------------------------------------------- checks
    def check(self) -> None:
        """Validate the configuration (files, keys, sizes) without rendering; raises a clear ``ValueError``."""
        hp = self.hparams
        check_target(hp.target, "data.target")
        check_target(hp.val_target, "data.val_target")
        check_appearance(hp.appearance, "data.appearance")
        check_appearance(hp.val_appearance, "data.val_appearance")
        for name in ("repeat", "pool"):
            v = getattr(hp, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"data.{name}: expected an int >= 1, got {v!r}")
        if not 0.0 <= hp.real_ratio <= 1.0:
            raise ValueError(f"data.real_ratio: expected 0 <= r <= 1, got {hp.real_ratio}")
        if hp.real_ratio > 0 and not hp.train_h5:
            raise ValueError("data.real_ratio > 0 needs data.train_h5 (real ETH-XGaze-layout h5 files)")
        if hp.cache is None:
            if hp.real_ratio < 1.0:
                raise ValueError("data.cache: a mesh cache is required unless real_ratio = 1")
        elif not Path(hp.cache).is_file():
            raise ValueError(f"data.cache: mesh cache not found: {hp.cache} (build one with `onthefly reconstruct "
                             f"--out {hp.cache}` or `onthefly demo`)")
        size = (self.cam.height, self.cam.width)
        for name in ("train_h5", "val_h5", "test_h5"):
            for p in getattr(hp, name) or []:
                check_h5(p, size)
        self._n_real = round(hp.batch_size * hp.real_ratio) if hp.train_h5 else 0
        if hp.cache is not None and hp.real_ratio < 1 and hp.batch_size - self._n_real < 1:
            raise ValueError(f"data.batch_size {hp.batch_size} with real_ratio {hp.real_ratio}: no synthetic samples")
        K = hp.views_per_frame
        if isinstance(K, bool) or not isinstance(K, int) or K < 1:
            raise ValueError(f"data.views_per_frame: expected an int >= 1, got {K!r}")
        for name, n in (("batch_size - real samples", hp.batch_size - self._n_real),
                        ("val_batch_size", hp.val_batch_size or hp.batch_size)):
            if hp.cache is not None and n % K:
                raise ValueError(f"data.{name} = {n} is not a multiple of data.views_per_frame = {K} (a batch "
                                 "holds whole frames, each rendered from views_per_frame views)")

    def current_epoch(self) -> int:
        t = self._trainer_ref()
        return int(t.current_epoch) if t is not None else self.epoch

    def _trainer_ref(self):
        try:
            return self.trainer
        except RuntimeError:
            return None

    def _device(self) -> torch.device:
        if self.hparams.device != "auto":
            return torch.device(self.hparams.device)
        t = self._trainer_ref()
        return t.strategy.root_device if t is not None else torch.device("cpu")

    def _dataset(self, split: str, seed: int, batch_size: int, device, **over) -> OnTheFlyGazeDataset:
        hp = self.hparams
        kw = {n: hp[n] for n in dataset_parameters() if n not in MODULE_OWNED}
        kw.update(camera=self.cam, split=split)
        kw.update({k: v for k, v in over.items() if v is not None})
        return OnTheFlyGazeDataset(hp.cache, batch_size=batch_size, seed=seed, device=device, **kw)

    # ------------------------------------------------------------------------------------------- set-up
    def train_dataset(self) -> OnTheFlyGazeDataset:
        hp = self.hparams
        return self._dataset("train", self.seed, (hp.batch_size - self._n_real) // hp.views_per_frame,
                             self._device(), epoch_length=hp.epoch_length)

    def val_batches(self) -> list[dict]:
        """The fixed synthetic validation set: ``val_batches`` batches of held-out subjects, rendered once on the
        CPU (the same for every rank, epoch and run: seeded by ``val_seed``, epoch 0)."""
        hp = self.hparams
        ds = self._dataset("val", hp.val_seed, (hp.val_batch_size or hp.batch_size) // hp.views_per_frame, "cpu",
                           target=hp.val_target, appearance=hp.val_appearance, epoch_length=hp.val_batches)
        return [{k: b[k] for k in KEYS}
                for b in (flat_views(ds.batch(i, 0), hp.views_per_frame) for i in range(hp.val_batches))]

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in ("fit", None) and self._train is None:
            real = H5GazeDataset(hp.train_h5, hp.image_format, (self.cam.height, self.cam.width)) \
                if self._n_real else None
            if hp.cache is None:
                raise ValueError("data.cache: real-only training (real_ratio = 1) is not supported by the stream")
            self._train = TrainStream(self, self.train_dataset(), real, self._n_real, hp.repeat, hp.pool,
                                      hp.mirror)
        if stage in ("fit", "validate", None) and self._val is None:
            self._val = self._eval_sets(hp.val_h5, synthetic=hp.cache is not None and hp.val_batches > 0)
        if stage in ("test", None) and self._test is None:
            self._test = self._eval_sets(hp.test_h5, synthetic=hp.cache is not None and hp.val_batches > 0)

    def _eval_sets(self, h5_paths, synthetic: bool) -> list[Dataset]:
        hp = self.hparams
        sets = []
        if synthetic:
            sets.append(_Batches(self.val_batches()))
        for p in h5_paths or []:
            sets.append(H5GazeDataset([p], hp.image_format, (self.cam.height, self.cam.width), hp.val_h5_max))
        return sets

    # ------------------------------------------------------------------------------------------- loaders
    def train_dataloader(self):
        if self._train is None:
            self.setup("fit")
        return DataLoader(self._train, batch_size=None, num_workers=0)

    def _eval_loaders(self, sets):
        hp = self.hparams
        loaders = []
        for s in sets:
            if isinstance(s, _Batches):
                loaders.append(DataLoader(s, batch_size=None, num_workers=0))
            else:
                loaders.append(DataLoader(s, batch_size=hp.val_batch_size or hp.batch_size, shuffle=False,
                                          num_workers=hp.num_workers))
        return loaders[0] if len(loaders) == 1 else loaders

    def val_dataloader(self):
        if self._val is None:
            self.setup("validate")
        return self._eval_loaders(self._val) if self._val else []

    def test_dataloader(self):
        if self._test is None:
            self.setup("test")
        return self._eval_loaders(self._test) if self._test else []

    # ------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        """Saved in checkpoints: the generator's seed and the epoch (the stream is a pure function of both)."""
        return {"seed": self.seed, "epoch": self.current_epoch(), "camera": [self.cam.focal, self.cam.distance,
                                                                             self.cam.width, self.cam.height]}

    def load_state_dict(self, state: dict) -> None:
        if int(state["seed"]) != self.seed:
            warnings.warn(f"checkpoint was trained with data seed {state['seed']}, this run uses {self.seed}: "
                          "restoring the checkpoint's seed so the stream continues", stacklevel=2)
            self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
