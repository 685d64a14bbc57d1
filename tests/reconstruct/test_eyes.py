"""Eye geometry of the batch (onthefly.reconstruct.eyes): the rendered iris lies on the projected iris contour."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from onthefly.cache import build_cache
    from onthefly.sources.procedural import ProceduralSource

    path = tmp_path_factory.mktemp("eyes") / "proc.h5"
    build_cache(ProceduralSource(count=8, seed=5, subjects=8), path)
    return path


def _bilinear(img: np.ndarray, p: np.ndarray) -> float:
    x, y = p
    j, i = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - j, y - i
    return float(img[i, j] * (1 - fx) * (1 - fy) + img[i, j + 1] * fx * (1 - fy) + img[i + 1, j] * (1 - fx) * fy
                 + img[i + 1, j + 1] * fx * fy)


def test_rendered_iris_lies_on_the_projected_contour(cache):
    """At 224 px, every contour point with eyeball on both sides is the iris/sclera boundary within 1 px: the iris
    fraction is > 0.5 one pixel inward (toward the iris centre) and < 0.5 one pixel outward."""
    from onthefly.cache import MeshCache
    from onthefly.dataset import OnTheFlyGazeDataset
    from onthefly.reconstruct.eyes import EYE_KEYS
    from onthefly.render import VertexColors, render
    from onthefly.synthetic.template import N_BALL, N_IRIS_RINGS, N_PUPIL_RINGS, build_template

    ds = OnTheFlyGazeDataset(cache, batch_size=8, seed=1, device="cpu", appearance="plain", tune_malloc=False)
    b = ds.batch(0)
    assert set(EYE_KEYS) <= set(b)
    assert b["iris_contours_2d"].shape == (8, 2, 8, 2) and b["eyeball_centres_3d"].shape == (8, 2, 3)
    assert torch.isfinite(b["iris_contours_2d"]).all()
    # the same views rendered with the iris (pupil + iris rings) red, the sclera green, the skin blue
    T = build_template()
    col = np.zeros((T.n_verts, 3), np.uint8)
    col[:T.ball_offset, 2] = 255
    for e in range(2):
        base = T.ball_offset + e * T.n_ball
        n_iris = 1 + (N_PUPIL_RINGS + N_IRIS_RINGS) * N_BALL
        col[base:base + n_iris, 0] = 255
        col[base + n_iris:base + T.n_ball, 1] = 255
    with MeshCache(cache) as mc:
        recs = [mc[int(i)] for i in b["frame_index"]]
    V = b["face_mat_norm"].double()
    verts = torch.stack([(torch.as_tensor(r.verts, dtype=torch.float64) - torch.as_tensor(r.face_centre)) @ V[k].T
                         for k, r in enumerate(recs)])
    verts[..., 2] += ds.camera.distance
    res = render(verts.float(), torch.as_tensor(recs[0].faces), ds.camera.K(torch.float32).expand(8, 3, 3),
                 (224, 224), textures=VertexColors(torch.from_numpy(col)[None].expand(8, -1, -1)), background=None,
                 ssaa=2, cull_backfaces=True)
    img = res.image.permute(0, 2, 3, 1).numpy()
    tested = 0
    for k in range(8):
        iris, eye = img[k, ..., 0], img[k, ..., 0] + img[k, ..., 1]
        for e in range(2):
            c = b["iris_centres_2d"][k, e].double().numpy()
            for p in b["iris_contours_2d"][k, e].double().numpy():
                n = (p - c) / np.linalg.norm(p - c)
                inner, outer = p - n, p + n
                if min(_bilinear(eye, inner), _bilinear(eye, outer)) < 0.99:
                    continue  # a lid covers the limbus here
                tested += 1
                assert _bilinear(iris, inner) > 0.5 > _bilinear(iris, outer), (k, e, p)
    assert tested >= 16, tested


def test_eye_geometry_is_the_procedural_truth():
    """For procedural heads the eye geometry of the mesh is the generator's: eyeball centres, iris centres
    (pole of the iris cap) and a contour at the iris radius from the eye axis."""
    from onthefly.reconstruct.eyes import eye_geometry
    from onthefly.synthetic import procedural_heads

    h = procedural_heads(3, seed=2)
    K = torch.tensor([[960.0, 0, 112], [0, 960.0, 112], [0, 0, 1]], dtype=torch.float64)
    verts = h.verts.double() + torch.tensor([0.0, 0.0, 600.0], dtype=torch.float64)
    tgt = h.gaze_targets.double() + torch.tensor([0.0, 0.0, 600.0], dtype=torch.float64)
    g = torch.nn.functional.normalize(tgt, dim=-1)
    e = eye_geometry(verts, tgt, g, K)
    off = torch.tensor([0.0, 0.0, 600.0], dtype=torch.float64)
    assert torch.allclose(e["eyeball_centres_3d"], h.eyeball_centres.double() + off, atol=1e-3)
    assert torch.allclose(e["iris_centres_3d"], h.iris_centres.double() + off, atol=1e-3)
    c = h.eyeball_centres.double() + off
    rel = e["iris_contours_3d"] - c[:, :, None]
    along = (rel * h.eye_axes.double()[:, :, None]).sum(-1, keepdim=True)
    radial = (rel - along * h.eye_axes.double()[:, :, None]).norm(dim=-1)
    assert torch.allclose(radial, h.iris_radius.double()[:, None, None].expand_as(radial), atol=0.02)
