"""Fixtures of the dataset tests: small procedural caches built once per session."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from onthefly.normalization import NormalizedCamera

#: a small normalized camera for the tests that do not look at pixels closely (0.4 px/mm)
SMALL = NormalizedCamera(240.0, 600.0, 56, 56, "small")
PUPIL_RGB = (255, 0, 255)


@pytest.fixture(scope="session")
def proc_cache(tmp_path_factory):
    """16 procedural frames of 4 subjects (the embedded default source)."""
    from onthefly.cache import build_cache
    from onthefly.sources.procedural import ProceduralSource

    path = tmp_path_factory.mktemp("dataset") / "proc.h5"
    build_cache(ProceduralSource(count=16, seed=0, subjects=4), path)
    return path


@pytest.fixture(scope="session")
def iris_cache(tmp_path_factory):
    """6 procedural heads (3 subjects) whose pupils are painted magenta, with their pupil centres (the iris
    caps' poles, camera frame): returns (path, {frame id: {"iris": (2, 3), "eyeball": (2, 3), "radius": float,
    "target_distance": mm from the face centre to the gaze target}})."""
    from onthefly.cache import CacheWriter
    from onthefly.geometry import pitchyaw_to_rotation
    from onthefly.normalization import face_centre
    from onthefly.sources.base import FrameRecord
    from onthefly.synthetic import procedural_heads

    heads = procedural_heads(6, seed=3)
    rng = np.random.default_rng(5)
    K = np.array([[1200.0, 0, 640], [0, 1200.0, 480], [0, 0, 1]])
    path = tmp_path_factory.mktemp("iris") / "iris.h5"
    iris = {}
    with CacheWriter(path, source="test-iris") as w:
        for i in range(len(heads)):
            R = pitchyaw_to_rotation(torch.tensor(np.deg2rad(rng.uniform(-25, 25, 2)))).numpy()
            lm = heads.landmarks[i].double().numpy()
            c_head = face_centre(torch.from_numpy(lm)).numpy()
            c = np.array([rng.uniform(-60, 60), rng.uniform(-40, 40), rng.uniform(500, 700)])
            t = c - R @ c_head
            col = heads.vert_colors[i].numpy().copy()
            col[heads.part_ids[i].numpy() == 8] = PUPIL_RGB
            frame = f"f{i}"
            iris[frame] = {"iris": heads.iris_centres[i].double().numpy() @ R.T + t,
                           "eyeball": heads.eyeball_centres[i].double().numpy() @ R.T + t,
                           "radius": float(heads.eyeball_radius[i]),
                           "target_distance": float(np.linalg.norm(
                               R @ heads.gaze_targets[i].double().numpy() + t - c))}
            w.add(FrameRecord(
                verts=(heads.verts[i].double().numpy() @ R.T + t).astype(np.float32), faces=heads.faces.numpy(),
                vert_colors=col, landmarks=lm @ R.T + t, head_rotation=R, face_centre=c,
                face_centre_rule="eye_nose", gaze_target=R @ heads.gaze_targets[i].double().numpy() + t, K=K,
                image_size=(1280, 960), subject=f"s{i // 2}", frame=frame, camera="cam0", origin=f"iris[{i}]"))
    return path, iris
