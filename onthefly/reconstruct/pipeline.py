"""One calibrated image + 68 landmarks → a textured face mesh in the source camera frame (stages in order).

1. checks (:func:`check_inputs`): intrinsics consistent with the image, landmarks finite and inside it;
2. landmarks undistorted (``cv2.undistortPoints``) when the camera has distortion;
3. head pose (:func:`onthefly.reconstruct.fit.solve_head_pose`): PnP against the template, or the annotated
   rotation;
4. geometry (:func:`onthefly.reconstruct.fit.fit_geometry`): the template warped onto the landmarks;
5. texture (:mod:`onthefly.reconstruct.texture`): visibility from the source view, source/mirror/unseen UVs;
6. quality: landmark reprojection error and visible fraction (:class:`Reconstruction.quality`).

Every failure raises :class:`ReconstructionError` with the reason (the image source adds the file and line).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import cast

import cv2
import numpy as np
import torch

from ..normalization import FaceCentreRule
from ..normalization import face_centre as centre_of
from .fit import HeadPose, fit_geometry, project, solve_head_pose
from .model import fit_shape_and_pose, shape_model
from .template import face_template
from .texture import build_texture, vertex_visibility

__all__ = ["ReconstructionError", "Reconstruction", "ReconstructOptions", "reconstruct", "check_inputs",
           "distorted_pixels", "estimate_head_pose", "fit_pose_and_shape", "landmark_weights", "DLIB_LANDMARK_NOISE",
           "DETECTED_WEIGHTS"]

#: Per-landmark noise of dlib's 68 points (iBUG order; fraction of the outer-eye-corner distance): robust RMS distance
#: to the exact label after the 2-D similarity that best aligns the inner 51 points, mirror pairs averaged. Measured
#: by ``benchmarks/headpose_fit.py --noise`` on calibration renders that the benchmarks do not use (24 procedural
#: identities of seed 11, 160 poses of seed 1, xgaze224 and the wide camera, default and plain appearance; see its
#: docstring). The jaw (0-16) is 3-4x noisier than the eyes, nose and mouth, the brows 2x.
DLIB_LANDMARK_NOISE = (
    0.102, 0.086, 0.081, 0.090, 0.121, 0.122, 0.090, 0.077, 0.104, 0.077, 0.090, 0.122, 0.121, 0.090, 0.081, 0.086,
    0.102,
    0.043, 0.055, 0.051, 0.064, 0.055, 0.055, 0.064, 0.051, 0.055, 0.043,
    0.023, 0.030, 0.033, 0.058, 0.027, 0.023, 0.036, 0.023, 0.027,
    0.043, 0.028, 0.035, 0.034, 0.025, 0.025, 0.034, 0.035, 0.028, 0.043, 0.025, 0.025,
    0.037, 0.022, 0.018, 0.025, 0.018, 0.022, 0.037, 0.032, 0.033, 0.033, 0.033, 0.032, 0.056, 0.028, 0.018, 0.028,
    0.056, 0.024, 0.018, 0.024)
#: the weighting of :meth:`ReconstructOptions.detected` (detected landmarks)
DETECTED_WEIGHTS = {"landmark_noise": DLIB_LANDMARK_NOISE, "noise_ref": 0.04, "jaw_weight": 1.0, "jaw_tangent": 0.3}


class ReconstructionError(ValueError):
    """The frame cannot be reconstructed (the message says why)."""


@dataclass
class ReconstructOptions:
    """Knobs of :func:`reconstruct` (defaults are the measured ones of ``docs/reconstruction.md``).

    ``smoothing``: TPS smoothing (px²; 0 = landmarks interpolated exactly). ``min_cos``/``tol_mm``: visibility
    (see :func:`~onthefly.reconstruct.texture.vertex_visibility`). ``max_pose_error``: largest rigid PnP RMS error
    allowed, as a fraction of the outer-eye-corner distance in px (larger: the points are not a face seen by this
    camera). ``shape_model``: fit the pose together with the procedural shape model
    (:mod:`onthefly.reconstruct.model`) before the warp, with landmark noise ``sigma`` (fraction of the eye-corner
    distance) and per-landmark weights (:func:`landmark_weights`): ``noise_ref / landmark_noise[i]`` (clipped to
    0.1-2; ``landmark_noise`` (68,) the detector's per-landmark noise, e.g. :data:`DLIB_LANDMARK_NOISE`; None, the
    default: all 1), times ``jaw_weight`` on the jaw contour (0-16) and ``brow_weight`` on the brows, and no weight
    on points within ``border_px`` of the image border; with ``contour`` the jaw points are matched to the mesh's silhouette
    (:mod:`onthefly.reconstruct.contour`), their residual along the outline weighted ``jaw_tangent`` (1 =
    point-to-point, the default; 0 = point-to-curve); else the mean template and its PnP pose. The defaults are for
    exact or annotated landmarks; :meth:`detected` gives the weighting for a detector's.
    ``mirror_fill``: fill unseen triangles from the mirrored side (else they take the fill colour).
    ``mark_unseen``: unseen triangles magenta instead of the mean face colour. ``max_centre_offset`` (fraction of
    the eye-corner distance) and ``scale_range``: how far an annotated face centre may be from the fitted one's
    ray, and the face sizes (relative to the template) it may imply.
    """

    smoothing: float = 0.0
    min_cos: float = 0.2
    tol_mm: float = 1.5
    max_pose_error: float = 0.15
    mirror_fill: bool = True
    mark_unseen: bool = False
    visibility_max_side: int = 384
    max_centre_offset: float = 0.5
    shape_model: bool = True
    sigma: float = 0.02
    landmark_noise: tuple[float, ...] | None = None
    noise_ref: float = 0.04
    jaw_weight: float = 0.5
    brow_weight: float = 1.0
    border_px: float = 2.0
    contour: bool = True
    jaw_tangent: float = 1.0
    scale_range: tuple[float, float] = (0.7, 1.4)

    @classmethod
    def detected(cls, **overrides) -> "ReconstructOptions":
        """The options for landmarks a detector found (``--landmarks dlib|fan2d|fan3d``, ``benchmarks/realism.py``):
        per-landmark weights from :data:`DLIB_LANDMARK_NOISE` (``noise_ref`` 0.04), full weight on the jaw
        (the table already gives it 0.3-0.6), its residual along the outline weighted ``jaw_tangent`` 0.3. The plain
        defaults (uniform weights, jaw 0.5, point-to-point) are for exact or annotated landmarks. Chosen on the
        calibration renders of ``benchmarks/headpose_fit.py`` (not the benchmark's)."""
        return cls(**{**DETECTED_WEIGHTS, **overrides})


@dataclass
class Reconstruction:
    """A reconstructed frame: mesh (camera frame, mm) with UV texture, labels from the fit, quality numbers."""

    verts: np.ndarray            # (V,3) float64
    faces: np.ndarray            # (F,3) int64
    uv: np.ndarray               # (T,2) float32
    faces_uv: np.ndarray         # (F,3) int64
    texture: np.ndarray          # (Ht,Wt,3) uint8
    landmarks: np.ndarray        # (68,3) fitted landmark vertices, camera frame
    head_rotation: np.ndarray    # (3,3)
    pose: HeadPose
    visible: np.ndarray          # (V,) bool
    face_mode: np.ndarray        # (F,) int8: 0 source, 1 mirror, 2 unseen
    face_region: np.ndarray      # (V,) bool
    quality: dict = field(default_factory=dict)


def check_inputs(image_size: tuple[int, int], K: np.ndarray, landmarks: np.ndarray,
                 dist: np.ndarray | None = None) -> None:
    """Raise :class:`ReconstructionError` for intrinsics inconsistent with a (w, h) image or bad landmarks."""
    w, h = image_size
    K = np.asarray(K, np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise ReconstructionError(f"K must be a finite 3x3 matrix, got shape {K.shape}")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or np.abs(K[2] - [0, 0, 1]).max() > 1e-9:
        raise ReconstructionError("inconsistent intrinsics: K needs positive focal lengths and last row [0, 0, 1]")
    if not (0 <= K[0, 2] <= w - 1 and 0 <= K[1, 2] <= h - 1):
        raise ReconstructionError(f"inconsistent intrinsics: principal point ({K[0, 2]:.1f}, {K[1, 2]:.1f}) lies "
                                  f"outside the {w}x{h} image (K for another resolution?)")
    if not 0.2 < K[0, 0] / K[1, 1] < 5:
        raise ReconstructionError(f"inconsistent intrinsics: fx/fy = {K[0, 0] / K[1, 1]:.3f}")
    if dist is not None and not np.isfinite(dist).all():
        raise ReconstructionError("distortion coefficients contain NaN or inf")
    lm = np.asarray(landmarks, np.float64)
    if lm.ndim != 2 or lm.shape[0] != 68 or lm.shape[1] not in (2, 3):
        raise ReconstructionError(f"expected 68 landmarks with 2 or 3 values, got shape {lm.shape}")
    if not np.isfinite(lm).all():
        raise ReconstructionError("landmarks contain NaN or inf")
    out = (lm[:, 0] < -0.5) | (lm[:, 0] > w - 0.5) | (lm[:, 1] < -0.5) | (lm[:, 1] > h - 0.5)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise ReconstructionError(f"{int(out.sum())} landmark(s) outside the {w}x{h} image (first: point {i} at "
                                  f"({lm[i, 0]:.1f}, {lm[i, 1]:.1f}))")
    if np.linalg.norm(lm[45, :2] - lm[36, :2]) < 4:
        raise ReconstructionError("degenerate landmarks: the outer eye corners (36, 45) are less than 4 px apart")


def distorted_pixels(X: np.ndarray, K: np.ndarray, dist: np.ndarray | None) -> np.ndarray:
    """(N,2) pixels of camera-frame points with the lens distortion (as in the source image)."""
    if dist is None or not np.any(dist):
        return project(X, K)

    p, _ = cv2.projectPoints(np.ascontiguousarray(X, np.float64), np.zeros(3), np.zeros(3), K,
                             np.asarray(dist, np.float64))
    return p.reshape(-1, 2)


def scale_to_face_centre(verts: np.ndarray, landmark_ids: np.ndarray, K: np.ndarray, face_centre: np.ndarray,
                         rule: str) -> tuple[np.ndarray, float, float]:
    """Scale the mesh about the camera centre (its image is unchanged) so that its face centre (``rule`` of its
    landmarks) lands nearest the given one. Returns (scaled verts, scale, pixel offset of the given centre from
    the fitted one's ray)."""
    fc = centre_of(torch.from_numpy(verts[landmark_ids]), cast(FaceCentreRule, rule)).numpy()  # checked there
    c = np.asarray(face_centre, np.float64)
    s = float(fc @ c / (fc @ fc))
    off = float(np.linalg.norm(project(fc[None], K) - project(c[None], K)))
    return verts * s, s, off


def landmark_weights(landmarks_2d: np.ndarray, options: "ReconstructOptions",
                     image_size: tuple[int, int] | None = None) -> np.ndarray:
    """(68,) per-landmark weights of the pose + shape fit: ``noise_ref / landmark_noise`` (clipped to 0.1-2; 1 without
    a noise table), times ``jaw_weight`` on the jaw contour (0-16) and ``brow_weight`` on the brows (17-26), and 0 for
    points within ``border_px`` of the image border (a detector puts the points of a face cut by the border wherever
    it can, not on the face)."""
    lw = np.ones(68)
    if options.landmark_noise is not None:
        noise = np.asarray(options.landmark_noise, np.float64)
        if noise.shape != (68,) or not (noise > 0).all():
            raise ValueError(f"landmark_noise must hold 68 positive values, got shape {noise.shape}")
        lw = np.clip(options.noise_ref / noise, 0.1, 2.0)
    lw[:17] *= options.jaw_weight
    lw[17:27] *= options.brow_weight
    if image_size is not None:
        w, h = image_size
        p, b = np.asarray(landmarks_2d, np.float64)[:, :2], options.border_px
        lw[(p[:, 0] < b) | (p[:, 1] < b) | (p[:, 0] > w - 1 - b) | (p[:, 1] > h - 1 - b)] = 0.0
    return lw


def fit_pose_and_shape(lm_u: np.ndarray, K: np.ndarray, pose: HeadPose, options: ReconstructOptions | None = None,
                       *, head_rotation: np.ndarray | None = None, image_size: tuple[int, int] | None = None
                       ) -> tuple[HeadPose, np.ndarray, tuple]:
    """Stage 4 after PnP: the joint pose + shape-model fit (``options.shape_model``) of undistorted landmarks
    ``lm_u`` (68,2), starting from ``pose``, jaw points as silhouette points (``options.contour``). Returns the
    pose, the fitted template vertices (V,3, head frame) and the landmark correspondence ``(a, b, w)`` (68,) each
    (landmark i is the vertex blend ``(1 - w) X[a] + w X[b]``); without the shape model, ``pose``, the template
    and its fixed landmark vertices."""
    opt = options or ReconstructOptions()
    T = face_template()
    ids = T.landmark_ids.copy()
    if not opt.shape_model:
        return pose, T.verts, (ids, ids.copy(), np.zeros(68))
    iod = float(np.linalg.norm(lm_u[45] - lm_u[36]))
    model = shape_model()
    pose, coeffs, corr = fit_shape_and_pose(model, T.landmark_ids, lm_u, K, pose, sigma_px=opt.sigma * iod,
                                            weights=landmark_weights(lm_u, opt, image_size),
                                            rotation=head_rotation, contour=opt.contour,
                                            jaw_tangent=opt.jaw_tangent)
    return pose, model.shape(coeffs), corr


def estimate_head_pose(landmarks_2d: np.ndarray, K: np.ndarray, options: ReconstructOptions | None = None,
                       image_size: tuple[int, int] | None = None) -> HeadPose:
    """The head pose :func:`reconstruct` fits to 68 undistorted landmarks (stages 3-4: PnP, then the joint
    pose + shape fit), without the warp and the texture. ``R`` is head → camera (head frame of
    ``docs/conventions.md``); ``image_size`` (w, h) drops points at the border (:func:`landmark_weights`).
    Raises ``ValueError`` when no pose puts the face in front of the camera."""
    lm = np.asarray(landmarks_2d, np.float64)[:, :2]
    K = np.asarray(K, np.float64)
    opt = options or ReconstructOptions()
    use = np.arange(17, 68)
    if image_size is not None:
        use = use[landmark_weights(lm, opt, image_size)[17:] > 0]
    pose = solve_head_pose(lm, K, face_template().landmarks, use=use)
    return fit_pose_and_shape(lm, K, pose, opt, image_size=image_size)[0]


def reconstruct(image: np.ndarray, K: np.ndarray, landmarks: np.ndarray, *, dist: np.ndarray | None = None,
                head_rotation: np.ndarray | None = None, face_centre: np.ndarray | None = None,
                face_centre_rule: str = "eye_nose", options: ReconstructOptions | None = None) -> Reconstruction:
    """Reconstruct one frame. ``image`` (H,W,3) uint8 RGB as taken (distorted); ``K`` (3,3); ``landmarks``
    (68,2) pixels in the image, or (68,3) with a relative depth (see :func:`~onthefly.reconstruct.fit.fit_geometry`);
    ``dist`` OpenCV distortion coefficients; ``head_rotation`` (3,3) head → camera from annotations, else PnP.

    ``face_centre`` (3,) the dataset's metric face centre (camera frame, mm), when annotated: a single image
    cannot tell a small near face from a large far one, so the mesh is scaled about the camera centre (which
    leaves its image unchanged) until its own face centre (``face_centre_rule``) matches it. Without it the
    mesh keeps the template's size."""
    opt = options or ReconstructOptions()
    t0, c0 = time.perf_counter(), time.process_time()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ReconstructionError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    K = np.asarray(K, np.float64)
    dist = None if dist is None or not np.any(dist) else np.asarray(dist, np.float64).ravel()
    check_inputs((w, h), K, landmarks, dist)
    lm = np.asarray(landmarks, np.float64)
    lm2 = lm[:, :2]
    lm_u = lm2 if dist is None else cv2.undistortPoints(lm2.reshape(-1, 1, 2), K, dist, P=K).reshape(-1, 2)
    T = face_template()
    try:
        pose = solve_head_pose(lm_u, K, T.landmarks, rotation=head_rotation)
    except ValueError as exc:
        raise ReconstructionError(f"head pose: {exc}") from None
    iod = float(np.linalg.norm(lm_u[45] - lm_u[36]))
    if pose.rms_px > opt.max_pose_error * iod:
        raise ReconstructionError(f"landmarks do not fit a face seen by this camera: rigid PnP error "
                                  f"{pose.rms_px:.1f} px > {opt.max_pose_error:g} x eye-corner distance ({iod:.1f} px)")
    pose, base, corr = fit_pose_and_shape(lm_u, K, pose, opt, head_rotation=head_rotation, image_size=(w, h))
    verts = fit_geometry(base, corr, pose, K, lm_u, depth=lm[:, 2] if lm.shape[1] == 3 else None,
                         smoothing=opt.smoothing)
    if not np.isfinite(verts).all() or (verts[:, 2] <= 0).any():
        raise ReconstructionError("the fitted mesh has vertices behind the camera or not finite")
    scale, centre_off = 1.0, 0.0
    if face_centre is not None:
        verts, scale, centre_off = scale_to_face_centre(verts, T.landmark_ids, K, face_centre, face_centre_rule)
        if centre_off > opt.max_centre_offset * iod:
            raise ReconstructionError(f"the annotated face centre projects {centre_off:.1f} px from the face's "
                                      f"({face_centre_rule} rule of the landmarks; > {opt.max_centre_offset:g} x "
                                      f"eye-corner distance): inconsistent annotations or intrinsics")
        if not opt.scale_range[0] <= scale <= opt.scale_range[1]:
            raise ReconstructionError(f"the annotated face centre implies a face {scale:.2f} x the template's size "
                                      f"(allowed {opt.scale_range}): inconsistent annotations or intrinsics")
    vis = vertex_visibility(verts, T.faces, K, (w, h), min_cos=opt.min_cos, tol_mm=opt.tol_mm,
                            max_side=opt.visibility_max_side)
    mirror = T.mirror if opt.mirror_fill else np.arange(T.n_verts)
    pix = distorted_pixels(verts, K, dist)
    tex = build_texture(image, pix, T.faces, vis, mirror, T.face_region, mark_unseen=opt.mark_unseen)
    lm3 = verts[T.landmark_ids]
    a, b, wt = corr  # the model points the landmarks were fitted to (the silhouette points on the jaw)
    err = np.linalg.norm(pix[a] * (1 - wt[:, None]) + pix[b] * wt[:, None] - lm2, axis=1)
    ff = T.face_region[T.faces].all(1)
    quality = {
        "landmark_error_px": float(err.mean()),
        "landmark_error_max_px": float(err.max()),
        "pose_error_px": float(pose.rms_px),
        "scale": scale,
        "face_centre_offset_px": centre_off,
        "visible_fraction": float(vis[T.face_region].mean()),
        "mirror_fraction": float((tex.face_mode[ff] == 1).mean()),
        "unseen_fraction": float((tex.face_mode[ff] == 2).mean()),
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
    }
    return Reconstruction(verts=verts, faces=T.faces, uv=tex.uv, faces_uv=tex.faces_uv, texture=tex.texture,
                          landmarks=lm3, head_rotation=pose.R, pose=pose, visible=vis, face_mode=tex.face_mode,
                          face_region=T.face_region.copy(), quality=quality)
