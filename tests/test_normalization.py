"""onthefly.normalization against the reference maths (anchor-pipelines.md §1) written out in numpy."""
import cv2
import numpy as np
import pytest
import torch

from onthefly.geometry import pitchyaw_to_rotation
from onthefly.normalization import (
    PRESETS,
    NormalizedCamera,
    denormalize_gaze,
    face_centre,
    get_camera,
    normalization_rotation,
    normalize,
    normalize_batch,
    normalize_geometry,
    warp_images,
)


# --- an independent reference, straight from the formulas -------------------------------------------------
def ref_normalize(K, hR, c, f_n, d_n, w, h, target, lm2d):
    d = np.linalg.norm(c)
    forward = c / d
    down = np.cross(forward, hR[:, 0])
    down /= np.linalg.norm(down)
    right = np.cross(down, forward)
    right /= np.linalg.norm(right)
    R = np.stack([right, down, forward])
    S = np.diag([1.0, 1.0, d_n / d])
    Kn = np.array([[f_n, 0, w / 2], [0, f_n, h / 2], [0, 0, 1.0]])
    W = Kn @ S @ R @ np.linalg.inv(K)
    g = R @ (target - c)
    g /= np.linalg.norm(g)
    v = -g
    gaze = np.array([np.arcsin(v[1]), np.arctan2(v[0], v[2])])
    Hn = R @ hR
    head = np.array([np.arcsin(Hn[1, 2]), np.arctan2(Hn[0, 2], Hn[2, 2])])
    lm = cv2.perspectiveTransform(lm2d.reshape(-1, 1, 2), W).reshape(-1, 2)
    return R, W, gaze, head, lm


def random_scene(rng):
    K = np.array([[rng.uniform(600, 1800), 0, rng.uniform(300, 700)],
                  [0, 0, rng.uniform(200, 500)], [0, 0, 1.0]])
    K[1, 1] = K[0, 0] * rng.uniform(0.98, 1.02)
    hR = cv2.Rodrigues(rng.normal(size=3) * 0.4)[0]
    c = np.array([rng.uniform(-150, 150), rng.uniform(-100, 100), rng.uniform(350, 1200)])
    target = c + rng.normal(size=3) * 300 + np.array([0, 0, -600.0])
    lm2d = rng.uniform(100, 600, size=(68, 2))
    return K, hR, c, target, lm2d


@pytest.mark.parametrize("preset", ["xgaze224", "xgaze448"])
def test_matches_reference_maths(preset):
    cam = PRESETS[preset]
    rng = np.random.default_rng(0)
    for _ in range(25):
        K, hR, c, target, lm2d = random_scene(rng)
        R, W, gaze, head, lm = ref_normalize(K, hR, c, cam.focal, cam.distance, cam.width, cam.height,
                                             target, lm2d)
        geo = normalize_geometry(torch.from_numpy(K), torch.from_numpy(hR), torch.from_numpy(c), preset,
                                 gaze_target=torch.from_numpy(target), landmarks_2d=torch.from_numpy(lm2d))
        np.testing.assert_allclose(geo.R.numpy(), R, atol=1e-12)
        np.testing.assert_allclose(geo.W.numpy(), W, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(geo.gaze.numpy(), gaze, atol=1e-12)
        np.testing.assert_allclose(geo.head_pose.numpy(), head, atol=1e-12)
        np.testing.assert_allclose(geo.landmarks.numpy(), lm, atol=1e-8)


def test_batched_equals_one_by_one(device, dtype):
    rng = np.random.default_rng(1)
    scenes = [random_scene(rng) for _ in range(6)]
    stack = lambda i: torch.from_numpy(np.stack([s[i] for s in scenes])).to(dtype=dtype, device=device)  # noqa: E731
    geo = normalize_geometry(stack(0), stack(1), stack(2), gaze_target=stack(3), landmarks_2d=stack(4))
    assert geo.R.shape == (6, 3, 3) and geo.landmarks.shape == (6, 68, 2) and geo.gaze.shape == (6, 2)
    assert geo.R.dtype == dtype and geo.R.device.type == device.type
    tol = dict(atol=2e-4, rtol=2e-4) if dtype == torch.float32 else dict(atol=1e-9, rtol=1e-9)
    for i, (K, hR, c, t, lm) in enumerate(scenes):
        one = normalize_geometry(torch.from_numpy(K), torch.from_numpy(hR), torch.from_numpy(c),
                                 gaze_target=torch.from_numpy(t), landmarks_2d=torch.from_numpy(lm))
        torch.testing.assert_close(geo.gaze[i].double().cpu(), one.gaze, **tol)
        torch.testing.assert_close(geo.head_pose[i].double().cpu(), one.head_pose, **tol)
        torch.testing.assert_close(geo.landmarks[i].double().cpu(), one.landmarks,
                                   atol=tol["atol"] * 100, rtol=tol["rtol"])


def test_warp_equals_projection_of_scaled_rotated_points():
    """W applied to a pixel == K_n projection of S·R·X for the 3D point X that produced the pixel."""
    rng = np.random.default_rng(2)
    for _ in range(10):
        K, hR, c, _, _ = random_scene(rng)
        X = c + rng.normal(size=(200, 3)) * 40.0
        px = (X @ K.T)[:, :2] / (X @ K.T)[:, 2:]
        geo = normalize_geometry(torch.from_numpy(K), torch.from_numpy(hR), torch.from_numpy(c), "xgaze224",
                                 landmarks_2d=torch.from_numpy(px))
        S = np.diag([1, 1, 600.0 / np.linalg.norm(c)])
        Xn = X @ (S @ geo.R.numpy()).T
        Kn = PRESETS["xgaze224"].K().numpy()
        proj = (Xn @ Kn.T)[:, :2] / (Xn @ Kn.T)[:, 2:]
        np.testing.assert_allclose(geo.landmarks.numpy(), proj, atol=1e-8)


def test_448_is_twice_224():
    rng = np.random.default_rng(3)
    K, hR, c, t, lm = (torch.from_numpy(a) for a in random_scene(rng))
    a = normalize_geometry(K, hR, c, "xgaze224", gaze_target=t, landmarks_2d=lm)
    b = normalize_geometry(K, hR, c, "xgaze448", gaze_target=t, landmarks_2d=lm)
    np.testing.assert_allclose(b.landmarks.numpy(), 2 * a.landmarks.numpy(), atol=1e-9)
    np.testing.assert_allclose(b.R.numpy(), a.R.numpy())
    np.testing.assert_allclose(b.gaze.numpy(), a.gaze.numpy())


def test_roll_is_zero_in_normalized_space():
    """H_n = R·hR has no roll, so Rot(angles(H_n)) == H_n: the 2-vector head-pose label loses nothing."""
    rng = np.random.default_rng(4)
    for _ in range(20):
        K, hR, c, _, _ = random_scene(rng)
        geo = normalize_geometry(torch.from_numpy(K), torch.from_numpy(hR), torch.from_numpy(c))
        assert abs(float(geo.head_rotation[1, 0])) < 1e-12  # head x axis has no y component
        torch.testing.assert_close(pitchyaw_to_rotation(geo.head_pose), geo.head_rotation, atol=1e-12, rtol=0)


def test_denormalize_gaze_recovers_camera_direction():
    rng = np.random.default_rng(5)
    K, hR, c, t, _ = random_scene(rng)
    geo = normalize_geometry(torch.from_numpy(K), torch.from_numpy(hR), torch.from_numpy(c), gaze_target=t)
    want = (t - c) / np.linalg.norm(t - c)
    np.testing.assert_allclose(denormalize_gaze(geo.gaze, geo.R).numpy(), want, atol=1e-12)
    np.testing.assert_allclose(denormalize_gaze(geo.gaze_vector * 3.0, geo.R).numpy(), want, atol=1e-12)


# --- face centre rules ---------------------------------------------------------------------------------------
def test_face_centre_rules_and_orders():
    gen = torch.Generator().manual_seed(6)
    lm68 = torch.randn(4, 68, 3, generator=gen, dtype=torch.float64) * 30
    eye = lm68[:, [36, 39, 42, 45]].mean(1)
    nose = lm68[:, [31, 35]].mean(1)
    torch.testing.assert_close(face_centre(lm68, "eye_nose"), (eye + nose) / 2)
    torch.testing.assert_close(face_centre(lm68), (eye + nose) / 2)
    torch.testing.assert_close(face_centre(lm68, "eye_mouth"), lm68[:, [36, 39, 42, 45, 48, 54]].mean(1))
    # ETH-XGaze 50-point order: lm50[0]=lm68[8], lm50[1:44]=lm68[17:60], lm50[44:47]=lm68[61:64], [47:50]=[65:68]
    lm50 = torch.cat([lm68[:, 8:9], lm68[:, 17:60], lm68[:, 61:64], lm68[:, 65:68]], dim=1)
    assert lm50.shape[1] == 50
    for rule in ("eye_nose", "eye_mouth"):
        torch.testing.assert_close(face_centre(lm50, rule), face_centre(lm68, rule))
    six = lm68[:, [36, 39, 42, 45, 48, 54]]
    torch.testing.assert_close(face_centre(six, "eye_mouth"), face_centre(lm68, "eye_mouth"))
    with pytest.raises(ValueError, match="68"):
        face_centre(six, "eye_nose")
    with pytest.raises(ValueError, match="rule"):
        face_centre(lm68, "eyes")


# --- images -------------------------------------------------------------------------------------------------
def _test_image(h=480, w=640):
    rng = np.random.default_rng(7)
    small = rng.integers(0, 256, size=(h // 16, w // 16, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_normalize_image_uses_W():
    img = _test_image()
    K = np.array([[900.0, 0, 320], [0, 900, 240], [0, 0, 1]])
    hR = cv2.Rodrigues(np.array([0.1, -0.3, 0.05]))[0]
    c = np.array([20.0, -10.0, 650.0])
    res = normalize(img, K, hR, c, "xgaze224", gaze_target=np.zeros(3),
                    landmarks_2d=np.array([[300.0, 250.0], [340.0, 260.0]]))
    assert res.image.shape == (224, 224, 3) and res.image.dtype == np.uint8
    np.testing.assert_array_equal(res.image, cv2.warpPerspective(img, res.W, (224, 224)))
    # the face centre's projection is the principal point
    p = K @ c
    q = cv2.perspectiveTransform((p[:2] / p[2]).reshape(1, 1, 2), res.W).reshape(2)
    np.testing.assert_allclose(q, [112.0, 112.0], atol=1e-9)
    # rvec input gives the same result as the matrix
    res2 = normalize(img, K, cv2.Rodrigues(hR)[0], c, "xgaze224")
    np.testing.assert_allclose(res2.W, res.W, atol=1e-12)


def test_normalize_with_distortion_undistorts_image_and_landmarks():
    img = _test_image()
    K = np.array([[900.0, 0, 320], [0, 900, 240], [0, 0, 1]])
    dist = np.array([-0.2, 0.05, 0.001, -0.001, 0.0])
    c = np.array([0.0, 0.0, 600.0])
    lm = np.array([[100.0, 80.0], [500.0, 400.0]])
    res = normalize(img, K, np.eye(3), c, dist_coeffs=dist, landmarks_2d=lm)
    und = cv2.undistort(img, K, dist)
    np.testing.assert_array_equal(res.image, cv2.warpPerspective(und, res.W, (224, 224)))
    lm_und = cv2.undistortPoints(lm.reshape(-1, 1, 2), K, dist, P=K).reshape(-1, 2)
    np.testing.assert_allclose(res.landmarks, cv2.perspectiveTransform(lm_und.reshape(-1, 1, 2),
                                                                       res.W).reshape(-1, 2), atol=1e-9)


def test_normalize_batch_matches_opencv(device):
    img = _test_image()
    K = np.array([[900.0, 0, 320], [0, 900, 240], [0, 0, 1]])
    rng = np.random.default_rng(8)
    hRs = np.stack([cv2.Rodrigues(rng.normal(size=3) * 0.2)[0] for _ in range(3)])
    cs = np.array([[20.0, -10.0, 650.0], [-60.0, 30.0, 500.0], [0.0, 0.0, 800.0]])
    batch = torch.from_numpy(img).permute(2, 0, 1)[None].repeat(3, 1, 1, 1).float().to(device)
    out, geo = normalize_batch(batch, torch.from_numpy(K), torch.from_numpy(hRs), torch.from_numpy(cs))
    assert out.shape == (3, 3, 224, 224)
    for i in range(3):
        ref = cv2.warpPerspective(img, geo.W[i].numpy(), (224, 224)).astype(np.float32)
        got = out[i].permute(1, 2, 0).cpu().numpy()
        # OpenCV interpolates in fixed point (1/32 px weights): small differences only
        assert np.abs(got - ref).mean() < 0.5
        assert np.abs(got - ref).max() < 6.0
    # uint8 in, uint8 out
    out8 = warp_images(batch.to(torch.uint8), geo.W.to(device).float(), (224, 224))
    assert out8.dtype == torch.uint8


# --- presets and bad input ---------------------------------------------------------------------------------
def test_presets():
    assert get_camera("xgaze224") == NormalizedCamera(960.0, 600.0, 224, 224, "xgaze224")
    assert get_camera("xgaze448").distance == 300.0
    K = get_camera("xgaze448").K()
    assert K[0, 2] == 224.0 and K[1, 2] == 224.0 and K[0, 0] == 960.0
    custom = NormalizedCamera(1600.0, 1000.0, 224, 224)
    assert get_camera(custom) is custom
    with pytest.raises(ValueError, match="unknown preset"):
        get_camera("xgaze999")
    with pytest.raises(ValueError, match="positive"):
        NormalizedCamera(0.0, 600.0, 224, 224)


@pytest.mark.parametrize("kwargs,match", [
    (dict(face_centre=[0.0, 0.0, -600.0]), "face_centre: z must be positive"),
    (dict(face_centre=[0.0, float("nan"), 600.0]), "face_centre: contains NaN"),
    (dict(K=[[0.0, 0, 320], [0, 900, 240], [0, 0, 1]]), "K: focal"),
    (dict(K=[[900.0, 0, 320], [0, 900, 240]]), r"K: expected shape"),
    (dict(head_rotation=np.ones((3, 3))), "head_rotation: not a rotation"),
    (dict(head_rotation=np.zeros((2, 2))), "head_rotation: expected rotation"),
    (dict(gaze_target=[0.0, 0.0, 600.0], face_centre=[0.0, 0.0, 600.0]), "gaze_target: coincides"),
    (dict(landmarks_2d=np.zeros((68, 3))), "landmarks_2d: expected shape"),
])
def test_bad_input(kwargs, match):
    args = dict(K=np.array([[900.0, 0, 320], [0, 900, 240], [0, 0, 1]]), head_rotation=np.eye(3),
                face_centre=[0.0, 0.0, 600.0])
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        normalize_geometry(args.pop("K"), args.pop("head_rotation"), args.pop("face_centre"), **args)


def test_degenerate_pose_is_reported():
    # head x axis along the viewing ray: normalization undefined
    hR = cv2.Rodrigues(np.array([0.0, np.pi / 2, 0.0]))[0]  # head x -> camera -z
    with pytest.raises(ValueError, match="parallel"):
        normalization_rotation(torch.tensor([0.0, 0.0, 600.0]), torch.from_numpy(hR))


def test_normalize_rejects_bad_image():
    with pytest.raises(ValueError, match="image"):
        normalize(np.zeros((0, 0, 3), np.uint8), np.eye(3) * [900, 900, 1], np.eye(3), [0, 0, 600.0])
