"""mesh source (OBJ/PLY + JSON sidecar): exact import of known geometry, textures, and bad input."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from cache.helpers import cli

from onthefly.cache import MeshCache, build_cache
from onthefly.meshio import write_obj, write_ply, write_textured_obj
from onthefly.sources.base import SourceError
from onthefly.sources.mesh import MeshSource, load_mesh_frame

from .fixtures import angle_deg, procedural_records


def _sidecar(rec, **over):
    meta = {"K": rec.K.tolist(), "image_size": list(rec.image_size), "head_rotation": rec.head_rotation.tolist(),
            "landmarks": rec.landmarks.tolist(), "gaze_target": rec.gaze_target.tolist(),
            "face_centre_rule": rec.face_centre_rule, "subject": rec.subject, "frame": rec.frame}
    meta.update(over)
    return meta


def _write(folder, rec, kind="obj", **over):
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{rec.subject}_{rec.frame}"
    if kind == "obj":
        write_obj(stem.with_suffix(".obj"), rec.verts, rec.faces, rec.vert_colors)
    elif kind == "ply":
        write_ply(stem.with_suffix(".ply"), rec.verts, rec.faces, rec.vert_colors)
    elif kind == "uv":
        uv = (rec.verts[:, :2] @ np.diag([1 / 1280, 1 / 960]) + 0.5) % 1.0
        tex = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
        write_textured_obj(stem.with_suffix(".obj"), rec.verts, rec.faces, uv, rec.faces, tex)
    stem.with_suffix(".json").write_text(json.dumps(_sidecar(rec, **over)))
    return stem


def _check(got, rec):
    np.testing.assert_allclose(got.verts, rec.verts, atol=1e-4)
    np.testing.assert_array_equal(got.faces, rec.faces)
    assert np.abs(got.landmarks - rec.landmarks).max() < 0.1
    assert angle_deg(got.direction(), rec.direction()) < 0.01
    np.testing.assert_allclose(got.head_rotation, rec.head_rotation, atol=1e-12)
    np.testing.assert_allclose(got.face_centre, rec.face_centre, atol=1e-6)


@pytest.mark.parametrize("kind", ["obj", "ply"])
def test_vertex_colour_roundtrip(tmp_path, kind):
    rec = procedural_records()[0]
    stem = _write(tmp_path, rec, kind)
    got = load_mesh_frame(stem.with_suffix("." + kind))
    _check(got, rec)
    assert np.abs(got.vert_colors.astype(int) - rec.vert_colors).max() <= 0
    assert (got.subject, got.frame) == (rec.subject, rec.frame)


def test_uv_texture_and_cache(tmp_path):
    recs = procedural_records()
    _write(tmp_path / "a", recs[0], "uv")
    _write(tmp_path / "b", recs[1], "obj", head_rotation=None, head_rvec=cv2.Rodrigues(recs[1].head_rotation)[0]
           .ravel().tolist(), gaze_target=None, gaze_direction=(recs[1].direction() * 3).tolist())
    for p in (tmp_path / "b").glob("*.json"):  # drop the null keys written above
        meta = {k: v for k, v in json.loads(p.read_text()).items() if v is not None}
        p.write_text(json.dumps(meta))
    out = tmp_path / "m.h5"
    assert cli(["reconstruct", "--source", "mesh", "--input", str(tmp_path), "--out", str(out), "--quiet",
                "--texture-size", "32"]) == 0
    with MeshCache(out) as c:
        a, b = c[0], c[1]
        assert a.texture.shape == (21, 32, 3) and a.vert_colors is None and a.uv is not None
        _check(a, recs[0])
        _check(b, recs[1])
        assert b.gaze_target is None


def test_ply_uv_texture(tmp_path):
    rec = procedural_records()[0]
    uv = (rec.verts[:, :2] @ np.diag([1 / 1280, 1 / 960]) + 0.5) % 1.0
    tex = np.full((16, 8, 3), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "skin.png"), tex)
    write_ply(tmp_path / "m.ply", rec.verts, rec.faces, uv=uv, texture_file="skin.png")
    (tmp_path / "m.json").write_text(json.dumps(_sidecar(rec)))
    got = load_mesh_frame(tmp_path / "m.ply")
    _check(got, rec)
    assert got.texture.shape == (16, 8, 3) and got.vert_colors is None
    np.testing.assert_array_equal(got.faces_uv, rec.faces)


def test_mesh_to_camera(tmp_path):
    rec = procedural_records()[0]
    R = cv2.Rodrigues(np.array([0.1, -0.2, 0.3]))[0]
    t = np.array([5.0, -7.0, 20.0])
    moved = rec.verts.astype(np.float64) @ R  # R^T applied: X = R^T (X_cam - 0), then t subtracted below
    stem = tmp_path / "x"
    write_obj(stem.with_suffix(".obj"), moved - R.T @ t, rec.faces, rec.vert_colors)
    stem.with_suffix(".json").write_text(json.dumps(_sidecar(rec, mesh_to_camera={"R": R.tolist(),
                                                                                   "t": t.tolist()})))
    _check(load_mesh_frame(stem.with_suffix(".obj")), rec)


def test_bad_input(tmp_path):
    rec = procedural_records()[0]
    stem = _write(tmp_path / "corrupt", rec)
    obj = stem.with_suffix(".obj")
    lines = obj.read_text().splitlines()
    lines[10] = "v 1.0 oops 3.0 0.5 0.5 0.5"
    obj.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=rf"{obj}:11: malformed 'v' line"):
        load_mesh_frame(obj)
    lines[10] = "v 1.0 nan 3.0 0.5 0.5 0.5"
    obj.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=rf"{obj}:11: 'v' line contains NaN"):
        load_mesh_frame(obj)
    stem = _write(tmp_path / "lm", rec, landmarks=rec.landmarks[:60].tolist())
    with pytest.raises(SourceError, match=r"lm.*json: 'landmarks' has 60 points, expected 68"):
        load_mesh_frame(stem.with_suffix(".obj"))
    stem = _write(tmp_path / "tex", rec, "uv")
    stem.with_suffix(".png").unlink()
    with pytest.raises(SourceError, match=r"tex.*\.png: texture file not found"):
        load_mesh_frame(stem.with_suffix(".obj"))
    stem.with_suffix(".png").write_bytes(b"not an image")
    with pytest.raises(SourceError, match="not a readable image"):
        load_mesh_frame(stem.with_suffix(".obj"))
    stem = _write(tmp_path / "json", rec)
    stem.with_suffix(".json").write_text('{"K": [1, 2,\n  oops]}')
    with pytest.raises(SourceError, match=r"json.*\.json:2: invalid JSON"):
        load_mesh_frame(stem.with_suffix(".obj"))
    stem = _write(tmp_path / "nokey", rec)
    meta = json.loads(stem.with_suffix(".json").read_text())
    del meta["gaze_target"]
    stem.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(SourceError, match="missing key 'gaze_target'"):
        load_mesh_frame(stem.with_suffix(".obj"))


def test_skip_bad_keeps_the_rest(tmp_path, capsys):
    recs = procedural_records()
    root = tmp_path / "in"
    for r in recs:
        _write(root / r.subject, r)
    bad = sorted((root / recs[1].subject).glob("*.obj"))[0]
    bad.write_text(bad.read_text().replace("\nf ", "\nf 1 2\nf ", 1))
    out = tmp_path / "c.h5"
    with pytest.raises(SourceError, match=r"\.obj:\d+: malformed 'f' line"):
        cli(["reconstruct", "--source", "mesh", "--input", str(root), "--out", str(out), "--quiet"])
    assert not out.exists()
    assert cli(["reconstruct", "--source", "mesh", "--input", str(root), "--out", str(out), "--quiet",
                "--skip-bad"]) == 0
    text = capsys.readouterr().out
    assert "skipped 1 bad record(s)" in text and str(bad) in text
    with MeshCache(out) as c:
        assert len(c) == len(recs) - 1
    assert build_cache(MeshSource(root), tmp_path / "d.h5", skip_bad=True).written == len(recs) - 1


def test_face_region_sidecar(tmp_path):
    rec = procedural_records()[0]
    assert rec.vert_face_region is not None and 0 < rec.vert_face_region.sum() < len(rec.verts)
    idx = np.flatnonzero(rec.vert_face_region)
    got = load_mesh_frame(_write(tmp_path / "idx", rec, face_region=idx.tolist()).with_suffix(".obj"))
    np.testing.assert_array_equal(got.vert_face_region, rec.vert_face_region)
    got = load_mesh_frame(_write(tmp_path / "flags", rec,
                                 face_region=rec.vert_face_region.tolist()).with_suffix(".obj"))
    np.testing.assert_array_equal(got.vert_face_region, rec.vert_face_region)
    assert load_mesh_frame(_write(tmp_path / "none", rec).with_suffix(".obj")).vert_face_region is None
    stem = _write(tmp_path / "bad", rec, face_region=[0, len(rec.verts)])
    with pytest.raises(SourceError, match=r"bad.*json: 'face_region' indices must lie in"):
        load_mesh_frame(stem.with_suffix(".obj"))
    stem = _write(tmp_path / "short", rec, face_region=[True, False])
    with pytest.raises(SourceError, match=r"short.*json: 'face_region' has 2 flags"):
        load_mesh_frame(stem.with_suffix(".obj"))
