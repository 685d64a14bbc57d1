"""``python -m onthefly.train ...`` and ``onthefly train ...``: ``demo`` runs :mod:`.demo` (the CPU demo end to end),
anything else goes to the LightningCLI of :mod:`.cli` (``fit``/``validate``/``test``/``predict --config ...``)."""
from __future__ import annotations

import sys
from collections.abc import Sequence

from . import demo
from .cli import cli_main


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        return demo.main(argv[1:])
    try:
        cli_main(argv)
    except ValueError as e:  # configuration errors (missing cache/h5, bad keys, sizes): one clear line
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
