"""Small geometry helpers shared by the render tests."""
from __future__ import annotations

import math

import torch

K_UNIT = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]  # u = x/z, v = y/z


def screen_tri(points, z=1.0, dtype=torch.float64, device="cpu"):
    """Vertices whose projection with K_UNIT is exactly ``points`` (list of (u, v)) at depth z."""
    v = torch.tensor([[u * z, w * z, z] for (u, w) in points], dtype=dtype, device=device)
    return v


def rot(ax, ay, az, dtype=torch.float64):
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    Rx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=dtype)
    Ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=dtype)
    Rz = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=dtype)
    return Rz @ Ry @ Rx


def cube(dtype=torch.float64):
    """Unit cube [-1,1]^3, 12 outward-wound triangles ((v1-v0)x(v2-v0) points outward)."""
    v = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=dtype)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = []
    for a, b, c, d in quads:
        faces += [(a, b, c), (a, c, d)]
    f = torch.tensor(faces, dtype=torch.int64)
    # orient outward
    p = v[f]
    n = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    flip = (n * p.mean(1)).sum(1) < 0
    f[flip] = f[flip][:, [0, 2, 1]]
    return v, f


def uv_sphere(n_lat=20, n_lon=40, dtype=torch.float64):
    th = torch.linspace(0, math.pi, n_lat + 1, dtype=dtype)[1:-1]
    ph = torch.arange(n_lon, dtype=dtype) * (2 * math.pi / n_lon)
    T, P = torch.meshgrid(th, ph, indexing="ij")
    ring = torch.stack((torch.sin(T) * torch.cos(P), torch.cos(T), torch.sin(T) * torch.sin(P)), -1).reshape(-1, 3)
    verts = torch.cat((torch.tensor([[0, 1.0, 0]], dtype=dtype), ring, torch.tensor([[0, -1.0, 0]], dtype=dtype)))
    faces = []
    L = n_lon
    for j in range(L):
        faces.append((0, 1 + (j + 1) % L, 1 + j))
    for i in range(n_lat - 2):
        for j in range(L):
            a, b = 1 + i * L + j, 1 + i * L + (j + 1) % L
            c, d = a + L, b + L
            faces += [(a, b, d), (a, d, c)]
    last = 1 + (n_lat - 2) * L
    s = verts.shape[0] - 1
    for j in range(L):
        faces.append((s, last + j, last + (j + 1) % L))
    f = torch.tensor(faces, dtype=torch.int64)
    p = verts[f]
    n = torch.linalg.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    flip = (n * p.mean(1)).sum(1) < 0
    f[flip] = f[flip][:, [0, 2, 1]]
    return verts, f
