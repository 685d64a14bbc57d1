"""One configuration schema for the dataset, derived from the typed signatures.

The arguments a config may set are the parameters of :class:`~onthefly.dataset.OnTheFlyGazeDataset` (read from
its signature, never copied into a list); a ``target`` is checked against its sampler's constructor
(:func:`onthefly.poses.sampler_spec`) and an ``appearance`` mapping against :class:`~onthefly.augment.Appearance`,
so a typo is an error when the file is read, before a cache is opened or a sample rendered. The same schema is read

* by ``onthefly preview`` and ``onthefly export --config FILE`` (:func:`load_dataset_config`), and
* by training: :class:`onthefly.train.data.GazeDataModule` declares every dataset parameter in its own typed
  signature (the LightningCLI schema of ``data:``), passes them through by these names, and checks its ``target``
  / ``appearance`` with :func:`check_dataset_args`; ``onthefly preview`` / ``export`` also read a training config's
  ``data:`` section (``onthefly.train.data.dataset_args_from_data``).

Every file is parsed by :func:`onthefly._io.safe_yaml` (YAML 1.2 booleans: ``on:`` is a key, not ``True``).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ._io import MAX_YAML_BYTES, safe_yaml
from .augment import Appearance
from .dataset import OnTheFlyGazeDataset
from .poses import PoseSampler, sampler_spec

__all__ = ["dataset_parameters", "check_dataset_args", "read_yaml_mapping", "load_dataset_config"]

#: dataset parameters a config file does not set (the cache is given on the command line or as ``data.cache``)
NOT_IN_FILE = ("cache",)


def dataset_parameters() -> dict[str, inspect.Parameter]:
    """The parameters of :class:`OnTheFlyGazeDataset` a config sets (its signature, less ``self`` and ``cache``)."""
    sig = inspect.signature(OnTheFlyGazeDataset.__init__)
    return {n: p for n, p in sig.parameters.items() if n != "self" and n not in NOT_IN_FILE}


def appearance_parameters() -> list[str]:
    return [n for n in inspect.signature(Appearance.__init__).parameters if n != "self"]


def check_appearance(spec: Any, where: str = "appearance") -> None:
    """An ``appearance`` value: a preset name, an :class:`Appearance`, None, or a mapping of its arguments."""
    if spec is None or isinstance(spec, (str, Appearance)):
        return
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a preset name or a mapping of Appearance arguments, got {spec!r}")
    params = appearance_parameters()
    unknown = [k for k in spec if k not in params]
    if unknown:
        raise ValueError(f"{where}: unknown argument{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(repr(k) for k in unknown)}; Appearance takes {', '.join(params)}")


def check_target(spec: Any, where: str = "target") -> None:
    """A ``target`` value: None (the default sampler), a :class:`PoseSampler`, a name or a ``{"type": ...}`` dict."""
    if spec is None or isinstance(spec, PoseSampler):
        return
    sampler_spec(spec, where)


def check_dataset_args(cfg: Mapping, where: str = "config") -> dict:
    """``cfg`` as dataset keyword arguments: every key a parameter of :class:`OnTheFlyGazeDataset`, ``target`` and
    ``appearance`` checked against their constructors. Raises ``ValueError`` naming ``where`` and the problem."""
    params = dataset_parameters()
    unknown = sorted(str(k) for k in cfg if k not in params)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; allowed: {', '.join(params)}")
    check_target(cfg.get("target"), f"{where}: target")
    check_appearance(cfg.get("appearance"), f"{where}: appearance")
    return dict(cfg)


def read_yaml_mapping(path: str | Path, what: str = "--config") -> dict:
    """A small YAML file holding a mapping, parsed with :func:`~onthefly._io.safe_yaml`; a clear ``ValueError``
    naming ``what`` and the file otherwise (missing, too large, unreadable, not YAML, not a mapping)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what}: file not found: {p}")
    if p.stat().st_size > MAX_YAML_BYTES:
        raise ValueError(f"{what} {p}: {p.stat().st_size} bytes; a config is a small YAML mapping "
                         f"(at most {MAX_YAML_BYTES} bytes)")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {p}: cannot read ({type(exc).__name__}: {str(exc)[:200]})") from None
    try:
        cfg = safe_yaml(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} {p}: not valid YAML: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{what} {p}: {exc}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{what} {p}: expected a mapping of dataset arguments, got {type(cfg).__name__}")
    return cfg


def load_dataset_config(path: str | Path, what: str = "--config",
                        data_section: Callable[[dict, str], dict] | None = None) -> dict:
    """The dataset arguments of a YAML config: a flat mapping of dataset parameters, a ``dataset:`` section of
    one, or a training (LightningCLI) config whose ``data:`` section is turned into dataset arguments by
    ``data_section(section, where)`` (the training layer's ``dataset_args_from_data``; without it such a file is
    refused). ``cache`` is dropped (it comes from ``--cache``)."""
    p = Path(path)
    cfg = read_yaml_mapping(p, what)
    if isinstance(cfg.get("data"), dict) and "dataset" not in cfg:
        if data_section is None:
            raise ValueError(f"{what} {p}: a training config (a 'data:' section) is read by the training "
                             "command line; give a mapping of dataset arguments")
        out = data_section(dict(cfg["data"]), f"{what} {p}: data")
    else:
        out = dict(cfg["dataset"]) if isinstance(cfg.get("dataset"), dict) else cfg
    out.pop("cache", None)
    return check_dataset_args(out, f"{what} {p}")
