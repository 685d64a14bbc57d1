"""The export's compiled writer helpers: images encoded exactly as torch does it, LZF chunks that h5py's own filter
decodes to the very same bytes (the reference clients read exports through h5py's LZF filter)."""
import h5py
import numpy as np
import pytest
import torch

from onthefly import h5_fast
from onthefly.h5 import XGAZE3D_STORED_GREEN, EncodeContext, _enc_patch


def _torch_patch(img, cov, order, green):
    im = img.clone()
    if green:
        im[:, 1] += (XGAZE3D_STORED_GREEN - 110) / 255.0 * (1 - cov[:, 0])
    u8 = im.mul(255).round_().clamp_(0, 255).to(torch.uint8)
    return (u8.flip(1) if order == "BGR" else u8).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("order", ["BGR", "RGB"])
@pytest.mark.parametrize("green", [False, True])
def test_u8_rows_equal_torch_rounding(order, green):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 3, 17, 23, generator=g)
    img[0, :, 0] = (torch.arange(23.0) + 0.5) / 255  # exact halves: round half to even, as torch.round
    img[1, :, :2] = -0.2  # clamped
    img[2, :, :2] = 1.4
    cov = (torch.rand(3, 1, 17, 23, generator=g) > 0.5).float()
    got = _enc_patch(order)({"image": img, "coverage": cov}, EncodeContext(1, 3, 0, green))
    assert got.dtype == np.uint8 and got.shape == (3, 17, 23, 3)
    np.testing.assert_array_equal(got, _torch_patch(img, cov, order, green))


def _rows():
    rng = np.random.default_rng(1)
    smooth = np.linspace(0, 255, 40 * 30 * 3).reshape(40, 30, 3).astype(np.uint8)
    noisy = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
    return np.stack([
        smooth, noisy,
        rng.integers(0, 256, smooth.shape, dtype=np.uint8),  # incompressible: stored raw
        np.zeros_like(smooth),  # longest references (264 bytes)
        np.tile(np.arange(5, dtype=np.uint8), smooth.size // 5).reshape(smooth.shape),  # distance-5 repeats
        rng.integers(0, 3, smooth.shape, dtype=np.uint8),  # many short references
    ])


def test_lzf_chunks_read_back_through_h5py_filter(tmp_path):
    rows = _rows()
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        ds = f.create_dataset("face_patch", shape=(0, *rows.shape[1:]), maxshape=(None, *rows.shape[1:]),
                              dtype="uint8", chunks=(1, *rows.shape[1:]), compression="lzf")
        assert h5_fast.direct_lzf(ds)
        ds.resize(len(rows), 0)
        h5_fast.write_rows(ds, 0, rows)
    with h5py.File(p, "r") as f:
        ds = f["face_patch"]
        np.testing.assert_array_equal(ds[()], rows)
        masks = [ds.id.get_chunk_info(i).filter_mask for i in range(len(rows))]
        sizes = [ds.id.get_chunk_info(i).size for i in range(len(rows))]
    row = rows[0].nbytes
    assert masks[2] == 1 and sizes[2] == row  # random bytes: raw, LZF marked as skipped
    assert masks[3] == 0 and sizes[3] < row // 20  # zeros: compressed
    assert all(s <= row for s in sizes)


def test_direct_lzf_refuses_other_layouts(tmp_path):
    with h5py.File(tmp_path / "y.h5", "w") as f:
        two = f.create_dataset("a", shape=(4, 8, 8), dtype="uint8", chunks=(2, 8, 8), compression="lzf")
        gz = f.create_dataset("b", shape=(4, 8, 8), dtype="uint8", chunks=(1, 8, 8), compression="gzip")
        sh = f.create_dataset("c", shape=(4, 8, 8), dtype="uint8", chunks=(1, 8, 8), compression="lzf",
                              shuffle=True)
        assert not any(h5_fast.direct_lzf(d) for d in (two, gz, sh))


def test_lzf_mixed_segments_round_trip(tmp_path):
    """Seeded mixtures of runs, repeats at every distance class, noise and short tails, as h5py decodes them."""
    rng = np.random.default_rng(7)
    n = 9000  # longer than LZF's 8192-byte window
    rows = np.empty((40, n), np.uint8)
    for r in range(len(rows)):
        out = []
        while sum(map(len, out)) < n:
            kind, ln = rng.integers(0, 4), int(rng.integers(1, 700))
            if kind == 0:
                out.append(np.full(ln, rng.integers(0, 256), np.uint8))
            elif kind == 1:
                out.append(rng.integers(0, 256, ln, dtype=np.uint8))
            elif kind == 2 and out:
                prev = np.concatenate(out)
                s = int(rng.integers(0, len(prev)))
                out.append(prev[s:s + ln])
            else:
                out.append(np.tile(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8), ln)[:ln])
        rows[r] = np.concatenate(out)[:n]
    p = tmp_path / "m.h5"
    with h5py.File(p, "w") as f:
        ds = f.create_dataset("x", shape=rows.shape, dtype="uint8", chunks=(1, n), compression="lzf")
        h5_fast.write_rows(ds, 0, rows)
    with h5py.File(p, "r") as f:
        np.testing.assert_array_equal(f["x"][()], rows)


def test_u8_rows_from_another_thread_equal_main_thread():
    """The writer thread gets the serial kernels (numba's workqueue layer hosts parallel regions from one thread);
    same bytes either way."""
    import threading

    img = np.random.default_rng(3).random((2, 3, 9, 11), dtype=np.float32)
    got = {}
    t = threading.Thread(target=lambda: got.update(rows=h5_fast.u8_rows(img, True), plane=h5_fast.u8_plane(img[:, 0])))
    t.start()
    t.join()
    np.testing.assert_array_equal(got["rows"], h5_fast.u8_rows(img, True))
    np.testing.assert_array_equal(got["plane"], h5_fast.u8_plane(img[:, 0]))
