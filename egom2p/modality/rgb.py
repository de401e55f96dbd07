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
    return {"rgb": center_crop_resize(np.asarray(x, dtype=np.uint8), size)}  # no copy when already uint8


def prepare(x, norm=None) -> tuple[np.ndarray, None]:
    """Token frames uint8 [B, T, H, W, 3] -> (float32 [B, 3, T, H, W] in [-1, 1], None)."""
    x = np.asarray(x)
    if x.ndim != 5 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ModalityError(f"rgb tokenizer needs uint8 [B,60,H,W,3], got {x.dtype} {x.shape}")
    return (x.astype(np.float32) / np.float32(127.5) - np.float32(1)).transpose(0, 4, 1, 2, 3), None


def postprocess(video, norm=None) -> np.ndarray:
    """Decoded video float [B, 3, T, S, S] in [-1, 1] -> uint8 [B, T, S, S, 3]."""
    v = (np.asarray(video, np.float32).transpose(0, 2, 3, 4, 1) + 1) * np.float32(127.5)
    return np.clip(np.round(v), 0, 255).astype(np.uint8)


INFO = ModalityInfo(
    name="rgb", tokenizer="video", frame_shape=lambda h, w: (h, w, 3), dtype=np.uint8,
    columns=(pa.field("rgb_mp4", pa.large_binary()),), encode=encode, decode=decode_row, standardize=standardize,
    prepare=prepare, postprocess=postprocess, preset="rgb_from_depth",
)
