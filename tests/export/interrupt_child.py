"""``onthefly export ARGS`` in a child process that stops at a chosen point and waits there for the test's signal,
so an interrupt test never races the export (the state at the signal is fixed, whatever the machine's load).

    python tests/export/interrupt_child.py READY WHERE ARGS...

* Ctrl-C at a terminal raises KeyboardInterrupt: the child installs Python's SIGINT handler itself, because a
  process started with SIGINT ignored (a background job of a non-interactive shell, ``nohup``, some CI runners)
  keeps ignoring it: Python only installs its handler when SIGINT is at its default at start-up. That inherited
  ``SIG_IGN`` was the root cause of the flaky SIGINT test (exit 0, empty stderr: the signal never arrived).
* ``WHERE`` = ``main:FILE:STEP``: the main (rendering) thread stops when it is about to queue STEP of FILE
  (``create``, ``append@ROW`` = the batch starting at ROW (``append_batch``: encode and append), ``finish`` = mark complete and rename), once the writer
  has done everything queued before it; it then writes READY and waits (interruptibly) for the signal.
* ``WHERE`` = ``writer:FILE:STEP``: the writer thread stops just before running STEP of FILE, writes READY and waits
  until the export aborts (Ctrl-C), then runs STEP; the main thread goes on rendering / waiting in the meantime.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

signal.signal(signal.SIGINT, signal.default_int_handler)

from onthefly import export as E  # noqa: E402
from onthefly.cli import main  # noqa: E402

ready = Path(sys.argv[1])
thread, file, step = sys.argv[2].split(":")
release = threading.Event()
_submit, _abort = E._AsyncWriter.submit, E._AsyncWriter.abort


def _mark() -> None:
    tmp = ready.with_name(ready.name + ".tmp")
    tmp.write_text("paused\n")
    os.replace(tmp, ready)


def _matches(fn, args) -> bool:
    sf = getattr(fn, "__self__", None)
    if not isinstance(sf, E._SubjectFile) or sf.final.name != file:
        return False
    base = "append" if fn.__name__ == "append_batch" else fn.__name__  # the batch is encoded in the writer
    name = base + (f"@{args[0]}" if base in ("append", "reopen") else "")
    return name == step


def submit(self, fn, *args):
    if _matches(fn, args):
        if thread == "main":
            drained = threading.Event()
            _submit(self, drained.set)  # the writer runs the queue in order: set once all before it is done
            if not drained.wait(600):
                raise RuntimeError("interrupt_child: the writer did not drain")
            _mark()
            threading.Event().wait()  # until SIGINT (KeyboardInterrupt) or SIGKILL
        else:
            def paused(*a, _fn=fn):
                _mark()
                release.wait()
                return _fn(*a)

            return _submit(self, paused, *args)
    return _submit(self, fn, *args)


def abort(self):
    release.set()
    return _abort(self)


E._AsyncWriter.submit, E._AsyncWriter.abort = submit, abort
raise SystemExit(main(["export", *sys.argv[3:]]))
