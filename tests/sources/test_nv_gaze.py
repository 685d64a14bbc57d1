"""nv-gaze source: 3DDFA-layout fixtures from procedural heads import to the known geometry and labels."""
from __future__ import annotations

import numpy as np
import pytest
from cache.helpers import cli

from onthefly.cache import MeshCache
from onthefly.sources.base import SourceError
from onthefly.sources.nv_gaze import NVGazeSource

from .fixtures import angle_deg, procedural_records
from .nv_fixture import write_nv_frame


@pytest.fixture
def layout(tmp_path):
    recs = procedural_records()
    root, ann = tmp_path / "3ddfa", tmp_path / "MPIIFaceGaze"
    dist = np.array([-0.12, 0.05, 0.001, -0.0005, 0.0])
    truth = {}
    for k, (rec, (subj, day, stem)) in enumerate(zip(recs, [("p00", "day01", "0001"), ("p00", "day01", "0002"),
                                                            ("p01", "day02", "0007")])):
        truth[f"{subj}/{day}/{stem}"] = (rec, write_nv_frame(rec, root, ann, subj, day, stem,
                                                             dist=dist if subj == "p01" else None))
    return root, ann, truth


def test_lift_reproduces_geometry_and_labels(layout, tmp_path):
    root, ann, truth = layout
    src = NVGazeSource(root, ann)
    assert src.keys() == ["p00/day01/0001.obj", "p00/day01/0002.obj", "p01/day02/0007.obj"]
    out = tmp_path / "nv.h5"
    assert cli(["reconstruct", "--source", "nv-gaze", "--input", str(root), "--annotations", str(ann),
                "--out", str(out), "--quiet"]) == 0
    with MeshCache(out) as c:
        assert c.subjects == ["p00", "p01"] and c.n_topologies == 1
        for got in c:
            rec, info = truth[f"{got.subject}/{got.frame}"]
            assert np.abs(got.landmarks - rec.landmarks).max() < 0.1
            assert np.abs(got.verts - rec.verts).max() < 0.1
            np.testing.assert_array_equal(got.faces, rec.faces[:, ::-1])  # the file's winding is kept
            np.testing.assert_array_equal(got.vert_colors, rec.vert_colors)
            np.testing.assert_allclose(got.head_rotation, rec.head_rotation, atol=1e-6)
            np.testing.assert_allclose(got.face_centre, info["face_centre"], atol=1e-3)
            np.testing.assert_allclose(got.gaze_target, rec.gaze_target, atol=1e-6)
            want = rec.gaze_target - info["face_centre"]
            assert angle_deg(got.direction(), want) < 0.01
            assert got.face_centre_rule == "eye_mouth" and got.camera == ""
    rec = src.load("p00/day01/0002.obj")
    assert abs(rec.extra["alpha"] - truth["p00/day01/0002"][1]["alpha"]) < 1e-6 * rec.extra["alpha"]
    # the annotated pose (the fixture writes the true one) gives the same lift as PnP
    ann_rec = NVGazeSource(root, ann, head_pose="annotation").load("p00/day01/0002.obj")
    np.testing.assert_allclose(ann_rec.landmarks, rec.landmarks, atol=1e-3)
    # without undistortion (as NV does) the distorted subject is off by millimetres
    bad = NVGazeSource(root, ann, undistort=False).load("p01/day02/0007.obj")
    assert np.abs(bad.landmarks - truth["p01/day02/0007"][0].landmarks).max() > 0.5


def test_bad_input(layout, tmp_path):
    root, ann, truth = layout
    src = NVGazeSource(root, ann)
    obj = root / "p00/day01/0001.obj"
    lines = obj.read_text().splitlines()
    lines[3] = "v 1 2"
    obj.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=rf"{obj}:4: malformed 'v' line"):
        src.load("p00/day01/0001.obj")
    lm = root / "p00/day01/0002_lm.txt"
    lm.write_text("\n".join(lm.read_text().splitlines()[:67]) + "\n")
    with pytest.raises(SourceError, match=rf"{lm}: expected 68 landmarks"):
        src.load("p00/day01/0002.obj")
    txt = ann / "p01/p01.txt"
    txt.write_text("")
    with pytest.raises(SourceError, match=rf"{txt}: no annotation lines"):
        NVGazeSource(root, ann).load("p01/day02/0007.obj")
    txt.write_text(f"day02/0001.jpg {' '.join(['0'] * 26)} left\n")
    with pytest.raises(SourceError, match=rf"{txt}: no annotation row for day02/0007.jpg"):
        NVGazeSource(root, ann).load("p01/day02/0007.obj")
    txt.write_text(f"p00/day02/0007.jpg {' '.join(['0'] * 26)} right\n")
    with pytest.raises(SourceError, match=rf"{txt}:1: image p00/day02/0007.jpg belongs to subject p00"):
        NVGazeSource(root, ann).load("p01/day02/0007.obj")
    # all three frames are broken now: --skip-bad lists them, and with nothing left the build is an error
    with pytest.raises(SourceError, match="every record was bad"):
        cli(["reconstruct", "--source", "nv-gaze", "--input", str(root), "--annotations", str(ann),
             "--out", str(tmp_path / "c.h5"), "--quiet", "--skip-bad"])
    assert not (tmp_path / "c.h5").exists() and not (tmp_path / "c.h5.tmp").exists()


def test_skip_bad_keeps_good_frames(layout, tmp_path, capsys):
    root, ann, truth = layout
    (root / "p00/day01/0002_crop_params.txt").write_text("1 0 0\n0 1\n0 0 1\n")
    out = tmp_path / "c.h5"
    assert cli(["reconstruct", "--source", "nv-gaze", "--input", str(root), "--annotations", str(ann),
                "--out", str(out), "--quiet", "--skip-bad"]) == 0
    text = capsys.readouterr().out
    assert "skipped 1 bad record(s)" in text and "0002_crop_params.txt:2: expected 3 numbers, got 2" in text
    with MeshCache(out) as c:
        assert [r.frame for r in c] == ["day01/0001", "day02/0007"]
