"""The source registry: every module of :mod:`onthefly.sources` that defines a source registers it here, with its
CLI flags, so that adding a source means adding one module.

A source class decorated with :func:`register` provides:

* ``name`` (the ``--source`` value) and ``help`` (one line for ``--help``);
* ``add_arguments(add)`` (classmethod, optional): declares its flags with ``add("--flag", **argparse kwargs)``.
  A flag several sources declare (``--input``, ``--annotations``) is one option; each source's ``help`` is joined
  into it;
* ``from_args(args)`` (classmethod): the source object for the parsed ``onthefly reconstruct`` arguments;
* optionally ``build_options(args) -> dict`` overriding :func:`onthefly.cache.build_cache` keywords (e.g. a
  default ``texture_size``).

:func:`sources` imports every module of the package once (``pkgutil``) and returns ``{name: class}``.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
from typing import Any

from .. import sources as pkg

__all__ = ["register", "sources", "add_source_arguments", "make_source"]

_REGISTRY: dict[str, Any] = {}  # name -> source class (each has from_args and add_arguments)
_ORDER = ("procedural", "mesh", "nv-gaze", "xgaze3d", "images")
_NOT_SOURCES = {"base", "registry", "readers", "layouts"}


def register(cls):
    """Class decorator: register a source class under ``cls.name``."""
    name = getattr(cls, "name", None)
    if not name or not isinstance(name, str):
        raise TypeError(f"{cls.__name__}: a registered source needs a string attribute 'name'")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"source {name!r} registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
    if not callable(getattr(cls, "from_args", None)):
        raise TypeError(f"{cls.__name__}: a registered source needs a classmethod from_args(args)")
    _REGISTRY[name] = cls
    return cls


def sources() -> dict[str, Any]:
    """``{name: source class}`` of every source module in :mod:`onthefly.sources` (built-ins first)."""
    for m in pkgutil.iter_modules(pkg.__path__):
        if m.name not in _NOT_SOURCES and not m.name.startswith("_"):
            importlib.import_module(f"{pkg.__name__}.{m.name}")
    names = [n for n in _ORDER if n in _REGISTRY] + sorted(n for n in _REGISTRY if n not in _ORDER)
    return {n: _REGISTRY[n] for n in names}


def add_source_arguments(parser) -> None:
    """Add every registered source's flags to ``parser``: one argument group per source, plus one group for the
    flags several sources share (their helps joined, each prefixed with the source name)."""
    decl: list[tuple[str, tuple, dict]] = []
    for name, cls in sources().items():
        declare = getattr(cls, "add_arguments", None)
        if declare is not None:
            declare(lambda *flags, _n=name, **kw: decl.append((_n, flags, kw)))
    users: dict[str, list[str]] = {}
    for name, flags, _ in decl:
        users.setdefault(flags[0], []).append(name)
    shared = parser.add_argument_group("shared by several sources") \
        if any(len(v) > 1 for v in users.values()) else None
    groups: dict[str, argparse._ArgumentGroup] = {}
    actions: dict[str, argparse.Action] = {}
    for name, flags, kw in decl:
        kw = dict(kw)
        text = kw.pop("help", None)
        text = f"{name}: {text}" if text else None
        key = flags[0]
        if key in actions:
            act = actions[key]
            if text:
                act.help = f"{act.help}; {text}" if act.help else text
            continue
        if len(users[key]) > 1:
            assert shared is not None  # made because a flag has several users
            group = shared
        else:
            if name not in groups:
                groups[name] = parser.add_argument_group(f"--source {name}")
            group = groups[name]
        actions[key] = group.add_argument(*flags, help=text, **kw)


def make_source(args):
    """The source object for parsed ``onthefly reconstruct`` arguments (``args.source`` names it)."""
    reg = sources()
    if args.source not in reg:
        raise ValueError(f"--source: unknown source {args.source!r}; choose one of {', '.join(reg)}")
    return reg[args.source].from_args(args)


def need(args, name: str, source: str):
    """``args.<name>``, or a ValueError saying that ``--source`` needs the flag."""
    v = getattr(args, name, None)
    if v is None:
        raise ValueError(f"--source {source} needs --{name.replace('_', '-')}")
    return v
