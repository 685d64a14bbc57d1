"""File-writing helpers shared by the writers (meshes, shape models, export indices)."""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_write"]


@contextmanager
def atomic_write(path: str | Path, suffix: str = ""):
    """Write ``path`` atomically: ``with atomic_write(path) as tmp: <write tmp>`` writes a unique temporary sibling
    (``.NAME.HOST.PID.tmp`` + ``suffix``, for writers that insist on an extension such as ``np.savez``) and
    renames it onto ``path`` (``os.replace``) when the block ends without an error; on an error the temporary file
    is removed and ``path`` is untouched. A reader never sees a partial ``path``; concurrent writers (shards,
    processes) never share a temporary file. Creates the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
