"""onthefly.checks: the one way to skip input checks. Public functions refuse bad values outside
``trusted()``; inside it the value checks are skipped (the shape checks still run); the flag comes back on
leaving, an exception included, and a new thread starts with the checks on."""
from __future__ import annotations

import math
import threading

import pytest
import torch

from onthefly.camera import view_from_head_pose
from onthefly.checks import enabled, trusted
from onthefly.geometry import gaze_to_pitchyaw, pitchyaw_to_rotation, rotation_to_pitchyaw
from onthefly.normalization import normalization_rotation
from onthefly.render import rasterize

NAN_POSE = torch.tensor([[math.nan, 0.1]], dtype=torch.float64)


def _triangle():
    verts = torch.tensor([[[-1.0, -1.0, 5.0], [1.0, -1.0, 5.0], [0.0, 1.0, 5.0]]])
    faces = torch.tensor([[0, 1, 2]])
    K = torch.tensor([[20.0, 0, 7.5], [0, 20.0, 7.5], [0, 0, 1]])
    return verts, faces, K


def test_public_functions_refuse_bad_values_outside_the_block():
    assert enabled()
    with pytest.raises(ValueError, match="py: contains NaN"):
        pitchyaw_to_rotation(NAN_POSE)
    with pytest.raises(ValueError, match="g: expected unit vectors"):
        gaze_to_pitchyaw(torch.tensor([0.0, 0.0, -2.0]))
    with pytest.raises(ValueError, match="H: not a rotation"):
        rotation_to_pitchyaw(2 * torch.eye(3))
    with pytest.raises(ValueError, match="distance: must be positive"):
        view_from_head_pose(torch.zeros(2), torch.zeros(3), -1.0)
    with pytest.raises(ValueError, match="head_rotation: not a rotation"):
        view_from_head_pose(torch.zeros(2), torch.zeros(3), 600.0, head_rotation=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="face_centre: z must be positive"):
        normalization_rotation(torch.tensor([0.0, 0.0, -600.0]), torch.eye(3))
    verts, faces, K = _triangle()
    with pytest.raises(ValueError, match="out of range"):
        rasterize(verts, faces + 5, K, 16)
    with pytest.raises(ValueError, match="NaN"):
        rasterize(verts * math.nan, faces, K, 16)


def test_the_trusted_block_skips_the_value_checks_and_keeps_the_shape_checks():
    verts, faces, K = _triangle()
    with trusted():
        assert not enabled()
        assert torch.isnan(pitchyaw_to_rotation(NAN_POSE)).any()  # computed, not refused
        py = gaze_to_pitchyaw(torch.tensor([0.0, 0.0, -2.0]))     # not unit: the formula's value, unchecked
        assert py.shape == (2,)
        assert view_from_head_pose(torch.zeros(2), torch.zeros(3), -1.0).t[2] == -1.0
        frags = rasterize(verts * math.nan, faces, K, 16)         # no NaN check: nothing covered
        assert bool((frags.pix_to_face < 0).all())
        with pytest.raises(ValueError, match=r"py: expected shape \(\.\.\., 2\)"):
            pitchyaw_to_rotation(torch.zeros(3))                  # metadata checks always run
        with pytest.raises(ValueError, match="verts must have shape"):
            rasterize(verts[..., :2], faces, K, 16)
    assert enabled()


def test_trusted_results_equal_checked_results():
    g = torch.Generator().manual_seed(3)
    hp = (torch.rand(8, 2, generator=g, dtype=torch.float64) - 0.5)
    hR = torch.linalg.qr(torch.randn(8, 3, 3, generator=g, dtype=torch.float64))[0]
    hR = hR * torch.linalg.det(hR)[:, None, None]
    c = torch.randn(8, 3, generator=g, dtype=torch.float64) + torch.tensor([0.0, 0.0, 600.0])
    checked_view = view_from_head_pose(hp, c, 600.0, head_rotation=hR)
    with trusted():
        fast_view = view_from_head_pose(hp, c, 600.0, head_rotation=hR)
    assert torch.equal(checked_view.R, fast_view.R) and torch.equal(checked_view.t, fast_view.t)
    # the label is exact: the view sees the head at the requested pose
    assert (rotation_to_pitchyaw(checked_view.R @ hR) - hp).abs().max() < 1e-12


def test_the_flag_is_restored_after_an_exception_and_nests():
    with pytest.raises(RuntimeError, match="boom"):
        with trusted():
            assert not enabled()
            raise RuntimeError("boom")
    assert enabled()
    with pytest.raises(ValueError, match="py: contains NaN"):  # and the checks are really back
        pitchyaw_to_rotation(NAN_POSE)
    with trusted():
        with trusted():
            assert not enabled()
        assert not enabled()  # the inner block restores the outer state, not "on"
    assert enabled()


def test_a_new_thread_starts_with_the_checks_on():
    seen = []

    def work():
        seen.append(enabled())
        try:
            pitchyaw_to_rotation(NAN_POSE)
        except ValueError:
            seen.append("refused")

    with trusted():
        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert seen == [True, "refused"]
