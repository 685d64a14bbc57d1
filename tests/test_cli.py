"""The command line: every subcommand is listed and has --help; errors are reported, not raised."""
import subprocess
import sys

import pytest

from onthefly.cli import _COMMANDS, build_parser, main

NAMES = [c[0] for c in _COMMANDS]


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for name in NAMES:
        assert name in text


@pytest.mark.parametrize("name", NAMES)
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: onthefly " + name in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_info_runs(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "render backends" in out


def test_console_entry_point_module():
    res = subprocess.run([sys.executable, "-m", "onthefly", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("onthefly ")


def test_bad_argument_is_a_clean_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--subjects", "0"]) == 1
    assert "error" in capsys.readouterr().err


def test_parser_builds():
    assert build_parser().prog == "onthefly"


def test_demo_end_to_end_small(tmp_path, capsys):
    """The README's main job at toy size: cache, streamed batches, preview, distributions and labels."""
    import json

    import cv2

    rc = main(["demo", "--out", str(tmp_path), "--subjects", "2", "--views", "2", "--batches", "2",
               "--batch-size", "4"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "[1/3] mesh cache: 4 source frames" in out and "samples/s" in out
    grid = cv2.imread(str(tmp_path / "preview.png"))
    assert grid is not None and grid.shape[0] >= 224 and grid.std() > 10
    assert cv2.imread(str(tmp_path / "distributions.png")) is not None
    labels = json.loads((tmp_path / "labels.json").read_text())
    assert len(labels["samples"]) == 4 and labels["camera"] == "xgaze224"
