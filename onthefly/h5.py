"""``H5GazeDataset``: a map-style reader for normalized gaze h5 files.

Reads (a) the files written by ``onthefly export`` (``docs/export.md``: MPII-NV ``pXX.h5`` or XGaze3D
``subjectXXXX.h5`` schema) and (b) the official normalized ETH-XGaze / MPIIFaceGaze files in the ETH-XGaze layout
(``face_patch`` (N,H,W,3) BGR uint8, ``face_gaze`` (N,2) pitch-yaw radians, optional ``face_head_pose``).
Items are dicts with the same keys, dtypes and layout as :class:`onthefly.dataset.OnTheFlyGazeDataset` batches
(one sample, no batch dimension), for the keys the files hold:

=================== =================== ============================ ==================================
h5 key              item key            item shape, dtype            note
=================== =================== ============================ ==================================
``face_patch``      ``image``           (3,H,W) float32              BGR → RGB, [0,1] or ImageNet-normalized
``face_gaze``       ``gaze``            (2,) float32                 (pitch, yaw) radians
``face_head_pose``  ``head_pose``       (2,) float32                 NaN when the files have none
``face_mask``       ``mask``            (1,H,W) float32              uint8 0..255 → [0,1]
``landmarks_norm``  ``landmarks_2d``    (68,2) float32               also ``facial_landmarks`` (ETH-XGaze)
``face_mat_norm``   ``face_mat_norm``   (3,3) float32
``rotation_matrix`` ``rotation_matrix`` (3,3) float32
``frame_index``     ``frame_index``     () int64                     (N,1) files are flattened
``cam_index``       ``cam_index``       () int64                     as stored (1-based in XGaze3D)
—                   ``subject_index``   () int64                     index of the file in ``paths``
=================== =================== ============================ ==================================

Optional keys appear only when every file has them. Files open lazily, read-only, in the process that reads
(DataLoader workers reopen after fork), with ``swmr=True`` where the file allows it (else a plain read-only open).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .dataset import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["H5GazeDataset", "check_h5", "open_h5"]

#: optional h5 keys → (item key, dtype) read when every file has them (besides face_patch / face_gaze / head pose)
_OPTIONAL = (("face_mask", "mask"), ("landmarks_norm", "landmarks_2d"), ("facial_landmarks", "landmarks_2d"),
             ("face_mat_norm", "face_mat_norm"), ("rotation_matrix", "rotation_matrix"),
             ("frame_index", "frame_index"), ("cam_index", "cam_index"))
_INT_KEYS = ("frame_index", "cam_index")


def open_h5(path):
    """Open an h5 file read-only, SWMR-safe where the file format allows it (else a plain read-only open)."""
    import h5py

    try:
        return h5py.File(path, "r", swmr=True)
    except (OSError, ValueError):
        return h5py.File(path, "r")


def check_h5(path, image_size: tuple[int, int] | None = None) -> int:
    """Check an ETH-XGaze-layout h5 file; returns its sample count. Clear ``ValueError`` otherwise."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"h5 file not found: {p}")
    try:
        f = open_h5(p)
    except (OSError, RuntimeError) as e:  # a damaged superblock / header raises RuntimeError (tests/fuzz)
        raise ValueError(f"{p}: not a readable h5 file ({e})") from None
    try:
        with f:
            return _check_open_h5(p, f, image_size)
    except (KeyError, RuntimeError, OSError, TypeError, ValueError) as exc:  # a damaged file (tests/fuzz)
        if isinstance(exc, ValueError) and str(p) in str(exc):
            raise
        raise ValueError(f"{p}: damaged h5 file ({type(exc).__name__}: {str(exc)[:200]})") from None


def _check_open_h5(p: Path, f, image_size) -> int:
    """The checks of :func:`check_h5` on the open file."""
    if "complete" in f.attrs and not bool(f.attrs["complete"]):
        raise ValueError(f"{p}: an incomplete onthefly export (its 'complete' attribute is false)")
    for key in ("face_patch", "face_gaze"):
        if key not in f:
            raise ValueError(f"{p}: no '{key}' dataset (the ETH-XGaze layout has face_patch (N,H,W,3) BGR uint8 "
                             f"and face_gaze (N,2) pitch-yaw radians; it has {sorted(f.keys())[:8]})")
    fp, fg = f["face_patch"], f["face_gaze"]
    if fp.ndim != 4 or fp.shape[-1] != 3 or fp.dtype != np.uint8:
        raise ValueError(f"{p}: face_patch must be (N,H,W,3) uint8 BGR, got {fp.shape} {fp.dtype}")
    if fg.ndim != 2 or fg.shape[1] != 2 or fg.shape[0] != fp.shape[0]:
        raise ValueError(f"{p}: face_gaze must be (N,2) matching face_patch's N={fp.shape[0]}, got {fg.shape}")
    if image_size is not None and tuple(fp.shape[1:3]) != tuple(image_size):
        raise ValueError(f"{p}: face_patch is {fp.shape[1]}x{fp.shape[2]} (HxW) but the configured camera gives "
                         f"{image_size[0]}x{image_size[1]} images: set data.image_size / data.camera to match")
    if fp.shape[0] == 0:
        raise ValueError(f"{p}: no samples")
    return int(fp.shape[0])


def _to_images(patch: np.ndarray, image_format: str) -> torch.Tensor:
    """(N,H,W,3) BGR uint8 → (N,3,H,W) float RGB in [0,1] or ImageNet-normalized."""
    x = torch.from_numpy(np.ascontiguousarray(patch[..., ::-1])).permute(0, 3, 1, 2).float().div_(255)
    if image_format == "imagenet":
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x


def _optional_keys(paths: list[Path]) -> list[dict[str, str]]:
    """Per file, {item key: h5 key} of the optional datasets that every file holds (under one of their names)."""
    per_file = []
    for p in paths:
        with open_h5(p) as f:
            keys = set(f.keys())
        m: dict[str, str] = {}
        for h5_key, item_key in _OPTIONAL:
            if h5_key in keys and item_key not in m:
                m[item_key] = h5_key
        per_file.append(m)
    common = set.intersection(*(set(m) for m in per_file))
    return [{k: v for k, v in m.items() if k in common} for m in per_file]


class H5GazeDataset(Dataset):
    """Normalized samples from h5 files (exports and ETH-XGaze layout); item i → the dict described in the module
    docstring (always ``image``, ``gaze``, ``head_pose``, ``subject_index``; the other keys when present).

    Args:
        paths: one path or a list; samples are numbered file after file.
        image_format: ``"unit"`` (RGB in [0, 1]) or ``"imagenet"`` (ImageNet mean/std normalized).
        image_size: expected (H, W), checked up front (None: any, but all files must agree).
        max_samples: use at most the first this many samples.

    ``take(indices)`` reads a batch at once (sorted h5 fancy indexing, duplicates allowed) and returns batched
    tensors. Files open lazily per process (safe with forked DataLoader workers)."""

    def __init__(self, paths, image_format: str = "unit", image_size: tuple[int, int] | None = None,
                 max_samples: int | None = None):
        if image_format not in ("unit", "imagenet"):
            raise ValueError(f"image_format: expected 'unit' or 'imagenet', got {image_format!r}")
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        if not self.paths:
            raise ValueError("h5: no files given")
        self.counts = [check_h5(p, image_size) for p in self.paths]
        sizes = set()
        for p in self.paths:
            with open_h5(p) as f:
                sizes.add(tuple(f["face_patch"].shape[1:3]))
        if len(sizes) > 1:
            raise ValueError(f"h5: the files have different image sizes {sorted(sizes)}: {self.paths[:4]}")
        self.optional = _optional_keys(self.paths)
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.n = int(self.offsets[-1]) if max_samples is None else min(int(self.offsets[-1]), int(max_samples))
        self.image_format = image_format
        self._files = None
        self._pid = None

    def __len__(self) -> int:
        return self.n

    def _open(self):
        if self._files is None or self._pid != os.getpid():  # lazily, and again in a forked worker
            self._files = [open_h5(p) for p in self.paths]
            self._pid = os.getpid()
        return self._files

    def _read_file(self, f, k: int, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """Rows (any order, duplicates allowed) of file ``f`` (number ``k``) as batched tensors."""
        uniq, inv = np.unique(rows, return_inverse=True)
        out = {"image": _to_images(f["face_patch"][uniq][inv], self.image_format),
               "gaze": torch.from_numpy(f["face_gaze"][uniq][inv].astype(np.float32))}
        hp = f["face_head_pose"][uniq][inv].astype(np.float32)[:, :2] if "face_head_pose" in f else \
            np.full((len(rows), 2), np.nan, np.float32)
        out["head_pose"] = torch.from_numpy(np.ascontiguousarray(hp))
        for key, h5_key in self.optional[k].items():
            a = f[h5_key][uniq][inv]
            if key == "mask":
                out[key] = torch.from_numpy(a[:, None].astype(np.float32) / 255.0)
            elif key in _INT_KEYS:
                out[key] = torch.from_numpy(a.reshape(len(rows)).astype(np.int64))
            else:
                out[key] = torch.from_numpy(a.astype(np.float32))
        out["subject_index"] = torch.full((len(rows),), k, dtype=torch.int64)
        return out

    def take(self, indices) -> dict[str, torch.Tensor]:
        """The samples ``indices`` as one batch (dict of (n, ...) tensors, in the order given)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"h5: index out of range for {self.n} samples")
        files = self._open()
        order = np.argsort(idx, kind="stable")
        sidx = idx[order]
        fi = np.searchsorted(self.offsets, sidx, side="right") - 1
        parts = []
        for k in np.unique(fi):
            try:
                parts.append(self._read_file(files[k], int(k), sidx[fi == k] - self.offsets[k]))
            except (OSError, RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:  # damaged (tests/fuzz)
                raise ValueError(f"{self.paths[k]}: cannot read samples ({type(exc).__name__}: "
                                 f"{str(exc)[:200]})") from None
        inverse = torch.from_numpy(np.argsort(order))
        return {key: torch.cat([p[key] for p in parts])[inverse] for key in parts[0]}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.take([i]).items()}

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_files"] = None
        return d

    def close(self) -> None:
        """Close the files this process opened."""
        for f in self._files or []:
            f.close()
        self._files = None
