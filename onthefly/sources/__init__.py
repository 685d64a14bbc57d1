"""Sources of frame records for the mesh cache (one module per input layout).

* :mod:`.procedural` — procedural heads in front of a source camera (the embedded default);
* :mod:`.mesh` — any OBJ/PLY with vertex colours or a UV texture plus a JSON sidecar;
* :mod:`.nv_gaze` — MPII-NV / 3DDFA meshes lifted to metric camera space with MPIIFaceGaze annotations;
* :mod:`.xgaze3d` — XGaze3D Metashape reconstructions with ETH-XGaze annotations and calibration.

Every source has ``keys()`` and ``load(key) -> FrameRecord``; bad input raises :class:`SourceError` naming the file
and line or record.
"""
from .base import FACE_CENTRE_RULES, FrameRecord, Source, SourceError, check_record

__all__ = ["FrameRecord", "Source", "SourceError", "check_record", "FACE_CENTRE_RULES"]
