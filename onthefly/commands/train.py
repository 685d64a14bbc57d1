"""``onthefly train ...``: the training command line (``python -m onthefly.train ...``, see
``onthefly/train/main.py``)."""
from __future__ import annotations


def run(args) -> int:
    from ..train.main import main  # lightning and torch: imported only when the command runs

    return main(list(args.args))
