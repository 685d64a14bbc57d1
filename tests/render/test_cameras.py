"""Pure-torch OpenCV <-> PyTorch3D camera conversion (no PyTorch3D needed)."""
import torch
from render_helpers import rot

from onthefly.render.cameras import opencv_to_pytorch3d, pytorch3d_to_opencv


def test_round_trip_and_projection(dtype):
    g = torch.Generator().manual_seed(0)
    B = 4
    R = torch.stack([rot(*(torch.rand(3, generator=g) * 3).tolist(), dtype) for _ in range(B)])
    t = torch.randn(B, 3, generator=g, dtype=dtype) + torch.tensor([0, 0, 8.0], dtype=dtype)
    K = torch.tensor([[500.0, 0, 111.5], [0, 480.0, 120.25], [0, 0, 1]], dtype=dtype).repeat(B, 1, 1)
    p3 = opencv_to_pytorch3d(R, t, K, (240, 224))
    X = torch.randn(B, 10, 3, generator=g, dtype=dtype)
    # PyTorch3D screen projection (in_ndc=False): x = -f X/Z + p on X_view = X @ R + T
    Xv = X @ p3["R"] + p3["T"][:, None]
    sx = -p3["focal_length"][:, None, 0] * Xv[..., 0] / Xv[..., 2] + p3["principal_point"][:, None, 0]
    sy = -p3["focal_length"][:, None, 1] * Xv[..., 1] / Xv[..., 2] + p3["principal_point"][:, None, 1]
    Xc = X @ R.transpose(1, 2) + t[:, None]
    u = K[:, None, 0, 0] * Xc[..., 0] / Xc[..., 2] + K[:, None, 0, 2]
    v = K[:, None, 1, 1] * Xc[..., 1] / Xc[..., 2] + K[:, None, 1, 2]
    tol = 1e-3 if dtype == torch.float32 else 1e-9
    assert torch.allclose(sx - 0.5, u, atol=tol) and torch.allclose(sy - 0.5, v, atol=tol)
    assert torch.allclose(Xv[..., 2], Xc[..., 2], atol=tol)
    R2, t2, K2 = pytorch3d_to_opencv(p3["R"], p3["T"], p3["focal_length"], p3["principal_point"])
    assert torch.allclose(R2, R) and torch.allclose(t2, t) and torch.allclose(K2, K)
    assert p3["image_size"].tolist() == [[240, 224]] * B
