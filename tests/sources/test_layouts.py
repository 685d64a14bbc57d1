"""``--source images --layout mpiifacegaze|eth-xgaze``: raw datasets without a manifest, with their own labels.

The reference labels are re-implemented from the facts: MPIIFaceGaze's annotation (§3) and ETH-XGaze's official
normalization (§1: face centre of the posed face model, R = [right; down; forward], gaze / head labels).
"""
from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch
from cache.helpers import cli

from onthefly.cache import MeshCache, build_cache
from onthefly.sources.base import SourceError
from onthefly.sources.images import ImageSource

from .layout_fixtures import write_eth_xgaze, write_mpiifacegaze
from .reference_normalization import gaze_label, head_label, normalization_rotation


def official_normalization(fc, hR, target):
    """ETH-XGaze normalization_example.py (and MPIIFaceGaze's): R, gaze label, head label."""
    R = normalization_rotation(fc, hR)
    return R, gaze_label(R, fc, target), head_label(R, hR)


def source_view_labels(cache):
    """The labels of the source view of every frame (target 'source': a pure re-render)."""
    from onthefly.dataset import OnTheFlyGazeDataset
    from onthefly.normalization import NormalizedCamera

    cam = NormalizedCamera(960.0 * 16 / 448, 300.0, 16, 16, "tiny")
    with MeshCache(cache) as c:
        n = len(c)
    ds = OnTheFlyGazeDataset(cache, batch_size=n, target="source", camera=cam, device="cpu", appearance="plain",
                             max_rotation_deg=None)
    b = ds.batch(0)
    order = torch.argsort(b["frame_index"])
    return {k: b[k][order] for k in ("gaze", "head_pose", "face_mat_norm")}


def test_mpiifacegaze_layout_keeps_the_annotation(tmp_path, monkeypatch):
    root, truth = write_mpiifacegaze(tmp_path, n=1)
    src = ImageSource(root, layout="mpiifacegaze", landmarks="dlib")
    assert [(e.subject, e.frame, e.camera) for e in src.entries] == [("p00", "day01/0001", "")]
    by_frame = {f"day01/{k + 1:04d}": t for k, t in enumerate(truth)}
    # the 68 landmarks come from a detector (the annotation has 6); stand in for it with the exact projections
    monkeypatch.setattr(ImageSource, "_landmarks",
                        lambda self, e, image: (by_frame[e.frame]["frame"].landmarks_2d, "dlib"))
    out = tmp_path / "m.h5"
    build_cache(src, out)
    labels = source_view_labels(out)
    with MeshCache(out) as c:
        for i, rec in enumerate(c):
            t = by_frame[rec.frame]
            assert np.abs(rec.head_rotation - cv2.Rodrigues(t["rvec"])[0]).max() < 1e-12
            assert np.abs(rec.face_centre - t["fc"]).max() < 1e-9 and rec.face_centre_rule == "eye_mouth"
            assert np.abs(rec.gaze_target - t["target"]).max() < 1e-9
            R, gaze, head = official_normalization(t["fc"], cv2.Rodrigues(t["rvec"])[0], t["target"])
            assert np.abs(labels["gaze"][i].double().numpy() - gaze).max() < 1e-6
            assert np.abs(labels["head_pose"][i].double().numpy() - head).max() < 1e-6
            assert np.abs(labels["face_mat_norm"][i].double().numpy() - R).max() < 1e-6


def test_eth_xgaze_layout_official_labels_and_rotation(tmp_path, monkeypatch):
    root, truth = write_eth_xgaze(tmp_path)
    import onthefly.sources.images as images

    seen = {}
    real = images.reconstruct

    def spy(image, K, landmarks, **kw):
        seen[len(seen)] = image
        return real(image, K, landmarks, **kw)

    monkeypatch.setattr(images, "reconstruct", spy)  # the image source's reconstruction call
    out = tmp_path / "x.h5"
    assert cli(["reconstruct", "--source", "images", "--layout", "eth-xgaze", "--input", str(root),
                "--out", str(out), "--quiet"]) == 0
    # cam03's stored JPG is upside down: what reaches the reconstruction is the upright image
    for k, cam in enumerate(("cam00", "cam03")):
        diff = np.abs(seen[k].astype(np.int16) - truth[cam]["upright"].astype(np.int16)).mean()
        assert diff < 3, (cam, diff)
    labels = source_view_labels(out)
    fm = np.loadtxt(root / "calibration" / "face_model.txt")
    rows = list(csv.reader(open(root / "data" / "annotation_train" / "subject0000.csv")))
    with MeshCache(out) as c:
        assert [(r.subject, r.frame, r.camera) for r in c] == [("subject0000", "frame0000", "cam00"),
                                                              ("subject0000", "frame0000", "cam03")]
        for i, (rec, row) in enumerate(zip(c, rows)):
            v = np.array([float(x) for x in row[2:]])
            hR = cv2.Rodrigues(v[5:8])[0]
            Fc = hR @ fm.T + v[8:11].reshape(3, 1)
            fc = 0.5 * (Fc[:, [20, 23, 26, 29]].mean(1) + Fc[:, [15, 19]].mean(1))
            R, gaze, head = official_normalization(fc, hR, v[2:5])
            assert np.abs(rec.face_centre - fc).max() < 1e-9
            # the normalization of the record (float64 maths) is ETH-XGaze's to round-off
            from onthefly.normalization import normalize_geometry

            geo = normalize_geometry(torch.from_numpy(rec.K), torch.from_numpy(rec.head_rotation),
                                     torch.from_numpy(rec.face_centre), "xgaze448",
                                     gaze_target=torch.from_numpy(rec.gaze_target))
            assert np.abs(geo.R.numpy() - R).max() < 1e-12
            assert np.abs(geo.gaze.numpy() - gaze).max() < 1e-12 and np.abs(geo.head_pose.numpy() - head).max() < 1e-12
            # the batch labels (float32) of the source view
            assert np.abs(labels["gaze"][i].double().numpy() - gaze).max() < 1e-6
            assert np.abs(labels["head_pose"][i].double().numpy() - head).max() < 1e-6
            assert np.abs(labels["face_mat_norm"][i].double().numpy() - R).max() < 1e-6


def test_layout_bad_inputs_named_and_skippable(tmp_path):
    root, _ = write_eth_xgaze(tmp_path)
    xml = root / "calibration" / "cam_calibration" / "cam03.xml"
    xml.unlink()
    src = ImageSource(root, layout="eth-xgaze")
    with pytest.raises(SourceError, match=rf"{xml}: camera calibration not found"):
        src.load(1)
    (root / "light_meta.yaml").write_text("subject0001:\n  full_light_frame_end_idx: 3\n")
    src = ImageSource(root, layout="eth-xgaze")
    with pytest.raises(SourceError, match=r"light_meta\.yaml: subject subject0000 missing"):
        src.load(0)
    m, _ = write_mpiifacegaze(tmp_path / "m", n=1)
    mat = m / "p00" / "Calibration" / "Camera.mat"
    mat.write_bytes(b"garbage")
    with pytest.raises(SourceError, match=rf"{mat}: not a readable MATLAB \.mat file"):
        ImageSource(m, layout="mpiifacegaze", landmarks="dlib").load(0)
    txt = m / "p00" / "p00.txt"
    txt.write_text(txt.read_text().replace(" left", ""))
    with pytest.raises(SourceError, match=rf"{txt}:1: expected 28 fields, got 27"):
        ImageSource(m, layout="mpiifacegaze", landmarks="dlib").load(0)
