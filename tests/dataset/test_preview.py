"""``onthefly preview`` handler, called directly (the lead registers it in onthefly/cli.py)."""
from __future__ import annotations

import argparse

import cv2

from onthefly.commands import preview


def _run(argv):
    p = argparse.ArgumentParser()
    preview.add_arguments(p)
    return preview.run(p.parse_args(argv))


def test_preview_writes_grid_and_plot(proc_cache, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("target: {type: gaussian, std: 20, on: gaze}\nappearance: plain\n"
                   "camera: xgaze224\nviews_per_frame: 2\nbatch_size: 256\n")
    out = tmp_path / "grid.png"
    assert _run(["--cache", str(proc_cache), "--config", str(cfg), "--out", str(out), "--count", "4",
                 "--plot-samples", "300"]) == 0
    grid = cv2.imread(str(out))
    plot = cv2.imread(str(tmp_path / "grid_dist.png"))
    assert grid is not None and grid.shape[0] > 2 * 224 and plot is not None
    assert "4 samples" in capsys.readouterr().out


def test_preview_bad_config(proc_cache, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("colour: red\n")
    assert _run(["--cache", str(proc_cache), "--config", str(cfg), "--out", str(tmp_path / "g.png")]) == 1
    assert "unknown keys" in capsys.readouterr().err
    assert _run(["--cache", str(tmp_path / "nope.h5"), "--out", str(tmp_path / "g.png")]) == 1
    assert "file not found" in capsys.readouterr().err
