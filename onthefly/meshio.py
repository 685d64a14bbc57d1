"""Mesh files: Wavefront OBJ with per-vertex colours (``v x y z r g b``, colours in [0, 1])."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_obj(path: str | Path, verts, faces, colors=None) -> Path:
    """Write a triangle mesh as OBJ. ``verts`` (V, 3), ``faces`` (F, 3) 0-based, ``colors`` (V, 3) uint8 or
    float in [0, 1]. Written to a temporary name and renamed, so a crash never leaves a truncated file."""
    path = Path(path)
    v = np.asarray(verts, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"verts: expected (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or (f.size and (f.min() < 0 or f.max() >= len(v))):
        raise ValueError(f"faces: expected (F, 3) indices in [0, {len(v)})")
    cols = []
    if colors is not None:
        c = np.asarray(colors)
        if c.shape != v.shape:
            raise ValueError(f"colors: expected {v.shape}, got {c.shape}")
        c = c.astype(np.float64) / 255.0 if c.dtype == np.uint8 else c.astype(np.float64)
        cols = [c]
    data = np.concatenate([v] + cols, axis=1)
    fmt = " ".join(["%.5f"] * 3 + ["%.4f"] * (data.shape[1] - 3))
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w") as fh:
        fh.write(f"# onthefly mesh: {len(v)} vertices, {len(f)} faces, millimetres\n")
        np.savetxt(fh, data, fmt="v " + fmt)
        np.savetxt(fh, f + 1, fmt="f %d %d %d")
    os.replace(tmp, path)
    return path
