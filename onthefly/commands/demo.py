"""``onthefly demo``: the main job on the embedded default data.

Procedural heads → sampled normalized head poses (exact novel views) → batched render with lighting and a random
background colour → labels → a preview grid with gaze (green) and head-pose (blue) arrows, and the labels as JSON.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from ..camera import project_points, view_from_head_pose
from ..geometry import gaze_to_pitchyaw
from ..normalization import face_centre, get_camera
from ..render import DirectionalLights, VertexColors, render
from ..synthetic import procedural_heads
from .. import viz


def sample_views(n_subjects: int, n_views: int, generator: torch.Generator) -> torch.Tensor:
    """Normalized head poses (S, V, 2): pitch in ±25°, yaw in ±40°, uniform."""
    box = torch.tensor([math.radians(25.0), math.radians(40.0)], dtype=torch.float64)
    return (torch.rand(n_subjects, n_views, 2, generator=generator, dtype=torch.float64) * 2 - 1) * box


def render_demo(subjects: int, views: int, seed: int, camera: str, device: str):
    """Render ``subjects × views`` normalized samples; returns (images (N,3,H,W), labels dict of tensors)."""
    cam = get_camera(camera)
    gen = torch.Generator().manual_seed(seed)
    heads = procedural_heads(subjects, seed=seed)
    c_head = face_centre(heads.landmarks.double(), "eye_nose")                       # (S, 3)
    pose = sample_views(subjects, views, gen)                                         # (S, V, 2)
    view = view_from_head_pose(pose, c_head[:, None], cam.distance)                   # R (S,V,3,3), t (S,V,3)
    n = subjects * views
    verts = view.apply(heads.verts.double()[:, None]).reshape(n, -1, 3)
    g_head = heads.gaze_targets.double() - c_head
    g_head = g_head / g_head.norm(dim=-1, keepdim=True)
    gaze_vec = view.apply_directions(g_head[:, None].expand(subjects, views, 3)).reshape(n, 3)
    lm2d = project_points(view.apply(heads.landmarks.double()[:, None]).reshape(n, 68, 3), cam.K())

    # Lighting: a key light from the front hemisphere, random strengths; a random background colour.
    az = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(60)
    el = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(40)
    direction = torch.stack([torch.sin(az) * torch.cos(el), -torch.sin(el), -torch.cos(az) * torch.cos(el)], -1)
    ambient = 0.45 + 0.25 * torch.rand(n, 1, generator=gen)
    diffuse = 0.35 + 0.25 * torch.rand(n, 1, generator=gen)
    lights = DirectionalLights(direction=direction.to(device), ambient=ambient.expand(n, 3).to(device),
                               diffuse=diffuse.expand(n, 3).to(device),
                               specular=torch.full((n, 3), 0.08).to(device))
    background = torch.rand(n, 3, generator=gen).to(device)
    colors = heads.vert_colors[:, None].expand(subjects, views, *heads.vert_colors.shape[1:])
    colors = colors.reshape(n, -1, 3).to(device)
    K = cam.K(dtype=torch.float32, device=device).expand(n, 3, 3)
    out = render(verts.float().to(device), heads.faces.to(device), K, (cam.height, cam.width),
                 textures=VertexColors(colors), lights=lights, background=background, ssaa=2)
    labels = {
        "gaze": gaze_to_pitchyaw(gaze_vec),
        "head_pose": pose.reshape(n, 2),
        "gaze_vector": gaze_vec,
        "landmarks_2d": lm2d,
        "subject": torch.arange(subjects).repeat_interleave(views),
    }
    return out.image.clamp(0, 1), labels


def run(args) -> int:
    out_dir = Path(args.out)
    if args.subjects < 1 or args.views < 1:
        raise ValueError("--subjects and --views must be at least 1")
    t0 = time.perf_counter()
    images, labels = render_demo(args.subjects, args.views, args.seed, args.camera, args.device)
    dt = time.perf_counter() - t0
    pics = viz.to_uint8_images(images)
    for k, im in enumerate(pics):
        viz.draw_arrow(im, labels["head_pose"][k], viz.BLUE, thickness=1)
        viz.draw_arrow(im, labels["gaze"][k], viz.GREEN)
        p, y = (math.degrees(float(v)) for v in labels["gaze"][k])
        viz.put_label(im, f"gaze {p:+.0f},{y:+.0f}")
    path = viz.save_png(out_dir / "preview.png", viz.grid(pics, cols=args.views))
    records = [{"subject": int(labels["subject"][k]),
                "gaze_pitch_yaw_rad": [round(float(v), 6) for v in labels["gaze"][k]],
                "head_pose_pitch_yaw_rad": [round(float(v), 6) for v in labels["head_pose"][k]]}
               for k in range(len(pics))]
    (out_dir / "labels.json").write_text(json.dumps({"seed": args.seed, "camera": args.camera,
                                                     "samples": records}, indent=1))
    n = len(pics)
    print(f"rendered {n} normalized samples ({args.subjects} procedural subjects x {args.views} views, "
          f"{args.camera}) in {dt:.2f} s on {args.device}")
    print(f"preview (green: gaze, blue: head pose): {path}")
    print(f"labels: {out_dir / 'labels.json'}")
    return 0
