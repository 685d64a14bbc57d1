"""``onthefly heads``: procedural heads as OBJ files with their exact metadata, and a preview PNG."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import viz
from ..camera import view_from_head_pose
from ..geometry import gaze_to_pitchyaw
from ..meshio import write_obj
from ..normalization import face_centre, get_camera
from ..render import DirectionalLights, VertexColors, render
from ..synthetic import procedural_heads


def preview(heads, camera: str = "xgaze224") -> np.ndarray:
    """One row per head: frontal, ±30° yaw and ±20° pitch views, lit from the front, grey background."""
    cam = get_camera(camera)
    poses = torch.deg2rad(torch.tensor([[0.0, 0.0], [0.0, 30.0], [0.0, -30.0], [20.0, 0.0], [-20.0, 0.0]],
                                       dtype=torch.float64))
    n_heads, n_views = heads.verts.shape[0], poses.shape[0]
    c = face_centre(heads.landmarks.double())
    view = view_from_head_pose(poses[None], c[:, None], cam.distance)
    n = n_heads * n_views
    verts = view.apply(heads.verts.double()[:, None]).reshape(n, -1, 3).float()
    colors = heads.vert_colors[:, None].expand(n_heads, n_views, *heads.vert_colors.shape[1:]).reshape(n, -1, 3)
    lights = DirectionalLights(direction=torch.tensor([[0.3, -0.4, -1.0]]).expand(n, 3),
                               ambient=torch.full((n, 3), 0.55), diffuse=torch.full((n, 3), 0.45),
                               specular=torch.full((n, 3), 0.1))
    out = render(verts, heads.faces, cam.K(torch.float32).expand(n, 3, 3), (cam.height, cam.width),
                 textures=VertexColors(colors), lights=lights, background=torch.full((3,), 0.5), ssaa=2)
    pics = viz.to_uint8_images(out.image)
    g = heads.gaze_targets.double() - c
    g = (g / g.norm(dim=-1, keepdim=True))[:, None].expand(n_heads, n_views, 3)
    gaze = gaze_to_pitchyaw(view.apply_directions(g)).reshape(n, 2)
    for k, im in enumerate(pics):
        viz.draw_arrow(im, gaze[k], viz.GREEN)
    return viz.grid(pics, cols=n_views)


def run(args) -> int:
    if args.count < 1:
        raise ValueError("--count must be at least 1")
    out = Path(args.out)
    heads = procedural_heads(args.count, seed=args.seed)
    if not args.no_obj:
        for i in tqdm(range(args.count), desc="writing meshes", unit="head", disable=args.count < 4):
            write_obj(out / f"head{i:04d}.obj", heads.verts[i], heads.faces, heads.vert_colors[i])
            meta = {
                "frame": "head (x: subject's left, y: down, z: into the head), millimetres",
                "seed": args.seed, "index": i,
                "landmarks_68": heads.landmarks[i].tolist(),
                "eyeball_centres": heads.eyeball_centres[i].tolist(),
                "iris_centres": heads.iris_centres[i].tolist(),
                "gaze_target": heads.gaze_targets[i].tolist(),
            }
            (out / f"head{i:04d}.json").write_text(json.dumps(meta, indent=1))
    png = viz.save_png(out / "preview.png", preview(heads))
    print(f"{args.count} procedural heads (seed {args.seed}, {heads.faces.shape[0]} faces each)"
          + ("" if args.no_obj else f" written to {out}/head*.obj + .json"))
    print(f"preview (frontal, yaw ±30°, pitch ±20°; green: gaze): {png}")
    return 0
