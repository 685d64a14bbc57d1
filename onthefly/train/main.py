"""``python -m onthefly.train ...`` and ``onthefly train ...``: ``demo`` runs :mod:`.demo` (the CPU demo end to end),
anything else goes to the LightningCLI of :mod:`.cli` (``fit``/``validate``/``test``/``predict --config ...``)."""
from __future__ import annotations

import sys
from collections.abc import Sequence

from . import demo
from .cli import cli_main, config_args, read_config


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "demo":
        return demo.main(args[1:])
    try:
        for c in config_args(args):  # every --config file guarded before LightningCLI parses it
            read_config(c)
        cli_main(None if argv is None else args)  # None: LightningCLI reads sys.argv itself
    except ValueError as e:  # configuration errors (missing cache/h5, bad keys, sizes): one clear line
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
