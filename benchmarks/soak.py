"""Soak: 10,000 batches of the on-the-fly dataset and a 2,000-batch export in one process, watching for leaks.

Samples, every ``--every`` batches, the process's resident memory (VmRSS), its open file descriptors
(``/proc/self/fd``) and the bytes under its temporary directory (``TMPDIR`` is pointed at a fresh folder for the
run, so anything written through ``tempfile`` is counted; the machine-wide ``/tmp`` is shared and is reported for
information only). After a warm-up (the first ``--warmup`` fraction of the batches) the RSS must be flat: the
least-squares slope is reported in MiB per 1,000 batches, and the growth over the run after the warm-up.

    python benchmarks/soak.py                          # 10,000 dataset batches + a 2,000-batch export (CPU)
    python benchmarks/soak.py --batches 500 --export-batches 100      # quick

Small on purpose (CPU, 16 px images, batches of 4 frames x 1 view; the export one frame per batch): the point is
the per-batch bookkeeping (tensors, HDF5 handles, threads, temp files), not the pixels. Prints a table and saves
``benchmarks/results/soak.json``.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import save_json  # noqa: E402  (benchmarks/ is sys.path[0] for a script)


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmRSS:")) / 1024


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def tree_bytes(d: Path) -> int:
    total = 0
    for root, _, files in os.walk(d):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


class Monitor:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.rows: list[tuple[int, float, int, int]] = []

    def sample(self, i: int) -> None:
        self.rows.append((i, rss_mib(), open_fds(), tree_bytes(self.tmp)))

    def summary(self, warmup: float) -> dict:
        a = np.array(self.rows, dtype=np.float64)
        n = a[-1, 0]
        w = a[a[:, 0] >= warmup * n]
        slope = float(np.polyfit(w[:, 0], w[:, 1], 1)[0] * 1000) if len(w) >= 3 else float("nan")
        return {"batches": int(n), "samples": len(a), "rss_start_mib": round(a[0, 1], 1),
                "rss_after_warmup_mib": round(w[0, 1], 1), "rss_end_mib": round(a[-1, 1], 1),
                "rss_max_mib": round(a[:, 1].max(), 1),
                "rss_growth_after_warmup_mib": round(w[-1, 1] - w[0, 1], 2),
                "rss_slope_mib_per_1000_batches": round(slope, 3),
                "fds_after_warmup": int(w[0, 2]), "fds_end": int(a[-1, 2]), "fds_max": int(a[:, 2].max()),
                "tmp_bytes_after_warmup": int(w[0, 3]), "tmp_bytes_end": int(a[-1, 3])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=10_000)
    ap.add_argument("--export-batches", type=int, default=2_000)
    ap.add_argument("--every", type=int, default=100, help="sample every N batches (default 100)")
    ap.add_argument("--warmup", type=float, default=0.1, help="fraction of the run before RSS must be flat")
    ap.add_argument("--size", type=int, default=16, help="image size in px (default 16)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-slope", type=float, default=1.0,
                    help="pass if the RSS slope after warm-up is below this many MiB per 1,000 batches")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "soak.json"))
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="onthefly-soak-"))
    tmp = work / "tmp"
    tmp.mkdir()
    os.environ["TMPDIR"] = str(tmp)
    tempfile.tempdir = str(tmp)
    import torch

    torch.set_num_threads(args.threads)
    from onthefly.cache import build_cache
    from onthefly.dataset import OnTheFlyGazeDataset
    from onthefly.export import ExportSettings, export
    from onthefly.normalization import NormalizedCamera
    from onthefly.sources.procedural import ProceduralSource

    sys_tmp = Path("/tmp")
    sys_tmp_before = len(os.listdir(sys_tmp))
    t0 = time.perf_counter()
    result: dict = {"host": platform.node(), "load_average_start": [round(x, 2) for x in os.getloadavg()],
                    "threads": args.threads, "image_size": args.size}
    try:
        # ------------------------------------------------------------------------------------ dataset
        cache = work / "cache.h5"
        build_cache(ProceduralSource(count=32, seed=0, subjects=4), cache)
        cam = NormalizedCamera(1280 * args.size / 224, 600.0, args.size, args.size, f"soak{args.size}")
        ds = OnTheFlyGazeDataset(cache, seed=0, batch_size=4, views_per_frame=1, camera=cam, device="cpu",
                                 appearance="plain")
        per_epoch = len(ds)
        mon = Monitor(tmp)
        mon.sample(0)
        t = time.perf_counter()
        checksum = 0.0
        for i in range(args.batches):
            b = ds.batch(i % per_epoch, i // per_epoch)
            checksum += float(b["gaze"][0, 0])
            del b
            if (i + 1) % args.every == 0:
                mon.sample(i + 1)
        result["dataset"] = {**mon.summary(args.warmup), "seconds": round(time.perf_counter() - t, 1),
                             "batch_size": 4, "batches_per_epoch": per_epoch}
        del ds

        # ------------------------------------------------------------------------------------ export
        n_frames = args.export_batches  # one frame per batch
        ecache = work / "export-cache.h5"
        build_cache(ProceduralSource(count=n_frames, seed=1, subjects=4), ecache)
        import onthefly.export as E

        emon = Monitor(tmp)
        emon.sample(0)
        calls = {"n": 0}
        orig = E.batch_to_rows

        def counted(*a, **kw):
            calls["n"] += 1
            if calls["n"] % args.every == 0:
                emon.sample(calls["n"])
            return orig(*a, **kw)

        E.batch_to_rows = counted
        t = time.perf_counter()
        try:
            rep = export(ExportSettings(ecache, work / "export", 0, 1, image_size=args.size, device="cpu",
                                        config={"batch_size": 1, "appearance": "plain"}), progress="none")
        finally:
            E.batch_to_rows = orig
        emon.sample(calls["n"])
        problems = E.verify_export(work / "export")
        result["export"] = {**emon.summary(args.warmup), "seconds": round(time.perf_counter() - t, 1),
                            "rows": rep.rows, "files": len(rep.written), "verify_problems": len(problems)}
    finally:
        result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        result["system_tmp_entries_delta"] = len(os.listdir(sys_tmp)) - sys_tmp_before
        result["seconds"] = round(time.perf_counter() - t0, 1)
        shutil.rmtree(work, ignore_errors=True)

    ok = []
    for part in ("dataset", "export"):
        r = result[part]
        r["pass"] = bool(r["rss_slope_mib_per_1000_batches"] < args.max_slope  # growth (freeing is fine)
                         and r["fds_end"] <= r["fds_after_warmup"] and r["tmp_bytes_end"] <= r["tmp_bytes_after_warmup"]
                         and r.get("verify_problems", 0) == 0)
        ok.append(r["pass"])
    print(f"soak ({result['seconds']:.0f} s, load average {result['load_average_start'][0]:.1f} -> "
          f"{result['load_average_end'][0]:.1f}, {args.threads} torch thread(s), {args.size} px)")
    print("| run | batches | RSS after warm-up -> end (MiB) | slope (MiB / 1000 batches) | fds after warm-up -> end "
          "(max) | TMPDIR bytes | s | pass |")
    print("|---|---|---|---|---|---|---|---|")
    for part in ("dataset", "export"):
        r = result[part]
        print(f"| {part} | {r['batches']} | {r['rss_after_warmup_mib']} -> {r['rss_end_mib']} | "
              f"{r['rss_slope_mib_per_1000_batches']:+.3f} | {r['fds_after_warmup']} -> {r['fds_end']} ({r['fds_max']}) "
              f"| {r['tmp_bytes_after_warmup']} -> {r['tmp_bytes_end']} | {r['seconds']} | {r['pass']} |")
    print(f"machine-wide /tmp entries: {result['system_tmp_entries_delta']:+d} (shared with other processes)")
    save_json(args.out, result)
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
