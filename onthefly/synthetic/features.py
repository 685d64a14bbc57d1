"""Canonical facial features: landmark positions, shape bases and colour masks of the template.

All features are laid out in the canonical feature-plane coordinates (X, Y) of :mod:`.template` (mm,
~ head-frame x/y on the face; Y = 0 at the eye centres, Y grows downward). They are evaluated once per
template vertex; a head scales them with its identity parameters (magnitudes) and moves them with its
identity warp (positions), so landmark vertices stay on their features under every identity.
"""
from __future__ import annotations

import numpy as np


def _g(x, s):
    return np.exp(-0.5 * (x / s) ** 2)


def _smoothstep(a, b, x):
    t = np.clip((x - a) / (b - a), 0.0, 1.0)
    return t * t * (3 - 2 * t)


# ------------------------------------------------------------------ canonical layout (mm, feature plane)
#: Depth of the "face plane" used for feature coordinates: features are laid out in the gnomonic projection
#: of the skin directions from the template's ray origin (:data:`.template.C`) onto the plane ``z = ZREF``
#: (so feature coordinates are ~ mm on the face).
ZREF = -12.0
# The layout of the mouth, nostrils and brows follows OpenFace's 68-point mean shape (the mean of real annotated faces
# that MPII-NV's pipeline fits head pose with): on the mean identity the mouth corners lie 66.8 mm below the eye line
# and 53.6 mm apart, nostril points 31/35 27.6 mm apart, the brow head 20.7 mm above the inner canthus and its tail
# 12.5 mm beyond the outer canthus (measured on ``face_template()``; docs/reconstruction.md, "The feature layout").
NOSE_TIP_Y = 36.0
SUBNASALE_Y = 47.5
MOUTH_Y = 69.5          # stomion (lip line at the middle)
MOUTH_HW = 29.0         # half width of the mouth (corner X)
CHIN_Y = 121.0


def lip_line(X):
    return MOUTH_Y + 0.0025 * X ** 2


def upper_vermilion_top(X):
    ax = np.abs(X)
    return 62.7 + 0.0075 * X ** 2 - 1.6 * _g(ax - 5.5, 3.0) + 1.0 * _g(ax, 1.6)


def lower_vermilion_bottom(X):
    return 80.0 - 0.0086 * X ** 2


def canonical_landmark_points() -> np.ndarray:
    """(68,3) canonical 3D points whose directions from the ray origin select the landmark vertices.

    Front landmarks are given on the feature plane (z = ZREF); the jaw contour in 3D (it wraps around the
    face). Eye landmarks (36-47) are lid-margin vertices and are ignored here.
    """
    p = np.zeros((68, 3))
    # jaw 8..16 (subject's left, +x); mirrored for 0..8
    # iBUG semantics: the outline runs from the chin up to the level of the outer eye corners (point 0 / 16
    # beside the eye, in front of the ear), spaced along the contour as 300-W annotators space it
    jaw_left = np.array([[0.0, 121.5, -14.0], [17.0, 117.5, -10.0], [32.0, 109.0, -3.0], [44.0, 98.0, 6.0],
                         [54.0, 82.0, 17.0], [61.5, 60.5, 27.5], [65.5, 39.5, 33.0], [67.0, 20.0, 35.5],
                         [68.5, 1.0, 37.0]])
    for i in range(9):
        p[8 + i] = jaw_left[i]
        p[8 - i] = jaw_left[i] * [-1, 1, 1]
    front = {}
    # on the drawn brow of the mean identity (``heads._colours``: centre line minus a third of its thickness)
    brow_left = [(13.0, -18.0), (25.0, -21.7), (37.5, -22.3), (51.0, -20.3), (66.0, -16.2)]  # 22..26
    for i, (x, y) in enumerate(brow_left):
        front[22 + i] = (x, y)
        front[21 - i] = (-x, y)
    for i, y in enumerate([-1.0, 11.0, 23.5, NOSE_TIP_Y]):
        front[27 + i] = (0.0, y)
    for i, (x, y) in enumerate([(-13.0, 44.5), (-6.5, 46.5), (0.0, SUBNASALE_Y), (6.5, 46.5), (13.0, 44.5)]):
        front[31 + i] = (x, y)
    hw = MOUTH_HW
    outer_upper = [-hw, -14.0, -5.5, 0.0, 5.5, 14.0, hw]          # 48..54
    for i, x in enumerate(outer_upper):
        y = lip_line(x) if i in (0, 6) else upper_vermilion_top(x)
        front[48 + i] = (x, y)
    for i, x in enumerate([14.0, 7.0, 0.0, -7.0, -14.0]):          # 55..59 (left -> right along the bottom)
        front[55 + i] = (x, lower_vermilion_bottom(x))
    inner_x = [-hw + 2.5, -8.0, 0.0, 8.0, hw - 2.5, 8.0, 0.0, -8.0]  # 60..67 (closed mouth: upper = lower)
    for i, x in enumerate(inner_x):
        front[60 + i] = (x, lip_line(x))
    for k, (x, y) in front.items():
        p[k] = (x, y, ZREF)
    return p


# ------------------------------------------------------------------ shape bases (radial offsets, mm)
#: names of the shape bases; a head's radial offset is sum_j magnitude_j * basis_j(vertex)
SHAPE_BASES = ("nose_ridge", "nose_tip", "alae", "brow_ridge", "glabella", "socket", "cheek", "maxilla",
               "upper_lip", "lower_lip", "lip_line", "philtrum", "mentolabial", "chin", "temple", "nasion",
               "ear")

#: ear centre (yaw, pitch) of the subject's left ear, as seen from the ray origin C (rad)
EAR_PHI, EAR_PSI = 1.60, -0.06
EAR_R = 78.0            # typical distance of the ear skin from C (mm), converts angles to mm


def ear_coords(phi, psi):
    """Ear-local mm coordinates (u backward, v down) around the nearer ear, from direction angles."""
    u = (np.abs(phi) - EAR_PHI) * EAR_R
    v = (psi - EAR_PSI) * EAR_R
    return u, v


def ear_profile(phi, psi):
    """(radial offset (mm), mask) of a simple pinna: a flap rising backward, helix rim, concha bowl."""
    u, v = ear_coords(phi, psi)
    uc = u - 3.0
    vv = np.where(v > 0, v / 31.0, v / 27.0)
    half_w = 13.5 * (1 - 0.35 * _smoothstep(0.3, 1.0, vv))          # narrower lobe
    rho = np.sqrt((uc / half_w) ** 2 + vv ** 2)
    inside = 1 - _smoothstep(0.88, 1.04, rho)
    # the pinna stands out of the head toward its back edge (helix ~18 mm from the scalp, as real ears do)
    height = 4.0 + 12.0 * _smoothstep(-12.0, 10.0, uc)
    rim = 3.0 * _g(rho - 0.86, 0.07) * _smoothstep(-6.0, 4.0, uc)
    concha = -5.5 * _g(uc + 1.5, 4.5) * _g(v - 2.0, 7.0)
    prof = (height + rim + concha) * inside
    return prof, inside


def shape_bases(X: np.ndarray, Y: np.ndarray, front: np.ndarray, phi: np.ndarray, psi: np.ndarray
                ) -> np.ndarray:
    """(J, V) canonical shape bases (unit magnitude ~ canonical feature, mm) at feature-plane coords
    (X, Y) (front features, weighted by ``front``) and direction angles (phi, psi) (ears)."""
    ax = np.abs(X)
    b = {}
    # nose: dorsum rising from the nasion to the tip, then tucking back to the subnasale
    rise = 0.38 * _smoothstep(-16.0, -2.0, Y) + 0.62 * _smoothstep(-2.0, NOSE_TIP_Y + 1.0, Y) ** 1.25
    fall = 1.0 - _smoothstep(NOSE_TIP_Y + 1.0, SUBNASALE_Y + 1.5, Y)
    sig = 5.5 + 2.0 * _smoothstep(0.0, NOSE_TIP_Y, Y)
    b["nose_ridge"] = 24.0 * rise * fall * _g(X, sig)
    b["nose_tip"] = 3.5 * _g(X, 5.5) * _g(Y - (NOSE_TIP_Y - 1.0), 4.5)
    b["alae"] = 6.0 * _g(ax - 12.5, 3.8) * _g(Y - 42.0, 4.2)
    b["nasion"] = -1.0 * _g(X, 9.0) * _g(Y + 3.0, 5.0)
    lat = 1.0 - _smoothstep(42.0, 64.0, ax)
    b["brow_ridge"] = 5.0 * _g(Y + 20.0, 7.5) * lat
    b["glabella"] = 3.0 * _g(X, 10.0) * _g(Y + 12.0, 7.0)
    b["socket"] = -3.0 * _g(ax - 32.0, 12.0) * _g(Y - 4.0, 10.0)
    # cheek: the soft cheek under the eye plus the zygomatic body (cheekbone) further out, which carries the
    # face surface forward lateral to / below the outer eye corner (feature X ~ 60-100 = ~50-70 mm lateral)
    b["cheek"] = (6.5 * _g(ax - 40.0, 16.0) * _g(Y - 29.0, 14.0) + 2.5 * _g(ax - 30.0, 10.0) * _g(Y - 17.0, 6.0)
                  + 6.0 * _g(ax - 82.0, 20.0) * _g(Y - 24.0, 16.0))
    # temple: the lateral orbital rim (a vertical ridge just outside the outer eye corner, running from the
    # brow tail down to the cheekbone) and the shallow temporal fossa behind it
    b["temple"] = (7.5 * _g(ax - 68.0, 10.0) * _g(Y + 2.0, 15.0)
                   - 1.5 * _g(ax - 95.0, 10.0) * _g(Y + 22.0, 14.0))
    b["maxilla"] = 8.0 * _g(X, 22.0) * _g(Y - 59.5, 14.0)
    mouth = 1.0 - _smoothstep(MOUTH_HW - 7.0, MOUTH_HW + 2.0, ax)
    b["upper_lip"] = 2.6 * _g(Y - 0.5 * (upper_vermilion_top(X) + lip_line(X)) - 0.6, 2.8) * mouth
    b["lower_lip"] = 3.4 * _g(Y - 0.5 * (lip_line(X) + lower_vermilion_bottom(X)), 3.6) * mouth
    b["lip_line"] = -2.2 * _g(Y - lip_line(X), 0.9) * (1.0 - _smoothstep(MOUTH_HW - 3.0, MOUTH_HW + 4.0, ax))
    b["philtrum"] = (-0.9 * _g(X, 2.2) + 0.5 * _g(ax - 4.5, 1.6)) * _g(Y - 55.5, 4.5)
    b["mentolabial"] = -3.0 * _g(X, 17.0) * _g(Y - 88.5, 5.0)
    b["chin"] = 12.0 * _g(X, 16.0) * _g(Y - 111.0, 11.0)
    out = np.stack([b[k] for k in SHAPE_BASES if k != "ear"]) * front[None]
    return np.concatenate([out, ear_profile(phi, psi)[0][None]])


# ------------------------------------------------------------------ colour masks (0..1, canonical)
COLOUR_MASKS = ("lips", "lip_line", "nostril", "blush", "face_region", "ear")


def colour_masks(X: np.ndarray, Y: np.ndarray, front: np.ndarray, phi: np.ndarray, psi: np.ndarray
                 ) -> np.ndarray:
    ax = np.abs(X)
    m = {}
    mouth = 1.0 - _smoothstep(MOUTH_HW - 3.0, MOUTH_HW + 1.0, ax)
    up = _smoothstep(-0.5, 0.5, Y - upper_vermilion_top(X))
    lo = _smoothstep(-0.6, 0.6, lower_vermilion_bottom(X) - Y)
    m["lips"] = up * lo * mouth
    m["lip_line"] = _g(Y - lip_line(X), 0.7) * (1.0 - _smoothstep(MOUTH_HW - 2.0, MOUTH_HW + 2.0, ax))
    m["nostril"] = _g(ax - 6.8, 2.4) * _g(Y - 45.5, 1.6)
    m["blush"] = _g(ax - 40.0, 14.0) * _g(Y - 30.0, 12.0)
    m["face_region"] = ((ax < 62) & (Y > -40) & (Y < 126)).astype(np.float64)
    out = np.stack([m[k] for k in COLOUR_MASKS if k != "ear"]) * front[None]
    return np.concatenate([out, ear_profile(phi, psi)[1][None]])
