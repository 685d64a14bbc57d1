"""Landmark detectors: dlib on a real photo, face-alignment's loading path with random weights (no download)."""
import json

import numpy as np
import pytest
import torch

from onthefly.reconstruct import reconstruct

from .helpers import dlib_landmarks as _dlib


def _camera(img):
    h, w = img.shape[:2]
    f = 1.5 * max(w, h)
    return np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])


def test_dlib_on_the_astronaut_and_reconstruction():
    skdata = pytest.importorskip("skimage.data")
    det = _dlib()
    img = skdata.astronaut()
    lm = det(img)
    assert lm.shape == (68, 2)
    # the face is at x 175-265, y 76-166 (dlib's box, checked by eye); the eyes lie above the mouth, the subject's
    # right eye (36-41) on the image left
    assert (lm[:, 0] > 160).all() and (lm[:, 0] < 280).all() and (lm[:, 1] > 60).all() and (lm[:, 1] < 190).all()
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean() and lm[36:48, 1].mean() < lm[48:68, 1].mean()
    r = reconstruct(img, _camera(img), lm)
    # not 0: the template's closed mouth has one vertex for each inner-lip pair (61/67, 62/66, 63/65)
    assert r.quality["landmark_error_px"] < 1.0
    assert r.quality["visible_fraction"] > 0.5
    from onthefly.normalization import face_centre
    from onthefly.reconstruct.groundtruth import render_image, render_reconstruction
    from onthefly.reconstruct.metrics import masked_psnr
    from onthefly.render import VertexColors

    K = _camera(img)
    h, w = img.shape[:2]
    fc = face_centre(torch.from_numpy(r.landmarks), "eye_nose").numpy()
    out = render_reconstruction(r, K, (w, h), fc, 0, 0)
    fr = np.repeat(r.face_region[:, None].astype(np.float32), 3, 1)
    m, cov = render_image(r.verts, r.faces, K, (w, h), VertexColors(torch.from_numpy(fr)[None]), ssaa=1)
    mask = (cov > 0.5) & (m[..., 0] > 0.999)
    assert masked_psnr(out, img / 255.0, mask) > 26.0  # measured 30.7 dB


def test_dlib_from_the_manifest_source(tmp_path):
    skdata = pytest.importorskip("skimage.data")
    _dlib()
    import cv2

    from onthefly.sources.images import ImageSource

    img = skdata.astronaut()
    cv2.imwrite(str(tmp_path / "astronaut.png"), img[..., ::-1])
    row = {"image": "astronaut.png", "subject": "nasa", "K": _camera(img).tolist(), "gaze_pitchyaw": [0.0, 0.1]}
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    rec = ImageSource(tmp_path / "m.jsonl", landmarks="dlib").load(0)
    assert rec.extra["quality"]["landmarks_detected"] == 1.0
    assert rec.texture.shape[0] < img.shape[0]  # cropped to the face


class NotWeights:
    """An arbitrary object: a file holding it must never be unpickled by the FAN adapter."""


def _fan_weights(home, kind: str):
    from face_alignment.models import FAN, ResNetDepth

    from onthefly.reconstruct.landmarks import FAN_FILES

    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), ckpt / FAN_FILES[kind][0])
    if kind == "3D":
        sd = {"module." + k: v for k, v in ResNetDepth().state_dict().items()}
        torch.save({"state_dict": sd}, ckpt / FAN_FILES["3D"][1])
    return ckpt


@pytest.mark.parametrize("kind", ["2D", "3D"])
def test_face_alignment_loading_path_with_random_weights(tmp_path, monkeypatch, kind):
    pytest.importorskip("face_alignment")
    from onthefly.reconstruct.landmarks import FanLandmarks, NoFaceError

    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="face-alignment weights not found"):
        FanLandmarks(kind, detector="folder")
    _fan_weights(tmp_path, kind)
    fan = FanLandmarks(kind, detector="folder")
    img = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError, match="needs a face_box"):
        fan(img)
    lm = fan(img, box=(100.0, 60.0, 220.0, 180.0))  # random weights: meaningless values, right shape
    assert lm.shape == (68, 2 if kind == "2D" else 3) and np.isfinite(lm).all()


def test_face_alignment_refuses_pickled_objects(tmp_path, monkeypatch):
    pytest.importorskip("face_alignment")
    from onthefly.reconstruct.landmarks import FAN_FILES, FanLandmarks

    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ckpt = _fan_weights(tmp_path, "3D")
    torch.save({"state_dict": NotWeights()}, ckpt / FAN_FILES["3D"][1])
    with pytest.raises(ValueError, match="not a plain weights file"):
        FanLandmarks("3D", detector="folder")
