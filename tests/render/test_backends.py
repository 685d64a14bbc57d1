"""The backend table: ``auto`` is numba on the CPU when numba imports and falls back to torch cleanly when it does
not; asking for a backend that cannot run says why."""
from __future__ import annotations

import pytest
import torch
from render_helpers import screen_tri

from onthefly.render import backends, rasterize, render


@pytest.fixture(autouse=True)
def cpu_backend():  # overrides tests/render/conftest.py: these tests pick the backends themselves
    yield None


def _tri():
    return screen_tri([(1.2, 1.1), (6.7, 2.2), (2.1, 6.6)], z=2.0).unsqueeze(0)


def test_auto_falls_back_to_torch_without_numba(monkeypatch):
    ref = rasterize(_tri(), torch.tensor([[0, 1, 2]]), torch.eye(3, dtype=torch.float64), 8, backend="torch")
    monkeypatch.setattr(backends, "numba_available", lambda: False)
    monkeypatch.setitem(backends.BACKENDS, "numba", backends.Backend(
        "numba", ("cpu",), lambda: False, backends.BACKENDS["numba"].rasterize_into,
        install=backends.BACKENDS["numba"].install))
    assert backends.get_backend("auto", "cpu").name == "torch"
    got = rasterize(_tri(), torch.tensor([[0, 1, 2]]), torch.eye(3, dtype=torch.float64), 8)
    assert torch.equal(got.pix_to_face, ref.pix_to_face) and (got.pix_to_face >= 0).any()
    out = render(_tri(), torch.tensor([[0, 1, 2]]), torch.eye(3, dtype=torch.float64), 8)
    assert torch.equal(out.fragments.pix_to_face, ref.pix_to_face)
    with pytest.raises(ImportError, match="pip install numba"):
        rasterize(_tri(), torch.tensor([[0, 1, 2]]), torch.eye(3, dtype=torch.float64), 8, backend="numba")
    assert "numba" not in backends.available_backends("cpu")


def test_auto_is_numba_on_cpu_when_installed():
    if not backends.numba_available():
        pytest.skip("numba is not installed")
    assert backends.get_backend("auto", "cpu").name == "numba"
    assert backends.get_backend("auto", "cuda").name == "torch"  # CUDA tensors always render with torch


def test_numba_on_cuda_and_unknown_backends_are_clear_errors():
    with pytest.raises(ValueError, match="runs on cpu only"):
        backends.get_backend("numba", "cuda")
    with pytest.raises(ValueError, match="backend must be 'auto' or one of"):
        backends.get_backend("opengl", "cpu")


def _triangle_soup(B: int, n: int, size: int, dtype, seed: int):
    """B views of a triangle soup for K = I (pixel = x/z): n random triangles (tiny slivers, small faces of a few
    to 64 pixels -- the numba stamp path -- and large ones -- the row loop), overlapping in depth, some reaching
    outside the image; and n/2 squares with integer corners split along a diagonal, at z = 2 (so pixel coordinates
    are exact): their edges pass through pixel centres (the top-left tie rule) and overlapping squares tie in
    depth (the smaller face index wins)."""
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    scale = torch.tensor([0.3, 2.0, 6.0, 30.0], dtype=f64)[torch.randint(0, 4, (B, n), generator=g)]
    centre = (torch.rand(B, n, 1, 2, generator=g, dtype=f64) * 1.2 - 0.1) * size
    uv = centre + (torch.rand(B, n, 3, 2, generator=g, dtype=f64) - 0.5) * scale[..., None, None]
    z = 1.0 + torch.rand(B, n, 1, 1, generator=g, dtype=f64) * 3.0 + torch.rand(B, n, 3, 1, generator=g, dtype=f64) * 0.2
    rand = torch.cat((uv * z, z), -1)
    m = n // 2
    s = torch.tensor([1.0, 2.0, 3.0, 5.0, 8.0, 13.0], dtype=f64)[torch.randint(0, 6, (B, m, 1), generator=g)]
    o = torch.randint(-4, size, (B, m, 2), generator=g).to(f64)
    x0, y0 = o[..., :1], o[..., 1:]
    flip = torch.rand(B, m, 1, generator=g) < 0.5  # which diagonal splits the square
    c00, c10 = torch.cat((x0, y0), -1), torch.cat((x0 + s, y0), -1)
    c01, c11 = torch.cat((x0, y0 + s), -1), torch.cat((x0 + s, y0 + s), -1)
    t1 = torch.where(flip[..., None], torch.stack((c00, c10, c11), 2), torch.stack((c00, c10, c01), 2))
    t2 = torch.where(flip[..., None], torch.stack((c00, c11, c01), 2), torch.stack((c10, c11, c01), 2))
    sq = torch.stack((t1, t2), 2).reshape(B, 2 * m, 3, 2)
    roll = torch.randint(0, 3, (B, 2 * m, 1), generator=g)  # every edge index meets every edge direction
    back = torch.rand(B, 2 * m, 1, generator=g) < 0.5  # and both windings
    idx = (roll + torch.arange(3)) % 3
    idx = torch.where(back, idx.flip(-1), idx)
    sq = torch.gather(sq, 2, idx[..., None].expand(B, 2 * m, 3, 2))
    snapped = torch.cat((sq * 2.0, torch.full((B, 2 * m, 3, 1), 2.0, dtype=f64)), -1)
    verts = torch.cat((rand, snapped), 1).reshape(B, -1, 3).to(dtype)
    faces = torch.arange(verts.shape[1]).reshape(-1, 3)
    return verts, faces, torch.eye(3, dtype=dtype)


@pytest.mark.parametrize("B,cull", [(1, False), (3, True), (3, False)])
def test_numba_fragments_equal_torch_bit_for_bit(dtype, B, cull):
    """The compiled rasterizer returns the torch reference's fragments exactly, for every face size it treats
    differently (row loop, small-face stamp, boxes clipped by the bands of a batch of one)."""
    if not backends.numba_available():
        pytest.skip("numba is not installed (pip install numba)")
    verts, faces, K = _triangle_soup(B, 400, 61, dtype, seed=B + int(cull))
    ref = rasterize(verts, faces, K, (61, 67), backend="torch", cull_backfaces=cull)
    got = rasterize(verts, faces, K, (61, 67), backend="numba", cull_backfaces=cull)
    cov = (ref.pix_to_face >= 0).float().mean().item()
    assert 0.3 < cov < 0.99, cov  # the soup covers much of the image, with background left
    assert torch.equal(got.pix_to_face, ref.pix_to_face)
    assert torch.equal(got.zbuf, ref.zbuf)
    assert torch.equal(got.bary, ref.bary)
