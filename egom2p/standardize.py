"""Split and standardize: pure functions from a :class:`RawSequence` to standard :class:`Clip` objects.

* :func:`clip_starts` (split): the start frames of 2-second windows of a sequence.
* :func:`standardize` (standardize): one window -> one :class:`Clip` in the DESIGN.md conventions:
  centre crop + resize (intrinsics and gaze transformed with it), poses relative to the first
  frame, gaze normalised to the standard image with off-image samples invalid, depth as inverse
  depth min-max normalised per clip (the range kept for metric sources).

Depth comes from an annotator as a :class:`DepthAnnotation` for the window (metric z-depth in
metres, or affine-invariant inverse depth), so that the same code serves sensor, rendered and
pseudo-labelled depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import geometry as geo
from .adapters.base import RawSequence, SourceError
from .clip import Clip
from .modalities import CLIP_FRAMES, GAZE_VALID_RANGE, STANDARD_IMAGE_SIZE
from .video import center_crop_resize, gray_to_rgb

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


def clip_starts(num_frames: int, length: int = CLIP_FRAMES, stride: int = CLIP_FRAMES) -> list[int]:
    """Start frames of the windows ``[s, s + length)`` that fit in a sequence of ``num_frames`` frames."""
    if length <= 0 or stride <= 0:
        raise ValueError(f"length and stride must be positive, got {length}, {stride}")
    return list(range(0, num_frames - length + 1, stride))


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


def standardize_gaze(gaze_px: np.ndarray, width: int, height: int, size: int) -> np.ndarray:
    """Source-pixel gaze [N, 2] (NaN invalid) -> normalised standard-image gaze, out-of-range rows NaN."""
    px = geo.crop_resize_pixels(gaze_px, width, height, size)
    g = geo.pixels_to_normalized(px, size, size)
    lo, hi = GAZE_VALID_RANGE
    bad = ~np.all(np.isfinite(g), axis=-1) | np.any((g < lo) | (g > hi), axis=-1)
    g[bad] = np.nan
    return g.astype(np.float32)


def standardize(seq: RawSequence, start: int, depth: DepthAnnotation | None = None,
                size: int = STANDARD_IMAGE_SIZE, length: int = CLIP_FRAMES, adapter_version: str = "1") -> Clip:
    """One window ``[start, start + length)`` of a raw sequence -> a validated standard :class:`Clip`."""
    ref = seq.ref
    if start < 0 or start + length > seq.num_frames:
        raise SourceError(ref.path, f"window [{start}, {start + length}) outside the sequence's {seq.num_frames} frames")
    idx = np.arange(start, start + length)

    rgb = None
    if seq.read_frames is not None:
        frames = np.asarray(seq.read_frames(idx))
        if frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] == 1):
            frames = gray_to_rgb(frames)
        if frames.shape[:3] != (length, seq.height, seq.width):
            raise SourceError(ref.path, f"frames have shape {frames.shape}, expected ({length}, {seq.height}, {seq.width}, 3)")
        rgb = center_crop_resize(np.asarray(frames, dtype=np.uint8), size)  # no copy when already uint8

    cam = None
    if seq.c2w is not None:
        T = np.asarray(seq.c2w[idx], dtype=np.float64)
        finite = np.isfinite(T).all(axis=(1, 2))
        if not finite.all():
            bad = (idx[~finite])[:5].tolist()
            raise SourceError(ref.path, f"non-finite camera pose at frames {bad} (pose missing or NaN)")
        cam = geo.relative_to_first(T).astype(np.float32)

    gaze = None
    if seq.gaze_px is not None:
        gaze = standardize_gaze(seq.gaze_px[idx], seq.width, seq.height, size)

    depth_arr, depth_range, depth_source, raw_valid = None, None, None, None
    if depth is not None:
        if depth.values.shape[:3] != (length, seq.height, seq.width):
            raise SourceError(ref.path, f"depth has shape {depth.values.shape}, expected ({length}, {seq.height}, {seq.width})")
        try:
            depth_arr, depth_range = standardize_depth(depth, size)
        except ValueError as e:
            raise SourceError(ref.path, f"depth of window at frame {start}: {e}") from e
        depth_source = depth.source
        if depth.raw_valid is not None:
            raw_valid = standardize_raw_valid(depth.raw_valid, depth_arr, size)

    k = geo.crop_resize_intrinsics(seq.intrinsics_at(start), seq.width, seq.height, size)
    clip = Clip(
        dataset=ref.dataset,
        sequence=ref.sequence,
        start_frame=start,
        split=ref.split,
        width=size,
        height=size,
        intrinsics=k,
        camera_model=seq.camera_model,
        distortion=np.asarray(seq.distortion, dtype=np.float64),
        rgb=rgb,
        depth=depth_arr,
        gaze=gaze,
        cam=cam,
        depth_source=depth_source,
        depth_range=depth_range,
        depth_raw_valid=raw_valid,
        frame_valid=np.asarray(seq.frame_valid[idx], dtype=bool),
        is_gray=seq.is_gray,
        provenance={"source": ref.path, "source_files": list(seq.source_files), "adapter": ref.dataset,
                    "adapter_version": adapter_version, "source_size": [seq.width, seq.height]},
    )
    return clip.validate()
