"""``onthefly export``: rows equal the on-the-fly batches, the files read like the anchors', kill -9 + --resume,
--verify, disk full / unwritable directories, shards, and the errors for bad input."""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from onthefly.cli import main
from onthefly.export import (
    SCHEMAS,
    ExportError,
    ExportSettings,
    _SubjectFile,
    export,
    make_camera,
    subject_seed,
    verify_export,
    write_index,
)

from .conftest import CONFIG, SEED, SIZE, K, settings

REPO = Path(__file__).resolve().parents[2]
KEYS = SCHEMAS["mpii-nv"].keys


def reference_batches(cache, subject: str, schema: str = "mpii-nv", k: int = K, size: int = SIZE,
                      appearance=None, **over) -> dict[str, torch.Tensor]:
    """One pass of the on-the-fly dataset for ``subject``, flattened to rows, written independently of the
    exporter: batches ``ds.batch(i, 0)`` truncated to the pass, sample-major."""
    from onthefly.dataset import OnTheFlyGazeDataset

    B = over.pop("batch_size", CONFIG["batch_size"])
    ds = OnTheFlyGazeDataset(cache, subjects=[subject], seed=subject_seed(SEED, subject), views_per_frame=k,
                             batch_size=B, camera=make_camera(SCHEMAS[schema], size), device="cpu",
                             appearance=CONFIG["appearance"] if appearance is None else appearance,
                             target=CONFIG["target"], **over)
    K = k
    parts = []
    for i in range(math.ceil(ds.n_frames / B)):
        b = ds.batch(i, 0)
        take = min(B, ds.n_frames - i * B)
        parts.append({k: v[:take].reshape(take * K, *v.shape[2:]) if K > 1 else v[:take]
                      for k, v in b.items() if torch.is_tensor(v)})
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def read_file(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f.keys()}


def subjects_of(out) -> dict[str, str]:
    return json.loads((Path(out) / "index.json").read_text())["subjects"]


def assert_same_export(a, b) -> None:
    """Every file of export ``a`` has the same datasets, bit for bit, as the same file of ``b``."""
    fa = sorted(p.name for p in Path(a).glob("*.h5"))
    fb = sorted(p.name for p in Path(b).glob("*.h5"))
    assert fa == fb and fa
    for name in fa:
        x, y = read_file(Path(a) / name), read_file(Path(b) / name)
        assert sorted(x) == sorted(y) == sorted(KEYS)
        for k in KEYS:
            assert x[k].dtype == y[k].dtype and x[k].shape == y[k].shape, (name, k)
            assert np.array_equal(x[k], y[k]), f"{name}: {k} differs"


# ----------------------------------------------------------------------------------------------- content
def test_rows_equal_on_the_fly_batches(proc_cache, reference_export):
    schema = "mpii-nv"
    out = reference_export
    sch = SCHEMAS[schema]
    subj = subjects_of(out)
    assert len(subj) == 4
    pattern = r"p\d\d\.h5" if schema == "mpii-nv" else r"subject\d{4}\.h5"
    assert all(__import__("re").fullmatch(pattern, f) for f in subj)
    for name, subject in subj.items():
        ref = reference_batches(proc_cache, subject, schema)
        got = read_file(out / name)
        n = len(ref["gaze"])
        assert n == 4 * K and all(len(got[k]) == n for k in KEYS)
        assert sorted(got) == sorted(KEYS)
        for k, dt in sch.dtypes.items():
            assert got[k].dtype == np.dtype(dt), (k, got[k].dtype)
        rgb = torch.from_numpy(got["face_patch"][..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255
        assert got["face_patch"].shape == (n, SIZE, SIZE, 3)
        assert float((rgb - ref["image"]).abs().max()) <= 1 / 255
        mask = torch.from_numpy(got["face_mask"]).float() / 255
        assert float((mask - ref["mask"][:, 0]).abs().max()) <= 1 / 255
        for key, bkey in (("face_gaze", "gaze"), ("face_head_pose", "head_pose"), ("face_mat_norm", "face_mat_norm"),
                          ("landmarks_norm", "landmarks_2d")):
            assert torch.equal(torch.from_numpy(got[key]).float(), ref[bkey]), key  # exact
        # rotation_matrix is MPII-NV's Q = Ry(y_t)Rx(-p_t)·(Ry(y_s)Rx(-p_s))ᵀ (target, source head pose) ...
        from onthefly.geometry import pitchyaw_to_rotation
        Q = pitchyaw_to_rotation(ref["target_pose"].double()) @ \
            pitchyaw_to_rotation(ref["source_head_pose"].double()).transpose(-1, -2)
        assert torch.allclose(torch.from_numpy(got["rotation_matrix"]), Q, atol=1e-12, rtol=0)
        # ... which equals V·R_srcᵀ here (rotation about the face centre: no re-normalization, R_new = I)
        assert torch.allclose(torch.from_numpy(got["rotation_matrix"]).float(), ref["rotation_matrix"], atol=1e-6)
        assert torch.equal(torch.from_numpy(got["frame_index"]), ref["frame_index"])
        assert got["cam_index"].tolist() == [k + sch.cam_base for k in range(K)] * (n // K)
        with h5py.File(out / name) as f:
            a = f.attrs
            assert bool(a["complete"]) and int(a["n_rows"]) == n and int(a["seed"]) == SEED
            assert a["color_order"] == "BGR" and "pitch" in a["gaze_convention"]
            cfg = json.loads(a["config"])
            assert cfg["batch_size"] == 3 and cfg["views_per_frame"] == K and cfg["target"]["std"] == 15
            assert json.loads(a["normalized_camera"])["width"] == SIZE


def test_eth_xgaze_style_plain_h5py_read(proc_cache, reference_export):
    """Read the way the ETH-XGaze loader does: swmr open, face_patch[i] BGR → RGB, face_gaze[i]."""
    name, subject = sorted(subjects_of(reference_export).items())[1]
    ref = reference_batches(proc_cache, subject)
    with h5py.File(reference_export / name, "r", swmr=True) as f:
        for i in (0, 3, len(f["face_gaze"]) - 1):
            img = f["face_patch"][i][..., ::-1]  # BGR -> RGB, (H,W,3) uint8
            x = torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255
            assert float((x - ref["image"][i]).abs().max()) <= 1 / 255
            gaze = f["face_gaze"][i]
            assert gaze.shape == (2,) and np.float32(gaze[0]) == ref["gaze"][i, 0]
            assert f["face_patch"].chunks == (1, SIZE, SIZE, 3) and f["face_patch"].compression == "lzf"


def test_gzip_and_index_contents(proc_cache, tmp_path, reference_export):
    out = tmp_path / "gz"
    rep = export(settings(proc_cache, out, compression="gzip"), progress="none")
    assert len(rep.written) == 4 and rep.rows == 16 * K and rep.index == out / "index.json"
    with h5py.File(out / "p00.h5") as f:
        assert f["face_patch"].compression == "gzip"
    assert_same_export(out, reference_export)  # compression does not change the content
    idx = json.loads((out / "index.json").read_text())
    assert idx["total_rows"] == 16 * K and idx["seed"] == SEED and idx["schema"] == "mpii-nv"
    assert {e["file"] for e in idx["files"]} == {"p00.h5", "p01.h5", "p02.h5", "p03.h5"}
    assert all(e["bytes"] == (out / e["file"]).stat().st_size for e in idx["files"])


# ----------------------------------------------------------------------------------------------- resume
CHILD = Path(__file__).with_name("interrupt_child.py")


def _env():
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))


def _wait_for(path: Path, proc, deadline_s: float = 600.0) -> None:
    """Wait until the child has reached its pause point (``path`` exists): a state, not a time. The deadline only
    turns a hang into a failure."""
    import time

    t_end = time.monotonic() + deadline_s
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the export ended (status {proc.returncode}) before its pause point: "
                                 f"{proc.stderr.read()}")
        if time.monotonic() > t_end:
            proc.kill()
            raise AssertionError(f"no pause point after {deadline_s} s")
        time.sleep(0.02)


def _rows_done(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return int(f.attrs["rows_done"])


@pytest.fixture(scope="module")
def ref_b1(proc_cache, tmp_path_factory):  # noqa: F811
    """The uninterrupted export with one frame per batch (4 batches per subject)."""
    ref = tmp_path_factory.mktemp("ref_b1") / "ref"
    export(settings(proc_cache, ref, config={**CONFIG, "batch_size": 1}), progress="none")
    return ref


#: (signal, where the child stops, what is on disk then: {file: rows_done of its .tmp, or "complete"})
INTERRUPTS = [
    (signal.SIGKILL, "main:p00.h5:finish", {"p00.h5.tmp": 8}),  # the first subject's rows all written, not renamed
    (signal.SIGKILL, "main:p01.h5:create", {"p00.h5": "complete"}),  # ... renamed, the next not started
    (signal.SIGKILL, "main:p01.h5:append@2", {"p00.h5": "complete", "p01.h5.tmp": 2}),  # mid second subject
    (signal.SIGINT, "main:p01.h5:append@4", {"p00.h5": "complete", "p01.h5.tmp": 4}),  # Ctrl-C while rendering
    # Ctrl-C while the writer is busy (the main thread rendering ahead or waiting for it): the queued work is dropped,
    # the batch being written completes
    (signal.SIGINT, "writer:p03.h5:append@4", {"p02.h5": "complete", "p03.h5.tmp": 6}),
]


@pytest.mark.parametrize("sig,where,state", INTERRUPTS, ids=[f"{s.name}-{w}" for s, w, _ in INTERRUPTS])
def test_kill9_then_resume_equals_uninterrupted(proc_cache, tmp_path, ref_b1, sig, where, state, capsys):
    """kill -9 right after the first subject's last batch (before or after its rename) or in the middle of the
    second subject, or Ctrl-C (SIGINT: exit status 130 and the --resume hint) while rendering or while the writer
    is busy; --resume then yields exactly the uninterrupted export. The child stops at a fixed point and waits for
    the signal (tests/export/interrupt_child.py), so the outcome does not depend on the machine's load."""
    cfg = tmp_path / "b1.json"
    cfg.write_text(json.dumps({**CONFIG, "batch_size": 1}))  # one frame per batch: many batches per subject
    out, ready = tmp_path / "killed", tmp_path / "ready"
    args = ["--cache", str(proc_cache), "--out", str(out), "--views-per-frame", str(K), "--seed", str(SEED),
            "--config", str(cfg), "--image-size", str(SIZE), "--device", "cpu", "--progress", "none"]
    proc = subprocess.Popen([sys.executable, str(CHILD), str(ready), where, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    try:
        _wait_for(ready, proc)
        os.kill(proc.pid, sig)
        so, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130 and "rerun the same command with --resume" in err, (proc.returncode, err)
        assert "Traceback" not in err, err
    for name, want in state.items():
        if want == "complete":
            assert (out / name).is_file() and not (out / (name + ".tmp")).exists(), name
        else:
            assert _rows_done(out / name) == want, name
    last = max(int(n[1:3]) for n in state)  # nothing of the subjects after the interrupted one
    assert not [p.name for p in out.glob("p*.h5*") if int(p.name[1:3]) > last]
    assert not (out / "index.json").exists()
    assert verify_export(out)  # an interrupted export never verifies
    capsys.readouterr()
    assert main(["export", *args, "--resume"]) == 0  # the same command line, in this process
    assert "already complete" in capsys.readouterr().out or "p00.h5.tmp" in state
    assert verify_export(out) == []
    assert_same_export(out, ref_b1)


def test_ctrl_c_in_process_is_never_lost(proc_cache, tmp_path, reference_export, monkeypatch):
    """KeyboardInterrupt at the main thread's interruptible points (rendering, queueing a batch, waiting for the
    writer, writing the index) always leaves export(): the writer thread is stopped, no file is left open, and
    --resume completes the export exactly."""
    import threading

    from onthefly import export as E
    from onthefly.dataset import OnTheFlyGazeDataset

    def at(obj, name, n):
        """Raise KeyboardInterrupt at the n-th call of obj.name."""
        orig, calls = getattr(obj, name), {"n": 0}

        def f(*a, **kw):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return orig(*a, **kw)

        return f

    points = [(OnTheFlyGazeDataset, "batch", 4), (E._AsyncWriter, "submit", 5), (E._AsyncWriter, "close", 1),
              (E, "write_index", 1)]
    for i, (obj, name, n) in enumerate(points):
        out = tmp_path / f"int{i}"
        with monkeypatch.context() as m:
            m.setattr(obj, name, at(obj, name, n))
            with pytest.raises(KeyboardInterrupt):
                export(settings(proc_cache, out), progress="none")
        assert not [t for t in threading.enumerate() if t.name == "onthefly-export-writer"], name
        assert not (out / "index.json").exists(), name
        for p in out.glob("*.h5*"):  # closed: h5py can open it for writing again (HDF5 locks open files)
            h5py.File(p, "r+").close()
        export(settings(proc_cache, out), resume=True, progress="none")
        assert verify_export(out) == [], name
        assert_same_export(out, reference_export)


def test_resume_after_every_row_but_before_the_rename(proc_cache, tmp_path, reference_export, monkeypatch):
    """Interrupted after a subject's last (short) batch was written but before its file was completed: --resume
    completes the file without rendering any batch again (it re-rendered the short batch and failed with "rows out
    of order": found by scripts/repeat_interrupt_tests.py, 5 of 50 rounds under load)."""
    from onthefly.dataset import OnTheFlyGazeDataset

    out = tmp_path / "before-rename"
    orig = _SubjectFile._finish

    def finish(self):
        if self.final.name == "p00.h5":
            raise KeyboardInterrupt
        orig(self)

    with monkeypatch.context() as m:
        m.setattr(_SubjectFile, "_finish", finish)
        with pytest.raises(KeyboardInterrupt):
            export(settings(proc_cache, out), progress="none")
    with h5py.File(out / "p00.h5.tmp", "r") as f:
        assert int(f.attrs["rows_done"]) == int(f.attrs["n_rows"]) and not bool(f.attrs["complete"])
        subject = str(f.attrs["subject"])
    rendered = []
    orig_batch = OnTheFlyGazeDataset.batch

    def batch(self, *a, **kw):
        rendered.append(self.subjects[0])
        return orig_batch(self, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(OnTheFlyGazeDataset, "batch", batch)
        export(settings(proc_cache, out), resume=True, progress="none")
    assert subject not in rendered, rendered  # p00 only completed and renamed
    assert verify_export(out) == []
    assert_same_export(out, reference_export)


class _Crash(Exception):
    pass


def _crash_after(monkeypatch, n_appends: int):
    """Make the writer die after ``n_appends`` batches (the .tmp keeps what was flushed)."""
    calls = {"n": 0}
    orig = _SubjectFile._append

    def append(self, start, rows):
        if calls["n"] >= n_appends:
            raise _Crash(f"simulated crash writing {self.tmp.name}")
        calls["n"] += 1
        orig(self, start, rows)

    monkeypatch.setattr(_SubjectFile, "_append", append)


def test_resume_continues_partial_and_redoes_damaged(proc_cache, tmp_path, reference_export, monkeypatch):
    out = tmp_path / "partial"
    with monkeypatch.context() as m:
        _crash_after(m, 3)  # p00 complete (2 batches), p01 one batch in
        with pytest.raises(_Crash):
            export(settings(proc_cache, out), progress="none")
    assert (out / "p00.h5").is_file() and (out / "p01.h5.tmp").is_file() and not (out / "p01.h5").exists()
    with h5py.File(out / "p01.h5.tmp") as f:
        assert int(f.attrs["rows_done"]) == 3 * K and not bool(f.attrs["complete"])
    with pytest.raises(ExportError, match=r"p00\.h5: already exists.*--resume"):
        export(settings(proc_cache, out), progress="none")
    rep = export(settings(proc_cache, out), resume=True, progress="none")
    assert rep.skipped == ["p00.h5"] and rep.written == ["p01.h5", "p02.h5", "p03.h5"]
    assert rep.rows == 16 * K - 4 * K - 3 * K  # only the missing rows were rendered
    assert_same_export(out, reference_export)
    assert verify_export(out) == []

    # a damaged .tmp (e.g. kill -9 during a metadata write) is redone, not trusted
    out2 = tmp_path / "damaged"
    with monkeypatch.context() as m:
        _crash_after(m, 1)
        with pytest.raises(_Crash):
            export(settings(proc_cache, out2), progress="none")
    tmp = out2 / "p00.h5.tmp"
    tmp.write_bytes(tmp.read_bytes()[: tmp.stat().st_size // 3])
    export(settings(proc_cache, out2), resume=True, progress="none")
    assert_same_export(out2, reference_export)


def test_resume_with_another_config_is_refused(proc_cache, tmp_path, monkeypatch):
    out = tmp_path / "e"
    with monkeypatch.context() as m:
        _crash_after(m, 1)
        with pytest.raises(_Crash):
            export(settings(proc_cache, out), progress="none")
    with pytest.raises(ExportError, match=r"p00\.h5\.tmp: a partial export with another configuration.*seed"):
        export(settings(proc_cache, out, seed=SEED + 1), resume=True, progress="none")


# ----------------------------------------------------------------------------------------------- verify
def _copy(src, dst) -> Path:
    shutil.copytree(src, dst)
    return Path(dst)


def test_verify_ok_and_cli(reference_export, capsys):
    assert verify_export(reference_export) == []
    assert main(["export", "--verify", str(reference_export)]) == 0
    assert "OK" in capsys.readouterr().out


def test_verify_fails_on_truncated_partial_tmp_nan_and_index(reference_export, tmp_path, capsys):
    d = _copy(reference_export, tmp_path / "trunc")
    p = d / "p01.h5"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    assert main(["export", "--verify", str(d)]) == 1
    text = capsys.readouterr().out
    assert str(p) in text

    d = _copy(reference_export, tmp_path / "tmpfile")
    (d / "p02.h5").rename(d / "p02.h5.tmp")
    probs = verify_export(d)
    assert any("p02.h5.tmp: partial" in s for s in probs) and any("p02.h5" in s and "missing" in s for s in probs)

    d = _copy(reference_export, tmp_path / "incomplete")
    with h5py.File(d / "p03.h5", "r+") as f:
        f.attrs["complete"] = False
    assert any("p03.h5: not marked complete" in s for s in verify_export(d))

    d = _copy(reference_export, tmp_path / "nan")
    with h5py.File(d / "p00.h5", "r+") as f:
        f["face_gaze"][2, 1] = np.nan
    probs = verify_export(d)
    assert any("p00.h5: 'face_gaze' has NaN" in s for s in probs)
    assert any("p00.h5: sha256 differs" in s or "p00.h5: size" in s for s in probs)

    d = _copy(reference_export, tmp_path / "short")
    with h5py.File(d / "p00.h5", "r+") as f:
        f["cam_index"].resize(3, 0)
    assert any("p00.h5: 'cam_index' has shape" in s for s in verify_export(d))

    d = _copy(reference_export, tmp_path / "noindex")
    (d / "index.json").unlink()
    assert any("index.json: missing" in s for s in verify_export(d))
    write_index(d)
    assert verify_export(d) == []
    assert main(["export", "--index", str(d)]) == 0


# ----------------------------------------------------------------------------------------------- failures
def test_disk_full_is_a_clear_error_and_earlier_subjects_stay(proc_cache, tmp_path, reference_export, monkeypatch):
    out = tmp_path / "full"
    orig = h5py.Dataset.__setitem__

    def setitem(self, key, value):
        if Path(self.file.filename).name == "p02.h5.tmp":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return orig(self, key, value)

    with monkeypatch.context() as m:
        m.setattr(h5py.Dataset, "__setitem__", setitem)
        with pytest.raises(ExportError, match=r"p02\.h5\.tmp: cannot write \(No space left on device\)"):
            export(settings(proc_cache, out), progress="none")
    for name in ("p00.h5", "p01.h5"):
        a, b = read_file(out / name), read_file(reference_export / name)
        assert all(np.array_equal(a[k], b[k]) for k in KEYS)
    assert not (out / "p02.h5").exists() and not (out / "p03.h5").exists()
    export(settings(proc_cache, out), resume=True, progress="none")  # space freed: finish the job
    assert_same_export(out, reference_export)


def test_unwritable_output_is_a_clear_error(proc_cache, tmp_path, monkeypatch, capsys):
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(ExportError, match=r"a_file: exists and is not a directory"):
        export(settings(proc_cache, f), progress="none")
    with pytest.raises(ExportError, match=r"cannot create the directory"):
        export(settings(proc_cache, f / "sub"), progress="none")
    ro = tmp_path / "readonly"
    ro.mkdir()
    orig = Path.write_bytes

    def write_bytes(self, data):
        if self.parent == ro:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return orig(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    assert main(["export", "--cache", str(proc_cache), "--out", str(ro), "--views-per-frame", "1", "--seed", "0",
                 "--progress", "none"]) == 1
    assert f"--out {ro}: directory is not writable (Permission denied)" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- shards
def test_shards_are_disjoint_and_complete(proc_cache, tmp_path, reference_export, monkeypatch):
    out = tmp_path / "sharded"
    r0 = export(settings(proc_cache, out), shard=(0, 2), progress="none")
    assert r0.index is None and not (out / "index.json").exists()
    with pytest.raises(ExportError, match=r"2 file\(s\) of the export missing"):
        write_index(out)
    monkeypatch.setenv("RANK", "1")  # torchrun-style: the rank picks the shard
    monkeypatch.setenv("WORLD_SIZE", "2")
    r1 = export(settings(proc_cache, out), progress="none")
    assert r1.shard == (1, 2)
    assert set(r0.written).isdisjoint(r1.written)
    assert sorted(r0.written + r1.written) == ["p00.h5", "p01.h5", "p02.h5", "p03.h5"]
    assert r1.index == out / "index.json"  # the last shard writes the index
    assert_same_export(out, reference_export)
    assert verify_export(out) == []


# ----------------------------------------------------------------------------------------------- bad input
def test_bad_inputs(proc_cache, tmp_path, config_file, capsys):
    base = ["export", "--cache", str(proc_cache), "--out", str(tmp_path / "o"), "--progress", "none"]
    assert main(base + ["--seed", "0"]) == 1
    assert "missing --views-per-frame" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: 2\nbackground: red\n")
    assert main(base + ["--seed", "0", "--views-per-frame", "1", "--config", str(bad)]) == 1
    assert "unknown keys ['background']" in capsys.readouterr().err
    assert main(base + ["--seed", "0", "--views-per-frame", "1", "--shard", "2/2"]) == 1
    assert "--shard: expected i/n" in capsys.readouterr().err
    assert main(["export", "--cache", str(tmp_path / "nope.h5"), "--out", str(tmp_path / "o"), "--seed", "0",
                 "--views-per-frame", "1"]) == 1
    assert "--cache: file not found" in capsys.readouterr().err
    assert main(base + ["--seed", "0", "--views-per-frame", "0"]) == 1
    assert "--views-per-frame: expected an int >= 1" in capsys.readouterr().err
    cam = tmp_path / "cam.yaml"
    cam.write_text("camera: xgaze448\n")
    assert main(base + ["--seed", "0", "--views-per-frame", "1", "--config", str(cam), "--image-size", "224"]) == 1
    assert "contradicts the config's camera" in capsys.readouterr().err
    with pytest.raises(ExportError, match="--schema"):
        ExportSettings(proc_cache, tmp_path, 0, 1, schema="gazecapture")
    assert main(["export", "--verify", str(tmp_path / "nothing")]) == 1


def test_cli_end_to_end_with_config_file(proc_cache, tmp_path, config_file, reference_export, capsys):
    out = tmp_path / "cli"
    rc = main(["export", "--cache", str(proc_cache), "--out", str(out), "--views-per-frame", str(K), "--seed",
               str(SEED), "--config", str(config_file), "--image-size", str(SIZE), "--device", "cpu",
               "--progress", "none"])
    assert rc == 0, capsys.readouterr().err
    assert "wrote 4 file(s) (32 rows)" in capsys.readouterr().out
    assert_same_export(out, reference_export)
