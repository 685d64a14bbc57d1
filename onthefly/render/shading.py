"""Lights, materials and Phong / Blinn-Phong shading, all in the OpenCV camera frame.

Every field is a per-sample tensor, broadcastable to (B,3) (colours, positions, directions) or (B,)
(shininess); plain floats/sequences are accepted. The camera centre is the origin.

Default model ``"phong"`` reproduces PyTorch3D's ``phong_shading`` / ``HardPhongShader`` exactly::

    N = normalize(n);  L = normalize(light.location - p)  (point)  or normalize(light.direction)
    V = normalize(-p)                                    (camera centre is the origin)
    diffuse  = light.diffuse  * relu(N.L)
    R        = -L + 2 (N.L) N
    specular = light.specular * (relu(V.R) * (N.L > 0)) ** shininess
    ambient  = material.ambient * light.ambient
    rgb = (ambient + material.diffuse * diffuse) * texel + material.specular * specular   (not clamped)

``"blinn"`` replaces ``relu(V.R)`` by ``relu(N.H)`` with ``H = normalize(L + V)``. Several lights add up.
``DirectionalLights.direction`` points from the surface *towards* the light (PyTorch3D convention).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence, Union

import torch
from torch import Tensor

__all__ = ["DirectionalLights", "PointLights", "Material", "phong_shading", "phong_shading_soa", "as_batch",
           "pack_lights", "pack_material"]


def as_batch(x, B: int, width: int | None, dtype, device, name: str) -> Tensor:
    """Broadcast a float / sequence / tensor to (B,width) (or (B,) when width is None)."""
    t = torch.as_tensor(x, dtype=dtype, device=device)
    shape = (B,) if width is None else (B, width)
    try:
        return t.expand(shape) if t.ndim <= len(shape) else t.reshape(shape)
    except RuntimeError:
        raise ValueError(f"{name} has shape {tuple(t.shape)}, expected broadcastable to {shape}") from None


def _f(default):
    return field(default_factory=lambda: default)


#: a colour / weight per sample: a tensor (B or 1, 3), one RGB triple for all, rows of triples, or one number
Colour = Union[Tensor, Sequence[float], Sequence[Sequence[float]], float]


@dataclass
class DirectionalLights:
    """Directional light(s) per sample: ``direction`` (B,3) towards the light, camera frame."""

    direction: Union[Tensor, Sequence[float]] = _f((0.0, 0.0, -1.0))
    ambient: Colour = _f((0.5, 0.5, 0.5))
    diffuse: Colour = _f((0.3, 0.3, 0.3))
    specular: Colour = _f((0.2, 0.2, 0.2))


@dataclass
class PointLights:
    """Point light(s) per sample: ``location`` (B,3) in the camera frame."""

    location: Union[Tensor, Sequence[float]] = _f((0.0, 0.0, 0.0))
    ambient: Colour = _f((0.5, 0.5, 0.5))
    diffuse: Colour = _f((0.3, 0.3, 0.3))
    specular: Colour = _f((0.2, 0.2, 0.2))


@dataclass
class Material:
    """Per-sample material: colours (B,3), ``shininess`` (B,). Defaults match PyTorch3D."""

    ambient: Colour = _f((1.0, 1.0, 1.0))
    diffuse: Colour = _f((1.0, 1.0, 1.0))
    specular: Colour = _f((1.0, 1.0, 1.0))
    shininess: Union[Tensor, float] = 64.0


def _normalize(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Normalise the columns of a (3,P) array (PyTorch3D's F.normalize semantics)."""
    return x / torch.sqrt(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]).clamp_min(eps)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def phong_shading(points: Tensor, normals: Tensor, texels: Tensor, batch: Tensor, B: int,
                  lights, material: Material | None = None, model: str = "phong") -> Tensor:
    """Shade P surface samples. ``points``/``normals``/``texels`` (P,3) in the camera frame, ``batch``
    (P,) sample index of each row, ``B`` batch size; ``lights`` one light object or a sequence of them.
    Returns (P,3) RGB, not clamped."""
    return phong_shading_soa(points.t().contiguous(), normals.t().contiguous(), texels.t().contiguous(),
                             batch, B, lights, material, model).t()


def phong_shading_soa(points: Tensor, normals: Tensor, texels: Tensor, batch: Tensor, B: int,
                      lights, material: Material | None = None, model: str = "phong") -> Tensor:
    """:func:`phong_shading` on (3,P) arrays (structure of arrays; the renderer's hot path)."""
    if model not in ("phong", "blinn"):
        raise ValueError(f"shading model must be 'phong' or 'blinn', got {model!r}")
    if isinstance(lights, (DirectionalLights, PointLights)):
        lights = [lights]
    material = material or Material()
    dt, dev = points.dtype, points.device

    def per_pixel(x, name, width=3):
        t = as_batch(x, B, width, dt, dev, name)
        if width is None:
            return t.index_select(0, batch) if t.stride(0) != 0 else t[:1].expand(batch.shape[0])
        t = t.t()  # (3,B)
        return t.index_select(1, batch) if t.stride(1) != 0 else t[:, :1]

    N = _normalize(normals)
    Vdir = _normalize(-points)
    amb = torch.zeros((B, 3), dtype=dt, device=dev)
    diff = spec = None
    shin = per_pixel(material.shininess, "material.shininess", None)
    for light in lights:  # a handful of light objects, not samples
        if isinstance(light, PointLights):
            L = _normalize(per_pixel(light.location, "lights.location") - points)
        elif isinstance(light, DirectionalLights):
            d = as_batch(light.direction, B, 3, dt, dev, "lights.direction")
            d = d / d.norm(dim=1, keepdim=True).clamp_min(1e-6)
            L = d.t().index_select(1, batch) if d.stride(0) != 0 else d[:1].t()
        else:
            raise ValueError(f"lights must be DirectionalLights/PointLights, got {type(light).__name__}")
        amb = amb + as_batch(light.ambient, B, 3, dt, dev, "lights.ambient")
        NL = _dot(N, L)
        d_term = per_pixel(light.diffuse, "lights.diffuse") * torch.relu(NL)
        if model == "phong":
            Rdir = (2.0 * NL) * N - L
            a = torch.relu(_dot(Vdir, Rdir))
        else:
            a = torch.relu(_dot(N, _normalize(L + Vdir)))
        s_term = per_pixel(light.specular, "lights.specular") * (a * (NL > 0).to(dt)).pow(shin)
        diff = d_term if diff is None else diff + d_term
        spec = s_term if spec is None else spec + s_term
    mat_amb = as_batch(material.ambient, B, 3, dt, dev, "material.ambient")
    ambient = (mat_amb * amb).t().index_select(1, batch)
    return (ambient + per_pixel(material.diffuse, "material.diffuse") * diff) * texels \
        + per_pixel(material.specular, "material.specular") * spec


def pack_lights(lights, B: int, dtype, device) -> Tensor:
    """Lights as one (B, L, 13) array for the compiled shader: per light ``(0 point / 1 directional, location or
    direction xyz, ambient rgb, diffuse rgb, specular rgb)``."""
    if isinstance(lights, (DirectionalLights, PointLights)):
        lights = [lights]
    rows = []
    for light in lights:  # a handful of light objects, not samples
        if isinstance(light, PointLights):
            kind, pos = 0.0, as_batch(light.location, B, 3, dtype, device, "lights.location")
        elif isinstance(light, DirectionalLights):
            kind, pos = 1.0, as_batch(light.direction, B, 3, dtype, device, "lights.direction")
        else:
            raise ValueError(f"lights must be DirectionalLights/PointLights, got {type(light).__name__}")
        rows.append(torch.cat((torch.full((B, 1), kind, dtype=dtype, device=device), pos,
                               as_batch(light.ambient, B, 3, dtype, device, "lights.ambient"),
                               as_batch(light.diffuse, B, 3, dtype, device, "lights.diffuse"),
                               as_batch(light.specular, B, 3, dtype, device, "lights.specular")), 1))
    if not rows:
        raise ValueError("lights is an empty list (pass None for unlit rendering)")
    return torch.stack(rows, 1).contiguous()


def pack_material(material: Material | None, B: int, dtype, device) -> Tensor:
    """A material as one (B, 10) array ``(ambient rgb, diffuse rgb, specular rgb, shininess)``."""
    m = material or Material()
    return torch.cat((as_batch(m.ambient, B, 3, dtype, device, "material.ambient"),
                      as_batch(m.diffuse, B, 3, dtype, device, "material.diffuse"),
                      as_batch(m.specular, B, 3, dtype, device, "material.specular"),
                      as_batch(m.shininess, B, None, dtype, device, "material.shininess").reshape(B, 1)), 1).contiguous()
