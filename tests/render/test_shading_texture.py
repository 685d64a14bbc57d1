"""Texturing (vertex colours, UV maps), Phong/Blinn shading, render() and SSAA."""
from __future__ import annotations

import pytest
import torch
from render_helpers import K_UNIT, screen_tri, uv_sphere

from onthefly.render import (
    DirectionalLights,
    Material,
    PointLights,
    UVTexture,
    VertexColors,
    interpolate_vertex_attributes,
    rasterize,
    render,
    sample_bilinear,
)


def _fullscreen_quad(H, W, dtype, device, z=3.0):
    # quad whose corners are the image's outer pixel edges
    corners = [(-0.5, -0.5), (W - 0.5, -0.5), (W - 0.5, H - 0.5), (-0.5, H - 0.5)]
    v = screen_tri(corners, z=z, dtype=dtype, device=device)[None]
    f = torch.tensor([[0, 1, 2], [0, 2, 3]], device=device)
    uvs = torch.tensor([[[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]], dtype=dtype, device=device)
    return v, f, uvs


def _checker(H, W, block, device):
    i = torch.arange(H, device=device)[:, None] // block
    j = torch.arange(W, device=device)[None, :] // block
    c = ((i + j) % 2).to(torch.uint8)
    rgb = torch.stack((c * 200 + 20, (1 - c) * 180 + 10, c * 90 + 40), -1).to(torch.uint8)
    return rgb


def test_checkerboard_texture_lookup(device, dtype):
    H, W = 16, 24
    v, f, uvs = _fullscreen_quad(H, W, dtype, device)
    tex = _checker(H, W, 4, device)[None]  # (1,H,W,3) uint8
    t = UVTexture(maps=tex, verts_uvs=uvs, faces_uvs=f, align_corners=False)
    out = render(v, f, torch.tensor(K_UNIT, dtype=dtype), (H, W), textures=t)
    assert out.mask.all()
    expect = tex[0].permute(2, 0, 1).to(dtype) / 255.0
    assert torch.allclose(out.image[0], expect, atol=1e-4)


def test_bilinear_magnification(device, dtype):
    maps = torch.tensor([[[[0, 0, 0], [255, 255, 255]]]], dtype=torch.uint8, device=device)  # 1x2 texels
    uv = torch.tensor([[0.0, 0.5], [0.5, 0.5], [0.25, 0.5], [1.0, 0.5], [-0.3, 0.5]], dtype=dtype, device=device)
    got = sample_bilinear(maps, torch.zeros(5, dtype=torch.int64, device=device), uv, align_corners=True)
    assert torch.allclose(got[:, 0], torch.tensor([0.0, 0.5, 0.25, 1.0, 0.0], dtype=dtype, device=device), atol=1e-6)


def test_texture_shared_between_views_by_index(device, dtype):
    H, W = 8, 8
    v, f, uvs = _fullscreen_quad(H, W, dtype, device)
    maps = torch.stack([torch.full((4, 4, 3), 10, dtype=torch.uint8), torch.full((4, 4, 3), 250, dtype=torch.uint8)]).to(device)
    idx = torch.tensor([1, 0, 1], device=device)
    t = UVTexture(maps=maps, verts_uvs=uvs, faces_uvs=f, texture_index=idx)
    out = render(v.expand(3, -1, -1), f, torch.tensor(K_UNIT, dtype=dtype), (H, W), textures=t)
    vals = out.image[:, 0, 4, 4] * 255
    assert torch.allclose(vals, torch.tensor([250.0, 10.0, 250.0], dtype=dtype, device=device), atol=1e-3)


def test_vertex_colours_interpolate(device, dtype):
    H, W = 20, 20
    tri = [(1.2, 1.1), (18.7, 2.3), (3.4, 18.2)]
    v = screen_tri(tri, z=2.0, dtype=dtype, device=device)[None]
    f = torch.tensor([[0, 1, 2]], device=device)
    cols = torch.eye(3, dtype=dtype, device=device)[None]
    fr = rasterize(v, f, torch.tensor(K_UNIT, dtype=dtype), (H, W))
    img = interpolate_vertex_attributes(fr, f, cols)
    m = fr.pix_to_face[0] >= 0
    # constant depth: colour == barycentrics
    assert torch.allclose(img[0][m], fr.bary[0][m], atol=1e-5)
    out = render(v, f, torch.tensor(K_UNIT, dtype=dtype), (H, W),
                 textures=VertexColors((cols * 255).round().to(torch.uint8)))
    assert torch.allclose(out.image[0].permute(1, 2, 0)[m], fr.bary[0][m], atol=1e-5)
    assert (out.image[0].permute(1, 2, 0)[~m] == 0).all()


def _plane(dtype, device, z=5.0, half=2.0):
    v = torch.tensor([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]], dtype=dtype, device=device)
    f = torch.tensor([[0, 2, 1], [0, 3, 2]], device=device)  # normal towards the camera (-z)
    return v[None], f


def test_phong_analytic_point_on_plane(device, dtype):
    v, f = _plane(dtype, device)
    K = torch.tensor([[20.0, 0, 15.0], [0, 20.0, 15.0], [0, 0, 1]], dtype=dtype)
    light = PointLights(location=[[0.0, 0.0, 0.0]], ambient=[[0.1, 0.2, 0.3]], diffuse=[[0.5, 0.5, 0.5]],
                        specular=[[0.25, 0.25, 0.25]])
    mat = Material(shininess=10.0)
    out = render(v, f, K, 31, lights=light, material=mat)
    # centre pixel: p = (0,0,5), N = (0,0,-1), L = V = (0,0,-1): N.L = 1, R.V = 1
    c = out.image[0, :, 15, 15]
    expect = torch.tensor([0.1, 0.2, 0.3], dtype=dtype, device=device) + 0.5 + 0.25
    assert torch.allclose(c, expect, atol=1e-5)
    blinn = render(v, f, K, 31, lights=light, material=mat, shading="blinn").image[0, :, 15, 15]
    assert torch.allclose(blinn, expect, atol=1e-5)
    # off-centre pixels are darker (cosine falloff) and Blinn's highlight is wider than Phong's
    off = out.image[0, :, 15, 25]
    assert (off < c).all()
    assert (render(v, f, K, 31, lights=light, material=mat, shading="blinn").image[0, :, 15, 25] >= off - 1e-7).all()


def test_directional_light_and_batch_of_lights(device, dtype):
    v, f = _plane(dtype, device)
    K = torch.tensor([[20.0, 0, 15.0], [0, 20.0, 15.0], [0, 0, 1]], dtype=dtype)
    d = DirectionalLights(direction=[[0.0, 0.0, -1.0], [0.0, 0.0, 1.0]], ambient=[[0.0] * 3, [0.0] * 3],
                          diffuse=[[1.0] * 3, [1.0] * 3], specular=[[0.0] * 3, [0.0] * 3])
    out = render(v.expand(2, -1, -1), f, K, 31, lights=d)
    assert torch.allclose(out.image[0, :, 15, 15], torch.ones(3, dtype=dtype, device=device), atol=1e-6)
    assert torch.allclose(out.image[1, :, 15, 15], torch.zeros(3, dtype=dtype, device=device), atol=1e-6)
    two = render(v, f, K, 31, lights=[d.__class__(direction=[[0.0, 0.0, -1.0]], ambient=0.1, diffuse=0.5,
                                                   specular=0.0)] * 2)
    assert torch.allclose(two.image[0, :, 15, 15], torch.full((3,), 1.2, dtype=dtype, device=device), atol=1e-6)


def test_ssaa_edge_coverage(device, dtype):
    # a vertical half-plane edge through the middle of column 5: coverage 0.5 there with SSAA
    H, W = 6, 10
    quad = [(-10.0, -10.0), (5.0, -10.0), (5.0, 20.0), (-10.0, 20.0)]
    v = screen_tri(quad, z=2.0, dtype=dtype, device=device)[None]
    f = torch.tensor([[0, 1, 2], [0, 2, 3]], device=device)
    K = torch.tensor(K_UNIT, dtype=dtype)
    hard = render(v, f, K, (H, W))
    assert set(hard.mask.unique().tolist()) <= {0.0, 1.0}
    soft = render(v, f, K, (H, W), ssaa=4, textures=torch.ones(1, 4, 3, dtype=dtype))
    assert soft.fragments.pix_to_face.shape == (1, 4 * H, 4 * W)
    assert torch.allclose(soft.mask[0, 0, :, :5], torch.ones((), dtype=dtype, device=device))
    assert torch.allclose(soft.mask[0, 0, :, 5], torch.full((H,), 0.5, dtype=dtype, device=device))
    assert (soft.mask[0, 0, :, 6:] == 0).all()
    # background 0: image is premultiplied by coverage
    assert torch.allclose(soft.image[0, 0], soft.mask[0, 0])


def test_render_background_and_errors(device, dtype):
    v, f = _plane(dtype, device)
    K = torch.tensor([[2.0, 0, 15.0], [0, 2.0, 15.0], [0, 0, 1]], dtype=dtype)
    out = render(v, f, K, 31, background=[0.2, 0.4, 0.6])
    assert torch.allclose(out.image[0, :, 0, 0], torch.tensor([0.2, 0.4, 0.6], dtype=dtype, device=device))
    assert out.image.shape == (1, 3, 31, 31) and out.mask.shape == (1, 1, 31, 31)
    with pytest.raises(ValueError, match="ssaa"):
        render(v, f, K, 31, ssaa=0)
    with pytest.raises(ValueError, match="shading model"):
        render(v, f, K, 31, lights=PointLights(), shading="gouraud")
    with pytest.raises(ValueError, match="texture_index"):
        render(v.expand(3, -1, -1), f, K, 31, textures=UVTexture(
            maps=torch.zeros(2, 4, 4, 3, dtype=torch.uint8), verts_uvs=torch.zeros(1, 4, 2), faces_uvs=f))


def test_sphere_render_batch_consistency(device, dtype):
    vs, fs = uv_sphere(12, 24, dtype)
    verts = torch.stack([vs + torch.tensor([0.3 * b, 0, 4.0], dtype=dtype) for b in range(3)]).to(device)
    K = torch.tensor([[30.0, 0, 15.5], [0, 30.0, 15.5], [0, 0, 1]], dtype=dtype)
    light = PointLights(location=[[1.0, -2.0, 0.0]], ambient=0.3, diffuse=0.6, specular=0.2)
    cols = torch.rand(1, vs.shape[0], 3, generator=torch.Generator().manual_seed(1), dtype=dtype).to(device)
    out = render(verts, fs.to(device), K, 32, textures=cols, lights=light, ssaa=2)
    for b in range(3):
        one = render(verts[b:b + 1], fs.to(device), K, 32, textures=cols, lights=light, ssaa=2)
        assert torch.allclose(one.image[0], out.image[b], atol=1e-6)
        assert torch.equal(one.mask[0], out.mask[b])


def test_render_sub_batches_match(device, dtype, monkeypatch):
    # force the memory guard to split the batch: results must not change
    import importlib

    ch = importlib.import_module("onthefly.render.chunking")  # the one chunking policy

    vs, fs = uv_sphere(10, 20, dtype)
    B = 5
    verts = torch.stack([vs + torch.tensor([0.2 * b, -0.1 * b, 4.0], dtype=dtype) for b in range(B)]).to(device)
    K = torch.tensor([[20.0, 0, 9.5], [0, 20.0, 9.5], [0, 0, 1]], dtype=dtype)
    g = torch.Generator().manual_seed(3)
    light = PointLights(location=torch.randn(B, 3, generator=g, dtype=dtype), ambient=torch.rand(B, 3, generator=g, dtype=dtype),
                        diffuse=0.5, specular=[0.1, 0.2, 0.3])
    mat = Material(shininess=torch.tensor([5.0, 10.0, 20.0, 40.0, 80.0], dtype=dtype))
    maps = (torch.rand(2, 8, 8, 3, generator=g) * 255).to(torch.uint8)
    uvs = torch.rand(1, vs.shape[0], 2, generator=g, dtype=dtype)
    tex = UVTexture(maps=maps, verts_uvs=uvs, faces_uvs=fs, texture_index=torch.tensor([0, 1, 1, 0, 1]))
    kw = dict(textures=tex, lights=[light], material=mat, background=torch.rand(B, 3, generator=g, dtype=dtype))
    full = render(verts, fs, K, 20, **kw)
    monkeypatch.setitem(ch._PIXELS_PER_PASS, "cpu", 2 * 20 * 20)
    monkeypatch.setitem(ch._PIXELS_PER_PASS, "cuda", 2 * 20 * 20)
    monkeypatch.setitem(ch._FACES_PER_PASS, "cpu", 2 * fs.shape[0])
    split = render(verts, fs, K, 20, **kw)
    assert torch.allclose(full.image, split.image, atol=1e-6)
    assert torch.equal(full.fragments.pix_to_face, split.fragments.pix_to_face)
    fr = rasterize(verts, fs, K, 20)
    assert torch.equal(fr.pix_to_face, full.fragments.pix_to_face)


def test_tune_malloc_is_safe_to_call():
    from onthefly.render import tune_malloc

    assert tune_malloc() in (True, False)


def test_render_per_mesh_faces_matches_shared(device, dtype):
    vs, fs = uv_sphere(10, 20, dtype)
    verts = torch.stack([vs + torch.tensor([0.1 * b, 0, 4.0], dtype=dtype) for b in range(2)]).to(device)
    K = torch.tensor([[30.0, 0, 15.5], [0, 30.0, 15.5], [0, 0, 1]], dtype=dtype)
    light = PointLights(location=[[1.0, -2.0, 0.0]], ambient=0.3, diffuse=0.6, specular=0.2)
    shared = render(verts, fs.to(device), K, 32, lights=light)
    pad = torch.cat([fs, torch.full((5, 3), -1)]).expand(2, -1, -1).to(device)
    per = render(verts, pad, K, 32, lights=light)
    assert torch.allclose(shared.image, per.image, atol=1e-6)
    from onthefly.render import vertex_normals

    assert torch.allclose(vertex_normals(verts, fs.to(device)), vertex_normals(verts, pad), atol=1e-6)
