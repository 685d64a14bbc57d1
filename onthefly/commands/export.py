"""``onthefly export``: write a fixed h5 dataset (one file per subject), verify one, or index one.

    onthefly export --cache CACHE --out DIR --views-per-frame N --seed S [--config FILE]
                    [--schema mpii-nv|xgaze3d|rot-mvgaze] [--layout flat|eth-xgaze] [--test-subjects ID,...]
                    [--image-size 224|448] [--compression lzf|gzip|none] [--resume] [--shard i/n]
    onthefly export --verify DIR
    onthefly export --index DIR

See ``docs/export.md`` and :mod:`onthefly.export`.
"""
from __future__ import annotations

import argparse
import sys


def add_arguments(p) -> None:
    """Arguments of ``onthefly export`` (registered by ``onthefly.cli``)."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (
        "Each file holds exactly the rows of one pass of OnTheFlyGazeDataset(cache, subjects=[s],\n"
        "seed=subject_seed(S, s), "
        "views_per_frame=N, **config) at epoch 0 (docs/export.md). Files are written as NAME.h5.tmp and renamed\n"
        "when complete; --resume continues an interrupted export; under torchrun (RANK/WORLD_SIZE) each rank\n"
        "exports its shard; index.json is written when every file is complete.\n\n"
        "examples:\n"
        "  onthefly export --cache cache.h5 --out export/ --views-per-frame 4 --seed 0 --config train.yaml\n"
        "  onthefly export --cache cache.h5 --out xgaze/ --views-per-frame 1 --seed 0 --layout eth-xgaze \\\n"
        "      --test-subjects subject0003          # ETH-XGaze's data_loader: DATA_DIR=xgaze/\n"
        "  onthefly export --cache cache.h5 --out rmv/ --views-per-frame 18 --seed 0 --schema rot-mvgaze\n"
        "  onthefly export --cache cache.h5 --out export/ --views-per-frame 4 --seed 0 --shard 1/4 --resume\n"
        "  onthefly export --verify export/")
    p.add_argument("--cache", help="mesh cache (onthefly reconstruct --out CACHE)")
    p.add_argument("--out", help="output directory (created; one h5 per subject, plus index.json)")
    p.add_argument("--views-per-frame", type=int, default=None,
                   help="K views of every source frame (rows per subject = frames x K); required")
    p.add_argument("--seed", type=int, default=None, help="dataset seed; required")
    p.add_argument("--config", default=None,
                   help="YAML/JSON file of OnTheFlyGazeDataset arguments (target, appearance, background_dir, "
                        "batch_size, camera, max_rotation_deg, subjects / split, ...); unknown keys are an error")
    p.add_argument("--schema", choices=("mpii-nv", "xgaze3d", "rot-mvgaze"), default="mpii-nv",
                   help="keys, dtypes, meanings and names (docs/export.md): mpii-nv (pXX.h5, 224 px, BGR); "
                        "xgaze3d (subjectXXXX.h5, 448 px, XGaze3D's meanings, pj_landmarks_norm, a plain green-"
                        "unlit set plus augment/); rot-mvgaze (p00.h5..p14.h5 for Rot-MVGaze's mpiinv path: RGB, "
                        "negated pitch, needs --views-per-frame 18, at most 15 subjects)")
    p.add_argument("--layout", choices=("flat", "eth-xgaze"), default="flat",
                   help="flat: OUT/NAME.h5 (default); eth-xgaze: OUT/train/NAME.h5, OUT/test/NAME.h5 and "
                        "OUT/train_test_split.json, the DATA_DIR ETH-XGaze's data_loader.py opens")
    p.add_argument("--test-subjects", default=None, metavar="ID,...",
                   help="with --layout eth-xgaze: cache subject ids written under test/ (labels kept)")
    p.add_argument("--image-size", type=int, default=None,
                   help="224 (xgaze224 camera) or 448 (xgaze448); other sizes rescale the schema's camera "
                        "(default: the schema's)")
    p.add_argument("--compression", choices=("lzf", "gzip", "none"), default="lzf",
                   help="HDF5 compression (default lzf, as the anchors)")
    p.add_argument("--resume", action="store_true",
                   help="skip complete files, continue partial .tmp files (or redo unreadable ones)")
    p.add_argument("--shard", default=None,
                   help="i/n: export every n-th subject starting at i (default: RANK/WORLD_SIZE if set, else 0/1)")
    p.add_argument("--device", default=None, help="torch device to render on (default: cuda if available, else cpu)")
    p.add_argument("--progress", choices=("bar", "lines", "none"), default="bar",
                   help="a tqdm bar (default), one line per written batch, or nothing")
    p.add_argument("--verify", metavar="DIR", default=None,
                   help="check an export directory instead (complete files, keys, shapes, dtypes, NaN, index); "
                        "exit status 1 naming each bad file")
    p.add_argument("--index", metavar="DIR", default=None,
                   help="write DIR/index.json once all shards are done (normally automatic)")


def _export(args) -> int:
    """Ctrl-C (SIGINT) anywhere before the export has returned: exit status 130 and the --resume hint (complete
    files and the declared rows of the partial ``.tmp`` files are kept; --resume on a finished export only checks
    it and writes a missing index.json)."""
    try:
        return _run_export(args)
    except KeyboardInterrupt:
        print(f"onthefly export: interrupted; complete files and the rows written so far (in {args.out}/*.h5.tmp) "
              "are kept: rerun the same command with --resume to continue", file=sys.stderr)
        return 130


def _run_export(args) -> int:
    from ..export import ExportError, ExportSettings, export, parse_shard
    from .preview import load_config

    missing = [f"--{n.replace('_', '-')}" for n in ("cache", "out", "views_per_frame", "seed")
               if getattr(args, n) is None]
    if missing:
        raise ExportError(f"missing {', '.join(missing)} (or use --verify DIR / --index DIR)")
    cfg = load_config(args.config) if args.config else {}
    tests = tuple(s.strip() for s in args.test_subjects.split(",") if s.strip()) if args.test_subjects else ()
    st = ExportSettings(args.cache, args.out, args.seed, args.views_per_frame, args.schema, args.image_size, cfg,
                        args.compression, args.device, args.layout, tests)
    rep = export(st, shard=parse_shard(args.shard), resume=args.resume, progress=args.progress)
    i, n = rep.shard
    print(f"{rep.out}: shard {i}/{n}: wrote {len(rep.written)} file(s) ({rep.rows} rows) in {rep.seconds:.1f} s"
          + (f", {len(rep.skipped)} already complete" if rep.skipped else "")
          + (f"; index {rep.index}" if rep.index else "; index.json pending (other shards)"))
    return 0


def run(args) -> int:
    from ..export import verify_export, write_index

    if args.verify is not None:
        problems = verify_export(args.verify)
        for p in problems:
            print(p)
        if problems:
            print(f"{args.verify}: INVALID ({len(problems)} problem{'s' if len(problems) > 1 else ''})",
                  file=sys.stderr)
            return 1
        print(f"{args.verify}: OK")
        return 0
    if args.index is not None:
        print(f"wrote {write_index(args.index)}")
        return 0
    return _export(args)
