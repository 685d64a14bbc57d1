"""The CUDA path has no per-sample host synchronisations: the number of syncs of one render call does not grow
with the batch (counted with ``torch.cuda.set_sync_debug_mode``). Needs a CUDA device; skipped without one."""
from __future__ import annotations

import warnings

import pytest
import torch
from render_helpers import rot, uv_sphere

from onthefly.checks import trusted
from onthefly.render import PointLights, UVTexture, render

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _syncs(B: int, uv: bool) -> int:
    dev = torch.device("cuda")
    v, f = uv_sphere(24, 48, torch.float32)
    verts = torch.stack([v @ rot(0.1 * b, 0.05 * b, 0.0, torch.float32).T + torch.tensor([0, 0, 3.0])
                         for b in range(B)]).to(dev)
    K = torch.tensor([[60.0, 0, 31.5], [0, 60.0, 31.5], [0, 0, 1]], device=dev)
    if uv:
        tex = UVTexture(torch.randint(0, 255, (2, 16, 16, 3), dtype=torch.uint8, device=dev),
                        torch.rand(1, v.shape[0], 2, device=dev), f.to(dev),
                        texture_index=(torch.arange(B, device=dev) % 2))
    else:
        tex = torch.rand(1, v.shape[0], 3, device=dev)
    light = PointLights(location=torch.zeros(B, 3, device=dev))
    with trusted():  # the value checks read the device (syncs); the hot path skips them
        render(verts, f.to(dev), K, 64, textures=tex, lights=light)  # warm-up (allocator, kernels)
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with trusted():
                render(verts, f.to(dev), K, 64, textures=tex, lights=light)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message).lower() for w in rec)


@pytest.mark.parametrize("uv", [False, True])
def test_cuda_render_syncs_do_not_grow_with_batch(uv):
    small, large = _syncs(2, uv), _syncs(64, uv)
    assert large == small, f"{small} host syncs at batch 2 but {large} at batch 64"
    assert small <= 8  # a handful per call: bucket counts, foreground nonzero, tile count, texture index range
