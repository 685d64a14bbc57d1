"""An 8192² XGaze3D atlas is decoded at reduced scale and downsampled once: peak memory stays bounded."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

# the benchmark script itself (loaded by path: putting benchmarks/ on sys.path would shadow the train package)
_spec = importlib.util.spec_from_file_location(
    "_bench_xgaze3d_atlas", Path(__file__).resolve().parents[2] / "benchmarks" / "xgaze3d_atlas.py")
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)
child, write_release = _bench.child, _bench.write_release


def test_8192_atlas_decoded_at_quarter_scale(tmp_path, monkeypatch):
    from onthefly.meshio import read_texture

    p = tmp_path / "mvs3d.jpg"
    img = np.zeros((8192, 8192, 3), np.uint8)
    img[:, :4096, 2] = 200  # left half red (RGB), right half green
    img[:, 4096:, 1] = 200
    cv2.imwrite(str(p), img)
    del img
    flags = []
    real = cv2.imread
    monkeypatch.setattr(cv2, "imread", lambda path, flag=cv2.IMREAD_COLOR: flags.append(flag) or real(path, flag))
    tex = read_texture(p, 2048)
    assert flags == [cv2.IMREAD_REDUCED_COLOR_4] and tex.shape == (2048, 2048, 3)
    assert tex[1000, 100, 0] > 150 and tex[1000, 2000, 1] > 150 and tex[1000, 100, 1] < 50  # RGB order kept
    assert read_texture(p, 1500).shape == (1500, 1500, 3)  # 1/4 decode (2048) then one INTER_AREA resize


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (VmHWM)")
def test_8192_atlas_loads_with_bounded_memory(tmp_path):
    big = write_release(tmp_path / "big", 8192)
    small = write_release(tmp_path / "small", 256)
    base = child(*small, "2048")
    got = child(*big, "2048")
    assert got["texture"] == [2048, 2048, 3]
    # the full 8192² RGB decode alone is 192 MiB (plus its BGR->RGB copy); the reduced decode holds 12 MiB
    assert got["peak_rss_mib"] - base["peak_rss_mib"] < 64, (got, base)
