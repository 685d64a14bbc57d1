"""The ``onthefly`` command line: ``onthefly --help`` lists the subcommands, each has its own ``--help``.

Subcommands are registered below with a one-line summary; their handlers import lazily so ``--help`` is fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from . import __version__

_COMMANDS: list[tuple[str, str, Callable[[argparse.ArgumentParser], None], str]] = []


def command(name: str, summary: str, handler: str):
    """Register a subcommand: ``handler`` is "module:function" taking the parsed args, returning an exit code."""
    def deco(add_args: Callable[[argparse.ArgumentParser], None]):
        _COMMANDS.append((name, summary, add_args, handler))
        return add_args
    return deco


def module_command(name: str, summary: str, module: str) -> None:
    """Register a subcommand whose module defines ``add_arguments(parser)`` and ``run(args)`` (imported lazily)."""
    def add_args(p: argparse.ArgumentParser) -> None:
        importlib.import_module(module).add_arguments(p)
    _COMMANDS.append((name, summary, add_args, f"{module}:run"))


@command("info", "print versions, devices and which optional backends are available",
         "onthefly.commands.info:run")
def _info_args(p: argparse.ArgumentParser) -> None:
    pass


@command("heads", "generate procedural heads: OBJ meshes with metadata, and a preview PNG",
         "onthefly.commands.heads:run")
def _heads_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--count", type=int, default=8, help="number of heads (default 8)")
    p.add_argument("--seed", type=int, default=0, help="identity seed; the same seed gives identical heads")
    p.add_argument("--out", required=True, help="output folder for headNNNN.obj + headNNNN.json and preview.png")
    p.add_argument("--no-obj", action="store_true", help="write only the preview, not the meshes")


module_command("reconstruct", "build a mesh cache from a source: procedural (default), mesh, nv-gaze, xgaze3d or "
               "images", "onthefly.commands.reconstruct")
module_command("cache", "inspect a mesh cache: 'cache info CACHE' (counts, sizes, subjects, topology sharing) or "
               "'cache validate CACHE' (checks every record)", "onthefly.commands.cache")
module_command("preview", "write a grid of dataset samples with gaze and head-pose arrows, and a plot of the sampled "
               "head-pose and gaze distributions", "onthefly.commands.preview")
module_command("bench", "render and end-to-end dataset throughput on this machine for every available backend, "
               "against the moderngl/llvmpipe and PyTorch3D peers when installed (table + JSON)",
               "onthefly.commands.bench")
module_command("export", "write a fixed h5 dataset in the anchors' schema (one file per subject; resumable, "
               "sharded), or --verify / --index an export directory", "onthefly.commands.export")


@command("demo", "one look at the data: procedural cache -> on-the-fly batches -> preview PNG and labels "
         "(the training demo is 'onthefly train demo')",
         "onthefly.commands.demo:run")
def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--subjects", type=int, default=8, help="procedural identities (default 8)")
    p.add_argument("--views", type=int, default=8, help="source frames per identity (default 8)")
    p.add_argument("--batches", type=int, default=4, help="batches to stream and time (default 4)")
    p.add_argument("--batch-size", type=int, default=32, help="samples per batch (default 32)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--camera", default="xgaze224", help="normalized camera preset: xgaze224 or xgaze448")
    p.add_argument("--device", default="cpu", help="torch device to render on (default cpu; e.g. cuda)")


@command("train", "train a gaze regressor on on-the-fly batches (LightningCLI: 'train fit --config "
         "configs/demo.yaml', 'train demo' = the CPU demo end to end; docs/training.md)", "onthefly.commands.train:run")
def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs=argparse.REMAINDER,
                   help="LightningCLI arguments (fit/validate/test/predict --config ...) or 'demo [--out DIR ...]'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onthefly",
        description="Exactly labelled gaze training data, rendered on the fly from cached face meshes.",
        epilog="Conventions (frames, pitch/yaw signs, face centre): docs/conventions.md",
    )
    parser.add_argument("--version", action="version", version=f"onthefly {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, summary, add_args, handler in _COMMANDS:
        p = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
        add_args(p)
        p.set_defaults(_handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module, func = args._handler.split(":")
    try:
        return int(getattr(importlib.import_module(module), func)(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"onthefly {args.command}: error: {exc}", file=sys.stderr)
        return 1
