import numpy as np
import pytest

from onthefly.meshio import write_obj


def test_write_obj_round_trip(tmp_path):
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.5]], np.float32)
    f = np.array([[0, 1, 2]])
    c = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    p = write_obj(tmp_path / "m.obj", v, f, c)
    lines = [ln.split() for ln in p.read_text().splitlines() if not ln.startswith("#")]
    vs = np.array([[float(x) for x in ln[1:]] for ln in lines if ln[0] == "v"])
    fs = np.array([[int(x) for x in ln[1:]] for ln in lines if ln[0] == "f"])
    np.testing.assert_allclose(vs[:, :3], v, atol=1e-5)
    np.testing.assert_allclose(vs[:, 3:], c / 255.0, atol=1e-4)
    np.testing.assert_array_equal(fs, f + 1)
    assert not list(tmp_path.glob("*.tmp"))


def test_write_obj_bad_input(tmp_path):
    with pytest.raises(ValueError, match="faces"):
        write_obj(tmp_path / "m.obj", np.zeros((3, 3)), np.array([[0, 1, 3]]))
    with pytest.raises(ValueError, match="verts"):
        write_obj(tmp_path / "m.obj", np.zeros((3, 2)), np.array([[0, 1, 2]]))
    assert not (tmp_path / "m.obj").exists()
