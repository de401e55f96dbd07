"""Video I/O: decode, resample to 30 FPS, encode H.264 in memory, frame selection for tokens.

Everything goes through libraries in this process; no ffmpeg command line, no temporary files:

* **encode**: PyAV (``av``, whose wheels carry FFmpeg with libx264) writes H.264 (yuv420p, CRF 18
  by default, one encoder thread) into an in-memory mp4 (:func:`encode_h264`), or streams frames
  into a file while they are made (:class:`H264Writer`, used by the renderer).
* **decode**: mp4 *bytes* (a clips-table row: the whole 2-s clip) are decoded with PyAV:
  ``benchmarks/bench_video.py`` measured the same CPU time per clip as decord (within 10 %) and a
  shorter wall time (decord decodes in a thread of its own that its caller waits for). Video
  *files* (raw datasets: windows deep inside long recordings) keep decord's random access (PyAV
  would decode from the start). Where decord cannot open a video (it fails on H.264 16, 24 or 48
  px wide) the same call falls back to PyAV, so every size decodes.

Video tokens are made from 16 frames at 8 FPS of a 2-second, 60-frame clip
(:func:`token_frame_indices`). A causal video tokenizer with 4x temporal compression (Cosmos
DV4x8x8 and the project's FSQ tokenizer) needs 1 + 4k frames: the 16 frames are padded to 17 by
repeating the last frame (:func:`pad_causal`), giving 1 latent frame for the first frame alone
(the causal first frame) and 1 latent frame for each following group of 4 frames: 1 + 4 = 5.
"""

from __future__ import annotations

import io
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import EgoM2PError, native_messages
from .modalities import CLIP_FPS, CLIP_FRAMES, VIDEO_TOKEN_FPS, VIDEO_TOKEN_FRAMES


class VideoError(EgoM2PError, RuntimeError):
    """A video could not be read or written; the message names the file and the problem."""


class _IndexError(VideoError):
    """Asked frames outside the video (never a reason to try another decoder)."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    num_frames: int
    fps: float
    width: int
    height: int


def _is_bytes(source) -> bool:
    return isinstance(source, (bytes, bytearray, memoryview))


def _what(source) -> str:
    return "<bytes>" if _is_bytes(source) else os.fspath(source)


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"


def _check_file(source) -> str:
    path = os.fspath(source)
    if not os.path.exists(path):
        raise VideoError(f"{path}: video file not found")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: video file is empty")
    return path


def _check_range(idx: np.ndarray, n: int, what: str) -> None:
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise _IndexError(f"{what}: frame index out of range [0, {n}) (asked {idx.min()}..{idx.max()})")


# --- PyAV: bytes, and the fallback for files decord cannot read ------------------------------------


def _av_open(source, what: str):
    import av

    try:
        return av.open(io.BytesIO(bytes(source)) if _is_bytes(source) else source, mode="r")
    except (av.FFmpegError, OSError, ValueError) as e:
        raise VideoError(f"{what}: cannot decode video ({_first_line(e)})") from e


def _av_stream(container, what: str):
    if not container.streams.video:
        raise VideoError(f"{what}: cannot decode video (no video stream)")
    stream = container.streams.video[0]
    stream.codec_context.thread_count = 1
    return stream


def _av_probe(source, what: str) -> VideoInfo:
    import av

    with _av_open(source, what) as c:
        s = _av_stream(c, what)
        n = int(s.frames or 0)
        try:
            if n == 0:  # container without a frame count: count the packets
                n = sum(1 for p in c.demux(s) if p.size)
        except av.FFmpegError as e:
            raise VideoError(f"{what}: cannot decode video ({_first_line(e)})") from e
        rate = s.average_rate or s.guessed_rate or s.base_rate
        w, h = int(s.codec_context.width), int(s.codec_context.height)
    if n == 0:
        raise VideoError(f"{what}: video has no frames")
    return VideoInfo(what, n, float(rate) if rate else 0.0, w, h)


def _av_decode(source, what: str, indices=None, times: bool = False):
    """Frames (uint8 RGB [N, H, W, 3], all or ``indices``) or, with ``times``, presentation times (s)."""
    import av

    idx = None if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    with _av_open(source, what) as c:
        s = _av_stream(c, what)
        declared = int(s.frames or 0)
        if idx is not None and declared:
            _check_range(idx, declared, what)
        want = None if idx is None else set(idx.tolist())
        last = None if idx is None else (int(idx.max()) if idx.size else -1)
        got, count = {}, 0
        try:
            for frame in c.decode(s):
                if last is not None and count > last:
                    break
                if want is None or count in want:
                    got[count] = frame.time if times else frame.to_ndarray(format="rgb24")
                count += 1
        except av.FFmpegError as e:
            raise VideoError(f"{what}: decoding frames failed ({_first_line(e)})") from e
        shape = (int(s.codec_context.height), int(s.codec_context.width), 3)
    expect = declared if idx is None else min(declared, last + 1)
    if expect and count < expect:
        raise VideoError(f"{what}: video is truncated (decoded {count} of {declared} frames)")
    if idx is None:
        if count == 0:
            raise VideoError(f"{what}: video has no frames")
        idx = np.arange(count)
    _check_range(idx, count, what)
    if times:
        return np.array([got[int(i)] for i in idx], dtype=np.float64)
    if not idx.size:
        return np.zeros((0, *shape), np.uint8)
    return np.ascontiguousarray(np.stack([got[int(i)] for i in idx]), dtype=np.uint8)


# --- decord: random access into video files ---------------------------------------------------------


def _decord_reader(path: str, what: str):
    import decord

    said: list[str] = []
    try:
        with native_messages() as said:  # ffmpeg's complaints go into the error, not onto stderr
            return decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    except Exception as e:  # decord raises its own DECORDError / RuntimeError
        detail = f"; decoder: {said[0][:200]}" if said else ""
        raise VideoError(f"{what}: cannot decode video ({_first_line(e)}{detail})") from e


def _decord_probe(path: str, what: str) -> VideoInfo:
    vr = _decord_reader(path, what)
    n = len(vr)
    if n == 0:
        raise VideoError(f"{what}: video has no frames")
    try:
        h, w = vr[0].shape[:2]
    except Exception as e:
        raise VideoError(f"{what}: decoding frames failed ({_first_line(e)})") from e
    return VideoInfo(what, n, float(vr.get_avg_fps()), int(w), int(h))


def _decord_decode(path: str, what: str, indices=None, times: bool = False):
    cursors = getattr(_WINDOWS, "cursors", None)
    if cursors is not None and indices is not None and not times and np.size(indices):
        return _decord_window(cursors, path, what, np.asarray(indices, dtype=np.int64).reshape(-1))
    vr = _decord_reader(path, what)
    n = len(vr)
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    _check_range(idx, n, what)
    try:
        if times:
            return np.asarray(vr.get_frame_timestamp(list(map(int, idx))))[:, 0].astype(np.float64)
        frames = vr.get_batch(list(map(int, idx))).asnumpy()
    except Exception as e:
        raise VideoError(f"{what}: decoding frames failed ({_first_line(e)})") from e
    return np.ascontiguousarray(frames, dtype=np.uint8)


# --- windows of one file in a row: one reader, each frame decoded once ----------------------------------

_WINDOWS = threading.local()


@contextmanager
def reading_windows(keep: bool = False):
    """Within the block, :func:`decode` of a video *file* (decord) reuses what it did for the last call.

    Curation reads a sequence's windows one after the other, in increasing order and often
    overlapping (stride < 60). Without this block each call opens a new reader, seeks back to a
    keyframe and decodes everything from there; within it, each file keeps one open reader and the
    frames it returned last: frames asked again are copied from those, and the others continue the
    reader's decoding where it stopped (decord seeks only when asked for frames behind it). Each
    frame is then decoded and converted to RGB once. The frames are exactly those of a plain
    :func:`decode` (decord's seeks are frame-accurate); they come back read-only, since the next
    call copies from them. Memory: one window of frames per file more than a plain decode.

    ``keep``: the readers and frames of the files this block read stay after it (those of earlier
    ones go), so that the next ``keep`` block goes on where this one stopped (the next work chunk
    of the sequence, often in the same worker). That holds at most one window per file of the last
    block, per thread, between blocks. Without ``keep`` everything is released when the block ends.
    Per thread; a nested block is part of the outer one.
    """
    if getattr(_WINDOWS, "cursors", None) is not None:
        yield
        return
    if keep:
        cursors = _WINDOWS.kept = getattr(_WINDOWS, "kept", None) or {}
    else:
        cursors = {}
    _WINDOWS.cursors, _WINDOWS.used = cursors, set()
    used = _WINDOWS.used
    try:
        yield
    finally:
        _WINDOWS.cursors = _WINDOWS.used = None
        for path in [p for p in cursors if p not in used]:
            del cursors[path]


@dataclass
class _Cursor:
    key: tuple  # (size, mtime): a file rewritten since is another video
    reader: object
    rows: dict  # frame index -> row of ``frames``
    frames: np.ndarray | None = None


def _decord_window(cursors: dict, path: str, what: str, idx: np.ndarray) -> np.ndarray:
    st = os.stat(path)
    key = (st.st_size, st.st_mtime_ns)
    cur = cursors.get(path)
    if cur is None or cur.key != key:
        cursors.pop(path, None)
        cur = _Cursor(key, _decord_reader(path, what), {})
    _check_range(idx, len(cur.reader), what)
    uniq = np.unique(idx)
    have = np.array([int(i) in cur.rows for i in uniq], dtype=bool)
    try:
        new = cur.reader.get_batch(list(map(int, uniq[~have]))).asnumpy() if not have.all() else None
    except Exception as e:
        cursors.pop(path, None)  # a reader that failed is not trusted again
        raise VideoError(f"{what}: decoding frames failed ({_first_line(e)})") from e
    shape = (new if new is not None else cur.frames).shape[1:]
    block = np.empty((len(uniq), *shape), np.uint8)
    if have.any():
        block[have] = cur.frames[[cur.rows[int(i)] for i in uniq[have]]]
    if new is not None:
        block[~have] = new
    block.flags.writeable = False
    cursors[path] = _Cursor(key, cur.reader, {int(i): r for r, i in enumerate(uniq)}, block)
    _WINDOWS.used.add(path)
    if len(idx) == len(uniq) and (idx == uniq).all():
        return block
    out = block[np.searchsorted(uniq, idx)]
    out.flags.writeable = False
    return out


def _read(source, decord_fn, av_fn, *args):
    """Bytes -> PyAV; a file -> decord, falling back to PyAV where decord cannot read it."""
    what = _what(source)
    if _is_bytes(source):
        return av_fn(source, what, *args)
    path = _check_file(source)
    try:
        return decord_fn(path, what, *args)
    except _IndexError:
        raise
    except VideoError as first:
        try:
            return av_fn(path, what, *args)
        except _IndexError:
            raise
        except VideoError:
            raise first from None


def probe(source) -> VideoInfo:
    """Frame count, frame rate and size of a video file (or of mp4 bytes)."""
    return _read(source, _decord_probe, _av_probe)


def decode(source, indices=None) -> np.ndarray:
    """Decode frames as uint8 RGB [N, H, W, 3]; ``indices`` selects frames (default: all)."""
    return _read(source, _decord_decode, _av_decode, indices)


def frame_timestamps(source) -> np.ndarray:
    """Presentation time (seconds) of each frame, from the container."""
    return _read(source, _decord_decode, _av_decode, None, True)


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


class H264Writer:
    """Encode uint8 RGB frames [H, W, 3] as H.264 (yuv420p) mp4 with PyAV, one frame at a time.

    ``path=None`` keeps the mp4 in memory (:meth:`close` returns its bytes); with a path the file is
    written as frames arrive (``+faststart``: the index goes to the front). Even width and height.
    """

    def __init__(self, path: str | Path | None, width: int, height: int, fps: int = CLIP_FPS, crf: int = 18,
                 preset: str = "veryfast"):
        import av

        if width % 2 or height % 2 or width <= 0 or height <= 0:
            raise VideoError(f"H.264 needs even width and height, got {width}x{height}")
        self.path = None if path is None else Path(path)
        self.what = "<bytes>" if path is None else str(path)
        self.size = (int(width), int(height))
        self._buf = io.BytesIO() if path is None else None
        try:
            if self._buf is not None:  # faststart rewrites the file by name: not possible in memory
                self._c = av.open(self._buf, mode="w", format="mp4")
            else:
                self._c = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
            self._s = self._c.add_stream("libx264", rate=int(fps))
            self._s.width, self._s.height, self._s.pix_fmt = self.size[0], self.size[1], "yuv420p"
            self._s.codec_context.options = {"crf": str(crf), "preset": preset}
            self._s.codec_context.thread_count = 1
        except (av.FFmpegError, OSError, ValueError) as e:
            raise VideoError(f"{self.what}: cannot start H.264 encoding ({_first_line(e)})") from e

    def write(self, frame: np.ndarray) -> None:
        import av

        f = np.ascontiguousarray(frame)
        if f.dtype != np.uint8 or f.shape != (self.size[1], self.size[0], 3):
            raise VideoError(f"{self.what}: frames must be uint8 [{self.size[1]},{self.size[0]},3], got {f.dtype} {f.shape}")
        try:  # the frame wraps the array's memory (no copy); the encoder converts it to yuv420p at once
            for packet in self._s.encode(av.VideoFrame.from_numpy_buffer(f, format="rgb24")):
                self._c.mux(packet)
        except av.FFmpegError as e:
            raise VideoError(f"{self.what}: H.264 encoding failed ({_first_line(e)})") from e

    def close(self) -> bytes | None:
        import av

        try:
            for packet in self._s.encode():
                self._c.mux(packet)
            self._c.close()
        except (av.FFmpegError, OSError) as e:
            raise VideoError(f"{self.what}: H.264 encoding failed ({_first_line(e)})") from e
        return None if self._buf is None else self._buf.getvalue()

    def abort(self) -> None:
        try:
            self._c.close()
        except Exception:  # the partial output is discarded by the caller anyway
            pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()


def encode_h264(frames: np.ndarray, fps: int = CLIP_FPS, crf: int = 18, path: str | Path | None = None) -> bytes:
    """Encode uint8 RGB frames [N, H, W, 3] (even H, W) as H.264 mp4 in memory; returns the bytes (and writes ``path``)."""
    frames = np.ascontiguousarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoError(f"encode_h264 needs uint8 [N,H,W,3], got {frames.dtype} {frames.shape}")
    n, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise VideoError(f"encode_h264 needs even width and height, got {w}x{h}")
    writer = H264Writer(None, w, h, fps=fps, crf=crf)
    with writer:
        for f in frames:
            writer.write(f)
    data = writer.close()
    if path is not None:
        try:
            Path(path).write_bytes(data)
        except OSError as e:
            raise VideoError(f"{path}: cannot write the video ({e})") from e
    return data


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
