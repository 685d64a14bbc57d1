"""Seeded mutations of valid files: bytes (truncation, bit flips, deleted / duplicated / random runs, empty files,
garbage), text (numbers → NaN/inf/huge/negative/non-numbers, deleted / duplicated / repeated lines, inflated
counts), JSON / YAML (wrong types, missing and unknown keys, deep nesting, huge arrays, alias bombs), HDF5
(deleted / retyped / reshaped datasets and attributes, NaN and negative values, huge declared shapes) and npy
headers. Every function takes a ``random.Random`` and returns the new content (or edits an h5 file in place)."""
from __future__ import annotations

import json
import random
import re

import numpy as np

SPECIAL_NUMBERS = ["nan", "NaN", "inf", "-inf", "-1", "0", "-0", "1e308", "-1e308", "1e400", "99999999999999999999",
                   "2147483648", "-2147483649", "1e-320", "abc", "", "0x10", "1/2/3", "1,5", "--1", "+", ".", "1e",
                   "4294967296", "-99999999999"]
_NUM = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")


# --------------------------------------------------------------------------------------------- bytes
def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    op = rng.randrange(8)
    n = len(b)
    if op == 0 or n == 0:  # truncation (incl. empty)
        return bytes(b[:rng.randrange(n + 1)]) if n else b""
    if op == 1:  # bit flips
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if op == 2:  # random run
        i = rng.randrange(n)
        k = rng.randint(1, 64)
        b[i:i + k] = bytes(rng.randrange(256) for _ in range(k))
        return bytes(b)
    if op == 3:  # delete a run
        i = rng.randrange(n)
        del b[i:i + rng.randint(1, max(1, n // 4))]
        return bytes(b)
    if op == 4:  # duplicate a run
        i = rng.randrange(n)
        k = rng.randint(1, max(1, n // 4))
        return bytes(b[:i + k] + b[i:i + k] + b[i + k:])
    if op == 5:  # magic values at a random offset
        i = rng.randrange(n)
        v = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80",
                        b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\xff" * 8])
        b[i:i + len(v)] = v
        return bytes(b)
    if op == 6:  # garbage of the same size
        return bytes(rng.randrange(256) for _ in range(min(n, 4096)))
    return b""  # empty file


# --------------------------------------------------------------------------------------------- text
def mutate_text(text: str, rng: random.Random) -> str:
    op = rng.randrange(9)
    lines = text.splitlines(keepends=True)
    if op <= 2:  # replace 1-4 number tokens
        nums = list(_NUM.finditer(text))
        if nums:
            for m in sorted(rng.sample(nums, min(len(nums), rng.randint(1, 4))), key=lambda m: -m.start()):
                text = text[:m.start()] + rng.choice(SPECIAL_NUMBERS) + text[m.end():]
            return text
    if op == 3 and lines:  # delete lines
        for _ in range(rng.randint(1, 3)):
            if lines:
                del lines[rng.randrange(len(lines))]
        return "".join(lines)
    if op == 4 and lines:  # duplicate a line, sometimes very many times (huge counts)
        i = rng.randrange(len(lines))
        k = rng.choice([1, 2, 10, 5000])
        line = lines[i] if lines[i].endswith("\n") else lines[i] + "\n"
        return "".join(lines[:i] + [line] * k + lines[i:])
    if op == 5 and len(lines) > 1:  # swap two lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
        return "".join(lines)
    if op == 6:  # integers inflated / negated (counts, indices)
        ints = [m for m in _NUM.finditer(text) if re.fullmatch(r"[-+]?\d+", m.group())]
        if ints:
            m = rng.choice(ints)
            v = rng.choice(["-1", "-2", "0", "2147483647", "9223372036854775807", "10000000000",
                            str(int(m.group()) + 1), str(int(m.group()) * 1000 + 7)])
            return text[:m.start()] + v + text[m.end():]
    if op == 7 and lines:  # split a line / truncate it
        i = rng.randrange(len(lines))
        lines[i] = lines[i][:rng.randrange(len(lines[i]) + 1)] + "\n"
        return "".join(lines)
    return mutate_bytes(text.encode("utf-8", "surrogateescape"), rng).decode("utf-8", "replace")


# --------------------------------------------------------------------------------------------- JSON / YAML
def _special_value(rng: random.Random):
    return rng.choice([None, True, False, "", "x", -1, 0, 1, 2 ** 63, -2 ** 63, 1e308, float("nan"), float("inf"),
                       -float("inf"), [], {}, [0], [[1, 2, 3]], {"a": 1}, [None] * 3, "nan", [float("nan")] * 3,
                       list(range(100000)), "é\u0000\ud7ff", [1.5] * 68])


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list) and obj:
        for i in {0, len(obj) - 1, len(obj) // 2}:
            yield from _paths(obj[i], prefix + (i,))


def mutate_obj(obj, rng: random.Random):
    """A structurally mutated copy of a JSON-like object."""
    obj = json.loads(json.dumps(obj))
    for _ in range(rng.randint(1, 3)):
        paths = list(_paths(obj))
        path = rng.choice(paths)
        if not path:
            obj = rng.choice([_special_value(rng), [obj], {"x": obj}, obj])
            continue
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        op = rng.randrange(5)
        if op == 0 and isinstance(parent, dict):
            del parent[key]
        elif op == 1 and isinstance(parent, dict):
            parent[rng.choice(["unknown", "K ", "", "__proto__"])] = _special_value(rng)
        elif op == 2 and isinstance(parent[key], list):
            v = parent[key]
            parent[key] = rng.choice([v[:-1], v + v[-1:], v * 2, [], v[:1]]) if v else [0]
        else:
            parent[key] = _special_value(rng)
    return obj


def deep_json(rng: random.Random) -> str:
    d = rng.choice([100, 5000, 200000])
    return "[" * d + "]" * d if rng.random() < 0.5 else '{"a":' * d + "1" + "}" * d


def mutate_json_text(obj, rng: random.Random, *, lines: bool = False) -> str:
    """JSON text of a mutated object, or a raw text mutation of the valid text, or deep nesting."""
    op = rng.randrange(10)
    if op == 0:
        return deep_json(rng)
    if op <= 2:
        return mutate_text(json.dumps(obj, indent=None if lines else 1), rng)
    return json.dumps(mutate_obj(obj, rng))


def yaml_bomb(rng: random.Random) -> str:
    n = rng.choice([5, 9])
    out = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, n):
        out.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    out.append(f"batch_size: *a{n - 1}")
    return "\n".join(out) + "\n"


def mutate_yaml_text(obj, rng: random.Random) -> str:
    import yaml

    op = rng.randrange(10)
    if op == 0:
        return yaml_bomb(rng)
    if op == 1:
        return deep_json(rng)  # JSON is YAML
    if op == 2:
        return rng.choice(["!!python/object/apply:os.system ['true']\n", "- a\n- b\n", "just text", "~\n", ":\n",
                           "a: [1, 2\n", "\t- x\n", "key: !!binary abc\n", "%YAML 9.9\n---\n"])
    if op <= 4:
        return mutate_text(yaml.dump(obj, Dumper=yaml.CSafeDumper), rng)
    m = mutate_obj(obj, rng)
    text = json.dumps(m)  # JSON is YAML: a large object (a huge array) is written in flow style, fast
    return text if len(text) > 4096 else yaml.dump(m, Dumper=yaml.CSafeDumper, allow_unicode=True)


# --------------------------------------------------------------------------------------------- HDF5
def mutate_h5(path, rng: random.Random, *, structural: bool = True) -> bool:
    """Edit an h5 file in place: one structural change (datasets / attributes) or a byte-level change; returns
    True when the change was byte-level. ``structural=False`` (the file is already byte-corrupted) forces a byte
    change: HDF5's writer is not made for corrupt files (opening one ``r+`` can segfault the mutator itself, fuzz
    poses-h5 input 5826), and only the reader's read-only open is under test."""
    import h5py

    byte_level = rng.random() < 0.35  # drawn either way: the inputs of the recorded campaign stay what they were
    if byte_level or not structural:
        data = path.read_bytes()
        path.write_bytes(mutate_bytes(data, rng))
        return True
    with h5py.File(path, "r+") as f:
        names: list[str] = []
        f.visititems(lambda n, o: names.append(n))
        dsets = [n for n in names if isinstance(f[n], h5py.Dataset)]
        op = rng.randrange(7)
        if op == 0 and names:  # delete a node
            del f[rng.choice(names)]
        elif op == 1 and dsets:  # replace a dataset with another dtype / shape
            n = rng.choice(dsets)
            shape = f[n].shape
            del f[n]
            new_shape = rng.choice([(), (0,), shape[:1], shape[:-1] if shape else (), (*shape, 2),
                                    (max(1, shape[0] - 1) if shape else 1, *shape[1:]), (shape[0] + 1, *shape[1:])
                                    if shape else (2,)])
            dt = rng.choice(["f4", "f8", "i8", "u1", "i2", "S8", "bool", "c8"])
            if dt == "S8":
                f[n] = np.full(new_shape, b"abc", "S8")
            else:
                f[n] = np.zeros(new_shape, dt) + (np.array(rng.choice([0, -1, 7, 255])).astype(dt) if dt != "bool"
                                                   else False)
        elif op == 2 and dsets:  # NaN / inf / negative / huge values
            n = rng.choice(dsets)
            ds = f[n]
            if ds.size and ds.dtype.kind in "fiu" and ds.ndim:
                a = ds[...]
                flat = a.reshape(-1)
                i = rng.randrange(flat.size)
                if ds.dtype.kind == "f":
                    flat[i] = rng.choice([np.nan, np.inf, -np.inf, 1e30, -1e30])
                elif ds.dtype.kind == "i":
                    flat[i] = rng.choice([-1, -2 ** 31, 2 ** 31 - 1, np.iinfo(ds.dtype).max])
                else:
                    flat[i] = np.iinfo(ds.dtype).max
                ds[...] = a
        elif op == 3:  # attributes: delete, retype, NaN
            objs = [f] + [f[n] for n in names]
            o = rng.choice(objs)
            keys = list(o.attrs.keys())
            if keys:
                k = rng.choice(keys)
                if rng.random() < 0.4:
                    del o.attrs[k]
                else:
                    o.attrs[k] = rng.choice([np.nan, -1, 0, 2 ** 62, "x", b"\xff\xfe", np.zeros(3), "", "{", "[]",
                                             True, "null", "{\"a\": 1}"])
        elif op == 4 and dsets:  # a chunked dataset declared huge (lazily allocated)
            n = rng.choice(dsets)
            ds = f[n]
            if ds.chunks is not None and ds.maxshape and ds.maxshape[0] is None:
                ds.resize(rng.choice([2 ** 20, 2 ** 31, ds.shape[0] * 3 + 1]), 0)
        elif op == 5 and names:  # rename / move a node
            n = rng.choice(names)
            f.move(n, n + "_x")
        else:  # an extra, unexpected node
            f.create_dataset(f"extra{rng.randrange(10)}", data=np.arange(3))
    return False


# --------------------------------------------------------------------------------------------- npy
def mutate_npy(data: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return mutate_bytes(data, rng)
    header_end = data.find(b"\n") + 1
    header = data[10:header_end].decode("latin1")
    new = rng.choice([
        header.replace("'<f8'", rng.choice(["'|O'", "'<f4'", "'<i8'", "'|u1'", "'<c16'", "'|S4'", "'<V16'"])),
        re.sub(r"\(\d+, 2\)", rng.choice(["(1000000000000, 2)", "(-1, 2)", "(3,)", "()", "(0, 2)", "(2, 2, 2)"]),
               header),
        header.replace("False", "True"),
        "{'descr': '<f8', 'fortran_order': False, 'shape': (" + "1, " * 40 + "2), }",
    ])
    new = new.rstrip("\n")
    pad = (64 - (10 + len(new) + 1) % 64) % 64
    new = new + " " * pad + "\n"
    return data[:8] + len(new).to_bytes(2, "little") + new.encode("latin1") + data[header_end:]
