"""Arrows point where the subject looks (ETH-XGaze drawing convention); grids tile; PNGs are written."""
import math

import cv2
import numpy as np
import pytest
import torch

from onthefly import viz


def _arrow_centroid(pitchyaw):
    im = np.zeros((101, 101, 3), np.uint8)
    viz.draw_arrow(im, pitchyaw, (255, 255, 255), length=40)
    ys, xs = np.nonzero(im[..., 0])
    return xs.mean() - 50, ys.mean() - 50


def test_arrow_directions():
    dx, dy = _arrow_centroid((math.radians(30), 0.0))      # looking up
    assert dy < -5 and abs(dx) < 1
    dx, dy = _arrow_centroid((0.0, math.radians(30)))      # looking toward image left
    assert dx < -5 and abs(dy) < 1
    dx, dy = _arrow_centroid((math.radians(-20), math.radians(-20)))  # down and right
    assert dx > 3 and dy > 3


def test_to_uint8_and_grid(tmp_path):
    imgs = viz.to_uint8_images(torch.rand(5, 3, 8, 10))
    assert imgs.shape == (5, 8, 10, 3) and imgs.dtype == np.uint8
    g = viz.grid(imgs, cols=3, pad=2)
    assert g.shape == (2 * 10 + 2, 3 * 12 + 2, 3)
    path = viz.save_png(tmp_path / "a" / "g.png", g)
    back = cv2.imread(str(path))[..., ::-1]
    np.testing.assert_array_equal(back, g)
    with pytest.raises(ValueError):
        viz.to_uint8_images(torch.rand(3, 8, 10))
    with pytest.raises(ValueError):
        viz.grid([], cols=2)


def test_put_label_is_legible_box():
    im = np.full((224, 224, 3), 200, np.uint8)
    viz.put_label(im, "gaze +20,-42")
    box = im[:14, :60]
    assert (box < 100).mean() > 0.5 and box.max() > 200   # dark box with bright text
    assert (im[40:, :] == 200).all()                       # nothing drawn elsewhere
