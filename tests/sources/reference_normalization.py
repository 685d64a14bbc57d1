"""The reference systems' normalization maths, re-implemented for the tests from the facts
(``real-formats.md`` §1 "Official normalization", §2 "Rendering", §4 "Labels"), independent of onthefly's code.

ETH-XGaze (normalization_example.py), XGaze3D (main_render.py) and MPII-NV (main.py) share it: the rotation
``R = [right; down; forward]`` built from the face centre and the head's x axis, gaze ``vector_to_pitchyaw(-g)`` of
``g = R(target - fc)``, head ``(asin H[1,2], atan2(H[0,2], H[2,2]))`` of ``H = R·hR``.
"""
from __future__ import annotations

import numpy as np


def normalization_rotation(fc: np.ndarray, hR: np.ndarray) -> np.ndarray:
    """(3,3) R = [right; down; forward] with forward = fc/|fc|, down = forward x hR[:,0], right = down x forward."""
    fwd = fc / np.linalg.norm(fc)
    down = np.cross(fwd, hR[:, 0])
    down /= np.linalg.norm(down)
    right = np.cross(down, fwd)
    right /= np.linalg.norm(right)
    return np.stack([right, down, fwd])


def gaze_label(R: np.ndarray, fc: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(pitch, yaw) of -g, g = R(target - fc)/|.|: (asin(-g_y), atan2(-g_x, -g_z))."""
    g = R @ (target - fc)
    g /= np.linalg.norm(g)
    return np.array([np.arcsin(-g[1]), np.arctan2(-g[0], -g[2])])


def head_label(R: np.ndarray, hR: np.ndarray) -> np.ndarray:
    """(asin H[1,2], atan2(H[0,2], H[2,2])) with H = R·hR."""
    H = R @ hR
    return np.array([np.arcsin(H[1, 2]), np.arctan2(H[0, 2], H[2, 2])])
