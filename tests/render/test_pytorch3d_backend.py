"""backend='pytorch3d': only runs where PyTorch3D is installed; the missing-dependency error always runs."""
from __future__ import annotations

import builtins

import pytest
import torch
from render_helpers import rot, uv_sphere

from onthefly.render import rasterize


def test_missing_pytorch3d_gives_install_hint(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "pytorch3d" or name.startswith("pytorch3d."):
            raise ImportError("No module named 'pytorch3d'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    v = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]])
    with pytest.raises(ImportError, match="conda|source"):
        rasterize(v, torch.tensor([[0, 1, 2]]), torch.eye(3), 8, backend="pytorch3d")


def test_importing_onthefly_does_not_import_pytorch3d():
    import subprocess
    import sys

    code = "import sys, onthefly.render; assert 'pytorch3d' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pytorch3d_backend_matches_torch(device):
    pytest.importorskip("pytorch3d")
    dtype = torch.float32
    vs, fs = uv_sphere(30, 60, dtype)
    B = 3
    verts = torch.stack([vs @ rot(0.2 * b, 0.4, 0.1, dtype).T + torch.tensor([0.1 * b, 0, 3.5], dtype=dtype)
                         for b in range(B)]).to(device)
    K = torch.tensor([[70.0, 0, 31.5], [0, 68.0, 29.0], [0, 0, 1]], dtype=dtype)
    a = rasterize(verts, fs.to(device), K, (60, 64))
    b = rasterize(verts, fs.to(device), K, (60, 64), backend="pytorch3d")
    assert (a.pix_to_face == b.pix_to_face).float().mean() >= 0.999
    same = (a.pix_to_face == b.pix_to_face) & (a.pix_to_face >= 0)
    assert torch.allclose(a.zbuf[same], b.zbuf[same], atol=1e-4)
    assert torch.allclose(a.bary[same], b.bary[same], atol=5e-3)
