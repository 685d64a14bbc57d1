#!/usr/bin/env python
"""Mesh cache benchmark: build rate (frames/s), cache bytes per frame, and load time to a device.

1. Builds a cache of ``--frames`` procedural frames (``--subjects`` identities) with ``build_cache`` and reports
   the rate, split into source time (procedural head synthesis) and writer time.
2. Rewrites it as float16 (``MeshCache`` iteration → ``CacheWriter``: the write rate without synthesis).
3. Loads all frames, and one subject, onto ``--device`` with ``MeshCache.load`` (median of ``--repeats``) and
   compares with the bare h5py reads of the same slices (per-vertex arrays, per-frame tables, topology) on an open
   file: the ratio is the share of the load spent reading; the rest is Python and tensor work.

Prints a table and saves JSON (default ``benchmarks/results/cache.json``). The OS page cache is not dropped, so
load times are warm-cache reads (disk bandwidth is not measured).

Examples::

    python benchmarks/cache.py                      # 1,000 frames, 10 subjects, CPU
    python benchmarks/cache.py --frames 200 --quick
    python benchmarks/cache.py --device cuda --keep out/bench.h5
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import h5py
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import save_json  # noqa: E402  (benchmarks/ is sys.path[0] for a script)

from onthefly.cache import CacheWriter, MeshCache, build_cache  # noqa: E402
from onthefly.sources.procedural import ProceduralSource  # noqa: E402


class TimedSource:
    """Wraps a source and accumulates the time spent in ``load``."""

    def __init__(self, source):
        self.source, self.seconds = source, 0.0
        self.name, self.attrs = source.name, getattr(source, "attrs", None)

    def keys(self):
        return self.source.keys()

    def load(self, key):
        t = time.perf_counter()
        try:
            return self.source.load(key)
        finally:
            self.seconds += time.perf_counter() - t


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def raw_read(f: h5py.File, a: int, b: int) -> None:
    """The bare h5py reads a loader of frames a..b cannot avoid: the per-vertex slices, the per-frame table slices
    and the topology (on an already open file, as ``MeshCache`` keeps it)."""
    vo = f["frames/vert_offset"][a:b + 1]
    f["verts"][vo[0]:vo[-1]]
    f["vert_colors"][vo[0]:vo[-1]]
    for name, ds in f["frames"].items():
        if name != "vert_offset":
            ds[a:b]
    f["topologies/faces"][()]


def _paired(fa, fb, repeats: int, device: torch.device) -> tuple[float, float]:
    """Medians of two timings taken alternately (fair under a noisy, shared machine)."""
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(_median_time(fa, 1, device))
        tb.append(_median_time(fb, 1, torch.device("cpu")))
    return statistics.median(ta), statistics.median(tb)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--frames", type=int, default=1000, help="frames to build (default 1000)")
    p.add_argument("--subjects", type=int, default=10, help="procedural identities (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="device to load onto (cpu, cuda)")
    p.add_argument("--repeats", type=int, default=9, help="timed load repeats, median reported (default 9)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--keep", default=None, help="keep the float32 cache at this path")
    p.add_argument("--quick", action="store_true", help="fewer repeats (3)")
    p.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "cache.json"), help="output JSON")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else args.repeats
    device = torch.device(args.device)
    tmp = tempfile.TemporaryDirectory()
    path32 = Path(args.keep) if args.keep else Path(tmp.name) / "bench32.h5"
    path16 = Path(tmp.name) / "bench16.h5"
    path32.parent.mkdir(parents=True, exist_ok=True)

    src = TimedSource(ProceduralSource(args.frames, args.seed, args.subjects, batch=64))
    t0 = time.perf_counter()
    report = build_cache(src, path32)
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    with MeshCache(path32) as c, CacheWriter(path16, source="procedural", vertex_dtype="float16") as w:
        for rec in c:
            w.add(rec)
    rewrite_s = time.perf_counter() - t0

    res = {"frames": report.written, "subjects": args.subjects}
    with MeshCache(path32) as c, h5py.File(path32, "r") as f:
        info = c.info()
        subj = c.subjects[0]
        idx = c.indices(subj)
        a, b = int(idx[0]), int(idx[-1]) + 1
        n_subj = len(idx)
        c.load(device=device)  # warm-up (page cache, CUDA context)
        raw_read(f, 0, report.written)
        load_all, raw_all = _paired(lambda: c.load(device=device), lambda: raw_read(f, 0, report.written),
                                    repeats, device)
        load_subj, raw_subj = _paired(lambda: c.load(subj, device=device), lambda: raw_read(f, a, b),
                                      repeats, device)
    with MeshCache(path16) as c:
        load16 = _median_time(lambda: c.load(device=device), repeats, device)
    size32, size16 = os.path.getsize(path32), os.path.getsize(path16)
    res.update({
        "build_frames_per_s": report.written / build_s,
        "build_source_s": src.seconds, "build_write_s": build_s - src.seconds,
        "write_only_frames_per_s": report.written / max(1e-9, build_s - src.seconds),
        "rewrite_fp16_frames_per_s": report.written / rewrite_s,
        "bytes_per_frame_fp32": size32 / report.written, "bytes_per_frame_fp16": size16 / report.written,
        "vertices_per_frame": info["vertices"] / report.written, "topologies": info["topologies"],
        "load_all_s": load_all, "load_all_raw_read_s": raw_all, "load_all_fp16_s": load16,
        "load_subject_s": load_subj, "load_subject_raw_read_s": raw_subj, "subject_frames": n_subj,
        "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    rows = [
        ("build (procedural source + write)", f"{res['build_frames_per_s']:.1f} frames/s",
         f"source {src.seconds:.1f} s, writer {build_s - src.seconds:.1f} s"),
        ("writer only", f"{res['write_only_frames_per_s']:.0f} frames/s", ""),
        ("rewrite as fp16 (read + write)", f"{res['rewrite_fp16_frames_per_s']:.0f} frames/s", ""),
        ("cache size fp32", f"{res['bytes_per_frame_fp32'] / 1024:.0f} KiB/frame",
         f"{size32 / 2**20:.1f} MiB total, {res['vertices_per_frame']:.0f} verts/frame, "
         f"{info['topologies']} topology"),
        ("cache size fp16", f"{res['bytes_per_frame_fp16'] / 1024:.0f} KiB/frame", f"{size16 / 2**20:.1f} MiB total"),
        (f"load {report.written} frames → {device}", f"{load_all * 1e3:.0f} ms",
         f"raw h5py reads {raw_all * 1e3:.0f} ms ({raw_all / load_all:.0%})"),
        (f"load {report.written} frames fp16 → {device}", f"{load16 * 1e3:.0f} ms", ""),
        (f"load 1 subject ({n_subj} frames) → {device}", f"{load_subj * 1e3:.0f} ms",
         f"raw h5py reads {raw_subj * 1e3:.0f} ms ({raw_subj / load_subj:.0%})"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"mesh cache benchmark: {report.written} procedural frames, {args.subjects} subjects, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, val, note in rows:
        print(f"  {name:<{w0}}  {val:>{w1}}  {note}")
    save_json(args.json, res)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
