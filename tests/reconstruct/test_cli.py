"""``onthefly reconstruct --source images``: the command end to end."""
import json

from onthefly.cache import MeshCache, validate_cache
from onthefly.cli import main
from onthefly.reconstruct.groundtruth import write_manifest

from .helpers import frames


def test_reconstruct_images_command(tmp_path, capsys):
    manifest = write_manifest(list(frames()), tmp_path / "in")
    lines = manifest.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["frame"] = "off"
    bad["landmarks"][30] = [-10.0, 5.0]
    manifest.write_text("\n".join(lines + [json.dumps(bad)]) + "\n")
    out = tmp_path / "c.h5"
    assert main(["reconstruct", "--source", "images", "--input", str(manifest), "--out", str(out), "--skip-bad",
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "2 frames from source images" in text
    assert "skipped 1 bad record(s)" in text and "frames.jsonl:4" in text and "outside the 640x640 image" in text
    assert validate_cache(out) == []
    with MeshCache(out) as c:
        assert len(c) == 2 and c.source == "images"
        assert c[0].extra["quality"]["landmark_error_px"] < 0.05
