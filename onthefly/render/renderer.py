"""``render``: rasterize -> interpolate / texture -> shade -> coverage mask (-> SSAA)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as Fnn
from torch import Tensor

from . import chunking
from .backends import empty_fragments, get_backend, numba_launch, numba_threads
from .fragments import Fragments, prepare_inputs
from .interpolate import face_vertex_ids, foreground, interpolate_rows, interpolate_soa, vertex_normals_rows
from .shading import Material, as_batch, pack_lights, pack_material, phong_shading_soa
from .texture import UVTexture, as_texture

__all__ = ["RenderResult", "render", "scale_intrinsics"]

def _slice_batch(obj, sl: slice, B: int, vec: bool = False):
    """Slice the per-sample parts of ``obj`` (tensor, light/material/texture dataclass, list of lights).
    Tensors are per-sample when their leading dim is B and they have >= 2 dims ((B,3) colours, (B,V,3)
    vertex data), or 1 dim when ``vec`` ((B,) shininess / texture_index)."""
    if obj is None:
        return None
    if isinstance(obj, (list, tuple)):
        if obj and all(dataclasses.is_dataclass(x) for x in obj):  # several lights
            return type(obj)(_slice_batch(x, sl, B) for x in obj)
        try:
            obj = torch.as_tensor(obj)
        except (TypeError, ValueError, RuntimeError):
            return obj
    if torch.is_tensor(obj):
        per = obj.ndim >= 1 and obj.shape[0] == B and (obj.ndim >= 2 or vec)
        return obj[sl] if per else obj
    if isinstance(obj, UVTexture):
        idx = obj.texture_index
        if idx is None:
            M = obj.maps.shape[0]
            idx = torch.arange(B) if M == B else torch.zeros(B, dtype=torch.int64)
        return dataclasses.replace(obj, texture_index=torch.as_tensor(idx)[sl])  # maps are never sliced
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _slice_batch(getattr(obj, f.name), sl, B,
                                                                f.name in ("shininess", "texture_index"))
                                           for f in dataclasses.fields(obj) if f.init})
    return obj


@dataclass
class RenderResult:
    """``image`` (B,3,H,W) float RGB (background pixels = ``background``; with SSAA, the average of
    the sub-samples), ``mask`` (B,1,H,W) float coverage in [0,1] (exactly 0/1 without SSAA),
    ``fragments`` at the rendered (super-sampled) resolution, ``channels`` (B,C,kH,kW) the per-vertex
    ``channels`` asked for, interpolated at the rendered (super-sampled) resolution (0 on background), or None;
    ``ssaa`` the supersampling factor they were rendered at."""

    image: Tensor
    mask: Tensor
    fragments: Fragments
    channels: Optional[Tensor] = None
    ssaa: int = 1

    def channel_mask(self, channel: int = 0, threshold: float = 0.5) -> Tensor:
        """(B,1,H,W) coverage of the region where the interpolated ``channels[:, channel]`` is >= ``threshold``:
        decided per rendered (super-sampled) pixel and averaged like ``mask`` (0/1 without SSAA, fractional at
        edges with it). E.g. a per-vertex face-region flag gives the face mask."""
        if self.channels is None:
            raise ValueError("channel_mask: this result has no channels (render(..., channels=...) was not given)")
        if not 0 <= channel < self.channels.shape[1]:
            raise ValueError(f"channel_mask: channel {channel} out of range for {self.channels.shape[1]} channel(s)")
        m = (self.channels[:, channel:channel + 1] >= threshold).to(self.mask.dtype)
        return Fnn.avg_pool2d(m, self.ssaa) if self.ssaa > 1 else m


def scale_intrinsics(K: Tensor, k: int) -> Tensor:
    """Intrinsics for a k-times finer pixel grid covering the same image (OpenCV pixel centres):
    ``f' = k f``, ``c' = k (c + 0.5) - 0.5``."""
    Ks = K.clone()
    Ks[..., 0, 0] = K[..., 0, 0] * k
    Ks[..., 1, 1] = K[..., 1, 1] * k
    Ks[..., 0, 2] = (K[..., 0, 2] + 0.5) * k - 0.5
    Ks[..., 1, 2] = (K[..., 1, 2] + 0.5) * k - 0.5
    return Ks


def render(verts, faces, K, image_size, *, textures=None, lights=None, material: Optional[Material] = None,
           verts_normals: Optional[Tensor] = None, background=None, ssaa: int = 1, shading: str = "phong",
           cull_backfaces: bool = False, znear: float = 1e-6, backend: str = "auto",
           channels: Optional[Tensor] = None) -> RenderResult:
    """Render a batch of B meshes in the OpenCV camera frame.

    Args:
        verts, faces, K, image_size, cull_backfaces, znear, backend: as :func:`rasterize` (its value checks are
            skipped inside :func:`onthefly.checks.trusted`). With
            ``backend="auto"`` (default) the CPU renders with the compiled numba kernels when numba is installed
            (rasterizer, interpolation, texturing and shading in one pass over the pixels), else with torch.
        textures: :class:`VertexColors`, :class:`UVTexture`, a (B or 1, V, 3) colour tensor, or None (white).
        lights: None (unlit: the image is the texture colour), one :class:`PointLights` /
            :class:`DirectionalLights` or a sequence of them, per-sample tensors in the camera frame.
        material: :class:`Material` (default PyTorch3D's: all ones, shininess 64).
        verts_normals: (B or 1, V, 3) vertex normals; default: area-weighted normals of ``verts``.
        background: (B,3) or (3,) RGB for uncovered pixels (default 0, so the image is premultiplied
            by coverage and ``image + (1 - mask) * bg`` composites over any background).
        ssaa: supersampling factor k >= 1: render at k*H x k*W and average k x k blocks.
        shading: ``"phong"`` (PyTorch3D's HardPhongShader) or ``"blinn"``.
        channels: optional (B or 1, V, C) per-vertex values interpolated with the same fragments into
            ``RenderResult.channels`` (e.g. a face-region flag: ``RenderResult.channel_mask()`` is then the face
            mask).
    """
    k = int(ssaa)
    if k < 1:
        raise ValueError(f"ssaa must be an integer >= 1, got {ssaa!r}")
    if shading not in ("phong", "blinn"):
        raise ValueError(f"shading model must be 'phong' or 'blinn', got {shading!r}")
    verts, faces, K, (H, W) = prepare_inputs(verts, faces, K, image_size)
    textures = as_texture(textures)
    if backend == "auto" and torch.is_grad_enabled() and _requires_grad(verts, textures, lights, material,
                                                                        verts_normals, channels, background):
        backend = "torch"  # the compiled kernels are not differentiable; the torch shading path is
    be = get_backend(backend, verts.device)
    B, V = verts.shape[0], verts.shape[1]
    dt, dev = verts.dtype, verts.device
    vn = None
    if verts_normals is not None:
        vn = verts_normals.to(dev, dt)
        if vn.ndim == 2:
            vn = vn.unsqueeze(0)
        if vn.shape[0] not in (1, B) or vn.shape[1:] != verts.shape[1:]:
            raise ValueError(f"verts_normals must be (B or 1, V, 3) = (*, {V}, 3), got {tuple(vn.shape)}")
    ch = None
    if channels is not None:
        ch = torch.as_tensor(channels).to(dev)
        ch = ch.unsqueeze(0) if ch.ndim == 2 else ch
        if ch.ndim != 3 or ch.shape[0] not in (1, B) or ch.shape[1] != V:
            raise ValueError(f"channels must be (B or 1, V, C) = (*, {V}, C), got {tuple(ch.shape)}")
        ch = ch.to(dt)
    bg = torch.zeros((B, 3), dtype=dt, device=dev) if background is None else \
        as_batch(background, B, 3, dt, dev, "background")
    Hr, Wr = H * k, W * k
    image = torch.empty((B, 3, H, W), dtype=dt, device=dev)
    mask = torch.empty((B, 1, H, W), dtype=dt, device=dev)
    frags = empty_fragments(B, Hr, Wr, dt, dev)
    chan = None if ch is None else torch.empty((B, ch.shape[2], Hr, Wr), dtype=dt, device=dev)
    Kr = scale_intrinsics(K, k) if k > 1 else K
    per = chunking.samples_per_pass(dev, faces=faces.shape[-2], pixels=Hr * Wr)
    pass_fn = _shade_pass_numba if be.name == "numba" else _shade_pass_torch
    # bounded memory: sub-batches of many samples each (not a per-sample loop), written straight into the
    # preallocated outputs
    whole = per >= B
    for a in range(0, B, per):
        sl = slice(a, min(a + per, B))
        n = sl.stop - sl.start
        fr = Fragments(*(x[sl] for x in frags))
        be.rasterize_into(verts[sl], faces if faces.ndim == 2 else faces[sl], Kr[sl], Hr, Wr, float(znear),
                          bool(cull_backfaces), fr)
        img = image[sl] if k == 1 else torch.empty((n, 3, Hr, Wr), dtype=dt, device=dev)
        def part(x):
            return x if whole else _slice_batch(x, sl, B)

        # the pass writes the coverage mask itself when it can (k == 1): no extra pass over the pixels
        done = pass_fn(fr, verts[sl], faces if faces.ndim == 2 else faces[sl], part(textures), part(lights),
                       part(material), part(vn), bg[sl], shading, part(ch), img, None if chan is None else chan[sl],
                       mask[sl] if k == 1 else None)
        if k > 1:
            image[sl] = Fnn.avg_pool2d(img, k)
            mask[sl] = Fnn.avg_pool2d((fr.pix_to_face >= 0).unsqueeze(1).to(dt), k)
        elif not done:
            mask[sl] = (fr.pix_to_face >= 0).unsqueeze(1)
    return RenderResult(image, mask, frags, chan, k)


def _requires_grad(*objs) -> bool:
    for o in objs:
        if torch.is_tensor(o):
            if o.requires_grad:
                return True
        elif isinstance(o, (list, tuple)):
            if _requires_grad(*o):
                return True
        elif dataclasses.is_dataclass(o):
            if _requires_grad(*(getattr(o, f.name) for f in dataclasses.fields(o))):
                return True
    return False


def _shade_pass_numba(fr, verts, faces, textures, lights, material, vn, bg, shading, ch, img, chan, mask) -> bool:
    """Interpolate, texture and shade one pass with the compiled kernel, straight into ``img`` / ``chan`` /
    ``mask`` (when given; returns True: the mask is written)."""
    from . import numba_kernels as nk

    B = verts.shape[0]
    dt = verts.dtype
    f3 = faces if faces.ndim == 3 else faces.unsqueeze(0)
    f3 = f3.contiguous()
    kin = dict(tex_kind=0, colors=None, maps=None, map_scale=1.0, vuv=None, fuv=None, tidx=None, align=True)
    if textures is not None:
        kin.update(textures.kernel_inputs(B, dt))
    lit = lights is not None
    vz = verts.contiguous()
    with nk.LOCK, numba_launch():
        numba_threads()
        _shade_numba_locked(nk, fr, vz, f3, kin, lit, lights, material, vn, bg, shading, ch, img, chan, mask)
    return mask is not None


def _shade_numba_locked(nk, fr, vz, f3, kin, lit, lights, material, vn, bg, shading, ch, img, chan, mask) -> None:
    B, dt = vz.shape[0], vz.dtype
    if lit:
        if vn is None:
            vn = torch.empty_like(vz)
            nk.vertex_normals(vz.numpy(), f3.numpy(), dt_scalar(dt, 1e-6), vn.numpy())
        L = pack_lights(lights, B, dt, vz.device)
        M = pack_material(material, B, dt, vz.device)
    else:
        vn = torch.zeros((1, 1, 3), dtype=dt)
        L = torch.zeros((B, 1, 13), dtype=dt)
        M = torch.zeros((B, 10), dtype=dt)
    z3 = torch.zeros((1, 1, 3), dtype=dt)

    def arr(x, default):
        return (default if x is None else x).contiguous().numpy()

    extra = torch.zeros((1, 1, 0), dtype=dt) if ch is None else ch.contiguous()
    out_extra = np.zeros((0, 0, 0, 0), dtype=img.numpy().dtype) if chan is None else chan.numpy()
    nk.shade(fr.pix_to_face.numpy(), fr.bary.numpy(), vz.numpy(), f3.numpy(), vn.contiguous().numpy(),
             int(kin["tex_kind"]), arr(kin["colors"], z3), arr(kin["maps"], torch.zeros((1, 1, 1, 3), dtype=torch.uint8)),
             dt_scalar(dt, kin["map_scale"]), arr(kin["vuv"], torch.zeros((1, 1, 2), dtype=dt)),
             arr(kin["fuv"], torch.zeros((1, 1, 3), dtype=torch.int64)),
             arr(kin["tidx"], torch.zeros(B, dtype=torch.int64)), bool(kin["align"]), L.numpy(), M.numpy(),
             shading == "blinn", lit, bg.contiguous().numpy(), extra.numpy(), dt_scalar(dt, 1.0), img.numpy(),
             out_extra, np.zeros((0, 0, 0, 0), dtype=out_extra.dtype) if mask is None else mask.numpy())


def dt_scalar(dtype, x):
    return (np.float32 if dtype == torch.float32 else np.float64)(x)


def _shade_pass_torch(fr, verts, faces, textures, lights, material, vn, bg, shading, ch, img, chan, mask) -> bool:
    """Interpolate, texture and shade one pass with torch ops (CPU and CUDA) into ``img`` / ``chan``."""
    fg = foreground(fr)
    B, Hr, Wr = fg.shape
    dt, dev = verts.dtype, verts.device
    vids = face_vertex_ids(faces, fg.batch, fg.face)
    bary_t = fg.bary.t().contiguous()  # (3,P): structure of arrays from here on
    P = fg.pidx.shape[0]
    texels = torch.ones((3, 1), dtype=dt, device=dev) if textures is None else \
        textures.texels(fg, faces, bary_t, vids)
    if lights is None:
        rgb = texels.expand(3, P)
    else:
        points = interpolate_soa(verts, vids, fg.batch, bary_t)
        if vn is None:
            normals = interpolate_rows(vertex_normals_rows(verts, faces), verts.shape[1], vids, fg.batch, bary_t)
        else:
            normals = interpolate_soa(vn, vids, fg.batch, bary_t)
        rgb = phong_shading_soa(points, normals, texels, fg.batch, B, lights, material, shading)
    HW = Hr * Wr
    out = bg.reshape(B, 3, 1).expand(B, 3, HW).contiguous()
    # flat (b, c, pixel) index of every covered pixel, one row per channel
    rem = fg.pidx - fg.batch * HW
    base = fg.batch * (3 * HW) + rem
    idx = torch.stack((base, base + HW, base + 2 * HW), 0)
    out.view(-1).index_put_((idx.view(-1),), rgb.reshape(-1))
    img.copy_(out.view(B, 3, Hr, Wr))
    if chan is not None:
        vals = interpolate_soa(ch, vids, fg.batch, bary_t)  # (C,P)
        C = vals.shape[0]
        full = torch.zeros((C, B * HW), dtype=dt, device=dev)
        full[:, fg.pidx] = vals
        chan.copy_(full.view(C, B, Hr, Wr).transpose(0, 1))
    return False
