"""Readers run in a forked child process, for third-party parsers that can crash the interpreter on a malformed
file (OpenCV's ``FileStorage`` aborts or segfaults on some corrupt XML: found by the fuzz campaign, ``tests/fuzz``). The
child's death becomes an ``OSError`` in the caller; only plain numeric arrays come back (``np.load`` with
``allow_pickle=False``)."""
from __future__ import annotations

import faulthandler
import io
import json
import os
import select
import signal
import threading
import time

import numpy as np

__all__ = ["call_isolated", "call_isolated_json", "can_isolate"]


def _read_all(fd: int, deadline: float | None = None) -> bytes:
    chunks: list[bytes] = []
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        b = os.read(fd, 1 << 16)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def call_isolated(fn, *args, timeout: float | None = None) -> dict[str, np.ndarray]:
    """``fn(*args)`` (a dict of numeric arrays) computed in a forked child: its crash is an ``OSError`` here, its
    ``ValueError`` (e.g. a ``SourceError``) a ``ValueError`` with the same message, anything else an ``OSError``;
    a child still running after ``timeout`` seconds is killed (an ``OSError``)."""
    if not hasattr(os, "fork"):  # pragma: no cover - Windows: read in-process
        return fn(*args)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)

        faulthandler.disable()  # a crash here is reported by the parent, not dumped
        try:
            buf = io.BytesIO()
            np.savez(buf, **fn(*args))
            out = b"O" + buf.getvalue()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            kind = "ValueError" if isinstance(exc, ValueError) else type(exc).__name__
            out = b"E" + f"{kind}: {exc}"[:2000].encode("utf-8", "replace")
        try:
            view = memoryview(out)
            while view:
                view = view[os.write(w, view):]
        finally:
            os._exit(0)
    os.close(w)
    try:
        data = _read_all(r, time.monotonic() + timeout if timeout else None)
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise OSError(f"the reader did not finish in {timeout:g} s") from None
    except BaseException:  # e.g. KeyboardInterrupt while waiting: no orphan left reading the file
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        raise OSError(f"the reader crashed on this file (signal {os.WTERMSIG(status)})")
    if not data:
        raise OSError("the reader died without an answer")
    if data[:1] == b"E":
        msg = data[1:].decode("utf-8", "replace")
        if msg.startswith("ValueError: "):
            raise ValueError(msg[len("ValueError: "):])
        raise OSError(msg)
    with np.load(io.BytesIO(data[1:]), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


#: threads that never hold a lock a reader needs: tqdm's progress-bar monitor (it only refreshes bars), alive for
#: the rest of the process once any bar was shown
_BENIGN_THREADS = ("TMonitor",)


def can_isolate() -> bool:
    """Whether a forked child can safely run a reader now: a fork while another Python thread holds a lock (h5py's,
    a logging lock) would leave the child waiting forever on it, so only a process whose other threads are benign
    (``_BENIGN_THREADS``) forks."""
    if not hasattr(os, "fork"):
        return False
    me = threading.current_thread()
    return all(t is me or type(t).__name__ in _BENIGN_THREADS for t in threading.enumerate())


def call_isolated_json(fn, *args, timeout: float | None = None):
    """:func:`call_isolated` for a function whose result is JSON-serialisable (lists, dicts, str, numbers): it
    travels as JSON text (never a pickle)."""
    def child(*a):
        return {"json": np.frombuffer(json.dumps(fn(*a)).encode("utf-8"), np.uint8)}

    out = call_isolated(child, *args, timeout=timeout)
    return json.loads(out["json"].tobytes().decode("utf-8"))
