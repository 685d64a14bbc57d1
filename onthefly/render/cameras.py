"""OpenCV <-> PyTorch3D camera conventions (pure torch, no PyTorch3D import).

OpenCV (the project's frame): ``X_cam = R @ X_world + t`` (column vectors), x right, y down, z forward;
``u = fx x/z + cx``, pixel (row i, col j) centred at ``(u=j, v=i)``.

PyTorch3D (``PerspectiveCameras(in_ndc=False)``): row vectors ``X_view = X_world @ R + T``; view frame
+X left, +Y up, +Z forward; screen ``x_px = -fx X/Z + px``, pixel (i, j) centred at ``(j+0.5, i+0.5)``.

Hence, with ``S = diag(-1, -1, 1)`` (a rotation by 180 degrees about z):
``X_cam = S X_view``; ``R_p3d = R_cv^T S``; ``T_p3d = S t_cv``; ``focal = (fx, fy)``;
``principal_point = (cx + 0.5, cy + 0.5)``.

Note: ``pytorch3d.utils.cameras_from_opencv_projection`` uses ``principal_point = (cx, cy)``, i.e. it
assumes pixel centres at +0.5 in the OpenCV image too; this module follows the project contract
(OpenCV centres at integers), which differs from it by exactly half a pixel.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["opencv_to_pytorch3d", "pytorch3d_to_opencv", "pytorch3d_world_to_opencv", "FLIP_XY"]

FLIP_XY = (-1.0, -1.0, 1.0)


def _s(like: Tensor) -> Tensor:
    return torch.tensor(FLIP_XY, dtype=like.dtype, device=like.device)


def opencv_to_pytorch3d(R: Tensor, t: Tensor, K: Tensor, image_size) -> dict:
    """OpenCV extrinsics ``R`` (B,3,3), ``t`` (B,3) and intrinsics ``K`` (B,3,3) to the keyword arguments
    of ``pytorch3d.renderer.PerspectiveCameras``: ``R``, ``T``, ``focal_length`` (B,2),
    ``principal_point`` (B,2), ``image_size`` (B,2) as (H, W), ``in_ndc=False``."""
    R, t, K = (torch.as_tensor(x) for x in (R, t, K))
    if R.ndim == 2:
        R, t, K = R.unsqueeze(0), t.reshape(1, 3), K.unsqueeze(0) if K.ndim == 2 else K
    if K.ndim == 2:
        K = K.unsqueeze(0).expand(R.shape[0], 3, 3)
    if bool((K[:, 0, 1] != 0).any()):
        raise ValueError("K has non-zero skew; PyTorch3D PerspectiveCameras cannot represent it")
    if bool(((K[:, 0, 0] <= 0) | (K[:, 1, 1] <= 0)).any()):
        raise ValueError("K has non-positive focal length")
    S = _s(R)
    H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    B = R.shape[0]
    return dict(
        R=R.transpose(1, 2) * S,  # R^T S: scales the columns
        T=t.reshape(B, 3) * S,
        focal_length=torch.stack((K[:, 0, 0], K[:, 1, 1]), 1),
        principal_point=torch.stack((K[:, 0, 2], K[:, 1, 2]), 1) + 0.5,
        image_size=torch.tensor([[H, W]] * B, device=R.device),
        in_ndc=False,
    )


def pytorch3d_to_opencv(R: Tensor, T: Tensor, focal_length: Tensor, principal_point: Tensor):
    """Inverse of :func:`opencv_to_pytorch3d` for screen-space (``in_ndc=False``) cameras.
    Returns ``R_cv`` (B,3,3), ``t_cv`` (B,3), ``K`` (B,3,3)."""
    R, T, f, p = (torch.as_tensor(x) for x in (R, T, focal_length, principal_point))
    if R.ndim == 2:
        R = R.unsqueeze(0)
    B = R.shape[0]
    T = T.reshape(B, 3)
    f = f.reshape(B, -1).expand(B, 2) if f.numel() in (1, B) else f.reshape(B, 2)
    p = p.reshape(B, 2)
    S = _s(R)
    R_cv = (R * S).transpose(1, 2)  # (R S)^T = S R^T
    t_cv = T * S
    K = torch.zeros((B, 3, 3), dtype=R.dtype, device=R.device)
    K[:, 0, 0] = f[:, 0]
    K[:, 1, 1] = f[:, 1]
    K[:, 0, 2] = p[:, 0] - 0.5
    K[:, 1, 2] = p[:, 1] - 0.5
    K[:, 2, 2] = 1.0
    return R_cv, t_cv, K


def pytorch3d_world_to_opencv(points: Tensor, R: Tensor, T: Tensor) -> Tensor:
    """World points (B,P,3) or (P,3) of a PyTorch3D scene to the OpenCV camera frame:
    ``(X @ R + T) * (-1, -1, 1)``."""
    if points.ndim == 2 and R.ndim == 2:
        return (points @ R + T.reshape(1, 3)) * _s(points)
    R = R if R.ndim == 3 else R.unsqueeze(0)
    return (points @ R + T.reshape(-1, 1, 3)) * _s(points)
