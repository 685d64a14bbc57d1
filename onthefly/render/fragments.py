"""Rasterizer outputs and input preparation, shared by every backend.

:class:`Fragments` is what every rasterizer backend returns; :func:`prepare_inputs` validates and normalises the
inputs the same way for all of them (bad input raises a ``ValueError`` naming the argument).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..checks import enabled

__all__ = ["Fragments", "prepare_inputs", "image_hw"]


@dataclass
class Fragments:
    """Rasterizer output. ``pix_to_face`` (B,H,W) int64, ``zbuf`` (B,H,W), ``bary`` (B,H,W,3).

    ``pix_to_face`` indexes the face list of the pixel's own mesh (``-1`` = background); ``zbuf`` is the
    camera-frame z of the visible surface (``-1`` background); ``bary`` are perspective-correct
    barycentric weights of the face's vertices 0,1,2 (``-1`` background).
    """

    pix_to_face: Tensor
    zbuf: Tensor
    bary: Tensor

    @property
    def mask(self) -> Tensor:
        """Coverage (B,1,H,W) bool."""
        return (self.pix_to_face >= 0).unsqueeze(1)

    def __iter__(self):  # allows ``p2f, zbuf, bary = rasterize(...)``
        return iter((self.pix_to_face, self.zbuf, self.bary))


# ----------------------------------------------------------------------------------------------
# input checking
# ----------------------------------------------------------------------------------------------

def _max_min(t: Tensor) -> tuple[int, int]:
    """Max and min of an integer tensor; CPU tensors through numpy (one thread: no OpenMP team is woken for a
    check, which costs more than the check on a contended machine)."""
    if t.device.type == "cpu":
        a = t.numpy()
        return int(a.max()), int(a.min())
    return int(t.max()), int(t.min())


def _finite_rows(t: Tensor) -> Tensor:
    """(B,) bool: every value of sample b is finite (CPU tensors through numpy, see :func:`_max_min`)."""
    if t.device.type == "cpu" and not t.requires_grad:
        return torch.from_numpy(np.isfinite(t.reshape(t.shape[0], -1).numpy()).all(1))
    return torch.isfinite(t).flatten(1).all(1)


def image_hw(image_size) -> tuple[int, int]:
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        h = w = image_size
    else:
        try:
            h, w = (int(s) for s in image_size)
        except Exception:  # noqa: BLE001
            raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive, got {(h, w)}")
    return h, w


def _pad_list(items, fill, what):
    if len(items) == 0:
        raise ValueError(f"{what} is an empty list")
    n = max(int(t.shape[0]) for t in items)
    out = items[0].new_full((len(items), n, *items[0].shape[1:]), fill)
    for b, t in enumerate(items):  # input packing only, not on the hot path
        out[b, : t.shape[0]] = t
    return out


def prepare_inputs(verts, faces, K, image_size):
    """Validate and normalise inputs. Returns ``verts (B,V,3)``, ``faces (F,3) or (B,F,3)`` int64,
    ``K (B,3,3)`` (verts dtype), ``(H, W)``.

    ``verts`` may be a list of (V_b,3) tensors and ``faces`` a list of (F_b,3) tensors (packed per-mesh
    faces); they are padded (faces with ``-1`` rows, which are ignored). The value checks (finite vertices and
    intrinsics, face indices in range, positive focal lengths) are skipped inside
    :func:`onthefly.checks.trusted`; the shape and dtype checks always run.
    """
    check = enabled()
    H, W = image_hw(image_size)
    if isinstance(verts, (list, tuple)):
        for b, v in enumerate(verts):
            if not torch.is_tensor(v) or v.ndim != 2 or v.shape[-1] != 3:
                raise ValueError(f"verts[{b}] must be a (V,3) tensor")
            if v.shape[0] == 0:
                raise ValueError(f"verts is empty for mesh {b} (0 vertices)")
        nverts = [int(v.shape[0]) for v in verts]
        verts = _pad_list(list(verts), 0.0, "verts")
    else:
        nverts = None
    if not torch.is_tensor(verts):
        raise ValueError(f"verts must be a torch tensor, got {type(verts).__name__}")
    if verts.ndim == 2:
        verts = verts.unsqueeze(0)
    if verts.ndim != 3 or verts.shape[-1] != 3:
        raise ValueError(f"verts must have shape (B,V,3), got {tuple(verts.shape)}")
    if verts.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"verts must be float32/float64, got {verts.dtype}")
    B, V = int(verts.shape[0]), int(verts.shape[1])
    if B == 0:
        raise ValueError("verts is empty (batch size 0)")
    if V == 0:
        raise ValueError("verts is empty (0 vertices)")
    verts = verts.contiguous()  # once here, so no backend copies it again (e.g. an einsum's permuted output)
    dev = verts.device

    if isinstance(faces, (list, tuple)):
        if len(faces) != B:
            raise ValueError(f"faces is a list of {len(faces)} meshes but verts has batch {B}")
        for b, f in enumerate(faces):
            if not torch.is_tensor(f) or f.ndim != 2 or f.shape[-1] != 3:
                raise ValueError(f"faces[{b}] must be an (F,3) integer tensor")
            if f.shape[0] == 0:
                raise ValueError(f"faces is empty for mesh {b} (0 faces)")
            if check and f.numel():
                fmax = int(f.max())
                nv = nverts[b] if nverts is not None else V
                if fmax >= nv or int(f.min()) < 0:
                    bad = fmax if fmax >= nv else int(f.min())
                    raise ValueError(f"faces index {bad} out of range for {nv} vertices (mesh {b})")
        faces = _pad_list([f.to(device=dev, dtype=torch.int64) for f in faces], -1, "faces")
        check_faces = False
    else:
        check_faces = check
    if not torch.is_tensor(faces):
        raise ValueError(f"faces must be a torch tensor, got {type(faces).__name__}")
    if faces.dtype.is_floating_point or faces.dtype == torch.bool or faces.is_complex():
        raise ValueError(f"faces must be an integer tensor, got {faces.dtype}")
    if faces.ndim not in (2, 3) or faces.shape[-1] != 3:
        raise ValueError(f"faces must have shape (F,3) or (B,F,3), got {tuple(faces.shape)}")
    if faces.ndim == 3 and faces.shape[0] != B:
        if faces.shape[0] == 1:
            faces = faces[0]
        else:
            raise ValueError(f"faces has batch {faces.shape[0]} but verts has batch {B}")
    faces = faces.to(device=dev, dtype=torch.int64)
    if faces.shape[-2] == 0:
        raise ValueError("faces is empty (0 faces)")
    if check_faces:
        if faces.ndim == 2:
            fmax, fmin = _max_min(faces)
            if fmax >= V or fmin < 0:
                bad = fmax if fmax >= V else fmin
                raise ValueError(f"faces index {bad} out of range for {V} vertices")
        else:
            pad = (faces == -1).all(-1, keepdim=True)
            bad = ((faces < 0) | (faces >= V)) & ~pad
            if bool(bad.any()):
                b, f, k = (int(x) for x in bad.nonzero()[0])
                raise ValueError(f"faces index {int(faces[b, f, k])} out of range for {V} vertices "
                                 f"(mesh {b}, face {f})")
            empty = pad.squeeze(-1).all(-1)
            if bool(empty.any()):
                raise ValueError(f"faces is empty for mesh {int(empty.nonzero()[0])} (only padding rows)")

    if check:
        finite = _finite_rows(verts)
        if not bool(finite.all()):
            b = int((~finite).nonzero()[0])
            raise ValueError(f"verts contains NaN/inf at batch {b}")

    if not torch.is_tensor(K):
        K = torch.as_tensor(K)
    K = K.to(device=dev, dtype=verts.dtype)
    if K.ndim == 2:
        K = K.unsqueeze(0)
    if K.ndim != 3 or K.shape[-2:] != (3, 3):
        raise ValueError(f"K must have shape (B,3,3) or (3,3), got {tuple(K.shape)}")
    if K.shape[0] == 1 and B > 1:
        K = K.expand(B, 3, 3)
    if K.shape[0] != B:
        raise ValueError(f"K has batch {K.shape[0]} but verts has batch {B}")
    if check:
        kfin = torch.isfinite(K).flatten(1).all(1)
        if not bool(kfin.all()):
            raise ValueError(f"K[{int((~kfin).nonzero()[0])}] contains NaN/inf")
        badf = (K[:, 0, 0] <= 0) | (K[:, 1, 1] <= 0)
        if bool(badf.any()):
            raise ValueError(f"K[{int(badf.nonzero()[0])}] has non-positive focal length")
    return verts, faces, K, (H, W)


