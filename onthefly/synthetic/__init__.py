"""Procedural human heads: the embedded default data of onthefly.

See :mod:`onthefly.synthetic.heads` for the conventions (head frame, iris centre, gaze target).
"""
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
           "sample_gaze_targets", "PART_NAMES", "MAX_GAZE_ANGLE_DEG", "MIN_TARGET_DISTANCE"]
