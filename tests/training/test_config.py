"""One typed configuration: the dataset's signature is the schema of preview, export and training configs."""
from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from onthefly.commands.preview import load_config
from onthefly.config import dataset_parameters
from onthefly.dataset import OnTheFlyGazeDataset
from onthefly.normalization import NormalizedCamera, get_camera
from onthefly.poses import Gaussian, make_sampler
from onthefly.train.data import MODULE_OWNED, GazeDataModule
from onthefly.train.main import main

ROOT = Path(__file__).resolve().parents[2]


def _yaml_value(v) -> str:
    return "null" if v is None else str(v).lower() if isinstance(v, bool) else repr(v)


def test_every_dataset_argument_is_accepted_by_a_preview_or_export_config(tmp_path):
    """The keys a config may set are the dataset's parameters (cull_backfaces included: the old hand list lacked
    it), read from its signature."""
    params = dataset_parameters()
    assert "cache" not in params and "cull_backfaces" in params
    assert set(params) == set(inspect.signature(OnTheFlyGazeDataset.__init__).parameters) - {"self", "cache"}
    p = tmp_path / "all.yaml"
    p.write_text("".join(f"{n}: {_yaml_value(q.default)}\n" for n, q in params.items()))
    assert load_config(p) == {n: q.default for n, q in params.items()}
    p.write_text("cull_backfaces: true\nviews_per_frame: 2\n")
    assert load_config(p) == {"cull_backfaces": True, "views_per_frame": 2}
    p.write_text("cull_backface: true\n")
    with pytest.raises(ValueError, match=rf"--config {p}: unknown keys \['cull_backface'\]"):
        load_config(p)


def test_a_typo_in_a_sampler_argument_is_an_error_when_the_config_is_read(tmp_path):
    p = tmp_path / "typo.yaml"
    p.write_text("target: {type: gaussian, sdt: 20, on: gaze}\n")
    with pytest.raises(ValueError, match=rf"--config {p}: target: unknown argument 'sdt' for the 'gaussian' "
                                         "sampler; it takes mean, std, on"):
        load_config(p)
    p.write_text("target: {type: gausian}\n")
    with pytest.raises(ValueError, match="unknown sampler 'gausian'"):
        load_config(p)
    p.write_text("appearance: {preset: plain, jiter: {prob: 1}}\n")
    with pytest.raises(ValueError, match=r"appearance: unknown argument 'jiter'"):
        load_config(p)
    with pytest.raises(ValueError, match="unknown argument 'sdt'"):
        make_sampler({"type": "gaussian", "sdt": 20})


def test_yaml_on_key_is_a_key(tmp_path):
    """Configs are YAML 1.2: ``on:`` is the sampler's argument (YAML 1.1 made it the boolean True)."""
    p = tmp_path / "on.yaml"
    p.write_text("target: {type: gaussian, std: 20, on: gaze}\nssaa: 1\n")
    cfg = load_config(p)
    assert cfg["target"] == {"type": "gaussian", "std": 20, "on": "gaze"}
    s = make_sampler(cfg["target"])
    assert isinstance(s, Gaussian) and s.on == "gaze"
    with pytest.raises(ValueError, match="unknown argument True"):
        make_sampler({"type": "gaussian", True: "gaze"})  # no more special case for the YAML 1.1 reading


def test_a_training_config_configures_preview_and_export():
    """configs/demo.yaml (LightningCLI: data/model/trainer) read by `onthefly preview/export --config`."""
    cfg = load_config(ROOT / "configs" / "demo.yaml")
    cam = cfg.pop("camera")
    assert (cam.width, cam.height, cam.focal) == (128, 128, pytest.approx(960.0 * 128 / 224))
    assert cfg == {"batch_size": 64, "epoch_length": 34, "appearance": "plain", "cull_backfaces": True,
                   "val_fraction": 0.25}


def test_training_config_typos_are_refused(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("model: {model: small}\ndata: {cache: c.h5, image_sise: 64}\n")
    with pytest.raises(ValueError, match=r"data: unknown keys \['image_sise'\]; GazeDataModule takes"):
        load_config(p)
    p.write_text("data: {cache: c.h5, target: {type: uniform, pich: [0, 1]}}\n")
    with pytest.raises(ValueError, match="unknown argument 'pich' for the 'uniform' sampler"):
        load_config(p)


def test_data_module_declares_every_dataset_argument():
    """GazeDataModule's typed signature (the LightningCLI schema of `data:`) holds every dataset parameter it does
    not set itself, with the dataset's default."""
    dm = inspect.signature(GazeDataModule.__init__).parameters
    for name, p in dataset_parameters().items():
        if name in MODULE_OWNED:
            continue
        assert name in dm, f"GazeDataModule lacks the dataset argument {name!r}"
        assert dm[name].default == p.default, name
    for name in ("max_head_pose_deg", "views_per_frame", "shared_appearance"):
        assert name in dm


def test_data_module_passes_the_dataset_arguments_through(tiny_cache):
    dm = GazeDataModule(str(tiny_cache), batch_size=8, image_size=32, views_per_frame=2, max_head_pose_deg=30.0,
                        shared_appearance=True, max_rounds=7, cull_backfaces=True, tune_malloc=False,
                        appearance="plain", val_batches=1)
    ds = dm.train_dataset()
    assert (ds.views_per_frame, ds.max_head_pose_deg, ds.shared_appearance, ds.max_rounds) == (2, 30.0, True, 7)
    assert ds.cull_backfaces and not ds.tune_malloc and ds.camera.width == 32
    assert ds.batch_size == 4 and tuple(ds.batch(0)["gaze"].shape) == (4, 2, 2)  # 4 frames x 2 views
    train = next(iter(dm.train_dataloader()))
    assert tuple(train["image"].shape) == (8, 3, 32, 32) and tuple(train["gaze"].shape) == (8, 2)
    assert (train["frame_index"][0::2] == train["frame_index"][1::2]).all()  # the 2 views of a frame


def test_training_cli_refuses_a_sampler_typo_before_training(tiny_cache, tmp_path, capsys):
    p = tmp_path / "typo.yaml"
    p.write_text(f"data:\n  cache: {tiny_cache}\n  target: {{type: gaussian, sdt: 20, on: gaze}}\n")
    assert main(["fit", "--config", str(p), "--trainer.accelerator", "cpu",
                 "--trainer.default_root_dir", str(tmp_path)]) == 2
    assert "data.target: unknown argument 'sdt' for the 'gaussian' sampler" in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()


def test_training_cli_reads_on_as_a_key(tiny_cache, tmp_path):
    from onthefly.train.cli import cli_main

    cli = cli_main(["--data.cache", str(tiny_cache), "--data.target", "{type: gaussian, std: 1e-1, on: gaze}",
                    "--data.image_size", "32", "--trainer.accelerator", "cpu",
                    "--trainer.default_root_dir", str(tmp_path)], run=False)
    assert cli.datamodule.hparams.target == {"type": "gaussian", "std": 0.1, "on": "gaze"}


def test_rescaled_camera():
    cam = get_camera("xgaze224")
    r = cam.rescaled(64)
    assert r == NormalizedCamera(960.0 * 64 / 224, 600.0, 64, 64, "xgaze224@64")
    assert cam.rescaled(224) is cam
    wide = NormalizedCamera(500.0, 600.0, 200, 100, "wide").rescaled(50)
    assert (wide.width, wide.height, wide.focal) == (50, 25, 125.0)
    with pytest.raises(ValueError, match="positive int"):
        cam.rescaled(0)
