"""Normalized gaze h5 files: the schemas (one field table each) and ``H5GazeDataset``, a map-style reader.

**Schemas.** Every h5 layout this project writes or reads is declared once, in :data:`SCHEMAS`: a table of
:class:`Field` rows (h5 key, batch/item key, row shape, dtype, encode, decode, meaning). The exporter
(:mod:`onthefly.export`) writes a file with the table's encoders, ``onthefly export --verify`` checks it against the
table's shapes and dtypes, and :class:`H5GazeDataset` reads it back with the table's decoders. Adding a field to a
schema is one row. The schemas (``docs/export.md`` has the full tables):

* ``mpii-nv``: Gaze-NV-Rendering's ``pXX.h5`` keys (BGR patches, ETH-XGaze signs, ``rotation_matrix`` = Q) plus
  this project's mask, landmarks and indices;
* ``xgaze3d``: XGaze3D's ``subjectXXXX.h5`` keys with XGaze3D's meanings (``frame_index`` = frame number,
  ``cam_index`` = camera + 1, ``face_mat_norm`` = R of camera i, ``rotation_matrix`` = identity,
  ``pj_landmarks_norm`` (50 points)), and ``cache_index`` = this project's frame index;
* ``rot-mvgaze``: the files Rot-MVGaze's ``GazeDataset`` reads through its MPII-NV (``mpiinv``) path: **RGB**
  patches and **negated** head-pose pitch (that path flips it back), 18 views per frame in frame-major blocks;
* ``eth-xgaze``: the official normalized ETH-XGaze files (and real XGaze3D / MPII-NV files, which use the same
  key names): read only; what a file without an onthefly ``schema`` attribute is read as.

**Reader.** :class:`H5GazeDataset` reads exports of any schema and the official ETH-XGaze-layout files (train or
the unlabelled test split). Items are dicts with the same keys, dtypes and layout as
:class:`onthefly.dataset.OnTheFlyGazeDataset` batches (one sample, no batch dimension), for the keys the files hold:
``image`` (3,H,W) float32 RGB, ``gaze`` (2,), ``head_pose`` (2,) (NaN when labelled files have none), ``mask``
(1,H,W), ``landmarks_2d`` (68,2), ``landmarks_50`` (50,2), ``face_mat_norm``, ``rotation_matrix`` (3,3),
``frame_index``, ``cam_index``, ``frame_number`` () int64, and ``subject_index`` (the file's position). Optional
keys appear only when every file has them. It cannot read the official normalized MPIIFaceGaze ``.mat`` files
(MATLAB ``Data/data`` + ``Data/label``): :func:`check_h5` says so. Files open lazily, read-only, in the process that
reads (DataLoader workers reopen after fork), with ``swmr=True`` where the file allows it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from ._isolated import call_isolated, can_isolate
from .dataset import IMAGENET_MEAN, IMAGENET_STD
from .geometry import pitchyaw_to_rotation

__all__ = ["H5GazeDataset", "check_h5", "open_h5", "Field", "H5Schema", "SCHEMAS", "EncodeContext",
           "LM68_FROM_50", "XGAZE3D_STORED_GREEN"]

#: 68-point (iBUG) index of each of the 50 rows of ETH-XGaze's face_model.txt (``lm50[0]=lm68[8]``,
#: ``[1:44]=lm68[17:60]``, ``[44:47]=lm68[61:64]``, ``[47:50]=lm68[65:68]``)
LM68_FROM_50 = np.r_[8, np.arange(17, 60), np.arange(61, 64), np.arange(65, 68)]
#: XGaze3D's background ``[0, 110, 0]`` in the [0,1] scale, ×255 and cast to uint8: 28050 mod 256 = 146
XGAZE3D_STORED_GREEN = int(np.array(110.0 * 255.0).astype(np.int64) % 256)


# ----------------------------------------------------------------------------------------------- field tables
@dataclass
class EncodeContext:
    """What the encoders need besides the flat batch: views per frame K, samples kept, the schema's cam_index base,
    whether to store XGaze3D's wrapped green background, and a cache row → frame number look-up table."""

    views_per_frame: int
    take: int
    cam_base: int = 0
    stored_green: bool = False
    frame_number: torch.Tensor | None = None


def _u8(x: torch.Tensor):
    """``round(255·x)`` as uint8 (a numpy array from the compiled kernel on the CPU, a tensor on a GPU)."""
    if x.device.type == "cpu" and x.dtype == torch.float32:
        from .h5_fast import u8_plane

        return u8_plane(x.numpy())
    return x.mul(255).round_().clamp_(0, 255).to(torch.uint8)


def _enc_patch(order: str):
    # XGaze3D stores its green as uint8(110·255) = 146: img + (146-110)/255 · background
    green = (XGAZE3D_STORED_GREEN - 110) / 255.0

    def enc(b: dict, ctx: EncodeContext):
        img = b["image"]
        if img.device.type == "cpu" and img.dtype == torch.float32:  # one compiled pass
            from .h5_fast import u8_rows

            return u8_rows(img.numpy(), order == "BGR", green if ctx.stored_green else 0.0,
                           b["coverage"].numpy() if ctx.stored_green else None)
        if ctx.stored_green:
            img = img.clone()
            img[:, 1] += green * (1 - b["coverage"][:, 0])
        img = _u8(img)
        return (img.flip(1) if order == "BGR" else img).permute(0, 2, 3, 1)
    return enc


def _dec_patch(order: str):
    def dec(a: np.ndarray) -> np.ndarray:
        return a[..., ::-1] if order == "BGR" else a
    return dec


def _enc_pitch(sign: float):
    def enc(b: dict, ctx: EncodeContext) -> torch.Tensor:
        hp = b["head_pose"].double().clone()
        hp[:, 0] *= sign
        return hp
    return enc


def _dec_pitch(sign: float):
    def dec(a: np.ndarray) -> np.ndarray:
        a = a[:, :2].astype(np.float64)
        a[:, 0] *= sign
        return a
    return dec


def _enc_q(b: dict, ctx: EncodeContext) -> torch.Tensor:
    """MPII-NV's Q = rot(−p_t, y_t, 0)·rot(−p_s, y_s, 0)⁻¹ = Ry(y_t)Rx(−p_t)·(Ry(y_s)Rx(−p_s))ᵀ (target, source)."""
    return pitchyaw_to_rotation(b["target_pose"].double()) @ \
        pitchyaw_to_rotation(b["source_head_pose"].double()).transpose(-1, -2)


def _enc_identity(b: dict, ctx: EncodeContext) -> torch.Tensor:
    return torch.eye(3, dtype=torch.float64).expand(len(b["gaze"]), 3, 3)


def _enc_slot(b: dict, ctx: EncodeContext) -> torch.Tensor:
    return torch.arange(ctx.views_per_frame).repeat(ctx.take) + ctx.cam_base


def _enc_frame_number(b: dict, ctx: EncodeContext) -> torch.Tensor:
    assert ctx.frame_number is not None  # set for the schemas that store frame numbers
    return ctx.frame_number[b["frame_index"].cpu()]


def _enc_pj50(b: dict, ctx: EncodeContext) -> torch.Tensor:
    # XGaze3D projects its posed 3-D face model: fixed points (the batch's fixed-vertex landmarks), not the
    # outline points of landmarks_norm (real-formats.md §2: main_render.py 264, 278, 290)
    return b["landmarks_2d_fixed"][:, torch.from_numpy(LM68_FROM_50)]


def _chk_slot(x: np.ndarray, a: dict) -> str | None:
    K, base = int(a.get("views_per_frame", 1)), int(a.get("cam_index_base", 0))
    if ((x < base) | (x >= base + K)).any():
        return f"'cam_index' outside {base}..{base + K - 1}"
    return None


def _chk_nonneg(key: str):
    def chk(x: np.ndarray, a: dict) -> str | None:
        return f"negative '{key}'" if (x < 0).any() else None
    return chk


@dataclass(frozen=True)
class Field:
    """One h5 dataset of a schema.

    ``key``: the h5 name; ``item``: the batch key it is encoded from by default and the item key it is read back as
    (None: not read back); ``shape``: row shape (``"H"``/``"W"`` = image size); ``dtype``: stored dtype;
    ``encode(batch, ctx)``: flat batch → (N, ...) tensor (default ``batch[item]``); ``decode(array)``: stored rows →
    item layout (default: as stored); ``image``: one row per HDF5 chunk; ``check(block, attrs)``: a verify rule;
    ``nan_ok``: NaN means "not available" (inf is still refused)."""

    key: str
    item: str | None
    shape: tuple
    dtype: str
    meaning: str
    encode: Callable | None = None
    decode: Callable | None = None
    image: bool = False
    check: Callable | None = None
    #: NaN is a valid value ("not available", e.g. eye geometry of a scan): --verify and --resume accept it
    nan_ok: bool = False

    def row_shape(self, H: int, W: int) -> tuple:
        return tuple(H if d == "H" else W if d == "W" else d for d in self.shape)


@dataclass(frozen=True)
class H5Schema:
    """A file layout: its field table, naming and export rules.

    ``file_format``/``id_pattern``: file names (cache ids verbatim when all match ``id_pattern``, else positional;
    ``id_pattern`` None: always positional); ``views_per_frame``: the required K (None: any); ``max_files``: the
    most files a client opens; ``file_sets``: (sub-folder, appearance override or None = the config's, store
    XGaze3D's wrapped green) — one file per subject in each set; ``writable``: False for read-only tables."""

    name: str
    fields: tuple
    color_order: str = "BGR"
    pitch_sign: float = 1.0
    file_format: str = "p{:02d}"
    id_pattern: str | None = None
    default_size: int = 224
    base_camera: str = "xgaze224"
    cam_base: int = 0
    views_per_frame: int | None = None
    max_files: int | None = None
    file_sets: tuple = (("", None, False),)
    writable: bool = True
    description: str = ""

    @property
    def keys(self) -> tuple:
        return tuple(f.key for f in self.fields)

    @property
    def dtypes(self) -> dict:
        return {f.key: f.dtype for f in self.fields}

    def field(self, key: str) -> Field:
        return next(f for f in self.fields if f.key == key)

    def row_shapes(self, H: int, W: int) -> dict:
        return {f.key: f.row_shape(H, W) for f in self.fields}

    def encode(self, batch: dict, ctx: EncodeContext) -> dict:
        """A flat batch (N = take·K rows) as numpy rows of every field, in the stored dtypes."""
        out = {}
        for f in self.fields:
            v = f.encode(batch, ctx) if f.encode is not None else batch[f.item]
            if torch.is_tensor(v):
                v = v.cpu().numpy()
            out[f.key] = np.ascontiguousarray(v.astype(f.dtype, copy=False))
        return out

    def readable(self) -> dict:
        """{item key: field} of the fields read back (the first field of an item key wins)."""
        m: dict = {}
        for f in self.fields:
            if f.item is not None and f.item not in m:
                m[f.item] = f
        return m


_GAZE = "(pitch, yaw) radians, ETH-XGaze signs: pitch = asin(-g_y), yaw = atan2(-g_x, -g_z); pitch > 0 up"
_HEAD = "(pitch, yaw) radians of the head, pitch = asin(H[1,2]), yaw = atan2(H[0,2], H[2,2])"
_BGR_PATCH = Field("face_patch", "image", ("H", "W", 3), "uint8", "BGR image, round(255·x) of the batch's RGB image",
                   _enc_patch("BGR"), _dec_patch("BGR"), image=True)
_MASK = Field("face_mask", "mask", ("H", "W"), "uint8", "0..255 face mask (brows to chin) or the mesh coverage",
              lambda b, c: _u8(b["mask"][:, 0]), image=True)
_LM68 = Field("landmarks_norm", "landmarks_2d", (68, 2), "float32",
              "68 landmarks in the normalized image, OpenCV pixels, iBUG semantics (jaw points, and a brow end the "
              "head's turn hides, on the rendered outline, as a 300-W-trained detector marks them; "
              "docs/conventions.md)")
#: per-view eye geometry (3DGazeNet's supervision), float32, normalized camera (mm) / normalized image (px);
#: NaN for meshes without eye geometry (docs/dataset.md)
_EYES = tuple(Field(k, k, shape, "float32", meaning, nan_ok=True) for k, shape, meaning in (
    ("eyeball_centres_3d", (2, 3), "eyeball centres (right, left eye), normalized camera, mm"),
    ("eyeball_centres_2d", (2, 2), "eyeball centres projected, normalized image pixels"),
    ("iris_centres_3d", (2, 3), "iris centres, normalized camera, mm"),
    ("iris_centres_2d", (2, 2), "iris centres projected, normalized image pixels"),
    ("iris_contours_3d", (2, 8, 3), "8-point iris contour per eye, normalized camera, mm"),
    ("iris_contours_2d", (2, 8, 2), "8-point iris contour per eye projected, normalized image pixels")))
_V = "rotation source camera -> this view, V; the R of virtual camera i (the source camera moved to the view's " \
     "centre), so R_j·R_iᵀ is the views' relative rotation"
_Q = "Q = Ry(y_t)Rx(-p_t)·(Ry(y_s)Rx(-p_s))ᵀ, source normalized view -> this view (MPII-NV's Q, before any " \
     "re-normalization; here R_new = I, so Q = V·R_srcᵀ)"

SCHEMAS: dict[str, H5Schema] = {
    "mpii-nv": H5Schema("mpii-nv", (
        _BGR_PATCH, _MASK,
        Field("face_gaze", "gaze", (2,), "float64", _GAZE),
        Field("face_head_pose", "head_pose", (2,), "float64", _HEAD),
        Field("face_mat_norm", "face_mat_norm", (3, 3), "float32", _V),
        Field("rotation_matrix", "rotation_matrix", (3, 3), "float64", _Q, _enc_q),
        _LM68, *_EYES,
        Field("frame_index", "frame_index", (), "int64", "cache row of the source frame (a frame's views share it)",
              check=_chk_nonneg("frame_index")),
        Field("cam_index", "cam_index", (), "int64", "view slot k of the frame's K views, 0-based", _enc_slot,
              check=_chk_slot),
    ), file_format="p{:02d}", id_pattern=r"p\d+", default_size=224, base_camera="xgaze224",
        description="Gaze-NV-Rendering pXX.h5 keys"),
    "xgaze3d": H5Schema("xgaze3d", (
        _BGR_PATCH, _MASK,
        Field("face_gaze", "gaze", (2,), "float64", _GAZE),
        Field("face_head_pose", "head_pose", (2,), "float32", _HEAD),
        Field("face_mat_norm", "face_mat_norm", (3, 3), "float32", _V),
        Field("rotation_matrix", None, (3, 3), "float64", "identity, as XGaze3D writes it", _enc_identity),
        _LM68,
        Field("pj_landmarks_norm", "landmarks_50", (50, 2), "float32",
              "the 50 face-model points (68->50 mapping of the projected fixed 3-D landmarks, AFLW2000-3D "
              "semantics: the chin and brow ends are fixed vertices), normalized image pixels",
              _enc_pj50),
        *_EYES,
        Field("frame_index", "frame_number", (), "int64",
              "XGaze3D's frame number: the trailing digits of the cache frame id (frame0003 -> 3; else the frame's "
              "position in the subject)", _enc_frame_number, check=_chk_nonneg("frame_index")),
        Field("cam_index", "cam_index", (), "int64", "camera + 1 (XGaze3D): virtual camera = view slot k, k + 1",
              _enc_slot, check=_chk_slot),
        Field("cache_index", "frame_index", (), "int64", "cache row of the source frame (onthefly's frame_index)",
              lambda b, c: b["frame_index"], check=_chk_nonneg("cache_index")),
    ), file_format="subject{:04d}", id_pattern=r"subject\d+", default_size=448, base_camera="xgaze448", cam_base=1,
        file_sets=(("", {"preset": "xgaze3d", "modes": [{"weight": 1.0, "background": "green", "light": "none"}],
                         "jitter": None}, True),
                   ("augment", None, False)),
        description="XGaze3D subjectXXXX.h5 keys and meanings; plain green-unlit set + augment/ set"),
    "rot-mvgaze": H5Schema("rot-mvgaze", (
        Field("face_patch", "image", ("H", "W", 3), "uint8", "RGB image (Rot-MVGaze's mpiinv path reads it as is)",
              _enc_patch("RGB"), _dec_patch("RGB"), image=True),
        _MASK,
        Field("face_gaze", "gaze", (2,), "float64", _GAZE),
        Field("face_head_pose", "head_pose", (2,), "float64",
              "(-pitch, yaw): pitch negated, as Rot-MVGaze's mpiinv path negates it back", _enc_pitch(-1.0),
              _dec_pitch(-1.0)),
        Field("face_mat_norm", "face_mat_norm", (3, 3), "float32", _V),
        Field("rotation_matrix", "rotation_matrix", (3, 3), "float64", _Q, _enc_q),
        _LM68, *_EYES,
        Field("frame_index", "frame_index", (), "int64", "cache row of the source frame (an 18-row block shares it)",
              check=_chk_nonneg("frame_index")),
        Field("cam_index", "cam_index", (), "int64", "view slot k = row % 18 (Rot-MVGaze's camera sets select it)",
              _enc_slot, check=_chk_slot),
    ), color_order="RGB", pitch_sign=-1.0, file_format="p{:02d}", id_pattern=None, default_size=224,
        base_camera="xgaze224", views_per_frame=18, max_files=15,
        description="Rot-MVGaze mpiinv files p00.h5..p14.h5"),
    "eth-xgaze": H5Schema("eth-xgaze", (
        _BGR_PATCH,
        Field("face_gaze", "gaze", (2,), "float64", _GAZE + " (absent in the test split)"),
        Field("face_head_pose", "head_pose", (2,), "float64", _HEAD, decode=_dec_pitch(1.0)),
        Field("face_mask", "mask", ("H", "W"), "uint8", "MPII-NV's face mask 0..255"),
        Field("landmarks_norm", "landmarks_2d", (68, 2), "float32", "68 landmarks (XGaze3D)"),
        Field("facial_landmarks", "landmarks_2d", (68, 2), "float64", "68 landmarks (ETH-XGaze)"),
        Field("pj_landmarks_norm", "landmarks_50", (50, 2), "float32", "50 projected face-model points (XGaze3D)"),
        Field("face_mat_norm", "face_mat_norm", (3, 3), "float64", "normalization rotation R"),
        Field("rotation_matrix", "rotation_matrix", (3, 3), "float64", "Q (MPII-NV); identity (XGaze3D)"),
        Field("frame_index", "frame_index", (1,), "int64", "frame folder number"),
        Field("cam_index", "cam_index", (1,), "int64", "0-based camera (ETH-XGaze), camera + 1 (XGaze3D)"),
    ), writable=False, description="official normalized ETH-XGaze files (read only)"),
}

#: fields read as (N,) int64
_INT_ITEMS = ("frame_index", "cam_index", "frame_number")


# ----------------------------------------------------------------------------------------------- reading
def open_h5(path):
    """Open an h5 file read-only, SWMR-safe where the file format allows it (else a plain read-only open)."""
    try:
        return h5py.File(path, "r", swmr=True)
    except (OSError, ValueError):
        return h5py.File(path, "r")


_MAT_HINT = ("the official normalized MPIIFaceGaze .mat files (MATLAB 'Data/data' images + 'Data/label' "
             "gaze/head pose) cannot be read by H5GazeDataset; convert them to the ETH-XGaze h5 layout (face_patch "
             "(N,H,W,3) BGR uint8, face_gaze (N,2) pitch-yaw radians) first")


def _mat_header(p: Path) -> str | None:
    try:
        with open(p, "rb") as fh:
            head = fh.read(128)
    except OSError:
        return None
    return head[:20].decode("latin-1") if head.startswith(b"MATLAB") else None


def file_schema(f) -> H5Schema:
    """The schema of an open file: its onthefly ``schema`` attribute, else the official ETH-XGaze table."""
    s = f.attrs.get("schema")
    s = s.decode() if isinstance(s, bytes) else s
    if f.attrs.get("format") is not None and s in SCHEMAS:
        return SCHEMAS[s]
    return SCHEMAS["eth-xgaze"]


def check_h5(path, image_size: tuple[int, int] | None = None, require_labels: bool = True) -> int:
    """Check an h5 file of a known schema (exports, official ETH-XGaze layout); returns its sample count.

    ``require_labels``: a file without ``face_gaze`` (the unlabelled ETH-XGaze test split) is an error unless False
    (inference). Clear ``ValueError`` naming the file otherwise (including the official MPIIFaceGaze ``.mat``)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"h5 file not found: {p}")
    if can_isolate():  # opened and checked in a forked child first: h5py can crash the process on a corrupt file
        try:
            return int(call_isolated(_check_h5_child, p, image_size, require_labels, timeout=300)["n"])
        except OSError as exc:
            raise ValueError(f"{p}: not a readable h5 file ({exc})") from None
    return _check_h5(p, image_size, require_labels)


def _check_h5_child(p: Path, image_size, require_labels: bool) -> dict:
    return {"n": np.array(_check_h5(p, image_size, require_labels))}


def _check_h5(p: Path, image_size, require_labels: bool) -> int:
    mat = _mat_header(p)
    try:
        f = open_h5(p)
    except (OSError, RuntimeError) as e:  # a damaged superblock / header raises RuntimeError (tests/fuzz)
        if mat or p.suffix.lower() == ".mat":
            raise ValueError(f"{p}: a MATLAB file{f' ({mat.strip()})' if mat else ''}: {_MAT_HINT}") from None
        raise ValueError(f"{p}: not a readable h5 file ({e})") from None
    try:
        with f:
            return _check_open_h5(p, f, image_size, mat, require_labels)
    except (KeyError, RuntimeError, OSError, TypeError, ValueError) as exc:  # a damaged file (tests/fuzz)
        if isinstance(exc, ValueError) and str(p) in str(exc):
            raise
        raise ValueError(f"{p}: damaged h5 file ({type(exc).__name__}: {str(exc)[:200]})") from None


def _check_open_h5(p: Path, f, image_size, mat, require_labels: bool) -> int:
    """The checks of :func:`check_h5` on the open file."""
    if "complete" in f.attrs and not bool(f.attrs["complete"]):
        raise ValueError(f"{p}: an incomplete onthefly export (its 'complete' attribute is false)")
    if "face_patch" not in f:
        if mat or "Data" in f:
            raise ValueError(f"{p}: a MATLAB v7.3 file with 'Data': {_MAT_HINT}")
        raise ValueError(f"{p}: no 'face_patch' dataset (the ETH-XGaze layout has face_patch (N,H,W,3) BGR uint8 "
                         f"and face_gaze (N,2) pitch-yaw radians; it has {sorted(f.keys())[:8]})")
    fp = f["face_patch"]
    if fp.ndim != 4 or fp.shape[-1] != 3 or fp.dtype != np.uint8:
        raise ValueError(f"{p}: face_patch must be (N,H,W,3) uint8 BGR, got {fp.shape} {fp.dtype}")
    if "face_gaze" in f:
        fg = f["face_gaze"]
        if fg.ndim != 2 or fg.shape[1] != 2 or fg.shape[0] != fp.shape[0]:
            raise ValueError(f"{p}: face_gaze must be (N,2) matching face_patch's N={fp.shape[0]}, got {fg.shape}")
    elif require_labels:
        raise ValueError(f"{p}: no 'face_gaze' labels (an unlabelled file, e.g. the ETH-XGaze test split); pass "
                         f"require_labels=False to read its images for inference")
    if image_size is not None and tuple(fp.shape[1:3]) != tuple(image_size):
        raise ValueError(f"{p}: face_patch is {fp.shape[1]}x{fp.shape[2]} (HxW) but the configured camera gives "
                         f"{image_size[0]}x{image_size[1]} images: set data.image_size / data.camera to match")
    if fp.shape[0] == 0:
        raise ValueError(f"{p}: no samples")
    return int(fp.shape[0])


def _to_images(rgb: np.ndarray, image_format: str) -> torch.Tensor:
    """(N,H,W,3) RGB uint8 → (N,3,H,W) float RGB in [0,1] or ImageNet-normalized."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float().div_(255)
    if image_format == "imagenet":
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return x


def _file_fields(paths: list[Path]) -> tuple[list[dict[str, Field]], list[H5Schema]]:
    """Per file, {item key: field} of the fields that every file holds (under one of their names)."""
    per_file, schemas = [], []
    for p in paths:
        with open_h5(p) as f:
            sch = file_schema(f)
            keys = set(f.keys())
        m: dict[str, Field] = {}
        for fld in sch.fields:
            if fld.item is not None and fld.key in keys and fld.item not in m:
                m[fld.item] = fld
        per_file.append(m)
        schemas.append(sch)
    common = set.intersection(*(set(m) for m in per_file))
    return [{k: v for k, v in m.items() if k in common} for m in per_file], schemas


class H5GazeDataset(Dataset):
    """Normalized samples from h5 files (exports of every schema, official ETH-XGaze layout); item i → the dict
    described in the module docstring (always ``image`` and ``subject_index``; ``gaze`` and ``head_pose`` when the
    files are labelled; the other keys when every file has them), decoded by each file's schema (colour order,
    pitch sign).

    Args:
        paths: one path or a list; samples are numbered file after file.
        image_format: ``"unit"`` (RGB in [0, 1]) or ``"imagenet"`` (ImageNet mean/std normalized).
        image_size: expected (H, W), checked up front (None: any, but all files must agree).
        max_samples: use at most the first this many samples.
        require_labels: False reads unlabelled files (the ETH-XGaze test split; inference): items then have no
            ``gaze``/``head_pose`` unless every file has ``face_gaze``. True (default): such files are an error.

    ``take(indices)`` reads a batch at once (sorted h5 fancy indexing, duplicates allowed) and returns batched
    tensors. Files open lazily per process (safe with forked DataLoader workers)."""

    def __init__(self, paths, image_format: str = "unit", image_size: tuple[int, int] | None = None,
                 max_samples: int | None = None, require_labels: bool = True):
        if image_format not in ("unit", "imagenet"):
            raise ValueError(f"image_format: expected 'unit' or 'imagenet', got {image_format!r}")
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        if not self.paths:
            raise ValueError("h5: no files given")
        self.counts = [check_h5(p, image_size, require_labels) for p in self.paths]
        sizes = set()
        for p in self.paths:
            with open_h5(p) as f:
                sizes.add(tuple(f["face_patch"].shape[1:3]))
        if len(sizes) > 1:
            raise ValueError(f"h5: the files have different image sizes {sorted(sizes)}: {self.paths[:4]}")
        self.fields, self.schemas = _file_fields(self.paths)
        #: every file has face_gaze (items carry gaze and head_pose)
        self.labelled = "gaze" in self.fields[0]
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.n = int(self.offsets[-1]) if max_samples is None else min(int(self.offsets[-1]), int(max_samples))
        self.image_format = image_format
        self._files: list | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.n

    def _open(self):
        if self._files is None or self._pid != os.getpid():  # lazily, and again in a forked worker
            self._files = [open_h5(p) for p in self.paths]
            self._pid = os.getpid()
        return self._files

    def _read_file(self, f, k: int, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """Rows (any order, duplicates allowed) of file ``f`` (number ``k``) as batched tensors."""
        uniq, inv = np.unique(rows, return_inverse=True)
        n = len(rows)
        out = {}
        for key, fld in self.fields[k].items():
            a = f[fld.key][uniq][inv]
            if fld.decode is not None:
                a = fld.decode(a)
            if key == "image":
                out[key] = _to_images(a, self.image_format)
            elif key == "mask":
                out[key] = torch.from_numpy(a[:, None].astype(np.float32) / 255.0)
            elif key in _INT_ITEMS:
                out[key] = torch.from_numpy(a.reshape(n).astype(np.int64))
            else:
                out[key] = torch.from_numpy(np.ascontiguousarray(a.astype(np.float32)))
        if self.labelled and "head_pose" not in out:
            out["head_pose"] = torch.full((n, 2), float("nan"))
        out["subject_index"] = torch.full((n,), k, dtype=torch.int64)
        return out

    def take(self, indices) -> dict[str, torch.Tensor]:
        """The samples ``indices`` as one batch (dict of (n, ...) tensors, in the order given)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n):
            raise IndexError(f"h5: index out of range for {self.n} samples")
        files = self._open()
        order = np.argsort(idx, kind="stable")
        sidx = idx[order]
        fi = np.searchsorted(self.offsets, sidx, side="right") - 1
        parts = []
        for k in np.unique(fi):
            try:
                parts.append(self._read_file(files[k], int(k), sidx[fi == k] - self.offsets[k]))
            except (OSError, RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:  # damaged (tests/fuzz)
                raise ValueError(f"{self.paths[k]}: cannot read samples ({type(exc).__name__}: "
                                 f"{str(exc)[:200]})") from None
        inverse = torch.from_numpy(np.argsort(order))
        return {key: torch.cat([p[key] for p in parts])[inverse] for key in parts[0]}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.take([i]).items()}

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_files"] = None
        return d

    def close(self) -> None:
        """Close the files this process opened."""
        for f in self._files or []:
            f.close()
        self._files = None
