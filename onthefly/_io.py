"""File helpers shared by the writers (atomic writes of meshes, shape models, export indices) and the readers
(a guarded YAML parse for configs and ``light_meta.yaml``)."""
from __future__ import annotations

import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path

import yaml

__all__ = ["atomic_write", "safe_yaml", "load_config_yaml", "ConfigLoader", "MAX_YAML_BYTES"]


@contextmanager
def atomic_write(path: str | Path, suffix: str = ""):
    """Write ``path`` atomically: ``with atomic_write(path) as tmp: <write tmp>`` writes a unique temporary sibling
    (``.NAME.HOST.PID.tmp`` + ``suffix``, for writers that insist on an extension such as ``np.savez``) and
    renames it onto ``path`` (``os.replace``) when the block ends without an error; on an error the temporary file
    is removed and ``path`` is untouched. A reader never sees a partial ``path``; concurrent writers (shards,
    processes) never share a temporary file. Creates the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------------------------------------ guarded YAML
MAX_YAML_NODES = 100_000
MAX_YAML_BYTES = 1 << 16
MAX_YAML_DEPTH = 64


def _flow_depth(text: str) -> int:
    """The deepest nesting of flow brackets ``[ {`` outside quotes (a cheap guard before parsing)."""
    depth = best = 0
    quote = None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "\n":
            quote = None
    return best


def _expanded_size(obj, memo=None) -> int:
    """Values in ``obj`` with every shared (aliased) node counted each time it is used, in time linear in the
    distinct nodes."""
    memo = {} if memo is None else memo
    if not isinstance(obj, (dict, list)):
        return 1
    if id(obj) in memo:
        return memo[id(obj)]
    memo[id(obj)] = MAX_YAML_NODES + 1  # a cycle counts as too large
    items = list(obj.values()) + list(obj.keys()) if isinstance(obj, dict) else obj
    n = 1
    for v in items:
        n += _expanded_size(v, memo)
        if n > MAX_YAML_NODES:
            break
    memo[id(obj)] = n
    return n


class ConfigLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader with YAML 1.2 scalars, the one YAML dialect of the project's files (dataset, preview,
    export and training configs; ``light_meta.yaml``): booleans are only ``true``/``false`` (YAML 1.1 also reads
    ``on``/``off``/``yes``/``no`` as booleans, which turned the sampler key ``on:`` into ``True``), ``1e-4`` is a
    float (YAML 1.1 wants ``1.0e-4``), and dates stay strings."""


ConfigLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float",
                                                   "tag:yaml.org,2002:timestamp")]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_config_yaml(text: str):
    """``text`` parsed with :class:`ConfigLoader` (unguarded: for short strings, e.g. the command-line values of
    the training CLI; files go through :func:`safe_yaml`)."""
    return yaml.load(text, Loader=ConfigLoader)


def safe_yaml(text: str):
    """``text`` parsed with :class:`ConfigLoader`, guarded against what crashes or stalls PyYAML (found by the fuzz campaign,
    ``tests/fuzz``): nesting deeper than ``MAX_YAML_DEPTH`` (its parser is recursive; its C one segfaults) and
    alias expansion past ``MAX_YAML_NODES`` values (a "billion laughs"). Raises ``yaml.YAMLError`` for bad syntax
    and ``ValueError`` (without the file name: the caller adds it) for the guards."""
    if _flow_depth(text) > MAX_YAML_DEPTH:
        raise ValueError(f"nested more than {MAX_YAML_DEPTH} levels deep")
    try:
        obj = load_config_yaml(text)
    except RecursionError:
        raise ValueError("nested too deeply (more than the recursion limit)") from None
    if _expanded_size(obj) > MAX_YAML_NODES:
        raise ValueError(f"expands to more than {MAX_YAML_NODES} values (aliases?)")
    return obj
