"""The structures layer: Frames (packed and padded views of the loaded frames), the view transform shared by the mesh
and the labels, the typed batch and its dict, the renderer's channel mask."""
from __future__ import annotations

import pytest
import torch
from cache.helpers import tiny_record

from onthefly.cache import CacheWriter, MeshCache
from onthefly.camera import view_from_head_pose
from onthefly.dataset import BATCH_KEYS, OnTheFlyGazeDataset
from onthefly.structures import Frames, GazeBatch

from .conftest import SMALL


@pytest.fixture(scope="module")
def mixed_cache(tmp_path_factory):
    """5 vertex-coloured frames of 3 topologies (70, 90, 110 vertices), 2 subjects."""
    path = tmp_path_factory.mktemp("structures") / "mixed.h5"
    with CacheWriter(path, source="test-mixed") as w:
        for i, n in enumerate([70, 90, 70, 110, 90]):
            w.add(tiny_record(i, f"s{i % 2}", n_verts=n))
    return path


def test_frames_padded_and_packed_views(mixed_cache):
    with MeshCache(mixed_cache) as mc:
        pf = mc.load()
        fs = mc.load_frames(["s1", "s0"])
    assert isinstance(fs, Frames) and len(fs) == 5
    assert fs.verts_padded.shape == (5, 110, 3) and fs.verts_padded.dtype == torch.float32
    assert fs.num_verts.tolist() == [70, 90, 70, 110, 90]
    # the packed view is the cache's packed vertices, frame after frame
    assert torch.equal(fs.verts_packed(), pf.verts) and torch.equal(fs.vert_offsets(), pf.vert_offsets)
    # padding rows sit at the frame's face centre (float32), so a view centres them to exactly 0
    c32 = fs.labels.face_centre.to(torch.float32)
    for i, n in enumerate(fs.num_verts.tolist()):
        assert torch.equal(fs.verts_padded[i, n:], c32[i].expand(110 - n, 3))
    # topologies: padded with -1 rows, one per frame through topology_id
    faces = fs.topologies.select(torch.tensor([0, 3]))
    assert faces.shape == (2, 108, 3)
    assert (faces[0, 68:] == -1).all() and (faces[0, :68] >= 0).all() and (faces[1] >= 0).all()
    assert not fs.topologies.contour.any()  # not the procedural topology
    tex = fs.textures.select(torch.tensor([1, 2]))
    assert torch.equal(tex.colors[0, :90], pf.vert_colors[pf.vert_offsets[1]:pf.vert_offsets[2]])
    # labels: float64, unit gaze, subject_index into the given subject order, the source normalization
    assert fs.labels.head_rotation.dtype == torch.float64
    assert torch.allclose(fs.labels.gaze_direction.norm(dim=-1), torch.ones(5, dtype=torch.float64))
    assert fs.labels.subject_index.tolist() == [1, 0, 1, 0, 1]
    R = fs.labels.source_rotation
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(5, 3, 3), atol=1e-12)
    fwd = fs.labels.face_centre / fs.labels.face_centre.norm(dim=-1, keepdim=True)
    assert torch.allclose(R[:, 2], fwd, atol=1e-12)  # the normalized camera looks at the face centre
    assert fs.ids[3] == ("s1", "f003", "c0") and fs.views is None


def test_frames_views_need_stored_cameras(mixed_cache):
    with MeshCache(mixed_cache) as mc, pytest.raises(ValueError, match=f"{mixed_cache}.*needs frames with stored"):
        mc.load_frames(views=True)


def test_view_transform_mesh_and_labels_agree():
    g = torch.Generator().manual_seed(0)
    n = 6
    hR = torch.linalg.qr(torch.randn(n, 3, 3, dtype=torch.float64, generator=g))[0]
    hR = hR * torch.linalg.det(hR)[:, None, None]
    c = torch.randn(n, 3, dtype=torch.float64, generator=g) * 50 + torch.tensor([0.0, 0.0, 650.0])
    pts = c[:, None] + torch.randn(n, 40, 3, dtype=torch.float64, generator=g) * 80
    view = view_from_head_pose(torch.rand(n, 2, dtype=torch.float64, generator=g) - 0.5, c, 600.0, head_rotation=hR)
    want = view.apply(pts)
    assert (view.apply_mesh(pts) - want).abs().max() < 1e-9
    got32 = view.apply_mesh(pts.to(torch.float32))
    assert got32.dtype == torch.float32 and (got32.double() - want).abs().max() < 1e-3
    # the face centre lands on the optical axis at the distance, for the mesh path too
    on_axis = view.apply_mesh(c[:, None])[:, 0]
    assert (on_axis - torch.tensor([0.0, 0.0, 600.0], dtype=torch.float64)).abs().max() < 1e-9
    # a per-sample tensor distance, and a head-coordinate view
    d = torch.linspace(300.0, 900.0, n, dtype=torch.float64)
    v2 = view_from_head_pose(torch.zeros(n, 2, dtype=torch.float64), c, d)
    assert (v2.apply_mesh(pts) - v2.apply(pts)).abs().max() < 1e-9


def test_batch_dict_keys(proc_cache):
    ds = OnTheFlyGazeDataset(proc_cache, batch_size=2, camera=SMALL, appearance="plain", target="source")
    gb = ds.gaze_batch(0)
    assert isinstance(gb, GazeBatch) and len(gb) == 2
    b = gb.as_dict()
    params = {k for k in b if k.startswith("param_")}
    assert params and set(b) == set(BATCH_KEYS) | params
    assert b["epoch"].dtype == torch.int64 and b["target_pose"].dtype == torch.float64
    assert all(b[k].dtype == torch.float32 for k in ("image", "mask", "gaze", "landmarks_2d", "iris_centres_2d"))
    for k, v in ds.batch(0).items():
        assert torch.equal(v, b[k]), k
    # a re-render carries no draw record
    r = ds.replay(b)
    assert set(r) == set(b) - {"drawn_target", "epoch", "batch_index"}
    # K views: (B, K, ...) and the relative rotations between them
    ds2 = OnTheFlyGazeDataset(proc_cache, batch_size=2, camera=SMALL, appearance="plain", views_per_frame=3)
    b2 = ds2.batch(0)
    assert set(b2) == set(BATCH_KEYS) | params | {"relative_rotation"}
    assert b2["image"].shape == (2, 3, 3, 56, 56) and b2["relative_rotation"].shape == (2, 3, 3, 3, 3)
    V = b2["face_mat_norm"].double()
    assert (b2["relative_rotation"][:, 0, 2].double() - V[:, 2] @ V[:, 0].transpose(-1, -2)).abs().max() < 1e-6


@pytest.mark.parametrize("ssaa", [1, 2])
def test_channel_mask(ssaa):
    from onthefly.render import render

    # two triangles side by side, the right one flagged: the channel mask covers the right half of the square
    verts = torch.tensor([[[-1.0, -1, 5], [0, -1, 5], [0, 1, 5], [-1, 1, 5], [1, -1, 5], [1, 1, 5]]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2]])
    flag = torch.tensor([[[0.0], [1], [1], [0], [1], [1]]])
    flag[0, 1] = flag[0, 2] = 0.5  # on the shared edge: >= 0.5 is in
    K = torch.tensor([[[8.0, 0, 8], [0, 8, 8], [0, 0, 1]]])
    res = render(verts, faces, K, (16, 16), ssaa=ssaa, channels=flag)
    m = res.channel_mask(0)
    assert m.shape == res.mask.shape == (1, 1, 16, 16)
    assert (m <= res.mask).all() and m[0, 0, :, 9:].eq(res.mask[0, 0, :, 9:]).all() and m[0, 0, :, :7].eq(0).all()
    if ssaa == 1:
        assert torch.equal(m, (res.channels[:, :1] >= 0.5).to(m.dtype))
    else:
        assert torch.equal(m, torch.nn.functional.avg_pool2d((res.channels[:, :1] >= 0.5).to(m.dtype), 2))
    with pytest.raises(ValueError, match="out of range"):
        res.channel_mask(1)
    with pytest.raises(ValueError, match="no channels"):
        render(verts, faces, K, (16, 16)).channel_mask()
