"""Raw dataset layouts read without a hand-written manifest (``--source images --layout NAME --input ROOT``).

Each layout turns a dataset root into the manifest entries of :mod:`onthefly.reconstruct.manifest` (one per image),
with the dataset's own labels:

``mpiifacegaze`` (real-formats.md §3): ``pXX/pXX.txt`` (28 fields, :func:`~.readers.read_mpii_annotation`),
``pXX/Calibration/Camera.mat`` (:func:`~.readers.read_camera_mat`), images ``pXX/dayYY/NNNN.jpg``. Per line: K and
distortion from ``Camera.mat``; head rotation = ``Rodrigues(rvec)`` of fields 16-18 (the 6-point model's pose);
face centre = fields 22-24 (the mean of the 6 posed points, rule ``eye_mouth``); gaze target = fields 25-27. The
annotation has 6 landmarks, so the 68 come from a detector (``--landmarks dlib`` by default). Ids: subject ``pXX``,
frame ``dayYY/NNNN``, camera ``""``.

``eth-xgaze`` (§1): images ``data/train/subjectXXXX/frameYYYY/camXX.JPG``, ``data/annotation_train/
subjectXXXX.csv`` (149 fields, :func:`~.readers.read_xgaze_annotation`), ``calibration/cam_calibration/camXX.xml``
(:func:`~.readers.read_camera_xml`), ``calibration/face_model.txt`` and ``light_meta.yaml`` (when present: only a
subject's first ``full_light_frame_end_idx`` frames, by position). The JPGs of cam03, cam06 and cam13 are rotated
180° **before** anything is applied (K and the CSV refer to the rotated image); the rotation is ``cv2.rotate``
(x → w − 1 − x, as XGaze3D / UniGaze; ETH-XGaze's own warpAffine maps x → w − x, one pixel apart). Per row: K and
distortion from the camera's XML; the 68 landmarks of the row (raw-image pixels); head rotation = ``Rodrigues``
of fields 7-9; face centre = the ``eye_nose`` centre of the face model posed with fields 7-12, exactly as the
official normalization computes it; gaze target = fields 4-6. Ids: subject ``subjectXXXX``, frame ``frameYYYY``,
camera ``camXX``.

A problem confined to some images (a missing camera XML, an unreadable ``Camera.mat``, a subject missing from
``light_meta.yaml``, a missing annotation row) becomes an entry that raises it when loaded, so ``--skip-bad``
keeps the rest; a missing root or annotation folder is an error at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..normalization import face_centre
from ..reconstruct.manifest import ManifestEntry
from .base import SourceError
from .readers import (
    CameraCalibration,
    read_camera_mat,
    read_camera_xml,
    read_face_model,
    read_light_meta,
    read_mpii_annotation,
    read_xgaze_annotation,
)

__all__ = ["LayoutEntry", "layout_entries", "mpiifacegaze_entries", "eth_xgaze_entries", "ROTATED_CAMERAS",
           "LAYOUTS"]

#: ETH-XGaze cameras whose JPGs are stored upside down (rotated 180° before use)
ROTATED_CAMERAS = ("cam03", "cam06", "cam13")
LAYOUTS = ("mpiifacegaze", "eth-xgaze")


@dataclass
class LayoutEntry(ManifestEntry):
    """A manifest entry from a raw layout: ``rotate180`` (turn the image before use), ``error`` (the problem this
    entry raises when loaded, or None)."""

    rotate180: bool = False
    error: str | None = None


def layout_entries(layout: str, root: str | Path, *, face_model: str | Path | None = None) -> list[LayoutEntry]:
    """The entries of a raw dataset root in the named layout (``mpiifacegaze`` or ``eth-xgaze``)."""
    if layout == "mpiifacegaze":
        return mpiifacegaze_entries(root)
    if layout == "eth-xgaze":
        return eth_xgaze_entries(root, face_model=face_model)
    raise ValueError(f"--layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")


def _bad(where: str, subject: str, frame: str, camera: str, image: Path, error: str) -> LayoutEntry:
    return LayoutEntry(where=where, image=image, subject=subject, frame=frame, camera=camera, K=np.eye(3),
                       error=error)


def mpiifacegaze_entries(root: str | Path) -> list[LayoutEntry]:
    """Entries of an MPIIFaceGaze root (``pXX/pXX.txt``, ``pXX/Calibration/Camera.mat``, ``pXX/dayYY/*.jpg``)."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root}: MPIIFaceGaze root not found")
    subjects = sorted(p for p in root.iterdir() if p.is_dir() and (p / f"{p.name}.txt").is_file())
    if not subjects:
        raise SourceError(f"{root}: no MPIIFaceGaze subjects (pXX/pXX.txt)")
    out: list[LayoutEntry] = []
    for sd in subjects:
        s = sd.name
        txt = sd / f"{s}.txt"
        try:
            rows = read_mpii_annotation(txt)
        except SourceError as exc:
            out.append(_bad(str(txt), s, "", "", txt, str(exc)))
            continue
        try:
            K, dist = read_camera_mat(sd / "Calibration" / "Camera.mat")
            cam_error = None
        except SourceError as exc:
            K, dist, cam_error = np.eye(3), None, str(exc)
        for name, r in rows.items():
            rel = name.split("/")[-2:]
            where = f"{txt}:{r.line}"
            frame = f"{rel[0]}/{Path(rel[1]).stem}"
            if cam_error is not None:
                out.append(_bad(where, s, frame, "", sd.joinpath(*rel), cam_error))
                continue
            assert dist is not None  # read with K
            out.append(LayoutEntry(
                where=where, image=sd.joinpath(*rel), subject=s, frame=frame, camera="", K=K.copy(),
                dist=dist.copy(), gaze_target=r.target.copy(), head_rotation=cv2.Rodrigues(r.rvec)[0],
                face_centre=r.face_centre.copy(), face_centre_rule="eye_mouth"))
    return out


def eth_xgaze_entries(root: str | Path, *, face_model: str | Path | None = None) -> list[LayoutEntry]:
    """Entries of an ETH-XGaze root (``data/train``, ``data/annotation_train``, ``calibration/``,
    ``light_meta.yaml``); see the module docstring."""
    root = Path(root)
    train, ann = root / "data" / "train", root / "data" / "annotation_train"
    for p in (train, ann):
        if not p.is_dir():
            raise SourceError(f"{p}: ETH-XGaze folder not found (is {root} the ETH-XGaze root?)")
    fm = read_face_model(Path(face_model) if face_model is not None else root / "calibration" / "face_model.txt")
    meta_path = root / "light_meta.yaml"
    meta = read_light_meta(meta_path) if meta_path.is_file() else None
    cal_dir = root / "calibration" / "cam_calibration"
    cams: dict[str, CameraCalibration | SourceError] = {}
    out: list[LayoutEntry] = []
    for sd in sorted(p for p in train.iterdir() if p.is_dir() and p.name.startswith("subject")):
        s = sd.name
        frames = sorted(p.name for p in sd.glob("frame*") if p.is_dir())
        images = [(f, p) for f in frames for p in sorted((sd / f).glob("cam*.JPG"))]
        if meta is not None:
            if s not in meta:
                out += [_bad(str(meta_path), s, f, p.stem, p, f"{meta_path}: subject {s} missing (no "
                             "full_light_frame_end_idx for it)") for f, p in images]
                continue
            keep = set(frames[:min(len(frames), meta[s])])
            images = [(f, p) for f, p in images if f in keep]
        csv_path = ann / f"{s}.csv"
        try:
            rows = read_xgaze_annotation(csv_path)
        except SourceError as exc:
            out += [_bad(str(csv_path), s, f, p.stem, p, str(exc)) for f, p in images]
            continue
        for f, img in images:
            cam = img.stem
            row = rows.get((f, cam))
            if row is None:
                out.append(_bad(str(csv_path), s, f, cam, img, f"{csv_path}: no row for {f}/{img.name}"))
                continue
            where = f"{csv_path}:{row.line}"
            if cam not in cams:
                try:
                    cams[cam] = read_camera_xml(cal_dir / f"{cam}.xml")
                except SourceError as exc:
                    cams[cam] = exc
            c = cams[cam]
            if isinstance(c, SourceError):
                out.append(_bad(where, s, f, cam, img, str(c)))
                continue
            hR = cv2.Rodrigues(row.rvec)[0]
            Fc = fm @ hR.T + row.tvec
            fc = face_centre(torch.from_numpy(Fc), "eye_nose").numpy()
            out.append(LayoutEntry(
                where=where, image=img, subject=s, frame=f, camera=cam, K=c.K.copy(), dist=c.dist.copy(),
                image_size=c.image_size, gaze_target=row.target.copy(), landmarks=row.landmarks.copy(),
                head_rotation=hR, face_centre=fc, face_centre_rule="eye_nose", rotate180=cam in ROTATED_CAMERAS))
    if not out:
        raise SourceError(f"{train}: no images (data/train/subjectXXXX/frameYYYY/camXX.JPG)")
    return out
