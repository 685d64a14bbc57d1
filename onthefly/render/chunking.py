"""The one chunking policy of the renderer: how many samples one pass rasterizes/shades, and how many candidate
(face, pixel) pairs the torch backend evaluates per step.

CPU: the torch backend's temporaries stay below glibc's mmap threshold (32 MB), so they are recycled from the heap
instead of being page-faulted in on every call (very slow in some VMs); the numba backend's per-face setup arrays
(88 bytes a face) stay as small. CUDA: big passes keep the kernel-launch count low. Larger batches run as several
sub-batches of many samples each (never a per-sample loop).
"""
from __future__ import annotations

import torch

__all__ = ["samples_per_pass", "max_candidates"]

_FACES_PER_PASS = {"cpu": 1 << 19, "cuda": 1 << 24}  # B*F faces set up in one pass
_PIXELS_PER_PASS = {"cpu": 1 << 21, "cuda": 1 << 26}  # B*H*W (super-sampled) pixels in one pass
_CANDIDATES = {"cpu": 1 << 18, "cuda": 1 << 24}  # torch backend: (face, pixel) candidates per step


def _kind(device) -> str:
    return "cuda" if torch.device(device).type == "cuda" else "cpu"


def samples_per_pass(device, faces: int = 0, pixels: int = 0) -> int:
    """Samples per pass for ``faces`` faces and ``pixels`` rendered pixels per sample (at least 1)."""
    k = _kind(device)
    per = 1 << 62
    if faces:
        per = min(per, _FACES_PER_PASS[k] // faces)
    if pixels:
        per = min(per, _PIXELS_PER_PASS[k] // pixels)
    return max(1, per)


def max_candidates(device) -> int:
    return _CANDIDATES[_kind(device)]
