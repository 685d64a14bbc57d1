"""``onthefly reconstruct --source SOURCE ... --out CACHE.h5``: build a mesh cache from a source.

The sources and their flags come from the registry (:mod:`onthefly.sources.registry`): every module of
:mod:`onthefly.sources` that registers a source adds its ``--source`` name and its own flags here.
"""
from __future__ import annotations

import sys
from pathlib import Path


def add_arguments(p) -> None:
    """The ``reconstruct`` options (registered by ``onthefly.cli``)."""
    from ..sources.registry import add_source_arguments, sources

    reg = sources()
    p.add_argument("--source", default="procedural", choices=list(reg),
                   help="input layout (default procedural: the embedded procedural heads): " +
                   "; ".join(f"{n}: {getattr(c, 'help', '')}" for n, c in reg.items()))
    p.add_argument("--out", required=True, help="cache file to write (CACHE.h5); built as CACHE.h5.tmp, then renamed")
    add_source_arguments(p)
    g = p.add_argument_group("output")
    g.add_argument("--texture-size", type=int, default=None, metavar="PX",
                   help="downsample UV textures so the longer side is at most PX (INTER_AREA), e.g. 2048 "
                   "(xgaze3d: default 2048, decoded at reduced scale)")
    g.add_argument("--fp16", action="store_true", help="store vertices as float16 (relative to the face centre)")
    g.add_argument("--skip-bad", action="store_true",
                   help="skip bad records (listed at the end) instead of stopping at the first")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def make_source(args):
    """The source object for parsed ``reconstruct`` arguments."""
    from ..sources.registry import make_source as _make

    return _make(args)


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
