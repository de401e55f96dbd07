"""Task inputs: user videos onto the 30 FPS clip timeline, windows, and standard-clip arrays at the model's size.

1. **Preprocess** (:func:`load_video`, :func:`load_depth`): decode, resample to the 30 FPS clip
   timeline by nearest timestamp (:func:`egom2p.video.nearest_indices`), square centre crop and
   resize to the tokenizer's image side, depth to inverse depth.
2. **Window** (:func:`plan_windows`): 2-second windows (60 frames). Per-frame tasks use
   :func:`window_starts` (every ``stride`` frames, plus one ending on the last frame). Token-frame
   tasks (depth, RGB) use :func:`video_window_starts`: starts on the 0.5 s grid so every window's
   16 token frames lie on one even 8 FPS timeline; the last window is padded by repeating the last
   frame when the video does not end on that grid (outputs past the last frame are dropped).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..modalities import CLIP_FPS, CLIP_FRAMES, VIDEO_TOKEN_FPS, VIDEO_TOKEN_FRAMES
from ..modality import MODALITY_INFO
from ..modality.depth import normalize_inverse_depth, resize_masked
from ..standardize import clip_starts
from ..video import VideoError, center_crop_resize, decode, frame_timestamps, nearest_indices, probe
from .spec import TaskInputError

# 30 FPS frames per 4 token frames (0.5 s): window starts on this grid keep the 8 FPS token frames of
# every window on one timeline (token frame j of a window at s = 15 m is global token frame j + 4 m).
TOKEN_GRID_FRAMES = CLIP_FPS * 4 // VIDEO_TOKEN_FPS  # 15
TOKEN_GRID_TOKENS = 4


@dataclass
class VideoInput:
    """A video on the 30 FPS clip timeline, as square standard images."""

    path: str
    frames: np.ndarray  # uint8 [N, S, S, 3] at 30 FPS
    times: np.ndarray  # [N] seconds from the first frame
    source_fps: float
    source_size: tuple[int, int]  # (width, height)


def _too_short(path: str, n: int) -> TaskInputError:
    return TaskInputError(
        f"{path}: video is {n} frames ({n / CLIP_FPS:.2f} s) on the {CLIP_FPS} FPS timeline; one window needs "
        f"{CLIP_FRAMES} frames ({CLIP_FRAMES / CLIP_FPS:.0f} s)")


def load_video(path, size: int) -> VideoInput:
    """Decode a video, resample it to 30 FPS by nearest timestamp, centre-crop and resize to ``size``."""
    path = os.fspath(path)
    try:
        info = probe(path)
        ts = frame_timestamps(path)
    except VideoError as e:
        raise TaskInputError(str(e)) from e
    if len(ts) != info.num_frames or not np.all(np.isfinite(ts)) or np.any(np.diff(ts) <= 0):
        ts = np.arange(info.num_frames) / max(info.fps, 1e-6)  # fall back to the nominal rate
    # 30 FPS frames whose time lies within half a target frame of the last source frame
    n30 = int(np.floor((ts[-1] - ts[0]) * CLIP_FPS + 0.5)) + 1
    if n30 < CLIP_FRAMES:
        raise _too_short(path, n30)
    times = np.arange(n30) / CLIP_FPS
    src = nearest_indices(ts - ts[0], times)
    uniq, inverse = np.unique(src, return_inverse=True)
    try:
        frames = decode(path, uniq)
    except VideoError as e:
        raise TaskInputError(str(e)) from e
    frames = center_crop_resize(frames, size)[inverse]
    return VideoInput(path, np.ascontiguousarray(frames), times, info.fps, (info.width, info.height))


@dataclass
class DepthInput:
    """A depth video on the 30 FPS timeline as inverse depth, square standard images."""

    path: str
    inverse: np.ndarray  # float32 [N, S, S], inverse depth (1/m for metric input), NaN invalid
    metric: bool


def _read_depth_array(path: str) -> np.ndarray:
    if not os.path.exists(path):
        raise TaskInputError(f"{path}: depth file not found")
    try:
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as z:
                if "depth" not in z:
                    raise TaskInputError(f"{path}: .npz has no array 'depth' (has {sorted(z.files)})")
                return np.asarray(z["depth"])
        return np.load(path, allow_pickle=False)
    except TaskInputError:
        raise
    except Exception as e:
        raise TaskInputError(f"{path}: cannot read depth ({type(e).__name__}: {str(e)[:200]}); expected a .npy "
                             f"float array [N, H, W] or an .npz with 'depth'") from e


def load_depth(path, size: int, fps: float = CLIP_FPS, kind: str = "metric") -> DepthInput:
    """Read a depth video from ``.npy`` (float [N, H, W]) or ``.npz`` (array ``depth``) at ``fps``.

    ``kind="metric"``: z-depth in metres, 0/NaN invalid. ``kind="inverse"``: inverse (relative)
    depth, larger = nearer, NaN invalid. Resampled to 30 FPS by nearest timestamp, centre-cropped
    and resized to ``size`` ignoring invalid pixels.
    """
    path = os.fspath(path)
    if kind not in ("metric", "inverse"):
        raise ValueError(f"depth kind must be 'metric' or 'inverse', got {kind!r}")
    d = _read_depth_array(path)
    if d.ndim != 3 or not np.issubdtype(d.dtype, np.floating):
        raise TaskInputError(f"{path}: depth must be a float array [N, H, W], got {d.dtype} {d.shape}")
    n_src = d.shape[0]
    n30 = int(np.floor((n_src - 1) / fps * CLIP_FPS + 1e-6)) + 1
    if n30 < CLIP_FRAMES:
        raise _too_short(path, n30)
    src = nearest_indices(np.arange(n_src) / fps, np.arange(n30) / CLIP_FPS)
    d = d[src].astype(np.float32)
    if kind == "metric":
        valid = np.isfinite(d) & (d > 0)
        inv = np.where(valid, 1.0 / np.where(valid, d, 1.0), 0.0).astype(np.float32)
    else:
        valid = np.isfinite(d)
        inv = np.where(valid, d, 0.0).astype(np.float32)
    if not valid.any():
        raise TaskInputError(f"{path}: depth has no valid pixel")
    small, ok = resize_masked(inv, valid, size)
    return DepthInput(path, np.where(ok, small, np.nan).astype(np.float32), kind == "metric")


# --- windows ------------------------------------------------------------------------------------


def window_starts(num_frames: int, length: int = CLIP_FRAMES, stride: int = CLIP_FRAMES) -> list[int]:
    """Window starts covering all ``num_frames`` frames: every ``stride`` frames plus one ending on the last frame."""
    if num_frames < length:
        raise TaskInputError(f"{num_frames} frames is shorter than one window of {length} frames")
    starts = clip_starts(num_frames, length, stride)
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return starts


def token_grid_frame(k) -> np.ndarray:
    """30 FPS frame of global token frame ``k`` (8 FPS, nearest time): 0, 4, 8, 11, 15, ..."""
    return np.floor(np.asarray(k) * CLIP_FPS / VIDEO_TOKEN_FPS + 0.5).astype(np.int64)


def video_window_starts(num_frames: int, stride: int, overlap: bool) -> tuple[list[int], int]:
    """Window starts for token-frame outputs and the padding (frames) the last window needs.

    Starts are multiples of :data:`TOKEN_GRID_FRAMES` (15 frames = 4 token frames), so the token
    frames of all windows lie on one even 8 FPS timeline. With ``overlap`` every window shares at
    least one token frame with the previous one (``stride`` <= 45). Windows continue until the last
    token frame inside the video is covered; the last window may reach past the last frame by
    ``padding`` frames (the caller repeats the last frame there and drops outputs beyond the video).
    """
    if num_frames < CLIP_FRAMES:
        raise TaskInputError(f"{num_frames} frames is shorter than one window of {CLIP_FRAMES} frames")
    if stride <= 0 or stride % TOKEN_GRID_FRAMES:
        raise TaskInputError(f"window stride {stride} must be a positive multiple of {TOKEN_GRID_FRAMES} frames "
                             f"(0.5 s) so the token frames keep an even {VIDEO_TOKEN_FPS} FPS spacing")
    span = VIDEO_TOKEN_FRAMES  # token frames per window
    step = stride // TOKEN_GRID_FRAMES * TOKEN_GRID_TOKENS  # token frames between window starts
    if overlap and step >= span:
        raise TaskInputError(f"window stride {stride} leaves no shared token frame between windows; this task "
                             f"aligns each window to the previous one, so use a stride of at most "
                             f"{(span - 1) // TOKEN_GRID_TOKENS * TOKEN_GRID_FRAMES} frames")
    if step > span:
        raise TaskInputError(f"window stride {stride} skips token frames (at most {CLIP_FRAMES} frames)")
    last_k = int(np.floor((num_frames - 1 + 0.5) * VIDEO_TOKEN_FPS / CLIP_FPS))  # last token frame in the video
    while token_grid_frame(last_k) > num_frames - 1:
        last_k -= 1
    starts = [0]
    while starts[-1] // TOKEN_GRID_FRAMES * TOKEN_GRID_TOKENS + span - 1 < last_k:
        starts.append(starts[-1] + stride)
    padding = max(0, starts[-1] + CLIP_FRAMES - num_frames)
    return starts, padding


def plan_windows(spec, num_frames: int, stride: int | None = None) -> tuple[list[int], int]:
    """(window starts, frames of padding after the last frame) for a task on a video of ``num_frames``."""
    stride = int(stride or spec.stride)
    if spec.video_output:
        return video_window_starts(num_frames, stride, overlap=spec.align_windows)
    return window_starts(num_frames, CLIP_FRAMES, stride), 0


def cut_windows(frames: np.ndarray, starts: list[int], padding: int = 0) -> np.ndarray:
    """[N, ...] -> [W, 60, ...]: the windows at ``starts``, the last frame repeated ``padding`` times at the end."""
    if padding:
        frames = np.concatenate([frames, np.repeat(frames[-1:], padding, axis=0)], 0)
    return np.stack([frames[s:s + CLIP_FRAMES] for s in starts])


def depth_windows(depth: DepthInput, starts: list[int], padding: int = 0) -> np.ndarray:
    """Per-window min-max normalised inverse depth [W, 60, S, S] (the standard clip's depth)."""
    out = []
    for s, w in zip(starts, cut_windows(depth.inverse, starts, padding)):
        valid = np.isfinite(w)
        if not valid.any():
            raise TaskInputError(f"{depth.path}: window at frame {s} has no valid depth pixel")
        norm, _ = normalize_inverse_depth(np.where(valid, w, 0.0), valid)
        out.append(norm)
    return np.stack(out).astype(np.float32)


# --- standard clips -> model inputs ---------------------------------------------------------------


def resize_map(values: np.ndarray, size: int, valid: np.ndarray | None = None) -> np.ndarray:
    """[N, H, W] float (NaN invalid; ``valid`` narrows it) -> [N, size, size], invalid-aware area resize.

    A target pixel's value is the mean of the valid source pixels under it (so it never mixes in an
    invalid one); it is valid when at least half of its area is (:func:`egom2p.modality.depth.resize_masked`).
    """
    ok = np.isfinite(values)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    if values.shape[1] == size and values.shape[2] == size:
        return np.where(ok, values, np.nan).astype(np.float32)
    small, keep = resize_masked(np.where(ok, values, 0.0), ok, size)
    return np.where(keep, small, np.nan).astype(np.float32)


def model_input(values: np.ndarray, modality: str, size: int) -> np.ndarray:
    """One clip's standard array of ``modality`` at the model's image ``size`` (video modalities resized)."""
    v = np.asarray(values)
    if MODALITY_INFO[modality].tokenizer == "video" and v.shape[1] != size:
        return center_crop_resize(v, size) if v.dtype == np.uint8 else resize_map(v, size)
    return v


def clip_inputs(clips, modalities, size: int) -> dict[str, np.ndarray]:
    """{modality: [B, 60, ...]} model inputs from standard clips."""
    return {m: np.stack([model_input(c.get(m), m, size) for c in clips]) for m in modalities}


def token_rgb(clip, size: int) -> np.ndarray:
    """The 16 token frames (8 FPS) of a clip's RGB at ``size``: uint8 [16, size, size, 3]."""
    from ..video import token_frame_indices

    return model_input(clip.rgb[token_frame_indices()], "rgb", size)


def token_depth(clip, size: int) -> np.ndarray:
    """The 16 token frames of a clip's normalised inverse depth at ``size``: float32 [16, size, size], NaN invalid."""
    from ..video import token_frame_indices

    return resize_map(np.asarray(clip.depth[token_frame_indices()], dtype=np.float32), size)
