"""Manifest parsing: every error names the file and the line."""
import json

import numpy as np
import pytest

from onthefly.reconstruct.manifest import read_manifest
from onthefly.sources.base import SourceError

K = [[1000.0, 0, 320], [0, 1000.0, 240], [0, 0, 1]]
LM = np.tile([[300.0, 200.0]], (68, 1)).tolist()


def _m(tmp_path, *rows, raw=None):
    p = tmp_path / "frames.jsonl"
    lines = [json.dumps(r) for r in rows] if raw is None else raw
    p.write_text("\n".join(lines) + "\n")
    return p


def test_good_manifest_with_defaults_comments_and_blank_lines(tmp_path):
    p = _m(tmp_path, raw=[
        "# a comment",
        json.dumps({"defaults": {"K": K, "subject": "p00", "dist": [0.1, 0, 0, 0, 0]}}),
        "",
        json.dumps({"image": "a/b.png", "gaze_target": [0, 0, 100], "landmarks": LM}),
        json.dumps({"image": "c.jpg", "frame": "f2", "gaze_pitchyaw": [0.0, 0.3], "subject": "p01",
                    "head_rvec": [0, 0.2, 0], "face_centre": [0, 0, 600], "face_centre_rule": "eye_mouth"}),
    ])
    a, b = read_manifest(p)
    assert a.where == f"{p}:4" and a.image == tmp_path / "a" / "b.png" and a.frame == "b" and a.subject == "p00"
    assert a.dist.shape == (5,) and a.landmarks.shape == (68, 2) and a.gaze_direction is None
    assert b.subject == "p01" and b.face_centre_rule == "eye_mouth"
    assert abs(np.linalg.norm(b.gaze_direction) - 1) < 1e-12 and b.gaze_direction[0] < 0  # yaw > 0: toward -x
    assert b.head_rotation.shape == (3, 3) and abs(np.linalg.det(b.head_rotation) - 1) < 1e-9


@pytest.mark.parametrize("row, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"image": "a.png", "K": K, "gaze_target": [0, 0, 1]}), "missing required key 'subject'"),
    (json.dumps({"image": "a.png", "subject": "s", "gaze_target": [0, 0, 1]}), "missing required key 'K'"),
    (json.dumps({"image": "a.png", "subject": "s", "K": None, "gaze_target": [0, 0, 1]}), "K must be a 3x3 matrix"),
    (json.dumps({"image": "a.png", "subject": "s", "K": K}), "exactly one of gaze_target"),
    (json.dumps({"image": "a.png", "subject": "s", "K": K, "gaze_target": [0, 0, 1], "gaze_pitchyaw": [0, 0]}),
     "exactly one of"),
    (json.dumps({"image": "a.png", "subject": "s", "K": K, "gaze_target": [0, 0, 1], "landmark": LM}),
     r"unknown key\(s\) \['landmark'\]"),
    (json.dumps({"image": "a.png", "subject": "s", "K": [[1, 0], [0, 1]], "gaze_target": [0, 0, 1]}),
     r"K has shape \[2, 2\], expected \[3, 3\]"),
    (json.dumps({"image": "a.png", "subject": "s", "K": K, "gaze_target": [0, 0, 1], "landmarks": LM[:5]}),
     r"landmarks has shape \[5, 2\]"),
    (json.dumps({"image": "a.png", "subject": "s", "K": K, "gaze_direction": [0, 0, 2]}), "unit vector"),
    (json.dumps({"image": "a.png", "subject": "s", "K": K, "gaze_target": [0, 0, 1], "head_rotation": [[2, 0, 0],
                 [0, 1, 0], [0, 0, 1]]}), "not a rotation"),
    (json.dumps({"image": "a.png", "subject": "s", "K": K, "gaze_target": [0, 0, 1], "face_box": [10, 10, 5, 20]}),
     "face_box"),
    (json.dumps({"image": "a.png", "subject": "s", "K": K, "gaze_target": [0, 0, 1], "face_centre": [0, 0, -5]}),
     "z must be positive"),
    (json.dumps({"image": "a.png", "subject": "s", "K": K, "gaze_target": [0, 0, 1], "face_centre_rule": "x"}),
     "face_centre_rule"),
    (json.dumps({"image": "a.png", "subject": "s", "K": K, "gaze_target": [0, 0, "x"]}), "must be numbers"),
    (json.dumps({"image": "a.png", "subject": "s", "K": K, "gaze_target": [0, 0, float("nan")]}), "NaN"),
])
def test_bad_line_names_file_and_line(tmp_path, row, message):
    good = json.dumps({"image": "ok.png", "subject": "s", "K": K, "gaze_target": [0, 0, 1]})
    p = _m(tmp_path, raw=["# header", good, row])
    with pytest.raises(SourceError, match=rf"frames\.jsonl:3: .*{message}"):
        read_manifest(p)


def test_defaults_only_first_and_duplicates_and_empty(tmp_path):
    good = {"image": "ok.png", "subject": "s", "K": K, "gaze_target": [0, 0, 1]}
    with pytest.raises(SourceError, match=r"frames\.jsonl:2: .*only as the first entry"):
        read_manifest(_m(tmp_path, good, {"defaults": {"K": K}}))
    with pytest.raises(SourceError, match=r"frames\.jsonl:2: frame s/ok already listed at .*frames\.jsonl:1"):
        read_manifest(_m(tmp_path, good, good))
    with pytest.raises(SourceError, match="lists no frames"):
        read_manifest(_m(tmp_path, raw=["# nothing"]))
    with pytest.raises(SourceError, match="manifest not found"):
        read_manifest(tmp_path / "missing.jsonl")
