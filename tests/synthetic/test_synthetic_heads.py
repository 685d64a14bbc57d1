"""Tests of onthefly.synthetic: procedural heads with eyeballs that look at a gaze target."""
from __future__ import annotations

import math

import pytest
import torch

from onthefly.synthetic import (
    MAX_GAZE_ANGLE_DEG,
    PART_NAMES,
    HeadBatch,
    HeadIdentity,
    build_heads,
    procedural_heads,
    sample_gaze_targets,
    sample_identities,
)

PART = {v: k for k, v in PART_NAMES.items()}


@pytest.fixture(scope="module")
def heads() -> HeadBatch:
    return procedural_heads(16, seed=7)


def _targets(n, x=0.0, y=0.0, z=-500.0):
    return torch.tensor([[x, y, z]] * n)


# ------------------------------------------------------------------ determinism / topology
def test_same_seed_bit_identical():
    a = procedural_heads(4, seed=3)
    b = procedural_heads(4, seed=3)
    assert torch.equal(a.verts, b.verts)
    assert torch.equal(a.vert_colors, b.vert_colors)
    assert torch.equal(a.gaze_targets, b.gaze_targets)
    assert torch.equal(a.part_ids, b.part_ids)


def test_generator_and_int_seed_agree_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = sample_identities(3, torch.Generator().manual_seed(5))
    b = sample_identities(3, 5)
    assert torch.equal(a.shape, b.shape) and torch.equal(a.skin_rgb, b.skin_rgb)
    procedural_heads(2, seed=1)
    assert torch.equal(state, torch.get_rng_state())


def test_different_seeds_differ():
    a = procedural_heads(2, seed=0)
    b = procedural_heads(2, seed=1)
    assert not torch.allclose(a.verts, b.verts)
    assert (a.vert_colors != b.vert_colors).any()
    # different heads within a batch differ too
    assert (a.verts[0] - a.verts[1]).abs().max() > 1.0


def test_shared_topology_across_seeds_and_gaze():
    a = procedural_heads(2, seed=0)
    ids = sample_identities(2, 11)
    b = build_heads(ids, _targets(2, 150, -80, -400))
    c = build_heads(ids, _targets(2, -200, 120, -700))
    assert torch.equal(a.faces, b.faces) and torch.equal(b.faces, c.faces)
    assert a.verts.shape[1:] == b.verts.shape[1:]
    assert torch.equal(b.landmark_vertex_ids, c.landmark_vertex_ids)
    assert torch.equal(a.face_region, b.face_region)


def test_shapes_dtypes_and_face_count(heads):
    n, V = heads.verts.shape[:2]
    assert n == 16 and heads.verts.dtype == torch.float32
    assert heads.faces.dtype == torch.int64 and heads.faces.ndim == 2 and heads.faces.shape[1] == 3
    assert 20_000 <= heads.faces.shape[0] <= 60_000
    assert heads.vert_colors.shape == (n, V, 3) and heads.vert_colors.dtype == torch.uint8
    assert heads.landmarks.shape == (n, 68, 3)
    assert heads.eyeball_centres.shape == (n, 2, 3) and heads.iris_centres.shape == (n, 2, 3)
    assert heads.eyeball_radius.shape == (n,) and heads.gaze_targets.shape == (n, 3)
    assert heads.part_ids.shape == (n, V) and heads.part_ids.dtype == torch.int8
    assert heads.face_region.shape == (V,) and heads.face_region.dtype == torch.bool


def test_mesh_is_finite_and_not_degenerate(heads):
    assert torch.isfinite(heads.verts).all()
    f = heads.faces
    assert f.min() >= 0 and f.max() < heads.verts.shape[1]
    assert (f[:, 0] != f[:, 1]).all() and (f[:, 1] != f[:, 2]).all() and (f[:, 0] != f[:, 2]).all()
    assert torch.unique(f).numel() == heads.verts.shape[1]          # every vertex used
    v = heads.verts.double()
    tri = v[:, f]
    area = 0.5 * torch.linalg.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]).norm(dim=-1)
    assert area.min() > 1e-5


def test_every_edge_shared_by_two_faces(heads):
    """Closed, consistently oriented components: each directed edge appears once, its reverse once."""
    f = heads.faces
    e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    V = heads.verts.shape[1]
    key = e[:, 0] * V + e[:, 1]
    rev = e[:, 1] * V + e[:, 0]
    assert torch.unique(key).numel() == key.numel()
    assert torch.isin(rev, key).all()


def test_faces_point_outward(heads):
    """Skin normals point away from the skull centre (face: toward -z); eyeball normals away from the eye."""
    v = heads.verts[0].double()
    f = heads.faces
    tri = v[f]
    nrm = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    cen = tri.mean(1)
    is_ball = (heads.part_ids[0][f] >= PART["sclera"]).all(1)
    centre = torch.tensor([0.0, 20.0, 75.0], dtype=torch.float64)
    skin = ~is_ball
    assert ((nrm[skin] * (cen[skin] - centre)).sum(-1) > 0).double().mean() > 0.97
    eye = torch.where(cen[:, 0] > 0, 1, 0)
    out = (nrm * (cen - heads.eyeball_centres[0].double()[eye])).sum(-1) > 0
    assert out[is_ball].all()
    # the nose tip region faces the camera (-z)
    tip = heads.landmark_vertex_ids[30]
    near = (f == tip).any(1)
    assert (nrm[near][:, 2] < 0).all()


# ------------------------------------------------------------------ landmarks
def test_landmark_semantics(heads):
    L = heads.landmarks
    x, y, z = L[..., 0], L[..., 1], L[..., 2]
    # subject's right (negative x) for the right-side points, mirrored for the left
    for r, l in [(0, 16), (17, 26), (36, 45), (39, 42), (31, 35), (48, 54), (60, 64)]:
        assert (x[:, r] < 0).all() and (x[:, l] > 0).all(), (r, l)
    assert (x[:, 36] < x[:, 39]).all() and (x[:, 42] < x[:, 45]).all()
    eye_w = (L[:, 39] - L[:, 36]).norm(dim=-1)
    assert ((eye_w > 22) & (eye_w < 36)).all()
    outer = (L[:, 45] - L[:, 36]).norm(dim=-1)
    assert ((outer > 80) & (outer < 105)).all()
    # nose tip is the most forward landmark, chin the lowest jaw point, mouth corners below the nose
    assert (z[:, 30] <= z.min(1).values + 1e-5).all()
    assert (y[:, 8] >= y[:, :17].max(1).values - 1e-5).all()
    assert (y[:, 48] > y[:, 33]).all() and (y[:, 54] > y[:, 33]).all()
    # vertical order: brows above eyes above nose tip above mouth above chin
    assert (y[:, 19] < y[:, 37]).all() and (y[:, 37] < y[:, 30]).all()
    assert (y[:, 30] < y[:, 51]).all() and (y[:, 51] < y[:, 57]).all() and (y[:, 57] < y[:, 8]).all()
    # upper lid above lower lid (y down)
    assert (y[:, 37] < y[:, 41]).all() and (y[:, 43] < y[:, 47]).all()
    # landmarks are mesh vertices
    assert torch.equal(L, heads.verts[:, heads.landmark_vertex_ids])


def test_landmarks_symmetric_for_mirror_pairs(heads):
    L = heads.landmarks
    for r, l in [(36, 45), (39, 42), (48, 54), (0, 16)]:
        assert ((L[:, r, 0] + L[:, l, 0]).abs() < 6).all()
        assert ((L[:, r, 1] - L[:, l, 1]).abs() < 6).all()


# ------------------------------------------------------------------ eyes and gaze
def test_eyeball_centres(heads):
    c = heads.eyeball_centres
    L = heads.landmarks
    assert torch.allclose(c.mean(1), torch.zeros(16, 3), atol=1e-5)       # origin = midpoint
    ipd = (c[:, 1] - c[:, 0]).norm(dim=-1)
    assert ((ipd > 54) & (ipd < 72)).all()
    assert ((c[:, 0, 0] > L[:, 36, 0]) & (c[:, 0, 0] < L[:, 39, 0])).all()
    assert ((c[:, 1, 0] > L[:, 42, 0]) & (c[:, 1, 0] < L[:, 45, 0])).all()
    assert ((heads.eyeball_radius > 11) & (heads.eyeball_radius < 13)).all()


def test_visual_axes_point_at_target(heads):
    to_t = heads.gaze_targets[:, None].double() - heads.eyeball_centres.double()
    ax = (heads.iris_centres.double() - heads.eyeball_centres.double())
    cos = (to_t * ax).sum(-1) / (to_t.norm(dim=-1) * ax.norm(dim=-1))
    assert (torch.acos(cos.clamp(-1, 1)) < 1e-4).all()
    assert torch.allclose(heads.eye_axes.norm(dim=-1), torch.ones(16, 2), atol=1e-5)


def test_iris_centre_definition(heads):
    expect = heads.eyeball_centres + heads.eyeball_radius[:, None, None] * heads.eye_axes
    assert torch.allclose(heads.iris_centres, expect, atol=1e-4)
    assert torch.allclose(heads.verts[:, heads.iris_centre_vertex_ids], heads.iris_centres, atol=1e-4)
    assert (heads.part_ids[:, heads.iris_centre_vertex_ids] == PART["pupil"]).all()


def test_iris_and_pupil_rings(heads):
    """Iris vertices lie within the iris radius of the axis; pupil within the pupil radius."""
    for part, rad in [("iris", heads.iris_radius), ("pupil", heads.pupil_radius)]:
        for i in range(4):
            m = heads.part_ids[i] == PART[part]
            p = heads.verts[i][m]
            for e in range(2):
                q = p - heads.eyeball_centres[i, e]
                near = q.norm(dim=-1) < heads.eyeball_radius[i] + 1e-3
                close = (p - heads.iris_centres[i, e]).norm(dim=-1) < 8
                sel = q[near & close]
                perp = (sel - (sel @ heads.eye_axes[i, e])[:, None] * heads.eye_axes[i, e]).norm(dim=-1)
                assert sel.shape[0] > 0 and (perp <= rad[i] + 1e-3).all()


def test_changing_target_moves_iris():
    ids = sample_identities(3, 2)
    both = HeadIdentity.cat([ids] * 3)
    tg = torch.cat([_targets(3, 0, 0, -500), _targets(3, 200, 0, -500), _targets(3, 0, -200, -500)])
    h = build_heads(both, tg)
    a, b, c = h[0:3], h[3:6], h[6:9]
    assert ((b.iris_centres[..., 0] - a.iris_centres[..., 0]) > 2).all()      # looks to subject's left
    assert ((c.iris_centres[..., 1] - a.iris_centres[..., 1]) < -2).all()     # looks up (y down)
    # skin away from the eyes does not move with the gaze
    m = (a.part_ids[0] == PART["skin"]) & (a.verts[0, :, 1] > 40)
    assert torch.equal(a.verts[:, m], b.verts[:, m])
    # the upper lid follows the gaze pitch: looking up raises landmarks 37/38 (smaller y)
    assert (c.landmarks[:, 37, 1] < a.landmarks[:, 37, 1] - 0.5).all()
    assert (c.landmarks[:, 44, 1] < a.landmarks[:, 44, 1] - 0.5).all()


def test_vergence_near_target():
    ids = sample_identities(2, 4)
    h = build_heads(ids, _targets(2, 0, 0, -120))
    # near target straight ahead: the eyes converge (right eye turns toward +x)
    assert (h.eye_axes[:, 0, 0] > 0.1).all() and (h.eye_axes[:, 1, 0] < -0.1).all()


def test_lid_margin_outside_eyeball():
    """Lid vertices never sink into the eyeball, whatever the gaze (one target per head)."""
    tg = torch.tensor([(0, 0, -500), (260, 0, -500), (0, 280, -500), (0, -280, -500), (-200, 200, -450),
                       (60, -60, -150)], dtype=torch.float32)
    h = build_heads(sample_identities(6, 9), tg)
    lid = torch.nonzero(h.part_ids[0] == PART["eyelid"])[:, 0]
    p = h.verts[:, lid]                                                      # (n, L, 3)
    eye = (p[..., 0] > 0).long()                                             # nearer eye by side
    c = h.eyeball_centres.gather(1, eye[..., None].expand(-1, -1, 3))
    dist = (p - c).norm(dim=-1)
    assert (dist >= h.eyeball_radius[:, None] - 1e-3).all()


def test_parts_and_face_region(heads):
    for name in ("skin", "hair", "lips", "eyelid", "sclera", "iris", "pupil"):
        assert (heads.part_ids == PART[name]).any(), name
    fr = heads.face_region
    assert fr[heads.landmark_vertex_ids[17:]].all()                 # brows..mouth inside the face region
    # hair-labelled vertices are mostly outside the face region
    hair = heads.part_ids == PART["hair"]
    assert (hair & fr[None]).sum() < 0.1 * hair.sum()


def test_skin_tone_varies():
    ids = sample_identities(200, 0)
    lum = ids.skin_rgb.mean(-1) * 255
    assert lum.max() - lum.min() > 100
    assert (ids.iris_rgb.std(0) > 0.02).all() and (ids.hair_rgb.std(0) > 0.02).all()


def test_sample_gaze_targets_range():
    t = sample_gaze_targets(500, 1)
    d = t.norm(dim=1)
    assert ((d >= 300) & (d <= 800)).all()
    ang = torch.acos(-t[:, 2] / d)
    assert (ang <= math.radians(30) + 1e-6).all()


def test_build_on_device(device):
    ids = sample_identities(2, 0).to(device)
    h = build_heads(ids, _targets(2).to(device))
    assert h.verts.device.type == device.type and torch.isfinite(h.verts).all()


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bad, match", [
    (torch.zeros(3, 2), "gaze_targets"),
    (torch.zeros(2, 3), "gaze_targets"),                    # wrong n
    (torch.tensor([[0, 0, -500.0], [0, 0, -500], [float("nan"), 0, -500]]), "gaze_targets"),
    (torch.tensor([[0, 0, -500.0], [0, 0, float("inf")], [0, 0, -500]]), "gaze_targets"),
    (torch.tensor([[0, 0, 500.0], [0, 0, -500], [0, 0, -500]]), "gaze_targets"),     # behind the head
    (torch.tensor([[0, 0, -20.0], [0, 0, -500], [0, 0, -500]]), "gaze_targets"),     # too close
    (torch.tensor([[900, 0, -100.0], [0, 0, -500], [0, 0, -500]]), "gaze_targets"),  # beyond eye rotation
    ("abc", "gaze_targets"),
])
def test_bad_targets_raise(bad, match):
    ids = sample_identities(3, 0)
    with pytest.raises(ValueError, match=match):
        build_heads(ids, bad)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="n"):
        sample_identities(0)
    with pytest.raises(ValueError, match="n"):
        sample_identities(2.5)
    with pytest.raises(ValueError, match="generator"):
        sample_identities(2, generator="x")
    with pytest.raises(ValueError, match="seed"):
        procedural_heads(2, seed=1.5)
    with pytest.raises(ValueError, match="ids"):
        build_heads("not ids", _targets(1))
    ids = sample_identities(2, 0)
    ids.ipd[0] = float("nan")
    with pytest.raises(ValueError, match="ids"):
        build_heads(ids, _targets(2))


def test_max_gaze_angle_constant():
    assert 30 < MAX_GAZE_ANGLE_DEG <= 60


@pytest.mark.slow
def test_64_heads_in_one_batch():
    """A batch of 64 (the size the procedural source builds): 64 distinct finite heads sharing one topology (its
    speed is a row of ``benchmarks/heads.py``, not a timed test)."""
    h = procedural_heads(64, seed=0)
    assert len(h) == 64 and h.verts.shape[0] == 64 and bool(torch.isfinite(h.verts).all())
    assert int(h.faces.max()) < h.verts.shape[1]
    assert len({tuple(v.flatten()[:30].tolist()) for v in h.verts}) == 64  # no two heads alike


def test_head_i_does_not_depend_on_batch_size():
    a = procedural_heads(6, seed=3)
    b = procedural_heads(2, seed=3)
    assert torch.equal(a.gaze_targets[:2], b.gaze_targets)
    assert torch.allclose(a.verts[:2], b.verts, atol=1e-3)      # equal up to float rounding
    assert (a.vert_colors[:2].int() - b.vert_colors.int()).abs().max() <= 1


def test_batch_indexing(heads):
    one = heads[3]
    assert len(one) == 1 and torch.equal(one.verts[0], heads.verts[3])
    assert torch.equal(one.faces, heads.faces) and torch.equal(one.face_region, heads.face_region)
    assert len(heads[2:5]) == 3 and len(heads.to("cpu")) == len(heads)
    ids = sample_identities(4, 1)
    assert len(ids[0]) == 1 and len(ids[1:3]) == 2 and len(HeadIdentity.cat([ids, ids[0]])) == 5


# ------------------------------------------------------------------ head shape in oblique views
@pytest.fixture(scope="module")
def straight_heads() -> HeadBatch:
    return build_heads(sample_identities(16, 7), _targets(16))


def _far_margin(h: HeadBatch, yaw_deg: float, corner: int, band: tuple[float, float]) -> torch.Tensor:
    """Orthographic view at ``yaw_deg`` with the eye of ``corner`` (36 or 45) on the far side: how far (mm) the
    face silhouette in the horizontal band ``band`` (mm below the corner) lies beyond the projected corner."""
    th = math.radians(yaw_deg)
    sgn = 1.0 if corner == 45 else -1.0                     # eye 45 is at +x
    v, L = h.verts.double(), h.landmarks.double()
    u = sgn * v[..., 0] * math.cos(th) - v[..., 2] * math.sin(th)     # image axis toward the far side
    uc = sgn * L[:, corner, 0] * math.cos(th) - L[:, corner, 2] * math.sin(th)
    dy = v[..., 1] - L[:, corner, 1:2]
    surf = (h.part_ids < PART["sclera"]) & (dy > band[0]) & (dy < band[1])
    return torch.where(surf, u, torch.full_like(u, -1e9)).max(1).values - uc


def test_face_is_round_in_top_view(straight_heads):
    """The face turns back gradually like a real head, not as a flat mask with sharp sides: the eyes sit in a
    face that curves back from the nose bridge, the cheekbones carry volume lateral to and below the outer eye
    corners, and at 40 deg yaw the far cheekbone still shows beyond the far outer eye corner."""
    h = straight_heads
    L = h.landmarks.double()
    v = h.verts.double()
    # outer eye corners well behind the nose bridge (real faces: ~15-20 mm)
    back = L[:, [36, 45], 2] - L[:, 27:28, 2]
    assert (back > 10).all() and back.median() > 13
    # cheekbone: the surface 15 mm below and 15 mm lateral of the outer eye corner is at most a little behind it
    # (a flat face with sharp sides puts it ~30 mm behind)
    depth = []
    for k, s in ((36, -1.0), (45, 1.0)):
        xt, yt = L[:, k, 0] + 15 * s, L[:, k, 1] + 15
        near = (h.part_ids < PART["sclera"]) & ((v[..., 0] - xt[:, None]).abs() < 2) & \
            ((v[..., 1] - yt[:, None]).abs() < 2)
        zf = torch.where(near, v[..., 2], torch.full_like(v[..., 2], 1e9)).min(1).values
        assert (zf < 1e8).all()
        depth.append(zf - L[:, k, 2])
    depth = torch.cat(depth)
    assert depth.median() < 8 and (depth < 14).all(), depth
    # 40 deg yaw: the far cheekbone (5-25 mm below the eye corner) and temple (5-25 mm above) reach beyond the
    # far outer eye corner (a flat face: ~3 mm, down to ~1 mm)
    cheek = torch.cat([_far_margin(h, 40, 45, (5, 25)), _far_margin(h, 40, 36, (5, 25))])
    assert cheek.median() > 7 and (cheek > 4).all(), cheek
    temple = torch.cat([_far_margin(h, 40, 45, (-25, -5)), _far_margin(h, 40, 36, (-25, -5))])
    assert temple.median() > 6 and (temple > 3).all(), temple
