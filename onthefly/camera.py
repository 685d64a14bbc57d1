"""Camera stage: where the virtual normalized camera sits for a requested head pose, and projection.

A normalized view is *exact* by construction: the face centre lies on the optical axis at the preset distance and
the head rotation seen by the camera is ``pitchyaw_to_rotation(head_pose)`` (zero roll), so the rendered image is
the normalized face patch, with no re-normalization drift. The camera is moved rigidly (a real camera at
``distance``), unlike the z-scaling warp ``S`` used to normalize a real photograph.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._checks import TensorLike, checked
from .geometry import _pitchyaw_to_rotation

__all__ = ["ViewTransform", "view_from_head_pose", "novel_view", "project_points"]


@dataclass
class ViewTransform:
    """Rigid transform ``X_view = R · X + t`` (R (..., 3, 3), t (..., 3)), OpenCV camera frame, mm.

    The whole camera stage of a normalized view: :func:`novel_view` also records the face ``centre`` (..., 3) and the
    ``distance`` d, so that ``t = (0, 0, d) − R · centre``, ``X_view = R · (X − centre) + (0, 0, d)``. Labels go
    through :meth:`apply` / :meth:`apply_directions` (float64), the mesh through :meth:`apply_mesh` (its own dtype).
    """

    R: torch.Tensor
    t: torch.Tensor
    centre: torch.Tensor | None = None
    distance: float | torch.Tensor | None = None

    def apply(self, points: torch.Tensor) -> torch.Tensor:
        """Transform points (..., N, 3)."""
        return points @ self.R.transpose(-1, -2) + self.t[..., None, :]

    def apply_mesh(self, verts: torch.Tensor) -> torch.Tensor:
        """Transform mesh vertices (..., V, 3) in their own dtype (float32 for rendering): a new tensor.

        With a recorded ``centre`` the face centre is subtracted first, then ``R`` rotates and ``z += d``: float32
        vertices are centred before they are rotated (the camera-frame coordinates are ~600 mm from the origin, the
        centred ones ~100 mm: a few bits more precision in the rotated result than ``R · X + t``)."""
        dt = verts.dtype
        if self.centre is None or self.distance is None:
            return verts @ self.R.to(dt).transpose(-1, -2) + self.t.to(dt)[..., None, :]
        out = (verts - self.centre.to(dt)[..., None, :]) @ self.R.to(dt).transpose(-1, -2)
        d = self.distance
        if torch.is_tensor(d):
            d = d.to(out.device, dt)[..., None] if d.dim() else d.to(out.device, dt)
        out[..., 2] += d
        return out

    def apply_directions(self, dirs: torch.Tensor) -> torch.Tensor:
        """Rotate directions (..., N, 3) or (..., 3) with the batch dims of ``R``."""
        if dirs.dim() == self.R.dim() - 1:
            return (self.R @ dirs[..., None])[..., 0]
        return dirs @ self.R.transpose(-1, -2)


def view_from_head_pose(head_pose: TensorLike, face_centre: TensorLike, distance: float | torch.Tensor) -> ViewTransform:
    """Transform from head coordinates to a normalized view with the given head-pose label.

    Args:
        head_pose: (..., 2) target (pitch, yaw) label in radians.
        face_centre: (..., 3) face centre in head coordinates (mm), see
            :func:`onthefly.normalization.face_centre`.
        distance: distance from the camera to the face centre (mm), e.g. 600 for ``xgaze224``.

    Returns ``ViewTransform`` with ``R = pitchyaw_to_rotation(head_pose)`` and ``t = (0, 0, distance) - R · c``.
    """
    py = checked("head_pose", head_pose, (2,))
    c = checked("face_centre", face_centre, (3,)).to(py.dtype)
    d = torch.as_tensor(distance, dtype=py.dtype, device=py.device)
    if bool((d <= 0).any()):
        raise ValueError(f"distance: must be positive, got {distance}")
    R = _pitchyaw_to_rotation(py)
    batch = torch.broadcast_shapes(R.shape[:-2], c.shape[:-1], d.shape)
    R = R.expand(*batch, 3, 3)
    c = c.expand(*batch, 3)
    axis = torch.zeros(*batch, 3, dtype=py.dtype, device=py.device)
    axis[..., 2] = d.expand(batch)
    t = axis - (R @ c[..., None])[..., 0]
    return ViewTransform(R=R, t=t, centre=c, distance=d.expand(batch))


def novel_view(head_rotation_src: torch.Tensor, face_centre_src: torch.Tensor, target_pose: torch.Tensor,
               distance: float | torch.Tensor) -> ViewTransform:
    """Exact normalized novel view of a source-camera mesh (the rendering camera, batched, no checks).

    ``V = Rot(target) · hRᵀ`` and ``X_view = V · (X_src − c) + (0, 0, d)``: the face centre ``c`` (source camera
    frame) lands on the optical axis at ``distance``, and the head rotation seen by the view is
    ``V · hR = Rot(target)`` (zero roll), so its head-pose label is exactly ``target_pose``.

    Args:
        head_rotation_src: (..., 3, 3) head → source camera rotations ``hR``.
        face_centre_src: (..., 3) face centres in the source camera frame (mm).
        target_pose: (..., 2) requested (pitch, yaw) head-pose labels (radians).
        distance: preset distance ``d`` (mm).

    Returns ``ViewTransform(R=V, t=(0, 0, d) − V·c, centre=c, distance=d)`` mapping source-camera points to the
    view (:meth:`ViewTransform.apply_mesh` for the mesh, :meth:`~ViewTransform.apply` for the labels).
    ``V`` is the view's ``face_mat_norm`` (source camera → normalized view).
    """
    V = _pitchyaw_to_rotation(target_pose) @ head_rotation_src.transpose(-1, -2)
    t = -(V @ face_centre_src[..., None])[..., 0]
    t[..., 2] = t[..., 2] + distance
    return ViewTransform(R=V, t=t, centre=face_centre_src, distance=distance)


def project_points(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pinhole projection of camera-frame points (..., N, 3) with intrinsics (..., 3, 3) → pixels (..., N, 2).

    OpenCV pixel convention: the centre of pixel (row i, col j) is (x=j, y=i).
    """
    q = points @ K.transpose(-1, -2)
    return q[..., :2] / q[..., 2:]
