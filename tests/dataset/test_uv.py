"""UV-textured caches (several topologies, textures of different sizes) and mixed caches."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from cache.helpers import tiny_record

from onthefly.cache import CacheWriter
from onthefly.dataset import OnTheFlyGazeDataset

from .conftest import SMALL

COLOURS = [(200, 50, 20), (10, 180, 90), (60, 60, 250)]


def _uv_cache(path, vertex_colour_frame=False):
    with CacheWriter(path, source="test-uv") as w:
        for i, (n, (h, wd)) in enumerate([(70, (32, 24)), (90, (16, 16)), (70, (8, 40))]):
            rec = tiny_record(i, f"s{i}", uv=True, n_verts=n)
            rec.texture = np.ascontiguousarray(np.broadcast_to(np.array(COLOURS[i], np.uint8), (h, wd, 3)))
            rec.vert_colors = None
            w.add(rec)
        if vertex_colour_frame:
            w.add(tiny_record(9, "vc"))
    return path


def test_uv_textured_frames_render_their_texture(tmp_path):
    path = _uv_cache(tmp_path / "uv.h5")
    ds = OnTheFlyGazeDataset(path, batch_size=3, camera=SMALL, appearance="plain", target="source")
    b = ds.batch(0)
    for s in range(3):
        frame = int(b["frame_index"][s])
        covered = b["mask"][s, 0] == 1
        assert covered.sum() > 20
        px = b["image"][s][:, covered]
        want = torch.tensor(COLOURS[frame], dtype=torch.float32)[:, None] / 255
        assert (px - want).abs().max() < 1e-4


def test_mixed_texture_kinds_are_refused(tmp_path):
    path = _uv_cache(tmp_path / "mixed.h5", vertex_colour_frame=True)
    ds = OnTheFlyGazeDataset(path, batch_size=2, camera=SMALL, appearance="plain", target="source")
    with pytest.raises(ValueError, match="mixes frames"):
        ds.batch(0)
    ok = OnTheFlyGazeDataset(path, batch_size=2, camera=SMALL, appearance="plain", target="source",
                             subjects=["s0", "s1"])
    assert ok.batch(0)["image"].shape == (2, 3, 56, 56)
