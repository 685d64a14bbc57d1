"""xgaze3d source on the real XGaze3D release layout: the 18 views' labels equal XGaze3D's own procedure.

``xgaze3d_procedure`` below re-implements XGaze3D's labelling (real-formats.md §2: main_render.py, headpose.py)
from the facts, reading the fixture files with OpenCV / csv / numpy directly — independently of the importer.
"""
from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import torch
from cache.helpers import cli

from onthefly.cache import MeshCache, build_cache, validate_cache
from onthefly.sources.base import SourceError
from onthefly.sources.readers import FormatError
from onthefly.sources.xgaze3d import CAMERAS, XGaze3DSource, cluster_decimate

from .fixtures import procedural_records
from .reference_normalization import gaze_label, head_label, normalization_rotation
from .xgaze3d_real_fixture import write_camera_xml, write_xgaze3d


# ------------------------------------------------------------------------------ XGaze3D's procedure, re-implemented
def _xml(path):
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    out = {k: fs.getNode(n).mat() for k, n in (("K", "Camera_Matrix"), ("dist", "Distortion_Coefficients"),
                                               ("R", "cam_rotation"), ("t", "cam_translation"))}
    fs.release()
    return out


def xgaze3d_procedure(root, subject, frame):
    """Per camera: face centre (camera frame), gaze label, head label, face_mat_norm — XGaze3D's way."""
    from scipy.optimize import least_squares

    fm = np.loadtxt(root / "calibration" / "face_model.txt")
    rows = {}
    with open(root / "data" / "annotation_updated" / f"{subject}_update.csv", newline="") as fh:
        for r in csv.reader(fh):
            rows[r[0] + "/" + r[1]] = r[2:]
    cams = [_xml(root / "avg_cams_final" / subject / f"{c}.xml") for c in CAMERAS]
    lm = [np.array([float(x) for x in rows[f"{frame}/{c}.JPG"][11:147]]).reshape(68, 2) for c in CAMERAS]
    gc = [np.array([float(x) for x in rows[f"{frame}/{c}.JPG"][2:5]]) for c in CAMERAS]
    m6 = fm[[20, 23, 26, 29, 15, 19]]
    l6 = [x[[36, 39, 42, 45, 31, 35]] for x in lm]
    _, r0, t0 = cv2.solvePnP(m6.reshape(-1, 1, 3), l6[0].reshape(-1, 1, 2), cams[0]["K"], cams[0]["dist"],
                             flags=cv2.SOLVEPNP_EPNP)
    _, r0, t0 = cv2.solvePnP(m6.reshape(-1, 1, 3), l6[0].reshape(-1, 1, 2), cams[0]["K"], cams[0]["dist"], r0, t0,
                             True)

    def fun(x):
        hR = cv2.Rodrigues(x[:3])[0]
        P = (hR @ m6.T + x[3:].reshape(3, 1)).T
        res = []
        for cam, g in zip(cams, l6):
            Q = P @ cam["R"].T + cam["t"].reshape(1, 3)
            Q = Q / Q[:, [2]]
            res.append((Q @ cam["K"].T)[:, :2] - g)
        return np.array(res).ravel()

    x = least_squares(fun, np.r_[r0.ravel(), t0.ravel()]).x
    hR0 = cv2.Rodrigues(x[:3])[0]
    Fc = (hR0 @ fm.T + x[3:].reshape(3, 1)).T
    out = []
    for i, cam in enumerate(cams):
        hr = x[:3] if i == 0 else cv2.Rodrigues(cam["R"] @ hR0)[0].ravel()
        Fi = Fc @ cam["R"].T + cam["t"].reshape(1, 3)
        fc = 0.5 * (Fi[[20, 23, 26, 29]].mean(0) + Fi[[15, 19]].mean(0))
        hRi = cv2.Rodrigues(hr)[0]
        R = normalization_rotation(fc, hRi)
        gl = gaze_label(R, fc, gc[i])      # vector_to_pitchyaw(-g)
        hl = head_label(R, hRi)
        out.append({"fc": fc, "gaze": gl, "head": hl, "R": R})
    return out


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def release(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("x3d")
    recs = procedural_records()
    recon, root, truth = write_xgaze3d(tmp, recs, full_light={"subject0003": 1}, failed={("subject0000", "frame0001")})
    return recon, root, truth


@pytest.fixture(scope="module")
def built(release, tmp_path_factory):
    recon, root, truth = release
    out = tmp_path_factory.mktemp("x3dc") / "c.h5"
    rep = build_cache(XGaze3DSource(recon, root), out)
    return out, rep


def test_build_keeps_real_ids_skips_failed_and_dark_frames(built):
    out, rep = built
    with MeshCache(out) as c:
        ids = [(r.subject, r.frame, r.camera) for r in c]
        assert ids == [("subject0000", "frame0000", "cam00"), ("subject0003", "frame0000", "cam00")]
        assert c[0].views["names"] == list(CAMERAS)
    # the failed reconstruction is reported (frame0001 of subject0003 is not a full-light frame: not used)
    assert [k for k, _ in rep.skipped] == ["subject0000/frame0001"]
    assert "no final_obj folder (a failed XGaze3D reconstruction)" in rep.skipped[0][1]
    assert validate_cache(out) == []
    from onthefly.cache import cache_info

    info = cache_info(out)
    assert (info["view_frames"], info["views"]) == (2, 36)
    from onthefly.commands.cache import format_info

    assert "2 frames with real cameras (36 views" in format_info(info)


def test_labels_of_the_18_views_equal_xgaze3d(release, built):
    from onthefly.dataset import OnTheFlyGazeDataset
    from onthefly.normalization import NormalizedCamera

    recon, root, truth = release
    out, _ = built
    cam = NormalizedCamera(960.0 * 32 / 448, 300.0, 32, 32, "tiny")
    ds = OnTheFlyGazeDataset(out, batch_size=2, views_per_frame=18, target={"type": "cameras"}, camera=cam,
                             device="cpu", appearance="plain")
    b = ds.batch(0)
    with MeshCache(out) as c:
        for s in range(2):
            i = int(b["frame_index"][s, 0])
            rec = c[i]
            ref = xgaze3d_procedure(root, rec.subject, rec.frame)
            assert b["camera_index"][s].tolist() == list(range(18))
            for k in range(18):
                fc = rec.views["R"][k] @ rec.face_centre + rec.views["t"][k]
                assert np.abs(fc - ref[k]["fc"]).max() <= 1e-3
                assert np.abs(b["head_pose"][s, k].double().numpy() - ref[k]["head"]).max() <= 1e-6
                assert np.abs(b["gaze"][s, k].double().numpy() - ref[k]["gaze"]).max() <= 1e-6
                assert np.abs(b["face_mat_norm"][s, k].double().numpy() - ref[k]["R"]).max() <= 1e-6
            # the fit is not trivial: the noisy landmarks move the labels away from the procedural truth
            hR = truth[(rec.subject, rec.frame)]["rec"].head_rotation
            assert 1e-5 < np.abs(rec.head_rotation - hR).max() < 0.05
            # relative rotations relate the normalized views: V_k = R_k(norm)·R_k (cam00 -> view k), not
            # face_mat_norm (camera k -> view k)
            V = [ref[k]["R"] @ rec.views["R"][k] for k in range(18)]
            for i, j in ((0, 5), (7, 12), (17, 3)):
                got = b["relative_rotation"][s, i, j].double().numpy()
                assert np.abs(got - V[j] @ V[i].T).max() < 1e-5


def test_cameras_sampler_subset_and_random(built):
    from onthefly.dataset import OnTheFlyGazeDataset
    from onthefly.normalization import NormalizedCamera

    out, _ = built
    cam = NormalizedCamera(960.0 * 16 / 448, 300.0, 16, 16, "tiny")
    ds = OnTheFlyGazeDataset(out, batch_size=8, target={"type": "cameras", "cameras": ["cam02", "cam05"],
                                                        "order": "random"}, camera=cam, device="cpu",
                             appearance="plain")
    b = ds.batch(0)
    assert set(b["camera_index"].tolist()) <= {2, 5}
    again = ds.replay(b)
    assert torch.equal(again["face_mat_norm"], b["face_mat_norm"]) and torch.equal(again["image"], b["image"])


def test_cameras_sampler_needs_views(tmp_path):
    from onthefly.dataset import OnTheFlyGazeDataset
    from onthefly.sources.procedural import ProceduralSource

    p = tmp_path / "p.h5"
    build_cache(ProceduralSource(2, 0, 1), p)
    ds = OnTheFlyGazeDataset(p, batch_size=1, target="cameras", device="cpu")
    with pytest.raises(ValueError, match="needs frames with stored cameras"):
        ds.batch(0)


def test_cli_interface_and_recon_levels(release, tmp_path):
    recon, root, _ = release
    out = tmp_path / "c.h5"
    # RECON_DIR may be the level holding <date>/<time>/ or directly <resize>_data/
    data = recon / "2026-01-01" / "12-00-00" / "1200_data"
    for r in (recon, data):
        assert cli(["reconstruct", "--source", "xgaze3d", "--input", str(r), "--annotations", str(root),
                    "--out", str(out), "--quiet", "--texture-size", "64"]) == 0
        with MeshCache(out) as c:
            assert len(c) == 2 and c[0].texture.shape == (64, 64, 3)


def test_original_annotation_train_accepted(tmp_path):
    recs = procedural_records()
    recon, root, _ = write_xgaze3d(tmp_path, recs, subjects=("subject0000",), frames_per_subject=1,
                                   updated=False)
    rec = XGaze3DSource(recon, root).load("subject0000/frame0000")
    assert rec.views is not None and np.isfinite(rec.head_rotation).all()


def test_decimate(release):
    recon, root, truth = release
    rec = truth[("subject0000", "frame0000")]["rec"]
    v, f, col, fuv = cluster_decimate(rec.verts, rec.faces, 3.0, rec.vert_colors, rec.faces)
    dec = XGaze3DSource(recon, root, decimate=3.0).load("subject0000/frame0000")
    assert len(dec.verts) == len(v) < len(rec.verts) / 2 and dec.faces_uv.shape == dec.faces.shape


# ------------------------------------------------------------------------------ bad input
def _fresh(tmp_path):
    return write_xgaze3d(tmp_path, procedural_records(), frames_per_subject=1)


def test_missing_camera_xml_named_and_skip_bad(tmp_path):
    recon, root, _ = _fresh(tmp_path)
    xml = root / "avg_cams_final" / "subject0003" / "cam07.xml"
    xml.unlink()
    with pytest.raises(FormatError, match=rf"{xml}: camera calibration not found"):
        XGaze3DSource(recon, root).load("subject0003/frame0000")
    out = tmp_path / "c.h5"
    rep = build_cache(XGaze3DSource(recon, root), out, skip_bad=True)
    assert rep.written == 1 and rep.skipped[0][0] == "subject0003/frame0000" and "cam07.xml" in rep.skipped[0][1]
    with MeshCache(out) as c:
        assert [r.subject for r in c] == ["subject0000"]


@pytest.mark.parametrize("n", [148, 250])
def test_wrong_field_count_names_line(tmp_path, n):
    recon, root, _ = _fresh(tmp_path)
    p = root / "data" / "annotation_updated" / "subject0000_update.csv"
    lines = p.read_text().splitlines()
    t = lines[4].split(",")
    lines[4] = ",".join(t[:n] if n < len(t) else t + ["0.0"])
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(FormatError, match=rf"{p}:5: expected 249 fields .*got {n}"):
        XGaze3DSource(recon, root).load("subject0000/frame0000")


def test_subject_missing_from_light_meta(tmp_path):
    recon, root, _ = _fresh(tmp_path)
    (root / "light_meta.yaml").write_text("subject0000:\n  full_light_frame_end_idx: 1\n")
    src = XGaze3DSource(recon, root)
    with pytest.raises(SourceError, match=r"light_meta\.yaml: subject subject0003 missing"):
        src.load("subject0003/frame0000")
    rep = build_cache(src, tmp_path / "c.h5", skip_bad=True)
    assert rep.written == 1 and "light_meta.yaml" in rep.skipped[0][1]


def test_atlas_not_an_image_and_nothing_lost(tmp_path):
    recon, root, _ = _fresh(tmp_path)
    out = tmp_path / "c.h5"
    build_cache(XGaze3DSource(recon, root), out)
    before = out.read_bytes()
    jpg = next(recon.rglob("subject0003/frame0000/final_obj/mvs3d.jpg"))
    jpg.write_bytes(b"not a jpeg at all")
    with pytest.raises(SourceError, match=rf"{jpg}: texture is not a readable image"):
        build_cache(XGaze3DSource(recon, root), out)
    assert out.read_bytes() == before and not out.with_name("c.h5.tmp").exists()


def test_bad_camera_xml_nodes(tmp_path):
    from onthefly.sources.readers import read_camera_xml

    p = tmp_path / "cam00.xml"
    write_camera_xml(p, np.eye(3), np.zeros(5), np.eye(3), np.zeros(3))
    assert read_camera_xml(p).R is not None
    p.write_text(p.read_text().replace("cam_translation", "cam_translationX"))
    with pytest.raises(FormatError, match="missing node <cam_translation>"):
        read_camera_xml(p)
    p.write_text("<?xml version='1.0'?><nothing/>")
    with pytest.raises(FormatError, match=r"cam00\.xml:1: not an OpenCV FileStorage"):
        read_camera_xml(p)


def test_validate_checks_views(built, tmp_path):
    import shutil

    import h5py

    out, _ = built
    bad = tmp_path / "bad.h5"
    shutil.copy(out, bad)
    with h5py.File(bad, "r+") as f:
        f["views/R"][20] = np.diag([1.0, 1.0, -1.0])  # frame 1's cam02: a reflection
    probs = validate_cache(bad)
    assert len(probs) == 1 and "frame 1 (subject0003/frame0000/cam00): view 20: R is not a rotation" in probs[0]
