"""Export: fixed h5 datasets in the anchors' schemas (MPII-NV ``pXX.h5``, XGaze3D ``subjectXXXX.h5``).

What a file holds (the determinism definition, ``docs/export.md``): for subject ``s`` the rows are one pass of

    ds = OnTheFlyGazeDataset(cache, subjects=[s], seed=S, views_per_frame=K, batch_size=B, camera=CAM,
                             image_format="unit", **config)

namely batches ``ds.batch(i, epoch=0)`` for ``i = 0 … ceil(n/B) − 1`` (n = the subject's frames), of which the
first ``min(B, n − i·B)`` samples are kept (the tail of the last batch would start the next pass), flattened
sample-major (sample b, view k → row ``(i·B + b)·K + k``). So every frame of the subject appears exactly K times,
in the order of the epoch-0 frame permutation. Images go through ``round(255·x)`` to uint8 BGR; labels are the
batch's values (float32, stored in the schema's dtype).

Streaming: the main thread renders; a writer thread (bounded queue) writes and compresses, so HDF5 I/O overlaps
rendering. Resumable: each file is written as ``NAME.h5.tmp``; after every batch the rows are flushed and then the
attribute ``rows_done`` is updated and flushed; at the end ``complete`` is set and the file is renamed. Sharded:
``shard=(i, n)`` exports every n-th subject file; ``write_index`` lists all files once they are complete.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__

__all__ = ["SCHEMAS", "KEYS", "ExportError", "ExportSettings", "ExportReport", "export", "plan_files",
           "batch_to_rows", "write_index", "verify_export", "make_camera", "parse_shard", "INDEX_NAME"]

INDEX_NAME = "index.json"
FORMAT = "onthefly-export"
FORMAT_VERSION = 1
#: row keys, in writing order
KEYS = ("face_patch", "face_mask", "face_gaze", "face_head_pose", "face_mat_norm", "rotation_matrix",
        "landmarks_norm", "frame_index", "cam_index")
#: rows per HDF5 chunk of the image datasets (the anchors' one row per chunk: cheap random reads)
IMAGE_CHUNK_ROWS = 1
#: attributes that must match for ``--resume`` to continue a file
_FINGERPRINT = ("format_version", "schema", "subject", "n_rows", "seed", "views_per_frame", "batch_size", "epoch",
                "config", "onthefly_version", "cache_created")
#: config keys that select subjects (the export exports every selected subject, one file each)
_SELECTION = ("subjects", "split", "val_subjects", "val_fraction", "split_seed")
#: config keys the export sets itself or that do not change the rows
_IGNORED = ("epoch_length", "image_format", "device", "tune_malloc")


class ExportError(ValueError):
    """A clear, user-facing export error (names the file or directory and the problem)."""


@dataclass(frozen=True)
class Schema:
    """An output schema: file naming, default image size and the dtype of every key."""

    name: str
    file_format: str  # e.g. "p{:02d}"
    id_pattern: str  # cache subject ids used verbatim as file names when they all match
    default_size: int
    base_camera: str
    cam_base: int  # cam_index of the first view (1: XGaze3D's 1-based cameras)
    dtypes: dict

    def row_shapes(self, H: int, W: int) -> dict[str, tuple]:
        return {"face_patch": (H, W, 3), "face_mask": (H, W), "face_gaze": (2,), "face_head_pose": (2,),
                "face_mat_norm": (3, 3), "rotation_matrix": (3, 3), "landmarks_norm": (68, 2),
                "frame_index": (), "cam_index": ()}


_COMMON = {"face_patch": "uint8", "face_mask": "uint8", "face_mat_norm": "float32", "landmarks_norm": "float32",
           "frame_index": "int64", "cam_index": "int64", "face_gaze": "float64", "rotation_matrix": "float64"}
SCHEMAS = {
    "mpii-nv": Schema("mpii-nv", "p{:02d}", r"p\d+", 224, "xgaze224", 0,
                      {**_COMMON, "face_head_pose": "float64"}),
    "xgaze3d": Schema("xgaze3d", "subject{:04d}", r"subject\d+", 448, "xgaze448", 1,
                      {**_COMMON, "face_head_pose": "float32"}),
}

_CONVENTIONS = {
    "color_order": "BGR",
    "image_layout": "face_patch (N,H,W,3) uint8 BGR (as the anchors and the ETH-XGaze loader: face_patch[..., ::-1] "
                    "is RGB); face_mask (N,H,W) uint8 0..255 (face region: brows to chin, or the mesh coverage for "
                    "caches without face regions)",
    "gaze_convention": "face_gaze (N,2) = (pitch, yaw) radians, ETH-XGaze signs: pitch = asin(-g_y), "
                       "yaw = atan2(-g_x, -g_z) for g the unit vector face centre -> target in the normalized camera; "
                       "pitch > 0 looks up, yaw > 0 looks toward image left",
    "head_pose_convention": "face_head_pose (N,2) = (pitch, yaw) radians of the head in the normalized camera "
                            "(pitch = asin(H[1,2]), yaw = atan2(H[0,2], H[2,2])); pitch > 0 faces up, yaw > 0 faces "
                            "image left; frontal = (0, 0)",
    "face_mat_norm": "rotation source camera -> this normalized view (V); float32",
    "rotation_matrix": "rotation source normalized view -> this view (V . R_src^T, MPII-NV's Q); XGaze3D writes the "
                       "identity here",
    "landmarks_norm": "68 landmarks projected into the normalized image, OpenCV pixels (pixel centres at integers)",
    "frame_index": "cache row of the source frame (views of one frame share it)",
}


def make_camera(schema: Schema, image_size: int | None, camera=None):
    """The normalized camera: ``camera`` (a preset name from the config) or the schema's preset at
    ``image_size`` px (224 → xgaze224, 448 → xgaze448, other sizes rescale the schema's preset: same field of view
    and distance, e.g. 64 px for tests)."""
    from .normalization import NormalizedCamera, get_camera

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
    base = get_camera(schema.base_camera)
    s = size / base.width
    return NormalizedCamera(base.focal * s, base.distance, size, round(base.height * s), f"{base.name}@{size}")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` → (i, n) with 0 <= i < n; None → None."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise ExportError(f"--shard: expected i/n with 0 <= i < n (e.g. 0/2), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def plan_files(all_subjects: list[str], selected: list[str], schema: Schema) -> list[tuple[str, str]]:
    """(file name, cache subject) of every file of the export, sorted by file name.

    The cache's subject ids are used verbatim when every one of them matches the schema's pattern (``p\\d+`` for
    mpii-nv, ``subject\\d+`` for xgaze3d); otherwise a subject is named by its position in the cache's subject list
    (order of first appearance, as ``onthefly cache info`` lists them): ``p00``, ``p01``... / ``subject0000``...
    Either way the name of a subject does not depend on the selection or the shard."""
    verbatim = all(re.fullmatch(schema.id_pattern, s) for s in all_subjects)
    pos = {s: i for i, s in enumerate(all_subjects)}
    out = [((s if verbatim else schema.file_format.format(pos[s])) + ".h5", s) for s in selected]
    if len({f for f, _ in out}) != len(out):
        raise ExportError(f"subject ids map to duplicate file names: {sorted(f for f, _ in out)[:8]}")
    return sorted(out)


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

    def __post_init__(self):
        self.cache, self.out = Path(self.cache), Path(self.out)
        if self.schema not in SCHEMAS:
            raise ExportError(f"--schema: expected one of {sorted(SCHEMAS)}, got {self.schema!r}")
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
    def schema_obj(self) -> Schema:
        return SCHEMAS[self.schema]

    @property
    def batch_size(self) -> int:
        return int(self.config.get("batch_size", 32))

    def camera(self):
        return make_camera(self.schema_obj, self.image_size, self.config.get("camera"))

    def dataset_kwargs(self) -> dict:
        """Keyword arguments of the per-subject datasets, except ``subjects`` (and the shared appearance)."""
        kw = {k: v for k, v in self.config.items() if k not in _SELECTION + _IGNORED + ("camera", "batch_size")}
        if "tune_malloc" in self.config:
            kw["tune_malloc"] = self.config["tune_malloc"]
        return dict(kw, batch_size=self.batch_size, seed=self.seed, views_per_frame=self.views_per_frame,
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


def batch_to_rows(batch: dict, views_per_frame: int, take: int, schema: Schema) -> dict[str, np.ndarray]:
    """The first ``take`` samples of a dataset batch as export rows (sample-major, K views each), in the schema's
    dtypes: images ``round(255·x)`` uint8 BGR (N,H,W,3), masks uint8 (N,H,W), labels as stored."""
    import torch

    K = views_per_frame
    flat = {k: (v[:take].reshape(take * K, *v.shape[2:]) if K > 1 else v[:take])
            for k, v in batch.items() if torch.is_tensor(v)}
    img = flat["image"].mul(255).round_().clamp_(0, 255).to(torch.uint8)
    out = {"face_patch": img.flip(1).permute(0, 2, 3, 1),
           "face_mask": flat["mask"][:, 0].mul(255).round_().clamp_(0, 255).to(torch.uint8),
           "face_gaze": flat["gaze"], "face_head_pose": flat["head_pose"], "face_mat_norm": flat["face_mat_norm"],
           "rotation_matrix": flat["rotation_matrix"], "landmarks_norm": flat["landmarks_2d"],
           "frame_index": flat["frame_index"],
           "cam_index": torch.arange(K).repeat(take) + schema.cam_base}
    return {k: np.ascontiguousarray(out[k].cpu().numpy().astype(schema.dtypes[k], copy=False)) for k in KEYS}


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


def _write_error(path: Path, exc: OSError, out: Path) -> ExportError:
    msg = exc.strerror or str(exc)
    return ExportError(f"{path}: cannot write ({msg}); complete files in {out} are intact: free space or fix "
                       f"permissions, then rerun with --resume")


class _SubjectFile:
    """One subject's ``NAME.h5.tmp``: created or reopened, appended batch by batch, then completed and renamed."""

    def __init__(self, final: Path, attrs: dict, shapes: dict, dtypes: dict, chunk_rows: int, compression: str,
                 progress=None):
        self.final, self.tmp = final, final.with_name(final.name + ".tmp")
        self.attrs, self.shapes, self.dtypes = attrs, shapes, dtypes
        self.chunk_rows, self.compression = chunk_rows, compression
        self.progress = progress
        self.f = None
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
        import h5py

        comp = {} if self.compression == "none" else (
            {"compression": "gzip", "compression_opts": 4} if self.compression == "gzip" else {"compression": "lzf"})
        self.f = f = h5py.File(self.tmp, "w")
        for k, v in self.attrs.items():
            f.attrs[k] = v
        f.attrs["rows_done"] = 0
        f.attrs["complete"] = False
        for k in KEYS:
            shape = self.shapes[k]
            rows = IMAGE_CHUNK_ROWS if k in ("face_patch", "face_mask") else self.chunk_rows
            f.create_dataset(k, shape=(0, *shape), maxshape=(None, *shape), dtype=self.dtypes[k],
                             chunks=(rows, *shape), **comp)
        f.flush()
        self.rows = 0

    def reopen(self, rows: int) -> None:
        self._guard(self._reopen, rows)

    def _reopen(self, rows: int) -> None:
        import h5py

        self.f = h5py.File(self.tmp, "r+")
        self.rows = rows

    def append(self, start: int, rows: dict) -> None:
        self._guard(self._append, start, rows)

    def _append(self, start: int, rows: dict) -> None:
        if start != self.rows:
            raise RuntimeError(f"{self.tmp}: rows out of order ({start} != {self.rows})")
        f, n = self.f, len(rows["face_gaze"])
        for k in KEYS:
            ds = f[k]
            ds.resize(start + n, 0)
            ds[start:start + n] = rows[k]
        f.flush()  # the rows reach the file before the count that declares them
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
        self.f.attrs["complete"] = True
        self.f.close()
        self.f = None
        os.replace(self.tmp, self.final)

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
    import h5py

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
            for k in KEYS:
                if k not in f or f[k].shape[0] < r:
                    raise _Unreadable(f"'{k}' has fewer than the {r} rows declared")
                if f[k].shape[0] > n_rows:  # never written so (and shrinking 2**31 chunks takes minutes: tests/fuzz)
                    raise _Unreadable(f"'{k}' has {f[k].shape[0]} rows, more than the file's {n_rows}")
                a = f[k][:r]
                if a.dtype.kind == "f" and not np.isfinite(a).all():
                    raise _Unreadable(f"'{k}' has non-finite values")
            for k in KEYS:
                f[k].resize(r, 0)
            f.flush()
            return r
    except (ExportError, _Unreadable):
        raise
    except Exception as exc:  # noqa: BLE001 - any HDF5 damage: redo the subject
        raise _Unreadable(f"damaged ({type(exc).__name__}: {exc})") from None


def _read_attrs(path: Path) -> dict:
    from .h5 import open_h5

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
            from tqdm import tqdm

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


def export(settings: ExportSettings, *, shard: tuple[int, int] | None = None, resume: bool = False,
           progress: str = "bar", queue_size: int = 2) -> ExportReport:
    """Export this shard's subjects (``shard`` default: ``RANK``/``WORLD_SIZE`` when set, else everything) and
    write ``index.json`` once every file of the export is complete. See the module docstring."""
    from .cache import MeshCache
    from .dataset import OnTheFlyGazeDataset, distributed_info

    t_start = time.perf_counter()
    st, schema = settings, settings.schema_obj
    if shard is None:
        shard = distributed_info()
    i_shard, n_shard = shard
    _check_out_dir(st.out)
    with MeshCache(st.cache) as mc:
        all_subjects = list(mc.subjects)
        cache_created = _attr_str(mc.attrs.get("created", ""))
    sel = {k: st.config[k] for k in _SELECTION if k in st.config}
    selected = OnTheFlyGazeDataset(st.cache, device="cpu", **sel).subjects if sel else all_subjects
    plan = plan_files(all_subjects, selected, schema)
    mine = plan[i_shard::n_shard]
    cam = st.camera()
    K, B = st.views_per_frame, st.batch_size
    shapes = schema.row_shapes(cam.height, cam.width)
    recorded = json.dumps(st.recorded_config(), sort_keys=True, default=str)
    base_attrs = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "schema": schema.name, "onthefly_version": __version__,
        "seed": st.seed, "views_per_frame": K, "batch_size": B, "epoch": 0, "config": recorded,
        "cache": str(st.cache.resolve()), "cache_created": cache_created,
        "export_files": json.dumps([[f, s] for f, s in plan]),
        "normalized_camera": json.dumps({"name": cam.name, "focal": cam.focal, "distance": cam.distance,
                                         "width": cam.width, "height": cam.height}),
        "cam_index_base": schema.cam_base,
        "cam_index": f"view number k of the frame's K={K} views, {schema.cam_base}-based",
        **_CONVENTIONS,
        "definition": "rows of subject s = one pass of OnTheFlyGazeDataset(cache, subjects=[s], **config): "
                      "ds.batch(i, epoch=0) for i < ceil(n/B), first min(B, n - i*B) samples, flattened "
                      "sample-major (row = (i*B + b)*K + k); images round(255*x) as uint8 BGR (docs/export.md)",
    }
    # counts first (cheap: the cache's frame table), so the bar knows the total
    counts = {}
    with MeshCache(st.cache) as mc:
        for f, s in mine:
            counts[f] = int(len(mc.indices([s])))
    total = sum(counts.values()) * K
    prog = _Progress(progress, total, f"export {st.out.name} shard {i_shard}/{n_shard}")
    writer = _AsyncWriter(queue_size)
    written, skipped, rows_total = [], [], 0
    appearance = None
    current: _SubjectFile | None = None
    try:
        for fname, subject in mine:
            final = st.out / fname
            n_rows = counts[fname] * K
            attrs = dict(base_attrs, subject=subject, file_stem=final.stem, n_rows=n_rows,
                         cache_frames=counts[fname])
            start = _prepare(final, attrs, resume, B * K)
            if start is None:
                skipped.append(fname)
                prog.skip(n_rows)
                continue
            kw = st.dataset_kwargs()
            if appearance is not None:
                kw["appearance"] = appearance  # one background pool for all subjects (same rows)
            ds = OnTheFlyGazeDataset(st.cache, subjects=[subject], **kw)
            appearance = ds.appearance
            assert ds.n_frames == counts[fname], (ds.n_frames, counts[fname])
            current = _SubjectFile(final, attrs, shapes, schema.dtypes, B * K, st.compression, prog)
            if start == 0:
                writer.submit(current.create)
            else:
                writer.submit(current.reopen, start)
                prog.skip(start)
            for i in range(start // (B * K), math.ceil(ds.n_frames / B)):
                take = min(B, ds.n_frames - i * B)
                rows = batch_to_rows(ds.batch(i, 0), K, take, schema)
                writer.submit(current.append, i * B * K, rows)
                rows_total += take * K
            writer.submit(current.finish)
            written.append(fname)
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
    if all((st.out / f).is_file() for f, _ in plan):
        index = write_index(st.out)
    return ExportReport(st.out, written, skipped, rows_total, time.perf_counter() - t_start, index, shard)


def _prepare(final: Path, attrs: dict, resume: bool, rows_per_batch: int) -> int | None:
    """None: the file is complete (skip); else the row to start writing at (0: a new file)."""
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


def _export_files(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*.h5") if p.is_file())


def write_index(out: str | Path) -> Path:
    """Write ``OUT/index.json`` (files, subjects, rows, bytes, sha256, and the shared settings) once every file of
    the export is complete; :class:`ExportError` naming what is missing otherwise. Atomic (temp file + rename)."""
    out = Path(out)
    index = _build_index(out)
    path = out / INDEX_NAME
    tmp = out / f".{INDEX_NAME}.{socket.gethostname()}.{os.getpid()}.tmp"  # shards may finish together
    try:
        tmp.write_text(json.dumps(index, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        raise ExportError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path


def _build_index(out: Path) -> dict:
    """The content of ``index.json`` for the files in ``out`` (see :func:`write_index`)."""
    files = _export_files(out)
    if not files:
        raise ExportError(f"{out}: no exported .h5 files")
    entries, plan, first = [], None, None
    for p in files:
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
            raise ExportError(f"{p}: exported with another configuration than {files[0].name}")
        entries.append({"file": p.name, "subject": _attr_str(a["subject"]), "rows": int(a["n_rows"]),
                        "bytes": p.stat().st_size, "sha256": _sha256(p)})
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
             "onthefly_version": _attr_str(first["onthefly_version"]), "seed": int(first["seed"]),
             "views_per_frame": int(first["views_per_frame"]), "batch_size": int(first["batch_size"]),
             "config": json.loads(_attr_str(first["config"])), "cache": _attr_str(first["cache"]),
             "normalized_camera": json.loads(_attr_str(first["normalized_camera"])),
             "subjects": {e["file"]: e["subject"] for e in entries},
             "total_rows": sum(e["rows"] for e in entries), "files": entries}
    return index


def _verify_file(p: Path, ref: dict | None, block: int = 256) -> tuple[list[str], dict | None]:
    """Problems of one exported file and its attributes."""
    from .h5 import open_h5

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
            for k in ("schema", "config", "seed", "views_per_frame", "onthefly_version"):
                if _attr_str(a.get(k, "")) != _attr_str(ref.get(k, "")):
                    probs.append(f"{p}: attribute {k} differs from the other files")
        cam = json.loads(_attr_str(a.get("normalized_camera", "{}")) or "{}")
        shapes = schema.row_shapes(int(cam.get("height", 0)), int(cam.get("width", 0)))
        K, base = int(a.get("views_per_frame", 1)), schema.cam_base
        for k in KEYS:
            if k not in f:
                probs.append(f"{p}: missing dataset '{k}'")
                continue
            ds = f[k]
            if ds.shape != (n, *shapes[k]):
                probs.append(f"{p}: '{k}' has shape {ds.shape}, expected {(n, *shapes[k])}")
                continue
            if ds.dtype != np.dtype(schema.dtypes[k]):
                probs.append(f"{p}: '{k}' has dtype {ds.dtype}, expected {schema.dtypes[k]}")
            try:
                for s in range(0, n, block):
                    x = ds[s:s + block]
                    if x.dtype.kind == "f" and not np.isfinite(x).all():
                        probs.append(f"{p}: '{k}' has NaN/inf values (rows {s}..{s + len(x) - 1})")
                        break
                    if k == "cam_index" and ((x < base) | (x >= base + K)).any():
                        probs.append(f"{p}: 'cam_index' outside {base}..{base + K - 1}")
                        break
                    if k == "frame_index" and (x < 0).any():
                        probs.append(f"{p}: negative 'frame_index'")
                        break
            except (OSError, RuntimeError, ValueError) as exc:
                probs.append(f"{p}: '{k}' cannot be read ({exc})")
    return probs, a


def verify_export(out: str | Path) -> list[str]:
    """See :func:`_verify_export`; never raises for a damaged export (the damage is a problem naming the path)."""
    try:
        return _verify_export(out)
    except Exception as exc:  # noqa: BLE001 - e.g. an index.json with values of the wrong type (tests/fuzz)
        return [f"{Path(out) / INDEX_NAME}: not a valid export index ({type(exc).__name__}: {str(exc)[:200]})"]


def _verify_export(out: str | Path) -> list[str]:
    """Check an export directory: every file complete with all keys, equal row counts, the schema's shapes and
    dtypes, finite labels, every chunk readable; no ``.tmp`` left; ``index.json`` consistent with the files.
    Returns the problems (``"PATH: problem"``), empty when the export is good."""
    out = Path(out)
    if not out.is_dir():
        return [f"{out}: not a directory"]
    probs: list[str] = []
    for t in sorted(out.glob("*.h5.tmp")):
        probs.append(f"{t}: partial (interrupted) export; rerun onthefly export with --resume")
    files = _export_files(out)
    if not files:
        return probs + [f"{out}: no exported .h5 files"]
    ref, attrs = None, {}
    for p in files:
        try:
            pp, a = _verify_file(p, ref)
        except Exception as exc:  # noqa: BLE001 - any damage the checks do not anticipate is a problem (tests/fuzz)
            pp, a = [f"{p}: damaged ({type(exc).__name__}: {str(exc)[:200]})"], None
        probs += pp
        if a is not None:
            attrs[p.name] = a
            ref = ref or a
    idx_path = out / INDEX_NAME
    if not idx_path.is_file():
        return probs + [f"{idx_path}: missing (run `onthefly export --index {out}` once every shard is done)"]
    try:
        index = json.loads(idx_path.read_text())
        entries = {e["file"]: e for e in index["files"]}
    except (ValueError, KeyError, TypeError) as exc:
        return probs + [f"{idx_path}: not a valid export index ({exc})"]
    for name in sorted(set(entries) - {p.name for p in files}):
        probs.append(f"{out / name}: listed in {INDEX_NAME} but missing")
    for p in files:
        e = entries.get(p.name)
        if e is None:
            probs.append(f"{p}: not listed in {INDEX_NAME}")
            continue
        a = attrs.get(p.name, {})
        if "n_rows" in a and int(e.get("rows", -1)) != int(a["n_rows"]):
            probs.append(f"{p}: {INDEX_NAME} says {e.get('rows')} rows, the file has {a['n_rows']}")
        if int(e.get("bytes", -1)) != p.stat().st_size:
            probs.append(f"{p}: size {p.stat().st_size} differs from {INDEX_NAME} ({e.get('bytes')})")
        elif e.get("sha256") != _sha256(p):
            probs.append(f"{p}: sha256 differs from {INDEX_NAME}")
    if ref is not None and "export_files" in ref:
        plan = {f for f, _ in json.loads(_attr_str(ref["export_files"]))}
        for name in sorted(plan - {p.name for p in files}):
            probs.append(f"{out / name}: part of the export but missing")
    if int(index.get("total_rows", -1)) != sum(int(e.get("rows", 0)) for e in entries.values()):
        probs.append(f"{idx_path}: total_rows does not add up")
    if not probs:  # the files are good: the index must say exactly what write_index says about them
        want = json.loads(json.dumps(_build_index(out)))
        for k in sorted(set(want) | set(index)):
            if index.get(k, None) != want.get(k, None) or (k in index) != (k in want):
                probs.append(f"{idx_path}: '{k}' does not match the files (rerun `onthefly export --index {out}`)")
    return probs
