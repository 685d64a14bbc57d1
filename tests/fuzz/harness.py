"""Fuzz campaign over every reader of a file a user hands in: one table, ``READERS``, reader name → how to write a
valid sample, which file of it to mutate and how, the call, and the validity check of an accepted result.

Each input is a fresh copy of the reader's valid sample with one file mutated (seeded: ``random.Random((seed,
reader, i))``, so every input can be regenerated from its number). The call must either return a result that
passes the reader's check (**accepted**), or raise the project's documented error (``ValueError`` and its
subclasses ``SourceError`` / ``ExportError``, or ``FileNotFoundError``) whose message names the input (its path,
or its file name) (**refused**). Anything else is **other**: another exception, an error that does not name the
file, an accepted result that fails the check, more than ``time_limit`` seconds (``_Hang``), a MemoryError under
the address-space cap, or a reader that changed or left files behind (read-only readers must leave the input as
it was; ``export-resume`` may only truncate or remove the partial file).

Adding a reader is one entry in ``READERS`` (``Reader(name, setup, target, kind, call, check)``).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import signal
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import mutate as M

DOCUMENTED = (ValueError, FileNotFoundError)  # SourceError, ExportError are ValueErrors


class _Hang(BaseException):
    """Raised by the per-input alarm (a BaseException: a reader's ``except Exception`` cannot swallow it)."""


@dataclass
class Reader:
    name: str
    setup: Callable[[Path], dict]  # writes the valid sample under the folder; returns a context (paths, values)
    target: str  # the file (relative to the sample folder) that is mutated; "*" = a random file of the folder
    kind: str  # text | json | jsonl | yaml | bytes | ply-binary | h5 | npy | image
    call: Callable[[Path, dict], Any]  # (sample folder copy, context) -> result
    check: Callable[[Any, Path, dict], None]  # raises AssertionError when an accepted result is invalid
    writes: bool = False  # the reader may edit its input (resume); otherwise the folder must stay unchanged
    problems: bool = False  # returns a list of problems instead of raising (verify / validate)
    named_by_caller: bool = False  # problems name the record; the command line prints them under the file name


# ============================================================================================ valid samples
def _tiny_record(i=0, uv=False):
    from cache.helpers import tiny_record

    return tiny_record(i, uv=uv, n_verts=70)


def _setup_obj(d: Path) -> dict:
    from onthefly.meshio import write_obj

    r = _tiny_record()
    write_obj(d / "m.obj", r.verts, r.faces, r.vert_colors)
    return {}


def _setup_obj_textured(d: Path) -> dict:
    from onthefly.meshio import write_textured_obj

    r = _tiny_record(uv=True)
    write_textured_obj(d / "m.obj", r.verts, r.faces, r.uv, r.faces_uv, r.texture)
    return {}


def _setup_ply(binary: bool):
    def setup(d: Path) -> dict:
        from onthefly.meshio import write_ply

        r = _tiny_record()
        write_ply(d / "m.ply", r.verts, r.faces, r.vert_colors, binary=binary)
        return {}
    return setup


def _sidecar(rec) -> dict:
    return {"K": rec.K.tolist(), "image_size": list(rec.image_size), "head_rotation": rec.head_rotation.tolist(),
            "landmarks": rec.landmarks.tolist(), "gaze_target": rec.gaze_target.tolist(),
            "face_centre_rule": rec.face_centre_rule, "subject": rec.subject, "frame": rec.frame}


def _setup_sidecar(d: Path) -> dict:
    from onthefly.meshio import write_obj

    r = _tiny_record()
    write_obj(d / "m.obj", r.verts, r.faces, r.vert_colors)
    (d / "m.json").write_text(json.dumps(_sidecar(r)))
    return {}


_K = [[1000.0, 0, 320], [0, 1000.0, 240], [0, 0, 1]]
_LM = (np.random.default_rng(0).uniform(250, 350, (68, 2))).round(2).tolist()


def _setup_manifest(d: Path) -> dict:
    rows = [{"defaults": {"K": _K, "subject": "p00", "dist": [0.1, 0, 0, 0, 0]}},
            {"image": "a/b.png", "gaze_target": [0, 0, 100], "landmarks": _LM, "image_size": [640, 480]},
            {"image": "c.jpg", "frame": "f2", "gaze_pitchyaw": [0.0, 0.3], "subject": "p01", "head_rvec": [0, 0.2, 0],
             "face_centre": [0, 0, 600], "face_centre_rule": "eye_mouth", "face_box": [10, 10, 200, 220]},
            {"image": "d.jpg", "gaze_direction": [0.0, 0.6, -0.8],
             "head_rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}]
    (d / "frames.jsonl").write_text("# frames\n" + "\n".join(json.dumps(r) for r in rows) + "\n")
    return {}


def _setup_camera_xml(d: Path) -> dict:
    import cv2

    fs = cv2.FileStorage(str(d / "cam00.xml"), cv2.FILE_STORAGE_WRITE)
    fs.write("Camera_Matrix", np.array(_K))
    fs.write("Distortion_Coefficients", np.array([[-0.05, 0.02, 0.0, 0.0, 0.0]]))
    fs.write("cam_rotation", cv2.Rodrigues(np.array([0.05, -0.1, 0.02]))[0])
    fs.write("cam_translation", np.array([[10.0], [-20.0], [30.0]]))
    fs.release()
    return {}


def _setup_face_model(d: Path) -> dict:
    np.savetxt(d / "face_model.txt", np.random.default_rng(1).normal(0, 40, (50, 3)), fmt="%.9f")
    return {}


_SHARED: dict[str, Any] = {}


def _nums(rng, n, lo=-100.0, hi=100.0) -> list[str]:
    return [f"{x:.6f}" for x in rng.uniform(lo, hi, n)]


def _setup_xgaze_csv(fields: int):
    """An ETH-XGaze annotation (149 fields) or XGaze3D updated annotation (249 fields): 2 frames x 3 cameras."""
    def setup(d: Path) -> dict:
        rng = np.random.default_rng(fields)
        rows = []
        for fr in ("frame0000", "frame0001"):
            for cam in ("cam00", "cam01", "cam02"):
                rows.append(",".join([fr, f"{cam}.JPG", *_nums(rng, 2, 0, 4000), *_nums(rng, 3, -300, 300),
                                      *_nums(rng, 3, -0.5, 0.5), *_nums(rng, 3, 500, 900),
                                      *_nums(rng, fields - 13, 0, 4000)]))
        (d / "subject0000.csv").write_text("\n".join(rows) + "\n")
        return {"fields": fields}
    return setup


def _setup_light_meta(d: Path) -> dict:
    (d / "light_meta.yaml").write_text("subject0000:\n  full_light_frame_end_idx: 5\nsubject0003:\n"
                                       "  full_light_frame_end_idx: 12\n")
    return {}


def _setup_mpii_txt(d: Path) -> dict:
    rng = np.random.default_rng(2)
    lines = []
    for i in range(4):
        lm = [str(int(v)) for v in rng.integers(200, 900, 12)]
        lines.append(" ".join([f"day01/{i + 1:04d}.jpg", *[str(int(v)) for v in rng.integers(0, 1280, 2)], *lm,
                               *_nums(rng, 3, -0.3, 0.3), *_nums(rng, 3, -50, 600), *_nums(rng, 3, -50, 600),
                               *_nums(rng, 3, -300, 300), "left" if i % 2 else "right"]))
    (d / "p00.txt").write_text("\n".join(lines) + "\n")
    return {}


def _setup_camera_mat(d: Path) -> dict:
    import scipy.io

    scipy.io.savemat(d / "Camera.mat", {"cameraMatrix": np.array(_K), "distCoeffs": np.array([[-0.1, 0.2, 0, 0, 0.]]),
                                        "retval": 0.4, "rvecs": np.zeros((3, 1)), "tvecs": np.zeros((3, 1))})
    return {}


def _setup_openface(d: Path) -> dict:
    np.savetxt(d / "OpenFace.txt", np.random.default_rng(3).normal(0, 40, (68, 3)), fmt="%.6f")
    return {}


def _setup_source_supply(d: Path) -> dict:
    import h5py

    with h5py.File(d / "p00.h5", "w") as f:
        f["file_name"] = np.array([f"p00/day01/{i + 1:04d}.jpg".encode() for i in range(5)])
        f["landmarks_2d_detect"] = np.random.default_rng(4).uniform(100, 600, (5, 68, 2))
    return {}


def _setup_cache(d: Path) -> dict:
    from cache.helpers import ListSource

    from onthefly.cache import build_cache

    build_cache(ListSource([_tiny_record(0), _tiny_record(1, uv=True)]), d / "cache.h5")
    return {}


def _proc_cache(base: Path) -> Path:
    if "proc" not in _SHARED:
        from onthefly.cache import build_cache
        from onthefly.sources.procedural import ProceduralSource

        base.mkdir(parents=True, exist_ok=True)
        build_cache(ProceduralSource(count=4, seed=0, subjects=2), base / "proc.h5")
        _SHARED["proc"] = base / "proc.h5"
    return _SHARED["proc"]


def _export_settings(cache, out):
    from onthefly.export import ExportSettings

    return ExportSettings(cache, out, 3, 2, image_size=16, device="cpu",
                          config={"batch_size": 1, "appearance": "plain"})


def _setup_export(d: Path) -> dict:
    from onthefly.export import export

    cache = _proc_cache(d.parent.parent / "_proc_shared")
    export(_export_settings(cache, d / "x"), progress="none")
    for p in (d / "x").iterdir():
        p.rename(d / p.name)
    (d / "x").rmdir()
    return {"sha": {p.name: _sha(p) for p in d.iterdir()}}


def _setup_partial(d: Path) -> dict:
    import h5py

    from onthefly.export import SCHEMAS, rows_crc

    KEYS = SCHEMAS["mpii-nv"].keys
    ctx = _setup_export(d)
    for p in list(d.iterdir()):
        if p.name != "p00.h5":
            p.unlink()
    with h5py.File(d / "p00.h5", "r") as f:
        attrs = {k: v for k, v in f.attrs.items() if k not in ("rows_done", "complete")}
        rows = {k: f[k][()] for k in KEYS}
    with h5py.File(d / "p00.h5", "r+") as f:  # one batch of 2 rows written, not complete: an interrupted export
        f.attrs["complete"] = False
        f.attrs["rows_done"] = 2
        f.attrs["rows_crc"] = rows_crc({k: v[:2] for k, v in rows.items()}, KEYS, {k: f[k].dtype for k in KEYS})
        for k in KEYS:
            f[k].resize(3, 0)  # a row beyond rows_done (flushed, not yet declared)
    (d / "p00.h5").rename(d / "p00.h5.tmp")
    return {**ctx, "attrs": attrs, "rows": rows}


def _setup_h5_dataset(d: Path) -> dict:
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(d / "subject0000.h5", "w") as f:
        f["face_patch"] = rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8)
        f["face_gaze"] = rng.uniform(-0.5, 0.5, (6, 2)).astype(np.float32)
        f["face_head_pose"] = rng.uniform(-0.5, 0.5, (6, 2)).astype(np.float32)
        f["face_mask"] = rng.integers(0, 255, (6, 16, 16), dtype=np.uint8)
        f["frame_index"] = np.arange(6)
        f["face_mat_norm"] = np.tile(np.eye(3, dtype=np.float32), (6, 1, 1))
    return {}


def _setup_config(d: Path) -> dict:
    (d / "dataset.yaml").write_text("batch_size: 4\nviews_per_frame: 2\nappearance: plain\n"
                                    "target: {type: gaussian, std: 15}\nmax_rotation_deg: 60\n"
                                    "camera: xgaze224\nval_fraction: 0.25\n")
    return {}


def _setup_backgrounds(d: Path) -> dict:
    import cv2

    rng = np.random.default_rng(0)
    (d / "sub").mkdir()
    cv2.imwrite(str(d / "a.png"), rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    cv2.imwrite(str(d / "b.jpg"), rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))
    cv2.imwrite(str(d / "sub" / "c.png"), rng.integers(0, 255, (40, 18, 3), dtype=np.uint8))
    return {}


def _poses() -> np.ndarray:
    return np.random.default_rng(0).uniform(-0.6, 0.6, (12, 2))


def _setup_poses_txt(d: Path) -> dict:
    np.savetxt(d / "poses.csv", _poses(), delimiter=",", fmt="%.6f", header="pitch,yaw")
    return {}


def _setup_poses_npy(d: Path) -> dict:
    np.save(d / "poses.npy", _poses())
    return {}


def _setup_poses_h5(d: Path) -> dict:
    import h5py

    with h5py.File(d / "poses.h5", "w") as f:
        f["face_head_pose"] = _poses().astype(np.float32)
    return {}


# ============================================================================================ calls and checks
def _check_mesh(m, d, ctx) -> None:
    v, f = np.asarray(m.verts), np.asarray(m.faces)
    assert v.ndim == 2 and v.shape[1] == 3 and len(v) > 0 and np.isfinite(v).all(), "verts"
    assert f.ndim == 2 and f.shape[1] == 3 and len(f) > 0 and f.dtype.kind == "i", "faces"
    assert f.min() >= 0 and f.max() < len(v), "face index range"
    if getattr(m, "colors", None) is not None:
        c = np.asarray(m.colors)
        assert c.shape == v.shape and c.dtype == np.uint8, "colours"
    uv, fuv = getattr(m, "uv", None), getattr(m, "faces_uv", None)
    if uv is not None:
        uv = np.asarray(uv)
        assert uv.ndim == 2 and uv.shape[1] == 2 and np.isfinite(uv).all(), "uv"
        assert fuv is not None and np.asarray(fuv).shape == f.shape, "faces_uv"
        assert np.asarray(fuv).min() >= 0 and np.asarray(fuv).max() < len(uv), "uv index range"


def _check_record(rec, d, ctx) -> None:
    from onthefly.sources.base import check_record

    check_record(rec)  # the project's own validator: raising here means an invalid record was accepted


def _call_manifest(d, ctx):
    from onthefly.reconstruct.manifest import read_manifest

    return read_manifest(d / "frames.jsonl")


def _check_manifest(entries, d, ctx) -> None:
    assert entries, "no entries"
    for e in entries:
        for k in ("K", "dist", "gaze_target", "gaze_direction", "landmarks", "face_box", "head_rotation",
                  "face_centre"):
            a = getattr(e, k)
            assert a is None or (isinstance(a, np.ndarray) and np.isfinite(a).all()), k
        assert e.K.shape == (3, 3) and isinstance(e.subject, str) and e.subject, "K / subject"
        assert e.gaze_target is not None or e.gaze_direction is not None, "gaze"


def _check_camera(c, d, ctx) -> None:
    assert c.K.shape == (3, 3) and c.R.shape == (3, 3) and c.t.shape == (3,)
    assert all(np.isfinite(v).all() for v in (c.K, c.dist, c.R, c.t))
    assert abs(np.linalg.det(c.R) - 1) < 1e-3


def _reader_call(fn_name: str, file: str, **kw):
    """A call of ``onthefly.sources.readers.<fn_name>(d / file)`` (the real-layout readers: path -> value)."""
    def call(d, ctx):
        from onthefly.sources import readers

        return getattr(readers, fn_name)(d / file, **kw)
    return call


def _check_rows(rows, d, ctx) -> None:
    assert rows, "no rows"
    for row in rows.values():
        for k, v in vars(row).items():
            if isinstance(v, np.ndarray):
                assert np.isfinite(v).all(), k


def _check_light_meta(m, d, ctx) -> None:
    assert m and all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in m.items())


def _check_camera_mat(kd, d, ctx) -> None:
    K, dist = kd
    assert K.shape == (3, 3) and np.isfinite(K).all() and np.isfinite(dist).all()


def _check_supply(sup, d, ctx) -> None:
    assert len(sup.file_name) == len(sup.landmarks) and sup.landmarks.shape[1:] == (68, 2)
    assert np.isfinite(sup.landmarks).all()


def _call_cache(d, ctx):
    from onthefly.cache import MeshCache

    with MeshCache(d / "cache.h5") as c:
        recs = [c[i] for i in range(len(c))]
        packed = c.load(c.subjects, "cpu")
    return recs, packed


def _check_cache(res, d, ctx) -> None:
    recs, packed = res
    assert recs, "no frames"
    for r in recs:
        _check_record(r, d, ctx)


def _call_validate(d, ctx):
    from onthefly.cache import validate_cache

    return validate_cache(d / "cache.h5")


def _check_validated(problems, d, ctx) -> None:
    _check_cache(_call_cache(d, ctx), d, ctx)  # a cache that validates must read


def _call_h5(d, ctx):
    from onthefly.h5 import H5GazeDataset

    ds = H5GazeDataset(d / "subject0000.h5")
    return ds, ds.take(np.arange(len(ds))) if len(ds) else None


def _check_h5(res, d, ctx) -> None:
    ds, b = res
    assert len(ds) > 0 and b is not None
    img = b["image"]
    assert img.ndim == 4 and img.shape[1] == 3 and bool(((img >= 0) & (img <= 1)).all()), "image"
    assert b["gaze"].shape == (len(ds), 2), "gaze"


def _call_verify(d, ctx):
    from onthefly.export import verify_export

    return verify_export(d)


def _check_verified(problems, d, ctx) -> None:
    got = {p.name: _sha(p) for p in d.iterdir()}
    assert got == ctx["sha"], "verify_export passed an export whose files changed"


def _call_resume(d, ctx):
    from onthefly.export import _prepare

    attrs = dict(ctx["attrs"])
    return _prepare(d / "p00.h5", attrs, True, 2)


def _check_resume(start, d, ctx) -> None:
    import h5py

    from onthefly.export import SCHEMAS

    KEYS = SCHEMAS["mpii-nv"].keys
    n = int(ctx["attrs"]["n_rows"])
    assert isinstance(start, int) and 0 <= start <= n, f"start {start!r}"
    tmp = d / "p00.h5.tmp"
    if start == 0:
        assert not tmp.exists(), "redo without removing the damaged partial file"
        return
    assert start % 2 == 0 or start == n, "start not on a batch boundary"
    with h5py.File(tmp, "r") as f:
        for k in KEYS:
            a = f[k][()]
            assert a.shape[0] == start, f"{k}: {a.shape[0]} rows kept, resume starts at {start}"
            assert np.array_equal(a, ctx["rows"][k][:start], equal_nan=False), \
                f"{k}: the kept rows differ from the rows written (resume would keep corrupted rows)"


def _call_config(d, ctx):
    from onthefly.commands.preview import load_config

    return load_config(d / "dataset.yaml")


def _check_config(cfg, d, ctx) -> None:
    from onthefly.config import dataset_parameters

    assert isinstance(cfg, dict) and set(cfg) <= set(dataset_parameters())
    json.dumps(cfg, default=str)  # recordable (the export stores the config as JSON)


def _setup_train_config(d: Path) -> dict:
    import shutil as _sh

    _sh.copy(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml", d / "train.yaml")
    return {}


def _call_train_config(d, ctx):
    from onthefly.train.cli import read_config

    return read_config(d / "train.yaml")


def _check_train_config(cfg, d, ctx) -> None:
    from onthefly.train.cli import CONFIG_KEYS

    assert isinstance(cfg, dict) and set(cfg) <= set(CONFIG_KEYS)
    assert all(cfg.get(k) is None or isinstance(cfg[k], dict) for k in ("trainer", "model", "data"))


def _call_backgrounds(d, ctx):
    from onthefly.augment import BackgroundPool

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BackgroundPool(d, 16)


def _check_backgrounds(pool, d, ctx) -> None:
    import torch

    im = pool.images
    assert im.dtype == torch.uint8 and im.ndim == 4 and tuple(im.shape[1:]) == (16, 16, 3) and len(im) >= 1


def _call_poses(name):
    def call(d, ctx):
        from onthefly.poses import load_pose_rows

        return load_pose_rows(d / name)
    return call


def _check_poses(t, d, ctx) -> None:
    import math

    a = t.numpy()
    assert a.ndim == 2 and a.shape[1] == 2 and len(a) > 0 and np.isfinite(a).all()
    assert np.abs(a).max() <= 2 * math.pi


def _obj_call(name):
    def call(d, ctx):
        from onthefly.meshio import read_mesh

        return read_mesh(d / name)
    return call


def _call_sidecar(d, ctx):
    from onthefly.sources.base import check_record
    from onthefly.sources.mesh import load_mesh_frame

    return check_record(load_mesh_frame(d / "m.obj"))  # as the cache build reads a frame


def _check_model(shape):
    def check(a, d, ctx) -> None:
        assert a.shape == shape and np.isfinite(a).all()
    return check


# ============================================================================================ the table
READERS: dict[str, Reader] = {r.name: r for r in [
    Reader("obj", _setup_obj, "m.obj", "text", _obj_call("m.obj"), _check_mesh),
    Reader("obj-textured", _setup_obj_textured, "m.obj", "text", _obj_call("m.obj"), _check_mesh),
    Reader("mtl", _setup_obj_textured, "m.mtl", "text", _obj_call("m.obj"), _check_mesh),
    Reader("ply-ascii", _setup_ply(False), "m.ply", "text", _obj_call("m.ply"), _check_mesh),
    Reader("ply-binary", _setup_ply(True), "m.ply", "ply-binary", _obj_call("m.ply"), _check_mesh),
    Reader("mesh-sidecar-json", _setup_sidecar, "m.json", "json", _call_sidecar, _check_record),
    Reader("manifest-jsonl", _setup_manifest, "frames.jsonl", "jsonl", _call_manifest, _check_manifest),
    Reader("xgaze-camera-xml", _setup_camera_xml, "cam00.xml", "text", _reader_call("read_camera_xml", "cam00.xml"),
           _check_camera),
    Reader("xgaze-face-model", _setup_face_model, "face_model.txt", "text",
           _reader_call("read_face_model", "face_model.txt"), _check_model((50, 3))),
    Reader("xgaze-annotation-csv", _setup_xgaze_csv(149), "subject0000.csv", "text",
           _reader_call("read_xgaze_annotation", "subject0000.csv"), _check_rows),
    Reader("xgaze3d-updated-csv", _setup_xgaze_csv(249), "subject0000.csv", "text",
           _reader_call("read_xgaze_annotation", "subject0000.csv", fields=249), _check_rows),
    Reader("xgaze-light-meta-yaml", _setup_light_meta, "light_meta.yaml", "yaml",
           _reader_call("read_light_meta", "light_meta.yaml"), _check_light_meta),
    Reader("mpii-camera-mat", _setup_camera_mat, "Camera.mat", "bytes", _reader_call("read_camera_mat", "Camera.mat"),
           _check_camera_mat),
    Reader("mpii-annotation-txt", _setup_mpii_txt, "p00.txt", "text", _reader_call("read_mpii_annotation", "p00.txt"),
           _check_rows),
    Reader("nv-openface-txt", _setup_openface, "OpenFace.txt", "text",
           _reader_call("read_openface_model", "OpenFace.txt"), _check_model((68, 3))),
    Reader("nv-source-supply-h5", _setup_source_supply, "p00.h5", "h5", _reader_call("read_source_supply", "p00.h5"),
           _check_supply),
    Reader("mesh-cache-h5", _setup_cache, "cache.h5", "h5", _call_cache, _check_cache),
    Reader("cache-validate", _setup_cache, "cache.h5", "h5", _call_validate, _check_validated, problems=True,
           named_by_caller=True),
    Reader("h5-dataset", _setup_h5_dataset, "subject0000.h5", "h5", _call_h5, _check_h5),
    Reader("export-verify", _setup_export, "*", "h5", _call_verify, _check_verified, problems=True),
    Reader("export-resume", _setup_partial, "p00.h5.tmp", "h5", _call_resume, _check_resume, writes=True),
    Reader("dataset-config-yaml", _setup_config, "dataset.yaml", "yaml", _call_config, _check_config),
    Reader("train-config-yaml", _setup_train_config, "train.yaml", "yaml", _call_train_config, _check_train_config),
    Reader("background-folder", _setup_backgrounds, "*", "image", _call_backgrounds, _check_backgrounds),
    Reader("poses-csv", _setup_poses_txt, "poses.csv", "text", _call_poses("poses.csv"), _check_poses),
    Reader("poses-npy", _setup_poses_npy, "poses.npy", "npy", _call_poses("poses.npy"), _check_poses),
    Reader("poses-h5", _setup_poses_h5, "poses.h5", "h5", _call_poses("poses.h5"), _check_poses),
]}


# ============================================================================================ the campaign
def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): _sha(p) for p in sorted(d.rglob("*")) if p.is_file()}


def _mutate(reader: Reader, d: Path, ctx: dict, rng: random.Random) -> Path:
    """Mutate one file of the copy ``d`` (a failure of the mutation itself falls back to a byte mutation)."""
    files = [p for p in sorted(d.rglob("*")) if p.is_file()]
    target = rng.choice(files) if reader.target == "*" else d / reader.target
    try:
        return _mutate_file(reader, target, rng)
    except (OverflowError, MemoryError, TypeError, ValueError, RecursionError, KeyError, OSError, RuntimeError):
        target.write_bytes(M.mutate_bytes(target.read_bytes(), rng))
        return target


def _mutate_file(reader: Reader, target: Path, rng: random.Random) -> Path:
    kind = reader.kind
    if reader.target == "*" and kind == "h5" and target.suffix != ".h5":
        kind = "json"  # export-verify: index.json
    corrupt = False  # an h5 file byte-mutated by an earlier round: later rounds are byte-level too
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if kind == "text":
            target.write_text(M.mutate_text(target.read_text(errors="replace"), rng))
        elif kind == "json":
            try:
                text = target.read_text()
                obj = json.loads(text) if len(text) < 200_000 else None  # an earlier huge mutation: mutate text
            except (ValueError, RecursionError):
                obj = None
            target.write_text(M.mutate_json_text(obj, rng) if obj is not None
                              else M.mutate_text(target.read_text(errors="replace"), rng))
        elif kind == "jsonl":
            lines = target.read_text(errors="replace").splitlines()
            i = rng.randrange(len(lines)) if lines else 0
            if lines and rng.random() < 0.7:
                try:
                    lines[i] = M.mutate_json_text(json.loads(lines[i]), rng, lines=True).replace("\n", " ")
                except ValueError:
                    lines[i] = M.mutate_text(lines[i], rng)
                target.write_text("\n".join(lines) + "\n")
            else:
                target.write_text(M.mutate_text("\n".join(lines) + "\n", rng))
        elif kind == "yaml":
            import yaml

            from onthefly._io import _expanded_size, _flow_depth

            text = target.read_text(errors="replace")
            obj = None
            if len(text) < 20_000 and _flow_depth(text) < 50:  # small and shallow: libyaml parses it quickly
                try:
                    obj = yaml.load(text, Loader=yaml.CSafeLoader)
                except Exception:  # noqa: BLE001 - an earlier mutation broke it: mutate the text
                    obj = None

            small = isinstance(obj, (dict, list)) and _expanded_size(obj) < 10_000  # not an alias bomb
            target.write_text(M.mutate_yaml_text(obj, rng) if small
                              else M.mutate_text(target.read_text(errors="replace"), rng))
        elif kind == "ply-binary":
            data = target.read_bytes()
            end = data.find(b"end_header\n")
            if end > 0 and rng.random() < 0.5:
                head = M.mutate_text(data[:end].decode("ascii", "replace"), rng).encode("ascii", "replace")
                target.write_bytes(head + data[end:])
            else:
                target.write_bytes(M.mutate_bytes(data, rng))
        elif kind == "h5":
            try:
                corrupt = M.mutate_h5(target, rng, structural=not corrupt) or corrupt
            except (OSError, KeyError, ValueError, TypeError, RuntimeError, OverflowError, MemoryError):  # broken
                target.write_bytes(M.mutate_bytes(target.read_bytes(), rng))
                corrupt = True
        elif kind == "npy":
            target.write_bytes(M.mutate_npy(target.read_bytes(), rng))
        elif kind == "image":
            data = target.read_bytes()
            if data[:8] == b"\x89PNG\r\n\x1a\n" and rng.random() < 0.3:  # IHDR width / height: a huge image
                w = rng.choice([0, 1, 2 ** 16, 2 ** 24, 2 ** 31 - 1]).to_bytes(4, "big")
                h = rng.choice([0, 1, 2 ** 16, 2 ** 24]).to_bytes(4, "big")
                data = data[:16] + w + h + data[24:]
                target.write_bytes(data)
            else:
                target.write_bytes(M.mutate_bytes(data, rng))
        else:
            target.write_bytes(M.mutate_bytes(target.read_bytes(), rng))
    return target


def _names_input(msg: str, d: Path, target: Path) -> bool:
    return str(d) in msg or target.name in msg or str(target) in msg


@dataclass
class Outcome:
    reader: str
    tried: int = 0
    accepted: int = 0
    refused: int = 0
    other: int = 0
    seconds: float = 0.0
    max_input_s: float = 0.0
    peak_rss_mb: float = 0.0
    kinds: Counter = field(default_factory=Counter)
    examples: list = field(default_factory=list)

    def row(self) -> dict:
        return {"reader": self.reader, "tried": self.tried, "accepted": self.accepted, "refused": self.refused,
                "other": self.other, "seconds": round(self.seconds, 1), "max_input_s": round(self.max_input_s, 3),
                "peak_rss_mb": round(self.peak_rss_mb, 1), "other_kinds": dict(self.kinds),
                "examples": self.examples[:8]}


#: the input being read: when it started (wall clock, CPU seconds of this process and its reaped children) and its
#: limits (set by run_reader around every call)
_INPUT: dict | None = None
#: the hard wall-clock cap of one input, as a multiple of its CPU-time limit
WALL_FACTOR = 6


def _cpu() -> float:
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def _alarm(signum, frame):
    """The per-input limit is CPU time (``time_limit``), so that a starved campaign (``nice``, a busy machine) does
    not count slow inputs as hangs; an input that sleeps or waits stops at ``WALL_FACTOR`` x the limit wall time."""
    st = _INPUT
    if st is not None:
        cpu, wall = _cpu() - st["cpu0"], time.monotonic() - st["t0"]
        if cpu < st["limit"] and wall < st["limit"] * WALL_FACTOR:
            signal.setitimer(signal.ITIMER_REAL, max(0.25, min(st["limit"] - cpu, st["limit"] * WALL_FACTOR - wall)))
            return
    raise _Hang()


def run_reader(name: str, work: Path, *, n: int, seconds: float, seed: int = 0, time_limit: float = 5.0,
               keep: Path | None = None, start: int = 0, log=None) -> Outcome:
    """Inputs ``start`` .. ``n - 1`` of one reader (or until ``seconds`` have passed), in this process; returns the
    counts (see the module docstring). ``log``: a text file that gets ``start I`` before and ``done I VERDICT``
    after each input (what :func:`campaign` reads back when a reader crashes the process)."""
    reader = READERS[name]
    t_end = time.monotonic() + seconds  # the budget includes the setup (campaign's parent waits on the same clock)
    out = Outcome(name)
    base = work / name
    sample = base / "valid"
    shutil.rmtree(base, ignore_errors=True)
    sample.mkdir(parents=True)
    ctx = reader.setup(sample)
    # the valid sample itself is accepted
    res = reader.call(sample, ctx)
    reader.check(res, sample, ctx)
    ctx = reader.setup(_fresh(sample)) if reader.writes else ctx
    old = signal.signal(signal.SIGALRM, _alarm)
    t0 = time.monotonic()
    try:
        for i in range(start, n):
            if time.monotonic() > t_end:
                break
            if log is not None:
                log.write(f"start {i}\n")
                log.flush()
            rng = random.Random(f"{seed}/{name}/{i}")
            d = base / "in"
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(sample, d)
            try:
                target = _mutate(reader, d, ctx, rng)
            except RecursionError:
                continue
            before = _snapshot(d)
            kind, detail, verdict = None, "", None
            ti = time.monotonic()
            global _INPUT
            _INPUT = {"t0": ti, "cpu0": _cpu(), "limit": time_limit}
            signal.setitimer(signal.ITIMER_REAL, time_limit)
            try:
                res = reader.call(d, ctx)
                signal.setitimer(signal.ITIMER_REAL, 0)
                if reader.problems and res:
                    if not all(isinstance(p, str) for p in res):
                        kind, detail = "problems not strings", repr(res)[:300]
                    elif not reader.named_by_caller and not any(_names_input(p, d, target) for p in res):
                        kind, detail = "problems do not name the file", res[0][:300]
                    else:
                        verdict = "refused"
                else:
                    try:
                        reader.check(res, d, ctx)
                        verdict = "accepted"
                    except Exception as exc:  # noqa: BLE001 - an accepted but invalid result
                        kind, detail = "accepted but invalid", f"{type(exc).__name__}: {exc}"[:300]
            except _Hang:
                kind, detail = "hang", f"> {time_limit} s CPU or {time_limit * WALL_FACTOR} s wall"
            except MemoryError:
                signal.setitimer(signal.ITIMER_REAL, 0)
                kind, detail = "memory", "MemoryError under the address-space cap"
            except DOCUMENTED as exc:
                signal.setitimer(signal.ITIMER_REAL, 0)
                if reader.problems:
                    kind, detail = f"raised {type(exc).__name__}", str(exc)[:300]
                elif _names_input(str(exc), d, target):
                    verdict = "refused"
                else:
                    kind, detail = "error does not name the file", f"{type(exc).__name__}: {exc}"[:300]
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - the point of the campaign
                signal.setitimer(signal.ITIMER_REAL, 0)
                tb = traceback.extract_tb(exc.__traceback__)[-1]
                kind = f"{type(exc).__name__}"
                detail = f"{type(exc).__name__}: {str(exc)[:200]} at {Path(tb.filename).name}:{tb.lineno}"
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                _INPUT = None
            dt = time.monotonic() - ti
            out.max_input_s = max(out.max_input_s, dt)
            if kind is None and not reader.writes:
                after = _snapshot(d) if d.exists() else {}
                if after != before:
                    kind = "input changed or files left behind"
                    detail = str(sorted(k for k in set(after) | set(before) if after.get(k) != before.get(k)))[:300]
            out.tried += 1
            if kind is None:
                if verdict == "accepted":
                    out.accepted += 1
                else:
                    out.refused += 1
            else:
                out.other += 1
                out.kinds[kind] += 1
            if log is not None:
                log.write(json.dumps({"done": i, "verdict": verdict if kind is None else "other", "kind": kind,
                                      "detail": detail if kind else "", "s": round(dt, 4)}) + "\n")
                log.flush()
            if kind is not None:
                if len(out.examples) < 20:
                    out.examples.append({"input": i, "kind": kind, "detail": detail})
                    if keep is not None:
                        dst = keep / name / f"input{i:06d}"
                        shutil.rmtree(dst, ignore_errors=True)
                        shutil.copytree(sample, dst / "valid")
                        shutil.copytree(d, dst / "mutated", dirs_exist_ok=True) if d.exists() else None
    finally:
        signal.signal(signal.SIGALRM, old)
        signal.setitimer(signal.ITIMER_REAL, 0)
    out.seconds = time.monotonic() - t0
    out.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    shutil.rmtree(base, ignore_errors=True)
    return out


def _fresh(sample: Path) -> Path:
    shutil.rmtree(sample)
    sample.mkdir()
    return sample


def cap_memory(extra_bytes: int) -> int:
    """Cap this process's address space at its current size + ``extra_bytes`` (a reader that tries to allocate a
    huge declared size then gets a MemoryError instead of taking the machine); returns the cap."""
    with open("/proc/self/status") as fh:
        vm = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmSize:"))
    cap = vm + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    return cap


def example_input(name: str, i: int, work: Path, seed: int = 0) -> Path:
    """Regenerate input ``i`` of reader ``name`` (for a regression test or by hand): the mutated folder."""
    reader = READERS[name]
    sample = work / name / "valid"
    shutil.rmtree(work / name, ignore_errors=True)
    sample.mkdir(parents=True)
    ctx = reader.setup(sample)
    d = work / name / "in"
    shutil.copytree(sample, d)
    _mutate(reader, d, ctx, random.Random(f"{seed}/{name}/{i}"))
    return d


os.environ.setdefault("OMP_NUM_THREADS", "1")


def campaign(name: str, work: Path, *, n: int, seconds: float, seed: int = 0, time_limit: float = 5.0,
             memory_cap: int | None = 2 << 30, keep: Path | None = None) -> Outcome:
    """:func:`run_reader` in forked worker processes under an address-space cap (current size + ``memory_cap``):
    a reader that crashes the process (a segfault in a C extension) or hangs in C code past the per-input limit is
    counted as *other* (``crash (signal N)`` / ``hang``) at the input it died on, and a new worker continues with
    the next input, until ``n`` inputs or ``seconds``."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    log_path = work / f"{name}.log"
    work.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    t0 = time.monotonic()
    start = 0
    deaths: list[tuple[int, str]] = []
    while start < n and time.monotonic() - t0 < seconds:
        left = seconds - (time.monotonic() - t0)
        proc = ctx.Process(target=_worker, args=(name, work, n, left, seed, time_limit, memory_cap, keep, start,
                                                 str(log_path)))
        proc.start()
        proc.join(left + (WALL_FACTOR + 1) * time_limit + 60)
        killed = proc.is_alive()
        if killed:
            proc.kill()
            proc.join()
        last = _last_started(log_path)
        if proc.exitcode == 0 or last is None:
            break
        done = _done(log_path)
        if last in done:  # died between inputs
            start = last + 1
            continue
        deaths.append((last, "hang (worker killed)" if killed else f"crash (signal {-proc.exitcode})"
                       if proc.exitcode and proc.exitcode < 0 else f"exit {proc.exitcode}"))
        start = last + 1
    out = Outcome(name)
    for line in log_path.read_text().splitlines():
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        out.tried += 1
        out.max_input_s = max(out.max_input_s, r["s"])
        if r["verdict"] == "accepted":
            out.accepted += 1
        elif r["verdict"] == "refused":
            out.refused += 1
        else:
            out.other += 1
            out.kinds[r["kind"]] += 1
            if len(out.examples) < 20:
                out.examples.append({"input": r["done"], "kind": r["kind"], "detail": r["detail"]})
    for i, kind in deaths:
        out.tried += 1
        out.other += 1
        out.kinds[kind] += 1
        out.examples.append({"input": i, "kind": kind, "detail": "the worker process died on this input"})
    out.seconds = time.monotonic() - t0
    rss = log_path.with_suffix(".rss")
    out.peak_rss_mb = max((float(x) for x in rss.read_text().split()), default=0.0) if rss.exists() else 0.0
    return out


def _worker(name, work, n, seconds, seed, time_limit, memory_cap, keep, start, log_path) -> None:
    if memory_cap:
        cap_memory(memory_cap)
    with open(log_path, "a") as log:
        o = run_reader(name, work, n=n, seconds=seconds, seed=seed, time_limit=time_limit, keep=keep, start=start,
                       log=log)
    with open(Path(log_path).with_suffix(".rss"), "a") as fh:
        fh.write(f"{o.peak_rss_mb}\n")


def _last_started(log_path: Path) -> int | None:
    last = None
    for line in log_path.read_text().splitlines():
        if line.startswith("start "):
            last = int(line.split()[1])
    return last


def _done(log_path: Path) -> set[int]:
    return {json.loads(ln)["done"] for ln in log_path.read_text().splitlines() if ln.startswith("{")}
