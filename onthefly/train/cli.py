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

import yaml
from jsonargparse import set_loader
from lightning.pytorch.cli import LightningCLI

from onthefly._io import load_config_yaml, safe_yaml

from .data import GazeDataModule
from .module import GazeRegressor

#: the jsonargparse parser mode of the training command line: the project's YAML dialect (YAML 1.2 booleans and
#: floats, :class:`onthefly._io.ConfigLoader`) for config files and command-line values alike, so a training config
#: reads as ``onthefly preview`` / ``export`` read it (``target: {type: gaussian, on: gaze}``: ``on`` is a key)
PARSER_MODE = "onthefly"


def _load(text: str):
    value = safe_yaml(text) if "\n" in text else load_config_yaml(text)
    # as jsonargparse's own YAML loader: a bare word such as `key:` or `{a, b}` is the string itself
    if isinstance(value, dict) and value and all(v is None for v in value.values()):
        keys = set(text.strip(" {}").replace(" ", "").split(","))
        if (len(value) == 1 and text.strip() == f"{next(iter(value))}:") or keys == set(value):
            value = text
    return value


set_loader(PARSER_MODE, _load, (yaml.YAMLError, ValueError))


class GazeCLI(LightningCLI):
    """LightningCLI with the project's defaults (see ``configs/*.yaml``)."""


def cli_main(args: Sequence[str] | None = None, run: bool = True) -> GazeCLI:
    return GazeCLI(GazeRegressor, GazeDataModule, args=None if args is None else list(args), run=run,
                   save_config_kwargs={"overwrite": True}, seed_everything_default=0,
                   parser_kwargs={"parser_mode": PARSER_MODE})
