"""``images`` source: calibrated photos reconstructed into textured meshes (:mod:`onthefly.reconstruct`).

Input: a JSON Lines manifest (:mod:`onthefly.reconstruct.manifest`, ``docs/reconstruction.md``), or a raw dataset
root read without one (``layout="mpiifacegaze"`` or ``"eth-xgaze"``, :mod:`onthefly.sources.layouts`: the
annotation's own head pose, face centre and gaze target; ETH-XGaze's cam03/06/13 JPGs are rotated 180° before
anything is applied). A manifest's images are used as stored: a manifest pointing at raw ETH-XGaze cam03/06/13
JPGs pairs the landmarks with an upside-down face; use ``--layout eth-xgaze`` or rotate them first. Landmarks come from
the manifest (``landmarks="manifest"``, the default: the dataset's annotations) or a detector (``dlib``,
``fan2d``, ``fan3d``; :mod:`onthefly.reconstruct.landmarks`). With a detector chosen, frames whose manifest line has
landmarks keep them (unless ``prefer_detector``) and the others are detected (in the line's ``face_box`` if any).
Detected landmarks are fitted with the detector's per-landmark weighting
(:meth:`~onthefly.reconstruct.pipeline.ReconstructOptions.detected`), the manifest's with the options as given.

Each record: the fitted mesh (template topology, camera frame), its UV texture (the cropped source image, UV =
source pixels, mirror fill), labels: ``head_rotation`` from the annotation or the fit, ``landmarks`` = the fitted
mesh's 68 landmark vertices, ``face_centre`` = the manifest's (when given; it also fixes the metric scale) else
``face_centre_rule`` of those landmarks, gaze target or direction from the manifest, ``vert_face_region`` = the
template's face region. ``extra["quality"]`` holds the reconstruction-quality record (stored by the cache as
``frames/quality/*``). Bad input (unreadable image, intrinsics inconsistent with the image, no face found,
landmarks outside the image, ...) raises :class:`SourceError` naming the manifest line and the image.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import torch

from ..normalization import FaceCentreRule, face_centre
from ..reconstruct.landmarks import DETECTORS, NoFaceError, make_detector
from ..reconstruct.manifest import ManifestEntry, read_manifest
from ..reconstruct.pipeline import DETECTED_WEIGHTS, ReconstructionError, ReconstructOptions, reconstruct
from .base import FrameRecord, SourceError
from .layouts import layout_entries
from .registry import need, register

__all__ = ["ImageSource"]


def read_image(path: Path, where: str) -> np.ndarray:
    """(H,W,3) uint8 RGB, or a :class:`SourceError`."""
    if not path.is_file():
        raise SourceError(f"{where}: image {path} not found")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(f"{where}: cannot decode image {path}")
    return np.ascontiguousarray(img[..., ::-1])


@register
class ImageSource:
    """Reconstruct the frames of a manifest; see the module docstring."""

    name = "images"
    help = "photos reconstructed into meshes: a JSON Lines manifest, or a raw dataset with --layout"

    @classmethod
    def add_arguments(cls, add) -> None:
        add("--input", help="a JSON Lines manifest (docs/reconstruction.md), or with --layout the dataset root")
        add("--layout", default=None, choices=("mpiifacegaze", "eth-xgaze"),
            help="read a raw dataset without a manifest: mpiifacegaze (pXX/pXX.txt, pXX/Calibration/Camera.mat) or "
            "eth-xgaze (data/train/subjectXXXX/frameYYYY/camXX.JPG, calibration/, data/annotation_train/, "
            "light_meta.yaml); docs/formats.md")
        add("--face-model", help="with --layout eth-xgaze: face_model.txt (default ROOT/calibration/face_model.txt)")
        add("--landmarks", default=None, choices=("manifest", "dlib", "fan2d", "fan3d"),
            help="where the 68 landmarks come from: the manifest/annotation (default; --layout mpiifacegaze, whose "
            "annotation has 6: dlib), dlib's 68-point predictor, or face-alignment's 2D/3D FAN (local weights only)")
        add("--fan-detector", default="folder", choices=("folder", "dlib"),
            help="face detector for fan2d/fan3d: folder (the manifest's face_box) or dlib (default folder)")
        add("--device", default="cpu", help="torch device for FAN (default cpu)")
        add("--prefer-detector", action="store_true",
            help="run the detector even where the manifest has landmarks")
        add("--no-mirror-fill", action="store_true",
            help="unseen regions take the mean face colour instead of the mirrored side")
        add("--mark-unseen", action="store_true", help="paint unseen regions magenta")

    @classmethod
    def from_args(cls, args):
        opts = ReconstructOptions(mirror_fill=not getattr(args, "no_mirror_fill", False),
                                  mark_unseen=bool(getattr(args, "mark_unseen", False)))
        layout = getattr(args, "layout", None)
        lm = getattr(args, "landmarks", None) or ("dlib" if layout == "mpiifacegaze" else "manifest")
        return cls(need(args, "input", cls.name), landmarks=lm, layout=layout,
                   face_model=getattr(args, "face_model", None),
                   fan_detector=getattr(args, "fan_detector", None) or "folder",
                   device=getattr(args, "device", None) or "cpu",
                   prefer_detector=bool(getattr(args, "prefer_detector", False)), options=opts)

    def __init__(self, manifest: str | Path, *, landmarks: str = "manifest", fan_detector: str = "folder",
                 device: str = "cpu", prefer_detector: bool = False, options=None, layout: str | None = None,
                 face_model: str | Path | None = None):
        if landmarks != "manifest" and landmarks not in DETECTORS:
            raise ValueError(f"--landmarks: expected manifest or one of {', '.join(DETECTORS)}, got {landmarks!r}")
        self.manifest = Path(manifest)
        self.layout = layout
        self.entries: Sequence[ManifestEntry]
        if layout is None:
            self.entries = read_manifest(self.manifest)
        else:
            self.entries = layout_entries(layout, self.manifest, face_model=face_model)
        self.landmarks, self.fan_detector, self.device = landmarks, fan_detector, device
        self.prefer_detector = prefer_detector
        self.options = options
        self._detector = None
        self.attrs = {"images_manifest": str(self.manifest), "images_landmarks": landmarks,
                      "images_layout": layout or ""}

    def keys(self) -> list[int]:
        return list(range(len(self.entries)))

    def detector(self):
        """The landmark detector (built on first use)."""
        if self._detector is None:
            self._detector = make_detector(self.landmarks, fan_detector=self.fan_detector, device=self.device)
        return self._detector

    def _landmarks(self, e, image: np.ndarray) -> tuple[np.ndarray, str]:
        if e.landmarks is not None and (self.landmarks == "manifest" or not self.prefer_detector):
            return e.landmarks, "manifest"
        if self.landmarks == "manifest":
            raise SourceError(f"{e.where}: no landmarks in the manifest (choose a detector with --landmarks)")
        try:
            return self.detector()(image, None if e.face_box is None else tuple(e.face_box)), self.landmarks
        except NoFaceError as exc:
            raise SourceError(f"{e.where} ({e.image.name}): {exc}") from None

    def load(self, key: int) -> FrameRecord:
        if not 0 <= key < len(self.entries):
            raise SourceError(f"{self.manifest}: no frame {key}")
        e = self.entries[key]
        error = getattr(e, "error", None)
        if error:  # a raw-layout entry whose inputs were bad (see onthefly.sources.layouts)
            raise SourceError(error)
        image = read_image(e.image, e.where)
        if getattr(e, "rotate180", False):  # ETH-XGaze cam03/06/13: K and the CSV refer to the rotated image
            image = np.ascontiguousarray(image[::-1, ::-1])
        h, w = image.shape[:2]
        if e.image_size is not None and e.image_size != (w, h):
            raise SourceError(f"{e.where} ({e.image.name}): inconsistent intrinsics: image_size {list(e.image_size)} "
                              f"but the image is {w}x{h}")
        lm, lm_from = self._landmarks(e, image)
        opts = self.options or ReconstructOptions()
        if lm_from != "manifest" and opts.landmark_noise is None:  # detected points: the detector's weighting
            opts = dataclasses.replace(opts, **DETECTED_WEIGHTS)
        try:
            rec = reconstruct(image, e.K, lm, dist=e.dist, head_rotation=e.head_rotation, face_centre=e.face_centre,
                              face_centre_rule=e.face_centre_rule, options=opts)
        except ReconstructionError as exc:
            raise SourceError(f"{e.where} ({e.image.name}): {exc}") from None

        fc = e.face_centre if e.face_centre is not None else \
            face_centre(torch.from_numpy(rec.landmarks), cast(FaceCentreRule, e.face_centre_rule)).numpy()
        quality = dict(rec.quality)
        quality["landmarks_detected"] = float(lm_from != "manifest")
        return FrameRecord(
            verts=rec.verts.astype(np.float32), faces=rec.faces, uv=rec.uv, faces_uv=rec.faces_uv,
            texture=rec.texture, vert_face_region=rec.face_region, landmarks=rec.landmarks,
            head_rotation=rec.head_rotation, face_centre=np.asarray(fc, np.float64),
            face_centre_rule=e.face_centre_rule, gaze_target=e.gaze_target, gaze_direction=e.gaze_direction,
            K=e.K, image_size=(w, h), subject=e.subject, frame=e.frame, camera=e.camera,
            origin=f"{e.where} ({e.image})", extra={"quality": quality})
