"""``onthefly bench``: the packaged benchmark runs end to end at toy size and writes what it printed as JSON."""
from __future__ import annotations

import json

import pytest

from onthefly.cli import main
from onthefly.render.backends import available_backends


@pytest.fixture(autouse=True)
def cpu_backend():  # overrides tests/render/conftest.py: the command itself times every backend
    yield None


def test_bench_render_and_dataset_tiny(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--sizes", "48", "--batches", "2", "--repeats", "2", "--warmup", "0", "--no-peers",
               "--dataset-batches", "2", "--frames", "4", "--camera", "xgaze224", "--no-progress",
               "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    res = json.loads(out.read_text())
    backends = [b for b in available_backends("cpu") if b != "pytorch3d"]
    rows = res["render"]["results"]
    assert sorted(r["renderer"] for r in rows) == sorted(f"onthefly[{b}]" for b in backends)
    for r in rows:
        assert r["runs"] == 2 and r["images_per_s"] > 0 and r["size"] == 48 and r["batch"] == 2
        assert r["renderer"] in text
        if r["renderer"] == "onthefly[numba]":  # the compiled backend renders the torch backend's fragments
            assert r["vs_onthefly_torch"]["pix_to_face_equal_pct"] == 100.0
    ds = res["dataset"]["results"]
    assert sorted(r["backend"] for r in ds) == sorted(backends)
    assert all(r["samples_per_s"] > 0 and r["batch_size"] == 2 for r in ds)
    for key in ("cpu_count", "torch", "torch_threads", "platform"):
        assert key in res["render"]["machine"]
    assert "samples/s" in text and "images/s" in text


def test_bench_cuda_without_cuda_is_a_clean_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["bench", "--device", "cuda", "--no-progress"]) == 1
    assert "CUDA is not available" in capsys.readouterr().err
