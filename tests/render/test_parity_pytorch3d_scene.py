"""Parity with the PyTorch3D 0.7.9 reference scene in ../shared/reference/pytorch3d-scene/.

The scene's camera is a real PyTorch3D ``PerspectiveCameras(in_ndc=False)``; it is converted to the
OpenCV frame with :mod:`onthefly.render.cameras`, rendered with the torch backend and compared with
PyTorch3D's stored outputs.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from onthefly.render import PointLights, render, vertex_normals
from onthefly.render.cameras import opencv_to_pytorch3d, pytorch3d_to_opencv, pytorch3d_world_to_opencv

SCENE = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "pytorch3d-scene"


@pytest.fixture(scope="module")
def scene():
    if not (SCENE / "scene.json").is_file() or not (SCENE / "scene.npz").is_file():
        pytest.skip(f"reference scene not found at {SCENE}")
    meta = json.loads((SCENE / "scene.json").read_text())
    with np.load(SCENE / "scene.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return meta, arrays


def _camera(meta, dtype):
    cam = meta["camera"]
    R = torch.tensor(cam["R"], dtype=dtype)
    T = torch.tensor(cam["T"], dtype=dtype)
    R_cv, t_cv, K = pytorch3d_to_opencv(R, T, torch.tensor(cam["focal_length_px"], dtype=dtype)[None],
                                        torch.tensor(cam["principal_point_px"], dtype=dtype)[None])
    return R, T, R_cv[0], t_cv[0], K[0]


def test_camera_conversion_matches_scene(scene, dtype):
    meta, a = scene
    R, T, R_cv, t_cv, K = _camera(meta, dtype)
    X = torch.tensor(a["verts"], dtype=dtype)
    cv = X @ R_cv.T + t_cv
    # same as the documented shortcut, and as PyTorch3D's own view-space vertices
    assert torch.allclose(cv, pytorch3d_world_to_opencv(X, R, T), atol=1e-6)
    assert torch.allclose(cv * torch.tensor([-1.0, -1.0, 1.0], dtype=dtype),
                          torch.tensor(a["verts_view"], dtype=dtype), atol=1e-5)
    # OpenCV projection == PyTorch3D screen coordinates - 0.5 (pixel centre convention)
    uv = cv @ K.T
    uv = uv[:, :2] / uv[:, 2:]
    assert torch.allclose(uv, torch.tensor(a["verts_screen"][:, :2], dtype=dtype) - 0.5, atol=2e-4)
    assert abs(float(K[0, 2]) - (meta["camera"]["principal_point_px"][0] - 0.5)) < 1e-9
    # R_cv is a proper rotation; camera centre agrees
    assert torch.allclose(R_cv @ R_cv.T, torch.eye(3, dtype=dtype), atol=1e-6)
    assert torch.allclose(torch.det(R_cv), torch.ones((), dtype=dtype), atol=1e-6)
    C = -R_cv.T @ t_cv
    assert torch.allclose(C, torch.tensor(meta["camera"]["camera_center_world"], dtype=dtype), atol=1e-5)
    # round trip back to the PyTorch3D parameters
    p3 = opencv_to_pytorch3d(R_cv[None], t_cv[None], K[None], meta["camera"]["image_size_hw"])
    assert torch.allclose(p3["R"][0], R, atol=1e-7) and torch.allclose(p3["T"][0], T, atol=1e-7)
    assert torch.allclose(p3["focal_length"][0], torch.tensor(meta["camera"]["focal_length_px"], dtype=dtype))
    assert torch.allclose(p3["principal_point"][0], torch.tensor(meta["camera"]["principal_point_px"], dtype=dtype))
    assert p3["in_ndc"] is False and p3["image_size"].tolist() == [[224, 224]]
    # the 4x4 world-to-view matrix of the scene is [R 0; T 1] (row vectors)
    M = torch.tensor(meta["camera"]["world_to_view_matrix_4x4"], dtype=dtype)
    assert torch.allclose(M[:3, :3], R) and torch.allclose(M[3, :3], T)


def _render_scene(meta, a, dtype):
    R, T, R_cv, t_cv, K = _camera(meta, dtype)
    verts = (torch.tensor(a["verts"], dtype=dtype) @ R_cv.T + t_cv)[None]
    faces = torch.tensor(a["faces"])
    L = meta["light"]
    loc = torch.tensor(L["location"], dtype=dtype) @ R_cv.T + t_cv  # world -> camera frame
    light = PointLights(location=loc[None], ambient=[L["ambient_color"]], diffuse=[L["diffuse_color"]],
                        specular=[L["specular_color"]])
    m = meta["material"]
    from onthefly.render import Material
    mat = Material(ambient=[m["ambient_color"]], diffuse=[m["diffuse_color"]], specular=[m["specular_color"]],
                   shininess=m["shininess"])
    colors = torch.tensor(a["vert_colors"], dtype=dtype)[None]
    H, W = meta["image_size"]
    out = render(verts, faces, K, (H, W), textures=colors, lights=light, material=mat,
                 background=meta["blend"]["background_color"])
    return out, verts, faces, R_cv


def test_parity_fragments_and_shading(scene, dtype):
    meta, a = scene
    out, verts, faces, R_cv = _render_scene(meta, a, dtype)
    p2f = out.fragments.pix_to_face[0].numpy()
    ref = a["pix_to_face"]
    agree = (p2f == ref).mean()
    mask_agree = ((p2f >= 0) == (ref >= 0)).mean()
    assert agree >= 0.999, f"pix_to_face agreement {agree:.5f}"
    assert mask_agree >= 0.999, f"mask agreement {mask_agree:.5f}"
    assert np.array_equal(out.mask[0, 0].numpy() > 0, a["image_rgba"][..., 3] > 0) or mask_agree >= 0.999
    same = (p2f == ref) & (ref >= 0)
    zerr = np.abs(out.fragments.zbuf[0].numpy() - a["zbuf"])[same].max()
    berr = np.abs(out.fragments.bary[0].numpy() - a["bary_coords"])[same].max()
    assert zerr < 1e-4 and berr < 5e-3, (zerr, berr)
    assert (out.fragments.zbuf[0].numpy()[p2f < 0] == -1).all()
    img = out.image[0].permute(1, 2, 0).numpy()
    mad = np.abs(img - a["image_rgba"][..., :3]).mean() * 255.0
    assert mad < 0.5, f"RGB mean abs diff {mad:.4f}/255"
    # vertex normals: ours (camera frame) == PyTorch3D's (world frame) rotated into the camera frame
    vn = vertex_normals(verts, faces)[0]
    ref_n = torch.tensor(a["vert_normals"], dtype=verts.dtype) @ R_cv.T
    assert torch.allclose(vn, ref_n, atol=1e-3)
