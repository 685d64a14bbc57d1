"""A linear face-shape model learned from the project's own procedural heads, and its fit to 2-D landmarks.

:func:`shape_model`: :data:`MODEL_HEADS` identities (``sample_identities`` of :data:`MODEL_SEED`, eyes looking
straight ahead) are built with :func:`onthefly.synthetic.build_heads`; their vertices (head frame) give a mean
and the :data:`MODEL_MODES` principal modes (PCA through the small Gram matrix), with their standard deviations.
Building takes a few seconds, so the model is kept in memory and saved as ``.npz`` (no pickles) under
``$ONTHEFLY_CACHE_DIR`` (default ``~/.cache/onthefly``), keyed by a hash of the ``onthefly/synthetic`` sources:
a changed generator builds a new model.

:func:`fit_shape_and_pose`: rotation, translation and mode coefficients minimising the landmark reprojection error
(``scipy.optimize.least_squares``, Huber loss, starting from the template's PnP pose) with a Gaussian prior on the
coefficients. A head's depth structure (how far the nose stands out, how deep the eyes sit) changes the PnP pose
of a rigid template by up to ~10°; fitting the shape along with the pose removes most of that.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.optimize import least_squares

from .._io import atomic_write
from ..synthetic import build_heads, generator_fingerprint, sample_identities
from .contour import OUTLINE, outline_lines, select_outline
from .fit import HeadPose, project

__all__ = ["ShapeModel", "shape_model", "fit_shape_and_pose", "MODEL_SEED", "MODEL_HEADS", "MODEL_MODES"]

MODEL_SEED = 4242
MODEL_HEADS = 160
MODEL_MODES = 24
_VERSION = 1


@dataclass(frozen=True)
class ShapeModel:
    """``mean`` (V,3), ``modes`` (k,V,3) unit-norm principal directions, ``sd`` (k,) their standard deviations
    (mm over the whole vector); head frame."""

    mean: np.ndarray
    modes: np.ndarray
    sd: np.ndarray

    def shape(self, coeffs: np.ndarray) -> np.ndarray:
        """Vertices (V,3) of coefficients (k,) (in units of ``sd``)."""
        return self.mean + np.tensordot(coeffs * self.sd, self.modes, 1)


def _source_hash() -> str:
    key = f"v{_VERSION} {MODEL_SEED} {MODEL_HEADS} {MODEL_MODES} {generator_fingerprint()}"
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _cache_dir() -> Path:
    return Path(os.environ.get("ONTHEFLY_CACHE_DIR", Path.home() / ".cache" / "onthefly"))


def _build() -> ShapeModel:
    ids = sample_identities(MODEL_HEADS, torch.Generator().manual_seed(MODEL_SEED))
    heads = build_heads(ids, torch.tensor([[0.0, 0.0, -600.0]]).expand(MODEL_HEADS, 3).contiguous())
    X = heads.verts.double().reshape(MODEL_HEADS, -1).numpy()
    mean = X.mean(0)
    D = X - mean
    w, E = np.linalg.eigh(D @ D.T)                    # Gram matrix: n x n instead of 3V x 3V
    order = np.argsort(w)[::-1][:MODEL_MODES]
    w, E = np.maximum(w[order], 1e-12), E[:, order]
    modes = (E.T @ D) / np.sqrt(w)[:, None]            # unit-norm principal directions
    sd = np.sqrt(w / (MODEL_HEADS - 1))
    V = heads.verts.shape[1]
    return ShapeModel(mean=mean.reshape(V, 3), modes=modes.reshape(-1, V, 3), sd=sd)


@functools.lru_cache(maxsize=1)
def shape_model() -> ShapeModel:
    """The cached model (built on first use, then read from the on-disk cache)."""
    path = _cache_dir() / f"reconstruct-shape-model-{_source_hash()}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                return ShapeModel(mean=z["mean"], modes=z["modes"], sd=z["sd"])
        except (OSError, ValueError, KeyError):
            pass  # unreadable: rebuild and overwrite
    m = _build()
    try:
        with atomic_write(path, suffix=".npz") as tmp:
            np.savez(tmp, mean=m.mean, modes=m.modes.astype(np.float32), sd=m.sd)
    except OSError:
        pass  # a read-only home: keep the in-memory model
    return m


def _rodrigues(r: np.ndarray) -> np.ndarray:
    th = float(np.linalg.norm(r))
    if th < 1e-12:
        return np.eye(3)
    k = r / th
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(th) * Kx + (1 - np.cos(th)) * Kx @ Kx


def _contour_corr(model: ShapeModel, lines, c: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray):
    """Outline correspondences at the current fit: (a, b, w) (L,) each, one per line (:data:`~.contour.OUTLINE`
    order) — the silhouette point of line i is ``(1 - w) X[a] + w X[b]`` (see :mod:`onthefly.reconstruct.contour`)."""
    ids, ring = lines.ids, lines.ring
    shape = lambda i: model.mean[i] + np.tensordot(c * model.sd, model.modes[:, i], 1)  # noqa: E731
    Xc, RX = shape(ids) @ R.T + t, shape(ring) @ R.T + t
    k, frac, _ = select_outline(torch.from_numpy(Xc), torch.from_numpy(RX), torch.from_numpy(lines.normal @ R.T),
                                torch.from_numpy(np.asarray(K, np.float64)), lines.hides)
    k, frac = k.numpy(), frac.numpy()
    M = ids.shape[1]
    nb = np.clip(np.where(frac >= 0, k + 1, k - 1), 0, M - 1)
    rows = np.arange(len(ids))
    return ids[rows, k], ids[rows, nb], np.abs(frac)


def fit_shape_and_pose(model: ShapeModel, landmark_ids: np.ndarray, landmarks_2d: np.ndarray, K: np.ndarray,
                       pose0: HeadPose, *, sigma_px: float, weights: np.ndarray | None = None,
                       rotation: np.ndarray | None = None, contour: bool = True, rounds: int = 4,
                       jaw_tangent: float = 1.0
                       ) -> tuple[HeadPose, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pose and coefficients (k,) fitting ``landmarks_2d`` (68,2, undistorted px); ``sigma_px`` is the landmark
    noise (px) weighing the data against the unit Gaussian prior; ``weights`` (68,) per landmark; a fixed
    ``rotation`` (annotated) is kept.

    With ``contour`` the jaw landmarks (0-16) are silhouette points (iBUG semantics), and so are the brow ends (17,
    26) once the faces around the brow's tail turn away from the camera: ``rounds`` times, each of these landmarks
    is matched to the silhouette point of its contour line (:mod:`onthefly.reconstruct.contour`) at the current
    pose and shape, then pose and shape are refitted with those correspondences. Without it they are the fixed
    template vertices. ``jaw_tangent`` weighs the component of each jaw residual along the
    outline (the image tangent of the fitted silhouette at that point, fixed per round) against the component across
    it (weight 1): an outline point is defined across the outline, while where along it a detector or annotator
    puts it slides with the pose (1 = point-to-point, 0 = point-to-curve).

    Returns the pose (its ``rms_px`` over the weighted landmarks), the coefficients and the correspondence
    ``(a, b, w)`` (68,) each: landmark ``i`` is the model point ``(1 - w) X[a] + w X[b]`` (``a == b ==
    landmark_ids`` off the outline).
    """
    k = len(model.sd)
    w = np.ones(68) if weights is None else np.asarray(weights, np.float64)
    r0 = cv2.Rodrigues(pose0.R)[0][:, 0]
    a_ids = np.asarray(landmark_ids, np.int64).copy()
    b_ids = a_ids.copy()
    wt = np.zeros(68)
    lines = None
    if contour:
        lines = outline_lines()
        if lines.n_verts != model.mean.shape[0]:
            raise ValueError("contour lines and shape model have different topologies")

    def unpack(x):
        R = _rodrigues(x[:3]) if rotation is None else rotation
        return R, x[3:6], x[6:]

    x = np.concatenate([r0, pose0.t, np.zeros(k)])
    for rnd in range(rounds if contour else 1):
        if contour:
            R, t, c = unpack(x)
            a_ids[OUTLINE], b_ids[OUTLINE], wt[OUTLINE] = _contour_corr(model, lines, c, R, t, K)
        mu = model.mean[a_ids] * (1 - wt[:, None]) + model.mean[b_ids] * wt[:, None]
        B = (model.modes[:, a_ids] * (1 - wt[None, :, None]) + model.modes[:, b_ids] * wt[None, :, None]) \
            * model.sd[:, None, None]                                                           # (k,68,3)
        tangent = None
        if contour and jaw_tangent != 1.0:
            R, t, c = unpack(x)
            q = project((mu[:17] + np.tensordot(c, B[:, :17], 1)) @ R.T + t, K)
            tangent = np.gradient(q, axis=0)                    # along the fitted outline, 0 -> 16
            tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-12)

        def residuals(x, mu=mu, B=B, tangent=tangent):
            R, t, c = unpack(x)
            P = mu + np.tensordot(c, B, 1)
            e = project(P @ R.T + t, K) - landmarks_2d
            if tangent is not None:
                along = (e[:17] * tangent).sum(1, keepdims=True) * tangent
                e = np.concatenate([e[:17] - along + jaw_tangent * along, e[17:]])
            e = e * (w[:, None] / sigma_px)
            return np.concatenate([e.ravel(), c])

        sol = least_squares(residuals, x, loss="huber", f_scale=3.0, x_scale="jac",
                            max_nfev=200 if rnd == 0 else 60)
        x = sol.x
    R, t, c = unpack(x)
    P = (mu + np.tensordot(c, B, 1)) @ R.T + t
    sel = w > 0
    rms = float(np.sqrt(((project(P, K)[sel] - landmarks_2d[sel]) ** 2).sum(1).mean()))
    return HeadPose(R=R, t=t, rms_px=rms), c, (a_ids, b_ids, wt)
