"""Pose samplers: distributions, files, gaze mode, rejection."""
from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch

from onthefly.geometry import gaze_to_pitchyaw, pitchyaw_to_gaze, pitchyaw_to_rotation
from onthefly.poses import (
    Empirical,
    Gaussian,
    Source,
    Uniform,
    head_pose_for_gaze,
    load_pose_rows,
    make_sampler,
    rotation_angle,
    sample_targets,
)


def g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_gaussian_and_uniform_statistics():
    x = Gaussian(mean=(10, -5), std=(4, 8)).sample(20000, g())
    d = torch.rad2deg(x)
    assert abs(float(d[:, 0].mean()) - 10) < 0.2 and abs(float(d[:, 1].std()) - 8) < 0.2
    u = torch.rad2deg(Uniform(pitch=(-10, 20), yaw=(5, 6)).sample(5000, g()))
    assert u[:, 0].min() >= -10 and u[:, 0].max() <= 20 and u[:, 1].min() >= 5 and u[:, 1].max() <= 6
    assert torch.equal(Gaussian().sample(5, g(3)), Gaussian().sample(5, g(3)))


def test_empirical_files(tmp_path):
    rows = np.array([[0.1, -0.2], [0.3, 0.4], [-0.5, 0.0]])
    np.savetxt(tmp_path / "p.txt", rows)
    np.save(tmp_path / "p.npy", rows.reshape(3, 1, 2))
    with h5py.File(tmp_path / "p.h5", "w") as f:
        f["face_head_pose"] = rows
    for name in ("p.txt", "p.npy", "p.h5"):
        assert np.allclose(load_pose_rows(tmp_path / name).numpy(), rows)
        s = make_sampler({"type": "empirical", "path": str(tmp_path / name)})
        x = s.sample(300, g())
        assert {tuple(np.round(r, 6)) for r in x.numpy()} == {tuple(r) for r in rows}
    jit = Empirical(tmp_path / "p.txt", jitter=1.0).sample(3000, g())
    near = torch.rad2deg((jit[:, None] - torch.from_numpy(rows)[None]).norm(dim=-1)).min(1).values
    assert 0.8 < float(near.mean()) < 1.8  # |N(0, 1° I)| has mean 1.25°
    with pytest.raises(ValueError, match="not found"):
        load_pose_rows(tmp_path / "nope.txt")
    np.savetxt(tmp_path / "deg.txt", rows * 100)
    with pytest.raises(ValueError, match="degrees"):
        load_pose_rows(tmp_path / "deg.txt")
    with pytest.raises(ValueError, match="no dataset"):
        load_pose_rows(tmp_path / "p.h5", key="gaze")
    with pytest.raises(ValueError, match="needs 'path'"):
        make_sampler("empirical")


def test_head_pose_for_gaze_is_exact():
    gh = pitchyaw_to_gaze(torch.randn(2000, 2, generator=g(1), dtype=torch.float64) * 0.3)
    lab = torch.randn(2000, 2, generator=g(2), dtype=torch.float64) * 0.4
    h, ok = head_pose_for_gaze(gh, lab)
    assert ok.float().mean() > 0.95
    got = gaze_to_pitchyaw((pitchyaw_to_rotation(h) @ gh[..., None])[..., 0])
    assert (got - lab)[ok].abs().max() < 1e-9


def test_sample_targets_rejection_and_source():
    src = torch.zeros(500, 2, dtype=torch.float64)
    gh = pitchyaw_to_gaze(torch.zeros(500, 2, dtype=torch.float64))
    t = sample_targets(Gaussian(std=30), src, gh, g(), max_rotation_deg=20)
    rel = pitchyaw_to_rotation(t.head_pose) @ pitchyaw_to_rotation(src).transpose(-1, -2)
    assert rotation_angle(rel).max() <= math.radians(20) + 1e-12 and t.rounds > 1
    s = sample_targets(Source(), src + 0.1, gh, g())
    assert torch.equal(s.head_pose, src + 0.1)
    tg = sample_targets(Gaussian(std=10, on="gaze"), src, gh, g(), max_rotation_deg=None)
    got = gaze_to_pitchyaw((pitchyaw_to_rotation(tg.head_pose) @ gh[..., None])[..., 0])
    assert (got - tg.drawn).abs().max() < 1e-9
    with pytest.raises(ValueError, match="violate"):
        sample_targets(Uniform(pitch=(85, 89), yaw=(0, 0)), src, gh, g(), max_rounds=2)
    with pytest.raises(ValueError, match="on:"):
        Gaussian(on="eyes")
