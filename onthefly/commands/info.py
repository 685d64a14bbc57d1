"""``onthefly info``: what is installed and usable."""
from __future__ import annotations

import importlib.util
import os
import platform

from .. import __version__


def _backends() -> str:
    from ..render.backends import BACKENDS, available_backends, get_backend

    have = available_backends("cpu")
    missing = [n for n in BACKENDS if n not in have]
    return (", ".join(have) + f" (CPU default: {get_backend('auto', 'cpu').name}"
            + (f"; not installed: {', '.join(missing)})" if missing else ")"))


def run(args) -> int:
    import numpy
    import torch

    def has(mod: str) -> str:
        return "yes" if importlib.util.find_spec(mod) is not None else "no"

    rows = [
        ("onthefly", __version__),
        ("python", platform.python_version()),
        ("platform", platform.platform()),
        ("torch", torch.__version__),
        ("numpy", numpy.__version__),
        ("torch threads", str(torch.get_num_threads())),
        ("cpu cores", str(os.cpu_count())),
        ("cuda", f"{torch.cuda.device_count()} device(s): {torch.cuda.get_device_name(0)}"
         if torch.cuda.is_available() else "not available"),
        ("render backends", _backends()),
        ("face-alignment", has("face_alignment")),
        ("dlib", has("dlib")),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0
