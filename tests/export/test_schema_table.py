"""The schemas are one field table each: the writer, ``--verify`` and ``H5GazeDataset`` all follow it, so a new
field is one row."""
from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch

import onthefly.export as ex
import onthefly.h5 as h5
from onthefly.cli import main
from onthefly.dataset import BATCH_KEYS
from onthefly.export import export, verify_export
from onthefly.h5 import Field, H5GazeDataset

from .conftest import SIZE, K, settings
from .test_export import reference_batches, subjects_of


def test_every_default_encoded_field_names_a_batch_key():
    for schema in h5.SCHEMAS.values():
        assert len(set(schema.keys)) == len(schema.keys), schema.name
        for f in schema.fields:
            if schema.writable and f.encode is None:
                assert f.item in BATCH_KEYS, (schema.name, f.key, f.item)


def test_adding_a_field_is_one_row(proc_cache, tmp_path, monkeypatch):
    """A schema with one more row (the batch's gaze_vector) is written, verified and read back without any other
    change."""
    base = h5.SCHEMAS["mpii-nv"]
    extra = dataclasses.replace(base, name="mpii-nv-plus", fields=base.fields + (
        Field("gaze_vector", "gaze_vector", (3,), "float32", "unit gaze vector in the normalized camera"),))
    monkeypatch.setitem(h5.SCHEMAS, "mpii-nv-plus", extra)
    monkeypatch.setitem(ex.SCHEMAS, "mpii-nv-plus", extra)
    out = tmp_path / "plus"
    export(settings(proc_cache, out, schema="mpii-nv-plus"), progress="none")
    assert verify_export(out) == []
    name, subject = sorted(subjects_of(out).items())[0]
    ref = reference_batches(proc_cache, subject)
    with h5py.File(out / name) as f:
        assert f["gaze_vector"].shape == (4 * K, 3) and f["gaze_vector"].dtype == np.float32
    got = H5GazeDataset([out / name]).take(range(4 * K))
    assert torch.equal(got["gaze_vector"], ref["gaze_vector"])
    with h5py.File(out / name, "r+") as f:  # --verify checks the new row's shape like any other
        f["gaze_vector"].resize(3, 0)
    assert any("'gaze_vector' has shape" in p for p in verify_export(out))


def test_cli_schema_and_layout_errors(proc_cache, tmp_path, capsys):
    base = ["export", "--cache", str(proc_cache), "--out", str(tmp_path / "o"), "--seed", "0", "--progress", "none",
            "--image-size", str(SIZE)]
    assert main(base + ["--views-per-frame", "2", "--schema", "rot-mvgaze"]) == 1
    assert "--schema rot-mvgaze: needs --views-per-frame 18" in capsys.readouterr().err
    assert main(base + ["--views-per-frame", "1", "--test-subjects", "proc0000"]) == 1
    assert "--test-subjects: only with --layout eth-xgaze" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--views-per-frame", "1", "--layout", "imagenet"])
