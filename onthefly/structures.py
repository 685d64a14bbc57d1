"""Typed structures of the data path: the frames on the device, and the batches rendered from them.

PyTorch3D's ``structures/meshes.py`` is the model: one object holds a batch of meshes with its *packed* view (all
vertices in one (ΣV, 3) tensor: :class:`~onthefly.cache.PackedFrames`, what the cache reads) and its *padded* view
((n, V_max, 3): what the renderer takes), so every stage selects frames the same way, with one index tensor.

* :class:`Frames` — built once by the cache loader (:meth:`onthefly.cache.MeshCache.load_frames`, or
  :meth:`Frames.from_packed`): padded vertices (and their packed view) and face-region flags,
  :class:`Topologies`, :class:`FrameTextures`, :class:`FrameLabels` (per-frame labels with the precomputed source
  normalization), optionally :class:`FrameViews` (the real cameras of multi-view sources), and the frames' ids.
* :class:`GazeBatch` — one rendered batch, typed; :meth:`GazeBatch.as_dict` is the dict of tensors the DataLoader,
  the export and the training code consume (keys :data:`BATCH_KEYS`, documented in ``docs/dataset.md``).

Every tensor of a :class:`Frames` lives on its device except the few the pose samplers read on the host (they are
named ``*_cpu``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as Fnn
from torch import Tensor

from .checks import trusted
from .geometry import rotation_to_pitchyaw
from .normalization import normalization_rotation
from .poses import camera_view_poses
from .reconstruct.contour import is_contour_topology
from .reconstruct.eyes import EYE_KEYS
from .render import UVTexture, VertexColors

if TYPE_CHECKING:
    from .augment import AppearanceParams
    from .cache import PackedFrames

__all__ = ["Frames", "Topologies", "FrameTextures", "FrameLabels", "FrameViews", "GazeBatch", "BATCH_KEYS"]


# ------------------------------------------------------------------------------------------------- frames
@dataclass(frozen=True, eq=False)
class Topologies:
    """The frames' triangle lists: ``faces[t]`` (F_t, 3) int64 per topology, ``topology_id`` (n,) per frame;
    ``faces_padded`` (T, F_max, 3) with ``-1`` rows (which the renderer ignores) when there are several topologies,
    else None; ``contour`` (n,) bool: the frame's topology is the shared procedural one (iBUG jaw contour and eye
    geometry labels are defined on it)."""

    faces: list[Tensor]
    topology_id: Tensor
    faces_padded: Tensor | None
    contour: Tensor

    @classmethod
    def from_packed(cls, pf: PackedFrames) -> Topologies:

        dev = pf.topology_id.device
        padded = None
        if len(pf.faces) > 1:
            Fmax = max(len(f) for f in pf.faces)
            padded = torch.full((len(pf.faces), Fmax, 3), -1, dtype=torch.int64, device=dev)
            for t, f in enumerate(pf.faces):  # once per topology, at load
                padded[t, :len(f)] = f
        contour = torch.tensor([is_contour_topology(f) for f in pf.faces], device=dev)[pf.topology_id]
        return cls(list(pf.faces), pf.topology_id, padded, contour)

    def select(self, frames: Tensor) -> Tensor:
        """Faces of the frames ``frames`` (b,): the shared (F, 3) list, or (b, F_max, 3) padded per frame."""
        if self.faces_padded is None:
            return self.faces[0]
        return self.faces_padded[self.topology_id[frames]]


@dataclass(frozen=True, eq=False)
class FrameTextures:
    """How the frames are coloured: per-vertex ``colors`` (n, V_max, 3) uint8 (padded like the vertices), or UV
    ``maps`` (X, H_t, W_t, 3) uint8 (resized once to the largest), ``verts_uvs`` (X or 1, T, 2), ``faces_uvs``
    (F, 3) or (X, F_max, 3) and ``texture_id`` (n,) (the map of each frame). One kind per set of frames."""

    colors: Tensor | None = None
    maps: Tensor | None = None
    verts_uvs: Tensor | None = None
    faces_uvs: Tensor | None = None
    texture_id: Tensor | None = None

    @classmethod
    def from_packed(cls, pf: PackedFrames, colors_padded: Tensor, source: str = "cache") -> FrameTextures:
        """Vertex colours (``colors_padded``, the padded ``pf.vert_colors``) when every frame has them, else the
        UV maps; frames of both kinds mixed are refused (the error names ``source``)."""
        if bool(pf.has_vertex_colors.all()):
            return cls(colors=colors_padded)
        if not bool((pf.texture_id >= 0).all()):
            raise ValueError(f"cache {source}: mixes frames with only vertex colours and frames with only UV "
                             "textures; select subjects of one kind")

        dev = pf.verts.device
        Ht = max(int(t.shape[0]) for t in pf.textures)
        Wt = max(int(t.shape[1]) for t in pf.textures)
        maps = torch.stack([t if tuple(t.shape[:2]) == (Ht, Wt) else Fnn.interpolate(
            t.permute(2, 0, 1)[None].float(), size=(Ht, Wt), mode="bilinear", align_corners=True)[0]
            .round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0) for t in pf.textures])
        topo_of_tex = torch.full((len(pf.textures),), -1, dtype=torch.int64, device=dev)
        topo_of_tex[pf.texture_id] = pf.topology_id
        if bool((topo_of_tex[pf.texture_id] != pf.topology_id).any()):
            raise ValueError(f"cache {source}: a texture is shared by frames of different topologies; not supported")
        if len(pf.faces) == 1:
            uv0, fuv0 = pf.uv[0], pf.faces_uv[0]
            assert uv0 is not None and fuv0 is not None  # every frame has a texture, so its topology has UVs
            return cls(maps=maps, verts_uvs=uv0[None], faces_uvs=fuv0, texture_id=pf.texture_id)
        # each texture's UVs are those of the topology of the frames using it, padded per texture
        Tmax = max(len(u) for u in pf.uv if u is not None)
        Fmax = max(len(f) for f in pf.faces)
        vuv = torch.zeros(len(maps), Tmax, 2, dtype=torch.float32, device=dev)
        fuv = torch.zeros(len(maps), Fmax, 3, dtype=torch.int64, device=dev)
        for x, t in enumerate(topo_of_tex.tolist()):  # once per texture, at load
            uv_t, fuv_t = pf.uv[t], pf.faces_uv[t]
            assert uv_t is not None and fuv_t is not None  # a textured frame's topology has UVs
            vuv[x, :len(uv_t)] = uv_t
            fuv[x, :len(fuv_t)] = fuv_t
        return cls(maps=maps, verts_uvs=vuv, faces_uvs=fuv, texture_id=pf.texture_id)

    def select(self, frames: Tensor) -> VertexColors | UVTexture:
        """The renderer's texture of the frames ``frames`` (b,) (UV maps are shared, never copied)."""

        if self.colors is not None:
            return VertexColors(self.colors[frames])
        assert self.maps is not None and self.verts_uvs is not None and self.faces_uvs is not None \
            and self.texture_id is not None  # from_packed sets either colors or all four
        return UVTexture(self.maps, self.verts_uvs, self.faces_uvs, texture_index=self.texture_id[frames])


@dataclass(frozen=True, eq=False)
class FrameLabels:
    """Per-frame labels, float64, in each frame's source camera: ``head_rotation`` (n,3,3) head → camera,
    ``face_centre`` (n,3) mm, ``gaze_direction`` (n,3) unit, ``gaze_target`` (n,3) mm (NaN where only a direction
    is known), ``landmarks`` (n,68,3) mm; the precomputed source normalization: ``source_rotation`` (n,3,3) (the
    normalization rotation of the source frame, ``R_src``) and, on the host for the pose samplers,
    ``source_head_pose_cpu`` (n,2) (its head-pose label) and ``gaze_head_cpu`` (n,3) (the gaze in head coordinates);
    ``index`` (n,) the frames' indices in the cache, ``subject_index`` (n,) into the dataset's subject list."""

    head_rotation: Tensor
    face_centre: Tensor
    gaze_direction: Tensor
    gaze_target: Tensor
    landmarks: Tensor
    source_rotation: Tensor
    source_head_pose_cpu: Tensor
    gaze_head_cpu: Tensor
    index: Tensor
    subject_index: Tensor

    @classmethod
    def from_packed(cls, pf: PackedFrames, subjects: list[str]) -> FrameLabels:

        f64 = torch.float64
        c, hR = pf.face_centre.to(f64), pf.head_rotation.to(f64)
        g = pf.gaze_direction.to(f64)
        g = g / g.norm(dim=-1, keepdim=True)
        with trusted():  # the loader checked these labels (MeshCache._check_loaded)
            R_src = normalization_rotation(c, hR)
        subject_of = {s: i for i, s in enumerate(subjects)}
        return cls(head_rotation=hR, face_centre=c, gaze_direction=g, gaze_target=pf.gaze_target.to(f64),
                   landmarks=pf.landmarks.to(f64), source_rotation=R_src,
                   source_head_pose_cpu=rotation_to_pitchyaw(R_src @ hR).cpu(),
                   gaze_head_cpu=(hR.transpose(-1, -2) @ g[..., None])[..., 0].cpu(), index=pf.index,
                   subject_index=torch.tensor([subject_of[s] for s in pf.subject], device=pf.index.device))


@dataclass(frozen=True, eq=False)
class FrameViews:
    """The frames' real cameras (multi-view sources), per frame and camera slot (padded to the most cameras of a
    frame): ``head_pose_cpu`` (n,C,2) the head-pose label of that camera's normalized view, ``rotation`` (n,C,3,3)
    its normalization rotation (``face_mat_norm`` of ETH-XGaze), ``names[i]`` the camera names of frame i
    (``len(names[i])`` slots are real, the rest padding)."""

    head_pose_cpu: Tensor
    rotation: Tensor
    names: list[list[str]]

    @classmethod
    def from_packed(cls, pf: PackedFrames, labels: FrameLabels) -> FrameViews:

        dev, f64 = labels.head_rotation.device, torch.float64
        n = len(pf)
        assert pf.view_offsets is not None and pf.view_R is not None and pf.view_t is not None \
            and pf.view_names is not None  # Frames.from_packed calls this only for a cache with views
        counts = pf.view_offsets.diff()
        C = int(counts.max())
        R = torch.eye(3, dtype=f64, device=dev).repeat(n, C, 1, 1)
        t = torch.zeros(n, C, 3, dtype=f64, device=dev)
        frame = torch.repeat_interleave(torch.arange(n, device=dev), counts)
        slot = torch.arange(len(frame), device=dev) - pf.view_offsets[frame]
        R[frame, slot] = pf.view_R.to(f64)
        t[frame, slot] = pf.view_t.to(f64)
        with trusted():  # the loader checked the labels and the real cameras
            pose, Rn, _ = camera_view_poses(labels.face_centre[:, None], labels.head_rotation[:, None], R, t)
        return cls(head_pose_cpu=pose.cpu(), rotation=Rn, names=pf.view_names)

    def allowed(self, cameras=None) -> Tensor:
        """(n, C) bool on the host: the real slots whose camera is in ``cameras`` (every real slot for None)."""
        C = self.head_pose_cpu.shape[1]
        out = torch.zeros(len(self.names), C, dtype=torch.bool)
        for i, names in enumerate(self.names):  # once per frame, at load
            for k, name in enumerate(names):
                out[i, k] = cameras is None or name in cameras
        return out


@dataclass(frozen=True, eq=False)
class Frames:
    """Frames on a device, ready to render: the structure the dataset reads everything from.

    ``verts_padded`` (n, V_max, 3) float32, the vertices in each frame's source camera frame (mm), padded rows placed
    at the frame's face centre (so a view puts them on its optical axis; no face references them); ``num_verts``
    (n,) the real rows (:meth:`verts_packed` is the packed view); ``face_region`` (n, V_max, 1) float32 face flags
    (1 = face: brows to chin, no hair, ears or neck) or None when no frame has one; ``topologies``, ``textures``,
    ``labels``; ``views`` the real cameras (only when asked for); ``ids`` cache index → (subject, frame, camera).
    """

    verts_padded: Tensor
    num_verts: Tensor
    face_region: Tensor | None
    topologies: Topologies
    textures: FrameTextures
    labels: FrameLabels
    views: FrameViews | None = None
    ids: dict[int, tuple[str, str, str]] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.verts_padded.shape[0]

    @property
    def device(self) -> torch.device:
        return self.verts_padded.device

    def verts_packed(self) -> Tensor:
        """(ΣV, 3): the real vertices of all frames, frame after frame (rows :meth:`vert_offsets`)."""
        real = torch.arange(self.verts_padded.shape[1], device=self.device) < self.num_verts[:, None]
        return self.verts_padded[real]

    def vert_offsets(self) -> Tensor:
        """(n+1,) int64: frame i owns rows ``vert_offsets[i]:vert_offsets[i+1]`` of :meth:`verts_packed`."""
        out = torch.zeros(len(self) + 1, dtype=torch.int64, device=self.device)
        torch.cumsum(self.num_verts, 0, out=out[1:])
        return out

    @classmethod
    def from_packed(cls, pf: PackedFrames, subjects: list[str] | None = None, *, views: bool = False,
                    source: str = "cache") -> Frames:
        """Build the padded views, topologies, textures and labels of packed frames (once, at load).

        ``subjects`` orders ``labels.subject_index`` (default: the subjects in order of first appearance);
        ``views=True`` also builds :class:`FrameViews` (an error naming ``source`` when the frames store no
        cameras)."""
        if len(pf) == 0:
            raise ValueError(f"cache {source}: no frames to load")
        if subjects is None:
            subjects = list(dict.fromkeys(pf.subject))
        labels = FrameLabels.from_packed(pf, subjects)
        dev, f32 = pf.verts.device, torch.float32
        n = len(pf)
        counts = pf.vert_offsets.diff()
        Vmax = int(counts.max())
        region = pf.vert_face_region
        if bool((counts == Vmax).all()):  # one vertex count: the padded view is a view of the packed one
            verts = pf.verts.view(n, Vmax, 3).to(f32)
            colors = pf.vert_colors.view(n, Vmax, 3)
            face = region.view(n, Vmax, 1).to(f32) if region is not None else None
        else:
            verts = labels.face_centre.to(f32)[:, None].repeat(1, Vmax, 1)
            colors = torch.zeros(n, Vmax, 3, dtype=torch.uint8, device=dev)
            local = torch.arange(len(pf.verts), device=dev) - pf.vert_offsets[pf.vert_frame]
            verts[pf.vert_frame, local] = pf.verts.to(f32)
            colors[pf.vert_frame, local] = pf.vert_colors
            face = None
            if region is not None:
                face = torch.zeros(n, Vmax, 1, dtype=f32, device=dev)
                face[pf.vert_frame, local, 0] = region.to(f32)
        fviews = None
        if views:
            if pf.view_offsets is None:
                raise ValueError(f"cache {source}: target 'cameras' needs frames with stored cameras (views), e.g. "
                                 "a cache built with --source xgaze3d; this cache has none")
            fviews = FrameViews.from_packed(pf, labels)
        return cls(verts_padded=verts.contiguous(), num_verts=counts, face_region=face,
                   topologies=Topologies.from_packed(pf), textures=FrameTextures.from_packed(pf, colors, source),
                   labels=labels, views=fviews,
                   ids={int(k): (s, f, cm) for k, s, f, cm in zip(pf.index.tolist(), pf.subject, pf.frame,
                                                                   pf.camera)})


# ------------------------------------------------------------------------------------------------- batches
def _key(doc: str):
    return field(metadata={"doc": doc})


def _optional_key(doc: str):
    return field(default=None, metadata={"doc": doc})


@dataclass(kw_only=True, eq=False)
class GazeBatch:
    """One rendered batch, flat: ``n = B·K`` rows, the K views of a sample consecutive (K = ``views_per_frame``).

    Fields hold float32 tensors (int64 for indices) on the dataset's device, one row per view; ``eyes`` the eye
    geometry (:data:`onthefly.reconstruct.eyes.EYE_SHAPES`, NaN where not available), ``appearance`` the drawn
    appearance parameters, ``view_rotation`` (n,3,3) float64 the source camera → view rotation (``face_mat_norm``
    differs from it for real cameras). ``drawn_target``, ``epoch`` and ``batch_index`` record the draw (None for a
    re-render). :meth:`as_dict` gives the batch dict (``docs/dataset.md``)."""

    image: Tensor = _key("(n,3,H,W) the composited, jittered image ('unit' or 'imagenet' format)")
    mask: Tensor = _key("(n,1,H,W) the face mask (the coverage when the frames have no face region)")
    coverage: Tensor = _key("(n,1,H,W) coverage of the whole rendered mesh")
    gaze: Tensor = _key("(n,2) gaze (pitch, yaw) label, radians")
    head_pose: Tensor = _key("(n,2) head-pose (pitch, yaw) label, radians")
    gaze_vector: Tensor = _key("(n,3) unit gaze vector in the view")
    face_mat_norm: Tensor = _key("(n,3,3) source camera -> normalized view")
    rotation_matrix: Tensor = _key("(n,3,3) the source's normalized view -> this view")
    landmarks_2d: Tensor = _key("(n,68,2) iBUG landmarks, pixels (jaw, and a hidden brow end, on the rendered outline)")
    landmarks_2d_fixed: Tensor = _key("(n,68,2) the fixed landmark vertices projected, pixels")
    landmarks_3d: Tensor = _key("(n,68,3) landmarks in the view, mm")
    frame_index: Tensor = _key("(n,) int64 the frame's index in the cache")
    subject_index: Tensor = _key("(n,) int64 index into the dataset's subjects")
    target_pose: Tensor = _key("(n,2) float64 the head pose rendered")
    drawn_target: Tensor | None = _optional_key("(n,2) the sampler's draw (head pose or gaze)")
    source_head_pose: Tensor = _key("(n,2) head-pose label of the source frame's normalized view")
    camera_index: Tensor = _key("(n,) int64 real-camera slot of the view, -1 for novel views")
    epoch: Tensor | None = _optional_key("(n,) int64 epoch of the batch")
    batch_index: Tensor | None = _optional_key("(n,) int64 index of the batch in its epoch")
    eyes: dict[str, Tensor]
    appearance: AppearanceParams
    view_rotation: Tensor
    views_per_frame: int = 1

    @classmethod
    def key_fields(cls) -> tuple[str, ...]:
        """The fields that are batch keys, in the order of :data:`BATCH_KEYS`."""
        return tuple(f.name for f in dataclasses.fields(cls) if "doc" in f.metadata)

    def __len__(self) -> int:
        return self.image.shape[0]

    def as_dict(self) -> dict[str, Tensor]:
        """The batch dict: the rendered keys, the eye geometry, the ``param_*`` appearance parameters, then the
        draw record (absent for a re-render); with K > 1 views every tensor is (B, K, ...) and
        ``relative_rotation`` (B, K, K, 3, 3), ``R_ij = V_j · V_iᵀ`` (view i → view j), is added."""
        record = ("drawn_target", "epoch", "batch_index")
        out = {k: getattr(self, k) for k in self.key_fields() if k not in record}
        out.update(self.eyes)
        out.update(self.appearance.as_dict("param_"))
        out.update({k: getattr(self, k) for k in record if getattr(self, k) is not None})
        K = self.views_per_frame
        if K == 1:
            return out
        out = {k: v.reshape(-1, K, *v.shape[1:]) for k, v in out.items()}
        V = self.view_rotation.to(torch.float32).reshape(-1, K, 3, 3).double()
        out["relative_rotation"] = (V[:, None] @ V[:, :, None].transpose(-1, -2)).to(torch.float32)
        return out


#: keys of a batch (besides the ``param_*`` appearance parameters and, with K > 1 views, ``relative_rotation``)
BATCH_KEYS: tuple[str, ...] = GazeBatch.key_fields() + EYE_KEYS
