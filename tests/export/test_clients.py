"""The reference systems' own loaders read onthefly exports unmodified.

Each test re-implements one client's reading logic from the facts in ``../shared/reference/real-formats.md``
(not copied): ETH-XGaze's ``data_loader.py`` (§1), Rot-MVGaze's ``GazeDataset`` through both its ``xgaze`` and its
``mpiinv`` path (§5) and XGaze3D's ``print_result.py`` (§2), and checks what comes out of it against the on-the-fly
batches the rows are defined by: images (colour order), labels (signs), view pairing (same frame, relative
rotation) and file names. The table "which client reads which export" in ``docs/export.md`` is these tests.
"""
from __future__ import annotations

import glob
import json
import os
import random
import re

import h5py
import numpy as np
import pytest
import torch

from onthefly.export import ExportError, export, subject_seed, verify_export
from onthefly.h5 import H5GazeDataset

from .conftest import CONFIG, SEED, settings
from .test_export import reference_batches

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _index(out) -> dict:
    return json.loads((out / "index.json").read_text())


# ----------------------------------------------------------------------------------------------- ETH-XGaze
class EthXGazeLoader:
    """ETH-XGaze's data_loader.py as §1 describes it: DATA_DIR/train_test_split.json lists the file names of
    ``train``/``test``; files are DATA_DIR/<split>/<name>, opened with swmr=True and ``assert swmr_mode``; an item
    is face_patch[idx][:, :, [2, 1, 0]] → ToPILImage → ToTensor → Normalize(ImageNet), and face_gaze[idx] as float
    (train only: the test split has no labels)."""

    def __init__(self, data_dir, split="train"):
        with open(os.path.join(data_dir, "train_test_split.json")) as fh:
            names = json.load(fh)[split]
        self.split, self.files, self.rows = split, [], []
        for k, name in enumerate(names):
            f = h5py.File(os.path.join(data_dir, split, name), "r", swmr=True)
            assert f.swmr_mode
            self.files.append(f)
            self.rows += [(k, i) for i in range(f["face_patch"].shape[0])]
        self.names = names

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, idx):
        k, i = self.rows[idx]
        f = self.files[k]
        rgb = f["face_patch"][i][:, :, [2, 1, 0]]
        x = rgb.transpose(2, 0, 1).astype(np.float64) / 255.0  # ToPILImage → ToTensor
        x = (x - IMAGENET_MEAN[:, None, None]) / IMAGENET_STD[:, None, None]
        if self.split == "test":
            return x
        return x, f["face_gaze"][i].astype("float")

    def close(self):
        for f in self.files:
            f.close()


@pytest.mark.parametrize("schema", ["mpii-nv", "xgaze3d"])
def test_eth_xgaze_official_loader_reads_the_eth_xgaze_layout(proc_cache, tmp_path, schema):
    from onthefly.cache import MeshCache

    with MeshCache(proc_cache) as mc:
        subjects = list(mc.subjects)
    out = tmp_path / "xgaze"
    cfg = dict(CONFIG, subjects=subjects[:3])
    export(settings(proc_cache, out, schema=schema, views_per_frame=1, config=cfg, layout="eth-xgaze",
                    test_subjects=(subjects[2],)), progress="none")
    roots = [out] if schema == "mpii-nv" else [out, out / "augment"]  # xgaze3d: the plain and the augment set
    idx = _index(out)
    for root in roots:
        split = json.loads((root / "train_test_split.json").read_text())
        assert sorted(split) == ["test", "train"] and len(split["train"]) == 2 and len(split["test"]) == 1
        rel = os.path.relpath(root, out).replace(".", "")
        prefix = f"{rel}/" if rel else ""
        assert idx["subjects"][f"{prefix}test/{split['test'][0]}"] == subjects[2]
        train = EthXGazeLoader(root, "train")
        assert len(train) == 2 * 4
        for j, name in enumerate(train.names):
            subject = idx["subjects"][f"{prefix}train/{name}"]
            app = None if (schema == "mpii-nv" or rel) else {
                "preset": "xgaze3d", "modes": [{"weight": 1.0, "background": "green", "light": "none"}],
                "jitter": None}
            ref = reference_batches(proc_cache, subject, schema, k=1, appearance=app)
            for i in range(4):
                x, gaze = train[j * 4 + i]
                rgb = x * IMAGENET_STD[:, None, None] + IMAGENET_MEAN[:, None, None]
                want = ref["image"][i].double().numpy()
                if schema == "xgaze3d" and not rel:  # the stored green: 146 where XGaze3D's background is
                    bg = ref["coverage"][i, 0].double().numpy() == 0
                    assert np.allclose(rgb[1][bg], 146 / 255) and np.allclose(rgb[[0, 2]][:, bg], 0)
                    want = want.copy()
                    want[1][bg] = 146 / 255
                assert np.abs(rgb - want).max() <= 1 / 255 + 1e-9  # RGB after the loader's BGR→RGB flip
                assert np.array_equal(gaze, ref["gaze"][i].double().numpy())  # ETH-XGaze signs, as stored
        train.close()
        test = EthXGazeLoader(root, "test")
        assert len(test) == 4 and test[3].shape == (3, 32, 32)
        test.close()


def test_eth_xgaze_layout_errors_and_verify(proc_cache, tmp_path):
    with pytest.raises(ExportError, match="--test-subjects: only with --layout eth-xgaze"):
        settings(proc_cache, tmp_path / "a", test_subjects=("proc0000",))
    with pytest.raises(ExportError, match=r"--test-subjects: \['nobody'\] are not among the exported subjects"):
        export(settings(proc_cache, tmp_path / "b", layout="eth-xgaze", test_subjects=("nobody",)), progress="none")
    out = tmp_path / "c"
    export(settings(proc_cache, out, views_per_frame=1, layout="eth-xgaze", test_subjects=("proc0001",)),
           progress="none")
    assert verify_export(out) == []
    assert sorted(os.listdir(out / "train")) == ["p00.h5", "p02.h5", "p03.h5"] and os.listdir(out / "test") == [
        "p01.h5"]
    (out / "train_test_split.json").write_text(json.dumps({"train": ["p00.h5"], "test": ["p01.h5"]}))
    assert any("train_test_split.json: 'train' lists" in p for p in verify_export(out))


# ----------------------------------------------------------------------------------------------- Rot-MVGaze
NOVEL_TEST = {2, 5, 8, 11, 14, 17}


class RotMVGazeDataset:
    """Rot-MVGaze's GazeDataset as §5 describes it: files <path>/<name> (flat), swmr open + assert; row i is valid
    when i % 18 is in the camera set; its partner is random.choice (seeded 0) among the other valid rows of block
    i // 18; only face_patch, face_gaze, face_head_pose are read; 'xgaze' patches are BGR → RGB, 'mpiinv' patches
    are used unchanged and their head pitch is negated (head_pose[0] *= -1)."""

    def __init__(self, path, names, kind, cams=frozenset(range(18))):
        assert kind in ("xgaze", "mpiinv")
        self.kind, self.files, self.items = kind, [], []
        random.seed(0)
        for k, name in enumerate(names):
            f = h5py.File(os.path.join(path, name), "r", swmr=True)
            assert f.swmr_mode
            self.files.append(f)
            n = f["face_patch"].shape[0]
            valid = [i for i in range(n) if i % 18 in cams]
            for i in valid:
                block = [j for j in valid if j // 18 == i // 18 and j != i]
                self.items.append((k, i, random.choice(block)))

    def _view(self, f, i):
        img = f["face_patch"][i]
        img = img[..., ::-1] if self.kind == "xgaze" else img
        hp = f["face_head_pose"][i].astype(np.float64).copy()
        if self.kind == "mpiinv":
            hp[0] *= -1
        return img, f["face_gaze"][i].astype(np.float64), hp

    def __getitem__(self, n):
        k, i, j = self.items[n]
        (im0, g0, h0), (im1, g1, h1) = self._view(self.files[k], i), self._view(self.files[k], j)
        rot0, rot1 = _ry(h0[1]) @ _rx(-h0[0]), _ry(h1[1]) @ _rx(-h1[0])  # rot_k = Ry(yaw)·Rx(-pitch)
        return {"rows": (k, i, j), "images": (im0, im1), "gaze": (g0, g1), "head": (h0, h1),
                "rot_01": rot1 @ rot0.T}

    def close(self):
        for f in self.files:
            f.close()


@pytest.fixture(scope="module")
def rmv_exports(proc_cache, tmp_path_factory):
    """18 views per frame of 2 subjects: the rot-mvgaze schema, and the mpii-nv schema (for the xgaze path)."""
    from onthefly.cache import MeshCache

    with MeshCache(proc_cache) as mc:
        subjects = list(mc.subjects)[1:3]
    root = tmp_path_factory.mktemp("rmv")
    cfg = dict(CONFIG, batch_size=2, subjects=subjects)
    outs = {}
    for schema in ("rot-mvgaze", "mpii-nv"):
        outs[schema] = root / schema
        export(settings(proc_cache, outs[schema], schema=schema, views_per_frame=18, image_size=16, config=cfg),
               progress="none")
    return outs, subjects


def _rmv_reference(proc_cache, subject):
    return reference_batches(proc_cache, subject, k=18, size=16, batch_size=2)


@pytest.mark.parametrize("schema,kind", [("rot-mvgaze", "mpiinv"), ("mpii-nv", "xgaze")])
def test_rot_mvgaze_reads_pairs_of_one_frame_with_exact_relative_rotation(proc_cache, rmv_exports, schema, kind):
    outs, subjects = rmv_exports
    out = outs[schema]
    assert verify_export(out) == []
    names = sorted(f for f in os.listdir(out) if f.endswith(".h5"))
    # rot-mvgaze numbers the selected subjects p00.. (the names Rot-MVGaze opens); mpii-nv keeps cache positions
    assert names == (["p00.h5", "p01.h5"] if schema == "rot-mvgaze" else ["p01.h5", "p02.h5"])
    idx = _index(out)
    assert [idx["subjects"][n] for n in names] == subjects
    for cams in (frozenset(range(18)), frozenset(range(18)) - NOVEL_TEST, NOVEL_TEST):
        ds = RotMVGazeDataset(out, names, kind, cams)
        assert len(ds.items) == 2 * 4 * len(cams)
        refs = {k: _rmv_reference(proc_cache, subjects[k]) for k in range(2)}
        worst = 0.0
        for n in range(len(ds.items)):
            it = ds[n]
            k, i, j = it["rows"]
            ref = refs[k]
            f = ds.files[k]
            # pairing: both rows come from the same source frame, and the camera split is a split of view slots
            assert f["frame_index"][i] == f["frame_index"][j] == ref["frame_index"][i] == ref["frame_index"][j]
            assert f["cam_index"][i] == i % 18 and i % 18 in cams and j % 18 in cams
            # relative rotation: Rot-MVGaze's rot_1·rot_0ᵀ equals the views' true one, V_j·V_iᵀ
            V = ref["face_mat_norm"].double().numpy()
            true = V[j] @ V[i].T
            worst = max(worst, float(np.abs(it["rot_01"] - true).max()))
            # colour order and label signs as the network sees them
            for r, im, g, h in zip((i, j), it["images"], it["gaze"], it["head"]):
                rgb = ref["image"][r].permute(1, 2, 0).double().numpy()
                assert np.abs(im / 255.0 - rgb).max() <= 1 / 255 + 1e-9, "colour order"
                assert np.allclose(h, ref["head_pose"][r].double().numpy(), atol=1e-7), "head-pose sign"
                assert np.array_equal(g, ref["gaze"][r].double().numpy())
        assert worst < 1e-6, worst
        ds.close()


def test_rot_mvgaze_wrong_path_is_wrong(proc_cache, rmv_exports):
    """The measured reason for the rot-mvgaze schema: an mpii-nv (BGR, ETH-signed) file read as mpiinv gets
    swapped colours and wrong relative rotations."""
    outs, subjects = rmv_exports
    ds = RotMVGazeDataset(outs["mpii-nv"], ["p01.h5"], "mpiinv")
    ref = _rmv_reference(proc_cache, subjects[0])
    V = ref["face_mat_norm"].double().numpy()
    err = []
    for n in range(len(ds.items)):
        it = ds[n]
        _, i, j = it["rows"]
        R = it["rot_01"].T @ (V[j] @ V[i].T)
        err.append(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))
    assert max(err) > 5  # degrees: pitch read with the wrong sign
    ds.close()


def test_rot_mvgaze_schema_refuses_what_its_client_cannot_read(proc_cache, tmp_path):
    from onthefly.cache import build_cache
    from onthefly.sources.procedural import ProceduralSource

    with pytest.raises(ExportError, match=r"rot-mvgaze: needs --views-per-frame 18"):
        settings(proc_cache, tmp_path / "k2", schema="rot-mvgaze", views_per_frame=2)
    with pytest.raises(ExportError, match="rot-mvgaze: Rot-MVGaze opens .* flat"):
        settings(proc_cache, tmp_path / "lay", schema="rot-mvgaze", views_per_frame=18, layout="eth-xgaze")
    big = tmp_path / "big.h5"
    build_cache(ProceduralSource(count=16, seed=0, subjects=16), big)
    with pytest.raises(ExportError, match=r"16 subjects selected, but its client opens only p00\.h5 \.\.\. "
                                          r"p14\.h5 \(15 files\)"):
        export(settings(big, tmp_path / "many", schema="rot-mvgaze", views_per_frame=18), progress="none")
    assert not (tmp_path / "many").exists() or not list((tmp_path / "many").iterdir())


def test_h5_reader_decodes_rot_mvgaze_files(proc_cache, rmv_exports):
    outs, subjects = rmv_exports
    ds = H5GazeDataset(sorted(outs["rot-mvgaze"].glob("*.h5")))
    ref = _rmv_reference(proc_cache, subjects[0])
    got = ds.take(range(72))
    assert float((got["image"] - ref["image"]).abs().max()) <= 1 / 255  # RGB stored: not flipped
    assert torch.allclose(got["head_pose"], ref["head_pose"], atol=1e-7)  # pitch negated back
    assert torch.equal(got["frame_index"], ref["frame_index"])


# ----------------------------------------------------------------------------------------------- XGaze3D
#: §1: lm50[0] = lm68[8], lm50[1:44] = lm68[17:60], lm50[44:47] = lm68[61:64], lm50[47:50] = lm68[65:68]
LM50 = [8] + list(range(17, 60)) + list(range(61, 64)) + list(range(65, 68))


def print_result_rows(data_dir):
    """XGaze3D's print_result.py reading (§2): sorted glob DATA_DIR/sub*.h5; per file and row i < 1800:
    cam_index, frame_index, face_patch (BGR, drawn and written with cv2), face_gaze, face_head_pose,
    landmarks_norm, pj_landmarks_norm; the sample is saved as image_{p}_{frame_index}_{cam_index}.jpg."""
    for path in sorted(glob.glob(str(data_dir) + "/" + "sub*.h5")):
        with h5py.File(path, "r") as f:
            p = os.path.basename(path).split(".")[0]
            for i in range(min(1800, f["face_patch"].shape[0])):
                yield {"p": p, "i": i, "cam_index": f["cam_index"][i], "frame_index": f["frame_index"][i],
                       "image": f["face_patch"][i], "gaze": f["face_gaze"][i], "head_pose": f["face_head_pose"][i],
                       "lm": f["landmarks_norm"][i], "pj": f["pj_landmarks_norm"][i],
                       "sample": f"image_{p}_{f['frame_index'][i]}_{f['cam_index'][i]}.jpg"}


def test_xgaze3d_print_result_reads_both_file_sets(proc_cache, tmp_path):
    from onthefly.dataset import OnTheFlyGazeDataset
    from onthefly.export import SCHEMAS, make_camera

    out = tmp_path / "x3d"
    K = 3
    export(settings(proc_cache, out, schema="xgaze3d", views_per_frame=K), progress="none")
    assert verify_export(out) == []
    idx = _index(out)
    green = {"preset": "xgaze3d", "modes": [{"weight": 1.0, "background": "green", "light": "none"}], "jitter": None}
    plain, aug = list(print_result_rows(out)), list(print_result_rows(out / "augment"))
    assert len(plain) == len(aug) == 16 * K
    assert len({r["sample"] for r in plain}) == len(plain)  # one sample file per row: (frame, camera) unique
    for sub, rows, app in (("", plain, green), ("augment/", aug, None)):
        for name in sorted({r["p"] for r in rows}):
            subject = idx["subjects"][f"{sub}{name}.h5"]
            assert re.fullmatch(r"subject\d{4}", name)
            ref = reference_batches(proc_cache, subject, "xgaze3d", k=K, appearance=app)
            ds = OnTheFlyGazeDataset(proc_cache, subjects=[subject], seed=subject_seed(SEED, subject),
                                     camera=make_camera(SCHEMAS["xgaze3d"], 32), device="cpu")
            ids = ds.frame_ids(ref["frame_index"])
            st = ds._load()
            for r in (x for x in rows if x["p"] == name):
                i = r["i"]
                assert r["cam_index"] == i % K + 1  # camera + 1, cameras cam00.. = the frame's view slots
                assert r["frame_index"] == int(ids[i][1][-4:])  # int(frame[-4:]) of the frame folder name
                assert r["pj"].shape == (50, 2) and r["lm"].shape == (68, 2)
                # pj: the posed face model projected (fixed points); landmarks_norm: the 68 iBUG points, which
                # differ only on the outline (the chin, lm50[0], and a hidden brow end)
                assert np.array_equal(r["pj"], ref["landmarks_2d_fixed"][i, LM50].numpy())
                assert np.array_equal(r["lm"], ref["landmarks_2d"][i].numpy())
                lm50 = r["lm"][LM50]
                assert np.array_equal(lm50[2:10], r["pj"][2:10]) and np.array_equal(lm50[11:], r["pj"][11:])
                if abs(float(r["head_pose"][1])) < np.radians(45):  # the brow ends (lm50[1], [10]): the tails
                    assert np.array_equal(lm50[[1, 10]], r["pj"][[1, 10]])
                assert np.array_equal(r["gaze"], ref["gaze"][i].double().numpy())
                assert r["head_pose"].dtype == np.float32
                assert np.array_equal(r["head_pose"], ref["head_pose"][i].numpy())
                rgb = r["image"][..., ::-1] / 255.0  # cv2 images are BGR
                want = ref["image"][i].permute(1, 2, 0).double().numpy()
                if not sub:
                    bg = ref["coverage"][i, 0].numpy() == 0
                    assert bg.any() and (r["image"][bg] == (0, 146, 0)).all()  # XGaze3D's stored green (B,G,R)
                    want = want.copy()
                    want[bg] = (0, 146 / 255, 0)
                assert np.abs(rgb - want).max() <= 1 / 255 + 1e-9
            with h5py.File(out / f"{sub}{name}.h5") as f:
                # face_mat_norm = R of (virtual) camera i by XGaze3D's rule: forward = the face centre's direction
                # in camera i, down = forward × hR_i[:, 0], right = down × forward; camera i = the source camera
                # moved to the view's centre, so hR_i = hR and fc_i = c − o_i = d·V[2]
                lut = {int(c): n for n, c in enumerate(st.labels.index.tolist())}
                for i in range(0, len(ref["gaze"]), 5):
                    n = lut[int(f["cache_index"][i])]
                    hR, c = st.labels.head_rotation[n].numpy(), st.labels.face_centre[n].numpy()
                    V = f["face_mat_norm"][i].astype(np.float64)
                    o = c - 300.0 * V[2]
                    fwd = (c - o) / np.linalg.norm(c - o)
                    down = np.cross(fwd, hR[:, 0])
                    down /= np.linalg.norm(down)
                    right = np.cross(down, fwd)
                    assert np.allclose(np.stack([right, down, fwd]), V, atol=1e-5)
                assert np.array_equal(f["rotation_matrix"][()], np.broadcast_to(np.eye(3), (len(ref["gaze"]), 3, 3)))
                assert np.array_equal(f["cache_index"][()], ref["frame_index"].numpy())
    # the two sets hold the same views (XGaze3D renders each frame twice): same labels, other appearance
    for a, b in zip(plain, aug):
        assert a["sample"] == b["sample"] and np.array_equal(a["gaze"], b["gaze"])
    assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(plain, aug))
