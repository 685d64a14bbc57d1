"""Run the export interrupt / resume tests many times in a row while other processes keep every core busy, and
print how many rounds passed: the proof that those tests do not depend on the machine's load.

    python scripts/repeat_interrupt_tests.py                 # 50 rounds, one busy process per core
    python scripts/repeat_interrupt_tests.py --rounds 5 --burners 0

A round is every interrupt test of ``tests/export/test_export.py`` once: kill -9 and Ctrl-C of a child export at
fixed points (each a fresh child process), then ``--resume`` and a bit-for-bit comparison with the uninterrupted
export, and Ctrl-C at every interruptible point inside the library. The rounds run in one pytest process (the test
file given N times with ``--keep-duplicates``: the fixtures' cache is built once), started as a background job of a
non-interactive shell, i.e. with SIGINT ignored, as many CI runners start it: the condition under which the old
SIGINT test always failed. The burners are plain Python busy loops. Exit status 0 only if every round passed.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILE, SELECT = "tests/export/test_export.py", "kill9 or ctrl_c"


def _burn() -> None:  # pragma: no cover - a load generator
    x = 0
    while True:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--burners", type=int, default=os.cpu_count() or 2,
                    help="busy processes kept running meanwhile (default: one per core)")
    args = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    n_tests = int(re.search(r"(\d+)/\d+ tests collected", subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", FILE, "-k", SELECT],
        cwd=REPO, env=env, capture_output=True, text=True).stdout).group(1))
    burners = [mp.Process(target=_burn, daemon=True) for _ in range(args.burners)]
    for b in burners:
        b.start()
    cmd = " ".join([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "--keep-duplicates",
                    *[FILE] * args.rounds, "-k", f"'{SELECT}'"])
    t0 = time.perf_counter()
    results: list[tuple[str, str]] = []
    rounds_ok, rounds_done, failed = 0, 0, []
    # `cmd &` in a non-interactive shell: the tests run with SIGINT ignored, like under many CI runners
    proc = subprocess.Popen(["bash", "-c", f"{cmd} & wait $!"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    try:
        for line in proc.stdout:
            tail = (tail + [line])[-60:]
            m = re.match(r"(\S+::\S+(?:\[.*\])?) (PASSED|FAILED|ERROR)", line.strip())
            if not m:
                continue
            results.append((m.group(1), m.group(2)))
            if len(results) % n_tests == 0:
                rnd = results[-n_tests:]
                ok = all(s == "PASSED" for _, s in rnd)
                rounds_done += 1
                rounds_ok += ok
                if not ok:
                    failed.append((rounds_done, [t.split("::")[-1] for t, s in rnd if s != "PASSED"]))
                print(f"round {rounds_done:3d}/{args.rounds}: {'PASS' if ok else 'FAIL'} ({n_tests} tests)  "
                      f"{time.perf_counter() - t0:7.0f} s  load {os.getloadavg()[0]:.1f}", flush=True)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        for b in burners:
            b.terminate()
    if proc.returncode not in (0, 1):
        print("".join(tail))
    print(f"{rounds_ok}/{args.rounds} rounds passed ({rounds_done} run, {n_tests} tests each, "
          f"{sum(s == 'PASSED' for _, s in results)}/{len(results)} tests passed; {args.burners} busy processes; "
          f"{time.perf_counter() - t0:.0f} s)" + (f"; failed: {failed}" if failed else ""))
    return 0 if rounds_ok == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
