"""onthefly.geometry: label conventions, round trips, numerical safety, bad input."""
import math

import cv2
import numpy as np
import pytest
import torch

from onthefly.geometry import (
    angular_error,
    axis_angle_to_rotation,
    gaze_to_pitchyaw,
    pitchyaw_to_gaze,
    pitchyaw_to_rotation,
    rotation_to_pitchyaw,
    rotation_x,
    rotation_y,
)


def _tol(dtype):
    return dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)


def _random_unit(shape, gen, dtype, device):
    v = torch.randn(*shape, 3, generator=gen, dtype=torch.float64)
    return (v / v.norm(dim=-1, keepdim=True)).to(dtype=dtype, device=device)


def test_reference_formulas_eth_xgaze(device, dtype):
    """label = vector_to_pitchyaw(-g) with vector_to_pitchyaw(v) = (asin v_y, atan2(v_x, v_z)) (anchor §1.6)."""
    gen = torch.Generator().manual_seed(0)
    g = _random_unit((5, 7), gen, dtype, device)
    v = -g.double().cpu().numpy()
    expected = np.stack([np.arcsin(v[..., 1]), np.arctan2(v[..., 0], v[..., 2])], axis=-1)
    got = gaze_to_pitchyaw(g)
    assert got.shape == (5, 7, 2) and got.dtype == dtype and got.device.type == device.type
    torch.testing.assert_close(got.double().cpu(), torch.from_numpy(expected), **_tol(dtype))


def test_gaze_round_trip(device, dtype):
    gen = torch.Generator().manual_seed(1)
    g = _random_unit((100,), gen, dtype, device)
    torch.testing.assert_close(pitchyaw_to_gaze(gaze_to_pitchyaw(g)), g, **_tol(dtype))
    py = (torch.rand(100, 2, generator=gen, dtype=torch.float64) - 0.5) * torch.tensor([3.0, 6.0])
    py = py.to(dtype=dtype, device=device)
    torch.testing.assert_close(gaze_to_pitchyaw(pitchyaw_to_gaze(py)), py, **_tol(dtype))


def test_signs():
    """pitch > 0 looks up (-y), yaw > 0 looks toward camera -x (image left); camera is (0, 0)."""
    assert gaze_to_pitchyaw(torch.tensor([0.0, 0.0, -1.0])).tolist() == [0.0, 0.0]
    up = gaze_to_pitchyaw(torch.tensor([0.0, -math.sin(0.2), -math.cos(0.2)]))
    left = gaze_to_pitchyaw(torch.tensor([-math.sin(0.3), 0.0, -math.cos(0.3)]))
    torch.testing.assert_close(up, torch.tensor([0.2, 0.0]))
    torch.testing.assert_close(left, torch.tensor([0.0, 0.3]))


def test_head_pose_round_trip_and_axis(device, dtype):
    gen = torch.Generator().manual_seed(2)
    py = ((torch.rand(50, 2, generator=gen, dtype=torch.float64) - 0.5) * 2.8).to(dtype=dtype, device=device)
    H = pitchyaw_to_rotation(py)
    torch.testing.assert_close(rotation_to_pitchyaw(H), py, **_tol(dtype))
    # Its third column is pitchyaw_to_vector(p, y) = -pitchyaw_to_gaze(p, y).
    torch.testing.assert_close(H[..., :, 2], -pitchyaw_to_gaze(py), **_tol(dtype))
    # Ry(yaw) · Rx(-pitch)
    torch.testing.assert_close(H, rotation_y(py[:, 1]) @ rotation_x(-py[:, 0]), **_tol(dtype))
    # Zero roll: the head x axis has no y component.
    assert H[..., 1, 0].abs().max() < 1e-6


def test_rotation_to_pitchyaw_reference():
    """(asin H[1,2], atan2(H[0,2], H[2,2])) on arbitrary rotations, against cv2.Rodrigues."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        H = cv2.Rodrigues(rng.normal(size=3) * 0.7)[0]
        got = rotation_to_pitchyaw(torch.from_numpy(H)).numpy()
        np.testing.assert_allclose(got, [np.arcsin(H[1, 2]), np.arctan2(H[0, 2], H[2, 2])], atol=1e-12)


def test_axis_angle_matches_cv2(dtype):
    rng = np.random.default_rng(4)
    r = rng.normal(size=(30, 3))
    r[0] = 0.0
    r[1] = [1e-10, 0, 0]
    got = axis_angle_to_rotation(torch.from_numpy(r).to(dtype))
    want = np.stack([cv2.Rodrigues(v)[0] for v in r])
    torch.testing.assert_close(got.double(), torch.from_numpy(want), **_tol(dtype))


def test_angular_error_values(device, dtype):
    a = torch.tensor([[0.0, 0.0], [0.1, 0.2]], dtype=dtype, device=device)
    assert torch.allclose(angular_error(a, a), torch.zeros(2, dtype=dtype, device=device), atol=1e-4)
    v = torch.tensor([1.0, 2.0, 3.0], dtype=dtype, device=device)
    assert float(angular_error(v, -v)) == pytest.approx(180.0, abs=1e-4)
    assert float(angular_error(v, 5 * v)) == pytest.approx(0.0, abs=1e-4)
    # pitch-yaw and vector forms agree
    b = torch.tensor([[0.3, -0.4], [0.0, 1.0]], dtype=dtype, device=device)
    torch.testing.assert_close(angular_error(a, b), angular_error(pitchyaw_to_gaze(a), pitchyaw_to_gaze(b)),
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(angular_error(torch.zeros(2, dtype=dtype, device=device),
                                             torch.tensor([0.0, 0.5], dtype=dtype, device=device)),
                               torch.tensor(math.degrees(0.5), dtype=dtype, device=device))


def test_angular_error_is_safe_near_0_and_180():
    """A 1e-7 rad separation is resolved (acos of the rounded dot product would give 0)."""
    a = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    eps = 1e-7
    b = torch.tensor([math.sin(eps), 0.0, math.cos(eps)], dtype=torch.float64)
    assert float(angular_error(a, b)) == pytest.approx(math.degrees(eps), rel=1e-6)
    c = torch.tensor([math.sin(eps), 0.0, -math.cos(eps)], dtype=torch.float64)
    assert float(angular_error(a, c)) == pytest.approx(180.0 - math.degrees(eps), abs=1e-10)
    assert not torch.isnan(angular_error(a.float(), -a.float()))


def test_angular_error_broadcasts():
    a = torch.zeros(4, 1, 2)
    b = torch.zeros(3, 2)
    assert angular_error(a, b).shape == (4, 3)


@pytest.mark.parametrize("fn,arg,match", [
    (gaze_to_pitchyaw, torch.zeros(3), "zero vector"),
    (gaze_to_pitchyaw, torch.tensor([0.0, 0.0, -2.0]), "unit vectors"),
    (gaze_to_pitchyaw, torch.tensor([float("nan"), 0.0, -1.0]), "NaN"),
    (gaze_to_pitchyaw, torch.zeros(4, 2), r"shape \(\.\.\., 3\)"),
    (pitchyaw_to_gaze, torch.zeros(3), r"shape \(\.\.\., 2\)"),
    (pitchyaw_to_rotation, torch.tensor([float("inf"), 0.0]), "NaN or inf"),
    (rotation_to_pitchyaw, torch.ones(3, 3), "not a rotation"),
    (rotation_to_pitchyaw, torch.diag(torch.tensor([1.0, 1.0, -1.0])), "reflection"),
    (rotation_to_pitchyaw, torch.eye(2), r"shape \(\.\.\., 3, 3\)"),
])
def test_bad_input_raises_naming_argument(fn, arg, match):
    with pytest.raises(ValueError, match=match):
        fn(arg)


def test_gaze_normalize_flag():
    g = torch.tensor([0.0, 0.0, -5.0])
    assert gaze_to_pitchyaw(g, normalize=True).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="g: contains a zero vector"):
        gaze_to_pitchyaw(torch.zeros(3), normalize=True)


def test_angular_error_bad_input():
    with pytest.raises(ValueError, match="zero vector"):
        angular_error(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="both"):
        angular_error(torch.zeros(2), torch.ones(3))
