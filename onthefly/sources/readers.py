"""Readers of the reference datasets' own files: each is a function ``path -> value`` that raises one error class,
:class:`FormatError`, naming the file and (where the format has lines) the line.

The formats are those of the published releases (``docs/formats.md``):

* :func:`read_camera_xml` — ETH-XGaze / XGaze3D ``camXX.xml`` (OpenCV FileStorage);
* :func:`read_xgaze_annotation` — ETH-XGaze ``annotation_train/subjectXXXX.csv`` (149 fields) or XGaze3D's
  ``annotation_updated/subjectXXXX_update.csv`` (249 fields);
* :func:`read_light_meta` — ETH-XGaze ``light_meta.yaml``;
* :func:`read_face_model` — ETH-XGaze ``calibration/face_model.txt`` (50×3);
* :func:`read_mpii_annotation` — MPIIFaceGaze ``pXX/pXX.txt`` (28 fields);
* :func:`read_camera_mat` — MPIIFaceGaze ``pXX/Calibration/Camera.mat``;
* :func:`read_openface_model` — OpenFace 68-point mean shape ``OpenFace.txt`` (68×3, as MPII-NV reads it);
* :func:`read_source_supply` — MPII-NV ``supplementary/mpii/source_supply/pXX.h5``.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import cv2
import h5py
import numpy as np
import scipy.io
import yaml

from .._io import MAX_YAML_BYTES, safe_yaml
from .._isolated import call_isolated, call_isolated_json, can_isolate
from .base import SourceError

__all__ = ["FormatError", "CameraCalibration", "XGazeRow", "MPIIRow", "SourceSupply", "read_camera_xml",
           "read_xgaze_annotation", "read_light_meta", "read_face_model", "read_mpii_annotation", "read_camera_mat",
           "read_openface_model", "read_source_supply", "XGAZE_FIELDS", "XGAZE_UPDATED_FIELDS", "MPII_FIELDS"]

#: fields of an original ETH-XGaze annotation row and of an XGaze3D updated row (+ 50 reprojected landmarks)
XGAZE_FIELDS, XGAZE_UPDATED_FIELDS = 149, 249
#: fields of a MPIIFaceGaze ``pXX.txt`` line
MPII_FIELDS = 28


class FormatError(SourceError):
    """A file of a reference dataset does not have its documented format.

    ``str(err)`` is ``"PATH:LINE: problem"`` (``"PATH: problem"`` where no line applies); the attributes ``path``
    (str), ``line`` (1-based int or None) and ``problem`` (str) hold the parts. A subclass of
    :class:`~onthefly.sources.base.SourceError` (itself a ``ValueError``), so ``--skip-bad`` skips the record."""

    def __init__(self, path, problem: str, line: int | None = None):
        self.path, self.line, self.problem = str(path), line, problem
        super().__init__(f"{path}:{line}: {problem}" if line is not None else f"{path}: {problem}")


    @classmethod
    def relayed(cls, path, message: str) -> "FormatError":
        """The error whose ``str`` is ``message`` (``"PATH:LINE: problem"`` or ``"PATH: problem"``), e.g. relayed
        from a child process; a message that does not start with the path becomes the problem."""
        rest, line = message, None
        if message.startswith(f"{path}:"):
            rest = message[len(f"{path}:"):]
            m = re.match(r"(\d+): ", rest)
            if m:
                line, rest = int(m.group(1)), rest[m.end():]
            else:
                rest = rest.lstrip()
        return cls(path, rest, line)


def _text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError(path, f"{what} not found") from None
    except IsADirectoryError:
        raise FormatError(path, f"{what} expected, found a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(path, f"cannot read {what} ({exc})") from None


def _floats(path, line, tokens, what) -> np.ndarray:
    try:
        out = np.array([float(t) for t in tokens], np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_float(t))
        raise FormatError(path, f"{what}: {bad!r} is not a number", line) from None
    if not np.isfinite(out).all():
        raise FormatError(path, f"{what}: NaN or inf", line)
    return out


def _is_float(t) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


# ============================================================================================== camera XML
@dataclass
class CameraCalibration:
    """One camera of an ETH-XGaze calibration: ``K`` (3,3), ``dist`` (k,) distortion, extrinsics ``R`` (3,3) and
    ``t`` (3,) mm mapping world → camera (``X_c = R·X_w + t``; None where the file has none), ``image_size``
    (width, height) or None."""

    K: np.ndarray
    dist: np.ndarray
    R: np.ndarray | None
    t: np.ndarray | None
    image_size: tuple[int, int] | None
    path: str = ""


def _node_line(text: str, name: str) -> int | None:
    m = re.search(rf"<{re.escape(name)}[\s>]", text)
    return None if m is None else text.count("\n", 0, m.start()) + 1


def read_camera_xml(path: str | Path) -> CameraCalibration:
    """An ETH-XGaze ``camXX.xml`` (OpenCV FileStorage): nodes ``Camera_Matrix`` 3×3, ``Distortion_Coefficients``
    1×5, and (calibrations with extrinsics) ``cam_rotation`` 3×3, ``cam_translation`` 3×1 mm, ``image_Width``,
    ``image_Height``. ``Camera_Matrix`` and ``Distortion_Coefficients`` are required; the extrinsics come as a
    pair or not at all. Raises :class:`FormatError`.

    OpenCV's FileStorage parser aborts or crashes the interpreter on some malformed XML (found by the fuzz
    campaign, ``tests/fuzz``): the file is parsed in a forked child (:mod:`onthefly._isolated`), whose crash is a
    :class:`FormatError` here."""
    path = Path(path)
    text = _text(path, "camera calibration")
    if "<opencv_storage" not in text:
        raise FormatError(path, "not an OpenCV FileStorage XML file (no <opencv_storage>)", 1)
    try:
        a = call_isolated(_camera_xml_arrays, path, text)
    except ValueError as exc:  # the child's FormatError, relayed by message
        raise FormatError.relayed(path, str(exc)) from None
    except OSError as exc:
        raise FormatError(path, f"not a readable OpenCV FileStorage file ({exc})") from None
    size = cast("tuple[int, int]", tuple(int(v) for v in a["image_size"])) if "image_size" in a else None
    return CameraCalibration(K=a["K"], dist=a["dist"], R=a.get("R"), t=a.get("t"), image_size=size,
                             path=str(path))


def _camera_xml_arrays(path: Path, text: str) -> dict[str, np.ndarray]:
    """The checked arrays of a camera XML (run by :func:`read_camera_xml` in a child process)."""
    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except Exception as exc:  # cv2.error, or SystemError on some corrupt files
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise FormatError(path, f"not a readable OpenCV FileStorage file ({msg})") from None
    try:
        if not fs.isOpened():
            raise FormatError(path, "not a readable OpenCV FileStorage file")

        def mat(name, shape, required):
            node = fs.getNode(name)
            m = None if node.empty() else node.mat()
            if m is None:
                if required:
                    raise FormatError(path, f"missing node <{name}> (a {shape[0]}x{shape[1]} matrix)")
                return None
            m = np.asarray(m, np.float64)
            line = _node_line(text, name)
            if m.size != shape[0] * shape[1] or (shape != (1, 5) and m.shape != shape and m.shape != shape[::-1]):
                raise FormatError(path, f"<{name}> must be {shape[0]}x{shape[1]}, got {m.shape[0]}x{m.shape[1]}", line)
            if not np.isfinite(m).all():
                raise FormatError(path, f"<{name}> contains NaN or inf", line)
            return m.reshape(shape) if shape != (1, 5) else m.reshape(-1)

        K = mat("Camera_Matrix", (3, 3), True)
        dn = fs.getNode("Distortion_Coefficients")
        if dn.empty() or dn.mat() is None:
            raise FormatError(path, "missing node <Distortion_Coefficients> (1x5)")
        dist = np.asarray(dn.mat(), np.float64).reshape(-1)
        if dist.size not in (4, 5, 8, 12, 14) or not np.isfinite(dist).all():
            raise FormatError(path, f"<Distortion_Coefficients> must hold 5 finite numbers, got {dist.size}",
                              _node_line(text, "Distortion_Coefficients"))
        R = mat("cam_rotation", (3, 3), False)
        t = mat("cam_translation", (3, 1), False)
        size: list[float | None] = []
        for name in ("image_Width", "image_Height"):
            n = fs.getNode(name)
            size.append(None if n.empty() else n.real())
    except FormatError:
        raise
    except Exception as exc:  # cv2 errors reading a corrupt node
        raise FormatError(path, f"cannot read the nodes ({type(exc).__name__}: {exc})") from None
    finally:
        fs.release()
    if (R is None) != (t is None):
        missing = "cam_translation" if t is None else "cam_rotation"
        raise FormatError(path, f"missing node <{missing}> (extrinsics need both cam_rotation and cam_translation)")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or np.abs(K[2] - [0, 0, 1]).max() > 1e-9:
        raise FormatError(path, "<Camera_Matrix> must have positive focal lengths and last row 0 0 1",
                          _node_line(text, "Camera_Matrix"))
    if R is not None and (np.abs(R @ R.T - np.eye(3)).max() > 1e-4 or np.linalg.det(R) < 0):
        raise FormatError(path, "<cam_rotation> is not a rotation matrix", _node_line(text, "cam_rotation"))
    image_size = None
    w, h = size
    if w is not None and h is not None:
        image_size = (int(round(w)), int(round(h)))
        if min(image_size) <= 0:
            raise FormatError(path, f"image_Width/image_Height must be positive, got {image_size}",
                              _node_line(text, "image_Width"))
    out = {"K": K, "dist": dist}
    if R is not None:
        out.update(R=R, t=t.reshape(3))
    if image_size is not None:
        out["image_size"] = np.array(image_size, np.int64)
    return out


# ============================================================================================== ETH-XGaze CSV
@dataclass
class XGazeRow:
    """One row of an ETH-XGaze annotation (one frame, one camera). ``line`` is its 1-based line number.

    ``screen`` (2,) px, ``target`` (3,) mm in that camera's frame, ``rvec``/``tvec`` (3,) the row's head pose
    (model → camera), ``landmarks`` (68,2) px; ``landmarks50`` (50,2) px (the reprojected face model of an
    updated row, None in an original one)."""

    frame: str
    image: str
    screen: np.ndarray
    target: np.ndarray
    rvec: np.ndarray
    tvec: np.ndarray
    landmarks: np.ndarray
    landmarks50: np.ndarray | None
    line: int

    @property
    def camera(self) -> str:
        return Path(self.image).stem


def read_xgaze_annotation(path: str | Path, fields: int | None = None) -> dict[tuple[str, str], XGazeRow]:
    """An ETH-XGaze annotation CSV (no header, one row per frame and camera) → ``{(frame, camera): row}``.

    Fields (0-based): 0 frame folder (``frame0000``), 1 image (``cam00.JPG``), 2-3 screen gaze point, 4-6 3D gaze
    target (camera frame, mm), 7-9 head rvec, 10-12 head tvec, 13-148 68 landmarks (x, y interleaved, px): 149
    fields (``annotation_train/subjectXXXX.csv``); XGaze3D's ``annotation_updated/subjectXXXX_update.csv`` adds
    149-248, the 50 reprojected face-model landmarks: 249 fields. Every row of a file must have the same count;
    ``fields`` (149 or 249) demands one. Raises :class:`FormatError` naming the line (wrong field count, not a
    number, a duplicate (frame, camera), an empty file)."""
    path = Path(path)
    text = _text(path, "annotation file")
    out: dict[tuple[str, str], XGazeRow] = {}
    want = fields
    try:
        parsed = list(enumerate(csv.reader(text.splitlines()), 1))
    except csv.Error as exc:
        raise FormatError(path, f"not a CSV file ({exc})") from None
    for lineno, t in parsed:
        if not t or (len(t) == 1 and not t[0].strip()):
            continue
        n = len(t)
        if fields is not None and n != fields:
            kind = "annotation_updated/subjectXXXX_update.csv" if fields == XGAZE_UPDATED_FIELDS else \
                "annotation_train/subjectXXXX.csv"
            raise FormatError(path, f"expected {fields} fields ({kind}), got {n}", lineno)
        if n not in (XGAZE_FIELDS, XGAZE_UPDATED_FIELDS):
            raise FormatError(path, f"expected {XGAZE_FIELDS} fields (annotation_train) or {XGAZE_UPDATED_FIELDS} "
                              f"(annotation_updated), got {n}", lineno)
        if want is None:
            want = n
        elif n != want:
            raise FormatError(path, f"expected {want} fields like the rows above, got {n}", lineno)
        frame, image = t[0].strip(), t[1].strip()
        if not frame or not image:
            raise FormatError(path, "empty frame or image name", lineno)
        v = _floats(path, lineno, t[2:], "annotation row")
        row = XGazeRow(frame=frame, image=image, screen=v[0:2], target=v[2:5], rvec=v[5:8], tvec=v[8:11],
                       landmarks=v[11:147].reshape(68, 2),
                       landmarks50=v[147:247].reshape(50, 2) if n == XGAZE_UPDATED_FIELDS else None, line=lineno)
        key = (frame, row.camera)
        if key in out:
            raise FormatError(path, f"duplicate row for {frame}/{image} (first at line {out[key].line})", lineno)
        out[key] = row
    if not out:
        raise FormatError(path, "no annotation rows")
    return out


# ============================================================================================== light_meta.yaml
def read_light_meta(path: str | Path) -> dict[str, int]:
    """ETH-XGaze ``light_meta.yaml``: ``subjectXXXX: {full_light_frame_end_idx: N}`` → ``{subject: N}`` (the
    full-light frames of a subject are the first N of its sorted ``frame*`` folders). Raises :class:`FormatError`
    (YAML syntax error with its line, an entry without a non-negative integer ``full_light_frame_end_idx``)."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:  # PyYAML would take seconds to minutes on it
        raise FormatError(path, f"{path.stat().st_size} bytes; a light_meta.yaml is a small mapping (at most "
                                f"{MAX_YAML_BYTES} bytes)")
    text = _text(path, "light metadata")

    try:
        data = safe_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise FormatError(path, f"not valid YAML ({getattr(exc, 'problem', exc)})",
                          None if mark is None else mark.line + 1) from None
    except ValueError as exc:
        raise FormatError(path, f"not a light_meta.yaml ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise FormatError(path, "expected a mapping subjectXXXX -> {full_light_frame_end_idx: N}")
    lines = text.splitlines()
    out = {}
    for subject, entry in data.items():
        line = next((i for i, ln in enumerate(lines, 1) if ln.lstrip().startswith(f"{subject}:")), None)
        n = entry.get("full_light_frame_end_idx") if isinstance(entry, dict) else None
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise FormatError(path, f"{subject}: expected full_light_frame_end_idx: a non-negative integer, "
                              f"got {entry!r}", line)
        out[str(subject)] = n
    return out


# ============================================================================================== matrices in text
def _matrix_txt(path: Path, rows: int, cols: int, what: str) -> np.ndarray:
    text = _text(path, what)
    data = [(i, ln.replace(",", " ").split()) for i, ln in enumerate(text.splitlines(), 1)
            if ln.strip() and not ln.lstrip().startswith("#")]
    if len(data) != rows:
        raise FormatError(path, f"expected {rows} rows of {cols} numbers ({what}), got {len(data)} rows",
                          data[rows][0] if len(data) > rows else None)
    out = np.empty((rows, cols))
    for k, (lineno, t) in enumerate(data):
        if len(t) != cols:
            raise FormatError(path, f"expected {cols} numbers, got {len(t)}", lineno)
        out[k] = _floats(path, lineno, t, what)
    return out


def read_face_model(path: str | Path) -> np.ndarray:
    """ETH-XGaze ``face_model.txt``: 50 rows of x y z (mm; x → image right, y down, z into the head), in the
    68 → 50 order ``lm50[0]=lm68[8]``, ``[1:44]=lm68[17:60]``, ``[44:47]=lm68[61:64]``, ``[47:50]=lm68[65:68]``.
    Returns (50, 3) float64. Raises :class:`FormatError`."""
    return _matrix_txt(Path(path), 50, 3, "face model (50 rows of x y z)")


def read_openface_model(path: str | Path) -> np.ndarray:
    """OpenFace's 68-point mean face shape as MPII-NV reads it (``np.loadtxt``): 68 rows of x y z (mm; x right,
    y down, z into the head, iBUG order). Returns (68, 3) float64. Raises :class:`FormatError`."""
    return _matrix_txt(Path(path), 68, 3, "OpenFace 68-point model (68 rows of x y z)")


# ============================================================================================== MPIIFaceGaze
@dataclass
class MPIIRow:
    """One line of MPIIFaceGaze ``pXX.txt``: ``image`` (``dayYY/NNNN.jpg``), ``screen`` (2,) px, ``landmarks``
    (6,2) px (eye corners R-outer, R-inner, L-inner, L-outer, mouth R, L), ``rvec``/``tvec`` (3,) the 6-point
    model's pose (camera frame), ``face_centre`` (3,) (fields 22-24), ``target`` (3,) gaze target, ``eye``
    (``left``/``right``), ``line`` 1-based."""

    image: str
    screen: np.ndarray
    landmarks: np.ndarray
    rvec: np.ndarray
    tvec: np.ndarray
    face_centre: np.ndarray
    target: np.ndarray
    eye: str
    line: int


def read_mpii_annotation(path: str | Path) -> dict[str, MPIIRow]:
    """MPIIFaceGaze ``pXX/pXX.txt`` → ``{"dayYY/NNNN.jpg": row}`` in file order. 28 whitespace-separated fields
    (1-based): 1 image path, 2-3 screen gaze, 4-15 six landmarks (integers), 16-18 rvec, 19-21 tvec, 22-24 face
    centre, 25-27 gaze target, 28 ``left``/``right``. Raises :class:`FormatError` naming the line."""
    path = Path(path)
    text = _text(path, "annotation file")
    out: dict[str, MPIIRow] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        t = line.split()
        if not t:
            continue
        if len(t) != MPII_FIELDS:
            raise FormatError(path, f"expected {MPII_FIELDS} fields, got {len(t)}", lineno)
        v = _floats(path, lineno, t[1:27], "annotation line")
        if t[27] not in ("left", "right"):
            raise FormatError(path, f"field 28 must be 'left' or 'right', got {t[27]!r}", lineno)
        name = t[0].replace("\\", "/")
        if name in out:
            raise FormatError(path, f"duplicate line for {name} (first at line {out[name].line})", lineno)
        out[name] = MPIIRow(image=name, screen=v[0:2], landmarks=v[2:14].reshape(6, 2), rvec=v[14:17],
                            tvec=v[17:20], face_centre=v[20:23], target=v[23:26], eye=t[27], line=lineno)
    if not out:
        raise FormatError(path, "no annotation lines")
    return out


def _camera_mat_arrays(path: Path) -> dict[str, np.ndarray]:
    """``cameraMatrix`` / ``distCoeffs`` of a Camera.mat as float64 arrays (run by :func:`read_camera_mat` in a
    forked child)."""
    try:
        m = scipy.io.loadmat(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure of the MAT reader is a bad file
        msg = (str(exc).strip().splitlines() or [""])[0][:200]
        raise FormatError(path, f"not a readable MATLAB .mat file ({type(exc).__name__}: {msg})") from None
    keys = sorted(k for k in m if not k.startswith("__"))
    out = {}
    for k in ("cameraMatrix", "distCoeffs"):
        if k not in m:
            raise FormatError(path, f"no variable {k!r} (has {keys})")
        try:
            out[k] = np.asarray(m[k], np.float64)
        except (TypeError, ValueError):
            raise FormatError(path, f"{k} is not numeric") from None
    return out


def read_camera_mat(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """MPIIFaceGaze ``Calibration/Camera.mat`` (MATLAB, ``scipy.io.loadmat``): ``cameraMatrix`` 3×3 and
    ``distCoeffs`` (1×5) → (K, dist (5,)). Raises :class:`FormatError`.

    ``loadmat`` runs in a forked child (:mod:`onthefly._isolated`, at most 60 s): scipy's MAT-5 reader can crash
    the interpreter (a segmentation fault) on some corrupt files, which must be an error naming the file, not the
    end of the build."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "camera calibration (Camera.mat) not found")
    try:
        m = call_isolated(_camera_mat_arrays, path, timeout=60)
    except ValueError as exc:  # the child's FormatError, relayed by message
        raise FormatError.relayed(path, str(exc)) from None
    except OSError as exc:
        raise FormatError(path, f"not a readable MATLAB .mat file ({exc})") from None
    K = m["cameraMatrix"]
    dist = m["distCoeffs"].reshape(-1)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise FormatError(path, f"cameraMatrix must be a finite 3x3 intrinsics matrix, got shape {K.shape}")
    if dist.size not in (4, 5, 8, 12, 14) or not np.isfinite(dist).all():
        raise FormatError(path, f"distCoeffs must hold 5 finite numbers, got {dist.size}")
    return K, dist


# ============================================================================================== MPII-NV supply
@dataclass
class SourceSupply:
    """MPII-NV ``source_supply/pXX.h5``: ``file_name`` (N,) ``pXX/dayYY/NNNN.jpg`` in the file's order (the order
    MPII-NV renders), ``landmarks`` (N,68,2) the dlib landmarks (``landmarks_2d_detect``, px of the raw image)."""

    file_name: list[str]
    landmarks: np.ndarray


def read_source_supply(path: str | Path) -> SourceSupply:
    """MPII-NV ``supplementary/mpii/source_supply/pXX.h5`` (datasets ``file_name`` bytes ``pXX/dayYY/NNNN.jpg``
    and ``landmarks_2d_detect`` (N,68,2); MPII-NV also stores ``3d_gaze_target``, ``camera_parameters``,
    ``distortion_parameters``, ``head_pose``, unused here). Raises :class:`FormatError` (not HDF5, missing or
    mis-shaped datasets, the row of the first non-finite landmark)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "source_supply file not found")
    if can_isolate():  # read in a forked child: h5py can crash the process on a corrupt file
        try:
            names, lm = call_isolated_json(_supply_rows, path, timeout=300)
        except ValueError as exc:
            raise FormatError.relayed(path, str(exc)) from None
        except OSError as exc:
            raise FormatError(path, f"not a readable HDF5 file ({exc})") from None
        lm = np.asarray(lm, np.float64)
    else:
        names, lm = _supply_rows(path)
        lm = np.asarray(lm, np.float64)
    if lm.shape != (len(names), 68, 2):
        raise FormatError(path, f"landmarks_2d_detect must be ({len(names)}, 68, 2), got {lm.shape}")
    bad = np.flatnonzero(~np.isfinite(lm).all((1, 2)))
    if len(bad):
        raise FormatError(path, f"landmarks_2d_detect row {bad[0]} ({names[bad[0]]}) contains NaN or inf")
    for i, n in enumerate(names):
        if len(n.split("/")) != 3:
            raise FormatError(path, f"file_name row {i}: expected pXX/dayYY/NNNN.jpg, got {n!r}")
    return SourceSupply(file_name=names, landmarks=lm)


def _supply_rows(path: Path):
    """(file names, landmarks as nested lists) of a source_supply h5 (in :func:`read_source_supply`'s child)."""
    try:
        with h5py.File(path, "r") as f:
            for k in ("file_name", "landmarks_2d_detect"):
                if k not in f:
                    raise FormatError(path, f"no dataset {k!r} (has {sorted(f.keys())})")
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["file_name"][()].reshape(-1)]
            lm = np.asarray(f["landmarks_2d_detect"][()], np.float64)
    except FormatError:
        raise
    except Exception as exc:  # OSError (not HDF5), TypeError ...
        raise FormatError(path, f"not a readable HDF5 file ({exc})") from None
    return names, lm.tolist()
