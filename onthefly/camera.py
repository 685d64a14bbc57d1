"""Camera stage: where the virtual normalized camera sits for a requested head pose, and projection.

A normalized view is *exact* by construction: the face centre lies on the optical axis at the preset distance and
the head rotation seen by the camera is ``pitchyaw_to_rotation(head_pose)`` (zero roll), so the rendered image is
the normalized face patch, with no re-normalization drift. The camera is moved rigidly (a real camera at
``distance``), unlike the z-scaling warp ``S`` used to normalize a real photograph.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .checks import TensorLike, check_rotation, checked, enabled
from .geometry import pitchyaw_to_rotation

__all__ = ["ViewTransform", "view_from_head_pose", "project_points"]


@dataclass
class ViewTransform:
    """Rigid transform ``X_view = R · X + t`` (R (..., 3, 3), t (..., 3)), OpenCV camera frame, mm.

    The whole camera stage of a normalized view: :func:`view_from_head_pose` also records the face ``centre``
    (..., 3) and the ``distance`` d, so that ``t = (0, 0, d) − R · centre``, ``X_view = R · (X − centre) + (0, 0, d)``. Labels go
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


def view_from_head_pose(head_pose: TensorLike, face_centre: TensorLike, distance: float | torch.Tensor, *,
                        head_rotation: TensorLike | None = None) -> ViewTransform:
    """The exact normalized view of a mesh with the given head-pose label: the one camera function.

    ``V = Rot(head_pose) · hRᵀ`` and ``X_view = V · (X − c) + (0, 0, d)``: the face centre ``c`` lands on the
    optical axis at ``distance``, and the head rotation seen by the view is ``V · hR = Rot(head_pose)`` (zero
    roll, ``Rot`` = :func:`onthefly.geometry.pitchyaw_to_rotation`), so its head-pose label is exactly
    ``head_pose``.

    Args:
        head_pose: (..., 2) target (pitch, yaw) label in radians.
        face_centre: (..., 3) face centre (mm) in the mesh's frame, see :func:`onthefly.normalization.face_centre`.
        distance: distance from the camera to the face centre (mm), e.g. 600 for ``xgaze224``; positive.
        head_rotation: (..., 3, 3) head → mesh-frame rotations ``hR`` of a mesh in a source camera's frame (the
            cache's frames); ``None`` (default): the mesh is in head coordinates (``hR = I``).

    Returns ``ViewTransform(R=V, t=(0, 0, d) − V·c, centre=c, distance=d)`` (broadcast over the batch dims)
    mapping mesh-frame points to the view (:meth:`ViewTransform.apply_mesh` for the mesh,
    :meth:`~ViewTransform.apply` for the labels). With ``head_rotation`` ``V`` is the view's ``face_mat_norm``
    (source camera → normalized view). The value checks (finite inputs, a rotation, a positive distance) are
    skipped inside :func:`onthefly.checks.trusted` (the dataset's hot path); the shape checks always run.
    """
    py = checked("head_pose", head_pose, (2,))
    c = checked("face_centre", face_centre, (3,)).to(py.dtype)
    d = torch.as_tensor(distance, dtype=py.dtype, device=py.device)
    if enabled() and bool((d <= 0).any()):
        raise ValueError(f"distance: must be positive, got {distance}")
    V = pitchyaw_to_rotation(py)
    if head_rotation is not None:
        hR = checked("head_rotation", head_rotation, (3, 3)).to(py.dtype)
        check_rotation("head_rotation", hR)
        V = V @ hR.transpose(-1, -2)
    batch = torch.broadcast_shapes(V.shape[:-2], c.shape[:-1], d.shape)
    V = V.expand(*batch, 3, 3)
    c = c.expand(*batch, 3)
    d = d.expand(batch)
    t = -(V @ c[..., None])[..., 0]
    t[..., 2] = t[..., 2] + d
    return ViewTransform(R=V, t=t, centre=c, distance=d)


def project_points(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Pinhole projection of camera-frame points (..., N, 3) with intrinsics (..., 3, 3) → pixels (..., N, 2).

    OpenCV pixel convention: the centre of pixel (row i, col j) is (x=j, y=i).
    """
    q = points @ K.transpose(-1, -2)
    return q[..., :2] / q[..., 2:]
