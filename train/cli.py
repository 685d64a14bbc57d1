"""The training command line: a ``LightningCLI`` over :class:`GazeRegressor` and :class:`GazeDataModule`.

    python -m train fit --config configs/demo.yaml          # or: onthefly train fit --config configs/demo.yaml
    python -m train fit --config configs/demo.yaml --ckpt_path last   # resume
    python -m train test --config configs/demo.yaml --ckpt_path out/train-demo/checkpoints/last.ckpt
    python -m train demo --out out/train-demo               # the whole CPU demo: cache → train → error → PNG

The data module validates its configuration (files, keys, image sizes) when it is built, i.e. before training.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from .data import GazeDataModule
from .module import GazeRegressor


class GazeCLI(LightningCLI):
    """LightningCLI with the project's defaults (see ``configs/*.yaml``)."""


def cli_main(args: Sequence[str] | None = None, run: bool = True) -> GazeCLI:
    return GazeCLI(GazeRegressor, GazeDataModule, args=None if args is None else list(args), run=run,
                   save_config_kwargs={"overwrite": True}, seed_everything_default=0)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        from .demo import main as demo_main

        return demo_main(argv[1:])
    try:
        cli_main(argv)
    except ValueError as e:  # configuration errors (missing cache/h5, bad keys, sizes): one clear line
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
