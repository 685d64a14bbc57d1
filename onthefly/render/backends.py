"""The rasterizer backends, registered in one table (:data:`BACKENDS`).

========== ======================= ==================================================================
name       devices                 what
========== ======================= ==================================================================
torch      cpu, cuda               pure torch (:mod:`.rasterize`): the reference, and the CUDA path
numba      cpu                     compiled CPU kernels (:mod:`.numba_kernels`), the same fragments bit
                                   for bit; needs ``numba`` (``pip install onthefly[fast]``)
pytorch3d  cpu, cuda               PyTorch3D's ``MeshRasterizer`` (:mod:`.pytorch3d_backend`), optional
========== ======================= ==================================================================

``backend="auto"`` (the default of :func:`~onthefly.render.rasterize` and :func:`~onthefly.render.render`) is
``numba`` on the CPU when numba imports, else ``torch``: the default renderer runs everywhere.

Every backend rasterizes one pass of prepared inputs (:func:`.fragments.prepare_inputs`) into preallocated
:class:`~.fragments.Fragments` slices; the pass size comes from :mod:`.chunking`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from . import chunking
from .fragments import Fragments, prepare_inputs
from .pytorch3d_backend import import_pytorch3d, rasterize_pytorch3d_prepared  # imports pytorch3d only when called
from .rasterize import rasterize_pass_torch

__all__ = ["rasterize", "Backend", "BACKENDS", "get_backend", "set_default_backend", "available_backends", "numba_available"]


@dataclass(frozen=True)
class Backend:
    name: str
    devices: tuple
    available: Callable[[], bool]
    #: (verts (B,V,3), faces (F,3)/(B,F,3), K (B,3,3), H, W, znear, cull_backfaces, out: Fragments) -> None
    rasterize_into: Callable
    install: str = ""
    #: True when it returns the torch backend's fragments bit for bit
    exact: bool = True


# ------------------------------------------------------------------------------------------------- torch
def _torch_into(verts, faces, K, H, W, znear, cull, out: Fragments) -> None:
    fr = rasterize_pass_torch(verts, faces, K, H, W, znear, cull)
    for dst, src in zip(out, fr):
        dst.copy_(src)


# ------------------------------------------------------------------------------------------------- numba
@functools.lru_cache(maxsize=1)
def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _numba_kernels():
    from . import numba_kernels

    return numba_kernels


def numba_threads() -> int:
    """Use torch's CPU thread count for the numba kernels too (``torch.set_num_threads`` controls both)."""
    import numba

    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


def numba_scalars(dtype: torch.dtype):
    t = np.float32 if dtype == torch.float32 else np.float64
    return t, t(1.0), t(0.5), t(torch.finfo(dtype).tiny)


def band_rows(H: int, B: int, threads: int) -> int:
    """Rows per work item: at least 4 (image, band) items per thread (batch 1 included), handed out one at a
    time (see :func:`numba_launch`), so a thread that the OS preempts does not hold the others up."""
    if threads <= 1:
        return H
    bands = max(1, math.ceil(4 * threads / max(B, 1)))
    return max(1, math.ceil(H / bands))


def numba_launch():
    """Context for a kernel launch: dynamic scheduling of the ``prange`` items (one at a time) when several
    threads run them, so the work balances itself on a shared or busy machine."""
    import numba

    return numba.parallel_chunksize(1 if numba.get_num_threads() > 1 else 0)


def _numba_into(verts, faces, K, H, W, znear, cull, out: Fragments) -> None:
    nk = _numba_kernels()
    t, one, half, tiny = numba_scalars(verts.dtype)
    v = verts.detach().contiguous().numpy()
    f = (faces if faces.ndim == 3 else faces.unsqueeze(0)).contiguous().numpy()
    with nk.LOCK:
        threads = numba_threads()
        uvw = np.empty(v.shape, dtype=t)
        nk.project(v, K.detach().contiguous().numpy(), t(znear), one, uvw)
        with numba_launch():
            nk.raster_fused(uvw, f, bool(cull), one, half, tiny, np.arange(W, dtype=t), np.arange(H, dtype=t),
                            band_rows(H, verts.shape[0], threads), out.pix_to_face.numpy(), out.zbuf.numpy(),
                            out.bary.numpy())


# --------------------------------------------------------------------------------------------- pytorch3d
def _pytorch3d_available() -> bool:
    try:
        import_pytorch3d()
    except ImportError:
        return False
    return True


def _pytorch3d_into(verts, faces, K, H, W, znear, cull, out: Fragments) -> None:
    fr = rasterize_pytorch3d_prepared(verts, faces, K, H, W, znear=znear, cull_backfaces=cull)
    for dst, src in zip(out, fr):
        dst.copy_(src)


BACKENDS: dict[str, Backend] = {
    "torch": Backend("torch", ("cpu", "cuda"), lambda: True, _torch_into),
    "numba": Backend("numba", ("cpu",), numba_available, _numba_into,
                     install="backend='numba' needs numba: `pip install numba` (or `pip install onthefly[fast]`); "
                             "wheels exist for Linux, macOS and Windows"),
    "pytorch3d": Backend("pytorch3d", ("cpu", "cuda"), _pytorch3d_available, _pytorch3d_into, exact=False),
}


_DEFAULT: dict[str, str | None] = {"cpu": None}


def set_default_backend(name: str | None) -> None:
    """What ``backend="auto"`` means on the CPU from now on (process-wide): a backend name, or None for the
    built-in choice (numba when installed, else torch). CUDA tensors always use torch under ``"auto"``."""
    if name is not None:
        get_backend(name, "cpu")  # validates, and raises when it is not installed
    _DEFAULT["cpu"] = name


def get_backend(name: str, device) -> Backend:
    """The backend ``name`` (or ``"auto"``) for tensors on ``device``; a clear error when it cannot run there."""
    kind = torch.device(device).type
    if name == "auto":
        if kind == "cpu" and _DEFAULT["cpu"] is not None:
            return BACKENDS[_DEFAULT["cpu"]]
        return BACKENDS["numba" if kind == "cpu" and numba_available() else "torch"]
    if name not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {sorted(BACKENDS)}, got {name!r}")
    be = BACKENDS[name]
    if kind not in be.devices:
        raise ValueError(f"backend {name!r} runs on {', '.join(be.devices)} only, not on {kind} tensors")
    if name == "pytorch3d":
        import_pytorch3d()  # raises the ImportError that explains how to install it
    elif not be.available():
        raise ImportError(be.install)
    return be


def available_backends(device="cpu") -> list[str]:
    """Names of the backends that run on ``device`` here."""
    kind = torch.device(device).type
    return [n for n, be in BACKENDS.items() if kind in be.devices and be.available()]


# ------------------------------------------------------------------------------------- the public entry
def rasterize(verts: Union[Tensor, Sequence[Tensor]], faces: Union[Tensor, Sequence[Tensor]], K: Tensor,
              image_size, *, znear: float = 1e-6, cull_backfaces: bool = False, backend: str = "auto") -> Fragments:
    """Rasterize a batch of B meshes given in the OpenCV camera frame.

    Args:
        verts: (B,V,3) float32/float64 camera-frame vertices (or a list of (V_b,3) tensors).
        faces: (F,3) int faces shared by all meshes (the fast, common case), or (B,F,3) per-mesh faces
            padded with ``-1`` rows, or a list of (F_b,3) tensors (packed per mesh).
        K: (B,3,3) or (3,3) intrinsics ``[[fx,0,cx],[0,fy,cy],[0,0,1]]`` (pixel centres at integers).
        image_size: int or (H, W).
        znear: faces with any vertex at ``z <= znear`` are rejected.
        cull_backfaces: drop faces whose front side (``(v1-v0)x(v2-v0)``) faces away from the camera.
        backend: ``"auto"`` (default: ``"numba"`` on the CPU when numba is installed, else ``"torch"``),
            ``"torch"``, ``"numba"`` (CPU, the same fragments bit for bit) or ``"pytorch3d"`` (optional
            dependency); see :mod:`onthefly.render.backends`.

    Bad input raises ``ValueError`` naming the argument; the value checks (NaN/inf, index range, focal length)
    are skipped inside :func:`onthefly.checks.trusted` (the dataset's hot path).
    """
    if not isinstance(backend, str):
        raise ValueError(f"backend must be a string, got {type(backend).__name__}")
    v, f, Kt, (H, W) = prepare_inputs(verts, faces, K, image_size)
    be = get_backend(backend, v.device)
    B, F = v.shape[0], f.shape[-2]
    out = empty_fragments(B, H, W, v.dtype, v.device)
    per = chunking.samples_per_pass(v.device, faces=F, pixels=H * W)
    with torch.no_grad():
        # bounded memory for huge batches: sub-batches of many samples each (not a per-sample loop), written
        # straight into the preallocated outputs
        for a in range(0, B, per):
            sl = slice(a, min(a + per, B))
            be.rasterize_into(v[sl], f if f.ndim == 2 else f[sl], Kt[sl], H, W, float(znear),
                              bool(cull_backfaces), Fragments(*(x[sl] for x in out)))
    return out


def empty_fragments(B, H, W, dtype, device) -> Fragments:
    return Fragments(torch.empty((B, H, W), dtype=torch.int64, device=device),
                     torch.empty((B, H, W), dtype=dtype, device=device),
                     torch.empty((B, H, W, 3), dtype=dtype, device=device))
