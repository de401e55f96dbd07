"""Small readers shared by the non-Aria adapters (text tables, image folders, 16-bit depth videos).

Every reader raises :class:`SourceError` naming the file and the problem, so that the curation
flow can quarantine the sequence.
"""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .base import SourceError


def require_file(path: Path, what: str = "file") -> Path:
    path = Path(path)
    if not path.is_file():
        raise SourceError(path, f"missing {what}")
    return path


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


def ffprobe_stream(path: Path) -> dict:
    """width, height, nb_frames (counted), fps (Fraction), pix_fmt of the first video stream."""
    path = require_file(path, "video")
    cmd = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
           "stream=width,height,nb_read_frames,r_frame_rate,avg_frame_rate,pix_fmt", "-of", "json", str(path)]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise SourceError(path, f"ffprobe cannot read the video ({proc.stderr.decode(errors='replace')[-200:]})")
    try:
        s = json.loads(proc.stdout)["streams"][0]
        rate = s.get("avg_frame_rate") or s["r_frame_rate"]
        if rate in ("0/0", "", None):
            rate = s["r_frame_rate"]
        return {"width": int(s["width"]), "height": int(s["height"]), "num_frames": int(s["nb_read_frames"]),
                "fps": Fraction(rate), "pix_fmt": s.get("pix_fmt", "")}
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as e:
        raise SourceError(path, f"video has no readable video stream ({e})") from e


def decode_gray16(path: Path, indices: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint16 [k, H, W] of the given frame indices of a 16-bit (gray16le, e.g. FFV1) video, via ffmpeg.

    Only the frames from min(indices) to max(indices) are decoded (windows are contiguous).
    """
    idx = np.asarray(indices, dtype=np.int64)
    if idx.size == 0:
        return np.zeros((0, height, width), np.uint16)
    lo, hi = int(idx.min()), int(idx.max())
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-vf", f"select='between(n\\,{lo}\\,{hi})'",
           "-vsync", "0", "-f", "rawvideo", "-pix_fmt", "gray16le", "-threads", "1", "pipe:1"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise SourceError(path, f"ffmpeg cannot decode the depth video ({proc.stderr.decode(errors='replace')[-200:]})")
    frame_bytes = width * height * 2
    got = len(proc.stdout) // frame_bytes
    if got < hi - lo + 1:
        raise SourceError(path, f"depth video has fewer frames than asked (frames {lo}..{hi}, decoded {got})")
    arr = np.frombuffer(proc.stdout[: (hi - lo + 1) * frame_bytes], dtype="<u2").reshape(hi - lo + 1, height, width)
    return arr[idx - lo]


def write_gray16_video(path: Path, depth_mm: np.ndarray, fps: int = 30) -> None:
    """Write uint16 frames [N, H, W] losslessly (FFV1, gray16le) as the official 16-bit depth videos are."""
    depth_mm = np.ascontiguousarray(depth_mm, dtype="<u2")
    n, h, w = depth_mm.shape
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray16le", "-s", f"{w}x{h}", "-r", str(fps),
           "-i", "pipe:0", "-c:v", "ffv1", "-pix_fmt", "gray16le", "-threads", "1", str(path)]
    proc = subprocess.run(cmd, input=depth_mm.tobytes(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}: {proc.stderr.decode(errors='replace')[-300:]}")


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
