"""Video I/O: decode (decord), resample to 30 FPS, encode H.264 (ffmpeg), frame selection for tokens.

Video tokens are made from 16 frames at 8 FPS of a 2-second, 60-frame clip
(:func:`token_frame_indices`). A causal video tokenizer with 4x temporal compression (Cosmos
DV4x8x8 and the project's FSQ tokenizer) needs 1 + 4k frames: the 16 frames are padded to 17 by
repeating the last frame (:func:`pad_causal`), giving 1 latent frame for the first frame alone
(the causal first frame) and 1 latent frame for each following group of 4 frames: 1 + 4 = 5.
"""

from __future__ import annotations

import io
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import EgoM2PError, native_messages
from .modalities import CLIP_FPS, CLIP_FRAMES, VIDEO_TOKEN_FPS, VIDEO_TOKEN_FRAMES


class VideoError(EgoM2PError, RuntimeError):
    """A video could not be read or written; the message names the file and the problem."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    num_frames: int
    fps: float
    width: int
    height: int


def _reader(source, what: str):
    import decord

    said: list[str] = []
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            with native_messages() as said:  # ffmpeg's complaints go into the error, not onto stderr
                return decord.VideoReader(io.BytesIO(bytes(source)), ctx=decord.cpu(0), num_threads=1)
        path = os.fspath(source)
        if not os.path.exists(path):
            raise VideoError(f"{path}: video file not found")
        if os.path.getsize(path) == 0:
            raise VideoError(f"{path}: video file is empty")
        with native_messages() as said:
            return decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    except VideoError:
        raise
    except Exception as e:  # decord raises its own DECORDError / RuntimeError
        detail = f"; decoder: {said[0][:200]}" if said else ""
        reason = str(e).splitlines()[0][:200]
        raise VideoError(f"{what}: cannot decode video ({type(e).__name__}: {reason}{detail})") from e


def probe(source) -> VideoInfo:
    """Frame count, frame rate and size of a video file (or of mp4 bytes)."""
    what = "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
    vr = _reader(source, what)
    n = len(vr)
    if n == 0:
        raise VideoError(f"{what}: video has no frames")
    h, w = vr[0].shape[:2]
    return VideoInfo(what, n, float(vr.get_avg_fps()), int(w), int(h))


def decode(source, indices=None) -> np.ndarray:
    """Decode frames as uint8 RGB [N, H, W, 3]; ``indices`` selects frames (default: all)."""
    what = "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
    vr = _reader(source, what)
    n = len(vr)
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise VideoError(f"{what}: frame index out of range [0, {n}) (asked {idx.min()}..{idx.max()})")
    try:
        frames = vr.get_batch(list(map(int, idx))).asnumpy()
    except Exception as e:
        raise VideoError(f"{what}: decoding frames failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
    return np.ascontiguousarray(frames, dtype=np.uint8)


def frame_timestamps(source) -> np.ndarray:
    """Presentation time (seconds) of each frame, from the container."""
    what = "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source)
    vr = _reader(source, what)
    return np.asarray(vr.get_frame_timestamp(range(len(vr))))[:, 0].astype(np.float64)


def nearest_indices(src_times, query_times, max_gap: float | None = None) -> np.ndarray:
    """For each query time, the index of the nearest source time (both sorted ascending, same unit).

    With ``max_gap``, queries further than that from every source time get -1.
    """
    src = np.asarray(src_times, dtype=np.float64)
    q = np.asarray(query_times, dtype=np.float64)
    if src.size == 0:
        return np.full(q.shape, -1, dtype=np.int64)
    right = np.clip(np.searchsorted(src, q), 1, len(src) - 1) if len(src) > 1 else np.zeros(q.shape, np.int64)
    left = np.maximum(right - 1, 0)
    pick = np.where(np.abs(src[left] - q) <= np.abs(src[right] - q), left, right)
    if max_gap is not None:
        pick = np.where(np.abs(src[pick] - q) <= max_gap, pick, -1)
    return pick.astype(np.int64)


def resample_indices(src_times, fps: float = CLIP_FPS, start: float | None = None, end: float | None = None,
                     max_gap: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Resample a stream with timestamps ``src_times`` (s) to ``fps`` by nearest timestamp.

    Returns (target times, source index per target frame; -1 where no source frame is within
    ``max_gap``, default 1.5 frame periods of the target rate).
    """
    src = np.asarray(src_times, dtype=np.float64)
    t0 = src[0] if start is None else start
    t1 = src[-1] if end is None else end
    n = int(np.floor((t1 - t0) * fps + 1e-6)) + 1
    times = t0 + np.arange(n) / fps
    gap = 1.5 / fps if max_gap is None else max_gap
    return times, nearest_indices(src, times, gap)


def encode_h264(frames: np.ndarray, fps: int = CLIP_FPS, crf: int = 18, path: str | Path | None = None) -> bytes:
    """Encode uint8 RGB frames [N, H, W, 3] (even H, W) as H.264 mp4; returns the bytes (and writes ``path``)."""
    frames = np.ascontiguousarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoError(f"encode_h264 needs uint8 [N,H,W,3], got {frames.dtype} {frames.shape}")
    n, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise VideoError(f"encode_h264 needs even width and height, got {w}x{h}")
    out = str(path) if path is not None else None
    tmp = None
    if out is None:
        import tempfile

        fd, tmp = tempfile.mkstemp(suffix=".mp4")
        os.close(fd)
        out = tmp
    cmd = [
        "ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
        "-r", str(fps), "-i", "pipe:0", "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
        "-pix_fmt", "yuv420p", "-threads", "1", "-movflags", "+faststart", out,
    ]
    try:
        proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True, check=False)
        if proc.returncode != 0:
            raise VideoError(f"ffmpeg failed encoding {out}: {proc.stderr.decode(errors='replace')[-300:]}")
        with open(out, "rb") as f:
            return f.read()
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def gray_to_rgb(frames: np.ndarray) -> np.ndarray:
    """Gray frames [N, H, W] or [N, H, W, 1] -> [N, H, W, 3] by replication."""
    f = np.asarray(frames)
    if f.ndim == 4 and f.shape[-1] == 1:
        f = f[..., 0]
    if f.ndim != 3:
        raise ValueError(f"gray frames must be [N,H,W] or [N,H,W,1], got {f.shape}")
    return np.repeat(f[..., None], 3, axis=-1)


def center_crop_resize(frames: np.ndarray, size: int, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Centre square crop then resize to size x size; frames [N, H, W, C] or [N, H, W] (any dtype cv2 takes)."""
    from .geometry import center_crop_box

    n, h, w = frames.shape[:3]
    x0, y0, side = center_crop_box(w, h)
    crop = frames[:, y0:y0 + side, x0:x0 + side]
    if side == size:
        return np.ascontiguousarray(crop)
    return np.stack([cv2.resize(f, (size, size), interpolation=interpolation) for f in crop])


def token_frame_indices(num_frames: int = CLIP_FRAMES, src_fps: int = CLIP_FPS, dst_fps: int = VIDEO_TOKEN_FPS,
                        count: int = VIDEO_TOKEN_FRAMES) -> np.ndarray:
    """Indices of the frames of a clip that video tokens see: ``count`` frames at ``dst_fps`` by nearest time.

    For the standard clip (60 frames at 30 FPS) -> 16 frames at 8 FPS: 0, 4, 8, 11, 15, ..., 56.
    """
    idx = np.floor(np.arange(count) * src_fps / dst_fps + 0.5).astype(np.int64)
    if idx[-1] >= num_frames:
        raise ValueError(f"a clip of {num_frames} frames at {src_fps} FPS is too short for {count} frames at {dst_fps} FPS")
    return idx


def pad_causal(frames, temporal: int = 4):
    """Pad [.., T, ...] on axis 0 by repeating the last frame to 1 + k*temporal frames (causal tokenizers)."""
    t = frames.shape[0]
    k = -(-(t - 1) // temporal)
    need = 1 + k * temporal - t
    if need == 0:
        return frames
    if isinstance(frames, np.ndarray):
        return np.concatenate([frames, np.repeat(frames[-1:], need, axis=0)], 0)
    import torch

    return torch.cat([frames, frames[-1:].expand(need, *frames.shape[1:])], 0)
