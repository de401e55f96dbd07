"""rgb: uint8 [60, H, W, 3] standard images; H.264 mp4 (CRF 18, yuv420p) in the clips table; the video tokenizer."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..video import center_crop_resize, decode, encode_h264, gray_to_rgb
from .base import ModalityError, ModalityInfo


def encode(clip) -> dict:
    return {"rgb_mp4": None if clip.rgb is None else encode_h264(clip.rgb, fps=clip.fps)}


def decode_row(row: dict, n: int, h: int, w: int) -> dict:
    if row.get("rgb_mp4") is None:
        return {"rgb": None}
    rgb = decode(row["rgb_mp4"])
    if rgb.shape != (n, h, w, 3):
        raise ModalityError(f"decoded RGB has shape {rgb.shape}, expected {(n, h, w, 3)}")
    return {"rgb": rgb}


def standardize(seq, frames: np.ndarray, size: int, depth=None) -> dict:
    """The window's frames (gray streams replicated to 3 channels), centre-cropped and resized."""
    if seq.read_frames is None:
        return {}
    x = np.asarray(seq.read_frames(frames))
    if x.ndim == 3 or (x.ndim == 4 and x.shape[-1] == 1):
        x = gray_to_rgb(x)
    if x.shape[:3] != (len(frames), seq.height, seq.width):
        raise ModalityError(f"frames have shape {x.shape}, expected ({len(frames)}, {seq.height}, {seq.width}, 3)")
    return {"rgb": center_crop_resize(x.astype(np.uint8), size)}


INFO = ModalityInfo(
    name="rgb", tokenizer="video", frame_shape=lambda h, w: (h, w, 3), dtype=np.uint8,
    columns=(pa.field("rgb_mp4", pa.large_binary()),), encode=encode, decode=decode_row, standardize=standardize,
    preset="rgb_from_depth",
)
