"""Fixtures of the export tests: the dataset tests' small procedural cache, a tiny export configuration and a
reference export written once per session."""
from __future__ import annotations

import json

import pytest
from dataset.conftest import proc_cache  # noqa: F401  (16 procedural frames of 4 subjects)

#: 32 px images, 2 views per frame, batches of 3 frames (4 frames per subject: 2 batches, the last one partial)
SEED, K, SIZE = 7, 2, 32
CONFIG = {"batch_size": 3, "appearance": "default", "target": {"type": "gaussian", "std": 15}}


def settings(cache, out, schema="mpii-nv", **over):
    from onthefly.export import ExportSettings

    kw = dict(seed=SEED, views_per_frame=K, schema=schema, image_size=SIZE, config=dict(CONFIG), device="cpu")
    kw.update(over)
    return ExportSettings(cache, out, **kw)


@pytest.fixture(scope="session")
def config_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "export.json"
    p.write_text(json.dumps(CONFIG))
    return p


@pytest.fixture(scope="session")
def reference_export(proc_cache, tmp_path_factory):  # noqa: F811
    """An uninterrupted mpii-nv export of the whole cache (the content every other run must reproduce)."""
    from onthefly.export import export

    out = tmp_path_factory.mktemp("ref") / "export"
    export(settings(proc_cache, out), progress="none")
    return out
