"""Procedural ground-truth frames shared by the reconstruction tests (built once per session)."""
from __future__ import annotations

import functools

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
