"""Procedural ground-truth frames shared by the reconstruction tests (built once per session)."""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from onthefly.reconstruct.groundtruth import groundtruth_frames


@functools.lru_cache(maxsize=None)
def frames(n: int = 2, seed: int = 7):
    return tuple(groundtruth_frames(n, seed=seed))


@functools.lru_cache(maxsize=None)
def turned_frame(yaw: float = 35.0):
    """One head turned ``yaw`` degrees: its far cheek is hidden from the source camera."""
    return groundtruth_frames(1, seed=11, poses=[(0.0, yaw, 0.0)])[0]


def dlib_landmarks():
    """dlib's 68-point detector (the `reconstruct` extra), or skip the test when it is not installed."""
    import pytest

    pytest.importorskip("dlib")
    from onthefly.reconstruct.landmarks import DlibLandmarks, dlib_predictor_path

    try:
        dlib_predictor_path()
    except ImportError:
        pytest.skip("face-recognition-models not installed")
    return DlibLandmarks()


def benchmark_module(name: str):
    """``benchmarks/NAME.py`` itself, loaded by path (putting benchmarks/ on sys.path would shadow the train package)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", path)
    assert spec is not None and spec.loader is not None, path
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
