import math

import numpy as np
import pytest

from onthefly.reconstruct.metrics import masked_psnr, masked_ssim


def test_psnr_and_ssim():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (64, 64, 3))
    m = np.zeros((64, 64), bool)
    m[10:50, 10:50] = True
    assert masked_psnr(a, a, m) == math.inf
    assert masked_ssim(a, a, m) == pytest.approx(1.0)
    b = a.copy()
    b[m] += 0.1  # MSE 0.01 inside the mask -> 20 dB; outside the mask nothing counts
    b[~m] = 0
    assert masked_psnr(a, b, m) == pytest.approx(20.0)
    noisy = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    noisier = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    assert 1 > masked_ssim(a, noisy, m) > masked_ssim(a, noisier, m) > 0
    with pytest.raises(ValueError, match="empty"):
        masked_psnr(a, b, np.zeros_like(m))
