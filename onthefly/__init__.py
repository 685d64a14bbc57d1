"""onthefly: exactly labelled gaze training data, rendered on the fly.

The data path reads as one straight line, one module per stage::

    mesh cache -> pose sampler -> camera -> rasterizer -> shader -> compositor -> labels -> batch

Conventions (camera frames, pitch/yaw signs, face-centre rules) are documented once in
``docs/conventions.md`` and implemented in :mod:`onthefly.geometry` and :mod:`onthefly.normalization`.
"""

__version__ = "0.1.0"
