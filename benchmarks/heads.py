#!/usr/bin/env python
"""Procedural head synthesis rate: ``onthefly.synthetic.procedural_heads(n)`` for a few batch sizes (the source of
``onthefly reconstruct --source procedural`` and of the synthetic heads), median of ``--repeats`` after a warm-up
call (the template cache). The figure the old timed unit test asserted (64 heads in < 10 s) is a row here.

    python benchmarks/heads.py                 # n = 8, 64; 3 repeats
    python benchmarks/heads.py --sizes 64 --repeats 5

Prints a table and saves ``benchmarks/results/heads.json``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _results import save_json  # noqa: E402

from onthefly.synthetic import procedural_heads  # noqa: E402

#: the figure: 64 heads in under 10 s on 2 cores
BUDGET_64_S = 10.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "heads.json"))
    args = ap.parse_args(argv)
    procedural_heads(2, seed=0)  # warm the template cache
    rows = []
    print("| heads | median s | heads/s | runs |")
    print("|---|---|---|---|")
    for n in args.sizes:
        ts = []
        for r in range(args.repeats):
            t = time.perf_counter()
            procedural_heads(n, seed=r)
            ts.append(time.perf_counter() - t)
        med = statistics.median(ts)
        rows.append({"heads": n, "median_s": round(med, 3), "heads_per_s": round(n / med, 2),
                     "runs_s": [round(x, 3) for x in ts]})
        print(f"| {n} | {med:.2f} | {n / med:.1f} | {', '.join(f'{x:.2f}' for x in ts)} |", flush=True)
    r64 = next((r for r in rows if r["heads"] == 64), None)
    result = {"rows": rows, "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
              "budget_64_heads_s": BUDGET_64_S, "met": None if r64 is None else r64["median_s"] < BUDGET_64_S}
    save_json(args.out, result)
    if r64 is not None:
        print(f"64 heads: {r64['median_s']:.2f} s (figure: < {BUDGET_64_S:g} s): {'met' if result['met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
