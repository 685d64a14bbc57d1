"""The batch ``mask`` is the face mask (face region of the mesh) when the cache has face regions; ``coverage`` is
always the whole mesh."""
from __future__ import annotations

import pytest
import torch

from onthefly.dataset import BATCH_KEYS, OnTheFlyGazeDataset

FRONTAL = {"type": "uniform", "pitch": (0.0, 0.0), "yaw": (0.0, 0.0)}


@pytest.mark.parametrize("ssaa", [1, 2])
def test_face_mask_is_the_face(proc_cache, ssaa):
    ds = OnTheFlyGazeDataset(proc_cache, batch_size=6, seed=0, device="cpu", appearance="plain", target=FRONTAL,
                             ssaa=ssaa)
    b = ds.batch(0)
    assert {"mask", "coverage"} <= set(b) and {"mask", "coverage"} <= set(BATCH_KEYS)
    m, c = b["mask"], b["coverage"]
    assert m.shape == c.shape == (6, 1, 224, 224) and m.dtype == c.dtype == torch.float32
    assert (m <= c + 1e-6).all() and m.min() >= 0 and m.max() <= 1
    assert (m.flatten(1).mean(1) > 0.2).all()  # non-empty in every sample
    assert (m < c).any()  # not the whole mesh
    if ssaa > 1:
        assert ((m > 0) & (m < 1)).any()  # soft edges
    else:
        assert set(m.unique().tolist()) <= {0.0, 1.0}
    # hair / top of the head: covered pixels of the top rows of a frontal view are mostly outside the face mask
    top_c, top_m = c[:, 0, :16] > 0.5, m[:, 0, :16] > 0.5
    assert top_c.sum() > 500 and top_m.sum() < 0.5 * top_c.sum()
    # eyes and nose tip (landmarks 36-47, 30) are inside it
    lm = b["landmarks_2d"].round().long()
    for k in [30, 36, 39, 42, 45]:
        x, y = lm[:, k, 0].clamp(0, 223), lm[:, k, 1].clamp(0, 223)
        assert (m[torch.arange(6), 0, y, x] == 1).all(), k
    # replay reproduces both
    r = ds.replay(b)
    assert torch.equal(r["mask"], m) and torch.equal(r["coverage"], c)


def test_mask_is_coverage_without_face_regions(iris_cache):
    path, _ = iris_cache
    ds = OnTheFlyGazeDataset(path, batch_size=4, seed=0, device="cpu", appearance="plain", ssaa=2)
    b = ds.batch(0)
    assert torch.equal(b["mask"], b["coverage"]) and b["coverage"].sum() > 0


def test_views_per_frame_shapes(proc_cache):
    from .conftest import SMALL

    ds = OnTheFlyGazeDataset(proc_cache, batch_size=2, seed=0, device="cpu", camera=SMALL, views_per_frame=3)
    b = ds.batch(0)
    assert b["mask"].shape == b["coverage"].shape == (2, 3, 1, 56, 56)
    assert (b["mask"] <= b["coverage"]).all()


def test_mixed_topologies_and_frames_without_face_region(tmp_path):
    """Padded topologies; a frame without a face region counts as all face (mask == coverage)."""
    import numpy as np
    from cache.helpers import tiny_record

    from onthefly.cache import CacheWriter

    from .conftest import SMALL

    a = tiny_record(0, "s0", n_verts=70)
    a.vert_face_region = np.zeros(70, bool)  # no face at all: empty mask
    b_ = tiny_record(1, "s1", n_verts=90)  # no face region: all face
    path = tmp_path / "mixed.h5"
    with CacheWriter(path) as w:
        w.add(a)
        w.add(b_)
    ds = OnTheFlyGazeDataset(path, batch_size=2, seed=0, device="cpu", camera=SMALL, appearance="plain",
                             target="source", max_rotation_deg=None, max_head_pose_deg=None)
    b = ds.batch(0)
    for s in range(2):
        m, c = b["mask"][s], b["coverage"][s]
        assert c.sum() > 0
        if int(b["frame_index"][s]) == 0:
            assert m.sum() == 0
        else:
            assert torch.equal(m, c)
