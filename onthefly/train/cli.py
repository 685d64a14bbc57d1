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
from pathlib import Path

import yaml
from jsonargparse import set_loader
from lightning.pytorch.cli import LightningCLI

from onthefly._io import MAX_YAML_BYTES, load_config_yaml, safe_yaml

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


#: top-level keys of a ``fit`` / ``test`` config (LightningCLI's; ``configs/*.yaml``)
CONFIG_KEYS = ("seed_everything", "trainer", "model", "data", "ckpt_path", "optimizer", "lr_scheduler", "config")


def read_config(path) -> dict:
    """A training config file read as LightningCLI will (a YAML mapping of :data:`CONFIG_KEYS`), guarded first
    (``onthefly._io.safe_yaml``: size, nesting depth, alias expansion), so that a damaged or hostile file is one
    ``ValueError`` naming it instead of a hang, a crash or a traceback from deep inside the parser."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--config {p}: file not found")
    if p.stat().st_size > 4 * MAX_YAML_BYTES:
        raise ValueError(f"--config {p}: {p.stat().st_size} bytes; a training config is a small YAML mapping (at "
                         f"most {4 * MAX_YAML_BYTES} bytes)")
    try:
        cfg = safe_yaml(p.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--config {p}: cannot read ({type(exc).__name__}: {str(exc)[:200]})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"--config {p}: not valid YAML: {str(exc)[:300]}") from None
    except ValueError as exc:
        raise ValueError(f"--config {p}: {exc}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"--config {p}: expected a mapping of {', '.join(CONFIG_KEYS[:4])}, ..., got "
                         f"{type(cfg).__name__}")
    unknown = [k for k in cfg if k not in CONFIG_KEYS]
    if unknown:
        raise ValueError(f"--config {p}: unknown top-level key(s) {[str(k)[:40] for k in unknown[:5]]}; a config "
                         f"has {', '.join(CONFIG_KEYS[:-1])}")
    for k in ("trainer", "model", "data"):
        if cfg.get(k) is not None and not isinstance(cfg[k], dict):
            raise ValueError(f"--config {p}: '{k}' must be a mapping, got {type(cfg[k]).__name__}")
    return cfg


def config_args(argv: Sequence[str]) -> list[str]:
    """The ``--config`` files named on a command line (``--config F`` and ``--config=F``), in order."""
    out = []
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif a.startswith("--config="):
            out.append(a.split("=", 1)[1])
    return out


def cli_main(args: Sequence[str] | None = None, run: bool = True) -> GazeCLI:
    return GazeCLI(GazeRegressor, GazeDataModule, args=None if args is None else list(args), run=run,
                   save_config_kwargs={"overwrite": True}, seed_everything_default=0,
                   parser_kwargs={"parser_mode": PARSER_MODE})
