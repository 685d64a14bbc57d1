"""``onthefly cache info CACHE`` and ``onthefly cache validate CACHE``."""
from __future__ import annotations

import json


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def format_info(info: dict) -> str:
    subj = info["subjects"]
    shown = ", ".join(f"{s} ({n})" for s, n in list(subj.items())[:20])
    more = f", ... ({len(subj) - 20} more)" if len(subj) > 20 else ""
    share = (f"{info['topologies']} distinct topolog{'y' if info['topologies'] == 1 else 'ies'} for "
             f"{info['frames']} frames (up to {info['frames_per_topology_max']} frames share one); "
             f"{info['faces_stored']:,} faces stored for {info['faces_referenced']:,} referenced")
    lines = [
        f"cache      {info['path']}",
        f"version    {info['version']}   source: {info['source'] or '?'}   created: {info['created']}",
        f"frames     {info['frames']:,}",
        f"subjects   {len(subj)}: {shown}{more}",
        f"vertices   {info['vertices']:,} ({info['vertex_dtype']})",
        f"topology   {share}",
        f"texture    {info['vertex_colour_frames']:,} frames with vertex colours; {info['textures']} UV textures "
        f"({_size(info['texture_bytes'])})",
        f"face       {info.get('face_region_frames', 0):,} frames with a face region"
        + ("" if info.get("face_region_frames", 0) else " (batch masks cover the whole mesh)"),
        f"views      {info.get('view_frames', 0):,} frames with real cameras ({info.get('views', 0):,} views; "
        "the `cameras` target sampler renders them)",
        f"size       {_size(info['file_bytes'])} ({_size(info['bytes_per_frame'])} per frame)",
    ]
    return "\n".join(lines)


def add_arguments(p) -> None:
    """The ``cache info`` / ``cache validate`` subcommands (registered by ``onthefly.cli``)."""
    sub = p.add_subparsers(dest="cache_command", metavar="ACTION")
    q = sub.add_parser("info", help="print counts, sizes, subjects and topology sharing",
                       description="Print counts, sizes, subjects and topology sharing of a cache.")
    q.add_argument("cache", help="CACHE.h5")
    q.add_argument("--json", action="store_true", help="print the summary as JSON")
    q = sub.add_parser("validate", help="check every record; exit status 1 if any is bad",
                       description="Check every record of a cache; exit status 1 if any is bad.")
    q.add_argument("cache", help="CACHE.h5")
    q.add_argument("--max-problems", type=int, default=100, help="stop listing after this many (default 100)")


def run(args) -> int:
    from ..cache import cache_info, validate_cache

    action = getattr(args, "cache_command", None)
    if action == "info":
        info = cache_info(args.cache)
        print(json.dumps(info, indent=1) if getattr(args, "json", False) else format_info(info))
        return 0
    if action == "validate":
        problems = validate_cache(args.cache, max_problems=getattr(args, "max_problems", 100))
        if problems:
            for p in problems:
                print(p)
            print(f"{args.cache}: INVALID ({len(problems)} problem{'s' if len(problems) > 1 else ''} shown)")
            return 1
        from ..cache import MeshCache

        with MeshCache(args.cache) as c:
            n = len(c)
        print(f"{args.cache}: OK ({n} frames checked)")
        return 0
    raise ValueError("choose a subcommand: info or validate")
