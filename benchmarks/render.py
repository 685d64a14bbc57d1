#!/usr/bin/env python
"""Renderer throughput: images/s for batch sizes x image sizes x mesh sizes, raster only and
raster+shade, torch backend (and pytorch3d when installed).

Prints a table and saves JSON (default ``benchmarks/results/render.json``) with the machine, torch
version and thread count. Every number is the median over ``--repeats`` timed runs after warm-up;
CUDA runs are synchronised before the clock is read.

The 40k mesh is the reference scene mesh (``../shared/reference/pytorch3d-scene/scene.npz``, beside the
checkout) when present, else the same deformed UV sphere regenerated (101 x 200, 40,000 faces); the
~150k mesh is a deformed UV sphere (194 x 388, 149,768 faces). Every sample of a batch gets a different
head-like pose (rotation drawn from a seeded ``torch.Generator``) in front of the scene's camera.

Examples::

    python benchmarks/render.py --quick
    python benchmarks/render.py --threads 2 --batches 1 8 32 256 --sizes 224 448
    python benchmarks/render.py --device cuda --batches 256 --sizes 224 --meshes 40k
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import save_json  # noqa: E402  (benchmarks/ is sys.path[0] for a script)

from onthefly.render import PointLights, rasterize, render  # noqa: E402
from onthefly.render.cameras import pytorch3d_to_opencv  # noqa: E402

SCENE = ROOT.parent / "shared" / "reference" / "pytorch3d-scene"


def deformed_uv_sphere(n_lat: int, n_lon: int, seed: int = 0):
    """UV sphere with n_lat-1 rings of n_lon vertices plus 2 poles, radially deformed (faces =
    2 * n_lon * (n_lat - 1)), outward winding, per-vertex colours."""
    g = torch.Generator().manual_seed(seed)
    th = torch.linspace(0, math.pi, n_lat + 1, dtype=torch.float64)[1:-1]
    ph = torch.arange(n_lon, dtype=torch.float64) * (2 * math.pi / n_lon)
    T, P = torch.meshgrid(th, ph, indexing="ij")
    dirs = torch.stack((torch.sin(T) * torch.cos(P), torch.cos(T), torch.sin(T) * torch.sin(P)), -1).reshape(-1, 3)
    dirs = torch.cat((torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64), dirs,
                      torch.tensor([[0.0, -1.0, 0.0]], dtype=torch.float64)))
    a = torch.randn(6, generator=g, dtype=torch.float64) * 0.08
    r = 1.0 + a[0] * dirs[:, 0] * dirs[:, 1] + a[1] * dirs[:, 2] ** 2 + a[2] * torch.sin(4 * dirs[:, 0]) \
        + a[3] * torch.cos(3 * dirs[:, 1]) + a[4] * dirs[:, 2] * dirs[:, 0]
    verts = (dirs * r.unsqueeze(1)).float()
    L = n_lon
    j = torch.arange(L)
    top = torch.stack((torch.zeros(L, dtype=torch.int64), 1 + (j + 1) % L, 1 + j), 1)
    i = torch.arange(n_lat - 2).view(-1, 1)
    a_ = 1 + i * L + j
    b_ = 1 + i * L + (j + 1) % L
    c_, d_ = a_ + L, b_ + L
    mid = torch.stack((torch.stack((a_, b_, d_), -1), torch.stack((a_, d_, c_), -1)), 2).reshape(-1, 3)
    last = 1 + (n_lat - 2) * L
    s = verts.shape[0] - 1
    bot = torch.stack((torch.full((L,), s), last + j, last + (j + 1) % L), 1)
    faces = torch.cat((top, mid, bot))
    p = verts[faces].double()
    n = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    flip = (n * p.mean(1)).sum(1) < 0
    faces[flip] = faces[flip][:, [0, 2, 1]]
    colors = torch.rand(verts.shape[0], 3, generator=g)
    return verts, faces, colors


def load_meshes(names):
    out = {}
    for name in names:
        if name == "40k":
            if (SCENE / "scene.npz").is_file():
                import numpy as np

                with np.load(SCENE / "scene.npz", allow_pickle=False) as z:
                    out[name] = (torch.from_numpy(z["verts"]).float(), torch.from_numpy(z["faces"]).long(),
                                 torch.from_numpy(z["vert_colors"]).float(), "reference scene mesh")
            else:
                v, f, c = deformed_uv_sphere(101, 200)
                out[name] = (v, f, c, "deformed UV sphere 101x200 (scene not found)")
        elif name == "150k":
            v, f, c = deformed_uv_sphere(194, 388)
            out[name] = (v, f, c, "deformed UV sphere 194x388")
        else:
            raise SystemExit(f"unknown mesh {name!r} (choose 40k, 150k)")
    return out


def scene_camera(dtype=torch.float32):
    """The reference scene's PyTorch3D camera converted to OpenCV (R, t, K at 224 px)."""
    if (SCENE / "scene.json").is_file():
        meta = json.loads((SCENE / "scene.json").read_text())["camera"]
        R, T, f, p = (torch.tensor(meta[k], dtype=torch.float64) for k in
                      ("R", "T", "focal_length_px", "principal_point_px"))
    else:  # same numbers as the scene
        R = torch.tensor([[-0.9396926760673523, -0.059391170740127563, -0.33682408928871155],
                          [0.0, 0.9848077297210693, -0.1736481934785843],
                          [0.3420201241970062, -0.16317592561244965, -0.9254166483879089]], dtype=torch.float64)
        T = torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64)
        f = torch.tensor([268.8, 268.8], dtype=torch.float64)
        p = torch.tensor([115.5, 109.75], dtype=torch.float64)
    R_cv, t_cv, K = pytorch3d_to_opencv(R, T, f[None], p[None])
    return R_cv[0], t_cv[0], K[0]


def random_rotations(B, gen, max_deg=25.0):
    """Small head-like rotations (yaw/pitch/roll within +-max_deg) from a seeded generator."""
    ang = (torch.rand(B, 3, generator=gen, dtype=torch.float64) * 2 - 1) * math.radians(max_deg)
    cx, sx = torch.cos(ang[:, 0]), torch.sin(ang[:, 0])
    cy, sy = torch.cos(ang[:, 1]), torch.sin(ang[:, 1])
    cz, sz = torch.cos(ang[:, 2]), torch.sin(ang[:, 2])
    o, z = torch.ones(B, dtype=torch.float64), torch.zeros(B, dtype=torch.float64)
    Rx = torch.stack((o, z, z, z, cx, -sx, z, sx, cx), 1).view(B, 3, 3)
    Ry = torch.stack((cy, z, sy, z, o, z, -sy, z, cy), 1).view(B, 3, 3)
    Rz = torch.stack((cz, -sz, z, sz, cz, z, z, z, o), 1).view(B, 3, 3)
    return Rz @ Ry @ Rx


def make_batch(verts, B, size, device, gen):
    R_cv, t_cv, K = scene_camera()
    Rb = random_rotations(B, gen)
    world = torch.einsum("bij,vj->bvi", Rb, verts.double())
    cam = world @ R_cv.T + t_cv
    K = K.clone()
    s = size / 224.0
    K[0, 0] *= s
    K[1, 1] *= s
    K[0, 2] = (K[0, 2] + 0.5) * s - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * s - 0.5
    light_loc = (torch.tensor([1.5, 2.0, 3.0], dtype=torch.float64) @ R_cv.T + t_cv).float()
    lights = PointLights(location=light_loc.expand(B, 3).to(device), ambient=[[0.3, 0.3, 0.3]],
                         diffuse=[[0.6, 0.6, 0.6]], specular=[[0.2, 0.2, 0.2]])
    return cam.float().to(device), K.float().expand(B, 3, 3).to(device), lights


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn, device, repeats, warmup, budget_s):
    """Wall-clock and process-CPU seconds of each timed run."""
    for _ in range(warmup):
        fn()
    sync(device)
    times, cpu = [], []
    t_start = time.perf_counter()
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if time.perf_counter() - t_start > budget_s and len(times) >= 3:
            break
    return times, cpu


def cpu_share(seconds: float = 0.3) -> float:
    """Fraction of one core this process actually gets right now (a busy pure-Python loop's CPU time /
    wall time): about 1.0 on an idle machine, much less when other tenants saturate it."""
    t0, c0 = time.perf_counter(), time.process_time()
    x = 0
    while time.perf_counter() - t0 < seconds:
        for i in range(10000):
            x += i
    return (time.process_time() - c0) / (time.perf_counter() - t0)


def load_state():
    """Load average and CPU pressure: the machine may be shared, which inflates wall-clock times."""
    out = {"cpu_share_of_one_core": round(cpu_share(), 3)}
    try:
        out["loadavg"] = os.getloadavg()
    except OSError:
        pass
    try:
        out["cpu_pressure"] = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        pass
    return out


def machine_info(device):
    info = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "device": str(device)}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        import pytorch3d

        info["pytorch3d"] = pytorch3d.__version__
    except ImportError:
        info["pytorch3d"] = None
    return info


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run: batch 1 and 8, 224 px, 40k faces, 3 repeats")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 256])
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 448])
    ap.add_argument("--meshes", nargs="+", default=["40k", "150k"], help="40k and/or 150k")
    ap.add_argument("--modes", nargs="+", default=["raster", "raster+shade"], choices=["raster", "raster+shade"])
    ap.add_argument("--backends", nargs="+", default=None,
                    help="torch and/or pytorch3d (default: torch, plus pytorch3d when importable)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per case (median reported)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs first (the first calls fault memory in)")
    ap.add_argument("--case-budget", type=float, default=15.0, help="max seconds of timed runs per case")
    ap.add_argument("--skip-slower-than", type=float, default=30.0,
                    help="skip a case when its estimated single-run time exceeds this many seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tune-malloc", action="store_true",
                    help="call onthefly.render.tune_malloc() first (keeps freed memory; fewer page faults)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "render.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.batches, args.sizes, args.meshes, args.repeats = [1, 8], [224], ["40k"], 3
    if args.threads and args.threads != torch.get_num_threads():
        # only when it changes something: re-setting the same count was seen to slow later kernels a lot here
        torch.set_num_threads(args.threads)
    if args.tune_malloc:
        from onthefly.render import tune_malloc

        print("tune_malloc:", tune_malloc())
    device = torch.device(args.device)
    backends = args.backends
    if backends is None:
        backends = ["torch"]
        try:
            import pytorch3d  # noqa: F401

            backends.append("pytorch3d")
        except ImportError:
            pass
    info = machine_info(device)
    info["tune_malloc"] = bool(args.tune_malloc)
    print("machine:", json.dumps(info))
    meshes = load_meshes(args.meshes)
    rows = []
    hdr = (f"{'backend':9s} {'mesh':5s} {'faces':>7s} {'size':>4s} {'batch':>5s} {'mode':12s} {'ms/batch':>9s} "
           f"{'images/s':>9s} {'n':>2s} {'min ms':>9s} {'cpu ms/im':>9s} {'share':>5s}")
    print("ms/batch and images/s: median wall clock; min ms: fastest run; cpu ms/im: median process CPU time "
          "per image (all threads); share: fraction of one core a busy loop got right after the case "
          "(1.0 = machine not contended)")
    state_before = load_state()
    print("load:", json.dumps(state_before))
    print(hdr)
    print("-" * len(hdr))
    for backend in backends:
        for mname, (v, f, c, desc) in meshes.items():
            fdev, cdev = f.to(device), c[None].to(device)
            for size in args.sizes:
                per_img_s = {}  # mode -> seconds per image measured at the previous batch size
                for B in sorted(args.batches):
                    gen = torch.Generator().manual_seed(args.seed)
                    verts, K, lights = make_batch(v, B, size, device, gen)
                    for mode in args.modes:
                        est = per_img_s.get(mode, 0.0) * B
                        row = dict(backend=backend, mesh=mname, mesh_desc=desc, faces=int(f.shape[0]), size=size,
                                   batch=B, mode=mode)
                        if est > args.skip_slower_than:
                            row.update(skipped=f"estimated {est:.0f} s per run > --skip-slower-than")
                            rows.append(row)
                            print(f"{backend:9s} {mname:5s} {f.shape[0]:7d} {size:4d} {B:5d} {mode:12s} {'skipped (est. %.0f s)' % est}")
                            continue
                        if mode == "raster":
                            def fn():
                                return rasterize(verts, fdev, K, size, backend=backend)
                        else:
                            def fn():
                                return render(verts, fdev, K, size, textures=cdev, lights=lights, backend=backend)
                        try:
                            times, cpu = time_fn(fn, device, args.repeats, args.warmup, args.case_budget)
                        except (RuntimeError, MemoryError) as exc:  # OOM and friends
                            row.update(skipped=f"{type(exc).__name__}: {str(exc)[:120]}")
                            rows.append(row)
                            print(f"{backend:9s} {mname:5s} {f.shape[0]:7d} {size:4d} {B:5d} {mode:12s} failed: {str(exc)[:60]}")
                            if device.type == "cuda":
                                torch.cuda.empty_cache()
                            continue
                        med = statistics.median(times)
                        per_img_s[mode] = med / B
                        cmed = statistics.median(cpu)
                        row.update(cpu_share=round(cpu_share(0.1), 3))
                        row.update(ms_per_batch=med * 1e3, images_per_s=B / med, runs=len(times),
                                   ms_all=[t * 1e3 for t in times], cpu_ms_per_batch=cmed * 1e3,
                                   cpu_ms_per_image=cmed * 1e3 / B, ms_min=min(times) * 1e3)
                        rows.append(row)
                        print(f"{backend:9s} {mname:5s} {f.shape[0]:7d} {size:4d} {B:5d} {mode:12s} "
                              f"{med * 1e3:9.1f} {B / med:9.1f} {len(times):2d} {min(times) * 1e3:9.1f} "
                              f"{cmed * 1e3 / B:9.2f} {row['cpu_share']:5.2f}")
                    del verts, K, lights
    result = dict(machine=info, args=vars(args), timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  load_before=state_before, load_after=load_state(), results=rows)
    save_json(args.out, result)


if __name__ == "__main__":
    main()
