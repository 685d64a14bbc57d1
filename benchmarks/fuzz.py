"""The long fuzz campaign: every reader of a file a user hands in (``tests/fuzz/harness.py``: OBJ, MTL, PLY, the
mesh JSON sidecar, the reconstruction manifest, XGaze3D / MPII-NV calibration and annotation files, the mesh cache,
export h5 through H5GazeDataset / --verify / --resume, dataset configs, background folders, pose files) gets up to
``--inputs`` seeded mutations of a valid sample, each under a per-input time limit, in forked workers whose address
space is capped (current size + ``--memory-cap-mib``), so a crash, a hang or a memory blow-up is counted, not fatal.

    python benchmarks/fuzz.py                           # 10,000 inputs per reader, at most 600 s per reader
    python benchmarks/fuzz.py --inputs 500 --seconds 60 --readers obj ply-binary

Prints the table (reader, inputs tried, accepted, refused, other) and saves ``benchmarks/results/fuzz.json``.
Exit status 1 when any input ended in *other* outside the known, reported failure modes.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO / "tests")  # tests/fuzz is the harness (this script's own folder would shadow `fuzz`)
sys.path.insert(1, str(REPO))
sys.path.insert(2, str(REPO / "benchmarks"))
from _results import save_json  # noqa: E402
from fuzz.harness import READERS, campaign  # noqa: E402
from fuzz.test_fuzz import KNOWN  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=10_000, help="inputs per reader (default 10,000)")
    ap.add_argument("--seconds", type=float, default=600, help="time bound per reader (default 600 s)")
    ap.add_argument("--time-limit", type=float, default=10.0,
                    help="per-input limit in CPU seconds (default 10; and 6x that in wall time)")
    ap.add_argument("--memory-cap-mib", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--readers", nargs="*", default=None, help=f"default: all of {', '.join(READERS)}")
    ap.add_argument("--keep", default=None, help="copy every failing input (valid + mutated) under this folder")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "fuzz.json"))
    ap.add_argument("--update", action="store_true",
                    help="replace only the rows of --readers in an existing --out (a campaign run in parts)")
    args = ap.parse_args(argv)
    names = args.readers or list(READERS)
    unknown = [n for n in names if n not in READERS]
    if unknown:
        ap.error(f"--readers: unknown {', '.join(unknown)}; choose from {', '.join(READERS)}")
    work = Path(tempfile.mkdtemp(prefix="onthefly-fuzz-"))
    rows = []
    print("| reader | inputs tried | accepted | refused | other | other kinds | s | max s / input | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    import json

    kept = []  # --update: the rows of the readers not run now, from the existing --out
    if args.update and Path(args.out).is_file():
        kept = [r for r in json.loads(Path(args.out).read_text()).get("readers", []) if r["reader"] not in names]
    order = list(READERS)

    def save() -> None:  # after every reader: a campaign stopped half-way keeps what it measured
        every = sorted(kept + rows, key=lambda r: order.index(r["reader"]) if r["reader"] in order else len(order))
        save_json(args.out, {
            "inputs_per_reader": args.inputs, "seconds_per_reader": args.seconds, "time_limit_s": args.time_limit,
            "memory_cap_mib": args.memory_cap_mib, "seed": args.seed, "load_average": os.getloadavg(),
            "known_failure_modes": {k: sorted(v) for k, v in KNOWN.items()}, "readers": every})

    for name in names:
        o = campaign(name, work, n=args.inputs, seconds=args.seconds, seed=args.seed, time_limit=args.time_limit,
                     memory_cap=args.memory_cap_mib << 20, keep=Path(args.keep) if args.keep else None)
        r = o.row()
        r["unexpected"] = sum(v for k, v in o.kinds.items() if k not in KNOWN.get(name, set()))
        r.update(load_average=[round(x, 2) for x in os.getloadavg()], seconds_per_reader=args.seconds,
                 inputs_asked=args.inputs)
        rows.append(r)
        kinds = ", ".join(f"{k}: {v}" for k, v in o.kinds.items()) or "-"
        print(f"| {name} | {o.tried} | {o.accepted} | {o.refused} | {o.other} | {kinds} | {o.seconds:.0f} | "
              f"{o.max_input_s:.2f} | {o.peak_rss_mb:.0f} |", flush=True)
        save()
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    short = [r["reader"] for r in rows if r["tried"] < args.inputs]
    if short:
        print(f"fewer than {args.inputs} inputs within {args.seconds:g} s: {', '.join(short)}")
    return 1 if any(r["unexpected"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
