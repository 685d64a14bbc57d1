"""``onthefly train ...``: the training package's command line (``python -m train ...``, see ``train/cli.py``)."""
from __future__ import annotations


def run(args) -> int:
    from train.cli import main

    return main(list(args.args))
