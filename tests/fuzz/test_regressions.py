"""One regression test per failure mode the fuzz campaign found (tests/fuzz/harness.py): each input now ends in
the documented error naming the file."""
from __future__ import annotations

import json
import os
import signal

import h5py
import numpy as np
import pytest

from onthefly.sources.base import SourceError

from .harness import READERS


def _valid(name, tmp_path):
    d = tmp_path / name
    d.mkdir()
    ctx = READERS[name].setup(d)
    return d, ctx


def test_ply_with_zero_faces_or_a_malformed_count_names_the_file(tmp_path):
    from onthefly.meshio import read_ply

    d, _ = _valid("ply-binary", tmp_path)
    p = d / "m.ply"
    data = p.read_bytes()
    n_faces = data.split(b"element face ")[1].split(b"\n")[0]
    p.write_bytes(data.replace(b"element face " + n_faces, b"element face 0", 1))
    with pytest.raises(SourceError, match=rf"{p}: no faces"):
        read_ply(p)
    p.write_bytes(data.replace(b"element vertex 70", b"element vertex 1,5", 1))
    with pytest.raises(SourceError, match=rf"{p}: malformed file \(ValueError"):
        read_ply(p)
    p.write_bytes(data[:len(data) - 7])  # a binary body cut inside a row
    with pytest.raises(SourceError, match=str(p)):
        read_ply(p)


def test_obj_index_too_large_for_int64_names_the_file(tmp_path):
    from onthefly.meshio import read_obj

    d, _ = _valid("obj-textured", tmp_path)
    p = d / "m.obj"
    lines = p.read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("f "))
    lines[i] = "f 99999999999999999999/1 2/2 3/3"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=str(p)):
        read_obj(p)


@pytest.mark.parametrize("depth", [100_000])
def test_deeply_nested_json_sidecar_and_manifest_name_the_file(tmp_path, depth):
    from onthefly.reconstruct.manifest import read_manifest
    from onthefly.sources.mesh import load_mesh_frame

    d, _ = _valid("mesh-sidecar-json", tmp_path)
    (d / "m.json").write_text("[" * depth + "]" * depth)
    with pytest.raises(SourceError, match=rf"{d / 'm.json'}: invalid JSON \(nested too deeply\)"):
        load_mesh_frame(d / "m.obj")
    m = tmp_path / "frames.jsonl"
    m.write_text('{"a":' * depth + "1" + "}" * depth + "\n")
    with pytest.raises(SourceError, match=rf"{m}:1: not valid JSON \(nested too deeply\)"):
        read_manifest(m)


def test_garbage_camera_xml_names_the_file(tmp_path):
    from onthefly.sources.xgaze3d import read_camera_xml

    p = tmp_path / "cam00.xml"
    p.write_bytes(b"<?xml version=\"1.0\"?>\n<opencv_storage>\n<Camera_Matrix type_id=\"opencv-matrix\"><rows>3")
    with pytest.raises(SourceError, match=str(p)):
        read_camera_xml(p)


def test_a_reader_that_crashes_is_an_error_not_a_dead_process(tmp_path, monkeypatch):
    """A parser that kills the process (OpenCV's FileStorage on some corrupt XML) is run in a forked child: its
    crash is a FormatError naming the file (MAT files: tests/sources, read_camera_mat runs loadmat in a child)."""
    from onthefly.sources import readers

    d, ctx = _valid("xgaze-camera-xml", tmp_path)
    xml = d / "cam00.xml"
    assert readers.read_camera_xml(xml).K.shape == (3, 3)
    monkeypatch.setattr(readers, "_camera_xml_arrays", lambda path, text: os.kill(os.getpid(), signal.SIGSEGV))
    with pytest.raises(readers.FormatError, match=rf"{xml}: not a readable OpenCV FileStorage file .*crashed"):
        readers.read_camera_xml(xml)


def test_yaml_bomb_huge_and_deep_configs_are_refused(tmp_path):
    from onthefly.commands.preview import load_config

    from .mutate import yaml_bomb

    p = tmp_path / "c.yaml"
    import random

    p.write_text(yaml_bomb(random.Random(1)))
    with pytest.raises(ValueError, match=rf"--config {p}: expands to more than"):
        load_config(p)
    p.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(ValueError, match=rf"--config {p}: nested more than"):
        load_config(p)
    p.write_text("batch_size: 4\n" + "# padding\n" * 10_000)
    with pytest.raises(ValueError, match=rf"--config {p}: \d+ bytes"):
        load_config(p)
    p.write_text("batch_size: 4\nappearance: plain\n")
    assert load_config(p) == {"batch_size": 4, "appearance": "plain"}


def test_pose_file_errors_name_the_file(tmp_path):
    from onthefly.poses import load_pose_rows

    p = tmp_path / "poses.csv"
    p.write_text("0.1,0.2\n0.3,--1\n")
    with pytest.raises(ValueError, match=rf"cannot read {p}"):
        load_pose_rows(p)
    q = tmp_path / "poses.npy"
    np.save(q, np.array([[0.1, 0.2]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=rf"cannot read {q}"):
        load_pose_rows(q)


def test_damaged_mesh_cache_is_a_value_error_naming_it_and_validate_reports_it(tmp_path):
    from onthefly.cache import MeshCache, validate_cache

    d, _ = _valid("mesh-cache-h5", tmp_path)
    p = d / "cache.h5"
    with h5py.File(p, "r+") as f:
        del f["frames/origin"]  # a dataset validate's checks do not look at, read by every record
    with pytest.raises(ValueError, match=rf"{p}: damaged cache"):
        with MeshCache(p) as c:
            c[0]
    assert any(str(p) in s for s in validate_cache(p))
    with h5py.File(p, "r+") as f:
        del f["frames"]
    with pytest.raises(ValueError, match=rf"{p}: damaged cache \(missing datasets \['frames/subject'"):
        MeshCache(p)
    assert validate_cache(p) and str(p) in validate_cache(p)[0]


def test_damaged_h5_dataset_names_the_file(tmp_path):
    from onthefly.h5 import H5GazeDataset

    d, _ = _valid("h5-dataset", tmp_path)
    p = d / "subject0000.h5"
    with h5py.File(p, "r+") as f:
        f.attrs["complete"] = np.zeros(3)  # an array where a flag is expected
    with pytest.raises(ValueError, match=rf"{p}: damaged h5 file"):
        H5GazeDataset(p)
    with h5py.File(p, "r+") as f:
        del f.attrs["complete"]
        del f["frame_index"]
        f["frame_index"] = np.zeros((0,), np.int64)  # an optional key with no rows
    ds = H5GazeDataset(p)
    with pytest.raises(ValueError, match=rf"{p}: cannot read samples"):
        ds.take(np.arange(len(ds)))


def test_verify_checks_the_index_against_the_files_and_never_raises(tmp_path):
    from onthefly.export import verify_export

    d, _ = _valid("export-verify", tmp_path)
    assert verify_export(d) == []
    idx = json.loads((d / "index.json").read_text())
    (d / "index.json").write_text(json.dumps({**idx, "seed": idx["seed"] + 1}))
    assert any("index.json: 'seed' does not match the files" in s for s in verify_export(d))
    (d / "index.json").write_text(json.dumps({**idx, "total_rows": float("nan")}))
    assert any("index.json" in s for s in verify_export(d))
    (d / "index.json").write_text(json.dumps(idx))
    with h5py.File(d / "p00.h5", "r+") as f:
        del f["cam_index"]
        f["cam_index"] = np.full((len(f["face_gaze"]),), b"abc", "S8")  # a string dataset
    assert any(str(d / "p00.h5") in s for s in verify_export(d))


@pytest.mark.parametrize("i", [49, 130])
def test_camera_xml_that_crashed_opencv_is_an_error(tmp_path, i):
    """Inputs 49 and 130 of the campaign (seed 0) made cv2.FileStorage abort / segfault the process."""
    from onthefly.sources.xgaze3d import read_camera_xml

    from .harness import example_input

    d = example_input("xgaze-camera-xml", i, tmp_path)
    try:
        got = read_camera_xml(d / "cam00.xml")
    except SourceError as exc:
        assert str(d / "cam00.xml") in str(exc)
    else:
        assert got["K"].shape == (3, 3)


def test_resume_redoes_a_partial_file_declaring_huge_datasets(tmp_path):
    """A .tmp whose datasets claim 2**31 rows: redone at once (shrinking them took minutes)."""
    from onthefly.export import _prepare

    d, ctx = _valid("export-resume", tmp_path)
    with h5py.File(d / "p00.h5.tmp", "r+") as f:
        f["face_patch"].resize(2 ** 31, 0)
    assert _prepare(d / "p00.h5", dict(ctx["attrs"]), True, 2) == 0
    assert not (d / "p00.h5.tmp").exists()


@pytest.mark.parametrize("i", [896, 7170])
def test_h5_with_a_damaged_superblock_names_the_file(tmp_path, i):
    """Inputs 896 and 7170 of the campaign (seed 0): h5py raised RuntimeError opening them."""
    from onthefly.h5 import H5GazeDataset

    from .harness import example_input

    d = example_input("h5-dataset", i, tmp_path)
    with pytest.raises(ValueError, match=str(d / "subject0000.h5")):
        H5GazeDataset(d / "subject0000.h5")
