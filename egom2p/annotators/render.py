"""The ``render`` annotator: synthetic depth that comes with the source (EgoGen renders).

Rendered z-depth is exact, so it is passed through untouched as a ``metric`` annotation; pixels
with no surface (background, 0, inf or NaN) stay invalid and become NaN after standardization.
Sequences without a depth stream get no depth (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..adapters.base import RawSequence, SourceError
from ..standardize import DepthAnnotation
from .base import Annotator


@dataclass
class RenderDepthConfig:
    max_depth: float = 0.0  # metres; > 0 marks farther pixels invalid (e.g. a far plane); 0 keeps all


class RenderDepth(Annotator):
    name = "render"

    def __init__(self, config: RenderDepthConfig | None = None):
        self.config = config or RenderDepthConfig()

    def annotate(self, seq: RawSequence, start: int, length: int) -> DepthAnnotation | None:
        if seq.read_depth is None:
            return None
        idx = np.arange(start, start + length)
        d = np.asarray(seq.read_depth(idx), dtype=np.float32)  # [length, H, W] metres
        if d.shape != (length, seq.height, seq.width):
            raise SourceError(seq.ref.path, f"rendered depth has shape {d.shape}, expected "
                                            f"({length}, {seq.height}, {seq.width})")
        d = np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)
        if self.config.max_depth > 0:
            d[d > self.config.max_depth] = 0.0
        return DepthAnnotation(values=d, kind="metric", source="render")


def make_annotator(max_depth: float = 0.0, **unknown) -> Annotator:
    if unknown:
        raise TypeError(f"render annotator: unknown options {sorted(unknown)} (known: max_depth)")
    return RenderDepth(RenderDepthConfig(max_depth=float(max_depth)))
