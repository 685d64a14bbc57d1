"""OBJ / PLY / MTL readers: formats, polygons, errors naming file and line."""
from __future__ import annotations

import numpy as np
import pytest

from onthefly.meshio import read_mesh, read_obj, read_ply, write_obj, write_ply, write_textured_obj
from onthefly.sources.base import SourceError


def _mesh(n=12, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, 3))
    f = np.stack([np.zeros(n - 2, int), np.arange(1, n - 1), np.arange(2, n)], 1)
    return v, f, rng.integers(0, 256, (n, 3), dtype=np.uint8)


@pytest.mark.parametrize("binary", [True, False])
def test_ply_roundtrip(tmp_path, binary):
    v, f, c = _mesh()
    uv = np.random.default_rng(1).uniform(size=(len(v), 2))
    write_ply(tmp_path / "m.ply", v, f, c, uv=uv, binary=binary, texture_file="t.png")
    m = read_mesh(tmp_path / "m.ply")
    np.testing.assert_allclose(m.verts, v, atol=1e-6)
    np.testing.assert_array_equal(m.faces, f)
    np.testing.assert_array_equal(m.colors, c)
    np.testing.assert_allclose(m.uv, uv, atol=1e-6)
    np.testing.assert_array_equal(m.faces_uv, f)
    assert m.texture_path == tmp_path / "t.png"


def test_obj_polygons_negative_indices_and_mtl(tmp_path):
    p = tmp_path / "q.obj"
    p.write_text("mtllib q.mtl\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
                 "usemtl skin\nf -4/1 -3/2 -2/3 -1/4\n")
    (tmp_path / "q.mtl").write_text("newmtl Solid\nKd 1 1 1\nnewmtl skin\nmap_Kd tex.jpg\n")
    m = read_obj(p)
    assert m.faces.tolist() == [[0, 1, 2], [0, 2, 3]] and m.faces_uv.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert m.texture_path == tmp_path / "tex.jpg" and m.colors is None


def test_obj_colour_ranges(tmp_path):
    v, f, c = _mesh()
    write_obj(tmp_path / "a.obj", v, f, c)  # written in [0, 1]
    np.testing.assert_array_equal(read_obj(tmp_path / "a.obj").colors, c)
    text = "".join(f"v {x} {y} {z} {r} {g} {b}\n" for (x, y, z), (r, g, b) in zip(v, c.astype(int)))
    (tmp_path / "b.obj").write_text(text + "".join(f"f {a + 1} {b + 1} {d + 1}\n" for a, b, d in f))
    np.testing.assert_array_equal(read_obj(tmp_path / "b.obj").colors, c)  # 3DDFA style 0-255


def test_errors_name_file_and_line(tmp_path):
    p = tmp_path / "e.obj"
    p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")
    with pytest.raises(SourceError, match=rf"{p}:4: vertex index 9 out of range"):
        read_obj(p)
    p.write_text("v 0 0 0\nv 1 0 0 0.5\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(SourceError, match=rf"{p}:2: malformed 'v' line: expected 3 or 6 numbers, got 4"):
        read_obj(p)
    p.write_text("# nothing\n")
    with pytest.raises(SourceError, match="no vertices"):
        read_obj(p)
    with pytest.raises(SourceError, match="file not found"):
        read_obj(tmp_path / "missing.obj")
    p.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3/1\nusemtl x\n")
    (tmp_path / "e2.obj").write_text("mtllib nope.mtl\n" + p.read_text())
    with pytest.raises(SourceError, match=r"nope\.mtl: file not found"):
        read_obj(tmp_path / "e2.obj")
    q = tmp_path / "bad.ply"
    q.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\nproperty float z\n"
                  b"element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 x 0\n3 0 1 1\n")
    with pytest.raises(SourceError, match=rf"{q}:11: malformed 'vertex' line"):
        read_ply(q)
    with pytest.raises(SourceError, match="unsupported mesh format"):
        read_mesh(tmp_path / "m.stl")


def test_textured_obj_writer(tmp_path):
    v, f, c = _mesh()
    uv = np.random.default_rng(2).uniform(size=(5, 2))
    fuv = np.random.default_rng(3).integers(0, 5, f.shape)
    tex = np.random.default_rng(4).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    write_textured_obj(tmp_path / "t.obj", v, f, uv, fuv, tex, colors=c)
    m = read_obj(tmp_path / "t.obj")
    np.testing.assert_array_equal(m.faces_uv, fuv)
    np.testing.assert_array_equal(m.colors, c)
    assert m.texture_path.name == "t.png"
