"""``onthefly reconstruct --source SOURCE ... --out CACHE.h5``: build a mesh cache from a source."""
from __future__ import annotations

import sys
from pathlib import Path

SOURCES = ("procedural", "mesh", "nv-gaze", "xgaze3d", "images")


def add_arguments(p) -> None:
    """The ``reconstruct`` options (registered by ``onthefly.cli``)."""
    p.add_argument("--source", default="procedural", choices=SOURCES,
                   help="input layout (default procedural: the embedded procedural heads)")
    p.add_argument("--out", required=True, help="cache file to write (CACHE.h5); built as CACHE.h5.tmp, then renamed")
    g = p.add_argument_group("procedural")
    g.add_argument("--count", type=int, default=64, help="frames in all (default 64)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--subjects", type=int, default=8, help="identities; frames are split evenly (default 8)")
    g = p.add_argument_group("file sources (mesh, nv-gaze, xgaze3d)")
    g.add_argument("--input", help="mesh: folder of OBJ/PLY + JSON sidecars (searched recursively); nv-gaze: 3DDFA "
                   "output root (pXX/dayYY/NNNN.obj); xgaze3d: reconstruction root (subjectXXXX/frameYYYY/final_obj); "
                   "images: JSON Lines manifest (docs/reconstruction.md)")
    g.add_argument("--annotations", help="nv-gaze: MPIIFaceGaze root (pXX/pXX.txt, pXX/Calibration/Camera.mat); "
                   "xgaze3d: folder of ETH-XGaze subjectXXXX.csv")
    g.add_argument("--calibration", help="xgaze3d: folder of camXX.xml (OpenCV FileStorage)")
    g.add_argument("--face-model", help="xgaze3d: ETH-XGaze face_model.txt (50x3, user-supplied)")
    g.add_argument("--camera", default="cam00", help="xgaze3d: camera whose frame the meshes are stored in "
                   "(default cam00)")
    g.add_argument("--decimate", type=float, default=None, metavar="MM",
                   help="xgaze3d: vertex-clustering decimation with this cell size in mm (default off)")
    g = p.add_argument_group("images (single-image reconstruction, docs/reconstruction.md)")
    g.add_argument("--landmarks", default="manifest", choices=("manifest", "dlib", "fan2d", "fan3d"),
                   help="where the 68 landmarks come from: the manifest (default), dlib's 68-point predictor, or "
                   "face-alignment's 2D/3D FAN (local weights only)")
    g.add_argument("--fan-detector", default="folder", choices=("folder", "dlib"),
                   help="face detector for fan2d/fan3d: folder (the manifest's face_box) or dlib (default folder)")
    g.add_argument("--device", default="cpu", help="torch device for FAN (default cpu)")
    g.add_argument("--prefer-detector", action="store_true",
                   help="run the detector even where the manifest has landmarks")
    g.add_argument("--no-mirror-fill", action="store_true",
                   help="unseen regions take the mean face colour instead of the mirrored side")
    g.add_argument("--mark-unseen", action="store_true", help="paint unseen regions magenta")
    g = p.add_argument_group("output")
    g.add_argument("--texture-size", type=int, default=None, metavar="PX",
                   help="downsample UV textures so the longer side is at most PX (INTER_AREA), e.g. 2048")
    g.add_argument("--fp16", action="store_true", help="store vertices as float16 (relative to the face centre)")
    g.add_argument("--skip-bad", action="store_true",
                   help="skip bad records (listed at the end) instead of stopping at the first")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _need(args, name: str, source: str):
    v = getattr(args, name, None)
    if v is None:
        raise ValueError(f"--source {source} needs --{name.replace('_', '-')}")
    return v


def make_source(args):
    """The source object for parsed ``reconstruct`` arguments."""
    name = args.source
    if name == "procedural":
        from ..sources.procedural import ProceduralSource

        return ProceduralSource(args.count, args.seed, args.subjects)
    if name == "mesh":
        from ..sources.mesh import MeshSource

        return MeshSource(_need(args, "input", name))
    if name == "nv-gaze":
        from ..sources.nv_gaze import NVGazeSource

        return NVGazeSource(_need(args, "input", name), _need(args, "annotations", name))
    if name == "xgaze3d":
        from ..sources.xgaze3d import XGaze3DSource

        return XGaze3DSource(_need(args, "input", name), _need(args, "annotations", name),
                             _need(args, "calibration", name), _need(args, "face_model", name),
                             camera=getattr(args, "camera", None) or "cam00",
                             decimate=getattr(args, "decimate", None))
    if name == "images":
        from ..reconstruct.pipeline import ReconstructOptions
        from ..sources.images import ImageSource

        opts = ReconstructOptions(mirror_fill=not getattr(args, "no_mirror_fill", False),
                                  mark_unseen=bool(getattr(args, "mark_unseen", False)))
        return ImageSource(_need(args, "input", name), landmarks=getattr(args, "landmarks", None) or "manifest",
                           fan_detector=getattr(args, "fan_detector", None) or "folder",
                           device=getattr(args, "device", None) or "cpu",
                           prefer_detector=bool(getattr(args, "prefer_detector", False)), options=opts)
    raise ValueError(f"--source: unknown source {name!r}; choose one of {', '.join(SOURCES)}")


def run(args) -> int:
    from ..cache import build_cache

    source = make_source(args)
    report = build_cache(source, Path(args.out), skip_bad=bool(getattr(args, "skip_bad", False)),
                         vertex_dtype="float16" if getattr(args, "fp16", False) else "float32",
                         texture_size=getattr(args, "texture_size", None),
                         progress=not getattr(args, "quiet", False) and sys.stderr.isatty())
    rate = report.written / report.seconds if report.seconds > 0 else float("inf")
    print(f"{report.path}: {report.written} frames from source {args.source} "
          f"in {report.seconds:.1f} s ({rate:.1f} frames/s)")
    if report.skipped:
        print(f"skipped {len(report.skipped)} bad record(s):")
        for key, reason in report.skipped:
            print(f"  {key}: {reason}")
    return 0
