"""The training command line: a ``LightningCLI`` over :class:`GazeRegressor` and :class:`GazeDataModule`
(the entry point, which also runs the demo, is :mod:`onthefly.train.main`).

    python -m onthefly.train fit --config configs/demo.yaml          # or: onthefly train fit --config configs/demo.yaml
    python -m onthefly.train fit --config configs/demo.yaml --ckpt_path last   # resume
    python -m onthefly.train test --config configs/demo.yaml --ckpt_path out/train-demo/checkpoints/last.ckpt
    python -m onthefly.train demo --out out/train-demo               # the whole CPU demo: cache → train → error → PNG

The data module validates its configuration (files, keys, image sizes) when it is built, i.e. before training.
"""
from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from .data import GazeDataModule
from .module import GazeRegressor


class GazeCLI(LightningCLI):
    """LightningCLI with the project's defaults (see ``configs/*.yaml``)."""


def cli_main(args: Sequence[str] | None = None, run: bool = True) -> GazeCLI:
    return GazeCLI(GazeRegressor, GazeDataModule, args=None if args is None else list(args), run=run,
                   save_config_kwargs={"overwrite": True}, seed_everything_default=0)
