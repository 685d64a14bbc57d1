"""Shared pytest fixtures: device x dtype parametrization in the style of kornia.

``--device`` picks ``cpu`` (default), ``cuda`` or ``all`` (every available device); ``--dtype`` picks
``float32``/``float64``/``all`` (default ``all``). Tests that take the ``device``/``dtype`` fixtures run once per
combination. Tests marked ``slow`` run only with ``--runslow``.
"""
from __future__ import annotations

import pytest
import torch

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="cpu, cuda or all")
    parser.addoption("--dtype", default="all", help="float32, float64 or all")
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: slow test, run with --runslow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _devices(config) -> list[str]:
    want = config.getoption("--device")
    if want == "all":
        return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [want]


def _dtypes(config) -> list[str]:
    want = config.getoption("--dtype")
    return list(_DTYPES) if want == "all" else [want]


def pytest_generate_tests(metafunc):
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", [torch.device(d) for d in _devices(metafunc.config)], ids=str)
    if "dtype" in metafunc.fixturenames:
        metafunc.parametrize("dtype", [_DTYPES[d] for d in _dtypes(metafunc.config)],
                             ids=lambda d: str(d).replace("torch.", ""))
