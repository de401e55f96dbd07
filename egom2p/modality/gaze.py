"""gaze: float32 [60, 2] normalised (x/W, y/H) in the standard image, NaN rows invalid, values outside
[-0.2, 1.2] marked invalid; float lists (+ the valid mask) in the clips table; the sequence VQ-VAE."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .. import geometry as geo
from ..modalities import CLIP_FRAMES, GAZE_DIM, GAZE_VALID_RANGE
from .base import ModalityError, ModalityInfo, float_sequence_codec


def standardize_gaze(gaze_px: np.ndarray, width: int, height: int, size: int) -> np.ndarray:
    """Source-pixel gaze [N, 2] (NaN invalid) -> normalised standard-image gaze, out-of-range rows NaN."""
    px = geo.crop_resize_pixels(gaze_px, width, height, size)
    g = geo.pixels_to_normalized(px, size, size)
    lo, hi = GAZE_VALID_RANGE
    bad = ~np.all(np.isfinite(g), axis=-1) | np.any((g < lo) | (g > hi), axis=-1)
    g[bad] = np.nan
    return g.astype(np.float32)


def fill_invalid_gaze(gaze: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaze [B, 60, 2] with NaN / out-of-range rows -> (filled gaze, valid mask [B, 60]).

    Invalid frames are linearly interpolated between valid neighbours (held constant at the ends);
    a clip without any valid frame is filled with the image centre (0.5, 0.5). The mask keeps them
    out of the loss and the metrics.
    """
    g = np.asarray(gaze, dtype=np.float32)
    lo, hi = GAZE_VALID_RANGE
    valid = np.all(np.isfinite(g), axis=-1) & np.all((g >= lo) & (g <= hi), axis=-1)
    out = np.empty_like(g)
    t = np.arange(g.shape[1])
    for b in range(g.shape[0]):
        v = valid[b]
        if not v.any():
            out[b] = 0.5
            continue
        for c in range(g.shape[2]):
            out[b, :, c] = np.interp(t, t[v], g[b, v, c])
    return out, valid


def check(g: np.ndarray, clip) -> str | None:
    n = clip.num_frames
    gv = np.asarray(clip.gaze_valid)
    if gv.shape != (n,) or gv.dtype != bool:
        return f"gaze_valid must be bool [{n}], got {gv.dtype} {gv.shape}"
    finite = np.all(np.isfinite(g), axis=-1)
    if np.any(np.isfinite(g).any(-1) & ~finite):
        return "gaze rows must be both finite or both NaN"
    if not np.array_equal(gv, finite):
        return f"gaze_valid disagrees with NaN rows at frames {np.nonzero(gv != finite)[0][:5].tolist()}"
    lo, hi = GAZE_VALID_RANGE
    out = finite & np.any((g < lo) | (g > hi), axis=-1)
    if out.any():
        return f"gaze outside [{lo}, {hi}] not marked invalid (NaN) at frames {np.nonzero(out)[0][:5].tolist()}"
    return None


_encode_values, _decode_values = float_sequence_codec("gaze", (GAZE_DIM,))


def encode(clip) -> dict:
    row = _encode_values(clip)
    row["gaze_valid"] = None if clip.gaze is None else [bool(v) for v in clip.gaze_valid]
    return row


def decode_row(row: dict, n: int, h: int, w: int) -> dict:
    out = _decode_values(row, n, h, w)
    out["gaze_valid"] = None if row.get("gaze_valid") is None else np.asarray(row["gaze_valid"], dtype=bool)
    return out


def standardize(seq, frames: np.ndarray, size: int, depth=None) -> dict:
    if seq.gaze_px is None:
        return {}
    g = standardize_gaze(seq.gaze_px[frames], seq.width, seq.height, size)
    return {"gaze": g, "gaze_valid": np.all(np.isfinite(g), axis=-1)}


def present(g: np.ndarray) -> bool:
    return bool(np.isfinite(g).all(-1).any())  # no valid frame -> missing, not a made-up trajectory


def prepare(x, norm=None) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[1:] != (CLIP_FRAMES, GAZE_DIM):
        raise ModalityError(f"gaze tokenizer needs float32 [B,{CLIP_FRAMES},{GAZE_DIM}], got {x.shape}")
    return fill_invalid_gaze(x)


def postprocess(y, norm=None) -> np.ndarray:
    return np.asarray(y, dtype=np.float32)


def mirror(x: np.ndarray) -> np.ndarray:
    """Left-right mirror: x -> 1 - x."""
    m = np.array(x, copy=True)
    m[..., 0] = 1.0 - m[..., 0]
    return m


def plot(ax, truth: np.ndarray, rec: np.ndarray) -> None:
    for c, name in enumerate("xy"):
        ax.plot(truth[:, c], "-", label=f"{name} truth")
        ax.plot(rec[:, c], "--", label=f"{name} recon")
    ax.set_xlabel("frame")
    ax.set_ylabel("normalised gaze")


INFO = ModalityInfo(
    name="gaze", tokenizer="sequence", frame_shape=lambda h, w: (GAZE_DIM,), dtype=np.float32,
    columns=(pa.field("gaze", pa.list_(pa.float32(), CLIP_FRAMES * GAZE_DIM)),
             pa.field("gaze_valid", pa.list_(pa.bool_(), CLIP_FRAMES))),
    encode=encode, decode=decode_row, standardize=standardize, check=check, present=present,
    prepare=prepare, postprocess=postprocess, mirror=mirror, plot=plot, preset="gaze", fields=("gaze_valid",),
)
