"""Bad input: every frame that cannot be reconstructed is refused with a reason, or skipped and recorded."""
import json

import h5py
import numpy as np
import pytest

from onthefly.cache import MeshCache, build_cache, validate_cache
from onthefly.reconstruct import ReconstructionError, reconstruct
from onthefly.reconstruct.groundtruth import write_manifest
from onthefly.sources.base import SourceError
from onthefly.sources.images import ImageSource

from .helpers import frames


def _row(g, **kw):
    row = {"image": "frame000.png", "landmarks": g.landmarks_2d.tolist(), "gaze_target": g.gaze_target.tolist()}
    row.update(kw)
    return row


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("images")
    write_manifest(list(frames()), d)
    return d


def _write(folder, rows, name="m.jsonl"):
    p = folder / name
    g = frames()[0]
    head = {"defaults": {"K": g.K.tolist(), "subject": "s"}}
    p.write_text("\n".join(json.dumps(r) for r in [head] + rows) + "\n")
    return p


def test_landmarks_outside_the_image(folder):
    g = frames()[0]
    lm = g.landmarks_2d.copy()
    lm[8] = (100.0, 700.0)
    src = ImageSource(_write(folder, [_row(g, landmarks=lm.tolist())]))
    with pytest.raises(SourceError, match=r"m\.jsonl:2 \(frame000\.png\): 1 landmark\(s\) outside the 640x640"):
        src.load(0)


def test_inconsistent_intrinsics(folder):
    g = frames()[0]
    K = g.K.copy()
    K[:2, 2] *= 3  # K of a 3x larger image
    src = ImageSource(_write(folder, [_row(g, K=K.tolist()), _row(g, frame="b", image_size=[1280, 960])]))
    with pytest.raises(SourceError, match=r"m\.jsonl:2 .*inconsistent intrinsics: principal point"):
        src.load(0)
    with pytest.raises(SourceError, match=r"m\.jsonl:3 .*inconsistent intrinsics: image_size \[1280, 960\] but "
                                          r"the image is 640x640"):
        src.load(1)


def test_landmarks_that_are_not_a_face(folder):
    g = frames()[0]
    rng = np.random.default_rng(0)
    lm = rng.uniform(100, 500, (68, 2))
    src = ImageSource(_write(folder, [_row(g, landmarks=lm.tolist())]))
    with pytest.raises(SourceError, match="do not fit a face"):
        src.load(0)


def test_face_centre_far_from_the_face(folder):
    g = frames()[0]
    src = ImageSource(_write(folder, [_row(g, face_centre=(g.face_centre + [150.0, 0, 0]).tolist())]))
    with pytest.raises(SourceError, match="annotated face centre projects"):
        src.load(0)


def test_missing_and_corrupt_images(folder):
    g = frames()[0]
    (folder / "corrupt.png").write_bytes(b"not a png")
    src = ImageSource(_write(folder, [_row(g, image="nope.png"), _row(g, image="corrupt.png")]))
    with pytest.raises(SourceError, match=r"m\.jsonl:2: image .*nope\.png not found"):
        src.load(0)
    with pytest.raises(SourceError, match=r"m\.jsonl:3: cannot decode image .*corrupt\.png"):
        src.load(1)


def test_no_landmarks_without_a_detector(folder):
    g = frames()[0]
    row = _row(g)
    del row["landmarks"]
    src = ImageSource(_write(folder, [row]))
    with pytest.raises(SourceError, match="no landmarks in the manifest"):
        src.load(0)


def test_no_face_found_dlib(folder):
    pytest.importorskip("dlib")
    import cv2

    from onthefly.reconstruct.landmarks import dlib_predictor_path
    try:
        dlib_predictor_path()
    except ImportError:
        pytest.skip("face-recognition-models not installed")
    cv2.imwrite(str(folder / "blank.png"), np.full((240, 320, 3), 128, np.uint8))
    K = [[400.0, 0, 159.5], [0, 400.0, 119.5], [0, 0, 1]]
    src = ImageSource(_write(folder, [{"image": "blank.png", "K": K, "gaze_pitchyaw": [0.0, 0.0]}]),
                      landmarks="dlib")
    with pytest.raises(SourceError, match=r"m\.jsonl:2 \(blank\.png\): no face found"):
        src.load(0)


def test_skip_bad_records_reasons_and_keeps_the_rest(folder, tmp_path):
    g0, g1 = frames()
    lm = g0.landmarks_2d.copy()
    lm[0] = (-50.0, 10.0)
    rows = [_row(g0, face_centre=g0.face_centre.tolist()),
            _row(g0, frame="bad", landmarks=lm.tolist()),
            _row(g1, image="frame001.png", gaze_pitchyaw=[0.1, -0.2], gaze_target=None)]
    out = tmp_path / "c.h5"
    rep = build_cache(ImageSource(_write(folder, rows)), out, skip_bad=True)
    assert rep.written == 2 and len(rep.skipped) == 1
    assert "m.jsonl:3" in rep.skipped[0][1] and "outside the 640x640 image" in rep.skipped[0][1]
    assert validate_cache(out) == []
    with h5py.File(out) as f:
        assert json.loads(f.attrs["skipped_records"]) == [list(rep.skipped[0])]
    with MeshCache(out) as c:
        q = c.quality()
        assert set(q) >= {"landmark_error_px", "visible_fraction", "mirror_fraction", "pose_error_px"}
        assert (q["landmark_error_px"] < 0.05).all() and (q["visible_fraction"] > 0.5).all()
        r0, r1 = c[0], c[1]
        assert r0.extra["quality"]["visible_fraction"] == pytest.approx(q["visible_fraction"][0])
        np.testing.assert_allclose(r0.face_centre, g0.face_centre)  # the annotated gaze origin is kept
        np.testing.assert_allclose(r0.gaze_target, g0.gaze_target)
        assert r1.gaze_target is None and abs(np.linalg.norm(r1.gaze_direction) - 1) < 1e-9
        assert r0.texture is not None and r0.vert_face_region is not None
        assert c.info()["skipped_records"] == 1
    with pytest.raises(SourceError, match="outside"):
        build_cache(ImageSource(_write(folder, rows)), tmp_path / "d.h5")
    assert not (tmp_path / "d.h5").exists()


def test_reconstruct_checks_directly():
    g = frames()[0]
    with pytest.raises(ReconstructionError, match="NaN"):
        lm = g.landmarks_2d.copy()
        lm[3, 0] = np.nan
        reconstruct(g.image, g.K, lm)
    with pytest.raises(ReconstructionError, match="68 landmarks"):
        reconstruct(g.image, g.K, g.landmarks_2d[:60])
    with pytest.raises(ReconstructionError, match="uint8"):
        reconstruct(g.image.astype(np.float32), g.K, g.landmarks_2d)
    K = g.K.copy()
    K[0, 0] = -1
    with pytest.raises(ReconstructionError, match="positive focal"):
        reconstruct(g.image, K, g.landmarks_2d)
