"""Input validation shared by the public functions: clear ``ValueError`` messages naming the argument.

One switch for the hot path (docs/architecture.md, "Input checks"): every public function checks its inputs; code
that passes values it made itself (the dataset rendering a batch) calls the same public functions inside
``with trusted():``, which turns off the *value* checks: the ones that read tensor data (finite, unit length,
rotation, index ranges, positive distances), each a device → host read. Shape, dtype and argument checks read only
metadata and always run. :func:`enabled` is the one flag every value check reads; it lives in a
:class:`contextvars.ContextVar`, so it is per thread (a new thread starts with the checks on) and per asyncio task,
and ``trusted()`` restores it on leaving, an exception included.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Union

import numpy.typing as npt
import torch

#: what the public functions take as numbers: a tensor, a numpy array or (nested) sequences of numbers
TensorLike = Union[torch.Tensor, npt.ArrayLike]

_TRUSTED: ContextVar[bool] = ContextVar("onthefly_trusted_inputs", default=False)


def enabled() -> bool:
    """True unless inside :func:`trusted`: whether the value checks run."""
    return not _TRUSTED.get()


@contextmanager
def trusted() -> Iterator[None]:
    """Skip the value checks of every public function called inside the block (in this thread / task).

    For callers that pass values they made themselves (the hot path); shape and type checks still run. Nests;
    the previous state comes back on leaving, also when the block raises."""
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def as_float_tensor(name: str, x: TensorLike, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Return ``x`` as a floating-point tensor (numpy arrays and sequences are accepted)."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name}: expected a tensor or array of numbers, got {type(x).__name__}") from exc
    if dtype is not None:
        x = x.to(dtype)
    elif not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x


def check_shape(name: str, x: torch.Tensor, trailing: Sequence[int]) -> None:
    """Require ``x.shape`` to end with ``trailing`` (any leading batch dims)."""
    trailing = tuple(trailing)
    if x.dim() < len(trailing) or tuple(x.shape[x.dim() - len(trailing):]) != trailing:
        want = "(..., " + ", ".join(str(t) for t in trailing) + ")"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")


def check_finite(name: str, x: torch.Tensor) -> None:
    """Require finite values (a value check: skipped inside :func:`trusted`)."""
    if enabled() and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise ValueError(f"{name}: contains NaN or inf (first at index {tuple(bad)})")


def checked(name: str, x: TensorLike, trailing: Sequence[int] | None, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Convert, check the trailing shape (``None``: any) and finiteness (a value check) in one call."""
    x = as_float_tensor(name, x, dtype=dtype)
    if trailing is not None:
        check_shape(name, x, trailing)
    check_finite(name, x)
    return x


def check_nonzero(name: str, v: torch.Tensor) -> None:
    """Require non-zero vectors along the last dimension (a value check)."""
    if enabled() and bool((v.norm(dim=-1) < 1e-12).any()):
        raise ValueError(f"{name}: contains a zero vector, which has no direction")


def check_unit(name: str, v: torch.Tensor, *, tol: float = 1e-3) -> None:
    """Require unit-length vectors along the last dimension (zero vectors get their own message; a value check)."""
    if not enabled():
        return
    check_nonzero(name, v)
    norm = v.norm(dim=-1)
    if bool(((norm - 1).abs() > tol).any()):
        worst = float(norm.flatten()[(norm - 1).abs().flatten().argmax()])
        raise ValueError(f"{name}: expected unit vectors, found norm {worst:.6g} "
                         "(pass normalize=True to accept any non-zero length)")


def check_rotation(name: str, R: torch.Tensor, *, tol: float = 1e-4) -> None:
    """Require proper rotation matrices (orthonormal, determinant +1; a value check)."""
    if not enabled():
        return
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    err = (R @ R.transpose(-1, -2) - eye).abs().amax(dim=(-1, -2))
    if bool((err > tol).any()):
        raise ValueError(f"{name}: not a rotation matrix (R·Rᵀ differs from I by {float(err.max()):.3g})")
    if bool((torch.linalg.det(R) < 0).any()):
        raise ValueError(f"{name}: determinant is -1 (a reflection, not a rotation)")
