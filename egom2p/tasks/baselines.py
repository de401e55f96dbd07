"""Reference baselines of the four tasks, scored beside the model on the same clips with the same metrics.

Each returns a prediction in the task's output format, so :mod:`egom2p.metrics` scores it exactly
like the model's:

* camera: :func:`static_pose` (the camera never moves), :func:`constant_velocity` (the first
  ground-truth step repeated: it is *given* the first two true poses), :func:`mean_trajectory`
  (the mean of the training clips' trajectories, chordal mean of rotations);
* gaze: :func:`centre_prior` (0.5, 0.5), :func:`mean_gaze_track` (the per-frame mean of the
  training clips' gaze);
* depth: :func:`constant_depth` (one value per clip: after the evaluation's scale-and-shift it is
  the clip's mean inverse depth), :func:`mean_depth_map` (the per-pixel mean of the training clips'
  normalised inverse depth);
* RGB from depth: :func:`mean_frame` (the per-pixel mean training frame), :class:`NearestDepthFrames`
  (for each frame, the RGB of the training frame whose depth is nearest).

"Training" statistics come from training clips (the ``fit`` of each :class:`~.spec.Baseline`);
:mod:`egom2p.evaluation` says in each table where they came from.
"""

from __future__ import annotations

import numpy as np

from .. import geometry as geo
from ..modalities import CLIP_FRAMES, VIDEO_TOKEN_FRAMES
from .inputs import resize_map, token_depth, token_rgb
from .spec import Baseline

# --- camera -------------------------------------------------------------------------------------


def static_pose(num_frames: int = CLIP_FRAMES) -> np.ndarray:
    """The camera never moves: identity poses [N, 4, 4] (scored by :func:`egom2p.metrics.trajectory_errors`)."""
    return np.tile(np.eye(4), (num_frames, 1, 1))


def constant_velocity(ref_first: np.ndarray, num_frames: int) -> np.ndarray:
    """Continue the motion between the first two reference poses: T_i = T0 (inv(T0) T1)^i, [N, 4, 4].

    ``ref_first`` [2, 4, 4] are the first two *ground-truth* poses (as a tracker initialised on two
    frames would know): this baseline is given information the model is not.
    """
    T0, T1 = np.asarray(ref_first, dtype=np.float64)[:2]
    step = geo.invert_se3(T0) @ T1
    out = np.empty((num_frames, 4, 4))
    cur = T0.copy()
    for i in range(num_frames):
        out[i] = cur
        cur = cur @ step
    return out


def project_rotation(M: np.ndarray) -> np.ndarray:
    """Nearest rotation matrices (Frobenius) to matrices [..., 3, 3] (SVD with the determinant fixed)."""
    U, _, Vt = np.linalg.svd(M)
    D = np.ones(M.shape[:-1])
    D[..., -1] = np.sign(np.linalg.det(U @ Vt))
    return (U * D[..., None, :]) @ Vt


def mean_trajectory(trajectories: np.ndarray) -> np.ndarray:
    """Mean of trajectories [K, N, 4, 4] (each relative to its first frame) -> [N, 4, 4].

    Positions are averaged; rotations by the chordal L2 mean (the rotation nearest the mean matrix).
    """
    T = np.asarray(trajectories, dtype=np.float64)
    if T.ndim != 4 or len(T) == 0:
        raise ValueError(f"mean_trajectory needs trajectories [K, N, 4, 4], got {T.shape}")
    out = np.tile(np.eye(4), (T.shape[1], 1, 1))
    out[:, :3, :3] = project_rotation(T[:, :, :3, :3].mean(0))
    out[:, :3, 3] = T[:, :, :3, 3].mean(0)
    return out


# --- gaze ---------------------------------------------------------------------------------------


def centre_prior(num_frames: int = CLIP_FRAMES) -> np.ndarray:
    """Gaze at the image centre (0.5, 0.5) in every frame, [N, 2]."""
    return np.full((num_frames, 2), 0.5, dtype=np.float32)


def mean_gaze_track(tracks: np.ndarray) -> np.ndarray:
    """Per-frame mean of gaze tracks [K, N, 2] over their valid (finite) rows -> [N, 2].

    A frame valid in no track takes the mean over all valid rows; no valid row at all -> the centre.
    """
    g = np.asarray(tracks, dtype=np.float64)
    ok = np.all(np.isfinite(g), -1)
    if not ok.any():
        return centre_prior(g.shape[1])
    overall = g[ok].mean(0)
    cnt = ok.sum(0)
    s = np.where(ok[..., None], g, 0.0).sum(0)
    out = np.where(cnt[:, None] > 0, s / np.maximum(cnt, 1)[:, None], overall)
    return out.astype(np.float32)


# --- depth --------------------------------------------------------------------------------------


def constant_depth(shape) -> np.ndarray:
    """One value everywhere (normalised inverse depth 0.5); after scale-and-shift alignment: the clip's mean
    inverse depth."""
    return np.full(shape, 0.5, dtype=np.float32)


def mean_depth_map(depths: np.ndarray) -> np.ndarray:
    """Per-pixel mean of normalised inverse depth frames [M, S, S] (NaN invalid) -> [S, S].

    Pixels never valid take the mean over all valid pixels."""
    d = np.asarray(depths, dtype=np.float64)
    ok = np.isfinite(d)
    if not ok.any():
        return np.full(d.shape[1:], 0.5, np.float32)
    cnt = ok.sum(0)
    m = np.where(cnt > 0, np.where(ok, d, 0.0).sum(0) / np.maximum(cnt, 1), d[ok].mean())
    return m.astype(np.float32)


# --- RGB from depth -----------------------------------------------------------------------------


def mean_frame(frames: np.ndarray) -> np.ndarray:
    """Per-pixel mean of uint8 frames [M, S, S, 3] -> uint8 [S, S, 3]."""
    return np.round(np.asarray(frames, dtype=np.float64).mean(0)).clip(0, 255).astype(np.uint8)


class NearestDepthFrames:
    """Nearest training frame by depth: a bank of (depth, RGB) training frames; each query frame gets
    the RGB of the bank frame whose normalised inverse depth (at ``side`` x ``side``) is nearest in
    mean squared difference over the pixels valid in both."""

    def __init__(self, depths: np.ndarray, rgbs: np.ndarray, side: int = 16):
        self.side = side
        self.keys = resize_map(np.asarray(depths, dtype=np.float32), side).reshape(len(depths), -1)  # [M, side^2]
        self.rgbs = np.asarray(rgbs)
        if len(self.keys) == 0:
            raise ValueError("the nearest-frame baseline needs at least one training frame")

    def nearest(self, depths: np.ndarray) -> np.ndarray:
        """Indices into the bank for query depth frames [T, H, W]."""
        q = resize_map(np.asarray(depths, dtype=np.float32), self.side).reshape(len(depths), -1)  # [T, P]
        kv, qv = np.isfinite(self.keys), np.isfinite(q)
        k0, q0 = np.where(kv, self.keys, 0.0), np.where(qv, q, 0.0)
        both = qv.astype(np.float64) @ kv.T.astype(np.float64)  # [T, M] pixels valid in both
        # sum over jointly valid pixels of (q - k)^2 = q^2 . kv + qv . k^2 - 2 q . k
        sq = (q0 ** 2) @ kv.T + qv @ (k0 ** 2).T - 2 * q0 @ k0.T
        dist = np.where(both > 0, sq / np.maximum(both, 1), np.inf)
        return np.argmin(dist, axis=1)

    def predict(self, depths: np.ndarray) -> np.ndarray:
        return self.rgbs[self.nearest(depths)]


# --- the baselines of the task table -----------------------------------------------------------------


def _cams(clips, size):
    return mean_trajectory(np.stack([geo.relative_to_first(c.cam.astype(np.float64)) for c in clips]))


def _gazes(clips, size):
    return mean_gaze_track(np.stack([c.gaze for c in clips]))


def _depth_map(clips, size):
    return mean_depth_map(np.concatenate([token_depth(c, size) for c in clips]))


def _mean_rgb(clips, size):
    return mean_frame(np.concatenate([token_rgb(c, size) for c in clips]))


def _depth_bank(clips, size):
    return NearestDepthFrames(np.concatenate([token_depth(c, size) for c in clips]),
                              np.concatenate([token_rgb(c, size) for c in clips]))


CAMERA = (
    Baseline("static pose", lambda c, st, S: static_pose(len(c.cam))),
    Baseline("constant velocity (first 2 GT poses)", lambda c, st, S: constant_velocity(c.cam[:2], len(c.cam)),
             note="constant velocity is given the first two ground-truth poses and repeats that step"),
    Baseline("mean training trajectory", lambda c, st, S: st, fit=_cams, needs=("cam",)),
)
GAZE = (
    Baseline("centre prior", lambda c, st, S: centre_prior(len(c.gaze))),
    Baseline("mean training gaze track", lambda c, st, S: st, fit=_gazes, needs=("gaze",)),
)
DEPTH = (
    Baseline("per-clip mean depth", lambda c, st, S: constant_depth((VIDEO_TOKEN_FRAMES, S, S)),
             note="per-clip mean depth is one constant per clip; after the same scale-and-shift fit it is the "
                  "clip's mean inverse depth"),
    Baseline("mean training depth map", lambda c, st, S: np.repeat(st[None], VIDEO_TOKEN_FRAMES, 0),
             fit=_depth_map, needs=("depth",)),
)
RGB = (
    Baseline("mean training frame", lambda c, st, S: np.repeat(st[None], VIDEO_TOKEN_FRAMES, 0),
             fit=_mean_rgb, needs=("rgb",)),
    Baseline("nearest training frame by depth", lambda c, st, S: st.predict(token_depth(c, S)),
             fit=_depth_bank, needs=("rgb", "depth"),
             note="nearest training frame by depth: per frame, the RGB of the training frame whose normalised "
                  "inverse depth (16x16) is nearest in mean squared difference"),
)
