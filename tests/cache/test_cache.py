"""Cache format, writer (atomic, dedup, fp16, textures), MeshCache reader and validation."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch

from onthefly.cache import (
    CACHE_VERSION,
    CacheWriter,
    MeshCache,
    build_cache,
    cache_info,
    downsample_texture,
    validate_cache,
)
from onthefly.sources.base import SourceError

from .helpers import ListSource, tiny_record


def _records():
    return [tiny_record(i, f"s{i // 3}") for i in range(6)] + [tiny_record(6, "s2", uv=True),
                                                               tiny_record(7, "s2", uv=True, n_verts=90)]


def test_roundtrip_dedup_and_records(tmp_path):
    recs = _records()
    out = tmp_path / "c.h5"
    rep = build_cache(ListSource(recs), out)
    assert rep.written == 8 and out.exists() and not (tmp_path / "c.h5.tmp").exists()
    with h5py.File(out) as f:
        assert f.attrs["onthefly_cache_version"] == CACHE_VERSION and f.attrs["complete"]
        # 6 vertex-coloured frames share the fan topology; the two UV frames have their own
        assert len(f["topologies/vertex_count"]) == 3
    with MeshCache(out) as c:
        assert len(c) == 8 and c.subjects == ["s0", "s1", "s2"]
        for i, r in enumerate(recs):
            got = c[i]
            np.testing.assert_allclose(got.verts, r.verts, atol=1e-4)
            np.testing.assert_array_equal(got.faces, r.faces)
            np.testing.assert_allclose(got.landmarks, r.landmarks, atol=1e-9)
            np.testing.assert_allclose(got.head_rotation, r.head_rotation, atol=1e-12)
            np.testing.assert_allclose(got.gaze_target, r.gaze_target)
            np.testing.assert_allclose(got.K, r.K)
            assert (got.subject, got.frame, got.camera, got.image_size) == (r.subject, r.frame, r.camera, (640, 480))
            if r.texture is not None:
                np.testing.assert_array_equal(got.texture, r.texture)
                np.testing.assert_array_equal(got.faces_uv, r.faces_uv)
                np.testing.assert_allclose(got.uv, r.uv)
                assert got.vert_colors is None
            else:
                np.testing.assert_array_equal(got.vert_colors, r.vert_colors)
        assert [r.frame for r in c] == [r.frame for r in recs]
    assert validate_cache(out) == []


def test_load_packed_subjects(tmp_path):
    recs = _records()
    out = build_cache(ListSource(recs), tmp_path / "c.h5").path
    with MeshCache(out) as c:
        p = c.load(["s2", "s0"], device="cpu")
        want = [0, 1, 2, 6, 7]
        assert p.index.tolist() == want and p.subject == ["s0"] * 3 + ["s2"] * 2
        assert p.vert_offsets.tolist() == np.cumsum([0] + [len(recs[i].verts) for i in want]).tolist()
        for k, i in enumerate(want):
            np.testing.assert_allclose(p.frame_verts(k).numpy(), recs[i].verts, atol=1e-4)
            faces = p.faces[int(p.topology_id[k])]
            np.testing.assert_array_equal(faces.numpy(), recs[i].faces)
            np.testing.assert_allclose(p.landmarks[k].double().numpy(), recs[i].landmarks, atol=1e-4)
        assert len(p.faces) == 3 and p.uv[int(p.topology_id[0])] is None
        assert p.texture_id.tolist() == [-1, -1, -1, 0, 1]
        assert torch.equal(p.textures[1], torch.from_numpy(recs[7].texture))
        assert p.vert_frame.tolist() == np.repeat(np.arange(5), [len(recs[i].verts) for i in want]).tolist()
        np.testing.assert_allclose(p.gaze_direction[3].double().numpy(), recs[6].direction(), atol=1e-6)
        faces, fo = p.packed_faces()
        for k, i in enumerate(want):
            np.testing.assert_array_equal((faces[fo[k]:fo[k + 1]] - p.vert_offsets[k]).numpy(), recs[i].faces)
        assert int(faces.max()) == len(p.verts) - 1
        with pytest.raises(ValueError, match="unknown subject"):
            c.load("nobody")


def test_fp16_precision(tmp_path):
    recs = [tiny_record(i, "s0") for i in range(3)]
    out = build_cache(ListSource(recs), tmp_path / "h.h5", vertex_dtype="float16").path
    with MeshCache(out) as c:
        assert c.vertex_dtype == "float16"
        p = c.load()
        for k, r in enumerate(recs):  # stored relative to the face centre: ~0.06 mm precision near the face
            assert np.abs(p.frame_verts(k).numpy() - r.verts).max() < 0.1
    f32 = build_cache(ListSource([tiny_record(i, "s0") for i in range(3)]), tmp_path / "f.h5").path
    assert os.path.getsize(out) < os.path.getsize(f32)


def test_texture_downsampling(tmp_path):
    rec = tiny_record(0, uv=True)
    rec.texture = np.random.default_rng(0).integers(0, 256, (512, 256, 3), dtype=np.uint8)
    out = build_cache(ListSource([rec]), tmp_path / "t.h5", texture_size=128).path
    with MeshCache(out) as c:
        assert c[0].texture.shape == (128, 64, 3)
    small = downsample_texture(np.full((8, 8, 3), 7, np.uint8), 16)
    assert small.shape == (8, 8, 3)
    area = downsample_texture(np.kron(np.eye(2), np.ones((4, 4)))[..., None].repeat(3, 2).astype(np.uint8) * 200, 2)
    assert area[..., 0].tolist() == [[200, 0], [0, 200]]


def test_atomic_write_interrupted(tmp_path):
    out = tmp_path / "c.h5"

    class Boom(Exception):
        pass

    class Exploding(ListSource):
        def load(self, key):
            if key == 2:
                raise Boom("disk on fire")
            return super().load(key)

    with pytest.raises(Boom):
        build_cache(Exploding([tiny_record(i) for i in range(4)]), out)
    assert not out.exists() and not (tmp_path / "c.h5.tmp").exists()
    # a leftover temp file from a killed process never opens as a cache
    w = CacheWriter(out)
    w.add(tiny_record(0))
    w._f.flush()
    assert not out.exists() and w.tmp.exists()
    with pytest.raises(FileNotFoundError, match="interrupted"):
        MeshCache(out)
    with pytest.raises(ValueError, match="incomplete"):
        MeshCache(w.tmp)
    w.abort()
    # an existing cache is only replaced when the new build completes
    build_cache(ListSource([tiny_record(0)]), out)
    with pytest.raises(Boom):
        build_cache(Exploding([tiny_record(i) for i in range(4)]), out)
    assert len(MeshCache(out)) == 1


def test_unwritable_output(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        build_cache(ListSource([tiny_record(0)]), tmp_path / "missing" / "c.h5")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        build_cache(ListSource([tiny_record(0)]), tmp_path / "file" / "c.h5")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(ValueError, match="not writable"):
            build_cache(ListSource([tiny_record(0)]), ro / "c.h5")
    finally:
        ro.chmod(0o700)


def test_bad_records_and_skip_bad(tmp_path):
    nan = tiny_record(1)
    nan.verts[5, 1] = np.nan
    few = tiny_record(2)
    few.landmarks = few.landmarks[:50]
    items = [tiny_record(0), nan, few, SourceError("x.obj:12: malformed 'v' line"), tiny_record(4)]
    with pytest.raises(SourceError, match=r"tiny\[1\].*verts contains NaN"):
        build_cache(ListSource(items), tmp_path / "a.h5")
    rep = build_cache(ListSource(items), tmp_path / "a.h5", skip_bad=True)
    assert rep.written == 2 and [k for k, _ in rep.skipped] == ["1", "2", "3"]
    assert "expected 68 landmarks, got 50" in rep.skipped[1][1] and "x.obj:12" in rep.skipped[2][1]
    with MeshCache(rep.path) as c:
        assert [r.frame for r in c] == ["f000", "f004"]
    with pytest.raises(SourceError, match="nothing written"):
        build_cache(ListSource(items[1:4]), tmp_path / "b.h5", skip_bad=True)


def test_validate_detects_corruption(tmp_path):
    out = build_cache(ListSource(_records()), tmp_path / "c.h5").path
    with h5py.File(out, "r+") as f:
        v = f["verts"]
        v[3] = np.nan
        f["frames/head_rotation"][4] = np.eye(3) * 2
        lm = f["frames/landmarks"][()]
        lm[5, 0, 0] = np.inf
        f["frames/landmarks"][...] = lm
    probs = validate_cache(out)
    assert any(p.startswith("frame 0 (s0/f000/c0): vertices contain NaN") for p in probs)
    assert any("frame 4" in p and "rotation" in p for p in probs)
    assert any("frame 5" in p and "landmarks" in p for p in probs)
    with h5py.File(out, "r+") as f:
        del f.attrs["complete"]
    assert "incomplete" in validate_cache(out)[0]
    with h5py.File(out, "r+") as f:
        f.attrs["onthefly_cache_version"] = 99
    with pytest.raises(ValueError, match="version 99"):
        MeshCache(out)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        MeshCache(junk)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    assert "not an onthefly cache" in validate_cache(tmp_path / "other.h5")[0]


def test_info(tmp_path):
    out = build_cache(ListSource(_records()), tmp_path / "c.h5").path
    info = cache_info(out)
    assert info["frames"] == 8 and info["subjects"] == {"s0": 3, "s1": 3, "s2": 2}
    assert info["topologies"] == 3 and info["frames_per_topology_max"] == 6
    assert info["textures"] == 2 and info["vertex_colour_frames"] == 6
    assert info["faces_referenced"] == 6 * 68 + 68 + 88


def test_load_to_device_and_indices(tmp_path, device):
    recs = _records()
    out = build_cache(ListSource(recs), tmp_path / "c.h5", vertex_dtype="float16").path
    with MeshCache(out) as c:
        p = c.load(device=device, indices=[7, 1, 2])
        assert p.verts.device.type == device.type and p.faces[0].device.type == device.type
        assert p.index.tolist() == [1, 2, 7] and p.textures[0].shape == (64, 48, 3)
        for k, i in enumerate([1, 2, 7]):
            assert float((p.frame_verts(k).cpu() - torch.from_numpy(recs[i].verts)).abs().max()) < 0.1
        assert p.vert_frame.tolist() == np.repeat([0, 1, 2], [70, 70, 90]).tolist()


def test_cli_validate_exit_status(tmp_path, capsys):
    from .helpers import cli

    out = build_cache(ListSource(_records()), tmp_path / "c.h5").path
    assert cli(["cache", "validate", str(out)]) == 0
    with h5py.File(out, "r+") as f:
        f["frames/K"][2] = np.zeros((3, 3))
    assert cli(["cache", "validate", str(out)]) == 1
    text = capsys.readouterr().out
    assert "frame 2 (s0/f002/c0): K is not a valid intrinsics matrix" in text and "INVALID" in text
    assert cli(["cache", "info", "--json", str(out)]) == 0
    assert '"frames": 8' in capsys.readouterr().out
    with pytest.raises(FileNotFoundError):
        cli(["cache", "info", str(tmp_path / "nope.h5")])


def test_layout_checked_once_per_file_version(tmp_path, monkeypatch):
    """An export opens one cache several times: the layout check runs once per file version in a process, and a
    file changed since (new size or modification time) is checked again and refused when damaged."""
    import onthefly.cache as cache_mod

    out = build_cache(ListSource(_records()), tmp_path / "c.h5").path
    old = os.stat(out).st_mtime - 60
    os.utime(out, (old, old))  # a settled file (a just-written one is checked on every open)
    calls = []
    real = cache_mod._structure_problems
    monkeypatch.setattr(cache_mod, "_structure_problems", lambda f: calls.append(1) or real(f))
    for _ in range(3):
        with MeshCache(out) as c:
            assert len(c) == 8
    assert len(calls) == 1
    with h5py.File(out, "r+") as f:  # damage the layout; the write moves the modification time
        del f["frames/vert_offset"]
    with pytest.raises(ValueError, match="damaged cache.*vert_offset"):
        MeshCache(out)
    assert len(calls) == 2
    fresh = build_cache(ListSource(_records()), tmp_path / "d.h5").path  # just written: not remembered
    for _ in range(2):
        MeshCache(fresh).close()
    assert len(calls) == 4
