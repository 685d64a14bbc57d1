"""Golden batches: a few on-the-fly batches pinned to stored values, so a refactor that changes behaviour fails.

The stored file ``tests/golden/batches.npz`` holds, for fixed seeds and settings, the images (uint8, compared within
1/255 per pixel) and the labels (compared to 1e-6: float32 maths on another CPU may differ in the last bits) of
batches of the dataset on the embedded procedural heads; ``tests/golden/export.npz`` holds every dataset of every
file of two small exports (mpii-nv with 2 views per frame, xgaze3d with its two file sets), generated before the
structure redesign of issue 16 (commit 09c0aa6) and compared the same way. A deliberate change of behaviour regenerates it:
``ONTHEFLY_REGEN_GOLDEN=1 python -m pytest tests/test_golden.py`` — and the commit says why.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from onthefly.normalization import NormalizedCamera

GOLDEN = Path(__file__).parent / "golden" / "batches.npz"
CAMERA = NormalizedCamera(960.0 * 64 / 224, 600.0, 64, 64, "golden64")
#: name -> dataset arguments (besides the cache and the camera)
CASES = {
    "default": dict(batch_size=4, seed=3, appearance="default"),
    "mpii_nv_k2": dict(batch_size=3, seed=5, appearance="mpii-nv", views_per_frame=2, shared_appearance=True),
    "plain_uniform": dict(batch_size=4, seed=7, appearance="plain",
                          target={"type": "uniform", "pitch": (-30, 30), "yaw": (-40, 40)}),
}
LABELS = ("gaze", "head_pose", "face_mat_norm", "rotation_matrix", "landmarks_2d", "frame_index",
          "subject_index", "target_pose")


@pytest.fixture(scope="module")
def golden_cache(tmp_path_factory):
    import cv2

    from onthefly.cache import build_cache
    from onthefly.sources.procedural import ProceduralSource

    root = tmp_path_factory.mktemp("golden")
    path = root / "proc.h5"
    build_cache(ProceduralSource(count=8, seed=11, subjects=2), path)
    rng = np.random.default_rng(0)  # three fixed background pictures: smooth colour ramps plus seeded noise
    (root / "bg").mkdir()
    for i in range(3):
        ramp = np.linspace(0, 255, 96)[None, :, None] * rng.uniform(0.2, 1.0, 3)
        img = np.clip(ramp + rng.normal(0, 12, (96, 96, 3)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / "bg" / f"bg{i}.png"), img)
    return path


def _render(cache) -> dict[str, np.ndarray]:
    from onthefly.dataset import OnTheFlyGazeDataset

    out = {}
    torch.set_num_threads(1)
    for name, kw in CASES.items():
        ds = OnTheFlyGazeDataset(cache, device="cpu", camera=CAMERA, background_dir=cache.parent / "bg", **kw)
        for i in (0, 1):
            b = ds.batch(i, epoch=1)
            out[f"{name}/{i}/image"] = b["image"].mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
            for k in LABELS:
                out[f"{name}/{i}/{k}"] = b[k].numpy()
    return out


def _check_golden(got: dict[str, np.ndarray], path: Path, is_image, what: str) -> None:
    """Compare ``got`` with the stored file ``path`` (images within 1/255, floats to 1e-6, the rest exactly), or
    regenerate it with ``ONTHEFLY_REGEN_GOLDEN=1``. ``is_image(key, array)`` tells the images apart."""
    if os.environ.get("ONTHEFLY_REGEN_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        np.savez_compressed(path, **got)
        pytest.skip(f"regenerated {path}")
    want = np.load(path, allow_pickle=False)
    assert sorted(want.files) == sorted(got), f"{what}: regenerate the golden file deliberately"
    for k in sorted(got):
        a, b = got[k], want[k]
        assert a.shape == b.shape and a.dtype == b.dtype, k
        if is_image(k, b):
            diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
            assert diff.max() <= 1, f"{k}: {int((diff > 1).sum())} pixels differ by more than 1/255"
        elif np.issubdtype(a.dtype, np.floating):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=k)
        else:
            np.testing.assert_array_equal(a, b, err_msg=k)


def test_batches_equal_golden(golden_cache):
    _check_golden(_render(golden_cache), GOLDEN, lambda k, b: k.endswith("/image"),
                  "the golden file holds other batches")


EXPORT_GOLDEN = Path(__file__).parent / "golden" / "export.npz"
#: name -> export settings (besides cache, out, seed and image size): the export's own rows (row order, encoders,
#: file sets and names) pinned the same way as the batches
EXPORT_CASES = {
    "mpii_nv_k2": dict(schema="mpii-nv", views_per_frame=2, config={"batch_size": 3, "appearance": "mpii-nv"}),
    "xgaze3d": dict(schema="xgaze3d", views_per_frame=1, config={"batch_size": 4}),
}


def _export(cache, tmp: Path) -> dict[str, np.ndarray]:
    import h5py

    from onthefly.export import ExportSettings, export

    out = {}
    torch.set_num_threads(1)
    for name, kw in EXPORT_CASES.items():
        cfg = dict(kw["config"], background_dir=str(cache.parent / "bg"))
        st = ExportSettings(cache, tmp / name, seed=4, views_per_frame=kw["views_per_frame"], schema=kw["schema"],
                            image_size=64, config=cfg, device="cpu")
        export(st, progress="none")
        for p in sorted((tmp / name).rglob("*.h5")):
            rel = p.relative_to(tmp / name).as_posix()
            with h5py.File(p, "r") as f:
                for k in sorted(f.keys()):
                    out[f"{name}/{rel}/{k}"] = f[k][()]
    return out


def test_export_equals_golden(golden_cache, tmp_path):
    _check_golden(_export(golden_cache, tmp_path), EXPORT_GOLDEN,
                  lambda k, b: b.dtype == np.uint8 and b.ndim >= 3,  # images and masks
                  "the export writes other files or keys")
