"""xgaze3d source: Metashape-style fixtures with ETH-XGaze CSV and calibration import to the known labels."""
from __future__ import annotations

import numpy as np
import pytest

from onthefly.cache import MeshCache, validate_cache
from onthefly.sources.base import SourceError
from onthefly.sources.xgaze3d import LM68_FROM_50, XGaze3DSource, cluster_decimate, raycast

from cache.helpers import cli

from .fixtures import angle_deg, procedural_records
from .xgaze_fixture import to_camera, write_face_model, write_xgaze_frame


@pytest.fixture
def layout(tmp_path):
    recs = procedural_records()
    root, ann, cal = tmp_path / "recon", tmp_path / "annotation", tmp_path / "calibration"
    fm = tmp_path / "face_model.txt"
    truth = {}
    for rec, (subj, frame) in zip(recs, [("subject0000", "frame0000"), ("subject0000", "frame0001"),
                                         ("subject0003", "frame0000")]):
        write_xgaze_frame(rec, root, ann, cal, subj, frame)
        truth[(subj, frame)] = rec
    # the face model is the same for every frame: use frame 0's head (all fixture heads are checked against it)
    write_face_model(recs[0], fm)
    return root, ann, cal, fm, truth


@pytest.mark.parametrize("camera", ["cam00", "cam01"])
def test_import_reproduces_labels(layout, tmp_path, camera):
    root, ann, cal, fm, truth = layout
    rec = truth[("subject0000", "frame0000")]
    M, t = to_camera(rec, camera)
    got = XGaze3DSource(root, ann, cal, fm, camera=camera).load("subject0000/frame0000/final_obj/mvs3d.obj")
    L = rec.landmarks @ M.T + t
    assert np.abs(got.landmarks[LM68_FROM_50] - L[LM68_FROM_50]).max() < 0.1
    # the other 18 are ray-cast: on the ray through the annotated 2D point, on the mesh; equal to the true landmark
    # wherever that landmark is the first surface point along its ray (not self-occluded)
    miss = np.setdiff1d(np.arange(68), LM68_FROM_50)
    assert got.extra["landmark_misses"] <= 3  # a ray grazing the jaw silhouette may miss: on the ray at chin depth
    rays = L[miss] / np.linalg.norm(L[miss], axis=1, keepdims=True)
    np.testing.assert_allclose(got.landmarks[miss] / np.linalg.norm(got.landmarks[miss], axis=1, keepdims=True),
                               rays, atol=1e-7)
    first, hit = raycast(rec.verts @ M.T + t, rec.faces, rays)
    visible = hit & (np.abs(np.linalg.norm(first, axis=1) - np.linalg.norm(L[miss], axis=1)) < 1e-3)
    assert visible.sum() >= 6
    assert np.abs(got.landmarks[miss][visible] - L[miss][visible]).max() < 0.1
    np.testing.assert_allclose(got.verts, rec.verts @ M.T + t, atol=1e-3)
    np.testing.assert_allclose(got.head_rotation, M @ rec.head_rotation, atol=1e-8)
    np.testing.assert_allclose(got.face_centre, M @ rec.face_centre + t, atol=1e-6)
    assert angle_deg(got.direction(), M @ rec.direction()) < 0.01
    assert got.texture.shape == (128, 128, 3) and got.uv.shape == (len(rec.verts), 2)
    assert (got.subject, got.frame, got.camera) == ("subject0000", "frame0000", camera)


def test_cli_build_texture_downsampled_and_decimated(layout, tmp_path):
    root, ann, cal, fm, truth = layout
    out = tmp_path / "x.h5"
    # only frame 0 matches the face model exactly; the build itself must work for all frames
    assert cli(["reconstruct", "--source", "xgaze3d", "--input", str(root), "--annotations", str(ann),
                "--calibration", str(cal), "--face-model", str(fm), "--out", str(out), "--quiet",
                "--texture-size", "64", "--fp16"]) == 0
    with MeshCache(out) as c:
        assert c.subjects == ["subject0000", "subject0003"] and c.n_topologies == 3 and c.n_textures == 3
        assert c[0].texture.shape == (64, 64, 3)
    assert validate_cache(out) == []
    rec = truth[("subject0000", "frame0000")]
    v, f, col, fuv = cluster_decimate(rec.verts, rec.faces, 3.0, rec.vert_colors, rec.faces)
    assert len(v) < len(rec.verts) / 2 and f.max() < len(v) and len(fuv) == len(f)
    dec = XGaze3DSource(root, ann, cal, fm, decimate=3.0).load("subject0000/frame0000/final_obj/mvs3d.obj")
    assert len(dec.verts) == len(v) and dec.faces_uv.shape == dec.faces.shape


def test_bad_input(layout, tmp_path):
    root, ann, cal, fm, truth = layout
    key = "subject0000/frame0001/final_obj/mvs3d.obj"
    (root / key).with_name("mvs3d.jpg").unlink()
    with pytest.raises(SourceError, match=r"frame0001/final_obj/mvs3d\.jpg: texture file not found"):
        XGaze3DSource(root, ann, cal, fm).load(key)
    csvp = ann / "subject0003.csv"
    lines = csvp.read_text().splitlines()
    csvp.write_text(lines[1] + "\n")  # only the cam01 row is left
    with pytest.raises(SourceError, match=rf"{csvp}: no annotation row for frame0000 / cam00"):
        XGaze3DSource(root, ann, cal, fm).load("subject0003/frame0000/final_obj/mvs3d.obj")
    csvp.write_text("subject0001/" + lines[0] + "\n")
    with pytest.raises(SourceError, match=rf"{csvp}:1: row subject0001/frame0000 belongs to subject0001"):
        XGaze3DSource(root, ann, cal, fm).load("subject0003/frame0000/final_obj/mvs3d.obj")
    csvp.write_text(",".join(lines[0].split(",")[:100]) + "\n")
    with pytest.raises(SourceError, match=rf"{csvp}:1: expected 149 fields"):
        XGaze3DSource(root, ann, cal, fm).load("subject0003/frame0000/final_obj/mvs3d.obj")
    bad_fm = tmp_path / "fm49.txt"
    bad_fm.write_text("\n".join(fm.read_text().splitlines()[:49]))
    with pytest.raises(SourceError, match=r"fm49\.txt: expected 50 rows"):
        XGaze3DSource(root, ann, cal, bad_fm)
    out = tmp_path / "c.h5"
    assert cli(["reconstruct", "--source", "xgaze3d", "--input", str(root), "--annotations", str(ann),
                "--calibration", str(cal), "--face-model", str(fm), "--out", str(out), "--quiet",
                "--skip-bad"]) == 0
    with MeshCache(out) as c:
        assert [(r.subject, r.frame) for r in c] == [("subject0000", "frame0000")]
