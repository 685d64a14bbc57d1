"""68-point landmark detectors (optional dependencies, imported on first use).

* :class:`DlibLandmarks`: dlib's HOG face detector and the iBUG-68 shape predictor of the
  ``face-recognition-models`` package (``pip install onthefly[dlib]``). The
  ``.dat`` file is located with ``importlib.util.find_spec`` (importing ``face_recognition_models`` fails with
  recent setuptools).
* :class:`FanLandmarks`: face-alignment's 2D-FAN or 3D-FAN (``pip install onthefly[face-alignment]``), eager
  mode (``compile=False``), detector ``folder`` (boxes given per frame) or ``dlib``. The weights are never
  downloaded here: they must already be in ``torch.hub.get_dir()/checkpoints/`` under face-alignment's file names
  (:data:`FAN_FILES`). Every file is first opened with ``torch.load(weights_only=True)``, so a file holding
  anything but tensors is refused before face-alignment (which loads the depth network with
  ``weights_only=False``) sees it.

A detector is called as ``det(image_rgb, box=None)`` and returns (68,2) or (68,3) float64 pixels, or raises
:class:`NoFaceError`. With several faces the best-scoring (dlib) or largest (FAN) one wins.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import torch

__all__ = ["NoFaceError", "DlibLandmarks", "FanLandmarks", "FAN_FILES", "dlib_predictor_path", "make_detector",
           "DETECTORS"]

#: face-alignment's weight files (in ``torch.hub.get_dir()/checkpoints``) per landmark kind
FAN_FILES = {"2D": ("2DFAN4-11f355bf06.pth.tar",), "3D": ("3DFAN4-7835d9f11d.pth.tar", "depth-2a464da4ea.pth.tar")}
#: ``--landmarks`` choices other than ``manifest``
DETECTORS = ("dlib", "fan2d", "fan3d")


class NoFaceError(ValueError):
    """The detector found no face."""


def dlib_predictor_path() -> Path:
    """Path of ``shape_predictor_68_face_landmarks.dat`` inside the installed face-recognition-models package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("dlib landmarks need face-recognition-models: pip install onthefly[dlib]")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise ImportError(f"{path}: the 68-point predictor is missing from face-recognition-models")
    return path


class DlibLandmarks:
    """dlib HOG detector (``upsample`` times upsampled) + 68-point shape predictor.

    The predictor runs on the image edge-replicated by ``pad`` x its longer side on every side (the box shifted with
    it; 0 = the image as it is): where a face runs off the image (a 224 px normalized crop cuts the chin), dlib's
    predictor reads the image border (black beyond it) as the face's outline and pulls the points toward a frontal,
    shorter face. On the calibration renders of ``benchmarks/headpose_fit.py`` (224 px crops, same boxes, 32-64 px) the head
    pose fitted from its points went from yaw slope 0.77-0.83 / median error 6.4-8.6° to 1.00-1.05 / 6.1-6.2°;
    faces inside the image are not affected."""

    def __init__(self, upsample: int = 1, pad: float = 0.25):
        try:
            import dlib
        except ImportError:
            raise ImportError("dlib landmarks need dlib-bin: pip install onthefly[dlib]") from None
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_predictor_path()))
        self.upsample = int(upsample)
        self.pad = float(pad)

    def detect(self, image: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        """Face boxes (x0, y0, x1, y1) px with their detection scores, best first."""
        rects, scores, _ = self.detector.run(np.ascontiguousarray(image), self.upsample, 0.0)
        out = [((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]
        return sorted(out, key=lambda x: -x[1])

    def __call__(self, image: np.ndarray, box=None) -> np.ndarray:
        if box is None:
            boxes = self.detect(image)
            if not boxes:
                raise NoFaceError("no face found (dlib HOG detector)")
            box = boxes[0][0]
        img = np.ascontiguousarray(image)
        m = int(round(self.pad * max(img.shape[:2])))
        if m > 0:
            img = cv2.copyMakeBorder(img, m, m, m, m, cv2.BORDER_REPLICATE)
        r = self._dlib.rectangle(*(int(round(v)) + m for v in box))
        s = self.predictor(img, r)
        return np.array([[p.x - m, p.y - m] for p in s.parts()], np.float64)


class FanLandmarks:
    """face-alignment FAN (``kind`` ``"2D"`` or ``"3D"``) with detector ``"folder"`` (boxes given) or ``"dlib"``."""

    def __init__(self, kind: str = "2D", detector: str = "folder", device: str = "cpu"):
        if kind not in FAN_FILES:
            raise ValueError(f"FanLandmarks: kind must be '2D' or '3D', got {kind!r}")
        if detector not in ("folder", "dlib"):
            raise ValueError(f"FanLandmarks: detector must be 'folder' or 'dlib' (the others download weights), "
                             f"got {detector!r}")
        try:
            import face_alignment
        except ImportError:
            raise ImportError("FAN landmarks need face-alignment: pip install onthefly[face-alignment]") from None

        ckpt = Path(torch.hub.get_dir()) / "checkpoints"
        for name in FAN_FILES[kind]:
            path = ckpt / name
            if not path.is_file():
                raise FileNotFoundError(f"{path}: face-alignment weights not found (nothing is downloaded; copy "
                                        f"the file there or set TORCH_HOME)")
            try:
                torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any failure means: not a plain tensor file
                raise ValueError(f"{path}: not a plain weights file (refused by torch.load(weights_only=True): "
                                 f"{exc})") from None
        lt = face_alignment.LandmarksType.TWO_D if kind == "2D" else face_alignment.LandmarksType.THREE_D
        self.kind, self.detector = kind, detector
        self.fa = face_alignment.FaceAlignment(lt, device=device, flip_input=False, face_detector=detector,
                                               compile=False)

    def __call__(self, image: np.ndarray, box=None) -> np.ndarray:
        if box is None and self.detector == "folder":
            raise NoFaceError("face-alignment with the 'folder' detector needs a face_box for every frame")
        faces = None if box is None else [np.array([*box, 1.0], np.float64)]
        out = self.fa.get_landmarks_from_image(np.ascontiguousarray(image), detected_faces=faces)
        if not out:
            raise NoFaceError(f"no face found (face-alignment, {self.detector} detector)")
        sizes = [np.ptp(p[:, 0]) * np.ptp(p[:, 1]) for p in out]
        return np.asarray(out[int(np.argmax(sizes))], np.float64)


def make_detector(name: str, *, fan_detector: str = "folder", device: str = "cpu"):
    """A detector by ``--landmarks`` name: ``dlib``, ``fan2d`` or ``fan3d``."""
    if name == "dlib":
        return DlibLandmarks()
    if name in ("fan2d", "fan3d"):
        return FanLandmarks("2D" if name == "fan2d" else "3D", detector=fan_detector, device=device)
    raise ValueError(f"--landmarks: unknown detector {name!r}; choose manifest or one of {', '.join(DETECTORS)}")
