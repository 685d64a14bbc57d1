"""Appearance: backgrounds (never lit), image pool, lighting, presets, jitter."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from onthefly.augment import BACKGROUNDS, GREEN, LIGHTS, Appearance, BackgroundPool, kelvin_to_rgb
from onthefly.dataset import OnTheFlyGazeDataset

from .conftest import SMALL


def g(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def bg_dir(tmp_path):
    d = tmp_path / "bg"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(d / f"im{i}.jpg"), rng.integers(0, 256, (80, 100, 3), dtype=np.uint8))
    cv2.imwrite(str(d / "flat.png"), np.full((64, 64, 3), (255, 0, 0), np.uint8))  # BGR blue
    (d / "broken.jpg").write_bytes(b"not a jpeg")
    return d


def test_pool_reports_unreadable_once_and_skips(bg_dir):
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        pool = BackgroundPool(bg_dir, 64)
    assert len(pool) == 4 and pool.images.shape == (4, 64, 64, 3) and pool.images.dtype == torch.uint8
    flat = pool.images[[f.name for f in pool.files].index("flat.png")]
    assert (flat[..., 2] == 255).all() and (flat[..., 0] == 0).all()  # RGB


def test_presets_mix_and_background_is_never_lit(proc_cache, bg_dir):
    with pytest.warns(UserWarning):
        ds = OnTheFlyGazeDataset(proc_cache, batch_size=40, camera=SMALL, appearance="mpii-nv",
                                 background_dir=bg_dir, seed=1)
        b = ds.batch(0)
    bg = b["param_background"]
    light = b["param_light"]
    assert set(bg.tolist()) <= {0, 1, 3} and (bg == 3).sum() > 10
    assert set(light.tolist()) <= {0, 1}
    img, mask = b["image"], b["coverage"]  # the background is composited outside the whole mesh
    out = mask[:, 0] == 0
    for s in range(len(img)):  # solid backgrounds keep their colour exactly, even with dark light
        if int(bg[s]) in (0, 1):
            col = b["param_background_color"][s].float()
            assert torch.allclose(img[s][:, out[s]], col[:, None].expand(3, int(out[s].sum())), atol=1e-6)
    # dark: face darker than unlit for the same texture (ambient 0.25-0.75)
    dark = light == 1
    assert (b["param_ambient"][dark] <= 0.75).all() and (b["param_ambient"][dark] >= 0.25).all()
    r = ds.replay(b)
    assert torch.allclose(r["image"], b["image"], atol=1e-6)


def test_xgaze3d_green(proc_cache, bg_dir):
    with pytest.warns(UserWarning):
        ds = OnTheFlyGazeDataset(proc_cache, batch_size=16, camera=SMALL, appearance="xgaze3d",
                                 background_dir=bg_dir, seed=0)
        b = ds.batch(0)
    green = b["param_background"] == BACKGROUNDS.index("green")
    assert 0 < green.sum() < 16
    s = int(green.nonzero()[0])
    out = b["coverage"][s, 0] == 0
    assert torch.allclose(b["image"][s][:, out].mean(1), torch.tensor(GREEN), atol=1e-6)
    assert (b["param_light"][~green] == LIGHTS.index("low")).all()


def test_default_appearance_without_images(proc_cache):
    ds = OnTheFlyGazeDataset(proc_cache, batch_size=8, camera=SMALL)
    b = ds.batch(0)
    assert (b["param_background"] == BACKGROUNDS.index("color")).all()
    assert b["image"].min() >= 0 and b["image"].max() <= 1


def test_crop_flip_and_blur(bg_dir):
    with pytest.warns(UserWarning):
        app = Appearance("plain", modes=[{"weight": 1, "background": "image", "light": "none"}],
                         background_dir=bg_dir, image_blur=5, image_blur_prob=0.5)
        app.setup((48, 48), "cpu")
    p = app.sample(64, g(), (48, 48))
    bg = app.background_images(p, (48, 48))
    S = app.pool.size
    for s in range(4):
        im = app.pool.images[int(p.background_image[s])].permute(2, 0, 1).float() / 255
        x, y = p.crop[s].tolist()
        ref = im[:, y:y + 48, x:x + 48]
        if bool(p.flip[s]):
            ref = ref.flip(-1)
        if not bool(p.bg_blur[s]):
            assert torch.allclose(bg[s], ref, atol=1e-6)
    assert p.crop.max() <= S - 48 and p.flip.any() and (~p.flip).any() and p.bg_blur.any()


def test_lighting_and_jitter():
    app = Appearance("plain", modes=[{"weight": 1, "background": "color", "light": "random"}],
                     jitter={"prob": 1.0, "brightness": 0.3, "noise": 0.05, "blur_prob": 0.5})
    p = app.sample(32, g(), (16, 16))
    L = app.lights(p)
    assert L is not None and L.direction.shape == (32, 3)
    assert (p.light_direction[:, 2] < 0).all()  # lights in front of the face
    x = torch.rand(32, 3, 16, 16, generator=g(1))
    y = app.jitter(x, p)
    assert y.shape == x.shape and not torch.equal(x, y) and y.min() >= 0 and y.max() <= 1
    assert torch.equal(y, app.jitter(x, p))  # replayable
    none = Appearance("plain")
    q = none.sample(4, g(), (16, 16))
    assert torch.equal(none.jitter(x[:4], q), x[:4]) and none.lights(q) is None
    assert torch.allclose(kelvin_to_rgb(torch.tensor(6500.0, dtype=torch.float64)), torch.ones(3, dtype=torch.float64))
    warm = kelvin_to_rgb(torch.tensor(3000.0, dtype=torch.float64))
    assert warm[0] > warm[2]
    with pytest.raises(ValueError, match="unknown keys"):
        Appearance(jitter={"hue": 0.1})
    with pytest.raises(ValueError, match="appearance mode"):
        Appearance(modes=[{"background": "sky", "light": "none"}])


def test_default_light_is_a_rooms_and_auto_exposure_meters_the_face(proc_cache):
    """default: the light never comes from below the face, the specular is weak; a lit face darker than the drawn
    exposure target is brought up to it (at most 3x), an overexposed one down to EXPOSURE_CEILING, one in between is
    left alone; the metering uses the face coverage only; plain and the other presets are not exposed."""
    from onthefly.augment import EXPOSURE_CEILING

    app = Appearance("default")
    p = app.sample(256, g(3), (16, 16))
    assert (p.light_direction[:, 1] <= 1e-9).all()            # towards the light: y <= 0 (from above or level)
    assert (p.specular <= 0.1 * 1.5 + 1e-9).all() and app.shininess <= 16
    assert ((p.exposure >= 0.3) & (p.exposure <= 0.5)).all()
    wts = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    face = torch.zeros(3, 1, 16, 16)
    face[:, :, 4:12, 4:12] = 1.0
    level = torch.tensor([0.1, 0.95, 0.6]).view(3, 1, 1, 1)
    img = level.expand(3, 3, 16, 16) * face + 0.02 * (1 - face)   # face pixels at the level, the rest darker
    q = app.sample(3, g(0), (16, 16))
    q.exposure = torch.tensor([0.4, 0.4, 0.4], dtype=torch.float64)
    out = app.expose(img, face, q)
    lum = (out * wts * face).sum((1, 2, 3)) / face.sum((1, 2, 3))
    assert abs(float(lum[0]) - 0.3) < 1e-5                        # 0.1 -> at most 3x
    assert abs(float(lum[1]) - EXPOSURE_CEILING) < 1e-5            # overexposed -> the ceiling
    assert torch.equal(out[2], img[2])                             # in between: untouched
    q.exposure = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.equal(app.expose(img, face, q), img)              # exposure 0: the bare render
    for preset in ("plain", "xgaze3d", "mpii-nv"):
        kw = {} if preset == "plain" else {"modes": [{"weight": 1.0, "background": "color", "light": "random"}]}
        assert (Appearance(preset, **kw).sample(16, g(), (16, 16)).exposure == 0).all(), preset
    # in the dataset: a dark identity under a weak light renders at least as bright as without exposure
    lo = OnTheFlyGazeDataset(proc_cache, batch_size=8, camera=SMALL, appearance={"exposure": None}).batch(0)
    hi = OnTheFlyGazeDataset(proc_cache, batch_size=8, camera=SMALL).batch(0)
    m = hi["mask"] > 0.5
    assert torch.equal(lo["param_light_direction"], hi["param_light_direction"])
    assert (hi["image"] * m).sum() > (lo["image"] * m).sum()
    with pytest.raises(ValueError, match="exposure"):
        Appearance(exposure=(0.6, 0.2))
