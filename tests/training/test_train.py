"""The training package: models, the Lightning module, the data module, checkpoints and configuration errors."""
from __future__ import annotations

import json

import cv2
import lightning as L
import pytest
import torch

from onthefly.train.data import GazeDataModule, H5GazeDataset, make_camera
from onthefly.train.models import build_model
from onthefly.train.module import GazeRegressor

from .conftest import write_xgaze_h5

TINY = dict(batch_size=8, image_size=32, epoch_length=3, val_batches=1, val_fraction=0.25)


def _trainer(tmp_path=None, **kw):
    base = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                enable_model_summary=False)
    base.update(kw)
    return L.Trainer(default_root_dir=tmp_path, **base)


@pytest.mark.parametrize("name,size", [("small", 32), ("resnet18", 32), ("resnet50", 32)])
def test_models_output_pitch_yaw(name, size):
    m = build_model(name)
    assert m(torch.rand(2, 3, size, size)).shape == (2, 2)


def test_small_cnn_pools_large_inputs():
    m = build_model("small", width=8, input_size=32)
    assert m(torch.rand(2, 3, 128, 128)).shape == (2, 2)


def test_unknown_or_missing_backbone_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown"):
        build_model("vgg")
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="timm is not installed"):
            build_model("timm:resnet18")


def test_datamodule_batches_keys_and_shapes(tiny_cache):
    dm = GazeDataModule(str(tiny_cache), **TINY)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 3
    b = batches[0]
    assert b["image"].shape == (8, 3, 32, 32) and b["image"].dtype == torch.float32
    assert b["gaze"].shape == (8, 2) and b["head_pose"].shape == (8, 2) and b["subject_index"].shape == (8,)
    assert 0 <= float(b["image"].min()) and float(b["image"].max()) <= 1
    val = list(dm.val_dataloader())
    assert len(val) == 1 and val[0]["image"].shape == (8, 3, 32, 32)
    # the validation set is fixed: the same images on a second build
    dm2 = GazeDataModule(str(tiny_cache), **TINY)
    assert torch.equal(dm2.val_batches()[0]["image"], val[0]["image"])
    # held-out subjects are disjoint from the training subjects
    train_subj = set(dm.train_dataset().subjects)
    val_subj = set(dm._dataset("val", 0, 1, "cpu").subjects)
    assert train_subj and val_subj and not train_subj & val_subj


def test_make_camera_rescales_the_preset():
    cam = make_camera("xgaze224", 56)
    assert (cam.width, cam.height) == (56, 56) and cam.focal == pytest.approx(960 * 56 / 224)


def test_training_steps_reduce_the_loss_on_a_fixed_batch(tiny_cache):
    torch.manual_seed(0)
    dm = GazeDataModule(str(tiny_cache), **TINY)
    batch = dm.val_batches()[0]
    model = GazeRegressor("small", {"width": 8}, lr=3e-3, scheduler="none")
    opt = model.configure_optimizers()
    model.train()
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.l1_loss(model(batch["image"]), batch["gaze"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_fit_logs_angular_error_and_checkpoint_keeps_seed_and_epoch(tiny_cache, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    dm = GazeDataModule(str(tiny_cache), seed=7, **TINY)
    model = GazeRegressor("small", {"width": 8}, lr=1e-3)
    ck = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    tr = _trainer(tmp_path, max_epochs=2, enable_checkpointing=True, callbacks=[ck])
    tr.fit(model, dm)
    assert "val/angular_error" in tr.callback_metrics and "train/loss" in tr.callback_metrics
    assert 0 <= float(tr.callback_metrics["val/angular_error"]) < 180
    state = torch.load(tmp_path / "ck" / "last.ckpt", weights_only=False)
    saved = state["GazeDataModule"]
    assert saved["seed"] == 7 and saved["epoch"] == 1
    # resume with a different configured seed: the checkpoint's generator state wins, training continues at epoch 2
    dm2 = GazeDataModule(str(tiny_cache), seed=99, **TINY)
    seen = []

    class Spy(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(int(batch["batch_index"][0]))

    tr2 = _trainer(tmp_path, max_epochs=3, callbacks=[Spy()])
    with pytest.warns(UserWarning, match="seed"):
        tr2.fit(GazeRegressor("small", {"width": 8}), dm2, ckpt_path=str(tmp_path / "ck" / "last.ckpt"))
    assert dm2.seed == 7 and dm2.epoch == 2 and tr2.current_epoch == 3
    # the resumed stream is the stream of an uninterrupted run (seed 7, epoch 2)
    ref = dm.train_dataset()
    got = dm2.train_dataset()
    assert torch.equal(ref.batch(0, 2)["image"], got.batch(0, 2)["image"])


def test_missing_cache_is_a_clear_error_before_training(tmp_path):
    with pytest.raises(ValueError, match="mesh cache not found"):
        GazeDataModule(str(tmp_path / "nope.h5"))
    from onthefly.train.main import main

    assert main(["fit", "--data.cache", str(tmp_path / "nope.h5"), "--trainer.accelerator", "cpu"]) == 2


def test_h5_errors_before_training(tiny_cache, tmp_path, xgaze_h5):
    with pytest.raises(ValueError, match="h5 file not found"):
        GazeDataModule(str(tiny_cache), val_h5=[str(tmp_path / "missing.h5")], **TINY)
    bad = write_xgaze_h5(tmp_path / "nogaze.h5", gaze=False)
    with pytest.raises(ValueError, match="face_gaze"):
        GazeDataModule(str(tiny_cache), val_h5=[str(bad)], **TINY)
    with pytest.raises(ValueError, match="32x32 .* 64x64"):
        GazeDataModule(str(tiny_cache), val_h5=[str(xgaze_h5)], **{**TINY, "image_size": 64})


def test_h5_loader_reads_bgr_as_rgb(xgaze_h5):
    import h5py

    ds = H5GazeDataset([xgaze_h5])
    item = ds[3]
    with h5py.File(xgaze_h5) as f:
        bgr = f["face_patch"][3]
        gaze = f["face_gaze"][3]
    assert item["image"].shape == (3, 32, 32)
    assert torch.allclose(item["image"][0] * 255, torch.from_numpy(bgr[..., 2]).float())
    assert torch.allclose(item["gaze"], torch.from_numpy(gaze))
    b = ds.take([5, 1, 5])
    assert torch.equal(b["gaze"][0], b["gaze"][2]) and torch.equal(b["gaze"][1], ds[1]["gaze"])


def test_real_synthetic_mix_and_h5_validation(tiny_cache, xgaze_h5):
    dm = GazeDataModule(str(tiny_cache), train_h5=[str(xgaze_h5)], real_ratio=0.25, val_h5=[str(xgaze_h5)], **TINY)
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["image"].shape == (8, 3, 32, 32)
    assert (b["subject_index"] == -1).sum() == 2  # 25 % real
    loaders = dm.val_dataloader()
    assert len(loaders) == 2  # synthetic held-out + real h5
    model = GazeRegressor("small", {"width": 8})
    _trainer(max_epochs=1, limit_train_batches=1).fit(model, dm)
    assert "val/angular_error/dataloader_idx_1" in _trainer_metrics(model)


def _trainer_metrics(model):
    return model.trainer.callback_metrics


@pytest.mark.parametrize("logger", ["csv", "tensorboard"])
def test_cli_fit_runs_from_a_config_and_logs_the_metrics(tiny_cache, tmp_path, logger):
    """configs/demo.yaml through the CLI, with its CSVLogger or with a TensorBoardLogger instead: the held-out
    angular error of the epoch is in the logs (metrics.csv, or the TensorBoard event file read back)."""
    from onthefly.train.main import main

    log = (["--trainer.logger.init_args.save_dir", str(tmp_path)] if logger == "csv" else
           ["--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
            "--trainer.logger.save_dir", str(tmp_path), "--trainer.logger.name", "logs"])
    rc = main(["fit", "--config", "configs/demo.yaml", "--data.cache", str(tiny_cache),
               "--data.batch_size", "8", "--data.image_size", "32", "--data.epoch_length", "2",
               "--data.val_batches", "1", "--model.model_args", "{width: 8}", "--trainer.max_epochs", "1",
               "--trainer.default_root_dir", str(tmp_path), *log,
               "--trainer.enable_progress_bar", "false", "--trainer.callbacks", "[]"])
    assert rc == 0
    if logger == "csv":
        import csv

        (f,) = tmp_path.rglob("metrics.csv")
        vals = [float(r["val/angular_error"]) for r in csv.DictReader(f.open()) if r.get("val/angular_error")]
    else:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        (f,) = tmp_path.rglob("events.out.tfevents.*")
        acc = EventAccumulator(str(f))
        acc.Reload()
        assert "val/angular_error" in acc.Tags()["scalars"], acc.Tags()["scalars"]
        vals = [e.value for e in acc.Scalars("val/angular_error")]
        assert any(t.startswith("train/loss") for t in acc.Tags()["scalars"])
    assert len(vals) == 1 and 0.0 < vals[0] < 180.0  # one epoch, a mean angle in degrees


def test_ddp_two_cpu_processes_see_disjoint_samples(tiny_cache, tmp_path):
    """A 2-process CPU DDP run (gloo) through the CLI; AssertDisjointShards gathers what each rank trained on."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "onthefly.train", "fit", "--config", "configs/demo.yaml", "--data.cache", str(tiny_cache),
           "--data.batch_size", "4", "--data.image_size", "32", "--data.epoch_length", "4", "--data.val_batches", "1",
           "--model.model_args", "{width: 8}", "--trainer.max_epochs", "1", "--trainer.strategy", "ddp",
           "--trainer.devices", "2", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
           "--trainer.default_root_dir", str(tmp_path),
           "--trainer.callbacks", "[{class_path: onthefly.train.callbacks.AssertDisjointShards}]"]
    env = {**os.environ, "PYTHONPATH": str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=1800)  # a hang guard only
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 ranks, batches per rank [2, 2], disjoint" in r.stdout + r.stderr


def test_mirror_flips_the_image_and_negates_yaw_exactly(tiny_cache):
    from onthefly.train.data import mirror

    dm = GazeDataModule(str(tiny_cache), **TINY)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 3
    a = next(iter(loader))
    b = mirror(a)
    assert torch.equal(b["image"], a["image"].flip(-1))
    for k in ("gaze", "head_pose"):
        assert torch.equal(b[k][:, 0], a[k][:, 0]) and torch.equal(b[k][:, 1], -a[k][:, 1])
    with pytest.raises(TypeError, match="mirror_repeat"):  # replay (repeat + mirror) replaced it
        GazeDataModule(str(tiny_cache), mirror_repeat=True, **TINY)



def test_replay_draws_mirrored_samples_from_the_last_rendered_batches(tiny_cache):
    dm = GazeDataModule(str(tiny_cache), repeat=3, pool=2, mirror=True, **TINY)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 9  # 3 rendered batches x 3 steps
    steps = list(loader)
    assert len(steps) == 9
    rendered = list(dm.train_dataset())  # the same seed and epoch: the batches the replay drew from
    seen_flip = seen_plain = 0
    for s, step in enumerate(steps):
        r = s // 3
        pool = rendered[max(0, r - 1):r + 1]
        imgs = torch.cat([b["image"] for b in pool])
        gaze = torch.cat([b["gaze"] for b in pool])
        for img, g in zip(step["image"], step["gaze"]):
            plain = (imgs == img).flatten(1).all(1)
            flipped = (imgs.flip(-1) == img).flatten(1).all(1)
            assert bool(plain.any() or flipped.any()), f"step {s}: a sample that is not in the last 2 batches"
            if plain.any():
                seen_plain += 1
                assert torch.equal(gaze[plain.nonzero()[0, 0]], g)
            else:  # mirrored: pitch kept, yaw negated
                seen_flip += 1
                src = gaze[flipped.nonzero()[0, 0]]
                assert torch.equal(src[0], g[0]) and torch.equal(-src[1], g[1])
    assert seen_flip > 0 and seen_plain > 0
    # a pure function of the seed and epoch
    again = list(dm.train_dataloader())
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(steps, again))


def test_replay_options_are_checked():
    with pytest.raises(ValueError, match="repeat"):
        GazeDataModule(None, repeat=0, real_ratio=1.0, train_h5=None)


def test_ema_and_mirror_tta_drive_evaluation():
    torch.manual_seed(0)
    m = GazeRegressor(model="small", model_args={"width": 8}, ema_decay=0.5, tta_mirror=True)
    x = torch.rand(4, 3, 32, 32)
    # eval uses the EMA copy: it only moves after an update
    with torch.no_grad():
        for p in m.net.parameters():
            p.add_(0.1)
    m.eval()
    before = m(x)
    m.on_train_batch_end(None, None, 0)
    after = m(x)
    assert not torch.allclose(before, after)
    # mirror averaging: the prediction of the mirror image is the prediction with yaw negated
    px, pm = m(x), m(x.flip(-1))
    assert torch.allclose(px[:, 0], pm[:, 0], atol=1e-6) and torch.allclose(px[:, 1], -pm[:, 1], atol=1e-6)
    m.train()
    assert torch.equal(m(x), m.net(x))
    # the average is not trained (so DDP does not wait for its gradients) and not in the optimizer
    assert not any(p.requires_grad for p in m.ema.parameters())
    opt = m.configure_optimizers()["optimizer"]  # the default StepLR recipe returns a dict
    assert sum(p.numel() for g in opt.param_groups for p in g["params"]) == sum(p.numel() for p in m.net.parameters())
    with pytest.raises(ValueError, match="ema_decay"):
        GazeRegressor(ema_decay=1.0)


def test_train_demo_end_to_end_reports_error_curve_and_pictures(tmp_path, capsys):
    from onthefly.train.demo import main

    out = tmp_path / "demo"
    assert main(["--out", str(out), "--subjects", "4", "--views", "2", "--max-epochs", "2", "--epoch-length", "2",
                 "--data.image_size", "32", "--data.val_batches", "1", "--data.batch_size", "8",
                 "--trainer.enable_progress_bar", "false", "--trainer.log_every_n_steps", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("held-out angular error: ") and lines[-1].endswith(" deg")
    err = float(lines[-1].split(": ")[1].split()[0])
    assert 0 < err < 180
    curve = json.loads((out / "learning_curve.json").read_text())
    assert [r["epoch"] for r in curve] == [0, 1] and all(r["val"] > 0 for r in curve)
    for png in ("predictions.png", "learning_curve.png"):
        img = cv2.imread(str(out / png))
        assert img is not None and img.std() > 5, png
    assert (out / "checkpoints" / "last.ckpt").is_file()
    # a rerun into the same folder overwrites the checkpoints: last.ckpt (what the docs resume and test from) is
    # this run's, never a stale one beside a last-v1.ckpt
    before = (out / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    assert main(["--out", str(out), "--subjects", "4", "--views", "2", "--max-epochs", "1", "--epoch-length", "2",
                 "--data.image_size", "32", "--data.val_batches", "1", "--data.batch_size", "8",
                 "--trainer.enable_progress_bar", "false"]) == 0
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert not [n for n in names if "-v" in n], names
    assert (out / "checkpoints" / "last.ckpt").stat().st_mtime_ns > before


def test_demo_result_depends_on_steps_not_on_speed(tmp_path, capsys, monkeypatch):
    """The demo stops after its step budget, never on a clock: a machine twice as slow (every training batch
    arrives late) trains the same steps and prints the same held-out error, to the last digit; a wall-clock cap
    is refused."""
    import time

    import onthefly.train.data
    from onthefly.train.demo import DEMO_THREADS, main

    tiny = ["--subjects", "4", "--views", "2", "--max-epochs", "2", "--epoch-length", "2", "--data.image_size", "32",
            "--data.val_batches", "1", "--data.batch_size", "8", "--trainer.enable_progress_bar", "false"]
    threads = torch.get_num_threads()
    assert main(["--out", str(tmp_path / "quiet"), *tiny]) == 0
    assert torch.get_num_threads() == threads  # restored after the run
    quiet = capsys.readouterr().out.strip().splitlines()
    orig = onthefly.train.data.TrainStream.__iter__

    def slow(self):
        for b in orig(self):
            time.sleep(0.05)  # a loaded machine: each batch arrives late
            yield b

    monkeypatch.setattr(onthefly.train.data.TrainStream, "__iter__", slow)
    assert main(["--out", str(tmp_path / "busy"), *tiny]) == 0
    busy = capsys.readouterr().out.strip().splitlines()
    assert quiet[-1] == busy[-1] and quiet[-1].startswith("held-out angular error")
    steps = [ln for ln in quiet if ln.startswith("[2/4]")][0].split(" steps")[0]
    assert steps == [ln for ln in busy if ln.startswith("[2/4]")][0].split(" steps")[0] == "[2/4] trained 32"
    assert f"({DEMO_THREADS} torch threads)" in "\n".join(busy)
    a, b = (json.loads((tmp_path / d / "learning_curve.json").read_text()) for d in ("quiet", "busy"))
    assert a == b
    assert main(["--out", str(tmp_path / "capped"), *tiny, "--trainer.max_time", "00:00:10:00"]) == 2
    assert "budgeted in optimizer steps" in capsys.readouterr().err


def test_channels_last_gives_the_same_predictions():
    torch.manual_seed(0)
    a = GazeRegressor(model="small", model_args={"width": 8})
    b = GazeRegressor(model="small", model_args={"width": 8}, channels_last=True)
    b.net.load_state_dict(a.net.state_dict())
    x = torch.rand(3, 3, 32, 32)
    a.eval(), b.eval()
    assert next(b.net.parameters()).ndim == 4 and next(b.net.parameters()).is_contiguous(
        memory_format=torch.channels_last)
    assert torch.allclose(a(x), b(x), atol=1e-5)


def test_make_camera_accepts_a_dict_of_fields():
    cam = make_camera({"focal": 1280, "distance": 600, "width": 224, "height": 224, "name": "tight"}, 112)
    assert (cam.focal, cam.distance, cam.width, cam.height) == (640.0, 600.0, 112, 112)
    with pytest.raises(ValueError, match="focal, distance, width, height"):
        make_camera({"focal": 1280, "distance": 600})


def test_demo_rebuilds_a_cache_of_another_head_generator(tmp_path):
    """A demo cache built before the procedural heads changed (another onthefly version) holds other faces: the demo
    must not train on it, though its frame counts match."""
    import h5py

    from onthefly.cache import build_cache
    from onthefly.sources.procedural import ProceduralSource
    from onthefly.synthetic import generator_fingerprint
    from onthefly.train.demo import _cache_matches

    path = tmp_path / "cache.h5"
    build_cache(ProceduralSource(count=4, seed=0, subjects=2), path)
    assert _cache_matches(path, 2, 2)
    assert not _cache_matches(path, 2, 3)
    with h5py.File(path, "r+") as f:
        assert f.attrs["procedural_generator"] == generator_fingerprint()
        f.attrs["procedural_generator"] = "0123456789abcdef"      # the heads of another generator
    assert not _cache_matches(path, 2, 2)
    with h5py.File(path, "r+") as f:
        del f.attrs["procedural_generator"]                       # a cache from before the fingerprint
    assert not _cache_matches(path, 2, 2)
