"""Procedural human heads: the embedded default data of onthefly.

See :mod:`onthefly.synthetic.heads` for the conventions (head frame, iris centre, gaze target).
"""
import functools
import hashlib
from pathlib import Path

from .heads import (
                    MAX_GAZE_ANGLE_DEG,
                    MIN_TARGET_DISTANCE,
                    PART_NAMES,
                    HeadBatch,
                    HeadIdentity,
                    build_heads,
                    procedural_heads,
                    sample_gaze_targets,
                    sample_identities,
)

__all__ = ["HeadIdentity", "HeadBatch", "sample_identities", "build_heads", "procedural_heads",
           "sample_gaze_targets", "PART_NAMES", "MAX_GAZE_ANGLE_DEG", "MIN_TARGET_DISTANCE", "generator_fingerprint"]


@functools.lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """16 hex digits of the sha1 of this package's sources: what a change of the generator (a different head for the
    same seed) changes. Stored by ``ProceduralSource`` in its caches, and keys the reconstruction's shape model."""
    h = hashlib.sha1()
    for p in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]
