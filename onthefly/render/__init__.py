"""onthefly.render: batched mesh rendering in the OpenCV camera frame (compiled numba kernels on the CPU, pure
torch as the reference and on CUDA, PyTorch3D optional; see backends.py).

Stages, one module each::

    fragments.py    Fragments, prepare_inputs (shared by every backend)
    backends.py     rasterize(verts, faces, K, image_size) -> Fragments(pix_to_face, zbuf, bary); the backend
                    table: torch, numba, pytorch3d; backend="auto"
    chunking.py     the one chunking policy (samples per pass)
    rasterize.py    the torch rasterizer (the reference backend)
    numba_kernels.py  compiled CPU raster (bit-exact) and fused shader
    interpolate.py  vertex attributes / normals over fragments
    texture.py      VertexColors, UVTexture (one uint8 map per mesh, bilinear)
    shading.py      PointLights, DirectionalLights, Material, phong_shading
    renderer.py     render(...) -> RenderResult(image (B,3,H,W), mask (B,1,H,W), fragments)
    cameras.py      OpenCV <-> PyTorch3D camera conventions (pure torch)
    pytorch3d_backend.py  backend="pytorch3d" (lazy import)
    memory.py       tune_malloc(): glibc allocator settings for CPU render workers (the dataset's default on CPU)
"""
from .backends import rasterize
from .fragments import Fragments
from .interpolate import interpolate_vertex_attributes, vertex_normals
from .memory import tune_malloc
from .renderer import RenderResult, render, scale_intrinsics
from .shading import DirectionalLights, Material, PointLights, phong_shading
from .texture import UVTexture, VertexColors, sample_bilinear

__all__ = [
    "Fragments", "rasterize", "render", "RenderResult", "scale_intrinsics",
    "interpolate_vertex_attributes", "vertex_normals",
    "VertexColors", "UVTexture", "sample_bilinear",
    "PointLights", "DirectionalLights", "Material", "phong_shading", "tune_malloc",
]
