"""CPU allocator tuning for render workers (Linux/glibc only).

The renderer allocates and frees tens of MB of temporaries per call. With glibc's defaults, freed
memory at the top of the heap is trimmed back to the OS and large blocks are ``mmap``-ed, so every call
page-faults its working set in again; in some VMs that costs more than the rendering. Calling
:func:`tune_malloc` once per process (e.g. in a DataLoader ``worker_init_fn``) keeps freed memory for
reuse. It changes process-wide allocator settings: importing onthefly never calls it, but
:class:`~onthefly.dataset.OnTheFlyGazeDataset` does, once in the iterating process, when it renders on the CPU
(its ``tune_malloc`` argument: default on for CPU, off for CUDA; ``tune_malloc=False`` leaves the allocator alone).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc(trim_threshold: int = 1 << 30, mmap_threshold: int = 32 << 20) -> bool:
    """Set glibc's ``M_TRIM_THRESHOLD`` / ``M_MMAP_THRESHOLD`` (bytes). Returns True when applied,
    False on platforms without glibc ``mallopt`` (then nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    ok = (mallopt(_M_TRIM_THRESHOLD, int(min(trim_threshold, 2**31 - 1))) == 1) and ok
    return ok
