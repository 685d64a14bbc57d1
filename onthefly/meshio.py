"""Mesh files: Wavefront OBJ (``v x y z [r g b]``, ``vt``, ``f``, ``mtllib``/``map_Kd``), PLY, and UV textures.

Vertex colours in OBJ/PLY are read in either scale: written as **integers** (``v x y z 255 128 0``, as 3DDFA /
MPII-NV write them, and PLY ``uchar`` properties) they are 0-255 whatever their values (a near-black mesh is not
mistaken for [0, 1]); written as **decimals** (``v x y z 1.0000 0.5020 0.0000``, as :func:`write_obj` writes them,
and PLY ``float`` properties) they are [0, 1] when none exceeds 1, else 0-255.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np

from ._io import atomic_write
from .sources.base import SourceError


def write_obj(path: str | Path, verts, faces, colors=None) -> Path:
    """Write a triangle mesh as OBJ. ``verts`` (V, 3), ``faces`` (F, 3) 0-based, ``colors`` (V, 3) uint8 or
    float in [0, 1]. Written to a temporary name and renamed, so a crash never leaves a truncated file."""
    path = Path(path)
    v = np.asarray(verts, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"verts: expected (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or (f.size and (f.min() < 0 or f.max() >= len(v))):
        raise ValueError(f"faces: expected (F, 3) indices in [0, {len(v)})")
    cols = []
    if colors is not None:
        c = np.asarray(colors)
        if c.shape != v.shape:
            raise ValueError(f"colors: expected {v.shape}, got {c.shape}")
        c = c.astype(np.float64) / 255.0 if c.dtype == np.uint8 else c.astype(np.float64)
        cols = [c]
    data = np.concatenate([v] + cols, axis=1)
    fmt = " ".join(["%.5f"] * 3 + ["%.4f"] * (data.shape[1] - 3))
    with atomic_write(path) as tmp, open(tmp, "w") as fh:
        fh.write(f"# onthefly mesh: {len(v)} vertices, {len(f)} faces, millimetres\n")
        np.savetxt(fh, data, fmt="v " + fmt)
        np.savetxt(fh, f + 1, fmt="f %d %d %d")
    return path


# ---------------------------------------------------------------------------------------------------- readers
# Parse errors raise ``SourceError`` (a ValueError) naming the file and the 1-based line.

class ObjMesh:
    """A mesh read from OBJ/PLY: ``verts`` (V,3) float64, ``faces`` (F,3) int64 0-based, optional
    ``colors`` (V,3) uint8 (OBJ ``v x y z r g b`` in [0,1] or 0-255; PLY red/green/blue), ``uv`` (T,2) float64 and
    ``faces_uv`` (F,3) int64 (OBJ ``vt`` / ``f v/vt``; PLY per-vertex u,v with ``faces_uv == faces``),
    ``texture_path`` (the ``map_Kd`` of the first material used, resolved next to the ``.mtl``)."""

    def __init__(self, verts, faces, colors=None, uv=None, faces_uv=None, texture_path=None, path=None):
        self.verts, self.faces, self.colors = verts, faces, colors
        self.uv, self.faces_uv, self.texture_path, self.path = uv, faces_uv, texture_path, path

    def __repr__(self) -> str:
        return (f"ObjMesh({self.path}, V={len(self.verts)}, F={len(self.faces)}, colors={self.colors is not None}, "
                f"uv={self.uv is not None}, texture={self.texture_path})")


def _source_error(msg: str):
    return SourceError(msg)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise _source_error(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _source_error(f"{path}: cannot read ({exc})") from None


def _guarded(fn, path, *args, **kw):
    """``fn(*args, **kw)`` with every unexpected parse failure (a malformed number, an index or size out of range,
    a too deeply nested or huge input) turned into a ``SourceError`` naming ``path``."""
    try:
        return fn(*args, **kw)
    except SourceError:
        raise
    except (ValueError, IndexError, TypeError, OverflowError, KeyError, RecursionError, MemoryError) as exc:
        raise _source_error(f"{path}: malformed file ({type(exc).__name__}: {str(exc)[:200]})") from None


def _colors_to_uint8(c: np.ndarray, where: str, integer: bool | None = None) -> np.ndarray:
    """Colours (V,3) → uint8. ``integer``: the file wrote them as integers (then 0-255 always); None: decide from
    the values (integral values → 0-255, else [0, 1] when none exceeds 1)."""
    if c.size and (c.min() < 0 or c.max() > 255):
        raise _source_error(f"{where}: vertex colours outside [0, 255]")
    if integer is None:
        integer = bool(np.all(c == np.round(c)) and c.size and c.max() > 1.0)
    if c.size and not integer and c.max() <= 1.0:
        c = c * 255.0
    return np.clip(np.rint(c), 0, 255).astype(np.uint8)


def _parse_floats(path, rows, ncols_ok, what):
    """rows: list of (lineno, tokens). Fast path: one numpy conversion; on failure find the bad line."""
    try:
        arr = np.array([t for _, t in rows], dtype=np.float64)
        if arr.ndim == 2 and arr.shape[1] in ncols_ok and np.isfinite(arr).all():
            return arr
    except ValueError:
        pass
    width = None
    for lineno, t in rows:
        if len(t) not in ncols_ok or (width is not None and len(t) != width):
            raise _source_error(f"{path}:{lineno}: malformed '{what}' line: expected "
                                f"{' or '.join(str(n) for n in ncols_ok)} numbers, got {len(t)}")
        width = len(t)
        try:
            vals = [float(x) for x in t]
        except ValueError:
            raise _source_error(f"{path}:{lineno}: malformed '{what}' line: not a number in {' '.join(t)!r}") \
                from None
        if not all(np.isfinite(vals)):
            raise _source_error(f"{path}:{lineno}: '{what}' line contains NaN or inf")
    raise _source_error(f"{path}: inconsistent '{what}' lines")  # pragma: no cover - caught above


def _fast_floats(lines: list[str], skip: int, widths: tuple[int, ...]):
    """Parse ``tag x y z ...`` lines with one C-level conversion; None when anything is unusual (the line-by-line
    parser then reports the exact line)."""
    if not lines:
        return None
    w = len(lines[0].split()) - 1
    if w not in widths or any(len(ln.split()) != w + 1 for ln in lines):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            arr = np.fromstring(" ".join(ln[skip:] for ln in lines), dtype=np.float64, sep=" ")
        except ValueError:
            return None
    if arr.size != len(lines) * w or not np.isfinite(arr).all():
        return None
    return arr.reshape(len(lines), w)


def _fast_faces(lines: list[str], nv: int, nt: int):
    """Triangles with one index pattern (``a``, ``a/b``, ``a/b/c``, ``a//c``), positive in-range indices; else None."""
    tok = lines[0].split()[1:]
    if len(tok) != 3:
        return None
    parts = tok[0].split("/")
    has_vt = len(parts) >= 2 and parts[1] != ""
    n_num = sum(1 for x in parts if x != "")
    if any(len(ln.split()) != 4 for ln in lines):
        return None
    payload = " ".join(ln[2:] for ln in lines)
    if payload.count("/") != len(lines) * 3 * (len(parts) - 1):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            arr = np.fromstring(payload.replace("/", " "), dtype=np.float64, sep=" ")
        except ValueError:
            return None
    if arr.size != len(lines) * 3 * n_num or not (arr == np.rint(arr)).all():
        return None
    ia = arr.astype(np.int64).reshape(len(lines), 3, n_num)
    vi = ia[..., 0]
    if vi.min() < 1 or vi.max() > nv:
        return None
    if not has_vt:
        return vi - 1, None
    ti = ia[..., 1]
    if ti.min() < 1 or ti.max() > nt:
        return None
    return vi - 1, ti - 1


def read_obj(path: str | Path, *, with_texture: bool = True) -> ObjMesh:
    """See :func:`_read_obj`; any parse failure is a ``SourceError`` naming the file (never another exception)."""
    return _guarded(_read_obj, path, path, with_texture=with_texture)


def _read_obj(path: str | Path, *, with_texture: bool = True) -> ObjMesh:
    """Read a Wavefront OBJ: ``v x y z [r g b]``, ``vt u v``, ``f a[/at[/an]] ...`` (polygons are fan-triangulated,
    negative indices are relative), ``mtllib`` + ``usemtl`` (texture path of the first used material with a
    ``map_Kd``). Errors name the file and line.

    The common case (uniform lines, triangles, positive indices) is parsed with one C-level conversion per kind;
    anything else goes through a line-by-line parser, which also locates errors."""
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    vl = [ln for ln in lines if ln[:2] in ("v ", "v\t")]
    tl = [ln for ln in lines if ln[:3] in ("vt ", "vt\t")]
    fl = [ln for ln in lines if ln[:2] in ("f ", "f\t")]
    mtllib = next((ln.split(None, 1)[1].strip() for ln in lines if ln.startswith("mtllib") and
                   len(ln.split()) > 1), None)
    usemtl = next((ln.split()[1] for ln in lines if ln.startswith("usemtl") and len(ln.split()) > 1), None)
    fast = None
    if vl and fl:
        v = _fast_floats(vl, 2, (3, 6))
        uv = _fast_floats(tl, 3, (2, 3)) if tl else np.zeros((0, 2))
        if v is not None and uv is not None:
            f = _fast_faces(fl, len(v), len(uv))
            if f is not None:
                fast = v, uv[:, :2], f[0], f[1]
    if fast is None:
        v, uv, faces, faces_uv = _read_obj_slow(path, lines)
    else:
        v, uv, faces, faces_uv = fast
    colors = None
    if v.shape[1] == 6:
        # the scale follows how the file writes them: integer tokens (3DDFA) are 0-255, decimals may be [0, 1]
        first = vl[0].split()[4:7] if vl else []
        integer = bool(first) and not any(ch in tok for tok in first for ch in ".eE")
        colors = _colors_to_uint8(v[:, 3:], str(path), integer)
    verts = v[:, :3]
    texture_path = None
    if with_texture and mtllib and faces_uv is not None:
        texture_path = _texture_from_mtl(path, path.parent / mtllib, usemtl)
    return ObjMesh(verts, faces, colors, uv if faces_uv is not None else None, faces_uv, texture_path, path)


def _read_obj_slow(path: Path, lines: list[str]):
    v_rows, vt_rows, f_rows = [], [], []
    for lineno, line in enumerate(lines, 1):
        if not line or line[0] == "#":
            continue
        t = line.split()
        if not t:
            continue
        tag = t[0]
        if tag == "v":
            v_rows.append((lineno, t[1:]))
        elif tag == "vt":
            vt_rows.append((lineno, t[1:3] if len(t) >= 3 else t[1:]))
        elif tag == "f":
            f_rows.append((lineno, t[1:]))
    if not v_rows:
        raise _source_error(f"{path}: no vertices ('v' lines)")
    if not f_rows:
        raise _source_error(f"{path}: no faces ('f' lines)")
    v = _parse_floats(path, v_rows, (3, 6), "v")
    uv = _parse_floats(path, vt_rows, (2,), "vt") if vt_rows else None
    nv, nt = len(v), (0 if uv is None else len(uv))
    faces, faces_uv = _parse_obj_faces(path, f_rows, nv, nt)
    return v, uv, faces, faces_uv


def _parse_obj_faces(path, f_rows, nv, nt):
    # Fast path: all triangles "a b c" or "a/b c/d e/f" or "a/b/c ..." with positive indices.
    try:
        toks = [t for _, t in f_rows]
        if all(len(t) == 3 for t in toks):
            flat = [x.split("/") for t in toks for x in t]
            n_per = len(flat[0])
            if all(len(x) == n_per for x in flat):
                idx = np.array(flat, dtype=object)
                vi = idx[:, 0].astype(np.int64).reshape(-1, 3)
                ti = None
                if n_per >= 2 and all(x[1] for x in flat):
                    ti = idx[:, 1].astype(np.int64).reshape(-1, 3)
                if vi.min() >= 1 and vi.max() <= nv and (ti is None or (ti.min() >= 1 and ti.max() <= nt)):
                    return vi - 1, (None if ti is None else ti - 1)
    except (ValueError, TypeError):
        pass
    faces, faces_uv, have_uv = [], [], None
    for lineno, t in f_rows:
        if len(t) < 3:
            raise _source_error(f"{path}:{lineno}: malformed 'f' line: a face needs at least 3 vertices")
        vs, ts = [], []
        for x in t:
            parts = x.split("/")
            try:
                a = int(parts[0])
                b = int(parts[1]) if len(parts) > 1 and parts[1] else None
            except ValueError:
                raise _source_error(f"{path}:{lineno}: malformed 'f' line: bad index {x!r}") from None
            a = a - 1 if a > 0 else nv + a
            if not 0 <= a < nv:
                raise _source_error(f"{path}:{lineno}: vertex index {parts[0]} out of range (1..{nv})")
            if b is not None:
                b = b - 1 if b > 0 else nt + b
                if not 0 <= b < nt:
                    raise _source_error(f"{path}:{lineno}: texture index {parts[1]} out of range (1..{nt})")
            vs.append(a)
            ts.append(b)
        line_uv = all(b is not None for b in ts)
        if have_uv is None:
            have_uv = line_uv
        elif have_uv != line_uv:
            raise _source_error(f"{path}:{lineno}: faces mix 'v' and 'v/vt' references")
        for k in range(1, len(vs) - 1):
            faces.append((vs[0], vs[k], vs[k + 1]))
            if line_uv:
                faces_uv.append((ts[0], ts[k], ts[k + 1]))
    return np.asarray(faces, np.int64), (np.asarray(faces_uv, np.int64) if have_uv else None)


def read_mtl(path: str | Path) -> dict[str, Path]:
    """``{material: texture path}`` for the materials of an MTL file that have a ``map_Kd``."""
    path = Path(path)
    out, cur = {}, None
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        t = line.split()
        if not t or t[0].startswith("#"):
            continue
        if t[0] == "newmtl":
            cur = t[1] if len(t) > 1 else ""
        elif t[0] == "map_Kd":
            if cur is None or len(t) < 2:
                raise _source_error(f"{path}:{lineno}: malformed 'map_Kd' line")
            out[cur] = path.parent / t[-1]
    return out


def _texture_from_mtl(obj_path: Path, mtl_path: Path, usemtl: str | None) -> Path:
    maps = read_mtl(mtl_path)
    if usemtl is not None and usemtl in maps:
        return maps[usemtl]
    if len(maps) >= 1 and (usemtl is None or usemtl not in maps):
        if usemtl is None:
            return next(iter(maps.values()))
    raise _source_error(f"{mtl_path}: no texture (map_Kd) for material {usemtl!r} used by {obj_path}")


def read_texture(path: str | Path, max_size: int | None = None) -> np.ndarray:
    """An RGB uint8 image (H,W,3); a missing or unreadable file raises ``SourceError`` naming it.

    ``max_size`` caps the longer side (aspect kept, ``cv2.INTER_AREA``), downsampling **once** while decoding: a
    JPEG is decoded directly at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, ``cv2.IMREAD_REDUCED_COLOR_*``),
    the largest reduction that keeps the longer side >= ``max_size``, then area-resized to it, so an 8192² atlas
    never exists in memory at full size (its header is read first, with Pillow, to pick the factor)."""
    path = Path(path)
    if not path.is_file():
        raise _source_error(f"{path}: texture file not found")
    flag = cv2.IMREAD_COLOR
    if max_size is not None:
        if max_size < 1:
            raise ValueError(f"max_size: expected a positive int, got {max_size}")
        try:
            from PIL import Image

            with Image.open(path) as im:
                w, h, fmt = im.width, im.height, im.format
        except Exception:
            raise _source_error(f"{path}: texture is not a readable image") from None
        if fmt == "JPEG":
            for k, f in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                         (2, cv2.IMREAD_REDUCED_COLOR_2)):
                if max(w, h) // k >= max_size:
                    flag = f
                    break
    img = cv2.imread(str(path), flag)
    if img is None:
        raise _source_error(f"{path}: texture is not a readable image")
    if max_size is not None and max(img.shape[:2]) > max_size:
        h, w = img.shape[:2]
        s = max_size / max(h, w)
        img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[..., ::-1])


_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply(path: str | Path) -> ObjMesh:
    """See :func:`_read_ply`; any parse failure is a ``SourceError`` naming the file (never another exception)."""
    return _guarded(_read_ply, path, path)


def _read_ply(path: str | Path) -> ObjMesh:
    """Read a PLY (ascii or binary little/big endian): vertex x,y,z, optional red,green,blue (uchar or float),
    optional per-vertex u,v (or s,t / texture_u,texture_v); faces as a list property (triangulated by fans).
    A per-vertex UV PLY yields ``faces_uv == faces``; its texture comes from a ``comment TextureFile NAME``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _source_error(f"{path}: cannot read ({exc})") from None
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise _source_error(f"{path}:1: not a PLY file (missing 'ply' magic or 'end_header')")
    nl = data.index(b"\n", end)
    header = data[:nl].decode("ascii", "replace").splitlines()
    body = data[nl + 1:]
    fmt: str | None = None
    elements: list[tuple[str, int, list[tuple[str, str, str | None, str | None]]]] = []
    texfile: Path | None = None
    for lineno, line in enumerate(header, 1):
        t = line.split()
        if not t:
            continue
        if t[0] == "format":
            fmt = t[1]
        elif t[0] == "comment" and len(t) >= 3 and t[1] == "TextureFile":
            texfile = path.parent / t[2]
        elif t[0] == "element":
            elements.append((t[1], int(t[2]), []))
        elif t[0] == "property":
            if not elements:
                raise _source_error(f"{path}:{lineno}: property before any element")
            if t[1] == "list":
                if t[2] not in _PLY_TYPES or t[3] not in _PLY_TYPES:
                    raise _source_error(f"{path}:{lineno}: unknown PLY type in {line!r}")
                elements[-1][2].append((t[4], "list", _PLY_TYPES[t[2]], _PLY_TYPES[t[3]]))
            else:
                if t[1] not in _PLY_TYPES:
                    raise _source_error(f"{path}:{lineno}: unknown PLY type {t[1]!r}")
                elements[-1][2].append((t[2], _PLY_TYPES[t[1]], None, None))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise _source_error(f"{path}: unsupported PLY format {fmt!r}")
    vert_props: dict[str, np.ndarray] | None = None
    faces_list: list[tuple[int, list[int]]] | np.ndarray | None = None
    if fmt == "ascii":
        lines = body.decode("ascii", "replace").splitlines()
        pos, line0 = 0, len(header) + 1
        for name, count, props in elements:
            rows = []
            for k in range(count):
                if pos >= len(lines):
                    raise _source_error(f"{path}: truncated: element {name!r} has {count} rows, found {k}")
                rows.append((line0 + pos, lines[pos].split()))
                pos += 1
            if name == "vertex":
                if any(p[1] == "list" for p in props):
                    raise _source_error(f"{path}: list properties on vertices are not supported")
                arr = _parse_floats(path, rows, (len(props),), "vertex")
                vert_props = {p[0]: arr[:, i] for i, p in enumerate(props)}
            elif name == "face":
                faces_list = []
                for lineno, t in rows:
                    try:
                        n = int(t[0])
                        idx = [int(x) for x in t[1:1 + n]]
                    except (ValueError, IndexError):
                        raise _source_error(f"{path}:{lineno}: malformed face row") from None
                    if len(idx) != n or n < 3:
                        raise _source_error(f"{path}:{lineno}: malformed face row (count {t[0] if t else '?'})")
                    faces_list.append((lineno, idx))
    else:
        endian = "<" if fmt == "binary_little_endian" else ">"
        off = 0
        for name, count, props in elements:
            if all(p[1] != "list" for p in props):
                dt = np.dtype([(p[0], endian + p[1]) for p in props])
                if off + dt.itemsize * count > len(body):
                    raise _source_error(f"{path}: truncated binary element {name!r}")
                arr = np.frombuffer(body, dt, count, off)
                off += dt.itemsize * count
                if name == "vertex":
                    vert_props = {p[0]: arr[p[0]].astype(np.float64) for p in props}
            else:
                if len(props) != 1:
                    raise _source_error(f"{path}: element {name!r}: only a single list property is supported")
                _, _, ct_name, it_name = props[0]
                assert ct_name is not None and it_name is not None  # a list property has both types
                ct, it = np.dtype(endian + ct_name), np.dtype(endian + it_name)
                # fast path: all triangles
                rec = np.dtype([("n", ct), ("i", it, (3,))])
                if off + rec.itemsize * count <= len(body):
                    arr = np.frombuffer(body, rec, count, off)
                    if (arr["n"] == 3).all():
                        off += rec.itemsize * count
                        if name == "face":
                            faces_list = arr["i"].astype(np.int64)
                        continue
                lists: list[tuple[int, list[int]]] = []
                for k in range(count):
                    n = int(np.frombuffer(body, ct, 1, off)[0])
                    off += ct.itemsize
                    lists.append((k, np.frombuffer(body, it, n, off).astype(np.int64).tolist()))
                    off += it.itemsize * n
                if name == "face":
                    faces_list = lists
    if vert_props is None or not all(k in vert_props for k in "xyz"):
        raise _source_error(f"{path}: no vertex element with x, y, z")
    verts = np.stack([vert_props[k] for k in "xyz"], 1)
    if not np.isfinite(verts).all():
        raise _source_error(f"{path}: vertex {int(np.argwhere(~np.isfinite(verts))[0, 0])} has NaN or inf")
    if len(verts) == 0:
        raise _source_error(f"{path}: no vertices (element vertex 0)")
    if faces_list is None or len(faces_list) == 0:
        raise _source_error(f"{path}: no face element" if faces_list is None else
                            f"{path}: no faces (element face 0)")
    nv = len(verts)
    if isinstance(faces_list, np.ndarray):
        faces = faces_list
        if faces.size and (faces.min() < 0 or faces.max() >= nv):
            bad = int(np.argwhere((faces < 0) | (faces >= nv))[0, 0])
            raise _source_error(f"{path}: face {bad}: vertex index out of range (0..{nv - 1})")
    else:
        tris: list[tuple[int, int, int]] = []
        for where, idx in faces_list:
            if min(idx) < 0 or max(idx) >= nv:
                raise _source_error(f"{path}:{where}: vertex index out of range (0..{nv - 1})")
            tris.extend((idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1))
        faces = np.asarray(tris, np.int64).reshape(-1, 3)
    colors = None
    for names in (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue")):
        if all(n in vert_props for n in names):
            vprops = next((e[2] for e in elements if e[0] == "vertex"), [])
            kinds = {pn: pt for pn, pt, _, _ in vprops}
            integer = all(np.dtype(kinds.get(n, "f4")).kind in "iu" for n in names)  # uchar colours: 0-255
            colors = _colors_to_uint8(np.stack([vert_props[n] for n in names], 1), str(path), integer or None)
            break
    uv = faces_uv = None
    for uv_names in (("u", "v"), ("s", "t"), ("texture_u", "texture_v")):
        if all(n in vert_props for n in uv_names):
            uv = np.stack([vert_props[n] for n in uv_names], 1)
            faces_uv = faces.copy()
            break
    return ObjMesh(verts, faces, colors, uv, faces_uv, texfile if uv is not None else None, path)


def read_mesh(path: str | Path, *, with_texture: bool = True) -> ObjMesh:
    """:func:`read_obj` or :func:`read_ply` by file extension."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".obj":
        return read_obj(path, with_texture=with_texture)
    if ext == ".ply":
        return read_ply(path)
    raise _source_error(f"{path}: unsupported mesh format {ext!r} (expected .obj or .ply)")


def write_textured_obj(path: str | Path, verts, faces, uv, faces_uv, texture=None, *, colors=None,
                       texture_name: str | None = None) -> Path:
    """Write an OBJ with ``vt`` coordinates, ``f v/vt`` faces, an ``.mtl`` next to it and, when ``texture``
    (H,W,3 uint8 RGB) is given, the texture image (PNG unless ``texture_name`` ends in .jpg). Metashape layout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.stem
    texture_name = texture_name or f"{stem}.png"
    v = np.asarray(verts, np.float64)
    f = np.asarray(faces, np.int64) + 1
    ft = np.asarray(faces_uv, np.int64) + 1
    with open(path.with_name(stem + ".mtl"), "w") as fh:
        fh.write(f"newmtl Solid\nKd 1 1 1\n\nnewmtl {stem}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nmap_Kd {texture_name}\n")
    if texture is not None:
        ok = cv2.imwrite(str(path.with_name(texture_name)), np.ascontiguousarray(np.asarray(texture)[..., ::-1]))
        if not ok:
            raise ValueError(f"{path.with_name(texture_name)}: could not write the texture")
    with atomic_write(path) as tmp, open(tmp, "w") as fh:
        fh.write(f"mtllib {stem}.mtl\n")
        if colors is not None:
            np.savetxt(fh, np.concatenate([v, np.asarray(colors, np.float64) / 255.0], 1),
                       fmt="v %.6f %.6f %.6f %.6f %.6f %.6f")
        else:
            np.savetxt(fh, v, fmt="v %.6f %.6f %.6f")
        np.savetxt(fh, np.asarray(uv, np.float64), fmt="vt %.7f %.7f")
        fh.write(f"usemtl {stem}\n")
        np.savetxt(fh, np.stack([f, ft], 2).reshape(-1, 6), fmt="f %d/%d %d/%d %d/%d")
    return path


def write_ply(path: str | Path, verts, faces, colors=None, uv=None, *, binary: bool = True,
              texture_file: str | None = None) -> Path:
    """Write a triangle mesh as PLY (binary little endian or ascii) with optional uchar colours and per-vertex
    float u, v."""
    path = Path(path)
    v = np.asarray(verts, np.float32)
    f = np.asarray(faces, np.int32)
    props = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if colors is not None:
        props += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    if uv is not None:
        props += [("u", "f4"), ("v", "f4")]
    names = {"f4": "float", "u1": "uchar"}
    head = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0"]
    if texture_file:
        head.append(f"comment TextureFile {texture_file}")
    head.append(f"element vertex {len(v)}")
    head += [f"property {names[t]} {n}" for n, t in props]
    head += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(("\n".join(head) + "\n").encode("ascii"))
        vert = np.zeros(len(v), np.dtype([(n, "<" + t) for n, t in props]))
        vert["x"], vert["y"], vert["z"] = v[:, 0], v[:, 1], v[:, 2]
        if colors is not None:
            c = np.asarray(colors, np.uint8)
            vert["red"], vert["green"], vert["blue"] = c[:, 0], c[:, 1], c[:, 2]
        if uv is not None:
            vert["u"], vert["v"] = np.asarray(uv)[:, 0], np.asarray(uv)[:, 1]
        if binary:
            fh.write(vert.tobytes())
            face = np.zeros(len(f), np.dtype([("n", "u1"), ("i", "<i4", (3,))]))
            face["n"], face["i"] = 3, f
            fh.write(face.tobytes())
        else:
            for row in vert:
                fh.write((" ".join(repr(float(x)) if isinstance(x, np.floating) else str(int(x))
                                   for x in (row[n] for n, _ in props)) + "\n").encode())
            for tri in f:
                fh.write(f"3 {tri[0]} {tri[1]} {tri[2]}\n".encode())
    return path
