#!/usr/bin/env python
"""XGaze3D 8192² atlas: peak resident memory of loading one frame, reduced-scale decode vs full decode.

Writes one XGaze3D frame (tests/sources/xgaze3d_real_fixture.py, a procedural head) whose ``mvs3d.jpg`` is an
8192×8192 JPEG, then loads it in fresh child processes (``XGaze3DSource.load``) and reports each child's peak RSS
(``VmHWM``; ``ru_maxrss`` would inherit the parent's across fork/exec): with ``--texture-size 2048`` (the default: decoded at 1/4 scale, never at full size), with no cap
(the full 8192² decode), and a baseline with a 256² atlas (everything but the atlas). Prints a table and saves JSON
(default ``benchmarks/results/xgaze3d_atlas.json``).

    python benchmarks/xgaze3d_atlas.py
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = """
import json, sys, time
from onthefly.sources.xgaze3d import XGaze3DSource
recon, root, ts = sys.argv[1], sys.argv[2], sys.argv[3]
src = XGaze3DSource(recon, root, texture_size=None if ts == "none" else int(ts))
t0 = time.perf_counter()
rec = src.load(src.keys()[0])
dt = time.perf_counter() - t0
hwm = next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
print(json.dumps({"texture": list(rec.texture.shape), "peak_rss_mib": hwm / 1024, "load_s": dt}))
"""


def write_release(tmp: Path, side: int) -> tuple[Path, Path]:
    import numpy as np

    if str(HERE.parent / "tests") not in sys.path:
        sys.path.append(str(HERE.parent / "tests"))
    from sources.fixtures import procedural_records
    from sources.xgaze3d_real_fixture import write_xgaze3d

    ramp = (np.arange(side) * 255 // max(side - 1, 1)).astype(np.uint8)
    tex = np.empty((side, side, 3), np.uint8)
    tex[..., 0] = ramp[None]
    tex[..., 1] = ramp[:, None]
    tex[..., 2] = (ramp[None] ^ ramp[:, None]) & 0xF0
    recon, root, _ = write_xgaze3d(tmp, procedural_records(), subjects=("subject0000",), frames_per_subject=1,
                                   texture=tex)
    return recon, root


def child(recon: Path, root: Path, ts: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE.parent)] + sys.path))
    out = subprocess.run([sys.executable, "-c", CHILD, str(recon), str(root), ts], capture_output=True, text=True,
                         env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=str(HERE / "results" / "xgaze3d_atlas.json"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        big = write_release(Path(d) / "big", 8192)
        small = write_release(Path(d) / "small", 256)
        rows = {"baseline (256² atlas)": child(*small, "2048"), "8192² atlas, --texture-size 2048": child(*big, "2048"),
                "8192² atlas, no cap (full decode)": child(*big, "none")}
    print(f"{'case':38s} {'texture':>16s} {'peak RSS MiB':>13s} {'load s':>7s}")
    for k, r in rows.items():
        print(f"{k:38s} {str(tuple(r['texture'])):>16s} {r['peak_rss_mib']:13.0f} {r['load_s']:7.2f}")
    base = rows["baseline (256² atlas)"]["peak_rss_mib"]
    print(f"atlas cost over baseline: {rows['8192² atlas, --texture-size 2048']['peak_rss_mib'] - base:.0f} MiB "
          f"(reduced decode) vs {rows['8192² atlas, no cap (full decode)']['peak_rss_mib'] - base:.0f} MiB (full)")
    print(f"load: {os.uname().nodename}, {os.getloadavg()[0]:.1f} (1-min load average)")
    sys.path.insert(0, str(HERE))
    from _results import save_json

    save_json(args.json, {"rows": rows, "loadavg_1min": os.getloadavg()[0]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
