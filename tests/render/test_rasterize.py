"""Analytic rasterizer tests: pixel-centre rule, tie rule, depth, silhouettes, batching, large faces."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from render_helpers import K_UNIT, cube, rot, screen_tri, uv_sphere

from onthefly.render import rasterize


def _inside_exact(tri, px, py):
    """Strict inside test with exact rational arithmetic (no centre may lie on an edge)."""
    (ax, ay), (bx, by), (cx, cy) = [(Fraction(x), Fraction(y)) for x, y in tri]
    p = (Fraction(px), Fraction(py))

    def e(x0, y0, x1, y1):
        return (x1 - x0) * (p[1] - y0) - (y1 - y0) * (p[0] - x0)

    w = (e(bx, by, cx, cy), e(cx, cy, ax, ay), e(ax, ay, bx, by))
    assert all(x != 0 for x in w), "test triangle puts a pixel centre on an edge"
    return all(x > 0 for x in w) or all(x < 0 for x in w)


@pytest.mark.parametrize("tri", [
    [(3.3, 2.1), (17.7, 5.2), (8.1, 14.6)],
    [(17.7, 5.2), (3.3, 2.1), (8.1, 14.6)],  # other winding
    [(-4.25, -3.1), (30.4, 7.3), (10.2, 25.9)],  # clipped by the image border
    [(5.2, 5.3), (5.9, 5.4), (5.6, 5.8)],  # sub-pixel: covers nothing
    [(0.3, 0.2), (18.8, 0.4), (0.1, 15.7)],
])
def test_single_triangle_matches_pixel_centre_rule(tri, device, dtype):
    H, W = 16, 20
    v = screen_tri(tri, z=2.5, dtype=dtype, device=device).unsqueeze(0)
    fr = rasterize(v, torch.tensor([[0, 1, 2]], device=device), torch.tensor(K_UNIT, dtype=dtype), (H, W))
    expect = torch.tensor([[_inside_exact(tri, j, i) for j in range(W)] for i in range(H)])
    assert torch.equal((fr.pix_to_face[0] == 0).cpu(), expect)
    assert ((fr.pix_to_face[0] == -1) == ~expect.to(device)).all()


def test_tie_rule_shared_edges_cover_once(device, dtype):
    # square with integer corners split along the diagonal: centres on the diagonal are on a shared
    # edge; centres on the square's left/top edges are in (top-left rule), right/bottom out.
    H, W = 12, 14
    quad = [(2, 3), (10, 3), (10, 9), (2, 9)]
    K = torch.tensor(K_UNIT, dtype=dtype)
    v = screen_tri(quad, z=1.0, dtype=dtype, device=device).unsqueeze(0)
    for tris in ([[0, 1, 2], [0, 2, 3]], [[0, 2, 1], [0, 3, 2]], [[1, 2, 3], [1, 3, 0]]):
        f = torch.tensor(tris, device=device)
        both = rasterize(v, f, K, (H, W)).pix_to_face[0]
        a = rasterize(v, f[:1], K, (H, W)).pix_to_face[0] == 0
        b = rasterize(v, f[1:], K, (H, W)).pix_to_face[0] == 0
        expect = torch.zeros(H, W, dtype=torch.bool, device=device)
        expect[3:9, 2:10] = True
        assert not (a & b).any(), "a centre on the shared edge was covered twice"
        assert torch.equal(a | b, expect)
        assert torch.equal(both >= 0, expect)


def test_fan_around_vertex_on_pixel_centre(device, dtype):
    # 6 triangles around a vertex sitting exactly on a pixel centre: it is covered exactly once
    import math
    c = (6.0, 6.0)
    ring = [(c[0] + 4 * math.cos(a), c[1] + 4 * math.sin(a)) for a in [k * math.pi / 3 + 0.1 for k in range(6)]]
    pts = [c] + ring
    v = screen_tri(pts, dtype=dtype, device=device).unsqueeze(0)
    K = torch.tensor(K_UNIT, dtype=dtype)
    faces = [[0, 1 + k, 1 + (k + 1) % 6] for k in range(6)]
    count = torch.zeros(13, 13, dtype=torch.int64, device=device)
    for f in faces:
        count += (rasterize(v, torch.tensor([f], device=device), K, 13).pix_to_face[0] == 0).long()
    assert count[6, 6] == 1
    assert count.max() == 1


def test_overlapping_triangles_depth(device, dtype):
    # two triangles crossing each other in depth: brute-force the nearest by ray/plane intersection
    H, W = 24, 24
    tA = torch.tensor([[2.1, 2.3, 4.0], [22.2, 3.4, 4.0], [4.3, 21.2, 10.0]], dtype=dtype)
    tB = torch.tensor([[21.3, 20.1, 4.0], [3.2, 5.4, 7.0], [20.4, 1.3, 9.0]], dtype=dtype)
    # give screen positions directly: x,y are pixel coords at depth 1 -> scale by z
    verts = torch.cat([tA, tB])
    verts = torch.stack((verts[:, 0] * verts[:, 2], verts[:, 1] * verts[:, 2], verts[:, 2]), 1)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    fr = rasterize(verts[None].to(device), faces.to(device), torch.tensor(K_UNIT, dtype=dtype), (H, W))
    # brute force
    exp = torch.full((H, W), -1, dtype=torch.int64)
    zexp = torch.full((H, W), -1.0, dtype=torch.float64)
    near_tie = torch.zeros((H, W), dtype=torch.bool)
    vv = verts.double()
    for i in range(H):
        for j in range(W):
            d = torch.tensor([j, i, 1.0], dtype=torch.float64)  # ray direction
            best = None
            for fi, f in enumerate(faces.tolist()):
                p0, p1, p2 = vv[f]
                n = torch.linalg.cross(p1 - p0, p2 - p0)
                t = (n @ p0) / (n @ d)
                q = t * d
                # inside test in 3D
                ok = all(((torch.linalg.cross(b - a, q - a)) @ n) > 0 for a, b in ((p0, p1), (p1, p2), (p2, p0)))
                if ok and best is not None and abs(float(t) - best[0]) < 1e-3:
                    near_tie[i, j] = True
                if ok and (best is None or t < best[0]):
                    best = (float(t), fi)
            if best is not None:
                exp[i, j], zexp[i, j] = best[1], best[0]
    got = fr.pix_to_face[0].cpu()
    assert (got == exp)[~near_tie].all()  # near-ties along the intersection line may go either way
    assert (exp >= 0).sum() > 100 and (exp == 0).sum() > 20 and (exp == 1).sum() > 20
    m = (got == exp) & (exp >= 0)
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    assert torch.allclose(fr.zbuf[0].cpu().double()[m], zexp[m], rtol=tol, atol=tol)
    assert (fr.zbuf[0][fr.pix_to_face[0] < 0] == -1).all()


def _convex_hull_inside(pts, px, py, margin=1e-6):
    """Inside (1), outside (0) or ambiguous (-1) of the convex hull of pts for each pixel centre."""
    import numpy as np
    from scipy.spatial import ConvexHull

    hull = ConvexHull(pts)
    eq = hull.equations  # a*x + b*y + c <= 0 inside
    q = np.stack([px.ravel(), py.ravel()], 1)
    d = q @ eq[:, :2].T + eq[:, 2]
    norms = np.linalg.norm(eq[:, :2], axis=1)
    dist = (d / norms).max(1)
    out = np.where(dist < -margin, 1, np.where(dist > margin, 0, -1))
    return out.reshape(px.shape)


def test_cube_silhouette(device, dtype):
    import numpy as np

    v, f = cube(dtype)
    R = rot(0.4, -0.7, 0.2, dtype)
    cam = v @ R.T + torch.tensor([0.2, -0.1, 6.0], dtype=dtype)
    K = torch.tensor([[60.0, 0, 31.5], [0, 55.0, 29.0], [0, 0, 1]], dtype=dtype)
    H, W = 60, 64
    fr = rasterize(cam[None].to(device), f.to(device), K, (H, W))
    uv = (cam @ K.T)
    uv = (uv[:, :2] / uv[:, 2:]).numpy()
    py, px = np.mgrid[0:H, 0:W].astype(np.float64)
    ins = _convex_hull_inside(uv, px, py)
    got = (fr.pix_to_face[0] >= 0).cpu().numpy()
    ok = ins >= 0
    assert (got[ok] == (ins[ok] == 1)).all()
    # visible faces are front faces: back-face culling changes nothing for a closed convex mesh
    fr2 = rasterize(cam[None].to(device), f.to(device), K, (H, W), cull_backfaces=True)
    assert torch.equal(fr2.pix_to_face, fr.pix_to_face)


def test_watertight_sphere_no_holes(device, dtype):
    # a closed mesh seen from outside: its silhouette has no holes and every face index is valid
    v, f = uv_sphere(24, 48, dtype)
    cam = v @ rot(0.3, 0.5, 0.1, dtype).T + torch.tensor([0, 0, 4.0], dtype=dtype)
    K = torch.tensor([[90.0, 0, 40.0], [0, 90.0, 40.0], [0, 0, 1]], dtype=dtype)
    fr = rasterize(cam[None].to(device), f.to(device), K, 81)
    uv = cam @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    # pixels well inside the projected disc must all be covered
    r = torch.hypot(torch.arange(81.0)[None, :] - 40.0, torch.arange(81.0)[:, None] - 40.0)
    rad = (uv - 40.0).norm(dim=1).max()
    inner = r < rad - 2.0
    assert (fr.pix_to_face[0].cpu()[inner] >= 0).all()


def test_batch_equals_one_by_one(device, dtype):
    v, f = uv_sphere(16, 32, dtype)
    B = 5
    cams, Ks = [], []
    for b in range(B):
        R = rot(0.3 * b, -0.2 * b + 0.1, 0.05 * b, dtype)
        cams.append(v @ R.T + torch.tensor([0.1 * b, -0.05 * b, 3.0 + 0.4 * b], dtype=dtype))
        Ks.append(torch.tensor([[50.0 + 5 * b, 0, 23.5], [0, 52.0, 20.25 + b], [0, 0, 1]], dtype=dtype))
    verts = torch.stack(cams).to(device)
    K = torch.stack(Ks).to(device)
    fr = rasterize(verts, f.to(device), K, (40, 48))
    for b in range(B):
        one = rasterize(verts[b:b + 1], f.to(device), K[b:b + 1], (40, 48))
        assert torch.equal(one.pix_to_face[0], fr.pix_to_face[b])
        assert torch.equal(one.zbuf[0], fr.zbuf[b])
        assert torch.equal(one.bary[0], fr.bary[b])


def test_per_mesh_faces_match_shared(device, dtype):
    v, f = uv_sphere(12, 24, dtype)
    cam = torch.stack([v @ rot(0.2 * b, 0.3, 0, dtype).T + torch.tensor([0, 0, 3.0], dtype=dtype) for b in range(3)])
    K = torch.tensor([[40.0, 0, 19.5], [0, 40.0, 19.5], [0, 0, 1]], dtype=dtype)
    shared = rasterize(cam.to(device), f.to(device), K, 40)
    per = rasterize(cam.to(device), f.expand(3, -1, -1).to(device), K, 40)
    assert torch.equal(shared.pix_to_face, per.pix_to_face)
    # packed per-mesh faces as a list of different lengths (padded with -1 rows internally)
    lst = rasterize([cam[0].to(device), cam[1].to(device)], [f.to(device), f[: f.shape[0] // 2].to(device)], K, 40)
    assert torch.equal(lst.pix_to_face[0], shared.pix_to_face[0])
    half = lst.pix_to_face[1]
    assert (half < f.shape[0] // 2).all()
    keep = (shared.pix_to_face[1] >= 0) & (shared.pix_to_face[1] < f.shape[0] // 2)
    assert (half[keep] >= 0).all()


def test_large_faces_are_never_dropped(device, dtype):
    # two triangles far larger than the image (tile path), non-square image, plus a tiny triangle
    H, W = 70, 101
    quad = [(-500.0, -300.0), (800.0, -300.0), (800.0, 900.0), (-500.0, 900.0)]
    v = screen_tri(quad, z=10.0, dtype=dtype, device=device)
    tiny = screen_tri([(50.2, 30.1), (51.9, 30.3), (50.6, 31.8)], z=5.0, dtype=dtype, device=device)
    verts = torch.cat([v, tiny])[None]
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6]], device=device)
    fr = rasterize(verts, faces, torch.tensor(K_UNIT, dtype=dtype), (H, W))
    assert (fr.pix_to_face[0] >= 0).all()
    assert (fr.pix_to_face[0] == 2).sum() >= 1
    assert torch.allclose(fr.zbuf[0][fr.pix_to_face[0] < 2], torch.tensor(10.0, dtype=dtype, device=device))
    # a big triangle of ~100 px (between bucket sizes) matches the exact rule
    tri = [(3.3, 2.2), (97.7, 15.1), (40.1, 68.6)]
    fr = rasterize(screen_tri(tri, dtype=dtype, device=device)[None], torch.tensor([[0, 1, 2]], device=device),
                   torch.tensor(K_UNIT, dtype=dtype), (H, W))
    expect = torch.tensor([[_inside_exact(tri, j, i) for j in range(W)] for i in range(H)])
    assert torch.equal((fr.pix_to_face[0] == 0).cpu(), expect)


def test_tiny_images(device, dtype):
    tri = [(-3.0, -2.0), (9.0, 0.5), (0.5, 8.0)]
    for size in [(1, 1), (1, 5), (3, 2)]:
        fr = rasterize(screen_tri(tri, dtype=dtype, device=device)[None], torch.tensor([[0, 1, 2]], device=device),
                       torch.tensor(K_UNIT, dtype=dtype), size)
        expect = torch.tensor([[_inside_exact(tri, j, i) for j in range(size[1])] for i in range(size[0])])
        assert torch.equal((fr.pix_to_face[0] == 0).cpu(), expect)


def test_near_plane_rejects_faces(device, dtype):
    K = torch.tensor([[20.0, 0, 10], [0, 20.0, 10], [0, 0, 1]], dtype=dtype)
    verts = torch.tensor([[[-1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [0.0, 1.0, -1.0],  # crosses z=0
                           [-1.0, -1.0, -2.0], [1.0, -1.0, -2.0], [0.0, 1.0, -2.0],  # behind
                           [-0.2, -0.2, 3.0], [0.2, -0.2, 3.0], [0.0, 0.2, 3.0]]], dtype=dtype, device=device)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 8]], device=device)
    fr = rasterize(verts, faces, K, 21)
    assert set(fr.pix_to_face.unique().tolist()) == {-1, 2}
    fr = rasterize(verts, faces, K, 21, znear=3.5)
    assert (fr.pix_to_face == -1).all()


def test_bary_and_zbuf_are_perspective_correct(device, dtype):
    # interpolating the camera-space vertices with bary gives a point on the pixel's ray at depth zbuf
    v, f = uv_sphere(10, 20, dtype)
    cam = v @ rot(0.1, 0.7, 0.0, dtype).T + torch.tensor([0.1, 0.2, 2.5], dtype=dtype)
    K = torch.tensor([[30.0, 0, 15.5], [0, 32.0, 14.0], [0, 0, 1]], dtype=dtype)
    fr = rasterize(cam[None].to(device), f.to(device), K, (30, 32))
    p2f = fr.pix_to_face[0].cpu()
    i, j = (p2f >= 0).nonzero(as_tuple=True)
    P = (fr.bary[0].cpu()[i, j].unsqueeze(-1) * cam[f[p2f[i, j]]]).sum(1)
    tol = 2e-3 if dtype == torch.float32 else 1e-8
    assert torch.allclose(P[:, 2], fr.zbuf[0].cpu()[i, j], atol=tol, rtol=tol)
    u = K[0, 0] * P[:, 0] / P[:, 2] + K[0, 2]
    w = K[1, 1] * P[:, 1] / P[:, 2] + K[1, 2]
    assert torch.allclose(u, j.to(dtype), atol=tol * 10) and torch.allclose(w, i.to(dtype), atol=tol * 10)
    assert torch.allclose(fr.bary[0].cpu()[i, j].sum(1), torch.ones((), dtype=dtype), atol=tol)
    assert (fr.bary[0][p2f < 0] == -1).all()


# ------------------------------------------------------------------------------------------ bad input

def _tri(dtype=torch.float32):
    return torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]], dtype=dtype)


K8 = torch.tensor([[8.0, 0, 4], [0, 8.0, 4], [0, 0, 1]])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_verts_raise(bad):
    v = _tri().repeat(4, 1, 1)
    v[3, 1, 2] = bad
    with pytest.raises(ValueError, match=r"verts contains NaN/inf at batch 3"):
        rasterize(v, torch.tensor([[0, 1, 2]]), K8, 8)


def test_face_index_out_of_range_raises():
    with pytest.raises(ValueError, match=r"faces index 3 out of range for 3 vertices"):
        rasterize(_tri(), torch.tensor([[0, 1, 3]]), K8, 8)
    with pytest.raises(ValueError, match=r"faces index -2 out of range"):
        rasterize(_tri(), torch.tensor([[0, -2, 1]]), K8, 8)
    with pytest.raises(ValueError, match=r"faces index 7 out of range for 3 vertices \(mesh 1"):
        rasterize(_tri().repeat(2, 1, 1), torch.tensor([[[0, 1, 2]], [[0, 7, 2]]]), K8, 8)


def test_empty_meshes_raise():
    with pytest.raises(ValueError, match=r"verts is empty"):
        rasterize(torch.zeros(1, 0, 3), torch.tensor([[0, 1, 2]]), K8, 8)
    with pytest.raises(ValueError, match=r"faces is empty"):
        rasterize(_tri(), torch.zeros(0, 3, dtype=torch.int64), K8, 8)
    with pytest.raises(ValueError, match=r"faces is empty for mesh 1"):
        rasterize([_tri()[0], _tri()[0]], [torch.tensor([[0, 1, 2]]), torch.zeros(0, 3, dtype=torch.int64)], K8, 8)


def test_bad_K_and_shapes_raise():
    K = K8.repeat(3, 1, 1)
    K[2, 1, 1] = 0.0
    with pytest.raises(ValueError, match=r"K\[2\] has non-positive focal length"):
        rasterize(_tri().repeat(3, 1, 1), torch.tensor([[0, 1, 2]]), K, 8)
    K = K8.repeat(3, 1, 1)
    K[1, 0, 0] = -5.0
    with pytest.raises(ValueError, match=r"K\[1\] has non-positive focal length"):
        rasterize(_tri().repeat(3, 1, 1), torch.tensor([[0, 1, 2]]), K, 8)
    with pytest.raises(ValueError, match=r"K has batch 2 but verts has batch 3"):
        rasterize(_tri().repeat(3, 1, 1), torch.tensor([[0, 1, 2]]), K8.repeat(2, 1, 1), 8)
    with pytest.raises(ValueError, match=r"faces must be an integer tensor"):
        rasterize(_tri(), torch.tensor([[0.0, 1.0, 2.0]]), K8, 8)
    with pytest.raises(ValueError, match=r"verts must have shape"):
        rasterize(torch.zeros(1, 3, 2), torch.tensor([[0, 1, 2]]), K8, 8)
    with pytest.raises(ValueError, match=r"image_size must be positive"):
        rasterize(_tri(), torch.tensor([[0, 1, 2]]), K8, (0, 8))
    with pytest.raises(ValueError, match=r"backend must be"):
        rasterize(_tri(), torch.tensor([[0, 1, 2]]), K8, 8, backend="opengl")


def test_chunking_does_not_change_results(device, dtype, monkeypatch):
    import importlib

    ch = importlib.import_module("onthefly.render.chunking")
    v, f = uv_sphere(12, 24, dtype)
    quad = screen_tri([(-300.0, -200.0), (400.0, -200.0), (400.0, 300.0), (-300.0, 300.0)], z=9.0, dtype=dtype)
    verts = torch.cat([v @ rot(0.3, 0.2, 0.1, dtype).T + torch.tensor([0, 0, 3.0], dtype=dtype), quad])
    faces = torch.cat([f, torch.tensor([[0, 1, 2], [0, 2, 3]]) + v.shape[0]])
    verts = torch.stack([verts, verts * torch.tensor([1.0, 1.0, 1.1], dtype=dtype)]).to(device)
    K = torch.tensor([[40.0, 0, 20.0], [0, 40.0, 18.0], [0, 0, 1]], dtype=dtype)
    ref = rasterize(verts, faces.to(device), K, (37, 41))
    monkeypatch.setitem(ch._CANDIDATES, "cpu", 50)
    monkeypatch.setitem(ch._CANDIDATES, "cuda", 50)
    monkeypatch.setitem(ch._FACES_PER_PASS, "cpu", faces.shape[0])
    monkeypatch.setitem(ch._FACES_PER_PASS, "cuda", faces.shape[0])
    got = rasterize(verts, faces.to(device), K, (37, 41))
    assert torch.equal(ref.pix_to_face, got.pix_to_face)
    assert torch.equal(ref.zbuf, got.zbuf) and torch.equal(ref.bary, got.bary)
    assert (ref.pix_to_face >= 0).all()
