"""Shared helpers of the cache/source tests: a parser with the real subcommand options, tiny records."""
from __future__ import annotations

import argparse

import numpy as np

from onthefly.commands import cache as cache_cmd
from onthefly.commands import reconstruct as reconstruct_cmd
from onthefly.sources.base import FrameRecord


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="onthefly")
    sub = p.add_subparsers(dest="command")
    reconstruct_cmd.add_arguments(sub.add_parser("reconstruct"))
    cache_cmd.add_arguments(sub.add_parser("cache"))
    return p


def cli(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    mod = reconstruct_cmd if args.command == "reconstruct" else cache_cmd
    return mod.run(args)


def tiny_record(i: int = 0, subject: str = "s0", *, uv: bool = False, n_verts: int = 70, seed: int = 0,
                faces=None) -> FrameRecord:
    """A small valid record: a random point cloud with a fan of faces, 68 landmarks among its vertices."""
    rng = np.random.default_rng([seed, i])
    verts = rng.normal(0, 40, (n_verts, 3)) + [0, 0, 600]
    if faces is None:
        faces = np.stack([np.zeros(n_verts - 2, int), np.arange(1, n_verts - 1), np.arange(2, n_verts)], 1)
    c = verts[:68].mean(0)
    kw = {}
    if uv:
        kw = dict(uv=rng.uniform(0, 1, (n_verts, 2)).astype(np.float32), faces_uv=np.asarray(faces),
                  texture=rng.integers(0, 256, (64, 48, 3), dtype=np.uint8))
    else:
        kw = dict(vert_colors=rng.integers(0, 256, (n_verts, 3), dtype=np.uint8))
    th = rng.uniform(-0.3, 0.3, 3)
    import cv2

    R, _ = cv2.Rodrigues(th)
    return FrameRecord(verts=verts.astype(np.float32), faces=np.asarray(faces), landmarks=verts[:68].copy(),
                       head_rotation=R, face_centre=c, face_centre_rule="eye_nose",
                       gaze_target=c + rng.normal(0, 100, 3) - [0, 0, 400],
                       K=np.array([[1000.0, 0, 320], [0, 1000, 240], [0, 0, 1]]), image_size=(640, 480),
                       subject=subject, frame=f"f{i:03d}", camera="c0", origin=f"tiny[{i}]", **kw)


class ListSource:
    """A source over a list of records or exceptions (exceptions are raised on load)."""

    name = "list"

    def __init__(self, items):
        self.items = list(items)

    def keys(self):
        return list(range(len(self.items)))

    def load(self, key):
        x = self.items[key]
        if isinstance(x, Exception):
            raise x
        return x
