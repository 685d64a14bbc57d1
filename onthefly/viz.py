"""Pictures for people: gaze / head-pose arrows on face patches, image grids, PNG output.

Arrows follow the ETH-XGaze drawing convention: ``dx = -L·sin(yaw)·cos(pitch)``, ``dy = -L·sin(pitch)``, so an
arrow points where the subject looks in the image (up for pitch > 0, left for yaw > 0).
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch

GREEN = (0, 220, 0)     # true gaze (RGB)
RED = (230, 40, 40)     # predicted gaze
BLUE = (40, 120, 255)   # head pose


def to_uint8_images(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float RGB in [0, 1] (or uint8) → (B, H, W, 3) uint8 RGB numpy."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected (B, 3, H, W), got {tuple(images.shape)}")
    x = images.detach().cpu()
    if x.is_floating_point():
        x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def draw_arrow(image: np.ndarray, pitchyaw, colour=GREEN, origin=None, length: float | None = None,
               thickness: int = 2) -> np.ndarray:
    """Draw a (pitch, yaw) arrow on an (H, W, 3) uint8 RGB image in place, from ``origin`` (default the centre)."""
    h, w = image.shape[:2]
    length = 0.4 * min(h, w) if length is None else length
    ox, oy = (w / 2, h / 2) if origin is None else origin
    pitch, yaw = float(pitchyaw[0]), float(pitchyaw[1])
    dx = -length * math.sin(yaw) * math.cos(pitch)
    dy = -length * math.sin(pitch)
    cv2.arrowedLine(image, (int(round(ox)), int(round(oy))), (int(round(ox + dx)), int(round(oy + dy))),
                    tuple(int(c) for c in colour), thickness, cv2.LINE_AA, tipLength=0.2)
    return image


def draw_points(image: np.ndarray, points, colour=(255, 255, 0), radius: int = 1) -> np.ndarray:
    """Draw 2D points (N, 2) (OpenCV pixel coordinates) in place."""
    for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(image, (int(round(x)), int(round(y))), radius, tuple(int(c) for c in colour), -1,
                       cv2.LINE_AA)
    return image


def put_label(image: np.ndarray, text: str, row: int = 0, colour=(255, 255, 255)) -> np.ndarray:
    """Small text on a dark box at the top-left (row 0, 1, ... stack downwards), in place."""
    scale = max(0.35, image.shape[0] / 560)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    y0 = row * (h + base + 4)
    box = image[y0:y0 + h + base + 4, 0:w + 6]
    box[:] = (box.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken behind the text
    cv2.putText(image, text, (3, y0 + h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, tuple(int(c) for c in colour), 1,
                cv2.LINE_AA)
    return image


def grid(images: np.ndarray | list[np.ndarray], cols: int, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile (N, H, W, 3) uint8 images into one image with ``cols`` columns."""
    images = [np.asarray(im) for im in images]
    if not images:
        raise ValueError("images: nothing to tile")
    h, w = images[0].shape[:2]
    rows = math.ceil(len(images) / cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), fill, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = im
    return out


def save_png(path: str | Path, image_rgb: np.ndarray) -> Path:
    """Write an RGB uint8 image as PNG (creating the folder); raises OSError naming the file on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image_rgb[..., ::-1])):
        raise OSError(f"{path}: could not write PNG")
    return path
