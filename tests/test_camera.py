"""onthefly.camera: exact normalized novel views (face centre on the axis, achieved pose == target)."""
import math

import pytest
import torch

from onthefly.camera import project_points, view_from_head_pose
from onthefly.geometry import rotation_to_pitchyaw
from onthefly.normalization import PRESETS, normalize_geometry


def test_view_is_exact(device, dtype):
    gen = torch.Generator().manual_seed(0)
    n = 64
    pose = ((torch.rand(n, 2, generator=gen, dtype=torch.float64) - 0.5) * math.radians(160)).to(dtype)
    c_head = (torch.randn(n, 3, generator=gen, dtype=torch.float64) * 20).to(dtype)
    pose, c_head = pose.to(device), c_head.to(device)
    cam = PRESETS["xgaze224"]
    view = view_from_head_pose(pose, c_head, cam.distance)
    achieved = rotation_to_pitchyaw(view.R)
    assert (achieved - pose).abs().max() < 1e-4
    px = project_points(view.apply(c_head[:, None]), cam.K(dtype=dtype, device=device))[:, 0]
    assert (px - 112.0).abs().max() < 0.01
    torch.testing.assert_close(view.apply(c_head[:, None])[:, 0, 2],
                               torch.full((n,), 600.0, dtype=dtype, device=device))


def test_view_agrees_with_normalization_of_the_same_scene():
    """Rendering the view == normalizing a photo of the head: same R·hR, same gaze label."""
    pose = torch.tensor([0.2, -0.5], dtype=torch.float64)
    c_head = torch.tensor([0.0, 20.0, 15.0], dtype=torch.float64)
    target_head = torch.tensor([30.0, -40.0, -500.0], dtype=torch.float64)
    view = view_from_head_pose(pose, c_head, 600.0)
    # Treat the view as a real camera and normalize it: nothing must change.
    geo = normalize_geometry(PRESETS["xgaze224"].K(), view.R, view.apply(c_head[None])[0],
                             gaze_target=view.apply(target_head[None])[0])
    torch.testing.assert_close(geo.R, torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(geo.head_pose, pose)
    g = view.apply_directions((target_head - c_head) / (target_head - c_head).norm())
    torch.testing.assert_close(geo.gaze_vector, g)


def test_bad_distance():
    with pytest.raises(ValueError, match="distance"):
        view_from_head_pose(torch.zeros(2), torch.zeros(3), -1.0)
