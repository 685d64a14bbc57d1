"""Every CPU render test runs once per CPU rasterizer backend: the pure-torch reference and the compiled numba
kernels (skipped, with the reason, where numba is not installed). ``backend="auto"`` -- the default of
``rasterize`` and ``render`` -- is pointed at each in turn, so the analytic tests check both against the contract."""
from __future__ import annotations

import pytest

from onthefly.render import backends


@pytest.fixture(autouse=True, params=["torch", "numba"])
def cpu_backend(request):
    if request.param == "numba" and not backends.numba_available():
        pytest.skip("numba is not installed (pip install numba)")
    backends.set_default_backend(request.param)
    yield request.param
    backends.set_default_backend(None)
