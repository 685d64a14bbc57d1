"""``onthefly.h5.H5GazeDataset`` on exported files and on a hand-made ETH-XGaze-layout file."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from onthefly.dataset import IMAGENET_MEAN, IMAGENET_STD
from onthefly.h5 import H5GazeDataset, check_h5

from .conftest import SIZE, K
from .test_export import reference_batches, subjects_of


def _xgaze_file(path, n=6, size=SIZE, head_pose=False, seed=0):
    """The official normalized ETH-XGaze layout (EX reference writer: (N,1) frame/cam indices, 0-based cams)."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.create_dataset("face_patch", data=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                         chunks=(1, size, size, 3), compression="lzf")
        f["face_gaze"] = rng.uniform(-0.5, 0.5, (n, 2))
        f["frame_index"] = np.arange(n).reshape(n, 1)
        f["cam_index"] = np.zeros((n, 1), np.int64)
        f["facial_landmarks"] = rng.uniform(0, size, (n, 68, 2))
        if head_pose:
            f["face_head_pose"] = rng.uniform(-0.5, 0.5, (n, 2)).astype(np.float32)
    return path


def test_reader_on_exported_files_matches_the_dataset(proc_cache, reference_export):
    subj = sorted(subjects_of(reference_export).items())
    ds = H5GazeDataset([reference_export / f for f, _ in subj])
    assert len(ds) == 16 * K
    item = ds[0]
    assert set(item) == {"image", "gaze", "head_pose", "mask", "landmarks_2d", "face_mat_norm", "rotation_matrix",
                         "frame_index", "cam_index", "subject_index", "eyeball_centres_3d", "eyeball_centres_2d",
                         "iris_centres_3d", "iris_centres_2d", "iris_contours_3d", "iris_contours_2d"}
    n0 = 4 * K
    for k, (fname, subject) in enumerate(subj[:2]):
        ref = reference_batches(proc_cache, subject)
        got = ds.take(list(range(k * n0, (k + 1) * n0)))
        for key in ("image", "gaze", "head_pose", "mask", "landmarks_2d", "face_mat_norm", "rotation_matrix",
                    "iris_contours_2d", "eyeball_centres_3d"):
            assert got[key].dtype == ref[key].dtype == torch.float32, key
            assert got[key].shape == ref[key].shape, key
        assert float((got["image"] - ref["image"]).abs().max()) <= 1 / 255
        assert float((got["mask"] - ref["mask"]).abs().max()) <= 1 / 255
        for key in ("gaze", "head_pose", "landmarks_2d", "face_mat_norm", "frame_index", "iris_contours_2d",
                    "eyeball_centres_3d"):
            assert torch.equal(got[key], ref[key]), key
        assert torch.allclose(got["rotation_matrix"], ref["rotation_matrix"], atol=1e-6)  # Q (float64) vs V·R_srcᵀ
        assert got["frame_index"].dtype == torch.int64 and bool((got["subject_index"] == k).all())
    # order and duplicates are kept by take()
    b = ds.take([5, 1, 5, 30])
    assert torch.equal(b["image"][0], b["image"][2]) and torch.equal(b["gaze"][1], ds[1]["gaze"])
    assert torch.equal(b["gaze"][3], ds[30]["gaze"])
    with pytest.raises(IndexError):
        ds.take([len(ds)])


def test_reader_imagenet_format_and_workers(reference_export):
    paths = sorted(reference_export.glob("*.h5"))
    unit = H5GazeDataset(paths)
    net = H5GazeDataset(paths, image_format="imagenet")
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(net[7]["image"] * std + mean, unit[7]["image"], atol=1e-6)
    unit.take([0])  # open in the parent: the forked workers must reopen their own handles
    loader = DataLoader(unit, batch_size=8, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(len(b["gaze"]) for b in batches) == len(unit)
    assert torch.equal(torch.cat([b["gaze"] for b in batches]), unit.take(range(len(unit)))["gaze"])


def test_reader_on_eth_xgaze_layout(tmp_path, reference_export):
    p = _xgaze_file(tmp_path / "subject0003.h5")
    ds = H5GazeDataset([p])
    item = ds[2]
    with h5py.File(p) as f:
        bgr, gaze = f["face_patch"][2], f["face_gaze"][2]
    assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
    assert torch.equal(item["image"][0] * 255, torch.from_numpy(bgr[..., 2]).float())  # R = BGR's last channel
    assert torch.equal(item["gaze"], torch.from_numpy(gaze.astype(np.float32)))
    assert torch.isnan(item["head_pose"]).all()  # no face_head_pose in the file
    assert item["frame_index"].shape == () and int(item["frame_index"]) == 2
    assert item["landmarks_2d"].shape == (68, 2) and "mask" not in item
    # mixed with an export only the keys both have are returned
    mixed = H5GazeDataset([p, sorted(reference_export.glob("*.h5"))[0]])
    assert set(mixed[0]) == {"image", "gaze", "head_pose", "landmarks_2d", "frame_index", "cam_index",
                             "subject_index"}
    assert mixed.take([0, 6])["subject_index"].tolist() == [0, 1]
    with_hp = H5GazeDataset([_xgaze_file(tmp_path / "hp.h5", head_pose=True)])
    assert not torch.isnan(with_hp[0]["head_pose"]).any()


def test_reader_errors(tmp_path, reference_export):
    with pytest.raises(ValueError, match="h5 file not found"):
        H5GazeDataset([tmp_path / "missing.h5"])
    with pytest.raises(ValueError, match="different image sizes"):
        H5GazeDataset([_xgaze_file(tmp_path / "a.h5", size=32), _xgaze_file(tmp_path / "b.h5", size=16)])
    with pytest.raises(ValueError, match="32x32 .* 64x64"):
        H5GazeDataset([_xgaze_file(tmp_path / "c.h5")], image_size=(64, 64))
    bad = tmp_path / "partial.h5"
    bad.write_bytes((reference_export / "p00.h5").read_bytes())
    with h5py.File(bad, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(ValueError, match="incomplete onthefly export"):
        check_h5(bad)
    with pytest.raises(ValueError, match="image_format"):
        H5GazeDataset([reference_export / "p00.h5"], image_format="bgr")


def test_train_data_still_exports_the_reader():
    import onthefly.train.data as td

    assert td.H5GazeDataset is H5GazeDataset and td.check_h5 is check_h5


def _xgaze_test_file(path, n=5, size=SIZE):
    """An official ETH-XGaze test-split file: the same layout without labels (no face_gaze / face_head_pose)."""
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        f.create_dataset("face_patch", data=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
                         chunks=(1, size, size, 3), compression="lzf")
        f["frame_index"] = np.arange(n).reshape(n, 1)
        f["cam_index"] = np.arange(n).reshape(n, 1) % 18
        f["facial_landmarks"] = rng.uniform(0, size, (n, 68, 2))
    return path


def test_reader_reads_the_unlabelled_test_split_for_inference(tmp_path):
    p = _xgaze_test_file(tmp_path / "subject0001.h5")
    with pytest.raises(ValueError, match=r"subject0001\.h5: no 'face_gaze' labels .*require_labels=False"):
        H5GazeDataset([p])
    ds = H5GazeDataset([p], require_labels=False)
    assert len(ds) == 5 and not ds.labelled
    item = ds[3]
    assert set(item) == {"image", "landmarks_2d", "frame_index", "cam_index", "subject_index"}
    with h5py.File(p) as f:
        bgr = f["face_patch"][3]
    assert torch.equal(item["image"][2] * 255, torch.from_numpy(bgr[..., 0]).float())  # B = BGR's first channel
    assert int(item["cam_index"]) == 3
    # with a labelled file in the list the labels are dropped (only what every file has)
    both = H5GazeDataset([p, _xgaze_file(tmp_path / "train.h5")], require_labels=False)
    assert "gaze" not in both[6] and len(both) == 11


def test_reader_names_the_official_mpiifacegaze_mat_it_cannot_read(tmp_path):
    v5 = tmp_path / "p00.mat"  # MATLAB v5 (what scipy.io.savemat / MPIIFaceGaze's normalized data are)
    v5.write_bytes(b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018".ljust(116)
                   + b"\x00" * 8 + b"\x00\x01IM" + b"\x00" * 64)
    with pytest.raises(ValueError, match=r"p00\.mat: a MATLAB file \(MATLAB 5\.0 MAT-file.*official normalized "
                                         r"MPIIFaceGaze \.mat .*Data/data.*cannot be read by H5GazeDataset"):
        H5GazeDataset([v5])
    v73 = tmp_path / "p01.mat"  # MATLAB v7.3 is HDF5 underneath
    with h5py.File(v73, "w") as f:
        f.create_group("Data").create_dataset("data", data=np.zeros((2, 3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"p01\.mat: a MATLAB v7\.3 file with 'Data'.*cannot be read"):
        H5GazeDataset([v73])
