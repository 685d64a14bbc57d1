"""nv-gaze as MPII-NV does it: OpenFace model, source_supply order and labels, undistort=False (§4).

``mpii_nv_procedure`` re-implements MPII-NV's lift and labels (main.py, lib/projective_matching.py) from the facts,
reading the fixture files with numpy / scipy / h5py directly, independently of the importer.
"""
from __future__ import annotations

import warnings

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from onthefly.cache import MeshCache, build_cache
from onthefly.sources.nv_gaze import NVGazeSource
from onthefly.sources.readers import FormatError, read_source_supply

from .fixtures import procedural_records
from .nv_fixture import write_nv_frame
from .reference_normalization import gaze_label, normalization_rotation

FRAMES = [("p00", "day01", "0001"), ("p00", "day01", "0002"), ("p00", "day02", "0005")]


def _peri(p):
    a, b, c = p[0:2].mean(0), p[2:4].mean(0), p[4:6].mean(0)
    return (np.linalg.norm(a - b) + np.linalg.norm(a - c) + np.linalg.norm(b - c)) / 3


def mpii_nv_procedure(root, ann, openface, supply, i):
    """(verts, face centre, head label, gaze label) of supply row i, MPII-NV's way (undistort=False)."""
    with h5py.File(supply, "r") as f:
        name = f["file_name"][i].decode()
        lm68 = f["landmarks_2d_detect"][i]
    person, day, img = name.split("/")
    obj = root / person / day / img.replace(".jpg", ".obj")
    rows = [ln.split() for ln in obj.read_text().splitlines()]
    v = np.array([[float(x) for x in r[1:4]] for r in rows if r and r[0] == "v"])
    lm = np.loadtxt(obj.with_name(obj.stem + "_lm.txt"))
    C = np.loadtxt(obj.with_name(obj.stem + "_crop_params.txt"))
    line = next(ln.split() for ln in (ann / person / f"{person}.txt").read_text().splitlines()
                if ln.split()[0] == f"{day}/{img}")
    lm_gt = np.array([float(x) for x in line[3:15]]).reshape(6, 2)
    gc = np.array([float(x) for x in line[24:27]])
    cam = scipy.io.loadmat(ann / person / "Calibration" / "Camera.mat")
    K, dist = cam["cameraMatrix"], cam["distCoeffs"]
    model = np.array([[-45.096768, -21.312858, 21.312858, 45.096768, -26.299577, 26.299577],
                      [-0.483773, 0.483773, 0.483773, -0.483773, 68.595035, 68.595035],
                      [2.397030, -2.397030, -2.397030, 2.397030, 0, 0]], np.float32).astype(np.float64)
    pts = model.T.reshape(6, 1, 3)
    _, hr, ht = cv2.solvePnP(pts, lm_gt.astype(np.float32).reshape(6, 1, 2), K, dist, flags=cv2.SOLVEPNP_EPNP)
    _, hr, ht = cv2.solvePnP(pts, lm_gt.astype(np.float32).reshape(6, 1, 2), K, dist, hr, ht, True)
    hR = cv2.Rodrigues(hr)[0]
    Fc = hR @ model + ht.reshape(3, 1)
    fc = Fc.mean(1)
    # normalization rotation from the 6-point pose
    R = normalization_rotation(fc, hR)
    gaze = gaze_label(R, fc, gc)
    # projective matching
    sel = [36, 39, 42, 45, 48, 54]
    alpha = _peri(openface[sel]) / _peri(lm[sel])
    beta = np.mean(np.linalg.norm(Fc.T, axis=1) - alpha * lm[sel, 2])
    v = v * alpha + np.array([0, 0, beta])
    C = C * alpha
    C[2, 2] = 1
    ray = np.stack([v[:, 0], v[:, 1], np.ones(len(v))], 1) @ np.linalg.inv(C @ K).T
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    verts = ray * v[:, 2:3]
    # head label: OpenFace-68 PnP on the supply's dlib landmarks, normalized by the 6-point R
    lm68 = lm68.astype(np.float32).reshape(68, 1, 2)
    _, r68, t68 = cv2.solvePnP(openface.reshape(68, 1, 3), lm68, K, dist, flags=cv2.SOLVEPNP_EPNP)
    _, r68, t68 = cv2.solvePnP(openface.reshape(68, 1, 3), lm68, K, dist, r68, t68, True)
    H = R @ cv2.Rodrigues(r68)[0]
    head = np.array([np.arcsin(H[1, 2]), np.arctan2(H[0, 2], H[2, 2])])
    return name, verts, fc, head, gaze


@pytest.fixture(scope="module")
def nv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nv")
    recs = procedural_records()
    root, ann = tmp / "3ddfa", tmp / "MPIIFaceGaze"
    openface = (recs[0].landmarks - recs[0].face_centre) @ recs[0].head_rotation + [0.3, -1.0, 4.0]
    np.savetxt(tmp / "OpenFace.txt", openface, fmt="%.18e")
    dist = np.array([-0.12, 0.05, 0.001, -0.0005, 0.0])
    rng = np.random.default_rng(3)
    names, lms = [], []
    for rec, (s, d, n) in zip(recs, FRAMES):
        write_nv_frame(rec, root, ann, s, d, n, dist=dist, ref6=openface[[36, 39, 42, 45, 48, 54]],
                       integer_landmarks=True)
        names.append(f"{s}/{d}/{n}.jpg")
        lm = cv2.projectPoints(rec.landmarks.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), rec.K, dist)[0]
        lms.append(lm.reshape(68, 2) + rng.normal(0, 1.0, (68, 2)))
    # MPII-NV's order is the supply's, not sorted; and one supply source has no mesh (MPII-NV skips it)
    order = [2, 0, 1]
    names = [names[k] for k in order] + ["p00/day03/0009.jpg"]
    lms = [lms[k] for k in order] + [lms[0]]
    sup = tmp / "source_supply"
    sup.mkdir()
    with h5py.File(sup / "p00.h5", "w") as f:
        f["file_name"] = np.array([x.encode() for x in names])
        f["landmarks_2d_detect"] = np.array(lms, np.float64)
        f["3d_gaze_target"] = np.zeros((len(names), 3))
        f["camera_parameters"] = np.repeat(recs[0].K[None], len(names), 0)
        f["distortion_parameters"] = np.repeat(dist[None], len(names), 0)
        f["head_pose"] = np.zeros((len(names), 2))
    return root, ann, tmp / "OpenFace.txt", sup, openface


def test_equals_mpii_nv_procedure(nv, tmp_path):
    import torch

    from onthefly.geometry import rotation_to_pitchyaw
    from onthefly.normalization import normalization_rotation

    root, ann, of_path, sup, openface = nv
    src = NVGazeSource(root, ann, openface=of_path, source_supply=sup, undistort=False)
    assert src.keys() == ["p00/day02/0005.obj", "p00/day01/0001.obj", "p00/day01/0002.obj"]  # the supply's order
    assert [k for k, _ in src.excluded] == ["p00/day03/0009.obj"]
    out = tmp_path / "nv.h5"
    rep = build_cache(src, out)
    assert rep.written == 3 and "MPII-NV writes nothing" in rep.skipped[0][1]
    with MeshCache(out) as c:
        for i in range(3):
            name, verts, fc, head, gaze = mpii_nv_procedure(root, ann, openface, sup / "p00.h5", i)
            rec = c[i]
            assert f"{rec.subject}/{rec.frame}.jpg" == name
            assert np.abs(rec.verts - verts).max() < 1e-3                       # mm (float32 storage)
            assert np.abs(rec.face_centre - fc).max() < 1e-6                     # mm
            R = normalization_rotation(torch.from_numpy(rec.face_centre), torch.from_numpy(rec.head_rotation))
            got_head = rotation_to_pitchyaw(R @ torch.from_numpy(rec.head_rotation)).numpy()
            assert np.abs(got_head - head).max() < 1e-9                          # rad
            g = R.numpy() @ rec.direction()
            got_gaze = np.array([np.arcsin(-g[1]), np.arctan2(-g[0], -g[2])])
            assert np.abs(got_gaze - gaze).max() < 1e-9                          # rad


def test_fallback_warns_and_measures(nv):
    root, ann, of_path, sup, openface = nv
    with pytest.warns(UserWarning, match=r"no OpenFace\.txt given .*3\.17 % larger"):
        fb = NVGazeSource(root, ann, undistort=False).load("p00/day01/0001.obj")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = NVGazeSource(root, ann, openface=of_path, undistort=False).load("p00/day01/0001.obj")
    depth = lambda r: np.linalg.norm(r.verts.astype(np.float64), axis=1)  # noqa: E731
    err = np.abs(depth(fb) - depth(ok)).max()
    ratio = fb.extra["alpha"] / ok.extra["alpha"]
    print(f"fallback: alpha ratio {ratio:.4f}, max depth error {err:.2f} mm")
    # the fallback scales the lifted relief by the ratio of the eye-mouth perimeters: the depth error is that
    # ratio's excess over the mesh's relief (under 250 mm), not more
    assert ratio != 1.0 and 0.1 < err < abs(ratio - 1.0) * 250.0


def test_bad_supply_and_openface(nv, tmp_path):
    root, ann, of_path, sup, _ = nv
    bad = tmp_path / "p00.h5"
    with h5py.File(bad, "w") as f:
        f["file_name"] = np.array([b"p00/day01/0001.jpg"])
    with pytest.raises(FormatError, match=rf"{bad}: no dataset 'landmarks_2d_detect'"):
        read_source_supply(bad)
    bad.write_bytes(b"not hdf5")
    with pytest.raises(FormatError, match=rf"{bad}: not a readable HDF5 file"):
        NVGazeSource(root, ann, openface=of_path, source_supply=bad)
    of = tmp_path / "OpenFace.txt"
    of.write_text("\n".join(of_path.read_text().splitlines()[:67]) + "\n")
    with pytest.raises(FormatError, match=rf"{of}: expected 68 rows"):
        NVGazeSource(root, ann, openface=of)
    mat = ann / "p00" / "Calibration" / "Camera.mat"
    keep = mat.read_bytes()
    try:
        mat.write_bytes(b"MATLAB 5.0 garbage")
        with pytest.raises(FormatError, match=rf"{mat}: not a readable MATLAB \.mat file"):
            NVGazeSource(root, ann, openface=of_path).load("p00/day01/0001.obj")
    finally:
        mat.write_bytes(keep)


def test_camera_mat_that_crashes_scipy_is_a_clear_error(tmp_path):
    """scipy's loadmat segfaults on this corrupt Camera.mat (one byte of the first variable's header set to 0xFF):
    the reader runs it in a child process and reports the file instead of dying."""
    from onthefly.sources.readers import read_camera_mat

    p = tmp_path / "Camera.mat"
    K = np.array([[1200.0, 0, 319.5], [0, 1200, 319.5], [0, 0, 1]])
    scipy.io.savemat(p, {"cameraMatrix": K, "distCoeffs": np.zeros((1, 5)), "retval": 0.3,
                         "rvecs": np.zeros((3, 1)), "tvecs": np.zeros((3, 1))})
    got, _ = read_camera_mat(p)
    assert np.array_equal(got, K)
    b = bytearray(p.read_bytes())
    b[145] = 0xFF
    p.write_bytes(bytes(b))
    with pytest.raises(FormatError, match=rf"{p}: not a readable MATLAB \.mat file"):
        read_camera_mat(p)
