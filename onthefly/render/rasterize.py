"""Batched hard z-buffer rasterizer in pure torch (the ``torch`` backend; the public entry that picks a backend,
:func:`onthefly.render.rasterize`, is in :mod:`.backends`).

Conventions (the project contract)
----------------------------------
* Vertices are given in the **OpenCV camera frame** (x right, y down, z forward; any length unit,
  the project uses millimetres). Projection: ``u = fx * x / z + cx``, ``v = fy * y / z + cy``.
* Pixel (row ``i``, col ``j``) has its centre at ``(u=j, v=i)`` (OpenCV). A pixel is covered by a
  triangle iff its centre is inside the triangle.
* **Tie rule** (centre exactly on an edge): every edge function is evaluated in a canonical vertex
  order (the endpoint with the smaller ``(u, v)`` first) so the two triangles sharing an edge get
  bit-exactly opposite values; a centre with edge value exactly 0 belongs to the triangle whose
  inward edge normal ``n`` satisfies ``n.x > 0 or (n.x == 0 and n.y > 0)`` ("left" edges, and
  "top" edges with the triangle below them in the y-down image). So no centre on a shared edge is
  covered twice or missed, for any winding.
* **Near plane**: a face with any vertex at ``z <= znear`` is rejected (not clipped).
* Depth test: nearest camera ``z`` wins (1 face per pixel); exact depth ties go to the smaller face
  index. Depth is compared as float32 ``1/z`` (perspective-correct, linear in screen space).
* Backface culling only if asked (``cull_backfaces=True``): a face is front-facing when
  ``(v1 - v0) x (v2 - v0)`` points towards the camera, i.e. its signed screen area is negative in the
  y-down image.

Outputs (:class:`Fragments`): ``pix_to_face`` (B,H,W) int64 index into that mesh's face list (``0..F-1``,
``-1`` background; unlike PyTorch3D it is *not* a packed index), ``zbuf`` (B,H,W) camera z (``-1``
background), ``bary`` (B,H,W,3) perspective-correct barycentrics of the winning face (``-1`` background).

Algorithm: per-face screen bounding boxes; faces are bucketed by bbox size (covered-pixel columns
``nx`` and rows ``ny``, each rounded up to one of ``BUCKET_SIZES``) and each bucket enumerates an
``sy x sx`` candidate grid per face with broadcast edge functions
(no gathers on the hot path); the depth test is a ``scatter_reduce(amax)`` of int64 keys
``(float32 bits of 1/z) << 32 | (2**32 - 1 - face)`` (1/z := 0 outside the face) into a (B*H*W) buffer. Faces larger than the
biggest bucket are split into tiles of the biggest bucket size, so no face is ever dropped. Work is
chunked so memory stays bounded for any batch.
"""
from __future__ import annotations

import torch

from . import chunking
from .fragments import Fragments

__all__ = ["rasterize_pass_torch", "BUCKET_SIZES"]

# bbox side classes: a face whose covered-pixel range has max side <= s is evaluated on an s x s grid.
BUCKET_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
_LOW32 = 0xFFFFFFFF
_F32_TINY = float(torch.finfo(torch.float32).tiny)


# ----------------------------------------------------------------------------------------------
# torch backend
# ----------------------------------------------------------------------------------------------

def _face_setup(verts, faces, K, H, W, znear, cull_backfaces):
    """Per-face screen-space data over the flattened (N = B*F) face list, structure-of-arrays layout
    (every per-face quantity is a contiguous (N,) row, so CPU kernels vectorise)."""
    B, V, _ = verts.shape
    dt, dev = verts.dtype, verts.device
    x, y, z = verts.reshape(B * V, 3).unbind(1)
    zs = torch.where(z > znear, z, torch.ones((), dtype=dt, device=dev))
    fx = K[:, 0, 0].repeat_interleave(V)
    fy = K[:, 1, 1].repeat_interleave(V)
    cx = K[:, 0, 2].repeat_interleave(V)
    cy = K[:, 1, 2].repeat_interleave(V)
    iz = torch.where(z > znear, 1.0 / zs, torch.zeros((), dtype=dt, device=dev))  # 0 marks "behind"
    uvw = torch.stack((fx * (x * iz) + cx, fy * (y * iz) + cy, iz), 0)  # (3, B*V): u, v, 1/z
    offs = (torch.arange(B, device=dev) * V).view(1, B, 1)
    if faces.ndim == 2:
        F = faces.shape[0]
        gid = (faces.t().unsqueeze(1) + offs).reshape(-1)  # (3*N,) vertex-major
        pad = None
    else:
        F = faces.shape[1]
        pad = (faces < 0).any(-1).reshape(-1)
        gid = (faces.clamp_min(0).permute(2, 0, 1) + offs).reshape(-1)
    N = gid.shape[0] // 3
    Pv = uvw.index_select(1, gid).view(3, 3, N)  # ([u v 1/z], vertex, face)
    (U0, U1, U2), (V0, V1, V2), IZ = Pv[0], Pv[1], Pv[2]
    # edge k is opposite vertex k and runs from a = v_{k+1} to b = v_{k+2}
    ex = torch.stack((U2 - U1, U0 - U2, U1 - U0), 0)
    ey = torch.stack((V2 - V1, V0 - V2, V1 - V0), 0)
    area2 = ex[0] * ey[1] - ey[0] * ex[1]  # cross(v1-v0, v2-v0) in the y-down image
    valid = (IZ.amin(0) > 0) & (area2 != 0)
    if pad is not None:
        valid &= ~pad
    if cull_backfaces:
        valid &= area2 < 0

    lo_u, hi_u = Pv[0].aminmax(dim=0)
    lo_v, hi_v = Pv[1].aminmax(dim=0)
    j0 = torch.ceil(lo_u.clamp(-1.0, float(W))).to(torch.int64).clamp_min_(0)
    j1 = torch.floor(hi_u.clamp(-1.0, float(W))).to(torch.int64).clamp_max_(W - 1)
    i0 = torch.ceil(lo_v.clamp(-1.0, float(H))).to(torch.int64).clamp_min_(0)
    i1 = torch.floor(hi_v.clamp(-1.0, float(H))).to(torch.int64).clamp_max_(H - 1)
    nx = j1 - j0 + 1
    ny = i1 - i0 + 1
    valid &= (nx > 0) & (ny > 0)

    # E_k(p) = sdx*(py - my) - sdy*(px - mx) > 0 inside. (mx, my) is the edge midpoint and
    # (sdx, sdy) = sign(area2) * (b - a): both are symmetric in the edge's endpoints, so the two faces
    # sharing an edge evaluate bit-exactly opposite values (watertight).
    params = torch.empty((5, 3, N), dtype=dt, device=dev)
    sg = torch.where(area2 < 0, -1.0, 1.0).to(dt)
    torch.mul(ex, sg, out=params[2])  # sdx
    torch.mul(ey, sg, out=params[3])  # sdy
    mx, my = params[0], params[1]
    torch.add(U1, U2, out=mx[0]); torch.add(U2, U0, out=mx[1]); torch.add(U0, U1, out=mx[2])
    torch.add(V1, V2, out=my[0]); torch.add(V2, V0, out=my[1]); torch.add(V0, V1, out=my[2])
    params[:2].mul_(0.5)
    torch.mul(IZ, area2.abs().reciprocal_(), out=params[4])  # 1/z = sum_k E_k * c_k
    return dict(B=B, F=F, P=Pv, area2=area2, valid=valid, j0=j0, i0=i0, nx=nx, ny=ny,
                params=params.view(15, N))


def _eval_grid(prm, fidx, j0, i0, sx, sy, F, H, W, buf):
    """Evaluate an sy x sx candidate grid starting at pixel (j0, i0) for n faces ``fidx`` (flat ids,
    packed parameters ``prm`` (15,n)) and fold their depth keys into ``buf`` (B*H*W int64, amax).
    Layout (row, col, face): the face axis is innermost and contiguous."""
    dt = prm.dtype
    dev = fidx.device
    arx = torch.arange(sx, device=dev).unsqueeze(1)  # (sx,1)
    ary = torch.arange(sy, device=dev).unsqueeze(1)  # (sy,1)
    px = (j0 + arx).to(dt)  # (sx,n) columns
    py = (i0 + ary).to(dt)  # (sy,n) rows
    mx, my, sdx, sdy, c = prm.view(5, 3, -1).unbind(0)
    # tie rule: a centre with E == 0 is inside when the edge's inward normal (-sdy, sdx) points right,
    # or straight down; "E > 0" is tested as "E >= smallest normal float" (E is never subnormal)
    topleft = (sdy < 0) | ((sdy == 0) & (sdx > 0))
    thr = (~topleft).to(dt) * torch.finfo(dt).tiny  # (3,n)
    inside = None
    rsum = csum = None
    for k in range(3):
        t1 = sdx[k] * (py - my[k])  # (sy,n) depends on the row
        t2 = sdy[k] * (px - mx[k])  # (sx,n) depends on the column
        e = t1.unsqueeze(1) - t2.unsqueeze(0)  # (sy,sx,n)
        ins = e >= thr[k]
        inside = ins if inside is None else inside.logical_and_(ins)
        rsum = t1 * c[k] if rsum is None else rsum.add_(t1 * c[k])
        csum = t2 * c[k] if csum is None else csum.add_(t2 * c[k])
    assert inside is not None and rsum is not None and csum is not None  # (the loop ran three times)
    zinv = (rsum.unsqueeze(1) - csum.unsqueeze(0)).to(torch.float32)  # (sy,sx,n), 1/z > 0 inside
    # > 0 even for slivers where the separable sum cancels; outside -> 0 -> key < 2**32 (never wins)
    zinv.clamp_min_(_F32_TINY).mul_(inside)
    b = torch.div(fidx, F, rounding_mode="floor")
    tail = _LOW32 - (fidx - b * F)  # (n,)
    key = torch.add(tail, zinv.view(torch.int32), alpha=1 << 32)
    base = b * (H * W) + i0 * W + j0  # (n,)
    offs = (ary * W + arx.view(1, sx)).unsqueeze(2)  # (sy,sx,1)
    pix = base + offs
    buf.scatter_reduce_(0, pix.view(-1), key.view(-1), "amax", include_self=True)


def _rasterize_keys(fd, H, W, bucket_sizes=BUCKET_SIZES, max_candidates=None):
    dev = fd["P"].device
    if max_candidates is None:
        max_candidates = chunking.max_candidates(dev)
    B, F = fd["B"], fd["F"]
    buf = torch.zeros(B * H * W, dtype=torch.int64, device=dev)
    sizes = [s for s in bucket_sizes if s <= min(H, W)] or [1]
    L = len(sizes)
    smax = sizes[-1]
    valid = fd["valid"]
    bounds = torch.tensor(sizes, device=dev)
    # rectangular buckets: class 1 + cy*L + cx for nx <= sizes[cx], ny <= sizes[cy]; 1 + L*L: wider
    # or taller than smax (tiled); 0: invalid
    cx = torch.bucketize(fd["nx"], bounds)
    cy = torch.bucketize(fd["ny"], bounds)
    big = (cx == L) | (cy == L)
    cls = torch.where(big, L * L, cy * L + cx).add_(1).mul_(valid).to(torch.uint8)
    counts = torch.bincount(cls, minlength=L * L + 2).tolist()
    order = torch.argsort(cls)[counts[0]:]  # drop invalid faces (uint8 keys sort fast)
    prm = fd["params"].index_select(1, order)  # faces sorted by bucket: every bucket is a contiguous slice
    j0s, i0s = fd["j0"][order], fd["i0"][order]
    start = 0
    for c in range(L * L):
        n = counts[c + 1]
        if not n:
            continue
        sy, sx = sizes[c // L], sizes[c % L]
        step = max(1, max_candidates // (sx * sy))
        for a in range(start, start + n, step):
            sl = slice(a, min(a + step, start + n))
            _eval_grid(prm[:, sl], order[sl], j0s[sl].clamp_max(W - sx), i0s[sl].clamp_max(H - sy), sx, sy,
                       F, H, W, buf)
        start += n
    n = counts[L * L + 1]
    if n:  # large faces: cover their bbox with smax x smax tiles (no face is ever dropped)
        ids = order[start:start + n]
        tx = torch.div(fd["nx"][ids] + smax - 1, smax, rounding_mode="floor")
        ty = torch.div(fd["ny"][ids] + smax - 1, smax, rounding_mode="floor")
        ntile = tx * ty
        tiles_total = int(ntile.sum())
        face_of_tile = torch.repeat_interleave(torch.arange(n, device=dev), ntile, output_size=tiles_total)
        first = torch.cumsum(ntile, 0) - ntile
        local = torch.arange(tiles_total, device=dev) - first[face_of_tile]
        txf = tx[face_of_tile]
        j0_all = (j0s[start:start + n][face_of_tile] + (local % txf) * smax).clamp_max(W - smax)
        i0_all = (i0s[start:start + n][face_of_tile]
                  + torch.div(local, txf, rounding_mode="floor") * smax).clamp_max(H - smax)
        prm_big = prm[:, start:start + n]
        step = max(1, max_candidates // (smax * smax))
        for a in range(0, tiles_total, step):
            t = face_of_tile[a:a + step]
            _eval_grid(prm_big.index_select(1, t), ids[t], j0_all[a:a + step], i0_all[a:a + step], smax, smax,
                       F, H, W, buf)
    return buf


def _resolve(fd, buf, H, W):
    """Winning face per pixel -> Fragments (perspective-correct barycentrics, camera z)."""
    B, F = fd["B"], fd["F"]
    P = fd["P"]
    dt = P.dtype
    dev = buf.device
    fg = buf >= (1 << 32)
    face = torch.where(fg, _LOW32 - (buf & _LOW32), torch.full((), -1, dtype=torch.int64, device=dev))
    pidx = fg.nonzero().squeeze(1)
    b = torch.div(pidx, H * W, rounding_mode="floor")
    rem = pidx - b * (H * W)
    py = torch.div(rem, W, rounding_mode="floor")
    px = rem - py * W
    flat = b * F + face[pidx]
    Pf = P.view(9, -1).index_select(1, flat).view(3, 3, -1)  # ([u v 1/z], vertex, P)
    du = Pf[0] - px.to(dt)  # vertex - pixel, (3,P)
    dv = Pf[1] - py.to(dt)
    # w_k = cross(v_{k+1} - p, v_{k+2} - p) / area2, perspective-corrected with 1/z_k
    inv_area = fd["area2"].index_select(0, flat).reciprocal_()
    q = torch.empty_like(du)
    for k in range(3):  # three vertex slots
        a, c = (k + 1) % 3, (k + 2) % 3
        torch.mul(du[a], dv[c], out=q[k]).sub_(dv[a] * du[c]).mul_(inv_area).mul_(Pf[2, k])
    S = q[0] + q[1] + q[2]  # explicit order: identical on every device
    zbuf = torch.full((B * H * W,), -1.0, dtype=dt, device=dev)
    zbuf[pidx] = S.reciprocal()
    bary = torch.full((B * H * W * 3,), -1.0, dtype=dt, device=dev)
    bary.index_put_(((pidx * 3).unsqueeze(0) + torch.arange(3, device=dev).unsqueeze(1),), q / S)
    bary = bary.view(B * H * W, 3)
    return Fragments(face.view(B, H, W), zbuf.view(B, H, W), bary.view(B, H, W, 3))


@torch.no_grad()
def rasterize_pass_torch(verts, faces, K, H, W, znear, cull_backfaces) -> Fragments:
    """The torch backend on prepared inputs (one pass)."""
    fd = _face_setup(verts, faces, K, H, W, znear, cull_backfaces)
    buf = _rasterize_keys(fd, H, W)
    return _resolve(fd, buf, H, W)
