"""``backend="pytorch3d"``: the same fragments from PyTorch3D's ``MeshRasterizer`` (optional dependency).

PyTorch3D is imported lazily; importing onthefly never needs it. Conventions are converted so the
fragments mean exactly what the torch backend's mean (see :mod:`onthefly.render.cameras`):

* vertices go in as the PyTorch3D *world* = view frame ``X * (-1, -1, 1)`` with ``R = I``, ``T = 0``
  (row vectors), so the camera is the OpenCV camera;
* ``PerspectiveCameras(focal_length=(fx, fy), principal_point=(cx + 0.5, cy + 0.5), in_ndc=False,
  image_size=(H, W))`` (PyTorch3D pixel centres are at +0.5);
* ``max_faces_per_bin`` is set to the face count of a mesh (no coarse-bin overflow is possible; on
  CUDA the coarse pass then holds ``B * bins * F`` int32, e.g. 8 GB for B=256, 14x14 bins, 40k faces);
* PyTorch3D's kernels are float32: float64 inputs are rasterized in float32 (outputs cast back);
* faces rejected by the near-plane rule (any vertex at ``z <= znear``) and ``-1`` padding rows are
  replaced by degenerate faces ``(v, v, v)``, which PyTorch3D skips, so face indices are unchanged;
* packed face indices are converted to per-mesh indices, ``faces_per_pixel=1`` axes dropped.

Differences that remain: PyTorch3D has no tie rule for pixel centres exactly on an edge (both faces
may claim it, the nearer/first wins) and computes edge functions in float32 in NDC, so a handful of
silhouette/edge pixels can differ.
"""
from __future__ import annotations

import torch

from .fragments import Fragments, prepare_inputs

__all__ = ["rasterize_pytorch3d", "rasterize_pytorch3d_prepared", "import_pytorch3d"]

_INSTALL = ("backend='pytorch3d' needs PyTorch3D, which has no Linux wheel on PyPI. Install it with conda "
            "(`conda install pytorch3d -c pytorch3d`) or build it from source "
            "(`pip install 'git+https://github.com/facebookresearch/pytorch3d.git@stable'`), "
            "or use backend='torch'.")


def import_pytorch3d():
    try:
        import pytorch3d  # noqa: F401
        from pytorch3d.renderer import MeshRasterizer, PerspectiveCameras, RasterizationSettings
        from pytorch3d.structures import Meshes
    except (ImportError, OSError) as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{_INSTALL} (import failed with: {exc})") from exc
    return Meshes, PerspectiveCameras, RasterizationSettings, MeshRasterizer


def rasterize_pytorch3d(verts, faces, K, image_size, *, znear: float = 1e-6, cull_backfaces: bool = False,
                        bin_size=None) -> Fragments:
    """PyTorch3D's fragments for raw inputs (as :func:`onthefly.render.rasterize`), one pass."""
    import_pytorch3d()
    verts, faces, K, (H, W) = prepare_inputs(verts, faces, K, image_size)
    return rasterize_pytorch3d_prepared(verts, faces, K, H, W, znear=znear, cull_backfaces=cull_backfaces,
                                        bin_size=bin_size)


def rasterize_pytorch3d_prepared(verts, faces, K, H, W, *, znear: float = 1e-6, cull_backfaces: bool = False,
                                 bin_size=None) -> Fragments:
    Meshes, PerspectiveCameras, RasterizationSettings, MeshRasterizer = import_pytorch3d()
    B, V, _ = verts.shape
    dev, dt = verts.device, verts.dtype
    faces = faces.expand(B, -1, -1) if faces.ndim == 2 else faces
    F = faces.shape[1]
    pad = (faces < 0).any(-1)
    fz = torch.gather(verts[..., 2], 1, faces.clamp_min(0).reshape(B, -1)).view(B, F, 3)
    drop = pad | (fz <= znear).any(-1)
    safe = faces.clamp_min(0)
    faces_p3d = torch.where(drop.unsqueeze(-1), safe[..., :1].expand(-1, -1, 3), safe)
    f32 = torch.float32  # PyTorch3D's kernels are float32-only
    world = (verts * torch.tensor((-1.0, -1.0, 1.0), dtype=dt, device=dev)).to(f32)
    meshes = Meshes(verts=world, faces=faces_p3d)
    cameras = PerspectiveCameras(
        focal_length=torch.stack((K[:, 0, 0], K[:, 1, 1]), 1).to(f32),
        principal_point=(torch.stack((K[:, 0, 2], K[:, 1, 2]), 1) + 0.5).to(f32),
        R=torch.eye(3, dtype=f32, device=dev).expand(B, 3, 3),
        T=torch.zeros((B, 3), dtype=f32, device=dev),
        in_ndc=False,
        image_size=torch.tensor([[H, W]] * B, device=dev),
        device=dev,
    )
    settings = RasterizationSettings(
        image_size=(H, W), blur_radius=0.0, faces_per_pixel=1, bin_size=bin_size,
        max_faces_per_bin=int(F), perspective_correct=True, clip_barycentric_coords=False,
        cull_backfaces=cull_backfaces, z_clip_value=None, cull_to_frustum=False,
    )
    frags = MeshRasterizer(cameras=cameras, raster_settings=settings)(meshes)
    p2f = frags.pix_to_face[..., 0]
    first = meshes.mesh_to_faces_packed_first_idx().view(B, 1, 1)
    p2f = torch.where(p2f >= 0, p2f - first, p2f)
    zbuf = frags.zbuf[..., 0].to(dt)
    bary = frags.bary_coords[..., 0, :].to(dt)
    return Fragments(p2f, zbuf, bary)
