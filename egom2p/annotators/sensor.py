"""The ``sensor`` annotator: cleaned sensor depth (paper Sec. 3.1).

"Noisy Kinect depth labels are preprocessed with hole filling via morphological operations and
inpainting, then denoised using median and bilateral filtering." Per frame (metric z-depth in
metres, 0/NaN = no return):

1. valid = finite and within ``[min_depth, max_depth]``;
2. morphological closing (elliptic kernel) fills pinholes and thin cracks: a hole pixel takes the
   closed value only where the closing found valid neighbours on all sides of it;
3. inpainting (OpenCV Telea) fills the remaining holes whose connected area is at most
   ``max_hole_fraction`` of the image; larger holes (out of range, sky, glass) stay invalid rather
   than being hallucinated;
4. a median filter removes speckle (flying pixels), then a bilateral filter smooths the surface
   while keeping depth edges (range sigma in metres).

Pixels that stay invalid are 0 in the returned ``metric`` annotation (standardization turns them
into NaN, converts to inverse depth and normalises per clip). The annotation also keeps the
raw-valid mask (step 1's ``valid``: finite and in range before any filling), which the standard clip
keeps as ``depth_raw_valid`` so evaluation scores real sensor returns only, never filled pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..adapters.base import RawSequence
from ..standardize import DepthAnnotation
from .base import Annotator, read_window_depth


@dataclass
class SensorCleanConfig:
    min_depth: float = 0.05  # metres; nearer returns are noise
    max_depth: float = 10.0  # metres; farther returns are unreliable
    close_kernel: int = 5  # morphological closing kernel (pixels, odd)
    max_hole_fraction: float = 0.02  # inpaint holes up to this fraction of the image area
    inpaint_radius: int = 3
    median_ksize: int = 5  # 3 or 5 (OpenCV float median)
    bilateral_d: int = 5
    bilateral_sigma_depth: float = 0.05  # metres
    bilateral_sigma_space: float = 3.0  # pixels


def raw_valid_mask(depth: np.ndarray, cfg: SensorCleanConfig | None = None) -> np.ndarray:
    """Pixels the sensor really returned: finite and within ``[min_depth, max_depth]`` (before any filling)."""
    cfg = cfg or SensorCleanConfig()
    d = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        return np.isfinite(d) & (d >= cfg.min_depth) & (d <= cfg.max_depth)


def clean_depth_frame(depth: np.ndarray, cfg: SensorCleanConfig | None = None) -> np.ndarray:
    """Clean one metric depth frame [H, W] (0/NaN invalid) -> float32 [H, W] with 0 where still invalid."""
    cfg = cfg or SensorCleanConfig()
    d = np.asarray(depth, dtype=np.float32)
    valid = raw_valid_mask(d, cfg)
    if not valid.any():
        return np.zeros_like(d)
    d = np.where(valid, d, 0.0).astype(np.float32)
    h, w = d.shape

    # 2. closing: dilate then erode. On depth with 0 holes, a hole surrounded by valid pixels gets a
    # neighbourhood value; the closing of the mask tells which holes were enclosed.
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cfg.close_kernel, cfg.close_kernel))
    closed = cv2.morphologyEx(d, cv2.MORPH_CLOSE, k)
    mask_closed = cv2.morphologyEx(valid.astype(np.uint8), cv2.MORPH_CLOSE, k).astype(bool)
    fill = ~valid & mask_closed & (closed > 0)
    d = np.where(fill, closed, d)
    valid = valid | fill

    # 3. inpaint the remaining small holes (connected components of the invalid mask).
    holes = (~valid).astype(np.uint8)
    if holes.any():
        n, labels, stats, _ = cv2.connectedComponentsWithStats(holes, connectivity=8)
        small = np.zeros(n, dtype=bool)
        small[1:] = stats[1:, cv2.CC_STAT_AREA] <= cfg.max_hole_fraction * h * w
        to_fill = small[labels]
        if to_fill.any():
            # OpenCV's float32 Telea is unreliable (measured: values far off on a smooth ramp); inpaint
            # on uint16 with the frame's range mapped to 0..65000 (sub-millimetre steps up to 10 m).
            scale = 65000.0 / float(d.max())
            u16 = np.round(d * scale).astype(np.uint16)
            painted = cv2.inpaint(u16, to_fill.astype(np.uint8), cfg.inpaint_radius, cv2.INPAINT_TELEA)
            painted = painted.astype(np.float32) / scale
            d = np.where(to_fill, painted, d)
            valid = valid | (to_fill & (d > 0))

    # 4. median then bilateral filtering; invalid pixels are kept out of the result.
    med = cv2.medianBlur(np.where(valid, d, 0).astype(np.float32), cfg.median_ksize)
    # the median must not pull valid pixels towards 0 at the border of an invalid region
    d = np.where(valid & (med > 0), med, d)
    bil = cv2.bilateralFilter(d, cfg.bilateral_d, cfg.bilateral_sigma_depth, cfg.bilateral_sigma_space)
    # near invalid regions the bilateral mixes in zeros; keep the median value there
    near_hole = cv2.dilate((~valid).astype(np.uint8), np.ones((cfg.bilateral_d, cfg.bilateral_d), np.uint8)).astype(bool)
    d = np.where(valid & ~near_hole, bil, d)
    return np.where(valid, d, 0.0).astype(np.float32)


class SensorDepth(Annotator):
    name = "sensor"

    def __init__(self, config: SensorCleanConfig | None = None):
        self.config = config or SensorCleanConfig()

    def annotate(self, seq: RawSequence, start: int, length: int) -> DepthAnnotation | None:
        raw = read_window_depth(seq, start, length, "sensor depth", "(aligned to RGB)")
        if raw is None:
            return None
        out = np.stack([clean_depth_frame(f, self.config) for f in raw])
        return DepthAnnotation(values=out, kind="metric", source="sensor",
                               raw_valid=raw_valid_mask(raw, self.config))


def make_annotator(**options) -> Annotator:
    known = set(SensorCleanConfig.__dataclass_fields__)
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"sensor annotator: unknown options {sorted(unknown)} (known: {sorted(known)})")
    return SensorDepth(SensorCleanConfig(**options))
