"""Gaze data normalization (Zhang, Sugano, Bulling, ETRA 2018), rotation-only ("modified") variant.

Given a camera's intrinsics ``K``, the head rotation ``hR`` (head → camera) and the face centre ``c``
(camera frame, mm), normalization rotates the camera so that it looks at ``c`` with its x axis in the plane of
the head's x axis (no roll), and virtually moves it to a fixed distance ``d_n``:

    forward = c / |c|;  down = unit(forward × hR[:, 0]);  right = unit(down × forward)
    R = [right; down; forward]                      (rows; camera → normalized rotation, "face_mat_norm")
    S = diag(1, 1, d_n / |c|);  K_n = [[f_n, 0, w/2], [0, f_n, h/2], [0, 0, 1]]
    W = K_n · S · R · K⁻¹                           (image warp)

Labels: gaze ``g_n = unit(R · (target - c))`` with label ``gaze_to_pitchyaw(g_n)``; head pose
``H_n = R · hR`` with label ``rotation_to_pitchyaw(H_n)``; 2D landmarks are warped by ``W``.

Three entry points share one implementation of the maths:

* :func:`normalize_geometry` — batched torch, no pixels (R, W, labels, warped landmarks);
* :func:`normalize` — one real image (numpy, OpenCV warp, optional undistortion), the reference path;
* :func:`normalize_batch` — images already on the GPU (torch ``grid_sample``), batched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_rotation, checked, enabled
from .geometry import axis_angle_to_rotation, gaze_to_pitchyaw, pitchyaw_to_gaze, rotation_to_pitchyaw

__all__ = [
    "NormalizedCamera",
    "PRESETS",
    "get_camera",
    "FaceCentreRule",
    "face_centre",
    "normalization_rotation",
    "NormalizedGeometry",
    "normalize_geometry",
    "NormalizedFace",
    "normalize",
    "normalize_batch",
    "warp_images",
    "warp_points",
    "denormalize_gaze",
]

# iBUG 68-point indices (0-based). Subject's right eye = 36..41 (image left in a frontal photo).
EYE_CORNERS_68 = (36, 39, 42, 45)
NOSE_BASE_68 = (31, 35)
MOUTH_CORNERS_68 = (48, 54)


@dataclass(frozen=True)
class NormalizedCamera:
    """The virtual camera of normalized space: focal length (px), distance to the face centre (mm), image size.

    The principal point is ``(width / 2, height / 2)`` in OpenCV pixel coordinates (pixel centres at integers), as
    in the ETH-XGaze reference code, so a rendered patch lines up with a warped real image pixel for pixel.
    """

    focal: float
    distance: float
    width: int
    height: int
    name: str = "custom"

    def __post_init__(self):
        if not (self.focal > 0 and self.distance > 0 and self.width > 0 and self.height > 0):
            raise ValueError(f"NormalizedCamera: focal, distance, width and height must be positive, got {self}")

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    def rescaled(self, size: int) -> "NormalizedCamera":
        """The same camera at ``size`` px wide: the same field of view and distance (``focal · size / width``; the
        height keeps the aspect ratio), named ``NAME@SIZE``; ``self`` when it already is ``size`` px wide."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"NormalizedCamera.rescaled: expected a positive int size, got {size!r}")
        if size == self.width:
            return self
        s = size / self.width
        return NormalizedCamera(self.focal * s, self.distance, size, round(self.height * s), f"{self.name}@{size}")

    def K(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> torch.Tensor:
        """Intrinsics (3, 3)."""
        return torch.tensor([[self.focal, 0.0, self.width / 2], [0.0, self.focal, self.height / 2],
                             [0.0, 0.0, 1.0]], dtype=dtype, device=device)


PRESETS: dict[str, NormalizedCamera] = {
    "xgaze224": NormalizedCamera(960.0, 600.0, 224, 224, "xgaze224"),
    "xgaze448": NormalizedCamera(960.0, 300.0, 448, 448, "xgaze448"),
}


def get_camera(camera: str | NormalizedCamera) -> NormalizedCamera:
    """A preset by name (``xgaze224``, ``xgaze448``) or a :class:`NormalizedCamera` passed through."""
    if isinstance(camera, NormalizedCamera):
        return camera
    try:
        return PRESETS[camera]
    except KeyError:
        raise ValueError(f"camera: unknown preset {camera!r}; choose one of {sorted(PRESETS)} "
                         "or pass NormalizedCamera(focal, distance, width, height)") from None


FaceCentreRule = Literal["eye_nose", "eye_mouth"]


def _index_set(n_points: int, rule: str) -> tuple[tuple[int, ...], ...]:
    """Groups of landmark indices whose means are averaged, for a landmark count and a rule."""
    if rule not in ("eye_nose", "eye_mouth"):
        raise ValueError(f"rule: expected 'eye_nose' (ETH-XGaze) or 'eye_mouth' (MPIIFaceGaze), got {rule!r}")
    eyes: tuple[int, ...]
    nose: tuple[int, ...]
    mouth: tuple[int, ...]
    if n_points == 68:
        eyes, nose, mouth = EYE_CORNERS_68, NOSE_BASE_68, MOUTH_CORNERS_68
    elif n_points == 50:  # ETH-XGaze face_model.txt: 68-index i (17 <= i <= 59) is 50-index i - 16
        eyes, nose, mouth = tuple(i - 16 for i in EYE_CORNERS_68), tuple(i - 16 for i in NOSE_BASE_68), \
            tuple(i - 16 for i in MOUTH_CORNERS_68)
    elif n_points == 6 and rule == "eye_mouth":  # MPIIGaze 6-point model: 4 eye corners, 2 mouth corners
        return ((0, 1, 2, 3, 4, 5),)
    else:
        raise ValueError(f"landmarks: expected 68 (iBUG) or 50 (ETH-XGaze face model) points"
                         f"{' or the 6-point MPII model' if rule == 'eye_mouth' else ''}, got {n_points}")
    if rule == "eye_nose":
        return (eyes, nose)  # midpoint of the eye-corner mean and the nose-base mean
    return (eyes + mouth,)  # plain mean of 4 eye corners and 2 mouth corners


def face_centre(landmarks, rule: FaceCentreRule = "eye_nose") -> torch.Tensor:
    """Face centre (gaze origin) (..., 3) from 3D landmarks (..., N, 3) in camera coordinates.

    * ``eye_nose`` (ETH-XGaze, XGaze3D): ``½ (mean of the 4 eye corners + mean of the 2 nose-base corners)``.
    * ``eye_mouth`` (MPIIFaceGaze): plain mean of the 4 eye corners and the 2 mouth corners.

    ``N`` is 68 (iBUG order), 50 (ETH-XGaze ``face_model.txt`` order) or, for ``eye_mouth``, 6 (MPII model).
    """
    lm = checked("landmarks", landmarks, None)
    if lm.dim() < 2 or lm.shape[-1] != 3:
        raise ValueError(f"landmarks: expected shape (..., N, 3), got {tuple(lm.shape)}")
    groups = _index_set(lm.shape[-2], rule)
    means = [lm[..., list(g), :].mean(dim=-2) for g in groups]
    return torch.stack(means, dim=0).mean(dim=0)


def _head_rotation(name: str, head_rotation) -> torch.Tensor:
    """Rotation matrices (..., 3, 3); a single Rodrigues vector of shape (3,) or (3, 1) (``cv2.solvePnP``) is
    accepted too. Batches of Rodrigues vectors are ambiguous with matrices: convert them with
    :func:`onthefly.geometry.axis_angle_to_rotation` first."""
    hr = checked(name, head_rotation, None)
    if tuple(hr.shape) in ((3,), (3, 1)):
        return axis_angle_to_rotation(hr.reshape(3))
    if hr.dim() >= 2 and tuple(hr.shape[-2:]) == (3, 3):
        check_rotation(name, hr)
        return hr
    raise ValueError(f"{name}: expected rotation matrices (..., 3, 3) or one Rodrigues vector (3,), "
                     f"got {tuple(hr.shape)}")


def _centre_and_rotation(face_centre, head_rotation) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated, broadcast (c (..., 3), hR (..., 3, 3)) in a common dtype."""
    c = checked("face_centre", face_centre, (3,))
    if enabled() and bool((c[..., 2] <= 0).any()):
        raise ValueError("face_centre: z must be positive (the face must be in front of the camera)")
    hR = _head_rotation("head_rotation", head_rotation)
    batch = torch.broadcast_shapes(c.shape[:-1], hR.shape[:-2])
    dtype = torch.promote_types(c.dtype, hR.dtype)
    return c.to(dtype).expand(*batch, 3), hR.to(dtype).expand(*batch, 3, 3)


def _normalization_rotation(c: torch.Tensor, hR: torch.Tensor) -> torch.Tensor:
    forward = c / c.norm(dim=-1, keepdim=True)
    down = torch.linalg.cross(forward, hR[..., :, 0], dim=-1)
    down_norm = down.norm(dim=-1, keepdim=True)
    if bool((down_norm < 1e-6).any()):
        raise ValueError("head_rotation: the head's x axis is parallel to the viewing ray to the face centre; "
                         "normalization is undefined for this pose")
    down = down / down_norm
    right = torch.linalg.cross(down, forward, dim=-1)
    right = right / right.norm(dim=-1, keepdim=True)
    return torch.stack([right, down, forward], dim=-2)


def normalization_rotation(face_centre, head_rotation) -> torch.Tensor:
    """The rotation ``R`` (..., 3, 3) from the camera to the normalized camera ("face_mat_norm")."""
    return _normalization_rotation(*_centre_and_rotation(face_centre, head_rotation))


@dataclass
class NormalizedGeometry:
    """Everything normalization computes without touching pixels (batched tensors).

    ``R`` is ``face_mat_norm``; ``W`` the image warp; ``head_pose``/``gaze`` are (pitch, yaw) labels in radians;
    ``gaze_vector`` is the unit gaze in normalized space; ``landmarks`` are 2D landmarks warped by ``W`` (or None).
    """

    R: torch.Tensor
    W: torch.Tensor
    scale: torch.Tensor
    head_rotation: torch.Tensor
    head_pose: torch.Tensor
    gaze_vector: torch.Tensor | None = None
    gaze: torch.Tensor | None = None
    landmarks: torch.Tensor | None = None


def _check_K(K) -> torch.Tensor:
    K = checked("K", K, (3, 3))
    if not enabled():
        return K
    if bool(((K[..., 0, 0] <= 0) | (K[..., 1, 1] <= 0)).any()):
        raise ValueError("K: focal lengths K[0,0] and K[1,1] must be positive")
    if bool(((K[..., 2, :] - K.new_tensor([0.0, 0.0, 1.0])).abs() > 1e-9).any()):
        raise ValueError("K: last row must be [0, 0, 1]")
    return K


def normalize_geometry(K, head_rotation, face_centre, camera: str | NormalizedCamera = "xgaze224", *,
                       gaze_target=None, landmarks_2d=None) -> NormalizedGeometry:
    """Batched normalization of the geometry: rotation, warp and labels, no image.

    Args:
        K: source intrinsics (..., 3, 3) (of the undistorted image).
        head_rotation: head → camera rotation (..., 3, 3), or Rodrigues vectors (..., 3).
        face_centre: gaze origin (..., 3) in the camera frame, mm (see :func:`face_centre`).
        camera: normalized-camera preset name or :class:`NormalizedCamera`.
        gaze_target: optional 3D gaze target (..., 3), camera frame, mm.
        landmarks_2d: optional source-image landmarks (..., N, 2), pixels.
    """
    cam = get_camera(camera)
    K = _check_K(K)
    c, hR = _centre_and_rotation(face_centre, head_rotation)
    R = _normalization_rotation(c, hR)
    dtype = R.dtype
    K = K.to(dtype)
    dist = c.norm(dim=-1)
    S = torch.diag_embed(torch.stack([torch.ones_like(dist), torch.ones_like(dist), cam.distance / dist], dim=-1))
    Kn = cam.K(dtype=dtype, device=R.device)
    W = Kn @ S @ R @ torch.linalg.inv(K)
    H = R @ hR
    out = NormalizedGeometry(R=R, W=W, scale=cam.distance / dist, head_rotation=H,
                             head_pose=rotation_to_pitchyaw(H))
    if gaze_target is not None:
        t = checked("gaze_target", gaze_target, (3,)).to(dtype)
        d = t - c
        if bool((d.norm(dim=-1) < 1e-9).any()):
            raise ValueError("gaze_target: coincides with the face centre, so the gaze has no direction")
        g = (R @ (d / d.norm(dim=-1, keepdim=True))[..., None])[..., 0]
        out.gaze_vector = g
        out.gaze = gaze_to_pitchyaw(g)
    if landmarks_2d is not None:
        out.landmarks = warp_points(landmarks_2d, W)
    return out


def warp_points(points, W) -> torch.Tensor:
    """Apply homographies ``W`` (..., 3, 3) to 2D points (..., N, 2), as ``cv2.perspectiveTransform``."""
    p = checked("landmarks_2d", points, None)
    if p.dim() < 2 or p.shape[-1] != 2:
        raise ValueError(f"landmarks_2d: expected shape (..., N, 2), got {tuple(p.shape)}")
    W = torch.as_tensor(W)
    p = p.to(W.dtype)
    ph = torch.cat([p, torch.ones_like(p[..., :1])], dim=-1)
    q = ph @ W.transpose(-1, -2)
    return q[..., :2] / q[..., 2:]


@dataclass
class NormalizedFace:
    """Result of :func:`normalize` for one image (numpy, float64 labels in radians)."""

    image: np.ndarray
    R: np.ndarray
    W: np.ndarray
    head_pose: np.ndarray
    head_rotation: np.ndarray
    gaze: np.ndarray | None
    gaze_vector: np.ndarray | None
    landmarks: np.ndarray | None


def normalize(image: np.ndarray, K, head_rotation, face_centre, camera: str | NormalizedCamera = "xgaze224", *,
              dist_coeffs=None, gaze_target=None, landmarks_2d=None,
              interpolation: int | None = None) -> NormalizedFace:
    """Normalize one real image with OpenCV (the reference path; use :func:`normalize_batch` on the GPU).

    With ``dist_coeffs`` the image is undistorted first (``cv2.undistort``) and the landmarks with
    ``cv2.undistortPoints(..., P=K)``, as MPIIFaceGaze preprocessing does; ETH-XGaze skips undistortion.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"image: expected an (H, W) or (H, W, C) numpy array, got "
                         f"{getattr(image, 'shape', type(image).__name__)}")
    cam = get_camera(camera)
    K_np = _check_K(K).double().numpy()
    lm = None
    if landmarks_2d is not None:
        lm = checked("landmarks_2d", landmarks_2d, None).double()
        if lm.dim() != 2 or lm.shape[-1] != 2:
            raise ValueError(f"landmarks_2d: expected shape (N, 2), got {tuple(lm.shape)}")
    if dist_coeffs is not None:
        dist_np = np.asarray(dist_coeffs, dtype=np.float64).reshape(-1)
        if not np.isfinite(dist_np).all():
            raise ValueError("dist_coeffs: contains NaN or inf")
        image = cv2.undistort(image, K_np, dist_np)
        if lm is not None:
            und = cv2.undistortPoints(lm.numpy().reshape(-1, 1, 2), K_np, dist_np, P=K_np)
            lm = torch.from_numpy(und.reshape(-1, 2))
    geo = normalize_geometry(torch.from_numpy(K_np), checked("head_rotation", head_rotation, None).double(),
                             checked("face_centre", face_centre, (3,)).double(), cam,
                             gaze_target=gaze_target, landmarks_2d=lm)
    W = geo.W.numpy()
    flags = cv2.INTER_LINEAR if interpolation is None else interpolation
    out = cv2.warpPerspective(image, W, (cam.width, cam.height), flags=flags)
    as_np = (lambda t: None if t is None else t.numpy())
    return NormalizedFace(image=out, R=geo.R.numpy(), W=W, head_pose=geo.head_pose.numpy(),
                          head_rotation=geo.head_rotation.numpy(), gaze=as_np(geo.gaze),
                          gaze_vector=as_np(geo.gaze_vector), landmarks=as_np(geo.landmarks))


def warp_images(images: torch.Tensor, W: torch.Tensor, size: tuple[int, int],
                mode: str = "bilinear") -> torch.Tensor:
    """Warp images (B, C, H, W) by homographies ``W`` (B, 3, 3) to ``size`` = (width, height), batched.

    Pixel centres follow OpenCV (pixel (i, j) at x=j, y=i) and pixels mapping outside the source are 0, so the
    result matches ``cv2.warpPerspective`` up to OpenCV's fixed-point interpolation (≤ 1/32 of a grey level step).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images: expected a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images))}")
    if W.shape != (images.shape[0], 3, 3):
        raise ValueError(f"W: expected shape ({images.shape[0]}, 3, 3), got {tuple(W.shape)}")
    out_w, out_h = size
    src_h, src_w = images.shape[-2:]
    dtype = images.dtype if images.is_floating_point() else torch.float32
    Winv = torch.linalg.inv(W.to(torch.float64)).to(dtype)
    ys, xs = torch.meshgrid(torch.arange(out_h, device=images.device, dtype=dtype),
                            torch.arange(out_w, device=images.device, dtype=dtype), indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(1, -1, 3)
    src = pts @ Winv.transpose(-1, -2)
    src = src[..., :2] / src[..., 2:]
    grid = torch.stack([2 * src[..., 0] / (src_w - 1) - 1, 2 * src[..., 1] / (src_h - 1) - 1], dim=-1)
    grid = grid.reshape(images.shape[0], out_h, out_w, 2)
    out = F.grid_sample(images.to(dtype), grid, mode=mode, padding_mode="zeros", align_corners=True)
    if not images.is_floating_point():
        out = out.round().clamp(0, 255).to(images.dtype)
    return out


def normalize_batch(images: torch.Tensor, K, head_rotation, face_centre,
                    camera: str | NormalizedCamera = "xgaze224", *, gaze_target=None,
                    landmarks_2d=None) -> tuple[torch.Tensor, NormalizedGeometry]:
    """Normalize a batch of images (B, C, H, W) already on the device: returns (patches, geometry).

    Undistort beforehand if your camera has distortion (:func:`normalize` does it with OpenCV).
    """
    cam = get_camera(camera)
    geo = normalize_geometry(K, head_rotation, face_centre, cam, gaze_target=gaze_target,
                             landmarks_2d=landmarks_2d)
    W = geo.W.to(images.device).reshape(-1, 3, 3)
    return warp_images(images, W, cam.size), geo


def denormalize_gaze(gaze, R) -> torch.Tensor:
    """Gaze direction in the original camera frame, ``Rᵀ · g_n``, from normalized labels (..., 2) or vectors (..., 3).

    Use this on a model's prediction to get the 3D gaze in the camera that took the photo.
    """
    g = checked("gaze", gaze, None)
    R = checked("R", R, (3, 3))
    check_rotation("R", R)
    if g.dim() == 0 or g.shape[-1] not in (2, 3):
        raise ValueError(f"gaze: expected (..., 2) pitch-yaw labels or (..., 3) vectors, got {tuple(g.shape)}")
    if g.shape[-1] == 2:
        g = pitchyaw_to_gaze(g)
    else:
        n = g.norm(dim=-1, keepdim=True)
        if bool((n < 1e-12).any()):
            raise ValueError("gaze: contains a zero vector, which has no direction")
        g = g / n
    dtype = torch.promote_types(g.dtype, R.dtype)
    return (R.to(dtype).transpose(-1, -2) @ g.to(dtype)[..., None])[..., 0]
