"""Compiled (numba) helpers of the export's h5 writer: images to stored uint8 rows, and LZF chunk compression.

**Images** (:func:`u8_rows`): the batch's float RGB ``(N, 3, H, W)`` in [0, 1] to the stored ``(N, H, W, 3)`` uint8
``round(255·x)`` (round half to even, as ``torch.round``), channels in RGB or BGR order, optionally with XGaze3D's
wrapped green added to the background — one pass instead of torch's five (scale, round, clamp, cast, flip+permute);
parallel when called from the main thread, serial from the export's writer thread.

**LZF**:

h5py's built-in ``lzf`` filter (the one the anchors' files use) compresses with liblzf, whose greedy matcher spends
about 1 ms per 224² BGR row on rendered faces with sensor noise while saving only ~13 %. This encoder writes the
same *format* (the LZF stream that ``lzf_decompress`` of h5py's filter reads: literal runs of 1-32 bytes, back
references of 3-264 bytes at distances up to 8192) with a cheaper search: one hash probe per position and, after a
run of misses, a growing stride of literals (the "acceleration" idea of LZ4), so incompressible stretches cost
little. Chunks that do not shrink are stored raw with the filter marked as skipped (filter mask bit 0), as HDF5
does itself when an optional filter declines a chunk. Either way a reader sees byte-identical arrays through
h5py's own LZF filter; only the compressed sizes differ from liblzf's.

The kernel is single-threaded and releases the GIL (``nogil``): it runs in the writer thread beside the renderer's
parallel kernels (numba's default threading layer cannot host two parallel regions from two threads).
"""
from __future__ import annotations

import threading

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _u8_row(img, out, bgr, green, cov, i, y):  # pragma: no cover - compiled
    s255 = np.float32(255.0)
    one = np.float32(1.0)
    for x in range(img.shape[3]):
        for c in range(3):
            v = img[i, c, y, x]
            if c == 1 and green != 0:
                v = v + np.float32(green) * (one - cov[i, 0, y, x])
            v = np.rint(v * s255)
            if v < 0:
                v = 0
            elif v > 255:
                v = 255
            out[i, y, x, 2 - c if bgr else c] = np.uint8(v)


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _u8_plane_row(a, out, i, y):  # pragma: no cover - compiled
    s255 = np.float32(255.0)
    for x in range(a.shape[2]):
        v = np.rint(a[i, y, x] * s255)
        out[i, y, x] = np.uint8(0 if v < 0 else (255 if v > 255 else v))


# parallel variants for the main thread, serial ones for any other thread: numba's default "workqueue" threading
# layer hosts parallel regions from one thread at a time, and the main thread's renderer launches them
@nb.njit(cache=True, parallel=True, boundscheck=False)
def _u8_rows_par(img, out, bgr, green, cov):  # pragma: no cover - compiled
    h = img.shape[2]
    for r in nb.prange(img.shape[0] * h):
        _u8_row(img, out, bgr, green, cov, r // h, r % h)


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _u8_rows_ser(img, out, bgr, green, cov):  # pragma: no cover - compiled
    h = img.shape[2]
    for r in range(img.shape[0] * h):
        _u8_row(img, out, bgr, green, cov, r // h, r % h)


@nb.njit(cache=True, parallel=True, boundscheck=False)
def _u8_plane_par(a, out):  # pragma: no cover - compiled
    h = a.shape[1]
    for r in nb.prange(a.shape[0] * h):
        _u8_plane_row(a, out, r // h, r % h)


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _u8_plane_ser(a, out):  # pragma: no cover - compiled
    h = a.shape[1]
    for r in range(a.shape[0] * h):
        _u8_plane_row(a, out, r // h, r % h)


_U8_ROWS = (_u8_rows_par, _u8_rows_ser)
_U8_PLANE = (_u8_plane_par, _u8_plane_ser)


def _variant(kernels):
    return kernels[0] if threading.current_thread() is threading.main_thread() else kernels[1]


def u8_rows(img: np.ndarray, bgr: bool, green: float = 0.0, coverage: np.ndarray | None = None) -> np.ndarray:
    """``(N, 3, H, W)`` float32 in [0, 1] → ``(N, H, W, 3)`` uint8 ``round(255·x)`` (BGR if ``bgr``); with ``green``,
    ``green · (1 − coverage)`` is added to channel G first (coverage ``(N, 1, H, W)``)."""
    img = np.ascontiguousarray(img, np.float32)
    n, _, h, w = img.shape
    out = np.empty((n, h, w, 3), np.uint8)
    cov = np.ascontiguousarray(coverage, np.float32) if green else np.zeros((1, 1, 1, 1), np.float32)
    _variant(_U8_ROWS)(img, out, bool(bgr), float(green), cov)
    return out


def u8_plane(a: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` float32 in [0, 1] → uint8 ``round(255·x)``."""
    a = np.ascontiguousarray(a, np.float32)
    out = np.empty(a.shape, np.uint8)
    _variant(_U8_PLANE)(a, out)
    return out


#: LZF's format limits: literal run ≤ 32 bytes, back reference 3..264 bytes, distance ≤ 8192
_MAX_LIT, _MAX_REF, _MAX_OFF = 32, 264, 1 << 13
_HLOG = 14


def bound(n: int) -> int:
    """Output buffer size that always suffices for ``n`` input bytes (all literals: one control byte per 32)."""
    return n + n // _MAX_LIT + 16


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _compress_into(src, dst, htab):  # pragma: no cover - compiled
    """LZF stream of ``src`` (uint8, 1-D) into ``dst``; returns its length, or 0 if it is not shorter than ``src``
    (store raw). ``htab`` (int32, 2**_HLOG) is scratch, reset here."""
    n = src.shape[0]
    limit = n - 1  # compressed output must be shorter than the input to be worth storing
    htab[:] = -1
    ip = 0
    op = 1  # dst[0]: control byte of the first literal run
    lit_pos = 0
    lit = 0
    misses = 0
    probe = n >> 2  # a quarter in: give up (store raw) if it has not shrunk by 1.5 %
    while ip < n:
        if ip >= probe:
            if op > ip - (ip >> 6):
                return 0
            probe = n
        if ip + 2 < n:
            v = (np.uint32(src[ip]) << 16) | (np.uint32(src[ip + 1]) << 8) | np.uint32(src[ip + 2])
            h = ((v * np.uint32(2654435761)) >> np.uint32(32 - _HLOG)) & np.uint32((1 << _HLOG) - 1)
            ref = htab[h]
            htab[h] = ip
            off = ip - ref - 1
            if ref >= 0 and off < _MAX_OFF and src[ref] == src[ip] and src[ref + 1] == src[ip + 1] \
                    and src[ref + 2] == src[ip + 2]:
                maxlen = min(n - ip, _MAX_REF)
                ln = 3
                while ln < maxlen and src[ref + ln] == src[ip + ln]:
                    ln += 1
                if op + 4 > limit:
                    return 0
                if lit > 0:
                    dst[lit_pos] = lit - 1
                else:
                    op -= 1  # no literals before this reference: drop the reserved control byte
                code = ln - 2
                if code < 7:
                    dst[op] = (code << 5) | (off >> 8)
                    op += 1
                else:
                    dst[op] = (7 << 5) | (off >> 8)
                    dst[op + 1] = code - 7
                    op += 2
                dst[op] = off & 255
                op += 1
                lit_pos = op  # a new literal run starts after the reference
                op += 1
                lit = 0
                if ln >= 16:
                    misses = 0
                ip += ln
                continue
            # a miss: literals, more of them at once after a long run of misses
            misses += 1
            step = min(1 + (misses >> 8), n - ip)
        else:
            step = n - ip  # the last bytes: too few for a reference
        for _ in range(step):
            if op + 2 > limit:
                return 0
            dst[op] = src[ip]
            op += 1
            ip += 1
            lit += 1
            if lit == _MAX_LIT:
                dst[lit_pos] = _MAX_LIT - 1
                lit_pos = op
                op += 1
                lit = 0
    if lit > 0:
        dst[lit_pos] = lit - 1
    else:
        op -= 1
    return op


@nb.njit(cache=True, nogil=True)
def _compress_rows(rows, dst, sizes, htab):  # pragma: no cover - compiled
    for i in range(rows.shape[0]):
        sizes[i] = _compress_into(rows[i], dst[i], htab)


def compress_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``rows`` (N, ...) uint8 as one LZF stream: (buffer (N, bound), sizes (N,)); size 0 = store raw."""
    flat = np.ascontiguousarray(rows).reshape(len(rows), -1)
    if flat.dtype != np.uint8:
        flat = flat.view(np.uint8)
    dst = np.empty((len(flat), bound(flat.shape[1])), np.uint8)
    sizes = np.zeros(len(flat), np.int64)
    _compress_rows(flat, dst, sizes, np.empty(1 << _HLOG, np.int32))
    return dst, sizes


def direct_lzf(ds) -> bool:
    """Whether :func:`write_rows` can write ``ds``: uint8, one row per chunk, LZF as its only filter."""
    chunks = ds.chunks
    return (ds.dtype == np.uint8 and chunks is not None and chunks[0] == 1 and tuple(chunks[1:]) == ds.shape[1:]
            and ds.compression == "lzf" and not ds.shuffle and not ds.fletcher32 and ds.scaleoffset is None)


def write_rows(ds, start: int, rows: np.ndarray) -> None:
    """Write ``rows`` into the chunked h5py dataset ``ds`` (lzf filter only, one row per chunk, already resized) at
    rows ``start...`` as directly written chunks: LZF where it shrinks the chunk, raw (filter skipped) otherwise."""
    dst, sizes = compress_rows(rows)
    zeros = (0,) * (rows.ndim - 1)
    for i in range(len(rows)):
        if sizes[i] > 0:
            ds.id.write_direct_chunk((start + i, *zeros), dst[i, :sizes[i]].tobytes(), 0)
        else:  # not compressible: the chunk's bytes as they are, filter 0 (lzf) marked as skipped
            ds.id.write_direct_chunk((start + i, *zeros), np.ascontiguousarray(rows[i]).tobytes(), 1)
