"""Image-quality measures over a region: PSNR and SSIM (Wang et al. 2004), numpy/torch only (no scikit-image).

Images are float arrays in [0, 1], (H,W,3) or (H,W); ``mask`` (H,W) bool selects the pixels that count.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["masked_psnr", "masked_ssim", "ssim_map"]


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 1) over the pixels of ``mask`` (all channels); inf when identical there."""
    m = np.asarray(mask, bool)
    if not m.any():
        raise ValueError("masked_psnr: the mask is empty")
    d = (np.asarray(a, np.float64)[m] - np.asarray(b, np.float64)[m]) ** 2
    mse = float(d.mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _gauss(size: int = 11, sigma: float = 1.5):
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim_map(a: np.ndarray, b: np.ndarray, *, size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel SSIM (H,W), averaged over channels: Gaussian window ``size``/``sigma``, K1 = 0.01, K2 = 0.03,
    peak 1; the borders are reflect-padded so the map has the image's size."""
    x = torch.from_numpy(np.asarray(a, np.float64))
    y = torch.from_numpy(np.asarray(b, np.float64))
    if x.shape != y.shape:
        raise ValueError(f"ssim_map: shapes differ, {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    x, y = x.permute(2, 0, 1)[:, None], y.permute(2, 0, 1)[:, None]       # (C,1,H,W)
    g = _gauss(size, sigma)
    p = size // 2

    def blur(t):
        t = F.pad(t, (p, p, p, p), mode="reflect")
        t = F.conv2d(t, g.view(1, 1, 1, -1))
        return F.conv2d(t, g.view(1, 1, -1, 1))

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(0)[0].numpy()


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM over the pixels of ``mask`` (windows near the region's edge see the pixels around it)."""
    m = np.asarray(mask, bool)
    if not m.any():
        raise ValueError("masked_ssim: the mask is empty")
    return float(ssim_map(a, b)[m].mean())
