"""Compositor stage: backgrounds, lighting and photometric jitter, batched on the device.

Parameters first, then pixels: :meth:`Appearance.sample` draws an :class:`AppearanceParams` (per-sample tensors:
the mode, background kind / colour / image crop, light strengths, direction and colour, jitter factors) from a
seeded ``torch.Generator``; :meth:`Appearance.lights` turns it into per-sample renderer lights,
:meth:`Appearance.composite` puts the background behind the rendered face (the background is never lit) and
:meth:`Appearance.jitter` applies the photometric jitter. The parameters go into the batch, so every sample can be
rendered again.

**Modes.** An appearance is a mixture of modes, each ``{"weight": w, "background": B, "light": L}``:

* backgrounds ``black`` (0, 0, 0; ``none`` is an alias), ``color`` (uniform random RGB), ``green``
  (XGaze3D's render-time ``[0, 110, 0]``; XGaze3D's stored images hold it as (0, 146, 0), the uint8 wrap of
  110 × 255, which only ``onthefly export --schema xgaze3d`` reproduces, in its plain set) and ``image`` (a random crop of an image from ``background_dir``, randomly flipped, blurred with probability
  ``image_blur_prob`` by a ``image_blur``-pixel box filter);
* lights ``none`` (unlit: the texture colour), ``dark`` (unlit texture × ambient ``0.25 + 0.5·U``, MPII-NV's dark
  branch), ``random`` (Phong: ambient / diffuse / specular strengths uniform in ``ambient`` / ``diffuse`` /
  ``specular``, a directional light from pitch ``light_pitch`` and yaw ``light_yaw`` degrees (0, 0 = from the
  camera), light colour from a colour temperature uniform in ``temperature`` kelvin) and ``low`` (as ``random``
  with the ``low_*`` ranges, for XGaze3D's "low light"). The default ranges are a room's: the light from the front
  and above (never from below the face), a weak, broad specular (skin is not plastic: strength <= 0.1, shininess 12).

**Exposure** (``exposure=(lo, hi)``, the ``default`` preset's (0.3, 0.5)): as a camera's auto-exposure does, each
lit sample's face, when darker, is brought up to a mean luminance drawn uniform in (lo, hi) (gain at most 3), and
an overexposed one (mean above ``EXPOSURE_CEILING`` = 0.7) down to 0.7 (gain at least 0.6); the mean is metered on
the face region's pixels (the whole mesh's where a cache has no face region) before the background goes behind it,
so it needs no state: a replay meters the same gain. Without it a dark skin under a weak light renders at a mean grey of ~0.08,
which no camera would record. ``None`` (every other preset) leaves the renders as lit.

**Presets** (``preset=``):

* ``default``: 50 % random colour / 50 % image (all colour without ``background_dir``), ``random`` light, exposure,
  mild jitter;
* ``plain``: black background, unlit, no jitter (the bare render, useful for checks);
* ``mpii-nv``: MPII-NV's mix — black 10 %, black+dark 10 %, colour 10 %, colour+dark 10 %, image 30 %,
  image+dark 30 % (needs ``background_dir``, e.g. Places365 ``val_256``; images box-blurred as NV does,
  a 10-px box at 224 px), no jitter;
* ``xgaze3d``: one stream mixing XGaze3D's two file sets (which XGaze3D writes as two files per subject,
  ``subjectXXXX.h5`` and ``augment/subjectXXXX.h5``, as ``onthefly export --schema xgaze3d`` does): 50 % the plain
  set (green background, unlit), 50 % the augment set — 25 % random RGB background, 25 % image background (needs
  ``background_dir``), both with a random ``low`` light (its numbers live only in XGaze3D's missing
  ``render_info.yaml``; the ``low_*`` ranges are documented guesses). The green is the render-time 110, not the
  stored 146 (see ``green`` above).

Any constructor argument overrides the preset's value (e.g. ``Appearance("mpii-nv", background_dir=..., jitter=
{...})``).

**Jitter** (``jitter`` dict; each applied to a sample with probability ``prob``): ``brightness`` b (×U(1−b, 1+b)),
``contrast`` c (around the mean grey, ×U(1−c, 1+c)), ``saturation`` s (around the pixel grey, ×U(1−s, 1+s)),
``gamma`` (lo, hi) (x^U(lo, hi)), ``blur_prob`` / ``blur_sigma`` (lo, hi) (Gaussian blur, 5×5), ``noise`` σ_max
(Gaussian noise σ ~ U(0, σ_max)).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .render import DirectionalLights, Material

__all__ = ["Appearance", "AppearanceParams", "BackgroundPool", "PRESETS", "BACKGROUNDS", "LIGHTS",
           "kelvin_to_rgb"]

BACKGROUNDS = ("black", "color", "green", "image")
LIGHTS = ("none", "dark", "random", "low")
GREEN = (0.0, 110.0 / 255.0, 0.0)
#: auto-exposure: faces metered brighter than this mean luminance are brought down to it
EXPOSURE_CEILING = 0.7
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

_DEFAULT_JITTER = {"prob": 0.8, "brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "gamma": (0.85, 1.15),
                   "blur_prob": 0.1, "blur_sigma": (0.5, 1.2), "noise": 0.02}

PRESETS: dict[str, dict] = {
    "default": {"modes": [{"weight": 0.5, "background": "color", "light": "random"},
                          {"weight": 0.5, "background": "image", "light": "random"}],
                "jitter": _DEFAULT_JITTER, "exposure": (0.3, 0.5)},
    "plain": {"modes": [{"weight": 1.0, "background": "black", "light": "none"}], "jitter": None},
    "mpii-nv": {"modes": [{"weight": 0.1, "background": "black", "light": "none"},
                          {"weight": 0.1, "background": "black", "light": "dark"},
                          {"weight": 0.1, "background": "color", "light": "none"},
                          {"weight": 0.1, "background": "color", "light": "dark"},
                          {"weight": 0.3, "background": "image", "light": "none"},
                          {"weight": 0.3, "background": "image", "light": "dark"}],
                "image_blur": 10, "image_blur_prob": 1.0, "jitter": None},
    "xgaze3d": {"modes": [{"weight": 0.5, "background": "green", "light": "none"},
                          {"weight": 0.25, "background": "color", "light": "low"},
                          {"weight": 0.25, "background": "image", "light": "low"}],
                "jitter": None},
}


def kelvin_to_rgb(kelvin: torch.Tensor) -> torch.Tensor:
    """Approximate RGB (…, 3) in [0, 1] of black-body light at ``kelvin`` (1000-40000 K; Tanner Helland's fit),
    divided by the colour of 6500 K so that 6500 K is white."""
    def raw(k):
        t = k.clamp(1000.0, 40000.0) / 100.0
        r = torch.where(t <= 66, torch.ones_like(t), (329.698727446 * (t - 60).clamp_min(1e-6) ** -0.1332047592) / 255)
        g = torch.where(t <= 66, (99.4708025861 * torch.log(t) - 161.1195681661) / 255,
                        (288.1221695283 * (t - 60).clamp_min(1e-6) ** -0.0755148492) / 255)
        b = torch.where(t >= 66, torch.ones_like(t),
                        torch.where(t <= 19, torch.zeros_like(t),
                                    (138.5177312231 * torch.log((t - 10).clamp_min(1e-6)) - 305.0447927307) / 255))
        return torch.stack([r, g, b], -1).clamp(0, 1)
    return (raw(kelvin) / raw(torch.tensor(6500.0, dtype=kelvin.dtype))).clamp(0, 1.5)


class BackgroundPool:
    """Background images decoded once into a uint8 tensor (M, S, S, 3) RGB on the device.

    Every JPEG/PNG under ``folder`` (sorted, recursive) is decoded with OpenCV, its shorter side resized to ``S``
    (``cv2.INTER_AREA``) and centre-cropped square. With ``max_images`` a seeded random subset is decoded (the pool
    of all 36,500 Places365 ``val_256`` images would be 7 GB). Unreadable images are reported once (one warning
    listing them) and skipped; a missing folder or one without readable images is a ValueError."""

    def __init__(self, folder, size: int, device="cpu", max_images: int | None = 2000, seed: int = 0):
        self.folder = Path(folder)
        files = list_images(self.folder)
        if max_images is not None and len(files) > max_images:
            pick = np.sort(np.random.default_rng(seed).choice(len(files), max_images, replace=False))
            files = [files[i] for i in pick]
        imgs, bad = [], []
        for f in files:  # decoding once, at set-up (not on the hot path)
            im = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if im is None or im.size == 0:
                bad.append(f.name)
                continue
            h, w = im.shape[:2]
            s = size / min(h, w)
            im = cv2.resize(im, (max(size, round(w * s)), max(size, round(h * s))), interpolation=cv2.INTER_AREA)
            h, w = im.shape[:2]
            y, x = (h - size) // 2, (w - size) // 2
            imgs.append(np.ascontiguousarray(im[y:y + size, x:x + size, ::-1]))
        if bad:
            warnings.warn(f"background_dir {self.folder}: skipped {len(bad)} unreadable image(s): "
                          f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}", stacklevel=2)
        if not imgs:
            raise ValueError(f"background_dir {self.folder}: no readable JPEG/PNG images")
        self.images = torch.from_numpy(np.stack(imgs)).to(device)
        self.size = size
        self.files = [f for f in files if f.name not in set(bad)]

    def __len__(self) -> int:
        return self.images.shape[0]


def list_images(folder) -> list[Path]:
    """Sorted JPEG/PNG files under ``folder`` (recursive); ValueError when the folder is missing or has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"background_dir: folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"background_dir {folder}: no .jpg/.jpeg/.png images")
    return files


@dataclass
class AppearanceParams:
    """Per-sample appearance parameters (tensors with leading dim B, on the CPU until applied).

    ``mode`` (B,) index into ``Appearance.modes``; ``background`` (B,) index into :data:`BACKGROUNDS`;
    ``background_color`` (B, 3) in [0, 1] (solid kinds); ``background_image`` (B,) pool index (−1: none);
    ``crop`` (B, 2) (x, y) crop offsets; ``flip`` (B,) bool; ``bg_blur`` (B,) bool; ``light`` (B,) index into
    :data:`LIGHTS`; ``ambient``/``diffuse``/``specular`` (B, 3) light colours×strengths; ``light_direction``
    (B, 3) towards the light, camera frame; ``jitter`` (B,) bool; ``brightness``/``contrast``/``saturation``/
    ``gamma``/``blur_sigma``/``noise`` (B,) (identity values where not jittered); ``noise_seed`` (B,) int64 (the
    batch's noise comes from a generator seeded with its first entry, so a whole batch replays exactly);
    ``exposure`` (B,) the face's target mean luminance (0: no exposure step)."""

    mode: torch.Tensor
    background: torch.Tensor
    background_color: torch.Tensor
    background_image: torch.Tensor
    crop: torch.Tensor
    flip: torch.Tensor
    bg_blur: torch.Tensor
    light: torch.Tensor
    ambient: torch.Tensor
    diffuse: torch.Tensor
    specular: torch.Tensor
    light_direction: torch.Tensor
    jitter: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    gamma: torch.Tensor
    blur_sigma: torch.Tensor
    noise: torch.Tensor
    noise_seed: torch.Tensor
    exposure: torch.Tensor

    def to(self, device) -> "AppearanceParams":
        return AppearanceParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def as_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        return {prefix + f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict, prefix: str = "") -> "AppearanceParams":
        return cls(**{f.name: d[prefix + f.name] for f in fields(cls)})


class Appearance:
    """Backgrounds, lighting and jitter (see the module docstring for modes and presets).

    Args:
        preset: ``default``, ``plain``, ``mpii-nv`` or ``xgaze3d``.
        modes: list of ``{"weight", "background", "light"}`` (overrides the preset's).
        background_dir: folder of JPEG/PNG backgrounds (Places365 ``val_256``); required by ``image`` modes
            except in ``default``, whose image share then becomes colour.
        max_background_images: decode at most this many (a seeded subset).
        image_blur / image_blur_prob: box-blur size (px at the output size) and probability for image backgrounds.
        ambient, diffuse, specular: (lo, hi) strengths of ``random`` light; ``low_ambient``, ``low_diffuse``,
            ``low_specular`` for ``low`` light; ``dark_ambient`` (lo, hi) for ``dark``.
        light_pitch, light_yaw: (lo, hi) degrees of the light direction (0, 0: from the camera; pitch > 0 from
            above, yaw > 0 from image left).
        temperature: (lo, hi) colour temperature, kelvin.
        shininess: Phong exponent.
        jitter: dict of jitter settings (module docstring), or None for no jitter.
        exposure: (lo, hi) target mean luminance of a lit face (module docstring), None for none, or ``"preset"``.
    """

    def __init__(self, preset: str = "default", *, modes=None, background_dir=None,
                 max_background_images: int | None = 2000, image_blur=None, image_blur_prob=None,
                 ambient=(0.4, 0.9), diffuse=(0.1, 0.6), specular=(0.0, 0.1), low_ambient=(0.15, 0.45),
                 low_diffuse=(0.0, 0.35), low_specular=(0.0, 0.1), dark_ambient=(0.25, 0.75),
                 light_pitch=(0.0, 55.0), light_yaw=(-50.0, 50.0), temperature=(4000.0, 8000.0),
                 shininess: float = 12.0, jitter="preset", exposure="preset"):
        if preset not in PRESETS:
            raise ValueError(f"appearance preset: unknown {preset!r}; choose one of {sorted(PRESETS)}")
        p = PRESETS[preset]
        self.preset = preset
        modes = p["modes"] if modes is None else modes
        self.background_dir = None if background_dir is None else Path(background_dir)
        if self.background_dir is not None:
            list_images(self.background_dir)  # fail early with a clear message
        if self.background_dir is None and any(m["background"] == "image" for m in modes):
            if preset == "default" and modes is p["modes"]:
                modes = [{"weight": 1.0, "background": "color", "light": "random"}]
            else:
                raise ValueError(f"appearance {preset!r}: image backgrounds need background_dir (a folder of "
                                 "JPEG/PNG images, e.g. Places365 val_256)")
        self.modes = []
        modes = [{**m, "background": "black"} if isinstance(m, dict) and m.get("background") == "none" else m
                 for m in modes]  # "none" = no background = black
        for m in modes:
            if not isinstance(m, dict) or m.get("background") not in BACKGROUNDS or m.get("light") not in LIGHTS:
                raise ValueError(f"appearance mode {m!r}: expected {{'weight': w, 'background': one of "
                                 f"{BACKGROUNDS}, 'light': one of {LIGHTS}}}")
            self.modes.append({"weight": float(m.get("weight", 1.0)), "background": m["background"],
                               "light": m["light"]})
        w = torch.tensor([m["weight"] for m in self.modes], dtype=torch.float64)
        if len(w) == 0 or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError("appearance modes: need at least one mode with a positive weight")
        self._weights = w / w.sum()
        self._mode_bg = torch.tensor([BACKGROUNDS.index(m["background"]) for m in self.modes])
        self._mode_light = torch.tensor([LIGHTS.index(m["light"]) for m in self.modes])
        self.max_background_images = max_background_images
        self.image_blur = int(p.get("image_blur", 0) if image_blur is None else image_blur)
        self.image_blur_prob = float(p.get("image_blur_prob", 0.0) if image_blur_prob is None else image_blur_prob)
        self.ranges = {k: tuple(float(x) for x in v) for k, v in dict(
            ambient=ambient, diffuse=diffuse, specular=specular, low_ambient=low_ambient, low_diffuse=low_diffuse,
            low_specular=low_specular, dark_ambient=dark_ambient, light_pitch=light_pitch, light_yaw=light_yaw,
            temperature=temperature).items()}
        for k, (lo, hi) in self.ranges.items():
            if lo > hi:
                raise ValueError(f"appearance {k}: expected (lo, hi) with lo <= hi, got {(lo, hi)}")
        self.shininess = float(shininess)
        jit = p["jitter"] if isinstance(jitter, str) and jitter == "preset" else jitter
        if jit is not None:
            unknown = set(jit) - set(_DEFAULT_JITTER)
            if unknown:
                raise ValueError(f"jitter: unknown keys {sorted(unknown)}; known: {sorted(_DEFAULT_JITTER)}")
            jit = {**{k: 0.0 for k in _DEFAULT_JITTER}, "gamma": (1.0, 1.0), "blur_sigma": (0.5, 1.0), **jit}
        self.jitter_cfg = jit
        exp = p.get("exposure") if isinstance(exposure, str) and exposure == "preset" else exposure
        if exp is not None:
            exp = tuple(float(x) for x in exp)
            if len(exp) != 2 or not (0.0 < exp[0] <= exp[1] <= 1.0):
                raise ValueError(f"appearance exposure: expected (lo, hi) with 0 < lo <= hi <= 1, got {exposure!r}")
        self.exposure = exp
        self.pool: BackgroundPool | None = None

    @property
    def uses_images(self) -> bool:
        return bool((self._mode_bg == BACKGROUNDS.index("image")).any())

    def setup(self, size: tuple[int, int], device) -> None:
        """Decode the background pool (once, in the iterating process) for output size (H, W)."""
        if self.uses_images and self.pool is None:
            S = int(math.ceil(max(size) * 8 / 7))  # 256 for 224: Places365 val_256 crops as-is
            self.pool = BackgroundPool(self.background_dir, S, device, self.max_background_images)

    # ------------------------------------------------------------------------------------------- parameters
    def sample(self, B: int, generator: torch.Generator, size: tuple[int, int]) -> AppearanceParams:
        """Draw the parameters of B samples (CPU tensors)."""
        g = generator
        f64 = torch.float64

        def U(lo_hi, n=B, k=None):
            lo, hi = lo_hi
            shape = (n,) if k is None else (n, k)
            return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=f64)

        mode = torch.multinomial(self._weights, B, replacement=True, generator=g)
        bg = self._mode_bg[mode]
        light = self._mode_light[mode]
        color = torch.rand(B, 3, generator=g, dtype=f64)
        color = torch.where((bg == 0)[:, None], 0.0, color)
        color = torch.where((bg == 2)[:, None], torch.tensor(GREEN, dtype=f64), color)
        H, W = size
        n_pool = len(self.pool) if self.pool is not None else 0
        S = self.pool.size if self.pool is not None else max(H, W)
        img_idx = torch.randint(max(n_pool, 1), (B,), generator=g)
        is_img = bg == 3
        img_idx = torch.where(is_img, img_idx, -1)
        crop = torch.stack([torch.randint(S - W + 1, (B,), generator=g), torch.randint(S - H + 1, (B,), generator=g)],
                           1)
        flip = torch.rand(B, generator=g) < 0.5
        bg_blur = (torch.rand(B, generator=g) < self.image_blur_prob) & is_img & (self.image_blur > 1)
        # lights: unlit = ambient 1 (rgb = texel), dark = ambient a, random / low = Phong with ranges
        r = self.ranges
        tint = kelvin_to_rgb(U(r["temperature"]))
        amb_rand, dif_rand, spe_rand = U(r["ambient"]), U(r["diffuse"]), U(r["specular"])
        amb_low, dif_low, spe_low = U(r["low_ambient"]), U(r["low_diffuse"]), U(r["low_specular"])
        dark = U(r["dark_ambient"])
        amb = torch.where(light == 0, 1.0, torch.where(light == 1, dark, torch.where(light == 2, amb_rand, amb_low)))
        dif = torch.where(light == 2, dif_rand, torch.where(light == 3, dif_low, 0.0))
        spe = torch.where(light == 2, spe_rand, torch.where(light == 3, spe_low, 0.0))
        lit = light >= 2
        tint = torch.where(lit[:, None], tint, 1.0)
        lp, ly = U(r["light_pitch"]) * math.pi / 180, U(r["light_yaw"]) * math.pi / 180
        # towards the light: (0, 0, -1) for a light at the camera; pitch > 0 from above (−y), yaw > 0 from image left
        direction = torch.stack([-torch.cos(lp) * torch.sin(ly), -torch.sin(lp), -torch.cos(lp) * torch.cos(ly)], 1)
        # jitter
        j = self.jitter_cfg
        if j is None:
            jit = torch.zeros(B, dtype=torch.bool)
            one = torch.ones(B, dtype=f64)
            bri, con, sat, gam, bsig, noi = one, one, one, one, torch.zeros(B, dtype=f64), torch.zeros(B, dtype=f64)
        else:
            jit = torch.rand(B, generator=g) < j["prob"]
            bri = U((1 - j["brightness"], 1 + j["brightness"]))
            con = U((1 - j["contrast"], 1 + j["contrast"]))
            sat = U((1 - j["saturation"], 1 + j["saturation"]))
            gam = U(tuple(j["gamma"]))
            bsig = torch.where(torch.rand(B, generator=g) < j["blur_prob"], U(tuple(j["blur_sigma"])), 0.0)
            noi = U((0.0, j["noise"]))
            bri, con, sat, gam = (torch.where(jit, x, 1.0) for x in (bri, con, sat, gam))
            bsig, noi = (torch.where(jit, x, 0.0) for x in (bsig, noi))
        return AppearanceParams(
            mode=mode, background=bg, background_color=color, background_image=img_idx, crop=crop, flip=flip,
            bg_blur=bg_blur, light=light, ambient=amb[:, None] * tint, diffuse=dif[:, None] * tint,
            specular=spe[:, None] * tint, light_direction=direction, jitter=jit, brightness=bri, contrast=con,
            saturation=sat, gamma=gam, blur_sigma=bsig, noise=noi,
            noise_seed=torch.randint(2**62, (B,), generator=g),
            exposure=torch.where(lit, U(self.exposure), 0.0) if self.exposure is not None
            else torch.zeros(B, dtype=f64))

    # ------------------------------------------------------------------------------------------- application
    def lights(self, p: AppearanceParams, dtype=torch.float32):
        """Per-sample renderer lights (None when every sample is unlit with ambient 1: the plain texture)."""
        if bool((p.light == 0).all()):
            return None
        return DirectionalLights(direction=p.light_direction.to(dtype), ambient=p.ambient.to(dtype),
                                 diffuse=p.diffuse.to(dtype), specular=p.specular.to(dtype))

    def material(self, B: int, device, dtype=torch.float32):
        return Material(shininess=torch.full((B,), self.shininess, dtype=dtype, device=device))

    def background_images(self, p: AppearanceParams, size: tuple[int, int], dtype=torch.float32) -> torch.Tensor:
        """(B, 3, H, W) backgrounds: solid colours, or crops of pool images (flipped / blurred as drawn)."""
        H, W = size
        B = p.background.shape[0]
        dev = p.background_color.device
        bg = p.background_color.to(dtype)[:, :, None, None].expand(B, 3, H, W)
        rows = (p.background_image >= 0).nonzero().squeeze(1)
        if len(rows) == 0:
            return bg
        if self.pool is None:
            raise RuntimeError("Appearance.setup() was not called: no background pool")
        bg = bg.clone()
        idx = p.background_image[rows]
        x0, y0 = p.crop[rows, 0], p.crop[rows, 1]
        ys = y0[:, None] + torch.arange(H, device=dev)
        xs = torch.arange(W, device=dev)
        xs = torch.where(p.flip[rows][:, None], W - 1 - xs, xs) + x0[:, None]
        crops = self.pool.images[idx[:, None, None], ys[:, :, None], xs[:, None, :]]  # (n, H, W, 3) uint8
        crops = crops.permute(0, 3, 1, 2).to(dtype) * (1.0 / 255.0)
        blur = p.bg_blur[rows]
        if bool(blur.any()):
            k = self.image_blur | 1  # odd box
            b = blur.nonzero().squeeze(1)
            crops[b] = F.avg_pool2d(F.pad(crops[b], (k // 2,) * 4, mode="replicate"), k, stride=1)
        bg[rows] = crops
        return bg

    def composite(self, image: torch.Tensor, mask: torch.Tensor, p: AppearanceParams,
                  face: torch.Tensor | None = None) -> torch.Tensor:
        """``image`` premultiplied by coverage (renderer with background None), exposed (``p.exposure``, metered on
        the ``face`` coverage (B, 1, H, W) when given, else on ``mask``), over the drawn backgrounds."""
        bg = self.background_images(p, (image.shape[-2], image.shape[-1]), image.dtype)
        if self.exposure is not None:  # decided by the config, not by reading the batch (no device sync)
            image = self.expose(image, mask if face is None else face, p)
        return image.clamp(0.0, 1.0) + (1.0 - mask) * bg

    @staticmethod
    def expose(image: torch.Tensor, mask: torch.Tensor, p: AppearanceParams) -> torch.Tensor:
        """Auto-exposure: the gain that brings the mean luminance of the pixels ``mask`` covers up to ``p.exposure``
        (at most 3x), or an overexposed face (mean above :data:`EXPOSURE_CEILING`) down to it (at least 0.6x);
        samples with exposure 0 and empty masks unchanged."""
        target = p.exposure.to(image.device, image.dtype)
        wts = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
        cover = mask.sum((1, 2, 3))
        lum = (image * mask * wts).sum((1, 2, 3)) / cover.clamp_min(1e-6)
        lum = lum.clamp_min(1e-3)
        gain = torch.where(lum < target, (target / lum).clamp(max=3.0),
                           torch.where(lum > EXPOSURE_CEILING, (EXPOSURE_CEILING / lum).clamp(min=0.6), 1.0))
        gain = torch.where((target > 0) & (cover > 0), gain, 1.0)
        return image * gain.view(-1, 1, 1, 1)

    def jitter(self, x: torch.Tensor, p: AppearanceParams) -> torch.Tensor:
        """Photometric jitter of (B, 3, H, W) images in [0, 1] (identity for samples not jittered)."""
        if not bool(p.jitter.any()):
            return x
        dt = x.dtype
        B = x.shape[0]
        col = (lambda t: t.to(dt).view(B, 1, 1, 1))
        wts = torch.tensor([0.299, 0.587, 0.114], dtype=dt, device=x.device).view(1, 3, 1, 1)
        # brightness b, contrast c (around the mean grey m) and saturation s (around the pixel grey) are linear;
        # fused: s·b·c·x + (1−s)·b·c·grey(x) + b·m·(1−c), one pass instead of one per operation
        b, c, sat = col(p.brightness), col(p.contrast), col(p.saturation)
        grey = (x * wts).sum(1, keepdim=True)
        m = grey.mean(dim=(2, 3), keepdim=True)
        shift = torch.addcmul(b * m * (1 - c), (1 - sat) * b * c, grey)  # (B, 1, H, W)
        x = torch.addcmul(shift, sat * b * c, x).clamp_(0.0, 1.0)
        rows = (p.gamma != 1).nonzero().squeeze(1)
        if len(rows):
            x[rows] = x[rows].pow_(col(p.gamma)[rows])
        sig = p.blur_sigma.to(dt)
        rows = (sig > 0).nonzero().squeeze(1)
        if len(rows):
            r = torch.arange(-2, 3, dtype=dt, device=x.device)
            k1 = torch.exp(-0.5 * (r[None] / sig[rows, None]) ** 2)
            k1 = k1 / k1.sum(1, keepdim=True)  # (n, 5)
            n = len(rows)
            k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(3, 0)[:, None]  # (3n, 1, 5, 5)
            xb = F.pad(x[rows].reshape(1, 3 * n, *x.shape[-2:]), (2, 2, 2, 2), mode="replicate")
            x[rows] = F.conv2d(xb, k2, groups=3 * n).reshape(n, 3, *x.shape[-2:])
        if bool((p.noise > 0).any()):
            gen = torch.Generator(device=x.device)
            gen.manual_seed(int(p.noise_seed[0]))
            x = x.add_(torch.randn(x.shape, generator=gen, device=x.device, dtype=dt).mul_(col(p.noise)))
        return x.clamp_(0.0, 1.0)
