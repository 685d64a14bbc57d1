"""Per-vertex face regions in the cache: round trip, frames without one, old caches without the datasets."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from onthefly.cache import MeshCache, build_cache, cache_info, validate_cache
from onthefly.sources.base import SourceError, check_record

from .helpers import ListSource, tiny_record


def _with_face(i, subject, n_verts=70):
    r = tiny_record(i, subject, n_verts=n_verts)
    r.vert_face_region = np.random.default_rng(i).uniform(size=n_verts) < 0.5
    return r


def test_procedural_roundtrip(tmp_path):
    from onthefly.sources.procedural import ProceduralSource

    src = ProceduralSource(count=2, seed=0, subjects=2)
    want = [src.load(k).vert_face_region.copy() for k in src.keys()]
    assert all(w.dtype == bool and 0 < w.sum() < len(w) for w in want)
    out = build_cache(ProceduralSource(count=2, seed=0, subjects=2), tmp_path / "p.h5").path
    with MeshCache(out) as c:
        for i, w in enumerate(want):
            np.testing.assert_array_equal(c[i].vert_face_region, w)
        p = c.load()
        assert p.vert_face_region.dtype.is_floating_point is False
        np.testing.assert_array_equal(p.vert_face_region.numpy(), np.concatenate(want))
        assert p.has_face_region.tolist() == [True, True]
    assert validate_cache(out) == []
    assert cache_info(out)["face_region_frames"] == 2


def test_frames_without_a_face_region_count_as_all_face(tmp_path):
    recs = [_with_face(0, "a"), tiny_record(1, "a", n_verts=80), tiny_record(2, "b")]
    out = build_cache(ListSource(recs), tmp_path / "c.h5").path
    with h5py.File(out) as f:
        assert f["vert_face_region"].shape == (220,) and f["vert_face_region"].dtype == np.uint8
        assert f["frames/has_face_region"][()].tolist() == [True, False, False]
    with MeshCache(out) as c:
        np.testing.assert_array_equal(c[0].vert_face_region, recs[0].vert_face_region)
        assert c[1].vert_face_region is None and c[2].vert_face_region is None
        p = c.load()
        assert p.vert_face_region.shape == (220,)
        np.testing.assert_array_equal(p.vert_face_region[:70].numpy(), recs[0].vert_face_region)
        assert bool(p.vert_face_region[70:].all())
        assert c.load("b").vert_face_region is None  # no selected frame has one
    assert validate_cache(out) == [] and cache_info(out)["face_region_frames"] == 1


def test_old_cache_without_face_regions_still_reads(tmp_path):
    out = build_cache(ListSource([_with_face(0, "a"), _with_face(1, "a")]), tmp_path / "c.h5").path
    with h5py.File(out, "r+") as f:  # what a cache written before face regions looks like
        del f["vert_face_region"], f["frames/has_face_region"]
    with MeshCache(out) as c:
        assert c[0].vert_face_region is None
        p = c.load()
        assert p.vert_face_region is None and p.has_face_region is None and len(p) == 2
    assert validate_cache(out) == []
    assert cache_info(out)["face_region_frames"] == 0


def test_validate_catches_bad_face_region_datasets(tmp_path):
    out = build_cache(ListSource([_with_face(0, "a"), _with_face(1, "a")]), tmp_path / "c.h5").path
    with h5py.File(out, "r+") as f:
        del f["vert_face_region"]
        f["vert_face_region"] = np.ones(139, np.uint8)
    assert any("vert_face_region has shape (139,), expected (140,)" in p for p in validate_cache(out))
    with h5py.File(out, "r+") as f:
        del f["vert_face_region"]
    assert any("frames/has_face_region without vert_face_region" in p for p in validate_cache(out))
    with h5py.File(out, "r+") as f:
        f["vert_face_region"] = np.full(140, 2, np.uint8)
        del f["frames/has_face_region"]
        f["frames/has_face_region"] = np.ones(3, bool)
    probs = validate_cache(out)
    assert any("values other than 0 and 1" in p for p in probs)
    assert any("frames/has_face_region has shape (3,), expected (2,)" in p for p in probs)


def test_check_record_face_region():
    r = tiny_record(0, "s", n_verts=70)
    r.vert_face_region = np.ones(69, bool)
    with pytest.raises(SourceError, match=r"tiny\[0\] \(s/f000/c0\): vert_face_region must be \(70,\) bool"):
        check_record(r)
    r.vert_face_region = np.ones(70, np.uint8)
    with pytest.raises(SourceError, match="vert_face_region must be .* uint8"):
        check_record(r)
