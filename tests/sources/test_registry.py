"""Sources register themselves with their CLI flags: adding a source is adding one module."""
from __future__ import annotations

import argparse

import pytest

from onthefly.sources import registry


def test_builtin_sources_found_by_module_scan():
    assert list(registry.sources())[:5] == ["procedural", "mesh", "nv-gaze", "xgaze3d", "images"]


def test_a_registered_source_gets_its_flags_and_is_built(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.register
    class Dummy:
        name = "dummy"
        help = "a test source"

        @classmethod
        def add_arguments(cls, add):
            add("--input", help="the dummy input")
            add("--dummy-level", type=int, default=3, help="a flag only this source has")

        @classmethod
        def from_args(cls, args):
            obj = cls()
            obj.level, obj.input = args.dummy_level, args.input
            return obj

    from onthefly.commands import reconstruct

    p = argparse.ArgumentParser()
    reconstruct.add_arguments(p)
    args = p.parse_args(["--source", "dummy", "--input", "x", "--dummy-level", "5", "--out", "o.h5"])
    src = reconstruct.make_source(args)
    assert isinstance(src, Dummy) and (src.level, src.input) == (5, "x")
    text = p.format_help()
    assert "dummy: the dummy input" in text and "xgaze3d: XGaze3D reconstruction output" in text  # one --input
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(type("Other", (), {"name": "dummy", "from_args": classmethod(lambda c, a: None)}))
