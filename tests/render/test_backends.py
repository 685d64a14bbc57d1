"""The backend table: ``auto`` is numba on the CPU when numba imports and falls back to torch cleanly when it does
not; asking for a backend that cannot run says why."""
from __future__ import annotations

import pytest
import torch

from onthefly.render import backends, rasterize, render
from render_helpers import screen_tri


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
