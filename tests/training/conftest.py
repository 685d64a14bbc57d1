"""Fixtures of the training tests: a tiny procedural cache and tiny ETH-XGaze-layout h5 files."""
from __future__ import annotations

import h5py
import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """16 procedural frames of 4 subjects."""
    from onthefly.cache import build_cache
    from onthefly.sources.procedural import ProceduralSource

    path = tmp_path_factory.mktemp("train") / "tiny.h5"
    build_cache(ProceduralSource(count=16, seed=0, subjects=4), path)
    return path


def write_xgaze_h5(path, n=10, size=32, gaze=True, seed=0):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f["face_patch"] = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
        if gaze:
            f["face_gaze"] = rng.uniform(-0.5, 0.5, (n, 2)).astype(np.float32)
        f["face_head_pose"] = rng.uniform(-0.5, 0.5, (n, 2)).astype(np.float32)
    return path


@pytest.fixture(scope="session")
def xgaze_h5(tmp_path_factory):
    return write_xgaze_h5(tmp_path_factory.mktemp("h5") / "subject0000.h5")
