"""Export throughput against the dataset's own throughput, same config, same machine, same run.

Builds a procedural cache (``--subjects`` subjects × ``--frames-per-subject`` frames) and a folder of synthetic
background JPEGs in a temporary directory, then, interleaved ``--repeats`` times:

* **dataset**: rows/s of ``OnTheFlyGazeDataset.batch(i, 0)`` over the same subjects and batches the export renders
  (steady state: the frames are loaded before the clock starts);
* **export**: rows/s of ``onthefly.export.export`` end to end (per-subject dataset set-up and frame loading, render,
  uint8/BGR conversion, HDF5 writing and compression in the writer thread, rename, index with sha256);
* **write only**: rows/s of writing already-rendered rows (the I/O the writer thread must hide).

Reports medians (the machine may be shared): the ratio of the median rates and the median of each repeat's own
ratio (the target must hold for both), and bytes/row for lzf and gzip, prints a table and saves
``benchmarks/results/export.json``. The target is export ≥ 80 % of the dataset's rows/s (I/O overlapping rendering).

    python benchmarks/export.py                 # 224 px, batch 32, 2 subjects × 64 frames, 3 repeats
    python benchmarks/export.py --quick         # 64 px, small
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _results import save_json  # noqa: E402  (benchmarks/ is sys.path[0] for a script)


def _backgrounds(folder: Path, n: int = 64) -> Path:
    import cv2

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC))
    return folder


def _dataset_rows_per_s(st, subjects: list[str]) -> tuple[float, int]:
    """Rows/s of the batches the export renders (the same subjects, batches and truncation), frames preloaded."""
    from onthefly.dataset import OnTheFlyGazeDataset

    dsets = [OnTheFlyGazeDataset(st.cache, subjects=[s], **st.dataset_kwargs(s)) for s in subjects]
    for ds in dsets:
        ds._load()  # frame loading happens once per process in training: not timed here
    rows, t = 0, time.perf_counter()
    for ds in dsets:
        B = ds.batch_size
        for i in range(math.ceil(ds.n_frames / B)):
            b = ds.batch(i, 0)
            rows += min(B, ds.n_frames - i * B) * ds.views_per_frame
            _ = b["image"].sum()  # make sure the batch is materialized (CUDA)
    if st.device and str(st.device).startswith("cuda"):
        torch.cuda.synchronize()
    return rows / (time.perf_counter() - t), rows


def _export_rows_per_s(st) -> tuple[float, int, int]:
    from onthefly.export import export

    if st.out.exists():
        shutil.rmtree(st.out)
    t = time.perf_counter()
    rep = export(st, shard=(0, 1), progress="none")
    dt = time.perf_counter() - t
    size = sum(p.stat().st_size for p in st.out.glob("*.h5"))
    return rep.rows / dt, rep.rows, size


def _write_rows_per_s(st, src: Path, image_chunk_rows: int = 1, name: str = "write-only") -> tuple[float, Path]:
    """Rows/s of writing the rows of an existing export again (no rendering): the writer thread's load. Returns
    (rows/s, folder); ``image_chunk_rows`` rows per HDF5 chunk of face_patch / face_mask."""
    import h5py

    import onthefly.export as ex
    from onthefly.export import SCHEMAS, _SubjectFile

    out = st.out.parent / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    sch = SCHEMAS[st.schema]
    cam = st.camera()
    B = st.batch_size * st.views_per_frame
    total, secs = 0, 0.0
    saved, ex.IMAGE_CHUNK_ROWS = ex.IMAGE_CHUNK_ROWS, image_chunk_rows
    try:
        for p in sorted(src.glob("*.h5")):
            with h5py.File(p, "r") as f:
                data = {k: f[k][()] for k in SCHEMAS[st.schema].keys}
                attrs = dict(f.attrs)
            n = len(data["face_gaze"])
            t = time.perf_counter()
            sf = _SubjectFile(out / p.name, attrs, sch, sch.row_shapes(cam.height, cam.width), B, st.compression)
            sf.create()
            for s in range(0, n, B):
                sf.append(s, {k: v[s:s + B] for k, v in data.items()})
            sf.finish()
            secs += time.perf_counter() - t
            total += n
    finally:
        ex.IMAGE_CHUNK_ROWS = saved
    return total / secs, out


def _random_read_rows_per_s(folder: Path, n: int = 256) -> float:
    """Rows/s of single random rows through ``onthefly.h5.H5GazeDataset`` (map-style training reads)."""
    from onthefly.h5 import H5GazeDataset

    ds = H5GazeDataset(sorted(folder.glob("*.h5")))
    idx = np.random.default_rng(0).integers(0, len(ds), n)
    ds[0]
    t = time.perf_counter()
    for i in idx:
        ds[int(i)]
    dt = time.perf_counter() - t
    ds.close()
    return n / dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="64 px, 2 subjects x 16 frames, batch 8, 2 repeats")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--image-size", type=int, default=None, help="default 224 (quick: 64)")
    ap.add_argument("--batch-size", type=int, default=None, help="default 32 (quick: 8)")
    ap.add_argument("--views-per-frame", type=int, default=1)
    ap.add_argument("--subjects", type=int, default=2)
    ap.add_argument("--frames-per-subject", type=int, default=None, help="default 256 (quick: 16); per-subject set-up is amortized over these")
    ap.add_argument("--repeats", type=int, default=None, help="default 3 (quick: 2)")
    ap.add_argument("--appearance", default="default")
    ap.add_argument("--schema", default="mpii-nv", help="export schema (rot-mvgaze needs --views-per-frame 18)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "export.json"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = args.image_size or (64 if args.quick else 224)
    B = args.batch_size or (8 if args.quick else 32)
    fps = args.frames_per_subject or (16 if args.quick else 256)
    repeats = args.repeats or (2 if args.quick else 3)

    from onthefly.cache import MeshCache, build_cache
    from onthefly.export import ExportSettings
    from onthefly.sources.procedural import ProceduralSource

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "proc.h5"
        t = time.perf_counter()
        build_cache(ProceduralSource(count=fps * args.subjects, seed=0, subjects=args.subjects), cache)
        print(f"built {fps * args.subjects} procedural frames in {time.perf_counter() - t:.1f} s", flush=True)
        with MeshCache(cache) as mc:
            subjects = list(mc.subjects)
        cfg = {"batch_size": B, "appearance": args.appearance, "background_dir": str(_backgrounds(tmp / "bg"))}
        runs = {}
        for comp in ("lzf", "gzip"):
            runs[comp] = ExportSettings(cache, tmp / f"out-{comp}", seed=0, views_per_frame=args.views_per_frame,
                                        schema=args.schema, image_size=size, config=cfg, compression=comp,
                                        device=args.device)
        st = runs["lzf"]
        _dataset_rows_per_s(st, subjects[:1])  # warm-up (background pool, allocator, kernels)
        _export_rows_per_s(st)  # and the export's one-time costs alike (the compiled encoder's load, h5py, threads)
        load_before = os.getloadavg()
        ds_rates, ex_rates, wr_rates = [], [], []
        rows = bytes_lzf = 0
        for r in range(repeats):  # interleaved, so load changes hit both alike
            d, _ = _dataset_rows_per_s(st, subjects)
            e, rows, bytes_lzf = _export_rows_per_s(st)
            w, _ = _write_rows_per_s(st, st.out)
            ds_rates.append(d)
            ex_rates.append(e)
            wr_rates.append(w)
            print(f"repeat {r}: dataset {d:.1f} rows/s, export {e:.1f} rows/s, write only {w:.1f} rows/s",
                  flush=True)
        load_after = os.getloadavg()
        gz_rate, _, bytes_gzip = _export_rows_per_s(runs["gzip"])
        chunking = []
        for c in (1, 8, B * args.views_per_frame):  # rows per image chunk: write speed, size, random reads
            w, folder = _write_rows_per_s(st, st.out, c, f"chunk{c}")
            size_c = sum(p.stat().st_size for p in folder.glob("*.h5"))
            chunking.append({"image_chunk_rows": c, "write_rows_per_s": w, "bytes_per_row": size_c / rows,
                             "random_read_rows_per_s": _random_read_rows_per_s(folder)})
    dmed, emed, wmed = (statistics.median(x) for x in (ds_rates, ex_rates, wr_rates))
    ratio = emed / dmed
    # each repeat's own ratio (dataset and export measured seconds apart): robust to the machine's slow drifts
    paired = [e / d for e, d in zip(ex_rates, ds_rates)]
    ratio_paired = statistics.median(paired)
    print(f"\nexport vs OnTheFlyGazeDataset: {size} px, batch {B}, K={args.views_per_frame}, {args.subjects} "
          f"subjects x {fps} frames, appearance {args.appearance!r}, device {args.device}, torch threads "
          f"{torch.get_num_threads()}, median of {repeats}")
    print(f"{'':>22} {'rows/s':>9} {'bytes/row':>10}")
    print(f"{'dataset (render only)':>22} {dmed:>9.1f} {'-':>10}")
    print(f"{'export lzf':>22} {emed:>9.1f} {bytes_lzf / rows:>10.0f}")
    print(f"{'export gzip (1 run)':>22} {gz_rate:>9.1f} {bytes_gzip / rows:>10.0f}")
    print(f"{'write only lzf':>22} {wmed:>9.1f} {'-':>10}")
    print(f"\n{'image chunk rows':>16} {'write rows/s':>13} {'bytes/row':>10} {'random reads/s':>15}")
    for c in chunking:
        print(f"{c['image_chunk_rows']:>16} {c['write_rows_per_s']:>13.1f} {c['bytes_per_row']:>10.0f} "
              f"{c['random_read_rows_per_s']:>15.1f}")
    met = ratio >= 0.8 and ratio_paired >= 0.8
    print(f"export / dataset = {ratio:.2f} (medians), {ratio_paired:.2f} (median of the repeats' ratios: "
          f"{', '.join(f'{x:.2f}' for x in paired)}); target >= 0.80 on both: {'met' if met else 'NOT met'}; load "
          f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after the repeats")
    result = {"image_size": size, "batch_size": B, "views_per_frame": args.views_per_frame,
              "subjects": args.subjects, "frames_per_subject": fps, "appearance": args.appearance,
              "device": args.device,
              "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "repeats": repeats, "quick": args.quick, "rows": rows, "schema": args.schema,
              "loadavg_before": load_before, "loadavg_after": load_after,
              "dataset_rows_per_s": ds_rates, "export_rows_per_s": ex_rates, "write_only_rows_per_s": wr_rates,
              "dataset_rows_per_s_median": dmed, "export_rows_per_s_median": emed,
              "write_only_rows_per_s_median": wmed, "export_over_dataset": ratio, "export_over_dataset_per_repeat": paired,
              "export_over_dataset_paired_median": ratio_paired, "target_met": met,
              "bytes_per_row_lzf": bytes_lzf / rows, "bytes_per_row_gzip": bytes_gzip / rows,
              "export_gzip_rows_per_s": gz_rate, "chunking": chunking,
              "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    save_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
