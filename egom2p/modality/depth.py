"""depth: float32 [60, H, W] inverse depth, min-max normalised per clip to [0, 1] over valid pixels, NaN invalid;
float16 Blosc-zstd (numcodecs, Zarr's codec library) in the clips table, with its source, metric range and
raw-valid mask; the video tokenizer (as 3-channel inverse depth, NaN -> 0).

Depth comes from an annotator as a :class:`DepthAnnotation` for the window (metric z-depth in metres, or
affine-invariant inverse depth), so that the same code serves sensor, rendered and pseudo-labelled depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pyarrow as pa

from ..video import center_crop_resize
from .base import ModalityError, ModalityInfo

DEPTH_SOURCES = ("sensor", "rollingdepth", "render")
DEPTH_KINDS = ("metric", "inverse_relative")


@dataclass
class DepthAnnotation:
    """Depth of one clip window at source resolution.

    kind ``metric``: z-depth in metres, 0 or NaN where invalid.
    kind ``inverse_relative``: affine-invariant inverse depth (larger = nearer), NaN where invalid.
    ``raw_valid``: where a cleaning annotator (``sensor``) filled or inpainted pixels, the pixels the
    sensor really returned (bool [60, H, W]); None when every valid pixel is a measurement.
    """

    values: np.ndarray  # float32 [60, H, W]
    kind: str
    source: str  # sensor | render | rollingdepth
    raw_valid: np.ndarray | None = None

    def __post_init__(self):
        if self.kind not in DEPTH_KINDS:
            raise ValueError(f"depth kind must be one of {DEPTH_KINDS}, got {self.kind!r}")


# --- codecs ---------------------------------------------------------------------------------------


def _codec():
    from numcodecs import Blosc

    return Blosc(cname="zstd", clevel=3, shuffle=Blosc.SHUFFLE)


def encode_depth(depth: np.ndarray) -> bytes:
    return bytes(_codec().encode(np.ascontiguousarray(depth, dtype=np.float16)))


def decode_depth(blob: bytes, n: int, h: int, w: int) -> np.ndarray:
    arr = np.frombuffer(_codec().decode(blob), dtype=np.float16)
    return arr.reshape(n, h, w).astype(np.float32)


def encode_mask(mask: np.ndarray) -> bytes:
    """A bool array -> bit-packed, Blosc-compressed bytes (the shape is known to the reader)."""
    return bytes(_codec().encode(np.packbits(np.ascontiguousarray(mask, dtype=bool).reshape(-1))))


def decode_mask(blob: bytes, n: int, h: int, w: int) -> np.ndarray:
    bits = np.frombuffer(_codec().decode(blob), dtype=np.uint8)
    return np.unpackbits(bits, count=n * h * w).astype(bool).reshape(n, h, w)


def encode(clip) -> dict:
    if clip.depth is None:
        return {"depth_f16": None, "depth_source": None, "depth_range": None, "depth_raw_valid": None}
    return {
        "depth_f16": encode_depth(clip.depth),
        "depth_source": clip.depth_source,
        "depth_range": None if clip.depth_range is None else [float(v) for v in clip.depth_range],
        "depth_raw_valid": None if clip.depth_raw_valid is None else encode_mask(clip.depth_raw_valid),
    }


def decode_row(row: dict, n: int, h: int, w: int) -> dict:
    """The depth fields of a row (source and range None, like the array, when the clip has no depth)."""
    out = {"depth_source": row.get("depth_source"),
           "depth_range": None if row.get("depth_range") is None else np.asarray(row["depth_range"], np.float64)}
    if row.get("depth_f16") is None:
        return {**out, "depth": None}
    raw = row.get("depth_raw_valid")
    return {**out, "depth": decode_depth(row["depth_f16"], n, h, w),
            "depth_raw_valid": None if raw is None else decode_mask(raw, n, h, w)}


# --- standardize ----------------------------------------------------------------------------------


def resize_masked(values: np.ndarray, valid: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop + area-resize a per-pixel quantity [N, H, W] ignoring invalid pixels.

    A target pixel is valid when at least half of its source area is valid; its value is the mean
    of the valid source pixels under it.
    """
    v = np.where(valid, values, 0.0).astype(np.float32)
    m = valid.astype(np.float32)
    num = center_crop_resize(v, size, interpolation=cv2.INTER_AREA)
    den = center_crop_resize(m, size, interpolation=cv2.INTER_AREA)
    ok = den >= 0.5
    out = np.where(ok, num / np.maximum(den, 1e-12), np.nan).astype(np.float32)
    return out, ok


def normalize_inverse_depth(inv: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Min-max normalise inverse depth over valid pixels of the whole clip -> ([0,1] with NaN, (min, max))."""
    vals = inv[valid]
    if vals.size == 0:
        raise ValueError("no valid depth pixel in the clip")
    lo, hi = float(vals.min()), float(vals.max())
    scale = hi - lo if hi > lo else 1.0
    out = np.where(valid, (inv - lo) / scale, np.nan).astype(np.float32)
    return np.clip(out, 0.0, 1.0, where=valid, out=out), (lo, hi)


def standardize_raw_valid(raw_valid: np.ndarray, depth: np.ndarray, size: int) -> np.ndarray:
    """Source-resolution raw-valid mask -> standard image: a pixel is raw-valid when its whole source area
    is (no filled pixel contributes to it) and its standard depth is valid."""
    frac = center_crop_resize(np.asarray(raw_valid, dtype=np.float32), size, interpolation=cv2.INTER_AREA)
    return (frac >= 1.0 - 1e-6) & np.isfinite(depth)


def standardize_depth(ann: DepthAnnotation, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A window's depth annotation -> (normalised inverse depth [60, size, size], depth_range or None)."""
    d = np.asarray(ann.values, dtype=np.float32)
    if ann.kind == "metric":
        valid = np.isfinite(d) & (d > 0)
        inv = np.where(valid, 1.0 / np.where(valid, d, 1.0), 0.0)
    else:
        valid = np.isfinite(d)
        inv = np.where(valid, d, 0.0)
    inv_small, ok = resize_masked(inv, valid, size)
    norm, (lo, hi) = normalize_inverse_depth(inv_small, ok)
    depth_range = np.array([lo, hi]) if ann.kind == "metric" else None
    return norm, depth_range


def standardize(seq, frames: np.ndarray, size: int, depth: DepthAnnotation | None = None) -> dict:
    """The window's depth annotation (from the annotate stage) -> the clip's depth fields."""
    if depth is None:
        return {}
    if depth.values.shape[:3] != (len(frames), seq.height, seq.width):
        raise ModalityError(f"depth has shape {depth.values.shape}, expected ({len(frames)}, {seq.height}, {seq.width})")
    try:
        values, depth_range = standardize_depth(depth, size)
    except ValueError as e:
        raise ModalityError(f"depth of window at frame {int(frames[0])}: {e}") from e
    raw_valid = None if depth.raw_valid is None else standardize_raw_valid(depth.raw_valid, values, size)
    return {"depth": values, "depth_range": depth_range, "depth_source": depth.source, "depth_raw_valid": raw_valid}


def check(d: np.ndarray, clip) -> str | None:
    if clip.depth_source not in DEPTH_SOURCES:
        return f"depth_source must be one of {DEPTH_SOURCES}, got {clip.depth_source!r}"
    finite = d[np.isfinite(d)]
    if finite.size == 0:
        return "depth has no valid pixel"
    if np.isinf(d).any():
        return "depth holds inf; invalid pixels must be NaN"
    if finite.min() < -1e-6 or finite.max() > 1 + 1e-6:
        return f"normalised inverse depth must lie in [0, 1], got [{finite.min():.4g}, {finite.max():.4g}]"
    if clip.depth_range is not None:
        dr = np.asarray(clip.depth_range, dtype=np.float64)
        if dr.shape != (2,) or not np.all(np.isfinite(dr)) or dr[0] < 0 or dr[1] < dr[0]:
            return f"depth_range must be (min, max) inverse depth with 0 <= min <= max, got {dr}"
    elif clip.depth_source in ("sensor", "render"):
        return f"metric depth ({clip.depth_source}) needs depth_range to recover metric depth"
    if clip.depth_raw_valid is not None:
        rv = np.asarray(clip.depth_raw_valid)
        if rv.dtype != bool or rv.shape != d.shape:
            return f"depth_raw_valid must be bool {list(d.shape)}, got {rv.dtype} {rv.shape}"
        if np.any(rv & ~np.isfinite(d)):
            return "depth_raw_valid marks pixels whose depth is invalid (NaN)"
    return None


def prepare(x, norm=None) -> tuple[np.ndarray, None]:
    """Token frames float32 [B, T, H, W] in [0, 1] (NaN invalid -> 0) -> (one channel float32 [B, 1, T, H, W] in
    [-1, 1], None): depth goes through the video tokenizer as a gray image (it repeats the channel)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ModalityError(f"depth tokenizer needs float32 [B,60,H,W], got {x.shape}")
    d = np.clip(np.nan_to_num(np.asarray(x, np.float32), nan=0.0, posinf=0.0, neginf=0.0), 0, 1)
    return (d * np.float32(2) - np.float32(1))[:, None], None


def postprocess(video, norm=None) -> np.ndarray:
    """Decoded video float [B, 3, T, S, S] in [-1, 1] -> normalised inverse depth float32 [B, T, S, S] in [0, 1]."""
    return np.clip((np.asarray(video, np.float32).mean(1) + 1) / 2, 0, 1).astype(np.float32)


INFO = ModalityInfo(
    name="depth", tokenizer="video", frame_shape=lambda h, w: (h, w), dtype=np.float32,
    columns=(pa.field("depth_f16", pa.large_binary()), pa.field("depth_source", pa.string()),
             pa.field("depth_range", pa.list_(pa.float32(), 2)), pa.field("depth_raw_valid", pa.large_binary())),
    encode=encode, decode=decode_row, standardize=standardize, check=check, prepare=prepare, postprocess=postprocess,
    preset="depth",
    fields=("depth_source", "depth_range", "depth_raw_valid"),
)
