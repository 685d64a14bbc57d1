"""Procedural frames reused by the source tests (built once per session: heads are not free to build)."""
from __future__ import annotations

import functools
import math

import numpy as np

from onthefly.sources.procedural import ProceduralSource


@functools.lru_cache(maxsize=None)
def procedural_records(n: int = 3, seed: int = 11, subjects: int = 2):
    src = ProceduralSource(n, seed, subjects, batch=n)
    return tuple(src.load(i) for i in range(n))


def angle_deg(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return math.degrees(math.atan2(np.linalg.norm(np.cross(a, b)), float(a @ b)))
