"""Stitching per-window outputs of a long video into one result.

* :func:`stitch_camera`: camera windows (each relative to its own first frame) are chained through
  a frame they share with the earlier windows (the camera task's windows overlap by one frame).
* :func:`stitch_frames`: per-frame outputs (gaze) keep the earliest window covering a frame.
* :func:`stitch_video`: token-frame outputs (depth, RGB) on the even 8 FPS timeline; with
  ``align_inverse_depth`` every window after the first is mapped by the least-squares scale and
  shift (inverse depth) that fits it to the token frames it shares with the windows before it, so
  the whole video has one scale. A window that shares no token frame with the earlier ones cannot
  be aligned and is an error, never a silent skip.
"""

from __future__ import annotations

import numpy as np

from .. import geometry as geo
from ..modalities import CLIP_FPS, VIDEO_TOKEN_FPS
from ..video import token_frame_indices
from .inputs import TOKEN_GRID_FRAMES


def stitch_camera(windows: np.ndarray, starts: list[int], num_frames: int) -> np.ndarray:
    """Per-window trajectories [W, 60, 4, 4] (each relative to its first frame) -> one trajectory [N, 4, 4].

    Window k's first frame must already be posed by an earlier window (windows overlap by at least
    one frame: the camera task's stride is 59), so its poses are chained:
    T(s_k + j) = T(s_k) @ W_k[0]^-1 @ W_k[j].
    """
    out = np.full((num_frames, 4, 4), np.nan)
    covered = 0
    for w, s in zip(np.asarray(windows, dtype=np.float64), starts):
        if s > 0 and s >= covered:
            raise ValueError(f"window at frame {s} shares no frame with the earlier windows (covered 0.."
                             f"{covered - 1}); camera windows must overlap (stride < {len(w)})")
        rel = geo.relative_to_first(w)
        base = np.eye(4) if s == 0 else out[s]
        glob = np.einsum("ij,njk->nik", base, rel)
        end = min(s + len(w), num_frames)
        out[covered:end] = glob[covered - s:end - s]
        covered = max(covered, end)
    if covered < num_frames:
        raise ValueError(f"windows cover {covered} of {num_frames} frames")
    return out


def stitch_frames(windows: np.ndarray, starts: list[int], num_frames: int) -> np.ndarray:
    """Per-frame window outputs [W, 60, ...] -> [N, ...], each frame from the earliest window covering it."""
    windows = np.asarray(windows)
    out = np.full((num_frames, *windows.shape[2:]), np.nan, dtype=np.float64)
    covered = 0
    for w, s in zip(windows, starts):
        end = min(s + len(w), num_frames)
        if end > covered:
            out[covered:end] = w[covered - s:end - s]
            covered = end
    return out


def _fit_to_shared(w: np.ndarray, a: np.ndarray, b: np.ndarray, where: str) -> np.ndarray:
    """Map window ``w`` by the least-squares (scale, shift) taking its shared frames ``a`` onto ``b``.

    When the shared frames hold one value only (a flat prediction), the scale is undetermined: the
    window is shifted (scale 1) to match the mean of ``b``.
    """
    m = np.isfinite(a) & np.isfinite(b)
    if m.sum() < 1:
        raise ValueError(f"{where}: no valid pixel in the token frames shared with the earlier windows")
    x, y = a[m], b[m]
    if m.sum() >= 2 and np.ptp(x) > 1e-12:
        A = np.stack([x, np.ones_like(x)], 1)
        (sc, sh), *_ = np.linalg.lstsq(A, y, rcond=None)
    else:
        sc, sh = 1.0, float(np.mean(y - x))
    return sc * w + sh


def stitch_video(windows: np.ndarray, starts: list[int], num_frames: int | None = None,
                 align_inverse_depth: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-window token-frame outputs [W, 16, ...] -> (frames [M, ...], 30 FPS frame index [M]).

    Token frame j of a window starting at s shows frame s + token_frame_indices()[j]; starts must be
    multiples of 15 frames so every output lies on the one 8 FPS timeline (even spacing). A frame
    shown by an earlier window is kept from it; frames at or past ``num_frames`` (the padding of the
    last window) are dropped. With ``align_inverse_depth``, each window after the first is mapped by
    the least-squares scale and shift (inverse depth) that fits it to the token frames it shares with
    the stitched result; a window sharing none is an error.
    """
    tidx = token_frame_indices()
    frames: dict[int, np.ndarray] = {}
    for w, s in zip(windows, starts):
        if s % TOKEN_GRID_FRAMES:
            raise ValueError(f"window at frame {s} is off the {VIDEO_TOKEN_FPS} FPS token grid (starts must be "
                             f"multiples of {TOKEN_GRID_FRAMES} frames)")
        w = np.asarray(w)
        idx = s + tidx
        if frames and align_inverse_depth:
            shared = [j for j, f in enumerate(idx) if int(f) in frames]
            if not shared:
                raise ValueError(f"window at frame {s} shares no token frame with the earlier windows (which end at "
                                 f"frame {max(frames)}); windows must overlap to be put on one depth scale")
            a = np.stack([w[j] for j in shared]).astype(np.float64)
            b = np.stack([frames[int(idx[j])] for j in shared]).astype(np.float64)
            w = _fit_to_shared(w.astype(np.float64), a, b, f"window at frame {s}").astype(w.dtype)
        for j, f in enumerate(idx):
            if num_frames is None or f < num_frames:
                frames.setdefault(int(f), w[j])
    order = sorted(frames)
    return np.stack([frames[f] for f in order]), np.asarray(order, dtype=np.int64)


def renormalize_inverse_depth(depth: np.ndarray) -> np.ndarray:
    """Stitched inverse depth -> [0, 1] by one min-max map over the whole video (one scale kept; the standard
    clip's normalisation, per video); a flat video becomes 0.5."""
    d = np.asarray(depth, dtype=np.float32)
    finite = d[np.isfinite(d)]
    if finite.size == 0:
        return d
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-12:
        return np.where(np.isfinite(d), 0.5, np.nan).astype(np.float32)
    return ((d - lo) / (hi - lo)).astype(np.float32)


def frame_times(frame_index: np.ndarray) -> np.ndarray:
    """Seconds of 30 FPS frame indices."""
    return np.asarray(frame_index) / CLIP_FPS
