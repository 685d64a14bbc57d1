"""The mesh cache: one HDF5 file of textured face meshes with exact labels (layout: ``docs/cache-format.md``).

* :func:`build_cache` / :class:`CacheWriter` pack :class:`~onthefly.sources.base.FrameRecord` s into the file.
  Writing goes to ``CACHE.h5.tmp`` and is renamed onto ``CACHE.h5`` only after the root attribute
  ``complete`` is set, so an interrupted build never leaves a file that opens as a cache.
* :class:`MeshCache` opens a cache, selects subjects and loads them onto a device as packed tensors with a handful
  of large contiguous reads (:meth:`MeshCache.load`), or iterates frames as records.
* :func:`validate_cache` checks every record; :func:`cache_info` summarises a file.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, cast

import cv2
import h5py
import numpy as np
import torch
from tqdm import tqdm

from .sources.base import FACE_CENTRE_RULES, FrameRecord, Source, SourceError, check_record
from .structures import Frames

__all__ = ["CACHE_VERSION", "CacheWriter", "BuildReport", "build_cache", "MeshCache", "PackedFrames",
           "validate_cache", "cache_info", "downsample_texture"]

#: value of the root attribute ``onthefly_cache_version``; readers refuse other versions
CACHE_VERSION = 1
_STR = h5py.string_dtype("utf-8")
_CHUNK_ROWS = 1 << 16  # rows per chunk of the packed per-vertex arrays


def downsample_texture(img: np.ndarray, max_size: int | None) -> np.ndarray:
    """Shrink ``img`` (H,W,3) so that its longer side is at most ``max_size`` (``cv2.INTER_AREA``, aspect kept).
    Textures already small enough are returned unchanged; UV coordinates stay valid (they are relative)."""
    if max_size is None or max(img.shape[:2]) <= max_size:
        return img

    h, w = img.shape[:2]
    s = max_size / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.ascontiguousarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA))


def _check_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise ValueError(f"{path}: output directory {parent} does not exist")
    if not parent.is_dir():
        raise ValueError(f"{path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: output directory {parent} is not writable")
    if path.exists() and path.is_dir():
        raise ValueError(f"{path}: is a directory")


class _Packed:
    """A growable packed 1-D or 2-D HDF5 dataset, appended to in large blocks."""

    def __init__(self, group: h5py.Group, name: str, width: int | None, dtype, chunk: int = _CHUNK_ROWS):
        shape = (0,) if width is None else (0, width)
        maxshape = (None,) if width is None else (None, width)
        chunks = (chunk,) if width is None else (chunk, width)
        self.ds = group.create_dataset(name, shape=shape, maxshape=maxshape, dtype=dtype, chunks=chunks)
        self.n = 0
        self._buf: list[np.ndarray] = []
        self._buffered = 0

    def append(self, a: np.ndarray) -> int:
        start = self.n + self._buffered
        self._buf.append(a)
        self._buffered += len(a)
        if self._buffered >= 4 * _CHUNK_ROWS:
            self.flush()
        return start

    def flush(self) -> None:
        if not self._buf:
            return
        block = np.concatenate(self._buf)
        self.ds.resize(self.n + len(block), axis=0)
        self.ds[self.n:self.n + len(block)] = block
        self.n += len(block)
        self._buf, self._buffered = [], 0


def _quality_of(rec: FrameRecord) -> dict[str, float]:
    """``rec.extra["quality"]``: a dict of finite-or-NaN numbers with names usable as HDF5 dataset names."""
    q = rec.extra.get("quality") if rec.extra else None
    if not q:
        return {}
    if not isinstance(q, dict):
        raise SourceError(f"{rec.origin} ({rec.key}): extra['quality'] must be a dict of numbers")
    out = {}
    for k, v in q.items():
        if not isinstance(k, str) or not k or "/" in k or k.startswith("."):
            raise SourceError(f"{rec.origin} ({rec.key}): bad quality name {k!r}")
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            raise SourceError(f"{rec.origin} ({rec.key}): quality {k} is not a number ({v!r})") from None
    return out


class CacheWriter:
    """Write records into a new cache, atomically::

        with CacheWriter("cache.h5", source="procedural") as w:
            for rec in records:
                w.add(rec)
        # cache.h5 now exists, complete; on an exception only cache.h5.tmp was touched (and is removed)

    ``vertex_dtype`` is ``"float32"`` (camera-frame vertices, ``frames/vert_origin`` = 0) or ``"float16"``
    (vertices relative to the frame's face centre, ``frames/vert_origin``: ~0.06 mm precision within 128 mm of it). ``texture_size`` caps the
    longer side of UV textures (``cv2.INTER_AREA``).
    """

    def __init__(self, path: str | Path, *, source: str = "", vertex_dtype: str = "float32",
                 texture_size: int | None = None, attrs: dict | None = None):
        self.path = Path(path)
        if vertex_dtype not in ("float32", "float16"):
            raise ValueError(f"vertex_dtype: expected 'float32' or 'float16', got {vertex_dtype!r}")
        if texture_size is not None and texture_size < 1:
            raise ValueError(f"texture_size: expected a positive int, got {texture_size}")
        _check_writable(self.path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.vertex_dtype, self.texture_size = vertex_dtype, texture_size
        try:
            self._f = h5py.File(self.tmp, "w")
        except OSError as exc:
            raise ValueError(f"{self.path}: cannot create {self.tmp.name} ({exc})") from None
        f = self._f
        f.attrs["onthefly_cache_version"] = CACHE_VERSION
        f.attrs["source"] = source
        f.attrs["vertex_dtype"] = vertex_dtype
        f.attrs["face_centre_rules"] = ",".join(FACE_CENTRE_RULES)
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        self._verts = _Packed(f, "verts", 3, np.dtype(vertex_dtype))
        self._colors = _Packed(f, "vert_colors", 3, np.uint8)
        self._face = _Packed(f, "vert_face_region", None, np.uint8)
        t = f.create_group("topologies")
        self._faces = _Packed(t, "faces", 3, np.int32)
        self._faces_uv = _Packed(t, "faces_uv", 3, np.int32)
        self._uv = _Packed(t, "uv", 2, np.float32)
        self._tex = _Packed(f.create_group("textures"), "data", None, np.uint8, chunk=1 << 20)
        self._topo: dict[bytes, int] = {}
        self._topo_rows: list[tuple] = []   # (face_offset, n_faces, uv_offset, n_uv, n_verts, digest)
        self._tex_rows: list[tuple] = []    # (offset, h, w)
        self._rows: dict[str, list] = {k: [] for k in (
            "subject", "frame", "camera", "origin", "vert_offset", "vert_count", "topology_id", "texture_id",
            "has_vertex_colors", "has_face_region", "vert_origin", "landmarks", "head_rotation", "face_centre",
            "face_centre_rule",
            "gaze_target", "gaze_direction", "K", "image_size")}
        self._quality: dict[str, dict[int, float]] = {}   # name -> {frame index: value}
        self._views: dict[str, list] = {"count": [], "names": [], "R": [], "t": [], "K": []}
        self._closed = False

    # ------------------------------------------------------------------ writing
    def _topology(self, rec: FrameRecord) -> int:
        faces = np.ascontiguousarray(rec.faces, np.int32)
        h = hashlib.sha1(faces.tobytes())
        h.update(np.int64(len(rec.verts)).tobytes())
        fuv = uv = None
        if rec.faces_uv is not None:
            fuv = np.ascontiguousarray(rec.faces_uv, np.int32)
            uv = np.ascontiguousarray(rec.uv, np.float32)
            h.update(b"uv" + fuv.tobytes() + uv.tobytes())
        key = h.digest()
        if key in self._topo:
            return self._topo[key]
        fo = self._faces.append(faces)
        self._faces_uv.append(fuv if fuv is not None else np.full_like(faces, -1))
        uo = self._uv.append(uv) if uv is not None else self._uv.n + self._uv._buffered
        tid = len(self._topo_rows)
        self._topo_rows.append((fo, len(faces), uo, 0 if uv is None else len(uv), len(rec.verts), h.hexdigest()))
        self._topo[key] = tid
        return tid

    def add(self, rec: FrameRecord) -> int:
        """Validate (:func:`~onthefly.sources.base.check_record`) and append one record; returns its index."""
        if self._closed:
            raise RuntimeError("CacheWriter: already closed")
        rec = check_record(rec)
        if self.vertex_dtype == "float16":
            rel = rec.verts.astype(np.float64) - rec.face_centre
            if np.abs(rel).max() > 60000:
                raise SourceError(f"{rec.origin} ({rec.key}): vertices too far from the face centre for float16")
        tid = self._topology(rec)
        texture_id = -1
        if rec.texture is not None:
            tex = downsample_texture(np.ascontiguousarray(rec.texture, np.uint8), self.texture_size)
            off = self._tex.append(tex.reshape(-1))
            texture_id = len(self._tex_rows)
            self._tex_rows.append((off, tex.shape[0], tex.shape[1]))
        # float16 stores vertices relative to the face centre (precision); float32 stores them as they are
        origin = np.asarray(rec.face_centre, np.float64) if self.vertex_dtype == "float16" else np.zeros(3)
        vo = self._verts.append((rec.verts.astype(np.float64) - origin).astype(self.vertex_dtype))
        colors, region = rec.vert_colors, rec.vert_face_region
        has_c, has_f = colors is not None, region is not None
        self._colors.append(colors if colors is not None else np.zeros((len(rec.verts), 3), np.uint8))
        self._face.append(region.astype(np.uint8) if region is not None else np.ones(len(rec.verts), np.uint8))
        r = self._rows
        r["subject"].append(str(rec.subject))
        r["frame"].append(str(rec.frame))
        r["camera"].append(str(rec.camera))
        r["origin"].append(str(rec.origin))
        r["vert_offset"].append(vo)
        r["vert_count"].append(len(rec.verts))
        r["topology_id"].append(tid)
        r["texture_id"].append(texture_id)
        r["has_vertex_colors"].append(has_c)
        r["has_face_region"].append(has_f)
        r["vert_origin"].append(origin)
        r["landmarks"].append(rec.landmarks)
        r["head_rotation"].append(rec.head_rotation)
        r["face_centre"].append(rec.face_centre)
        r["face_centre_rule"].append(FACE_CENTRE_RULES.index(rec.face_centre_rule))
        r["gaze_target"].append(rec.gaze_target if rec.gaze_target is not None else np.full(3, np.nan))
        r["gaze_direction"].append(rec.direction())
        r["K"].append(rec.K)
        r["image_size"].append(rec.image_size)
        v = self._views
        if rec.views is not None:
            v["count"].append(len(rec.views["names"]))
            v["names"] += list(rec.views["names"])
            v["R"].append(rec.views["R"])
            v["t"].append(rec.views["t"])
            v["K"].append(rec.views["K"])
        else:
            v["count"].append(0)
        i = len(r["subject"]) - 1
        for name, value in _quality_of(rec).items():
            self._quality.setdefault(name, {})[i] = value
        return i

    def __len__(self) -> int:
        return len(self._rows["subject"])

    def close(self) -> Path:
        """Write the frame and topology tables, mark the file complete and rename it into place."""
        if self._closed:
            return self.path
        for p in (self._verts, self._colors, self._face, self._faces, self._faces_uv, self._uv, self._tex):
            p.flush()
        f, r = self._f, self._rows
        n = len(r["subject"])
        g = f.create_group("frames")
        for k in ("subject", "frame", "camera", "origin"):
            g.create_dataset(k, data=np.array(r[k], dtype=object), dtype=_STR)
        vo = np.array(r["vert_offset"] + [self._verts.n], np.int64)
        g.create_dataset("vert_offset", data=vo)
        g.create_dataset("topology_id", data=np.array(r["topology_id"], np.int32))
        g.create_dataset("texture_id", data=np.array(r["texture_id"], np.int32))
        g.create_dataset("has_vertex_colors", data=np.array(r["has_vertex_colors"], bool))
        g.create_dataset("has_face_region", data=np.array(r["has_face_region"], bool))
        for k, s in _FRAME_FLOATS.items():
            g.create_dataset(k, data=np.array(r[k], np.float64).reshape(n, *s))
        g.create_dataset("face_centre_rule", data=np.array(r["face_centre_rule"], np.int8))
        g.create_dataset("image_size", data=np.array(r["image_size"], np.int32).reshape(n, 2))
        t = f["topologies"]
        rows = np.array([x[:5] for x in self._topo_rows], np.int64).reshape(-1, 5)
        t.create_dataset("face_offset", data=np.append(rows[:, 0], self._faces.n).astype(np.int64))
        t.create_dataset("uv_offset", data=np.append(rows[:, 2], self._uv.n).astype(np.int64))
        t.create_dataset("uv_count", data=rows[:, 3])
        t.create_dataset("vertex_count", data=rows[:, 4])
        t.create_dataset("hash", data=np.array([x[5] for x in self._topo_rows], dtype=object), dtype=_STR)
        x = f["textures"]
        trows = np.array(self._tex_rows, np.int64).reshape(-1, 3)
        x.create_dataset("offset", data=np.append(trows[:, 0], self._tex.n).astype(np.int64))
        x.create_dataset("shape", data=np.concatenate([trows[:, 1:], np.full((len(trows), 1), 3)], 1)
                         .astype(np.int64))
        if any(self._views["count"]):  # optional real cameras per frame (multi-view sources)
            v = self._views
            vg = f.create_group("views")
            off = np.zeros(n + 1, np.int64)
            np.cumsum(v["count"], out=off[1:])
            vg.create_dataset("offset", data=off)
            vg.create_dataset("names", data=np.array(v["names"], dtype=object), dtype=_STR)
            vg.create_dataset("R", data=np.concatenate(v["R"]).astype(np.float64))
            vg.create_dataset("t", data=np.concatenate(v["t"]).astype(np.float64))
            vg.create_dataset("K", data=np.concatenate(v["K"]).astype(np.float64))
        if self._quality:  # optional per-frame quality numbers (reconstructed sources), NaN where not given
            q = g.create_group("quality")
            for name, vals in sorted(self._quality.items()):
                col = np.full(n, np.nan)
                col[list(vals)] = list(vals.values())
                q.create_dataset(name, data=col)
        f.attrs["n_frames"] = n
        f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        f.attrs["complete"] = True
        f.close()
        os.replace(self.tmp, self.path)
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Discard the temporary file (the destination is never touched)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._f.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@dataclass
class BuildReport:
    """What :func:`build_cache` did: the output path, frames written, (record, reason) pairs skipped, seconds."""

    path: Path
    written: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def build_cache(source: Source, out: str | Path, *, skip_bad: bool = False, vertex_dtype: str = "float32",
                texture_size: int | None = None, progress: bool = False) -> BuildReport:
    """Build a cache from a source: every key is loaded and written in order.

    Bad input raises :class:`SourceError` naming the file and line/record; with ``skip_bad=True`` the record is
    skipped, listed in the report, and everything else is kept. A build with no good record is an error.
    """
    t0 = time.perf_counter()
    keys = list(source.keys())
    if not keys:
        raise SourceError(f"source {getattr(source, 'name', source)!r}: no frames found")
    # records the source itself excluded while listing (e.g. XGaze3D frames whose reconstruction failed)
    skipped: list[tuple[str, str]] = [(str(k), str(r)) for k, r in getattr(source, "excluded", [])]
    n_pre = len(skipped)
    it: Iterable = keys
    if progress:
        it = tqdm(keys, desc="reconstruct", unit="frame")
    with CacheWriter(out, source=getattr(source, "name", ""), vertex_dtype=vertex_dtype,
                     texture_size=texture_size, attrs=getattr(source, "attrs", None)) as w:
        for key in it:
            try:
                w.add(source.load(key))
            except SourceError as exc:
                if not skip_bad:
                    raise
                skipped.append((str(key), str(exc)))
        if len(w) == 0:
            raise SourceError(f"every record was bad ({len(skipped)} skipped); nothing written")
        if skipped:  # the reasons travel with the file (JSON list of [record, reason])
            w._f.attrs["skipped_records"] = json.dumps(skipped)
    return BuildReport(Path(out), len(keys) - (len(skipped) - n_pre), skipped, time.perf_counter() - t0)


# ====================================================================================================== layout
#: per-frame float64 tables ``frames/<name>`` (N, *shape): written by CacheWriter, checked by every reader
_FRAME_FLOATS = {"vert_origin": (3,), "landmarks": (68, 3), "head_rotation": (3, 3), "face_centre": (3,),
                 "gaze_target": (3,), "gaze_direction": (3,), "K": (3, 3)}
#: every dataset of the layout (docs/cache-format.md): path -> (dtype kinds, shape in the symbolic sizes N frames,
#: V vertices, F faces, U uv rows, T topologies, D texture bytes, X textures, M views; "N1" = N + 1), required
_LAYOUT: dict[str, tuple[str, tuple, bool]] = {
    "verts": ("f", ("V", 3), True), "vert_colors": ("u", ("V", 3), True), "vert_face_region": ("ub", ("V",), False),
    **{f"frames/{k}": ("S", ("N",), True) for k in ("subject", "frame", "camera", "origin")},
    "frames/vert_offset": ("iu", ("N1",), True), "frames/topology_id": ("iu", ("N",), True),
    "frames/texture_id": ("i", ("N",), True), "frames/has_vertex_colors": ("bui", ("N",), True),
    "frames/has_face_region": ("bui", ("N",), False),
    **{f"frames/{k}": ("f", ("N", *s), True) for k, s in _FRAME_FLOATS.items()},
    "frames/face_centre_rule": ("iu", ("N",), True), "frames/image_size": ("iu", ("N", 2), True),
    "topologies/faces": ("iu", ("F", 3), True), "topologies/faces_uv": ("iu", ("F", 3), True),
    "topologies/uv": ("f", ("U", 2), True), "topologies/face_offset": ("iu", ("T1",), True),
    "topologies/uv_offset": ("iu", ("T1",), True), "topologies/vertex_count": ("iu", ("T",), True),
    "textures/data": ("u", ("D",), True), "textures/offset": ("iu", ("X1",), True),
    "textures/shape": ("iu", ("X", 3), True),
    "views/offset": ("iu", ("N1",), False), "views/names": ("S", ("M",), False), "views/R": ("f", ("M", 3, 3), False),
    "views/t": ("f", ("M", 3), False), "views/K": ("f", ("M", 3, 3), False),
}
_SIZES = {"N": "frames/subject", "V": "verts", "F": "topologies/faces", "U": "topologies/uv",
          "T": "topologies/vertex_count", "D": "textures/data", "X": "textures/shape", "M": "views/names"}


def _kind_ok(ds: h5py.Dataset, kinds: str) -> bool:
    if kinds == "S":
        return h5py.check_string_dtype(ds.dtype) is not None
    if kinds in ("u",) and ds.dtype.kind == "u":
        return ds.dtype.itemsize == 1  # uint8 colours, texture bytes
    return ds.dtype.kind in kinds and ds.dtype.fields is None


def _offsets_problem(name: str, a: np.ndarray, end: int, strict: bool) -> str | None:
    if len(a) == 0 or a[0] != 0 or a[-1] != end or (np.diff(a) <= 0 if strict else np.diff(a) < 0).any():
        return f"{name} is not {'increasing' if strict else 'non-decreasing'} from 0 to {end}"
    return None


def _structure_problems(f: h5py.File) -> list[str]:
    """The layout checks every reader makes on opening (O(frames + topologies + textures), no per-vertex read):
    every dataset present (the optional ones: all or none of a group) with its dtype and shape, offsets tables
    running from 0 to the packed size, topology / texture ids in range, textured frames with UV coordinates.
    Returns problems (empty: the tables can be read without indexing out of range)."""
    probs: list[str] = []
    has_vfr, has_flag = "vert_face_region" in f, "frames/has_face_region" in f
    if has_vfr != has_flag:
        probs.append(f"{'vert_face_region' if has_vfr else 'frames/has_face_region'} without "
                     f"{'frames/has_face_region' if has_vfr else 'vert_face_region'}")
    views = "views" in f
    need = [k for k, (_, _, req) in _LAYOUT.items() if req or (k.startswith("views/") and views)]
    missing = [k for k in need if k not in f or not isinstance(f[k], h5py.Dataset)]
    if missing:
        return [f"missing datasets {missing}"] + probs
    sizes = {}
    for s, k in _SIZES.items():
        if k in f and f[k].ndim >= 1:
            sizes[s] = f[k].shape[0]
    sizes.update({s + "1": v + 1 for s, v in list(sizes.items())})
    for k, (kinds, shape, _) in _LAYOUT.items():
        if k not in f:
            continue
        ds = f[k]
        want = tuple(sizes.get(d, -1) if isinstance(d, str) else d for d in shape)
        if not _kind_ok(ds, kinds):
            probs.append(f"{k} has dtype {ds.dtype}, expected {'a string' if kinds == 'S' else 'a ' + kinds + ' kind'}")
        if ds.shape != want:
            what = " (one row per vertex)" if k == "vert_face_region" else ""
            probs.append(f"{k} has shape {ds.shape}, expected {want}{what}")
    q = f.get("frames/quality")
    if isinstance(q, h5py.Group):
        for k in q:
            if not isinstance(q[k], h5py.Dataset) or q[k].shape != (sizes["N"],) or q[k].dtype.kind != "f":
                probs.append(f"frames/quality/{k} must be ({sizes['N']},) float")
    if probs:
        return probs
    N, V, T, X = sizes["N"], sizes["V"], sizes["T"], sizes["X"]
    for name, end, strict in (("frames/vert_offset", V, True), ("topologies/face_offset", sizes["F"], True),
                              ("topologies/uv_offset", sizes["U"], False), ("textures/offset", sizes["D"], False)) + \
            ((("views/offset", sizes["M"], False),) if views else ()):
        p = _offsets_problem(name, f[name][()], end, strict)
        if p:
            probs.append(p)
    if probs:
        return probs
    tid, xid = f["frames/topology_id"][()], f["frames/texture_id"][()]
    for name, ids, lo, hi in (("frames/topology_id", tid, 0, T), ("frames/texture_id", xid, -1, X)):
        out = np.flatnonzero((ids < lo) | (ids >= hi))
        if len(out):
            probs.append(f"{name} {ids[out[0]]} of frame {out[0]} outside [{lo}, {hi}) ({len(out)} frames)")
    xs, xo = f["textures/shape"][()], f["textures/offset"][()]
    badx = np.flatnonzero((xs <= 0).any(1) | (xs[:, 2] != 3) | (np.diff(xo) != np.prod(xs, 1)))
    if len(badx):
        probs.append(f"texture {badx[0]}: shape {tuple(xs[badx[0]])} does not match its "
                     f"{xo[badx[0] + 1] - xo[badx[0]]} bytes")
    if not probs and N:
        nu = np.diff(f["topologies/uv_offset"][()])
        tex = np.flatnonzero((xid >= 0) & (nu[tid] == 0))
        if len(tex):
            probs.append(f"frame {tex[0]} has a texture but its topology has no UV coordinates ({len(tex)} frames)")
    return probs


def _view_problems(R: np.ndarray, t: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Indices of the views whose R is not a rotation, t not finite or K not an intrinsics matrix."""
    if len(R) == 0:
        return np.zeros(0, np.int64)
    with np.errstate(invalid="ignore", over="ignore"):
        fin = np.isfinite(R).all((1, 2))
        R0 = np.where(fin[:, None, None], R, 0)
        err = np.abs(R0 @ R0.transpose(0, 2, 1) - np.eye(3)).max((1, 2))
        det = np.linalg.det(R0)
        return np.flatnonzero(~fin | ~(err < 1e-5) | ~(det > 0) | ~np.isfinite(t).all(1) | ~np.isfinite(K).all((1, 2)))


def _label_problems(rows: dict[str, np.ndarray]) -> list[tuple[int, str]]:
    """(frame row, problem) of the per-frame labels (``rows``: the ``frames/*`` tables of the frames read, plus
    ``texture_id``), vectorised: what a reader must refuse to hand out (the same rules as ``check_record``)."""
    out: list[tuple[int, str]] = []

    def add(mask, msg):
        out.extend((int(i), msg if isinstance(msg, str) else msg(i)) for i in np.flatnonzero(mask))

    n = len(rows["landmarks"])
    add(~np.isfinite(rows["landmarks"]).all((1, 2)), "landmarks contain NaN or inf")
    hR = rows["head_rotation"]
    with np.errstate(invalid="ignore", over="ignore"):
        fin = np.isfinite(hR).all((1, 2))
        hR0 = np.where(fin[:, None, None], hR, 0)
        err = np.abs(hR0 @ hR0.transpose(0, 2, 1) - np.eye(3)).max((1, 2)) if n else np.zeros(0)
        det = np.linalg.det(hR0) if n else np.zeros(0)
        add(~fin | ~(err < 1e-5) | ~(det > 0), "head_rotation is not a rotation matrix")
        add(~np.isfinite(rows["vert_origin"]).all(1), "vert_origin contains NaN or inf")
        fc = rows["face_centre"]
        add(~np.isfinite(fc).all(1) | ~(fc[:, 2] > 0), "face_centre must be finite with z > 0")
        rule = rows["face_centre_rule"]
        add((rule < 0) | (rule >= len(FACE_CENTRE_RULES)), lambda i: f"face_centre_rule {rule[i]} unknown")
        gd, gt = rows["gaze_direction"], rows["gaze_target"]
        add(~(np.abs(np.linalg.norm(gd, axis=1) - 1) < 1e-6), "gaze_direction is not a unit vector")
        has_t = np.isfinite(gt).all(1)
        d = gt - fc
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        add(has_t & ~((d * gd).sum(1) > 1 - 1e-9), "gaze_direction does not point from the face centre to the "
                                                   "gaze target")
        add(~has_t & ~np.isnan(gt).all(1), "gaze_target partly NaN")
        K = rows["K"]
        add(~(K[:, 0, 0] > 0) | ~(K[:, 1, 1] > 0) | ~(np.abs(K[:, 2] - [0, 0, 1]).max(1) < 1e-9),
            "K is not a valid intrinsics matrix")
    add((rows["image_size"] <= 0).any(1), "image_size must be positive")
    add(~rows["has_vertex_colors"].astype(bool) & (rows["texture_id"] < 0),
        "no texture: neither vertex colours nor a UV texture")
    return out


# ====================================================================================================== reading
@dataclass
class PackedFrames:
    """Frames loaded onto a device as packed tensors (see :meth:`MeshCache.load`).

    Per vertex (total_V rows): ``verts`` (float32 or the requested dtype, camera frame mm), ``vert_colors`` uint8.
    ``vert_offsets`` (n+1,) int64: frame i owns rows ``vert_offsets[i]:vert_offsets[i+1]``; ``vert_frame`` (total_V,)
    the frame of each vertex (a property, computed on first use). Topologies: ``faces[t]`` (F_t,3) int64 (0-based within the frame),
    ``uv[t]``/``faces_uv[t]`` (or None); ``topology_id`` (n,) indexes them. Textures: ``textures[x]`` (H,W,3) uint8,
    ``texture_id`` (n,) (-1: vertex colours). Per frame: ``landmarks`` (n,68,3), ``head_rotation`` (n,3,3),
    ``face_centre`` (n,3), ``face_centre_rule`` (n,) index into ``FACE_CENTRE_RULES``, ``gaze_target`` (n,3) (NaN
    where only a direction is known), ``gaze_direction`` (n,3), ``K`` (n,3,3), ``image_size`` (n,2) (w, h);
    ``index`` (n,) the frames' indices in the cache; ``subject``/``frame``/``camera`` lists of str.
    ``vert_face_region`` (total_V,) bool: the face vertices (brows to chin, no hair/ears/neck), or None when no
    loaded frame has a face region (frames without one count as all face); ``has_face_region`` (n,) bool (None
    for caches written before face regions were stored).
    Real cameras (multi-view sources; all None when the cache stores none): ``view_offsets`` (n+1,) int64, frame
    i owns views ``view_offsets[i]:view_offsets[i+1]`` of ``view_R`` (M,3,3) / ``view_t`` (M,3) (frame camera →
    view camera, mm), ``view_K`` (M,3,3); ``view_names[i]`` the camera names of frame i.
    """

    verts: torch.Tensor
    vert_colors: torch.Tensor
    vert_offsets: torch.Tensor
    faces: list[torch.Tensor]
    uv: list[torch.Tensor | None]
    faces_uv: list[torch.Tensor | None]
    topology_id: torch.Tensor
    textures: list[torch.Tensor]
    texture_id: torch.Tensor
    has_vertex_colors: torch.Tensor
    landmarks: torch.Tensor
    head_rotation: torch.Tensor
    face_centre: torch.Tensor
    face_centre_rule: torch.Tensor
    gaze_target: torch.Tensor
    gaze_direction: torch.Tensor
    K: torch.Tensor
    image_size: torch.Tensor
    index: torch.Tensor
    subject: list[str]
    frame: list[str]
    camera: list[str]
    vert_face_region: torch.Tensor | None = None
    has_face_region: torch.Tensor | None = None
    view_offsets: torch.Tensor | None = None
    view_R: torch.Tensor | None = None
    view_t: torch.Tensor | None = None
    view_K: torch.Tensor | None = None
    view_names: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.index)

    @property
    def vert_frame(self) -> torch.Tensor:
        """(total_V,) int64: the loaded frame each vertex belongs to (computed on first use)."""
        if getattr(self, "_vert_frame", None) is None:
            counts = self.vert_offsets.diff()
            self._vert_frame = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
        return self._vert_frame

    def packed_faces(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All frames' triangles indexing the packed ``verts`` (total_F,3) int64, and ``face_offsets`` (n+1,):
        frame i owns rows ``face_offsets[i]:face_offsets[i+1]`` (one batched add per topology)."""
        dev = self.vert_offsets.device
        sizes = torch.tensor([len(f) for f in self.faces], dtype=torch.int64, device=dev)
        per_frame = sizes[self.topology_id] if len(self.faces) else torch.zeros(0, dtype=torch.int64, device=dev)
        face_offsets = torch.zeros(len(self) + 1, dtype=torch.int64, device=dev)
        torch.cumsum(per_frame, 0, out=face_offsets[1:])
        out = torch.empty((int(face_offsets[-1]), 3), dtype=torch.int64, device=dev)
        for t, f in enumerate(self.faces):
            frames = (self.topology_id == t).nonzero().squeeze(1)
            if len(frames) == 0:
                continue
            rows = face_offsets[frames][:, None] + torch.arange(len(f), device=dev)
            out[rows.reshape(-1)] = (f[None] + self.vert_offsets[frames][:, None, None]).reshape(-1, 3)
        return out, face_offsets

    def frame_verts(self, i: int) -> torch.Tensor:
        """Vertices of the i-th loaded frame (a view into ``verts``)."""
        return self.verts[self.vert_offsets[i]:self.vert_offsets[i + 1]]


def _runs(idx: np.ndarray) -> list[tuple[int, int]]:
    """Sorted unique ints → list of half-open contiguous ranges."""
    if len(idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.r_[idx[0], idx[breaks + 1]]
    ends = np.r_[idx[breaks], idx[-1]] + 1
    return list(zip(starts.tolist(), ends.tolist()))


def _read_ranges(ds: h5py.Dataset, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    parts = [ds[a:b] for a, b in ranges if b > a]
    if not parts:
        return np.zeros((0,) + ds.shape[1:], ds.dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _strs(ds) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in ds[()]]


def _damaged(method):
    """A structural failure while reading (a missing or retyped dataset, an offset out of range) becomes a
    ``ValueError`` naming the cache file, as every other cache error (found by the fuzz campaign, tests/fuzz)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kw):
        try:
            return method(self, *args, **kw)
        except (FileNotFoundError, IndexError) as exc:
            if isinstance(exc, FileNotFoundError) or str(exc).startswith("frame "):
                raise  # the documented "no such cache" / "frame i out of range"
            raise ValueError(f"{self.path}: damaged cache ({type(exc).__name__}: {str(exc)[:200]}); check it with "
                             f"`onthefly cache validate {self.path}`") from None
        except (KeyError, TypeError, ValueError, OSError, RuntimeError, AttributeError) as exc:
            if isinstance(exc, ValueError) and str(self.path) in str(exc):
                raise
            if method.__name__ == "__init__":
                self.close()
            raise ValueError(f"{self.path}: damaged cache ({type(exc).__name__}: {str(exc)[:200]}); check it with "
                             f"`onthefly cache validate {self.path}`") from None
    return wrapper


#: files whose layout passed :func:`_structure_problems` in this process, by (device, inode, size, mtime ns): an
#: export or a training run opens one cache several times, and the check is a third of a subject's set-up. A file
#: rewritten, replaced or touched since gets a new key and is checked again; a file modified less than
#: ``_LAYOUT_SETTLE_NS`` ago is never remembered (the kernel's file clock is coarse: a write within its tick could
#: keep the old time). Bounded, oldest forgotten first.
_LAYOUT_OK: dict[tuple[int, int, int, int], None] = {}
_LAYOUT_OK_MAX = 256
_LAYOUT_SETTLE_NS = 2_000_000_000


def _layout_problems_once(f: h5py.File) -> list[str]:
    """:func:`_structure_problems` of the open file ``f``, skipped when this very file (same identity,
    size and modification time) already passed in this process. Only clean results are remembered."""
    try:  # the open file's own descriptor: a file renamed over ``path`` since the open is not mistaken for it
        st = os.fstat(f.id.get_vfd_handle())
        key: tuple[int, int, int, int] | None = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    except (OSError, ValueError, TypeError):
        key = None
    if key is not None and key in _LAYOUT_OK:
        return []
    probs = _structure_problems(f)
    if not probs and key is not None and time.time_ns() - key[3] > _LAYOUT_SETTLE_NS:
        if len(_LAYOUT_OK) >= _LAYOUT_OK_MAX:
            _LAYOUT_OK.pop(next(iter(_LAYOUT_OK)))
        _LAYOUT_OK[key] = None
    return probs


class MeshCache:
    """A cache file opened for reading (a context manager; also closes on garbage collection).

    ``len(cache)`` frames; ``cache.subjects`` (in file order); ``cache.indices(subjects)``; ``cache[i]`` and
    ``iter(cache)`` give :class:`FrameRecord` s (camera frame, float32 verts); ``cache.load(subjects, device)``
    gives :class:`PackedFrames` read with a few large contiguous slices per selected subject run.
    """

    #: refuse a file whose layout is damaged on opening (off only for the validator's :class:`_LayoutUnchecked`)
    _refuse_damaged_layout = True

    @_damaged
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            tmp = self.path.with_name(self.path.name + ".tmp")
            hint = f" (found {tmp.name}: an interrupted or running build)" if tmp.exists() else ""
            raise FileNotFoundError(f"{self.path}: no such cache{hint}")
        try:
            self._f = h5py.File(self.path, "r")
        except OSError as exc:
            raise ValueError(f"{self.path}: not an HDF5 file ({exc})") from None
        a = self._f.attrs
        if "onthefly_cache_version" not in a:
            self._f.close()
            raise ValueError(f"{self.path}: not an onthefly cache (no onthefly_cache_version attribute)")
        if int(a["onthefly_cache_version"]) != CACHE_VERSION:
            v = int(a["onthefly_cache_version"])
            self._f.close()
            raise ValueError(f"{self.path}: cache version {v}, this onthefly reads version {CACHE_VERSION}")
        if not bool(a.get("complete", False)):
            self._f.close()
            raise ValueError(f"{self.path}: incomplete cache (the build was interrupted); rebuild it")
        if self._refuse_damaged_layout:  # the layout (cheap, per table): a damaged file is refused, not half-read later
            probs = _layout_problems_once(self._f)
            if probs:
                self._f.close()
                more = f"; and {len(probs) - 1} more problem(s)" if len(probs) > 1 else ""
                raise ValueError(f"{self.path}: damaged cache ({probs[0]}{more}); check it with "
                                 f"`onthefly cache validate {self.path}`")
        fr = self._f["frames"]
        self._subject = np.array(_strs(fr["subject"]))
        _, first = np.unique(self._subject, return_index=True)
        self._subjects = [str(self._subject[i]) for i in sorted(first)]
        t, x = self._f["topologies"], self._f["textures"]
        self._fo, self._uo = t["face_offset"][()], t["uv_offset"][()]
        self._xo, self._xshape = x["offset"][()], x["shape"][()]
        self.vertex_dtype = str(a["vertex_dtype"])
        self.source = str(a.get("source", ""))
        self._vo = fr["vert_offset"][()]
        self._tid = fr["topology_id"][()]
        self._xid = fr["texture_id"][()]
        # caches written before face regions were stored have neither dataset: treated as absent
        self._has_face = fr["has_face_region"][()].astype(bool) \
            if "has_face_region" in fr and "vert_face_region" in self._f else None

    # ------------------------------------------------------------------ basics
    def close(self) -> None:
        if getattr(self, "_f", None) is not None and self._f.id.valid:
            self._f.close()

    def __enter__(self) -> "MeshCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __len__(self) -> int:
        return len(self._subject)

    @property
    def attrs(self) -> dict:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in self._f.attrs.items()}

    @property
    def subjects(self) -> list[str]:
        """Distinct subjects in order of first appearance."""
        return list(self._subjects)

    @property
    def n_topologies(self) -> int:
        return len(self._f["topologies/vertex_count"])

    @property
    def n_textures(self) -> int:
        return len(self._f["textures/shape"])

    def indices(self, subjects: str | Iterable[str] | None = None) -> np.ndarray:
        """Sorted frame indices of the given subject(s) (all frames for None); unknown subjects are an error."""
        if subjects is None:
            return np.arange(len(self))
        if isinstance(subjects, str):
            subjects = [subjects]
        subjects = [str(s) for s in subjects]
        known = set(self.subjects)
        missing = [s for s in subjects if s not in known]
        if missing:
            raise ValueError(f"{self.path}: unknown subject(s) {missing}; the cache has {sorted(known)}")
        return np.flatnonzero(np.isin(self._subject, subjects))

    # ------------------------------------------------------------------ per frame
    @_damaged
    def __getitem__(self, i: int) -> FrameRecord:
        if not -len(self) <= i < len(self):
            raise IndexError(f"frame {i} out of range for {len(self)} frames")
        i = int(i) % len(self)
        f, fr = self._f, self._f["frames"]
        a, b = int(self._vo[i]), int(self._vo[i + 1])
        origin = fr["vert_origin"][i]
        verts = (f["verts"][a:b].astype(np.float64) + origin).astype(np.float32)
        tid = int(self._tid[i])
        t = f["topologies"]
        fo = t["face_offset"][tid:tid + 2]
        faces = t["faces"][fo[0]:fo[1]].astype(np.int64)
        uv = faces_uv = texture = None
        xid = int(self._xid[i])
        if xid >= 0:
            uo = t["uv_offset"][tid:tid + 2]
            uv = t["uv"][uo[0]:uo[1]]
            faces_uv = t["faces_uv"][fo[0]:fo[1]].astype(np.int64)
            texture = self._texture(xid)
        gt = fr["gaze_target"][i]
        r = int(fr["face_centre_rule"][i])
        if not 0 <= r < len(FACE_CENTRE_RULES):
            self._refuse(i, f"face_centre_rule {r} unknown")
        rule = FACE_CENTRE_RULES[r]
        rec = FrameRecord(
            verts=verts, faces=faces, landmarks=fr["landmarks"][i], head_rotation=fr["head_rotation"][i],
            face_centre=fr["face_centre"][i], face_centre_rule=rule, K=fr["K"][i],
            image_size=cast("tuple[int, int]", tuple(int(v) for v in fr["image_size"][i])),  # check_record: 2 values
            subject=str(self._subject[i]),
            frame=_strs(fr["frame"][i:i + 1])[0], camera=_strs(fr["camera"][i:i + 1])[0],
            gaze_target=None if np.isnan(gt).any() else gt, gaze_direction=fr["gaze_direction"][i],
            vert_colors=f["vert_colors"][a:b] if fr["has_vertex_colors"][i] else None,
            vert_face_region=f["vert_face_region"][a:b].astype(bool)
            if self._has_face is not None and self._has_face[i] else None,
            uv=uv, faces_uv=faces_uv, texture=texture, origin=_strs(fr["origin"][i:i + 1])[0],
            views=self._views_of(i), extra=self._quality_row(i))
        try:  # the record a source would have had to pass (shapes, finite values, index ranges, rotations)
            return check_record(rec)
        except SourceError as exc:
            msg, where = str(exc), f"{rec.where}: "
            self._refuse(i, msg[len(where):] if msg.startswith(where) else msg)

    def _refuse(self, i: int, problem: str) -> NoReturn:
        """Raise the damaged-cache error naming the file and frame ``i`` (its subject/frame/camera)."""
        fr = self._f["frames"]
        key = "/".join(x for x in (str(self._subject[i]), *(_strs(fr[k][i:i + 1])[0] for k in ("frame", "camera")))
                       if x)
        raise ValueError(f"{self.path}: damaged cache: frame {i} ({key}): {problem}; check it with "
                         f"`onthefly cache validate {self.path}`")

    def _views_of(self, i: int) -> dict | None:
        """The real cameras of frame i (``views`` of its record), or None."""
        v = self._f.get("views")
        if v is None:
            return None
        a, b = (int(x) for x in v["offset"][i:i + 2])
        if a == b:
            return None
        return {"names": _strs(v["names"][a:b]), "R": v["R"][a:b], "t": v["t"][a:b], "K": v["K"][a:b]}

    def _quality_row(self, i: int) -> dict:
        """``{"quality": {name: value}}`` of frame i from ``frames/quality/*`` (non-NaN values), or {}."""
        q = self._f["frames"].get("quality")
        if q is None:
            return {}
        vals = {k: float(q[k][i]) for k in q}
        vals = {k: v for k, v in vals.items() if not np.isnan(v)}
        return {"quality": vals} if vals else {}

    def quality(self) -> dict[str, np.ndarray]:
        """Per-frame quality columns ``frames/quality/*`` (N,) float64 (NaN = not given); {} when none."""
        q = self._f["frames"].get("quality")
        return {} if q is None else {k: q[k][()] for k in q}

    def _texture(self, xid: int) -> np.ndarray:
        x = self._f["textures"]
        off = x["offset"][xid:xid + 2]
        return x["data"][off[0]:off[1]].reshape(tuple(int(s) for s in x["shape"][xid]))

    def __iter__(self) -> Iterator[FrameRecord]:
        for i in range(len(self)):
            yield self[i]

    # ------------------------------------------------------------------ bulk load
    @_damaged
    def load(self, subjects: str | Iterable[str] | None = None, device: str | torch.device = "cpu", *,
             dtype: torch.dtype = torch.float32, indices: Sequence[int] | None = None,
             label_dtype: torch.dtype | None = None) -> PackedFrames:
        """Load the frames of ``subjects`` (all for None), or explicit sorted ``indices``, onto ``device``.

        Vertices and the per-frame labels come as ``dtype`` (default float32); ``label_dtype`` (e.g. float64)
        overrides it for the labels and views (landmarks, head rotation, face centre, gaze, K).

        Reads one contiguous slice of each packed array per run of consecutive frames (a subject is one run when
        its frames were written together, as every built-in source does), one slice of the per-frame tables, and
        the used topologies / textures in contiguous runs. Vertices are rebuilt as ``stored + vert_origin`` on
        the device.
        """
        idx = self.indices(subjects) if indices is None else np.unique(np.asarray(indices, np.int64))
        if len(idx) and (idx[0] < 0 or idx[-1] >= len(self)):
            raise IndexError(f"indices out of range for {len(self)} frames")
        device = torch.device(device)
        f, fr = self._f, self._f["frames"]
        runs = _runs(idx)
        vo = self._vo
        vranges = [(int(vo[a]), int(vo[b])) for a, b in runs]
        counts = (vo[idx + 1] - vo[idx]).astype(np.int64)
        verts = _read_ranges(f["verts"], vranges)
        colors = _read_ranges(f["vert_colors"], vranges)
        frame_rows = {k: _read_ranges(fr[k], runs) for k in (
            "vert_origin", "landmarks", "head_rotation", "face_centre", "face_centre_rule", "gaze_target",
            "gaze_direction", "K", "image_size", "has_vertex_colors")}
        ids = {k: [s.decode() if isinstance(s, bytes) else str(s) for s in _read_ranges(fr[k], runs)]
               for k in ("frame", "camera")}
        # topologies and textures: remap the used ids to 0..n-1
        used_t, tid_new = np.unique(self._tid[idx], return_inverse=True)
        t = f["topologies"]
        fo_all, uo_all = self._fo, self._uo
        faces_block = _read_ranges(t["faces"], [(int(fo_all[a]), int(fo_all[b])) for a, b in _runs(used_t)])
        xid_sel = self._xid[idx]
        used_x, xid_inv = np.unique(xid_sel[xid_sel >= 0], return_inverse=True)
        uv_list: list = []
        fuv_list: list = []
        faces_list: list = []
        pos = 0
        textured_t = set(self._tid[idx][xid_sel >= 0].tolist())
        fuv_block = _read_ranges(t["faces_uv"], [(int(fo_all[a]), int(fo_all[b])) for a, b in _runs(used_t)]) \
            if textured_t else None
        uv_block = _read_ranges(t["uv"], [(int(uo_all[a]), int(uo_all[b])) for a, b in _runs(used_t)]) \
            if textured_t else None
        upos = 0
        for tid in used_t.tolist():
            nf = int(fo_all[tid + 1] - fo_all[tid])
            nu = int(uo_all[tid + 1] - uo_all[tid])
            faces_list.append(torch.from_numpy(faces_block[pos:pos + nf].astype(np.int64)).to(device))
            if tid in textured_t and nu:
                assert fuv_block is not None and uv_block is not None  # read when any frame is textured
                fuv_list.append(torch.from_numpy(fuv_block[pos:pos + nf].astype(np.int64)).to(device))
                uv_list.append(torch.from_numpy(uv_block[upos:upos + nu]).to(device))
            else:
                fuv_list.append(None)
                uv_list.append(None)
            pos += nf
            upos += nu
        xo_all, xshape = self._xo, self._xshape
        tex_block = _read_ranges(f["textures/data"], [(int(xo_all[a]), int(xo_all[b])) for a, b in _runs(used_x)])
        textures, p = [], 0
        for xid in used_x.tolist():
            n = int(xo_all[xid + 1] - xo_all[xid])
            textures.append(torch.from_numpy(tex_block[p:p + n].reshape(tuple(int(s) for s in xshape[xid])))
                            .to(device))
            p += n
        texture_id = np.full(len(idx), -1, np.int64)
        texture_id[xid_sel >= 0] = xid_inv
        self._check_loaded(idx, counts, verts, colors, frame_rows, used_t, faces_list, uv_list, fuv_list)
        # vertices back into the camera frame, on the device
        offsets = np.zeros(len(idx) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        origin = torch.from_numpy(frame_rows["vert_origin"]).to(device=device, dtype=dtype)
        v = torch.from_numpy(verts).to(device=device, dtype=dtype)
        if not frame_rows["vert_origin"].any():  # float32 caches store camera-frame vertices: nothing to add
            pass
        elif len(idx) and (counts == counts[0]).all():  # one vertex count (shared topology): broadcast, no gather
            v.view(len(idx), int(counts[0]), 3).add_(origin[:, None])
        elif len(idx):
            v.add_(torch.repeat_interleave(origin, torch.from_numpy(counts).to(device), dim=0))
        tens = (lambda a, dt=torch.float64: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dt))
        face = has_face = None
        if self._has_face is not None:
            hf = self._has_face[idx]
            has_face = tens(hf, torch.bool)
            if hf.any():
                fr_np = _read_ranges(f["vert_face_region"], vranges).astype(bool)
                if not hf.all():  # frames without a face region count as all face
                    fr_np |= np.repeat(~hf, counts)
                face = torch.from_numpy(fr_np).to(device)
        lab = dtype if label_dtype is None else label_dtype
        views: dict[str, Any] = {}
        vg = f.get("views")
        if vg is not None:
            voff = vg["offset"][()]
            vcount = (voff[idx + 1] - voff[idx]).astype(np.int64)
            vr = [(int(voff[a]), int(voff[b])) for a, b in runs]
            names = _strs(vg["names"])
            vo_new = np.zeros(len(idx) + 1, np.int64)
            np.cumsum(vcount, out=vo_new[1:])
            vR, vt, vK = (_read_ranges(vg[k], vr) for k in ("R", "t", "K"))
            bad = _view_problems(vR, vt, vK)
            if len(bad):
                self._refuse(int(idx[np.searchsorted(vo_new, bad[0], side="right") - 1]),
                             f"view {bad[0]}: R is not a rotation or t, K not finite")
            views = dict(view_offsets=tens(vo_new, torch.int64), view_R=tens(vR, lab),
                         view_t=tens(vt, lab), view_K=tens(vK, lab),
                         view_names=[names[int(voff[i]):int(voff[i + 1])] for i in idx])
        return PackedFrames(
            verts=v, vert_colors=torch.from_numpy(colors).to(device), vert_offsets=tens(offsets, torch.int64),
            faces=faces_list, uv=uv_list, faces_uv=fuv_list,
            topology_id=tens(tid_new.astype(np.int64), torch.int64), textures=textures,
            texture_id=tens(texture_id, torch.int64),
            has_vertex_colors=tens(frame_rows["has_vertex_colors"], torch.bool),
            landmarks=tens(frame_rows["landmarks"], lab), head_rotation=tens(frame_rows["head_rotation"], lab),
            face_centre=tens(frame_rows["face_centre"], lab),
            face_centre_rule=tens(frame_rows["face_centre_rule"], torch.int64),
            gaze_target=tens(frame_rows["gaze_target"], lab),
            gaze_direction=tens(frame_rows["gaze_direction"], lab), K=tens(frame_rows["K"], lab),
            image_size=tens(frame_rows["image_size"], torch.int64), index=tens(idx, torch.int64),
            subject=[str(s) for s in self._subject[idx]], frame=ids["frame"], camera=ids["camera"],
            vert_face_region=face, has_face_region=has_face, **views)

    def load_frames(self, subjects: str | Iterable[str] | None = None, device: str | torch.device = "cpu", *,
                    label_dtype: torch.dtype | None = None, views: bool = False):
        """:meth:`load` the frames of ``subjects`` and build their :class:`~onthefly.structures.Frames` (padded
        vertices, topologies, textures, float64 labels with the source normalization; the real cameras with
        ``views=True``), what the dataset renders from. ``subjects`` (in the given order) index
        ``labels.subject_index``."""
        order = [subjects] if isinstance(subjects, str) else list(self.subjects if subjects is None else subjects)
        pf = self.load(order, device=device, label_dtype=label_dtype)
        return Frames.from_packed(pf, order, views=views, source=str(self.path))

    def _check_loaded(self, idx, counts, verts, colors, frame_rows, used_t, faces, uv, faces_uv) -> None:
        """What :meth:`load` read, checked before it is handed out (one vectorised pass; the layout was checked on
        opening): finite vertices, per-frame labels (:func:`_label_problems`), face and UV indices in range of
        every frame that uses the topology. Raises the damaged-cache error naming the file and the first frame."""
        if len(idx) == 0:
            return
        if verts.dtype.kind != "f" or colors.dtype != np.uint8:
            raise ValueError(f"{self.path}: damaged cache (verts {verts.dtype}, vert_colors {colors.dtype})")
        if not np.isfinite(verts).all():  # one flat pass; the per-vertex mask only to name the damaged frame
            bad_v = ~np.isfinite(verts).all(1)
            starts = np.zeros(len(idx) + 1, np.int64)
            np.cumsum(counts, out=starts[1:])
            self._refuse(int(idx[np.searchsorted(starts, np.flatnonzero(bad_v)[0], side="right") - 1]),
                         "vertices contain NaN or inf")
        rows = dict(frame_rows, texture_id=self._xid[idx])
        probs = _label_problems(rows)
        if probs:
            self._refuse(int(idx[probs[0][0]]), probs[0][1])
        tid = self._tid[idx]
        for k, t in enumerate(used_t.tolist()):
            fr_t = np.flatnonzero(tid == t)
            n_v = int(counts[fr_t].min())
            f = faces[k]
            if len(f) == 0 or int(f.min()) < 0 or int(f.max()) >= n_v:
                self._refuse(int(idx[fr_t[0]]), f"face indices of topology {t} outside [0, {n_v})")
            if uv[k] is not None:
                if int(faces_uv[k].min()) < 0 or int(faces_uv[k].max()) >= len(uv[k]):
                    self._refuse(int(idx[fr_t[0]]), f"faces_uv indices of topology {t} outside [0, {len(uv[k])})")
                if not bool(torch.isfinite(uv[k]).all()):
                    self._refuse(int(idx[fr_t[0]]), f"UV coordinates of topology {t} contain NaN or inf")

    # ------------------------------------------------------------------ summary
    def info(self) -> dict:
        """Counts, sizes, subjects and topology sharing (what ``onthefly cache info`` prints)."""
        f = self._f
        names, counts = np.unique(self._subject, return_counts=True)
        per_subject = dict(zip(names.tolist(), counts.tolist()))
        tcount = np.bincount(self._tid, minlength=self.n_topologies) if len(self) else np.zeros(0, int)
        return {
            "path": str(self.path), "version": int(f.attrs["onthefly_cache_version"]), "source": self.source,
            "created": str(f.attrs.get("created", "")), "frames": len(self),
            "subjects": {s: per_subject[s] for s in self.subjects},
            "vertices": int(f["verts"].shape[0]), "vertex_dtype": self.vertex_dtype,
            "topologies": self.n_topologies, "frames_per_topology_max": int(tcount.max()) if len(tcount) else 0,
            "faces_stored": int(f["topologies/faces"].shape[0]),
            "faces_referenced": int(sum(int(tcount[t]) * int(n) for t, n in enumerate(
                np.diff(f["topologies/face_offset"][()])))),
            "textures": self.n_textures, "texture_bytes": int(f["textures/data"].shape[0]),
            "vertex_colour_frames": int(f["frames/has_vertex_colors"][()].sum()),
            "face_region_frames": int(self._has_face.sum()) if self._has_face is not None else 0,
            "view_frames": int((np.diff(f["views/offset"][()]) > 0).sum()) if "views" in f else 0,
            "views": int(f["views/names"].shape[0]) if "views" in f else 0,
            "skipped_records": len(json.loads(f.attrs["skipped_records"])) if "skipped_records" in f.attrs else 0,
            "quality_median": {k: float(np.nanmedian(v)) for k, v in self.quality().items() if np.isfinite(v).any()},
            "file_bytes": self.path.stat().st_size,
            "bytes_per_frame": self.path.stat().st_size / max(1, len(self)),
        }


def cache_info(path: str | Path) -> dict:
    """:meth:`MeshCache.info` of the file at ``path``."""
    with MeshCache(path) as c:
        return c.info()


# ====================================================================================================== validation
def validate_cache(path: str | Path, *, max_problems: int = 100) -> list[str]:
    """See :func:`_validate_cache`; a structural failure the checks do not anticipate (a missing or retyped
    dataset) is reported as one problem naming the file, never raised."""
    try:
        problems = _validate_cache(path, max_problems=max_problems)
        if not problems:  # the checks passed: every record must also read (a dataset the checks do not look at)
            with MeshCache(path) as c:
                for i in range(len(c)):
                    c[i]
        return problems
    except (KeyError, IndexError, TypeError, ValueError, OSError, RuntimeError, AttributeError) as exc:
        return [f"{path}: damaged cache ({type(exc).__name__}: {str(exc)[:200]})"]


class _LayoutUnchecked(MeshCache):
    """A cache opened without refusing a damaged layout: the validator's view, which lists the layout problems
    itself (:func:`_structure_problems`) beside the records' (reading a frame still checks it)."""

    _refuse_damaged_layout = False


def _validate_cache(path: str | Path, *, max_problems: int = 100) -> list[str]:
    """Check every record of a cache; returns a list of problems (empty: valid), each naming the file or frame.

    Checks: version/completeness, the layout (:func:`_structure_problems`: datasets, dtypes, shapes, offsets, ids;
    what every reader checks on opening), face-region values, per-frame vertex counts against the topology, face
    and UV index ranges, finite vertices and the per-frame labels (:func:`_label_problems`: landmarks, rotations
    (orthonormal, det +1), face centre in front of the camera, unit gaze directions consistent with the targets,
    intrinsics), identifiers, the real cameras of multi-view frames.
    """
    try:
        c = _LayoutUnchecked(path)
    except (ValueError, FileNotFoundError) as exc:
        return [str(exc)]
    with c:
        layout = [f"{path}: {p}" for p in _structure_problems(c._f)]
        try:
            problems = _record_problems(c, path, max_problems)
        except (KeyError, IndexError, TypeError, ValueError, OSError, RuntimeError, AttributeError):
            if not layout:
                raise
            problems = []  # the layout problems explain it
    return (layout + problems)[:max(max_problems, len(layout))]


def _record_problems(c: MeshCache, path, max_problems: int) -> list[str]:
    problems: list[str] = []
    f = c._f
    n = len(c)
    fr = f["frames"]
    names = _strs(fr["subject"]), _strs(fr["frame"]), _strs(fr["camera"])

    def bad(i, msg):
        if len(problems) < max_problems:
            key = "/".join(p for p in (names[0][i], names[1][i], names[2][i]) if p)
            problems.append(f"frame {i} ({key}): {msg}")

    vo = c._vo
    # only the vertex rows some frame owns are scanned: a file declaring 2**31 rows (a resized, lazily allocated
    # dataset, already a layout problem) would otherwise be read as 8 GiB of fill values (fuzz cache-validate: 27 s)
    nV = max(0, min(f["verts"].shape[0], int(vo[-1]) if len(vo) else 0))
    if "vert_face_region" in f:
        ds = f["vert_face_region"]
        if ds.ndim == 1:
            for a in range(0, min(ds.shape[0], nV), 1 << 22):
                if (ds[a:min(a + (1 << 22), nV)] > 1).any():
                    problems.append(f"{path}: vert_face_region has values other than 0 and 1")
                    break
    t = f["topologies"]
    fo, vc = t["face_offset"][()], t["vertex_count"][()]
    uo = t["uv_offset"][()]
    nT = len(vc)
    # per-topology checks, once each
    for tid in range(nT):
        faces = t["faces"][fo[tid]:fo[tid + 1]]
        if len(faces) == 0 or faces.min() < 0 or faces.max() >= vc[tid]:
            problems.append(f"topology {tid}: face indices outside [0, {vc[tid]})")
        fuv = t["faces_uv"][fo[tid]:fo[tid + 1]]
        nu = uo[tid + 1] - uo[tid]
        if nu and (fuv.min() < 0 or fuv.max() >= nu):
            problems.append(f"topology {tid}: faces_uv indices outside [0, {nu})")
        uv = t["uv"][uo[tid]:uo[tid + 1]]
        if nu and not np.isfinite(uv).all():
            problems.append(f"topology {tid}: UV coordinates contain NaN or inf")
    tid = c._tid
    ok_t = (tid >= 0) & (tid < nT)
    for i in np.flatnonzero(ok_t & (np.diff(vo) != vc[np.clip(tid, 0, max(nT - 1, 0))])).tolist():
        bad(i, f"{vo[i + 1] - vo[i]} vertices but topology {tid[i]} expects {vc[tid[i]]}")
    # vertices: chunked scan for non-finite values
    step = 1 << 20
    bad_frames = set()
    for a in range(0, nV, step):
        v = f["verts"][a:min(a + step, nV)]
        bad_rows = np.flatnonzero(~np.isfinite(v).all(1))
        if len(bad_rows):
            bad_frames.update((np.searchsorted(vo, bad_rows + a, side="right") - 1).tolist())
    for i in sorted(bad_frames):
        bad(i, "vertices contain NaN or inf")
    # per-frame labels, vectorised (the rules every reader applies)
    rows = {k: fr[k][()] for k in (*_FRAME_FLOATS, "face_centre_rule", "image_size", "has_vertex_colors")}
    for i, msg in _label_problems(dict(rows, texture_id=c._xid)):
        bad(i, msg)
    for i in range(n):
        if not names[0][i] or not names[1][i]:
            bad(i, "empty subject or frame id")
    if "views" in f:  # optional real cameras per frame
        vg = f["views"]
        off = vg["offset"][()]
        for m in _view_problems(vg["R"][()], vg["t"][()], vg["K"][()]):
            bad(int(np.searchsorted(off, m, side="right") - 1), f"view {m}: R is not a rotation or t not finite")
    return problems
