"""benchmarks/headpose_fit.py --floor on synthetic detections whose error is known: the oracle is exact on exact
points, a detector that misplaces landmarks by fixed 3-D offsets shows a pose error, and the fitted offsets find it."""
from __future__ import annotations

import numpy as np

from .helpers import benchmark_module


def _setting(offsets: np.ndarray, n: int = 24, seed: int = 0) -> dict:
    """A ``realism.py --save-detections`` setting: the template's landmarks at n poses, 600 mm in front of a 224 px
    camera, "detected" where the true points plus ``offsets`` (68,3, head frame mm) project."""
    from onthefly.reconstruct.realism import _rot
    from onthefly.reconstruct.template import face_template

    L = face_template().landmarks
    rng = np.random.default_rng(seed)
    poses = np.c_[rng.uniform(-20, 20, n), rng.uniform(-40, 40, n)]
    K = np.array([[960.0, 0, 111.5], [0, 960.0, 111.5], [0, 0, 1]])
    lab3, det, lab = [], [], []
    for py in poses:
        R = _rot(py)
        t = np.array([0.0, 0.0, 600.0])
        X = L @ R.T + t
        Xd = (L + offsets) @ R.T + t
        lab3.append(X)
        lab.append((X @ K.T)[:, :2] / X[:, 2:])
        det.append((Xd @ K.T)[:, :2] / Xd[:, 2:])
    return {"det": np.array(det), "label": np.array(lab), "label_3d": np.array(lab3), "poses": poses, "K": K,
            "size": np.array([224, 224])}


def test_floor_exact_points_and_fixed_offsets(tmp_path):
    tool = benchmark_module("headpose_fit")
    exact = tool.floor(_setting(np.zeros((68, 3))))
    assert exact["n"] == 24 and exact["oracle_median_deg"] < 0.01
    off = np.zeros((68, 3))
    off[30] = [0.0, 4.0, 3.0]      # the nose tip read 4 mm low and 3 mm deep
    off[36:42, 1] = -2.5           # the right eye read 2.5 mm high
    biased = tool.floor(_setting(off))
    assert biased["oracle_median_deg"] > 0.5          # a detector's semantic offset is a pose error ...
    assert biased["with_offsets_median_deg"] < 0.05   # ... that fitted per-landmark offsets remove
    D = tool.landmark_offsets(tool._oracle_data(_setting(off)))
    np.testing.assert_allclose(D[30], off[30], atol=0.2)
    # the tool reads its input as realism.py writes it
    np.savez(tmp_path / "d.npz", **{f"procedural/x/{k}": v for k, v in _setting(off).items()})
    assert tool.main([str(tmp_path / "d.npz"), "--floor"]) == 0
