"""Compiled CPU kernels (numba) for ``backend="numba"``: the rasterizer contract of :mod:`.rasterize`, bit for bit.

Importing this module imports numba (an optional dependency; :mod:`.backends` imports it only when the numba
backend is used). Every kernel writes into arrays preallocated by the caller (torch tensors seen through
``.numpy()``, no copies). ``cache=True`` stores the compiled machine code beside this file (or in numba's cache
directory when that is read-only), so only the first run on a machine pays the JIT compilation.

Exactness: the kernels evaluate the very float operations of the torch backend in the same order and the same
dtype (the scalars ``one``, ``half``, ``tiny`` are passed in the vertices' dtype so numba never widens a float32
expression to float64; no ``fastmath``, so LLVM contracts nothing into FMAs; ``error_model="numpy"``, so a division
carries no zero check -- a branch that would stop LLVM's vectorizer -- and its results are unchanged):

* projection ``u = fx * (x * (1/z)) + cx``; edge functions in the symmetric midpoint form
  ``E_k = sdx_k (py - my_k) - sdy_k (px - mx_k)`` with the top-left tie threshold;
* depth ``1/z = (sum_k t1_k c_k) - (sum_k t2_k c_k)`` rounded to float32, clamped to the smallest normal float;
  the nearest (largest ``1/z``) face wins, exact ties to the smaller face index (faces are visited in index order
  and only a strictly larger ``1/z`` replaces the winner: the same order as the torch backend's int64 keys);
* barycentrics and ``zbuf`` of the winner recomputed and perspective-corrected as in ``_resolve``.

The one intended difference: a pixel is tested only inside its face's pixel bounding box (the torch backend's
bucket grids may test a few pixels beyond it, which rounding could only ever cover for degenerate slivers).

Work split: ``prange`` over (image, band of rows) items, so a batch of 1 still uses every thread; each item owns
its rows of the z-buffer, so no atomics and no races. The parallel kernels release the GIL (``nogil=True``): other
Python threads run while a batch renders (the export's writer thread compresses and writes the previous batch).
"""
from __future__ import annotations

import math
import os
import threading

import numba as nb
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

# numba's "workqueue" threading layer unless the user chose one (NUMBA_THREADING_LAYER): "omp" would start a
# second OpenMP runtime beside torch's, whose spinning threads then fight torch's for the cores (measured: several
# times slower when torch ops and kernels alternate), and GNU OpenMP is not fork-safe (DataLoader workers).
# workqueue is not thread-safe, so every launch holds LOCK.
if "NUMBA_THREADING_LAYER" not in os.environ:
    nb.config.THREADING_LAYER = "workqueue"
LOCK = threading.Lock()

__all__ = ["LOCK", "project", "raster_fused", "vertex_normals", "shade"]

@nb.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def project(verts, K, znear, one, out):
    """verts (B,V,3), K (B,3,3) -> out (B,V,3) = (u, v, 1/z) with 1/z := 0 at or behind ``znear``."""
    B, V = verts.shape[0], verts.shape[1]
    zero = one - one
    for b in nb.prange(B):
        fx, fy, cx, cy = K[b, 0, 0], K[b, 1, 1], K[b, 0, 2], K[b, 1, 2]
        for v in range(V):
            x, y, z = verts[b, v, 0], verts[b, v, 1], verts[b, v, 2]
            iz = one / z if z > znear else zero
            out[b, v, 0] = fx * (x * iz) + cx
            out[b, v, 1] = fy * (y * iz) + cy
            out[b, v, 2] = iz


@nb.njit(inline="always", error_model="numpy")
def _resolve_pixel(uvw, faces, fb, b, f, px, py, q_out, one):
    """Perspective-correct barycentrics (written to ``q_out``) and camera z of face ``f`` at (px, py)."""
    a0, a1, a2 = faces[fb, f, 0], faces[fb, f, 1], faces[fb, f, 2]
    du0, dv0, z0 = uvw[b, a0, 0] - px, uvw[b, a0, 1] - py, uvw[b, a0, 2]
    du1, dv1, z1 = uvw[b, a1, 0] - px, uvw[b, a1, 1] - py, uvw[b, a1, 2]
    du2, dv2, z2 = uvw[b, a2, 0] - px, uvw[b, a2, 1] - py, uvw[b, a2, 2]
    U0, V0 = uvw[b, a0, 0], uvw[b, a0, 1]
    area2 = (uvw[b, a2, 0] - uvw[b, a1, 0]) * (V0 - uvw[b, a2, 1]) - (uvw[b, a2, 1] - uvw[b, a1, 1]) * (U0 - uvw[b, a2, 0])
    inv_area = one / area2
    q0 = (du1 * dv2 - dv1 * du2) * inv_area * z0
    q1 = (du2 * dv0 - dv2 * du0) * inv_area * z1
    q2 = (du0 * dv1 - dv0 * du1) * inv_area * z2
    S = q0 + q1 + q2
    q_out[0] = q0 / S
    q_out[1] = q1 / S
    q_out[2] = q2 / S
    return one / S


# Small faces are tested as one "stamp": all the pixel centres of a bounding box of at most _STAMP_PX (64) pixels
# and at most _STAMP_W columns in one vectorized pass (lane k is the box pixel (k // w, k % w), read from these
# tables), which also packs the covered lanes into a 64-bit mask; the depth test then visits the covered lanes
# only. This replaces the row loop's unpredictable enter/leave branches (2-3 per row of every face) by one mask
# loop per face. Every centre is tested with the row loop's float operations, so the result is the same bit for
# bit; larger faces, and boxes of fewer than _STAMP_MIN pixels, take the row loop.
_STAMP_PX = 64
_STAMP_W = 8
_STAMP_MIN = 4  # smaller boxes (a few pixels) are cheaper in the row loop
_STAMP_DI = np.array([[(k // w if w else 0) for k in range(_STAMP_PX)] for w in range(_STAMP_W + 1)],
                     dtype=np.int64).ravel()
_STAMP_DJ = np.array([[(k % w if w else 0) for k in range(_STAMP_PX)] for w in range(_STAMP_W + 1)],
                     dtype=np.int64).ravel()
_STAMP_DIF = _STAMP_DI.astype(np.float32)
_STAMP_DJF = _STAMP_DJ.astype(np.float32)


@nb.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def raster_fused(uvw, faces, cull, one, half, tiny, xs, ys, band, p2f, zbuf, bary):
    """Face setup, depth test and resolve in one pass per (image, band of ``band`` rows) item: each face's
    screen setup (bounding box, edge functions, 1/z plane) is computed inline with the torch backend's float
    operations, so no per-face arrays are written or read back. ``p2f`` (B,H,W) int64, ``zbuf`` (B,H,W), ``bary`` (B,H,W,3) (background -1)."""
    B, H, W = p2f.shape
    Bf, F = faces.shape[0], faces.shape[1]
    nb_ = (H + band - 1) // band
    tiny32 = np.float32(1.1754944e-38)
    Wf = one * W
    Hf = one * H
    m1 = -one
    zero = one - one
    for item in nb.prange(B * nb_):
        b = np.int64(item) // nb_
        r0 = (np.int64(item) % nb_) * band
        r1 = min(r0 + band, H)
        n = (r1 - r0) * W
        zbest = np.zeros(n, dtype=np.float32)  # this item's rows of the z-buffer
        fbest = np.full(n, -1, dtype=np.int64)
        zs = np.empty(_STAMP_PX, dtype=np.float32)  # a stamp's depth per lane
        fb = np.int64(b) if Bf > 1 else np.int64(0)
        for f in range(F):
            a0, a1, a2 = faces[fb, f, 0], faces[fb, f, 1], faces[fb, f, 2]
            if a0 < 0 or a1 < 0 or a2 < 0:
                continue
            V0, V1, V2 = uvw[b, a0, 1], uvw[b, a1, 1], uvw[b, a2, 1]
            lo_v = min(V0, min(V1, V2))
            hi_v = max(V0, max(V1, V2))
            i0 = max(int(math.ceil(min(max(lo_v, m1), Hf))), 0)
            i1 = min(int(math.floor(min(max(hi_v, m1), Hf))), H - 1)
            if i1 < i0 or i1 < r0 or i0 >= r1:
                continue
            U0, U1, U2 = uvw[b, a0, 0], uvw[b, a1, 0], uvw[b, a2, 0]
            lo_u = min(U0, min(U1, U2))
            hi_u = max(U0, max(U1, U2))
            j0 = max(int(math.ceil(min(max(lo_u, m1), Wf))), 0)
            j1 = min(int(math.floor(min(max(hi_u, m1), Wf))), W - 1)
            if j1 < j0:
                continue
            Z0, Z1, Z2 = uvw[b, a0, 2], uvw[b, a1, 2], uvw[b, a2, 2]
            ex0, ex1, ex2 = U2 - U1, U0 - U2, U1 - U0
            ey0, ey1, ey2 = V2 - V1, V0 - V2, V1 - V0
            area2 = ex0 * ey1 - ey0 * ex1
            if not (min(Z0, min(Z1, Z2)) > zero) or area2 == zero:
                continue
            if cull and not (area2 < zero):
                continue
            sg = m1 if area2 < zero else one
            inv = one / abs(area2)
            mx0, mx1, mx2 = (U1 + U2) * half, (U2 + U0) * half, (U0 + U1) * half
            my0, my1, my2 = (V1 + V2) * half, (V2 + V0) * half, (V0 + V1) * half
            sx0, sx1, sx2 = ex0 * sg, ex1 * sg, ex2 * sg
            sy0, sy1, sy2 = ey0 * sg, ey1 * sg, ey2 * sg
            c0, c1, c2 = Z0 * inv, Z1 * inv, Z2 * inv
            # top-left rule: E == 0 is inside when the inward normal points right, or straight down
            th0 = zero if ((sy0 < zero) | ((sy0 == zero) & (sx0 > zero))) else tiny
            th1 = zero if ((sy1 < zero) | ((sy1 == zero) & (sx1 > zero))) else tiny
            th2 = zero if ((sy2 < zero) | ((sy2 == zero) & (sx2 > zero))) else tiny
            ia = max(i0, r0)
            ib = min(i1, r1 - 1)
            h = ib - ia + 1
            w = j1 - j0 + 1
            if w <= _STAMP_W and _STAMP_MIN <= h * w <= _STAMP_PX:
                off = w * _STAMP_PX
                pya = ys[ia]
                pxa = xs[j0]
                cov = np.uint64(0)
                for k in range((h * w + 7) & ~7):
                    py = pya + _STAMP_DIF[off + k]
                    px = pxa + _STAMP_DJF[off + k]
                    t10 = sx0 * (py - my0)
                    t11 = sx1 * (py - my1)
                    t12 = sx2 * (py - my2)
                    rs = t10 * c0 + t11 * c1 + t12 * c2
                    t20 = sy0 * (px - mx0)
                    t21 = sy1 * (px - mx1)
                    t22 = sy2 * (px - mx2)
                    z = np.float32(rs - (t20 * c0 + t21 * c1 + t22 * c2))
                    zs[k] = max(z, tiny32)
                    inside = (t10 - t20 >= th0) & (t11 - t21 >= th1) & (t12 - t22 >= th2) & (_STAMP_DI[off + k] < h)
                    cov |= np.uint64(inside) << np.uint64(k)
                base = (ia - r0) * W + j0
                while cov != 0:
                    k = trailing_zeros(cov)
                    cov &= cov - np.uint64(1)
                    q = base + _STAMP_DI[off + k] * W + _STAMP_DJ[off + k]
                    z = zs[k]
                    if z > zbest[q]:
                        zbest[q] = z
                        fbest[q] = f
                continue
            for i in range(ia, ib + 1):
                py = ys[i]
                t10 = sx0 * (py - my0)
                t11 = sx1 * (py - my1)
                t12 = sx2 * (py - my2)
                rs = t10 * c0 + t11 * c1 + t12 * c2
                row = (i - r0) * W
                entered = False
                for j in range(j0, j1 + 1):
                    px = xs[j]
                    t20 = sy0 * (px - mx0)
                    t21 = sy1 * (px - mx1)
                    t22 = sy2 * (px - mx2)
                    if not (t10 - t20 >= th0 and t11 - t21 >= th1 and t12 - t22 >= th2):
                        # each rounded edge value is monotonic in px (fl(px - m) and the products by a constant
                        # are monotonic), so the covered centres of a row are one run: past it, none follow
                        if entered:
                            break
                        continue
                    entered = True
                    z = np.float32(rs - (t20 * c0 + t21 * c1 + t22 * c2))
                    if z < tiny32:
                        z = tiny32
                    q = row + j
                    if z > zbest[q]:
                        zbest[q] = z
                        fbest[q] = f
        for i in range(r0, r1):
            row = (i - r0) * W
            py = ys[i]
            for j in range(W):
                f = fbest[row + j]
                p2f[b, i, j] = f
                if f < 0:
                    zbuf[b, i, j] = -one
                    bary[b, i, j, 0] = -one
                    bary[b, i, j, 1] = -one
                    bary[b, i, j, 2] = -one
                else:
                    zbuf[b, i, j] = _resolve_pixel(uvw, faces, fb, b, f, xs[j], py, bary[b, i, j], one)


@nb.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def vertex_normals(verts, faces, eps, out):
    """Area-weighted normalised vertex normals (PyTorch3D's ``verts_normals``) of (B,V,3) ``verts`` into ``out``."""
    B, V = verts.shape[0], verts.shape[1]
    Bf, F = faces.shape[0], faces.shape[1]
    for b in nb.prange(B):
        fb = np.int64(b) if Bf > 1 else np.int64(0)
        acc = np.zeros((V, 3), dtype=out.dtype)
        for f in range(F):
            a0, a1, a2 = faces[fb, f, 0], faces[fb, f, 1], faces[fb, f, 2]
            if a0 < 0 or a1 < 0 or a2 < 0:
                continue
            ax = verts[b, a1, 0] - verts[b, a0, 0]
            ay = verts[b, a1, 1] - verts[b, a0, 1]
            az = verts[b, a1, 2] - verts[b, a0, 2]
            bx = verts[b, a2, 0] - verts[b, a0, 0]
            by = verts[b, a2, 1] - verts[b, a0, 1]
            bz = verts[b, a2, 2] - verts[b, a0, 2]
            nx = ay * bz - az * by
            ny = az * bx - ax * bz
            nz = ax * by - ay * bx
            for a in (a0, a1, a2):
                acc[a, 0] += nx
                acc[a, 1] += ny
                acc[a, 2] += nz
        for v in range(V):
            n = math.sqrt(acc[v, 0] * acc[v, 0] + acc[v, 1] * acc[v, 1] + acc[v, 2] * acc[v, 2])
            n = max(n, eps)
            out[b, v, 0] = acc[v, 0] / n
            out[b, v, 1] = acc[v, 1] / n
            out[b, v, 2] = acc[v, 2] / n


@nb.njit(inline="always", error_model="numpy")
def _norm3(x, y, z, eps):
    n = math.sqrt(x * x + y * y + z * z)
    r = (eps / eps) / max(n, eps)  # 1 in eps's dtype (a literal 1 would widen float32 maths to float64)
    return x * r, y * r, z * r


@nb.njit(inline="always", error_model="numpy")
def _bilinear(maps, m, x0, x1, y0, y1, fx, fy, ch, one):
    g00 = maps[m, y0, x0, ch] * one
    g01 = maps[m, y0, x1, ch] * one
    g10 = maps[m, y1, x0, ch] * one
    g11 = maps[m, y1, x1, ch] * one
    top = g00 + (g01 - g00) * fx
    bot = g10 + (g11 - g10) * fx
    return top + (bot - top) * fy


# The lighting runs in vector passes over a chunk of up to _CH covered pixels of one row, gathered into one flat
# scratch array: every pass reads and writes it at literal offsets (slot * _CH + k), so LLVM sees fixed distances
# between the arrays and vectorizes the passes (sqrt, divisions and selects in SIMD lanes; error_model="numpy"
# keeps divisions free of the zero check that would stop it). Results are the scalar formulas' bit for bit.
_CH = 256
_PX, _PY, _PZ, _NX, _NY, _NZ, _VX, _VY, _VZ, _TR, _TG, _TB = 0, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 2560, 2816
_DR, _DG, _DB, _SR, _SG, _SB, _A, _X, _R = 3072, 3328, 3584, 3840, 4096, 4352, 4608, 4864, 5120
_SLOTS = 21 * 256


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _light_chunk(S, J, n, b, i, lights, material, blinn, shin, ishin, img, one):
    """Phong / Blinn-Phong of the ``n`` gathered pixels of row ``i`` of image ``b`` (scratch ``S``, columns ``J``)
    into ``img``: the scalar shader's operations, in vector passes."""
    zero = one - one
    two = one + one
    eps = one * np.float32(1e-6)
    L = lights.shape[1]
    for k in range(n):
        nx, ny, nz = _norm3(S[_NX + k], S[_NY + k], S[_NZ + k], eps)
        S[_NX + k] = nx
        S[_NY + k] = ny
        S[_NZ + k] = nz
        vx, vy, vz = _norm3(-S[_PX + k], -S[_PY + k], -S[_PZ + k], eps)
        S[_VX + k] = vx
        S[_VY + k] = vy
        S[_VZ + k] = vz
        S[_DR + k] = zero
        S[_DG + k] = zero
        S[_DB + k] = zero
        S[_SR + k] = zero
        S[_SG + k] = zero
        S[_SB + k] = zero
    ar = zero
    ag = zero
    ab = zero
    for li in range(L):
        point = lights[b, li, 0] == zero
        qx, qy, qz = lights[b, li, 1], lights[b, li, 2], lights[b, li, 3]
        if not point:
            qx, qy, qz = _norm3(qx, qy, qz, eps)
        ar += lights[b, li, 4]
        ag += lights[b, li, 5]
        ab += lights[b, li, 6]
        dr, dg, db = lights[b, li, 7], lights[b, li, 8], lights[b, li, 9]
        for k in range(n):
            nx, ny, nz = S[_NX + k], S[_NY + k], S[_NZ + k]
            if point:
                lx, ly, lz = _norm3(qx - S[_PX + k], qy - S[_PY + k], qz - S[_PZ + k], eps)
            else:
                lx, ly, lz = qx, qy, qz
            nl = nx * lx + ny * ly + nz * lz
            vx, vy, vz = S[_VX + k], S[_VY + k], S[_VZ + k]
            if blinn:
                hx, hy, hz = _norm3(lx + vx, ly + vy, lz + vz, eps)
                a = nx * hx + ny * hy + nz * hz
            else:
                tnl = two * nl
                a = vx * (tnl * nx - lx) + vy * (tnl * ny - ly) + vz * (tnl * nz - lz)
            lit = nl > zero
            w = nl if lit else zero
            S[_DR + k] += dr * w
            S[_DG + k] += dg * w
            S[_DB + k] += db * w
            # the specular base: 0 where the scalar shader skips the power (0 ** e = 0, and e = 0 gives 1 as there)
            S[_A + k] = a if (lit and a > zero) else zero
        if ishin >= 0:  # a ** shin by repeated squaring, one pass per bit
            for k in range(n):
                S[_X + k] = S[_A + k]
                S[_R + k] = one
            e = ishin
            while e > 0:
                if e & 1:
                    for k in range(n):
                        S[_R + k] = S[_R + k] * S[_X + k]
                e >>= 1
                if e > 0:
                    for k in range(n):
                        S[_X + k] = S[_X + k] * S[_X + k]
        else:
            for k in range(n):
                a = S[_A + k]
                S[_R + k] = a ** shin if a > zero else zero
        sr, sg, sb = lights[b, li, 10], lights[b, li, 11], lights[b, li, 12]
        for k in range(n):
            s = S[_R + k]
            S[_SR + k] += sr * s
            S[_SG + k] += sg * s
            S[_SB + k] += sb * s
    m0, m1, m2 = material[b, 0] * ar, material[b, 1] * ag, material[b, 2] * ab
    d0, d1, d2 = material[b, 3], material[b, 4], material[b, 5]
    s0, s1, s2 = material[b, 6], material[b, 7], material[b, 8]
    for k in range(n):
        S[_PX + k] = (m0 + d0 * S[_DR + k]) * S[_TR + k] + s0 * S[_SR + k]
        S[_PY + k] = (m1 + d1 * S[_DG + k]) * S[_TG + k] + s1 * S[_SG + k]
        S[_PZ + k] = (m2 + d2 * S[_DB + k]) * S[_TB + k] + s2 * S[_SB + k]
    for k in range(n):
        j = J[k]
        img[b, 0, i, j] = S[_PX + k]
        img[b, 1, i, j] = S[_PY + k]
        img[b, 2, i, j] = S[_PZ + k]


@nb.njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def shade(p2f, bary, verts, faces, normals, tex_kind, colors, maps, map_scale, vuv, fuv, tidx, align,
          lights, material, blinn, lit, bg, extra, one, img, out_extra, mask):
    """Interpolate, texture and shade the covered pixels of ``p2f`` / ``bary`` (B,H,W[,3]).

    ``tex_kind`` 0: white, 1: vertex colours ``colors`` (Bc,V,3) (times ``map_scale``: 1/255 for uint8), 2: UV map ``maps`` (M,Ht,Wt,3) (times
    ``map_scale``), ``vuv`` (Mu,T,2), ``fuv`` (Mf,F,3), ``tidx`` (B,) map of each sample. ``normals`` (Bn,V,3)
    unit vertex normals; ``lights`` (B,L,13) rows ``(kind 0 point / 1 directional, xyz, ambient rgb, diffuse rgb,
    specular rgb)``; ``material`` (B,10) ``(ambient rgb, diffuse rgb, specular rgb, shininess)``; ``lit`` False:
    the image is the texel colour. ``bg`` (B,3) background; ``extra`` (Be,V,C) per-vertex channels interpolated
    into ``out_extra`` (B,C,H,W) (0 on background). Writes ``img`` (B,3,H,W), and the coverage into ``mask``
    (B,1,H,W) unless ``mask`` is empty. All arithmetic in ``one``'s dtype.

    Work items are (image, band of rows); per row, a scalar pass interpolates and textures the covered pixels into
    a scratch chunk, then :func:`_light_chunk` lights the chunk in vector passes."""
    B, H, W = p2f.shape
    Bf = faces.shape[0]
    want_mask = mask.shape[0] > 0
    Bn = normals.shape[0]
    Bc = colors.shape[0]
    Mu = vuv.shape[0]
    Mf = fuv.shape[0]
    Be = extra.shape[0]
    C = extra.shape[2]
    Ht = maps.shape[1]
    Wt = maps.shape[2]
    zero = one - one
    two = one + one
    half = one / two
    Wt1 = one * (Wt - 1)
    Ht1 = one * (Ht - 1)
    Wtf = one * Wt
    Htf = one * Ht
    rows = max(1, min(H, 2048 // max(W, 1)))
    nbands = (H + rows - 1) // rows
    for item in nb.prange(B * nbands):
        b = np.int64(item) // nbands
        i0 = (np.int64(item) % nbands) * rows
        i1 = min(i0 + rows, H)
        fb = b if Bf > 1 else np.int64(0)
        be = b if Be > 1 else np.int64(0)
        bc = b if Bc > 1 else np.int64(0)
        bn = b if Bn > 1 else np.int64(0)
        shin = material[b, 9]
        ishin = np.int64(shin) if (shin == math.floor(shin) and zero <= shin <= one * 1024) else np.int64(-1)
        S = np.empty(_SLOTS, dtype=img.dtype)
        J = np.empty(_CH, dtype=np.int64)
        for i in range(i0, i1):
            k = 0
            for j in range(W):
                f = p2f[b, i, j]
                if want_mask:
                    mask[b, 0, i, j] = one if f >= 0 else zero
                if f < 0:
                    img[b, 0, i, j] = bg[b, 0]
                    img[b, 1, i, j] = bg[b, 1]
                    img[b, 2, i, j] = bg[b, 2]
                    for ch in range(C):
                        out_extra[b, ch, i, j] = zero
                    continue
                w0, w1, w2 = bary[b, i, j, 0], bary[b, i, j, 1], bary[b, i, j, 2]
                a0, a1, a2 = faces[fb, f, 0], faces[fb, f, 1], faces[fb, f, 2]
                for ch in range(C):
                    out_extra[b, ch, i, j] = extra[be, a0, ch] * w0 + extra[be, a1, ch] * w1 + extra[be, a2, ch] * w2
                tr = one
                tg = one
                tb = one
                if tex_kind == 1:
                    tr = (colors[bc, a0, 0] * w0 + colors[bc, a1, 0] * w1 + colors[bc, a2, 0] * w2) * map_scale
                    tg = (colors[bc, a0, 1] * w0 + colors[bc, a1, 1] * w1 + colors[bc, a2, 1] * w2) * map_scale
                    tb = (colors[bc, a0, 2] * w0 + colors[bc, a1, 2] * w1 + colors[bc, a2, 2] * w2) * map_scale
                elif tex_kind == 2:
                    m = tidx[b]
                    mf = m if Mf > 1 else np.int64(0)
                    mu = m if Mu > 1 else np.int64(0)
                    t0, t1, t2 = fuv[mf, f, 0], fuv[mf, f, 1], fuv[mf, f, 2]
                    u = vuv[mu, t0, 0] * w0 + vuv[mu, t1, 0] * w1 + vuv[mu, t2, 0] * w2
                    v = vuv[mu, t0, 1] * w0 + vuv[mu, t1, 1] * w1 + vuv[mu, t2, 1] * w2
                    if align:
                        x = u * Wt1
                        y = (one - v) * Ht1
                    else:
                        x = u * Wtf - half
                        y = (one - v) * Htf - half
                    x = min(max(x, zero), Wt1)
                    y = min(max(y, zero), Ht1)
                    x0f = math.floor(x)
                    y0f = math.floor(y)
                    fx = x - x0f
                    fy = y - y0f
                    x0 = int(x0f)
                    y0 = int(y0f)
                    x1 = min(x0 + 1, Wt - 1)
                    y1 = min(y0 + 1, Ht - 1)
                    tr = _bilinear(maps, m, x0, x1, y0, y1, fx, fy, 0, one) * map_scale
                    tg = _bilinear(maps, m, x0, x1, y0, y1, fx, fy, 1, one) * map_scale
                    tb = _bilinear(maps, m, x0, x1, y0, y1, fx, fy, 2, one) * map_scale
                if not lit:
                    img[b, 0, i, j] = tr
                    img[b, 1, i, j] = tg
                    img[b, 2, i, j] = tb
                    continue
                S[_PX + k] = verts[b, a0, 0] * w0 + verts[b, a1, 0] * w1 + verts[b, a2, 0] * w2
                S[_PY + k] = verts[b, a0, 1] * w0 + verts[b, a1, 1] * w1 + verts[b, a2, 1] * w2
                S[_PZ + k] = verts[b, a0, 2] * w0 + verts[b, a1, 2] * w1 + verts[b, a2, 2] * w2
                S[_NX + k] = normals[bn, a0, 0] * w0 + normals[bn, a1, 0] * w1 + normals[bn, a2, 0] * w2
                S[_NY + k] = normals[bn, a0, 1] * w0 + normals[bn, a1, 1] * w1 + normals[bn, a2, 1] * w2
                S[_NZ + k] = normals[bn, a0, 2] * w0 + normals[bn, a1, 2] * w1 + normals[bn, a2, 2] * w2
                S[_TR + k] = tr
                S[_TG + k] = tg
                S[_TB + k] = tb
                J[k] = j
                k += 1
                if k == _CH:
                    _light_chunk(S, J, k, b, i, lights, material, blinn, shin, ishin, img, one)
                    k = 0
            if k > 0:
                _light_chunk(S, J, k, b, i, lights, material, blinn, shin, ishin, img, one)
