"""Single-image reconstruction: a calibrated photo and its 68 landmarks → a textured face mesh for the cache.

One module per stage (``docs/reconstruction.md``)::

    manifest.py    the JSON Lines input of ``onthefly reconstruct --source images``
    landmarks.py   optional detectors: dlib 68-point, face-alignment 2D/3D FAN (local weights)
    template.py    the template head (mean procedural identity) with landmark ids, face region, mirror map
    model.py       a linear shape model of the procedural heads, fitted with the pose to the landmarks
    contour.py     jaw contour lines: iBUG jaw landmarks on the visible outline (fit and labels)
    eyes.py        eyeball centres, iris centres and iris contours of the shared topology (batch labels)
    realism.py     dlib detection / NME / head pose from detections on renders (benchmarks/realism.py)
    fit.py         head pose (PnP / annotation) and the thin-plate-spline warp onto the landmarks
    texture.py     visibility from the source view (z-buffer), UV = source pixels, mirror fill
    pipeline.py    reconstruct(): the stages in order, checks and the quality record
    metrics.py     masked PSNR / SSIM
    groundtruth.py procedural ground truth for measuring it (benchmarks/reconstruction.py)

The source that feeds the cache is :class:`onthefly.sources.images.ImageSource`.
"""
from .pipeline import Reconstruction, ReconstructionError, ReconstructOptions, estimate_head_pose, reconstruct

__all__ = ["reconstruct", "Reconstruction", "ReconstructionError", "ReconstructOptions", "estimate_head_pose"]
