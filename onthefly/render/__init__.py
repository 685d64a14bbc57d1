"""onthefly.render: batched mesh rendering in the OpenCV camera frame (pure torch; PyTorch3D optional).

Stages, one module each::

    rasterize.py    rasterize(verts, faces, K, image_size) -> Fragments(pix_to_face, zbuf, bary)
    interpolate.py  vertex attributes / normals over fragments
    texture.py      VertexColors, UVTexture (one uint8 map per mesh, bilinear)
    shading.py      PointLights, DirectionalLights, Material, phong_shading
    renderer.py     render(...) -> RenderResult(image (B,3,H,W), mask (B,1,H,W), fragments)
    cameras.py      OpenCV <-> PyTorch3D camera conventions (pure torch)
    pytorch3d_backend.py  backend="pytorch3d" (lazy import)
    memory.py       tune_malloc(): opt-in glibc allocator settings for CPU render workers
"""
from .interpolate import interpolate_vertex_attributes, vertex_normals
from .memory import tune_malloc
from .fragments import Fragments
from .rasterize import rasterize
from .renderer import RenderResult, render, scale_intrinsics
from .shading import DirectionalLights, Material, PointLights, phong_shading
from .texture import UVTexture, VertexColors, sample_bilinear

__all__ = [
    "Fragments", "rasterize", "render", "RenderResult", "scale_intrinsics",
    "interpolate_vertex_attributes", "vertex_normals",
    "VertexColors", "UVTexture", "sample_bilinear",
    "PointLights", "DirectionalLights", "Material", "phong_shading", "tune_malloc",
]
