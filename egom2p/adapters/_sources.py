"""Small readers shared by the non-Aria adapters (text tables, image folders, 16-bit depth videos).

Every reader raises :class:`SourceError` naming the file and the problem, so that the curation
flow can quarantine the sequence.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .base import SourceError, require_file


def read_table(path: Path, *, min_cols: int, sep: str | None = None, what: str = "table") -> list[list[str]]:
    """Non-empty lines of a text table split on ``sep`` (whitespace by default); rows must have ``min_cols``."""
    path = require_file(path, what)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(path, f"unreadable {what} ({e})") from e
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cells = [c for c in (line.split(sep) if sep else line.split()) if c.strip() != ""]
        if len(cells) < min_cols:
            raise SourceError(path, f"line {n} has {len(cells)} columns, expected at least {min_cols} "
                                    f"(unknown {what} schema)")
        rows.append([c.strip() for c in cells])
    if not rows:
        raise SourceError(path, f"empty {what}")
    return rows


def floats(path: Path, cells: list[str]) -> np.ndarray:
    try:
        return np.array([float(c) for c in cells], dtype=np.float64)
    except ValueError as e:
        raise SourceError(path, f"non-numeric value ({e})") from e


def read_matrix_txt(path: Path, shape: tuple[int, ...], what: str) -> np.ndarray:
    """All numbers of a small text file reshaped to ``shape`` (e.g. a 3x3 K or a 4x4 pose)."""
    path = require_file(path, what)
    try:
        vals = np.array(path.read_text().replace(",", " ").split(), dtype=np.float64)
    except (OSError, ValueError) as e:
        raise SourceError(path, f"unreadable {what} ({e})") from e
    if vals.size != int(np.prod(shape)):
        raise SourceError(path, f"{what} has {vals.size} numbers, expected {int(np.prod(shape))}")
    return vals.reshape(shape)


def read_json(path: Path, what: str = "JSON file"):
    path = require_file(path, what)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SourceError(path, f"unreadable {what} ({e})") from e


def read_rgb_image(path: Path) -> np.ndarray:
    """uint8 RGB [H, W, 3] of a jpg/png."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SourceError(path, "unreadable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_depth_png_mm(path: Path) -> np.ndarray:
    """float32 metres [H, W] of a uint16 millimetre png (0 -> invalid, kept as 0)."""
    img = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH)
    if img is None:
        raise SourceError(path, "unreadable depth image")
    if img.dtype != np.uint16:
        raise SourceError(path, f"depth image is {img.dtype}, expected uint16 millimetres")
    return img.astype(np.float32) / 1000.0


def check_poses(path, c2w: np.ndarray) -> np.ndarray:
    """Finite rows must be rigid transforms (orthonormal rotation, last row 0 0 0 1); others become NaN."""
    c2w = np.asarray(c2w, dtype=np.float64)
    ok = np.isfinite(c2w).all(axis=(1, 2))
    if ok.any():
        R = c2w[ok, :3, :3]
        err = np.abs(np.einsum("nji,njk->nik", R, R) - np.eye(3)).max(axis=(1, 2))
        bottom = np.abs(c2w[ok, 3] - np.array([0, 0, 0, 1.0])).max(axis=1)
        if err.max() > 1e-3 or bottom.max() > 1e-6:
            raise SourceError(path, f"poses are not rigid transforms (max |R^T R - I| = {err.max():.2g}); "
                                    "unknown matrix convention or units")
    c2w[~ok] = np.nan
    return c2w


# --- video helpers ---------------------------------------------------------------------------------


def stream_info(path: Path) -> dict:
    """width, height, num_frames (packets counted), fps (Fraction), pix_fmt of the first video stream (PyAV)."""
    import av

    path = require_file(path, "video")
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise SourceError(path, "video has no readable video stream")
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate or s.base_rate
            n = sum(1 for p in c.demux(s) if p.size)
            info = {"width": int(s.codec_context.width), "height": int(s.codec_context.height), "num_frames": n,
                    "fps": Fraction(rate) if rate else None, "pix_fmt": s.codec_context.pix_fmt or ""}
    except (av.FFmpegError, OSError) as e:
        raise SourceError(path, f"cannot read the video ({type(e).__name__}: {str(e)[:200]})") from e
    if not info["fps"] or info["width"] <= 0:
        raise SourceError(path, "video has no readable video stream (no frame rate or size)")
    return info


def decode_gray16(path: Path, indices: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint16 [k, H, W] of the given frame indices of a 16-bit (gray16le, e.g. FFV1) video (PyAV).

    Only the frames from the first to max(indices) are decoded (windows are contiguous).
    """
    import av

    idx = np.asarray(indices, dtype=np.int64)
    if idx.size == 0:
        return np.zeros((0, height, width), np.uint16)
    lo, hi = int(idx.min()), int(idx.max())
    frames = []
    try:
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.codec_context.thread_count = 1
            for i, f in enumerate(c.decode(s)):
                if i > hi:
                    break
                if i >= lo:
                    frames.append(f.to_ndarray(format="gray16le"))
    except (av.FFmpegError, OSError, IndexError) as e:
        raise SourceError(path, f"cannot decode the depth video ({type(e).__name__}: {str(e)[:200]})") from e
    if len(frames) < hi - lo + 1:
        raise SourceError(path, f"depth video has fewer frames than asked (frames {lo}..{hi}, decoded {len(frames)})")
    arr = np.stack(frames)
    if arr.shape[1:] != (height, width):
        raise SourceError(path, f"depth frames are {arr.shape[2]}x{arr.shape[1]}, expected {width}x{height}")
    return arr[idx - lo]


def write_gray16_video(path: Path, depth_mm: np.ndarray, fps: int = 30) -> None:
    """Write uint16 frames [N, H, W] losslessly (FFV1, gray16le) as the official 16-bit depth videos are."""
    import av

    depth_mm = np.ascontiguousarray(depth_mm, dtype="<u2")
    n, h, w = depth_mm.shape
    try:
        with av.open(str(path), mode="w") as c:
            s = c.add_stream("ffv1", rate=int(fps))
            s.width, s.height, s.pix_fmt = w, h, "gray16le"
            s.codec_context.thread_count = 1
            for f in depth_mm:
                for packet in s.encode(av.VideoFrame.from_ndarray(f, format="gray16le")):
                    c.mux(packet)
            for packet in s.encode():
                c.mux(packet)
    except (av.FFmpegError, OSError) as e:
        raise RuntimeError(f"writing {path} failed: {type(e).__name__}: {str(e)[:300]}") from e


def timeline_from_rate(num_src: int, src_fps: float, fps: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-timestamp map of a constant-rate stream onto the ``fps`` timeline.

    Returns (source index per timeline frame, valid flag: a source frame lies within 1 ms).
    """
    src_t = np.arange(num_src) / float(src_fps)
    n = int(np.floor(src_t[-1] * fps + 1e-6)) + 1
    t = np.arange(n) / fps
    from ..video import nearest_indices

    idx = nearest_indices(src_t, t - 1e-7)  # exact ties go to the earlier source frame
    valid = np.abs(src_t[idx] - t) < 1e-3
    return idx, valid
