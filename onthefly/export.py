"""Export: fixed h5 datasets that the reference systems' loaders read unmodified.

Schemas (field tables in :mod:`onthefly.h5`): ``mpii-nv`` (``pXX.h5``), ``xgaze3d`` (``subjectXXXX.h5`` with
XGaze3D's meanings, a plain green-unlit set and ``augment/``), ``rot-mvgaze`` (``p00.h5`` ... for Rot-MVGaze's
``mpiinv`` path); layouts ``flat`` and ``eth-xgaze`` (``train/``, ``test/``, ``train_test_split.json``).

What a file holds (the determinism definition, ``docs/export.md``): for subject ``s`` the rows are one pass of

    ds = OnTheFlyGazeDataset(cache, subjects=[s], seed=subject_seed(S, s), views_per_frame=K, batch_size=B,
                             camera=CAM, image_format="unit", **config)

namely batches ``ds.batch(i, epoch=0)`` for ``i = 0 … ceil(n/B) − 1`` (n = the subject's frames), of which the
first ``min(B, n − i·B)`` samples are kept (the tail of the last batch would start the next pass), flattened
sample-major (sample b, view k → row ``(i·B + b)·K + k``: frame-major blocks of K rows). So every frame of the
subject appears exactly K times, in the order of the epoch-0 frame permutation. The rows are encoded by the
schema's field table (images ``round(255·x)`` to uint8 BGR or RGB, labels in the stored dtypes, a few derived
fields such as Q, ``pj_landmarks_norm`` or the view slot). A file set with its own appearance (xgaze3d's plain
set) uses that appearance in ``config``.

Subject ``s``'s stream is keyed by (S, s, epoch, batch): ``subject_seed`` mixes the export seed with a stable key
of the subject id (SHA-256 of its UTF-8 bytes, never Python's salted ``hash()``), and the dataset then seeds batch
``i`` from ``(subject_seed, 0, i)``. Different subjects get independent head poses, appearances and frame orders;
the same (S, s) always gives the same rows, whatever the other subjects, the shard or the machine.

Streaming: the main thread renders; a writer thread (bounded queue) writes and compresses, so HDF5 I/O overlaps
rendering. Resumable: each file is written as ``NAME.h5.tmp``; after every batch the rows are flushed and then the
attribute ``rows_done`` is updated and flushed; at the end ``complete`` is set and the file is renamed. Sharded:
``shard=(i, n)`` exports every n-th file; ``write_index`` lists all files once they are complete.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import re
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm import tqdm

from . import __version__, h5_fast
from ._io import atomic_write
from ._isolated import call_isolated_json, can_isolate
from .cache import MeshCache
from .dataset import OnTheFlyGazeDataset, distributed_info
from .h5 import SCHEMAS as _ALL_SCHEMAS
from .h5 import XGAZE3D_STORED_GREEN, EncodeContext, H5Schema, open_h5
from .normalization import get_camera

__all__ = ["SCHEMAS", "ExportError", "subject_seed", "ExportSettings", "ExportReport", "export", "plan_files",
           "batch_to_rows", "write_index", "verify_export", "make_camera", "parse_shard", "atomic_write",
           "INDEX_NAME", "SPLIT_NAME", "LAYOUTS", "frame_numbers"]

INDEX_NAME = "index.json"
#: ETH-XGaze's split file (``--layout eth-xgaze``): {"train": [names], "test": [names]}
SPLIT_NAME = "train_test_split.json"
LAYOUTS = ("flat", "eth-xgaze")
FORMAT = "onthefly-export"
#: 2: per-subject streams (``subject_seed``); version-1 files repeated one head-pose stream in every subject
FORMAT_VERSION = 2
#: the writable schemas (field tables in :mod:`onthefly.h5`)
SCHEMAS: dict[str, H5Schema] = {k: v for k, v in _ALL_SCHEMAS.items() if v.writable}
#: rows per HDF5 chunk of the image datasets (the anchors' one row per chunk: cheap random reads)
IMAGE_CHUNK_ROWS = 1
#: attributes that must match for ``--resume`` to continue a file
_FINGERPRINT = ("format_version", "schema", "subject", "n_rows", "seed", "views_per_frame", "batch_size", "epoch",
                "config", "onthefly_version", "cache_created", "file_set", "set_appearance", "layout", "split")
#: config keys that select subjects (the export exports every selected subject, one file each)
_SELECTION = ("subjects", "split", "val_subjects", "val_fraction", "split_seed")
#: config keys the export sets itself or that do not change the rows
_IGNORED = ("epoch_length", "image_format", "device", "tune_malloc")


class ExportError(ValueError):
    """A clear, user-facing export error (names the file or directory and the problem)."""


def subject_seed(seed: int, subject: str) -> int:
    """The dataset seed of subject ``subject``'s file: a SeedSequence mix of ``seed`` and a stable 64-bit key of the
    subject id (SHA-256 of its UTF-8 bytes), as a non-negative 63-bit int. Keys each subject's stream by
    (seed, subject, epoch, batch)."""
    key = int.from_bytes(hashlib.sha256(str(subject).encode("utf-8")).digest()[:8], "little")
    state = np.random.SeedSequence([int(seed), 0x5B1EC7, key]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


def _conventions(schema: H5Schema) -> dict:
    """The self-describing attributes of a file of ``schema`` (from its field table)."""
    return {
        "color_order": schema.color_order,
        "head_pose_pitch_sign": schema.pitch_sign,
        "gaze_convention": "face_gaze (N,2) = (pitch, yaw) radians, ETH-XGaze signs: pitch = asin(-g_y), "
                           "yaw = atan2(-g_x, -g_z) for g the unit vector face centre -> target in the normalized "
                           "camera; pitch > 0 looks up, yaw > 0 looks toward image left",
        "head_pose_convention": "face_head_pose (N,2) = (pitch_sign * pitch, yaw) radians of the head in the "
                                "normalized camera (pitch = asin(H[1,2]), yaw = atan2(H[0,2], H[2,2])); pitch > 0 "
                                "faces up, yaw > 0 faces image left; frontal = (0, 0)",
        "fields": json.dumps({f.key: {"shape": list(f.shape), "dtype": f.dtype, "meaning": f.meaning}
                              for f in schema.fields}),
    }


def make_camera(schema: H5Schema, image_size: int | None, camera=None):
    """The normalized camera: ``camera`` (a preset name from the config) or the schema's preset at
    ``image_size`` px (224 → xgaze224, 448 → xgaze448, other sizes rescale the schema's preset: same field of view
    and distance, e.g. 64 px for tests)."""
    if camera is not None:
        cam = get_camera(camera)
        if image_size is not None and (cam.width, cam.height) != (image_size, image_size):
            raise ExportError(f"--image-size {image_size} contradicts the config's camera {cam.name} "
                              f"({cam.width}x{cam.height}); give one of them")
        return cam
    size = schema.default_size if image_size is None else image_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ExportError(f"--image-size: expected an int >= 8 (224 or 448 for the anchors), got {size!r}")
    for preset in ("xgaze224", "xgaze448"):
        cam = get_camera(preset)
        if cam.width == size:
            return cam
    return get_camera(schema.base_camera).rescaled(size)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` → (i, n) with 0 <= i < n; None → None."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise ExportError(f"--shard: expected i/n with 0 <= i < n (e.g. 0/2), got {text!r}")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class PlannedFile:
    """One file of an export: ``rel`` (path under OUT, ``/``-separated), the cache subject, the file set
    (``""`` or ``"augment"``) and the split (``""`` flat, ``"train"``/``"test"`` in the eth-xgaze layout)."""

    rel: str
    subject: str
    file_set: str = ""
    split: str = ""

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]


def plan_files(all_subjects: list[str], selected: list[str], schema: H5Schema, layout: str = "flat",
               test_subjects=()) -> list[PlannedFile]:
    r"""Every file of the export, sorted by path.

    Names: when the schema has an id pattern and every cache subject id matches it (``p\d+`` for mpii-nv,
    ``subject\d+`` for xgaze3d) the ids are used verbatim; otherwise a subject is named by its position in the
    cache's subject list (order of first appearance, as ``onthefly cache info`` lists them): ``p00``... /
    ``subject0000``..., so its name does not depend on the selection or the shard. ``rot-mvgaze`` (no pattern)
    numbers the *selected* subjects in cache order, ``p00`` ... ``p14`` (the names Rot-MVGaze opens); more than
    ``max_files`` subjects are an error. Each of the schema's file sets gets one file per subject (xgaze3d: the
    plain set in OUT, the augment set in OUT/augment); the eth-xgaze layout puts files under ``train/`` or
    ``test/`` (``test_subjects``)."""
    if layout not in LAYOUTS:
        raise ExportError(f"--layout: expected one of {LAYOUTS}, got {layout!r}")
    pos = {s: i for i, s in enumerate(all_subjects)}
    selected = sorted(selected, key=pos.__getitem__)
    if schema.max_files is not None and len(selected) > schema.max_files:
        raise ExportError(f"--schema {schema.name}: {len(selected)} subjects selected, but its client opens only "
                          f"{schema.file_format.format(0)}.h5 ... {schema.file_format.format(schema.max_files - 1)}"
                          f".h5 ({schema.max_files} files): select at most {schema.max_files} subjects with "
                          f"'subjects:' in --config and export the others into another --out")
    if schema.id_pattern is None:
        names = {s: schema.file_format.format(i) for i, s in enumerate(selected)}
    else:
        verbatim = all(re.fullmatch(schema.id_pattern, s) for s in all_subjects)
        names = {s: s if verbatim else schema.file_format.format(pos[s]) for s in selected}
    if len(set(names.values())) != len(names):
        raise ExportError(f"subject ids map to duplicate file names: {sorted(names.values())[:8]}")
    test = set(test_subjects)
    out = []
    for set_dir, _, _ in schema.file_sets:
        for s in selected:
            split = ("test" if s in test else "train") if layout == "eth-xgaze" else ""
            rel = "/".join(x for x in (set_dir, split, names[s] + ".h5") if x)
            out.append(PlannedFile(rel, s, set_dir, split))
    return sorted(out, key=lambda p: p.rel)


def frame_numbers(frame_ids: list[str]) -> np.ndarray:
    """XGaze3D's ``frame_index`` of each frame id: its trailing digits (``frame0003`` → 3), or, when an id has none,
    the position of the id among the subject's distinct ids (sorted)."""
    nums = [re.search(r"(\d+)$", f) for f in frame_ids]
    if all(nums):
        return np.array([int(m.group(1)) for m in nums if m is not None], np.int64)
    order = {f: i for i, f in enumerate(sorted(set(frame_ids)))}
    return np.array([order[f] for f in frame_ids], np.int64)


@dataclass
class ExportSettings:
    """Everything that defines an export (see the module docstring)."""

    cache: Path
    out: Path
    seed: int
    views_per_frame: int
    schema: str = "mpii-nv"
    image_size: int | None = None
    config: dict = field(default_factory=dict)
    compression: str = "lzf"
    device: str | None = None
    layout: str = "flat"
    test_subjects: tuple = ()

    def __post_init__(self):
        self.cache, self.out = Path(self.cache), Path(self.out)
        if self.schema not in SCHEMAS:
            raise ExportError(f"--schema: expected one of {sorted(SCHEMAS)}, got {self.schema!r}")
        if self.layout not in LAYOUTS:
            raise ExportError(f"--layout: expected one of {list(LAYOUTS)}, got {self.layout!r}")
        self.test_subjects = tuple(self.test_subjects or ())
        if self.test_subjects and self.layout != "eth-xgaze":
            raise ExportError("--test-subjects: only with --layout eth-xgaze (files under test/)")
        sch = SCHEMAS[self.schema]
        if sch.views_per_frame is not None and self.views_per_frame != sch.views_per_frame:
            raise ExportError(f"--schema {self.schema}: needs --views-per-frame {sch.views_per_frame} (its client "
                              f"pairs views within blocks of {sch.views_per_frame} rows; with "
                              f"{self.views_per_frame} views per frame, pairs would mix frames)")
        if self.schema == "rot-mvgaze" and self.layout != "flat":
            raise ExportError("--schema rot-mvgaze: Rot-MVGaze opens <path>/p00.h5 ... flat; use --layout flat")
        if self.compression not in ("lzf", "gzip", "none"):
            raise ExportError(f"--compression: expected lzf, gzip or none, got {self.compression!r}")
        for name, v, lo in (("--seed", self.seed, 0), ("--views-per-frame", self.views_per_frame, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ExportError(f"{name}: expected an int >= {lo}, got {v!r}")
        if not self.cache.is_file():
            raise ExportError(f"--cache: file not found: {self.cache}")
        cfg = dict(self.config)
        for k in ("seed", "views_per_frame"):  # the command line wins; the recorded config says what was used
            cfg.pop(k, None)
        self.config = cfg

    @property
    def schema_obj(self) -> H5Schema:
        return SCHEMAS[self.schema]

    @property
    def batch_size(self) -> int:
        return int(self.config.get("batch_size", 32))

    def camera(self):
        return make_camera(self.schema_obj, self.image_size, self.config.get("camera"))

    def dataset_kwargs(self, subject: str) -> dict:
        """Keyword arguments of subject ``subject``'s dataset, except ``subjects`` (and the shared appearance);
        its seed is :func:`subject_seed` (seed, subject)."""
        kw = {k: v for k, v in self.config.items() if k not in _SELECTION + _IGNORED + ("camera", "batch_size")}
        if "tune_malloc" in self.config:
            kw["tune_malloc"] = self.config["tune_malloc"]
        return dict(kw, batch_size=self.batch_size, seed=subject_seed(self.seed, subject),
                    views_per_frame=self.views_per_frame,
                    camera=self.camera(), image_format="unit", device=self.device)

    def recorded_config(self) -> dict:
        """The effective dataset configuration stored in every file (JSON)."""
        cam = self.camera()
        kw = {k: v for k, v in self.config.items() if k not in _IGNORED + ("camera",)}
        kw.update(batch_size=self.batch_size, seed=self.seed, views_per_frame=self.views_per_frame,
                  image_format="unit", epoch=0,
                  camera={"name": cam.name, "focal": cam.focal, "distance": cam.distance, "width": cam.width,
                          "height": cam.height})
        return kw


@dataclass
class ExportReport:
    """What :func:`export` did."""

    out: Path
    written: list[str]
    skipped: list[str]
    rows: int
    seconds: float
    index: Path | None
    shard: tuple[int, int]


def batch_to_rows(batch: dict, views_per_frame: int, take: int, schema: H5Schema,
                  ctx: EncodeContext | None = None) -> dict[str, np.ndarray]:
    """The first ``take`` samples of a dataset batch as export rows (sample-major, K views each: frame-major blocks
    of K rows), encoded by the schema's field table in its dtypes (e.g. images ``round(255·x)`` uint8 BGR)."""
    K = views_per_frame
    flat = {k: (v[:take].reshape(take * K, *v.shape[2:]) if K > 1 else v[:take])
            for k, v in batch.items() if torch.is_tensor(v)}
    if ctx is None:
        ctx = EncodeContext(K, take, schema.cam_base)
    else:
        ctx.views_per_frame, ctx.take = K, take
    return schema.encode(flat, ctx)


# ----------------------------------------------------------------------------------------------- writing
class _Unreadable(Exception):
    """A partial file that cannot be continued (redo the subject)."""


class _AsyncWriter:
    """One writer thread fed through a bounded queue: HDF5 writing and compression overlap rendering (torch ops
    release the GIL). The first error stops the work; it is re-raised in the submitting thread."""

    def __init__(self, maxsize: int = 2):
        self._q: queue.Queue = queue.Queue(maxsize)
        self.error: BaseException | None = None
        self._abort = False  # set by abort(): skip the queued work (Ctrl-C stops the export promptly)
        self._t = threading.Thread(target=self._run, name="onthefly-export-writer", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self.error is None and not self._abort:
                fn, args = item
                try:
                    fn(*args)
                except BaseException as exc:  # handed to the main thread
                    self.error = exc

    def submit(self, fn, *args) -> None:
        """Queue ``fn(*args)``; blocks while the queue is full; raises the writer's error if it failed."""
        while True:
            if self.error is not None:
                raise self.error
            try:
                self._q.put((fn, args), timeout=0.2)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        """Wait for the queued work; re-raise the writer's error."""
        while self._t.is_alive():
            try:
                self._q.put(None, timeout=0.2)
                break
            except queue.Full:
                continue
        self._t.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Stop after the item being written (whatever is queued is dropped: its rows are not declared written)
        and wait for the thread; never raises the writer's error (the caller is already failing)."""
        self._abort = True
        while self._t.is_alive():
            try:
                self._q.put_nowait(None)
            except queue.Full:  # the thread drains the queue without running anything once _abort is set
                pass
            self._t.join(timeout=0.05)


def _finite(a: np.ndarray, nan_ok: bool) -> bool:
    """No inf and (unless ``nan_ok``: NaN = not available) no NaN."""
    return bool(not np.isinf(a).any() if nan_ok else np.isfinite(a).all())


def _write_error(path: Path, exc: OSError, out: Path) -> ExportError:
    msg = exc.strerror or str(exc)
    return ExportError(f"{path}: cannot write ({msg}); complete files in {out} are intact: free space or fix "
                       f"permissions, then rerun with --resume")


class _SubjectFile:
    """One subject's ``NAME.h5.tmp``: created or reopened, appended batch by batch, then completed and renamed."""

    def __init__(self, final: Path, attrs: dict, schema: H5Schema, shapes: dict, chunk_rows: int,
                 compression: str, progress=None):
        self.final, self.tmp = final, final.with_name(final.name + ".tmp")
        self.attrs, self.shapes, self.schema = attrs, shapes, schema
        self.keys = schema.keys
        self.chunk_rows, self.compression = chunk_rows, compression
        self.progress = progress
        self.f: h5py.File | None = None
        self.rows = 0

    def _guard(self, fn, *args):
        try:
            return fn(*args)
        except BaseException as exc:  # close the file whatever failed; the .tmp stays for --resume
            self.close_quietly()
            if isinstance(exc, OSError):
                raise _write_error(self.tmp, exc, self.final.parent) from exc
            raise

    def create(self) -> None:
        self._guard(self._create)

    def _create(self) -> None:
        comp = {} if self.compression == "none" else (
            {"compression": "gzip", "compression_opts": 4} if self.compression == "gzip" else {"compression": "lzf"})
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        self.f = f = h5py.File(self.tmp, "w")
        for k, v in self.attrs.items():
            f.attrs[k] = v
        f.attrs["rows_done"] = 0
        f.attrs["complete"] = False
        for fld in self.schema.fields:
            k, shape = fld.key, self.shapes[fld.key]
            rows = IMAGE_CHUNK_ROWS if fld.image else self.chunk_rows
            # the full length at once (chunks are allocated as they are written; rows past ``rows_done`` are not
            # declared, and ``--resume`` truncates to it): no resize per batch and field
            f.create_dataset(k, shape=(int(self.attrs["n_rows"]), *shape), maxshape=(None, *shape), dtype=fld.dtype,
                             chunks=(rows, *shape), **comp)
        f.flush()
        self.rows = 0

    def reopen(self, rows: int) -> None:
        self._guard(self._reopen, rows)

    def _reopen(self, rows: int) -> None:
        self.f = h5py.File(self.tmp, "r+")
        self.rows = rows

    def append(self, start: int, rows: dict) -> None:
        self._guard(self._append, start, rows)

    def append_batch(self, start: int, batch: dict, views_per_frame: int, take: int, schema: H5Schema,
                     ctx: EncodeContext) -> None:
        """Encode the first ``take`` samples of a dataset batch (:func:`batch_to_rows`) and :meth:`append` them."""
        self.append(start, batch_to_rows(batch, views_per_frame, take, schema, ctx))

    def _append(self, start: int, rows: dict) -> None:
        if start != self.rows:
            raise RuntimeError(f"{self.tmp}: rows out of order ({start} != {self.rows})")
        f, n = self.f, len(rows[self.keys[0]])
        assert f is not None  # created or reopened first
        for fld in self.schema.fields:
            ds = f[fld.key]
            if ds.shape[0] < start + n:  # a file reopened by --resume (truncated to its rows_done)
                ds.resize(start + n, 0)
            if fld.image and self.compression == "lzf" and h5_fast.direct_lzf(ds):
                h5_fast.write_rows(ds, start, rows[fld.key])  # the compiled LZF encoder, one chunk per row
            else:
                ds[start:start + n] = rows[fld.key]
        f.flush()  # the rows reach the file before the count that declares them
        f.attrs["rows_crc"] = rows_crc(rows, self.keys, {k: f[k].dtype for k in self.keys},
                                       int(f.attrs.get("rows_crc", 0)))  # checked by --resume (_recover)
        f.attrs["rows_done"] = start + n
        f.flush()
        self.rows = start + n
        if self.progress is not None:
            self.progress(self.final.name, self.rows, int(self.attrs["n_rows"]), n)

    def finish(self) -> None:
        self._guard(self._finish)

    def _finish(self) -> None:
        if self.rows != int(self.attrs["n_rows"]):
            raise RuntimeError(f"{self.tmp}: {self.rows} rows written, expected {self.attrs['n_rows']}")
        assert self.f is not None
        self.f.attrs["complete"] = True
        self.f.close()
        self.f = None
        os.replace(self.tmp, self.final)
        _remember_sha256(self.final)

    def close_quietly(self) -> None:
        if self.f is not None:
            try:
                self.f.close()
            except Exception:  # noqa: BLE001 - already failing; the .tmp stays for --resume
                pass
            self.f = None


def _attr_str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _fingerprint_mismatch(path: Path, have, want: dict) -> str | None:
    v = have.get("format_version")
    if v is not None and _attr_str(v) != _attr_str(want["format_version"]):
        return (f"written by export format version {_attr_str(v)}, this onthefly writes version "
                f"{want['format_version']}" + (" (version 1 repeated one head-pose stream in every subject's file; "
                                               "its rows cannot be continued or mixed with per-subject streams)"
                                               if _attr_str(v) == "1" else ""))
    for k in _FINGERPRINT:
        if k not in have:
            return f"no '{k}' attribute"
        a, b = have[k], want[k]
        if _attr_str(a) != _attr_str(b):
            return f"{k} differs (file: {_attr_str(a)[:200]!r}, this run: {_attr_str(b)[:200]!r})"
    return None


def _recover(tmp: Path, attrs: dict, rows_per_batch: int) -> int:
    """Rows of a partial ``.tmp`` that can be kept (a multiple of the batch rows, or all); truncates the datasets
    to them. Raises :class:`_Unreadable` (redo the subject) or :class:`ExportError` (another configuration)."""
    try:
        f = h5py.File(tmp, "r+")
    except OSError as exc:
        if "unable to lock" in str(exc).lower():  # HDF5's file lock: another live process has it open
            raise ExportError(f"{tmp}: locked; is another export process writing it? ({exc})") from None
        raise _Unreadable(f"cannot be opened ({exc})") from None
    try:
        with f:
            bad = _fingerprint_mismatch(tmp, f.attrs, attrs)
            if bad:
                raise ExportError(f"{tmp}: a partial export with another configuration ({bad}); remove it or use "
                                  f"the same configuration")
            n_rows = int(attrs["n_rows"])
            r = int(f.attrs["rows_done"])
            if r != n_rows:
                r -= r % rows_per_batch
            sch = SCHEMAS[_attr_str(attrs["schema"])]
            keys, nan_ok = sch.keys, {fl.key for fl in sch.fields if fl.nan_ok}
            for k in keys:
                if k not in f or f[k].shape[0] < r:
                    raise _Unreadable(f"'{k}' has fewer than the {r} rows declared")
                if f[k].shape[0] > n_rows:  # never written so (and shrinking 2**31 chunks takes minutes: tests/fuzz)
                    raise _Unreadable(f"'{k}' has {f[k].shape[0]} rows, more than the file's {n_rows}")
                if f[k].dtype != np.dtype(sch.field(k).dtype):
                    raise _Unreadable(f"'{k}' has dtype {f[k].dtype}, the schema {sch.field(k).dtype}")
            want_crc = f.attrs.get("rows_crc")
            if want_crc is None and r > 0:  # every writer of this format version records it with rows_done
                raise _Unreadable(f"no rows_crc: the {r} rows declared cannot be checked")
            if r != int(f.attrs["rows_done"]):
                raise _Unreadable(f"rows_done {int(f.attrs['rows_done'])} is not on a batch boundary")
            dtypes, crc = {k: f[k].dtype for k in keys}, 0
            for s in range(0, r, rows_per_batch):  # batch by batch: the kept rows are checked, never all in memory
                batch = {k: f[k][s:min(r, s + rows_per_batch)] for k in keys}
                for k, a in batch.items():
                    if a.dtype.kind == "f" and not _finite(a, k in nan_ok):
                        raise _Unreadable(f"'{k}' has non-finite values (rows {s}..{s + len(a) - 1})")
                crc = rows_crc(batch, keys, dtypes, crc)
            if r > 0 and crc != int(want_crc):  # rows altered after they were written
                raise _Unreadable(f"the {r} rows kept do not match their CRC (rows_crc): damaged")
            for k in keys:
                f[k].resize(r, 0)
            f.flush()
            return r
    except (ExportError, _Unreadable):
        raise
    except Exception as exc:  # noqa: BLE001 - any HDF5 damage: redo the subject
        raise _Unreadable(f"damaged ({type(exc).__name__}: {exc})") from None


def rows_crc(rows: dict, keys, dtypes: dict, crc: int = 0) -> int:
    """The running CRC-32 of the rows written (attribute ``rows_crc``): ``crc`` continued over one batch, key after
    key in schema order, each as the bytes of its stored dtype. ``--resume`` recomputes it over the rows it keeps."""
    for k in keys:
        crc = zlib.crc32(np.ascontiguousarray(rows[k], dtypes[k]).data, crc)
    return crc


def _read_attrs(path: Path) -> dict:
    with open_h5(path) as f:
        return dict(f.attrs)


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"--out {out}: cannot create the directory ({exc.strerror or exc})") from None
    probe = out / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ExportError(f"--out {out}: directory is not writable ({exc.strerror or exc})") from None


class _Progress:
    """tqdm bar over the shard's rows (``bar``), one line per written batch (``lines``), or nothing."""

    def __init__(self, mode: str, total: int, desc: str):
        self.mode, self.bar = mode, None
        if mode == "bar":
            self.bar = tqdm(total=total, unit="row", desc=desc, dynamic_ncols=True)
        elif mode not in ("lines", "none"):
            raise ExportError(f"--progress: expected bar, lines or none, got {mode!r}")

    def skip(self, rows: int) -> None:
        if self.bar is not None:
            self.bar.update(rows)

    def __call__(self, name: str, done: int, total: int, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "lines":
            print(f"{name}: {done}/{total} rows", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _set_appearance(st: ExportSettings, override):
    """The appearance of a file set: the schema's override, else the config's; XGaze3D's augment set without a
    configured appearance gets XGaze3D's augment mix (RGB or image backgrounds, low light)."""
    if override is not None:
        return override
    if "appearance" in st.config:
        return st.config["appearance"]
    if st.schema == "xgaze3d":
        modes = [{"weight": 0.5, "background": "color", "light": "low"}]
        if st.config.get("background_dir"):
            modes.append({"weight": 0.5, "background": "image", "light": "low"})
        return {"preset": "xgaze3d", "modes": modes, "jitter": None}
    return None


def export(settings: ExportSettings, *, shard: tuple[int, int] | None = None, resume: bool = False,
           progress: str = "bar", queue_size: int = 2) -> ExportReport:
    """Export this shard's files (``shard`` default: ``RANK``/``WORLD_SIZE`` when set, else everything) and
    write ``index.json`` (and the eth-xgaze layout's split files) once every file of the export is complete. See
    the module docstring."""
    t_start = time.perf_counter()
    st, schema = settings, settings.schema_obj
    if shard is None:
        shard = distributed_info()
    i_shard, n_shard = shard
    with MeshCache(st.cache) as mc:
        all_subjects = list(mc.subjects)
        cache_created = _attr_str(mc.attrs.get("created", ""))
    sel = {k: st.config[k] for k in _SELECTION if k in st.config}
    selected = OnTheFlyGazeDataset(st.cache, device="cpu", **sel).subjects if sel else all_subjects
    unknown = [s for s in st.test_subjects if s not in selected]
    if unknown:
        raise ExportError(f"--test-subjects: {unknown[:5]} are not among the exported subjects "
                          f"({selected[:5]}{'...' if len(selected) > 5 else ''})")
    plan = plan_files(all_subjects, selected, schema, st.layout, st.test_subjects)
    _check_out_dir(st.out)
    mine = plan[i_shard::n_shard]
    cam = st.camera()
    K, B = st.views_per_frame, st.batch_size
    shapes = schema.row_shapes(cam.height, cam.width)
    recorded = json.dumps(st.recorded_config(), sort_keys=True, default=str)
    sets = {d: (_set_appearance(st, app), green) for d, app, green in schema.file_sets}
    base_attrs = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "schema": schema.name, "onthefly_version": __version__,
        "seed": st.seed, "views_per_frame": K, "batch_size": B, "epoch": 0, "config": recorded,
        "cache": str(st.cache.resolve()), "cache_created": cache_created, "layout": st.layout,
        "export_files": json.dumps([[p.rel, p.subject] for p in plan]),
        "normalized_camera": json.dumps({"name": cam.name, "focal": cam.focal, "distance": cam.distance,
                                         "width": cam.width, "height": cam.height}),
        "cam_index_base": schema.cam_base,
        **_conventions(schema),
        "definition": "rows of subject s = one pass of OnTheFlyGazeDataset(cache, subjects=[s], "
                      "seed=subject_seed(seed, s), **config) (subject_seed: SeedSequence([seed, 0x5B1EC7, "
                      "sha256(s)[:8] little-endian]) >> 1): "
                      "ds.batch(i, epoch=0) for i < ceil(n/B), first min(B, n - i*B) samples, flattened "
                      "sample-major (row = (i*B + b)*K + k), encoded by the schema's field table "
                      "(docs/export.md)",
    }
    # counts first (cheap: the cache's frame table), so the bar knows the total
    with MeshCache(st.cache) as mc:
        rows_of = {s: np.asarray(mc.indices([s])) for s in {p.subject for p in mine}}
    total = sum(len(rows_of[p.subject]) for p in mine) * K

    def file_attrs(pf: PlannedFile) -> dict:
        app_spec, green = sets[pf.file_set]
        return dict(base_attrs, subject=pf.subject, file_stem=Path(pf.rel).stem,
                    n_rows=len(rows_of[pf.subject]) * K, cache_frames=len(rows_of[pf.subject]),
                    subject_seed=subject_seed(st.seed, pf.subject), file_set=pf.file_set, split=pf.split,
                    set_appearance=json.dumps(app_spec, sort_keys=True, default=str),
                    background_stored_as=(f"XGaze3D's uint8 wrap: green {XGAZE3D_STORED_GREEN}" if green
                                          else "as rendered"))

    # every file's resume state before any thread starts (a damaged partial file is read in a child process,
    # which a process with a writer or progress thread cannot fork safely); a refused file stops the export
    # before anything is rendered
    todo = []
    for pf in mine:
        attrs = file_attrs(pf)
        todo.append((pf, attrs, _prepare(st.out / pf.rel, attrs, resume, B * K)))
    prog = _Progress(progress, total, f"export {st.out.name} shard {i_shard}/{n_shard}")
    appearance: dict = {}

    def open_subject(pf: PlannedFile, app) -> tuple[OnTheFlyGazeDataset, torch.Tensor]:
        """The subject's dataset with its frames loaded, and the cache-index → frame-number table."""
        kw = st.dataset_kwargs(pf.subject)
        if app is not None:
            kw["appearance"] = app
        ds = OnTheFlyGazeDataset(st.cache, subjects=[pf.subject], **kw)
        idx = rows_of[pf.subject]
        lut = torch.full((int(idx.max()) + 1,), -1, dtype=torch.int64)
        lut[torch.from_numpy(idx)] = torch.from_numpy(
            frame_numbers([f for _, f, _ in ds.frame_ids(torch.from_numpy(idx))]))  # frame_ids loads the frames
        return ds, lut

    def app_of(pf: PlannedFile):  # one background pool per set (same rows); the set's spec for its first file
        return appearance.get(pf.file_set, sets[pf.file_set][0])

    writer = _AsyncWriter(queue_size)
    written, skipped, rows_total = [], [], 0
    current: _SubjectFile | None = None
    try:
        for pf, attrs, start in todo:
            final = st.out / pf.rel
            n_frames, n_rows = attrs["cache_frames"], attrs["n_rows"]
            green = sets[pf.file_set][1]
            if start is None:
                skipped.append(pf.rel)
                prog.skip(n_rows)
                continue
            ds, lut = open_subject(pf, app_of(pf))
            appearance[pf.file_set] = ds.appearance
            assert ds.n_frames == n_frames, (ds.n_frames, n_frames)
            ctx = EncodeContext(K, B, schema.cam_base, green, lut)
            current = _SubjectFile(final, attrs, schema, shapes, B * K, st.compression, prog)
            if start == 0:
                writer.submit(current.create)
            else:
                writer.submit(current.reopen, start)
                prog.skip(start)
            for i in range(math.ceil(start / (B * K)), math.ceil(ds.n_frames / B)):  # start: batch boundary or all
                take = min(B, ds.n_frames - i * B)
                # encoding (uint8 rows, labels in the schema's dtypes) runs in the writer thread too, beside the
                # next batch's rendering
                writer.submit(current.append_batch, i * B * K, ds.batch(i, 0), K, take, schema, ctx)
                rows_total += take * K
            writer.submit(current.finish)
            written.append(pf.rel)
        writer.close()
    except BaseException as exc:
        try:
            if isinstance(exc, KeyboardInterrupt):
                writer.abort()  # Ctrl-C: stop now; what is written stays resumable (rows_done)
            else:
                writer.close()  # an error here: keep the rows already queued
        except BaseException:  # noqa: BLE001 - the first error is the one reported
            pass
        if current is not None:
            current.close_quietly()
        raise
    finally:
        prog.close()
    index = None
    if all((st.out / p.rel).is_file() for p in plan):
        index = write_index(st.out)
    return ExportReport(st.out, written, skipped, rows_total, time.perf_counter() - t_start, index, shard)


#: seconds a resume check may take beyond its file's reading time (metadata is read in milliseconds)
_PREPARE_TIMEOUT_S = 20.0


def _prepare(final: Path, attrs: dict, resume: bool, rows_per_batch: int) -> int | None:
    """None: the file is complete (skip); else the row to start writing at (0: a new file).

    On ``--resume`` an existing file is checked in a forked child process (when no other thread may hold a lock,
    :func:`onthefly._isolated.can_isolate`): a damaged file can make the HDF5 library loop forever or crash (fuzz
    export-resume input 984: a corrupt global heap behind a string attribute). A child that crashes, or runs past
    a limit scaled to the file's size, means a damaged partial file (redone) or an unreadable complete one."""
    tmp = final.with_name(final.name + ".tmp")
    if not resume or not (final.exists() or tmp.exists()) or not can_isolate():
        return _prepare_here(final, attrs, resume, rows_per_batch)
    size = (final if final.exists() else tmp).stat().st_size
    try:
        return call_isolated_json(_prepare_here, final, attrs, resume, rows_per_batch,
                                  timeout=_PREPARE_TIMEOUT_S + size / 20e6)  # reading + CRC of the rows: >> 20 MB/s
    except ValueError as exc:  # an ExportError in the child: the same message
        raise ExportError(str(exc)) from None
    except OSError as exc:  # the child crashed or hung
        if final.exists():
            raise ExportError(f"{final}: unreadable ({exc}); remove it and rerun with --resume") from None
        print(f"onthefly export: {tmp}: damaged ({exc}); redoing this subject", file=sys.stderr)
        tmp.unlink(missing_ok=True)
        return 0


def _prepare_here(final: Path, attrs: dict, resume: bool, rows_per_batch: int) -> int | None:
    tmp = final.with_name(final.name + ".tmp")
    if final.exists():
        if not resume:
            raise ExportError(f"{final}: already exists; rerun with --resume to continue this export, or choose an "
                              f"empty --out")
        try:
            have = _read_attrs(final)
        except OSError as exc:
            raise ExportError(f"{final}: unreadable ({exc}); remove it and rerun with --resume") from None
        bad = _fingerprint_mismatch(final, have, attrs)
        if bad:
            raise ExportError(f"{final}: exported with another configuration ({bad}); use another --out")
        if not bool(have.get("complete", False)):
            raise ExportError(f"{final}: not marked complete; remove it and rerun with --resume")
        return None
    if tmp.exists():
        if not resume:
            raise ExportError(f"{tmp}: a partial (interrupted) export; rerun with --resume to continue it")
        try:
            return _recover(tmp, attrs, rows_per_batch)
        except _Unreadable as exc:
            print(f"onthefly export: {tmp}: {exc}; redoing this subject", file=sys.stderr)
            tmp.unlink()
            return 0
    return 0


# ----------------------------------------------------------------------------------------------- index, verify
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: sha256 of files this process completed: {path: (size, mtime_ns, hex)}, hashed by the writer thread right after
#: the rename (the file is still in the page cache, and the main thread renders the next subject meanwhile)
_COMPLETED_SHA: dict[str, tuple[int, int, str]] = {}


def _remember_sha256(path: Path) -> None:
    st = path.stat()
    _COMPLETED_SHA[str(path)] = (st.st_size, st.st_mtime_ns, _sha256(path))


def _index_sha256(path: Path) -> str:
    """The sha256 for ``index.json``: the writer's if the file is unchanged since (same size and mtime), else read
    now. (``--verify`` always reads the file.)"""
    st = path.stat()
    hit = _COMPLETED_SHA.get(str(path))
    if hit is not None and hit[:2] == (st.st_size, st.st_mtime_ns):
        return hit[2]
    return _sha256(path)


def _export_files(out: Path) -> list[str]:
    """Relative paths (``/``-separated) of the ``.h5`` files under ``out`` (any depth), sorted."""
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.h5") if p.is_file())


def _splits(entries: list[dict]) -> dict[str, dict]:
    """eth-xgaze layout: {set root: {"train": [names], "test": [names]}} of the indexed files."""
    roots: dict[str, dict] = {}
    for e in entries:
        if e.get("split"):
            root = e["file"].rsplit("/", 2)[0] if e["file"].count("/") >= 2 else ""
            roots.setdefault(root, {"train": [], "test": []})[e["split"]].append(e["file"].rsplit("/", 1)[-1])
    return {r: {k: sorted(v) for k, v in d.items()} for r, d in roots.items()}


def write_index(out: str | Path) -> Path:
    """Write ``OUT/index.json`` (files, subjects, rows, bytes, sha256, and the shared settings) once every file of
    the export is complete, and, in the eth-xgaze layout, ``train_test_split.json`` in every set root;
    :class:`ExportError` naming what is missing otherwise. Atomic (temp file + rename)."""
    out = Path(out)
    index = _build_index(out)
    try:
        for root, split in _splits(index["files"]).items():
            with atomic_write(out / root / SPLIT_NAME) as tmp:
                tmp.write_text(json.dumps(split, indent=1))
        path = out / INDEX_NAME
        with atomic_write(path) as tmp:  # shards may finish together: each writes its own temporary file
            tmp.write_text(json.dumps(index, indent=1))
    except OSError as exc:
        raise ExportError(f"{out / INDEX_NAME}: cannot write ({exc.strerror or exc})") from None
    return path


def _build_index(out: Path) -> dict:
    """The content of ``index.json`` for the files in ``out`` (see :func:`write_index`)."""
    files = _export_files(out)
    if not files:
        raise ExportError(f"{out}: no exported .h5 files")
    entries: list[dict] = []
    plan: list | None = None
    first: dict | None = None
    for rel in files:
        p = out / rel
        try:
            a = _read_attrs(p)
        except OSError as exc:
            raise ExportError(f"{p}: unreadable ({exc})") from None
        if _attr_str(a.get("format", "")) != FORMAT:
            raise ExportError(f"{p}: not an onthefly export (no format attribute)")
        if not bool(a.get("complete", False)):
            raise ExportError(f"{p}: not marked complete")
        if first is None:
            first, plan = a, json.loads(_attr_str(a["export_files"]))
        elif _attr_str(a["config"]) != _attr_str(first["config"]) or _attr_str(a["schema"]) != _attr_str(
                first["schema"]):
            raise ExportError(f"{p}: exported with another configuration than {files[0]}")
        entries.append({"file": rel, "subject": _attr_str(a["subject"]), "rows": int(a["n_rows"]),
                        "file_set": _attr_str(a.get("file_set", "")), "split": _attr_str(a.get("split", "")),
                        "bytes": p.stat().st_size, "sha256": _index_sha256(p)})
    assert plan is not None and first is not None  # files is not empty
    names = {e["file"] for e in entries}
    missing = [f for f, _ in plan if f not in names]
    if missing:
        partial = [f for f in missing if (out / (f + ".tmp")).exists()]
        raise ExportError(f"{out}: {len(missing)} file(s) of the export missing: {missing[:8]}"
                          + (f" ({len(partial)} partial .tmp: rerun with --resume)" if partial else
                             " (other shards not finished?)"))
    extra = sorted(names - {f for f, _ in plan})
    if extra:
        raise ExportError(f"{out}: files not part of this export: {extra[:8]}")
    index = {"format": FORMAT, "format_version": FORMAT_VERSION, "schema": _attr_str(first["schema"]),
             "layout": _attr_str(first.get("layout", "flat")),
             "onthefly_version": _attr_str(first["onthefly_version"]), "seed": int(first["seed"]),
             "views_per_frame": int(first["views_per_frame"]), "batch_size": int(first["batch_size"]),
             "config": json.loads(_attr_str(first["config"])), "cache": _attr_str(first["cache"]),
             "normalized_camera": json.loads(_attr_str(first["normalized_camera"])),
             "subjects": {e["file"]: e["subject"] for e in entries},
             "total_rows": sum(e["rows"] for e in entries), "files": entries}
    return index


def _verify_file(p: Path, ref: dict | None, block: int = 256) -> tuple[list[str], dict | None]:
    """Problems of one exported file and its attributes (against its schema's field table)."""
    probs = []
    try:
        f = open_h5(p)
    except OSError as exc:
        return [f"{p}: unreadable h5 ({exc})"], None
    with f:
        a = dict(f.attrs)
        if _attr_str(a.get("format", "")) != FORMAT:
            return [f"{p}: not an onthefly export (no format={FORMAT!r} attribute)"], None
        if not bool(a.get("complete", False)):
            probs.append(f"{p}: not marked complete (attribute complete is false)")
        schema = SCHEMAS.get(_attr_str(a.get("schema", "")))
        if schema is None:
            return probs + [f"{p}: unknown schema {a.get('schema')!r}"], a
        n = int(a.get("n_rows", -1))
        if int(a.get("rows_done", -1)) != n:
            probs.append(f"{p}: rows_done {a.get('rows_done')} != n_rows {n}")
        if ref is not None:
            for k in ("schema", "config", "seed", "views_per_frame", "onthefly_version", "layout"):
                if _attr_str(a.get(k, "")) != _attr_str(ref.get(k, "")):
                    probs.append(f"{p}: attribute {k} differs from the other files")
        cam = json.loads(_attr_str(a.get("normalized_camera", "{}")) or "{}")
        shapes = schema.row_shapes(int(cam.get("height", 0)), int(cam.get("width", 0)))
        for fld in schema.fields:
            k = fld.key
            if k not in f:
                probs.append(f"{p}: missing dataset '{k}'")
                continue
            ds = f[k]
            if ds.shape != (n, *shapes[k]):
                probs.append(f"{p}: '{k}' has shape {ds.shape}, expected {(n, *shapes[k])}")
                continue
            if ds.dtype != np.dtype(fld.dtype):
                probs.append(f"{p}: '{k}' has dtype {ds.dtype}, expected {fld.dtype}")
            try:
                for s in range(0, n, block):
                    x = ds[s:s + block]
                    if x.dtype.kind == "f" and not _finite(x, fld.nan_ok):
                        probs.append(f"{p}: '{k}' has NaN/inf values (rows {s}..{s + len(x) - 1})")
                        break
                    bad = fld.check(x, a) if fld.check is not None else None
                    if bad:
                        probs.append(f"{p}: {bad}")
                        break
            except (OSError, RuntimeError, ValueError) as exc:
                probs.append(f"{p}: '{k}' cannot be read ({exc})")
    return probs, a


def _verify_file_isolated(p: Path, ref: dict | None) -> tuple[list[str], dict | None]:
    """:func:`_verify_file` in a forked child (h5py can crash the process on a corrupt file: found by the fuzz
    campaign); the attributes come back as str (what the comparisons use); a crash is a problem naming the file."""
    def child(p, ref):
        probs, a = _verify_file(p, ref)
        return [probs, None if a is None else {k: _attr_str(v) for k, v in a.items()}]

    if not can_isolate():
        return _verify_file(p, ref)
    try:
        probs, a = call_isolated_json(child, p, ref, timeout=3600)
    except (OSError, ValueError) as exc:
        return [f"{p}: unreadable h5 ({exc})"], None
    return probs, a


def verify_export(out: str | Path) -> list[str]:
    """See :func:`_verify_export`; never raises for a damaged export (the damage is a problem naming the path)."""
    try:
        return _verify_export(out)
    except Exception as exc:  # noqa: BLE001 - e.g. an index.json with values of the wrong type (tests/fuzz)
        return [f"{Path(out) / INDEX_NAME}: not a valid export index ({type(exc).__name__}: {str(exc)[:200]})"]


def _verify_export(out: str | Path) -> list[str]:
    """Check an export directory: every file complete with all its schema's keys, the schema's shapes and dtypes,
    finite labels, every chunk readable; no ``.tmp`` left; ``index.json`` (and the eth-xgaze layout's
    ``train_test_split.json``) consistent with the files. Returns the problems (``"PATH: problem"``), empty when
    the export is good."""
    out = Path(out)
    if not out.is_dir():
        return [f"{out}: not a directory"]
    probs: list[str] = []
    for t in sorted(out.rglob("*.h5.tmp")):
        probs.append(f"{t}: partial (interrupted) export; rerun onthefly export with --resume")
    files = _export_files(out)
    if not files:
        return probs + [f"{out}: no exported .h5 files"]
    ref, attrs = None, {}
    for rel in files:
        try:
            pp, a = _verify_file_isolated(out / rel, ref)
        except Exception as exc:  # noqa: BLE001 - any damage the checks do not anticipate is a problem (tests/fuzz)
            pp, a = [f"{out / rel}: damaged ({type(exc).__name__}: {str(exc)[:200]})"], None
        probs += pp
        if a is not None:
            attrs[rel] = a
            ref = ref or a
    idx_path = out / INDEX_NAME
    if not idx_path.is_file():
        return probs + [f"{idx_path}: missing (run `onthefly export --index {out}` once every shard is done)"]
    try:
        index = json.loads(idx_path.read_text())
        entries = {e["file"]: e for e in index["files"]}
    except (ValueError, KeyError, TypeError) as exc:
        return probs + [f"{idx_path}: not a valid export index ({exc})"]
    for name in sorted(set(entries) - set(files)):
        probs.append(f"{out / name}: listed in {INDEX_NAME} but missing")
    for rel in files:
        p = out / rel
        e = entries.get(rel)
        if e is None:
            probs.append(f"{p}: not listed in {INDEX_NAME}")
            continue
        a = attrs.get(rel, {})
        if "n_rows" in a and int(e.get("rows", -1)) != int(a["n_rows"]):
            probs.append(f"{p}: {INDEX_NAME} says {e.get('rows')} rows, the file has {a['n_rows']}")
        if int(e.get("bytes", -1)) != p.stat().st_size:
            probs.append(f"{p}: size {p.stat().st_size} differs from {INDEX_NAME} ({e.get('bytes')})")
        elif e.get("sha256") != _sha256(p):
            probs.append(f"{p}: sha256 differs from {INDEX_NAME}")
    if ref is not None and "export_files" in ref:
        plan = {f for f, _ in json.loads(_attr_str(ref["export_files"]))}
        for name in sorted(plan - set(files)):
            probs.append(f"{out / name}: part of the export but missing")
    for root, want in _splits(list(entries.values())).items():
        sp = out / root / SPLIT_NAME
        try:
            have = json.loads(sp.read_text())
        except (OSError, ValueError) as exc:
            probs.append(f"{sp}: missing or unreadable ({exc})")
            continue
        for k in ("train", "test"):
            if sorted(have.get(k, [])) != want[k]:
                probs.append(f"{sp}: '{k}' lists {sorted(have.get(k, []))[:4]}, the files are {want[k][:4]}")
    if int(index.get("total_rows", -1)) != sum(int(e.get("rows", 0)) for e in entries.values()):
        probs.append(f"{idx_path}: total_rows does not add up")
    if not probs:  # the files are good: the index must say exactly what write_index says about them
        built = _build_index(out)
        want = json.loads(json.dumps(built))
        for k in sorted(set(want) | set(index)):
            if index.get(k, None) != want.get(k, None) or (k in index) != (k in want):
                probs.append(f"{idx_path}: '{k}' does not match the files (rerun `onthefly export --index {out}`)")
        # byte for byte what write_index writes: an edited index (a duplicated key, another layout) is not the index
        if not probs and idx_path.read_bytes() != json.dumps(built, indent=1).encode():
            probs.append(f"{idx_path}: not the text `onthefly export --index {out}` writes for these files "
                         f"(edited?); rerun it")
        for root, split in ({} if probs else _splits(built["files"])).items():
            sp = out / root / SPLIT_NAME
            if sp.read_bytes() != json.dumps(split, indent=1).encode():
                probs.append(f"{sp}: not the text `onthefly export --index {out}` writes (edited?); rerun it")
    return probs
