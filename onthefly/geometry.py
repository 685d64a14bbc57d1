"""Gaze and head-pose angle conventions (ETH-XGaze), batched torch, any leading dims.

All angles are radians, ordered (pitch, yaw). Frames are OpenCV cameras (x right, y down, z forward);
see ``docs/conventions.md`` for worked examples.

* Gaze: ``g`` is the unit vector from the face (gaze origin) toward the gaze target. The label is
  ``pitch = asin(-g_y)``, ``yaw = atan2(-g_x, -g_z)``: looking into the camera (g = (0, 0, -1)) is (0, 0);
  pitch > 0 looks up, yaw > 0 looks toward the camera's -x (image left).
* Head pose: for a head rotation ``H`` (columns = head x, y, z axes in the camera frame; the head z axis points
  into the head), the label is ``(asin(H[1,2]), atan2(H[0,2], H[2,2]))``; a frontal head (H = I) is (0, 0).
  ``pitchyaw_to_rotation`` returns the zero-roll rotation ``Ry(yaw) · Rx(-pitch)`` with that label.
"""
from __future__ import annotations

import math

import torch

from .checks import TensorLike, check_nonzero, check_rotation, check_unit, checked

__all__ = [
    "gaze_to_pitchyaw",
    "pitchyaw_to_gaze",
    "rotation_to_pitchyaw",
    "pitchyaw_to_rotation",
    "angular_error",
    "rotation_x",
    "rotation_y",
    "axis_angle_to_rotation",
]


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def _gaze_to_pitchyaw(g: torch.Tensor) -> torch.Tensor:
    pitch = torch.asin((-g[..., 1]).clamp(-1.0, 1.0))
    yaw = torch.atan2(-g[..., 0], -g[..., 2])
    return torch.stack([pitch, yaw], dim=-1) + 0.0  # + 0.0 turns -0.0 into 0.0


def _pitchyaw_to_axis(py: torch.Tensor) -> torch.Tensor:
    """(cos p · sin y, sin p, cos p · cos y): the third column of ``Ry(y) · Rx(-p)``."""
    p, y = py[..., 0], py[..., 1]
    return torch.stack([torch.cos(p) * torch.sin(y), torch.sin(p), torch.cos(p) * torch.cos(y)], dim=-1)


def gaze_to_pitchyaw(g: TensorLike, *, normalize: bool = False) -> torch.Tensor:
    """Gaze label (pitch, yaw) of gaze directions ``g`` (..., 3).

    ``g`` must be unit length unless ``normalize=True``; zero vectors are always an error.
    """
    g = checked("g", g, (3,))
    if normalize:
        check_nonzero("g", g)
        g = _unit(g)
    else:
        check_unit("g", g)
    return _gaze_to_pitchyaw(g)


def pitchyaw_to_gaze(py: TensorLike) -> torch.Tensor:
    """Unit gaze direction (face → target) of labels ``py`` (..., 2): the inverse of :func:`gaze_to_pitchyaw`."""
    py = checked("py", py, (2,))
    return -_pitchyaw_to_axis(py)


def rotation_to_pitchyaw(H: TensorLike) -> torch.Tensor:
    """Head-pose label (pitch, yaw) of head rotations ``H`` (..., 3, 3): ``(asin H12, atan2(H02, H22))``.

    Roll is not represented; in normalized space (``H = R · hR`` from :mod:`onthefly.normalization`) roll is zero
    by construction, so ``pitchyaw_to_rotation(rotation_to_pitchyaw(H)) == H``.
    """
    H = checked("H", H, (3, 3))
    check_rotation("H", H)
    pitch = torch.asin(H[..., 1, 2].clamp(-1.0, 1.0))
    yaw = torch.atan2(H[..., 0, 2], H[..., 2, 2])
    return torch.stack([pitch, yaw], dim=-1)


def rotation_x(angle: torch.Tensor) -> torch.Tensor:
    """Right-handed rotation about x by ``angle`` (...,) → (..., 3, 3)."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([o, z, z, z, c, -s, z, s, c], dim=-1).reshape(*angle.shape, 3, 3)


def rotation_y(angle: torch.Tensor) -> torch.Tensor:
    """Right-handed rotation about y by ``angle`` (...,) → (..., 3, 3)."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([c, z, s, z, o, z, -s, z, c], dim=-1).reshape(*angle.shape, 3, 3)


def _pitchyaw_to_rotation(py: torch.Tensor) -> torch.Tensor:
    return rotation_y(py[..., 1]) @ rotation_x(-py[..., 0])


def pitchyaw_to_rotation(py: TensorLike) -> torch.Tensor:
    """Zero-roll rotation ``Ry(yaw) · Rx(-pitch)`` (..., 3, 3) whose head-pose label is ``py`` (..., 2)."""
    py = checked("py", py, (2,))
    return _pitchyaw_to_rotation(py)


def _angle_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle in radians between vectors, via atan2(|a×b|, a·b): accurate near 0 and near π."""
    cross = torch.linalg.cross(a, b, dim=-1).norm(dim=-1)
    dot = (a * b).sum(dim=-1)
    return torch.atan2(cross, dot)


def angular_error(a: TensorLike, b: TensorLike) -> torch.Tensor:
    """Angle in degrees between gaze/head directions given as (pitch, yaw) pairs (..., 2) or vectors (..., 3).

    Vectors need not be unit length but must be non-zero. Shapes broadcast. Accurate to ~1e-6 deg for
    float64 at 0° and at 180° (no arccos of a rounded dot product).
    """
    a, b = checked("a", a, None), checked("b", b, None)
    if a.dim() == 0 or b.dim() == 0 or a.shape[-1] != b.shape[-1] or a.shape[-1] not in (2, 3):
        raise ValueError(f"a, b: expected both (..., 2) pitch-yaw or both (..., 3) vectors, "
                         f"got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype:
        dtype = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(dtype), b.to(dtype)
    if a.shape[-1] == 2:
        a, b = _pitchyaw_to_axis(a), _pitchyaw_to_axis(b)
    else:
        check_nonzero("a", a)
        check_nonzero("b", b)
    ta, tb = torch.broadcast_tensors(a, b)
    return _angle_between(ta, tb) * (180.0 / math.pi)


def axis_angle_to_rotation(rvec: TensorLike) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) of axis-angle (Rodrigues) vectors (..., 3), as ``cv2.Rodrigues``."""
    rvec = checked("rvec", rvec, (3,))
    theta = rvec.norm(dim=-1, keepdim=True)
    small = theta < 1e-8
    axis = rvec / torch.where(small, torch.ones_like(theta), theta)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*x.shape, 3, 3)
    s, c = torch.sin(theta)[..., None], torch.cos(theta)[..., None]
    eye = torch.eye(3, dtype=rvec.dtype, device=rvec.device).expand_as(k)
    R = eye + s * k + (1 - c) * (k @ k)
    # First-order expansion for tiny angles keeps the result exact to rounding.
    k_small = torch.stack([zero, -rvec[..., 2], rvec[..., 1], rvec[..., 2], zero, -rvec[..., 0],
                           -rvec[..., 1], rvec[..., 0], zero], dim=-1).reshape(*x.shape, 3, 3)
    return torch.where(small[..., None], eye + k_small, R)
