"""The ``render`` annotator: synthetic depth that comes with the source (EgoGen renders).

Rendered z-depth is exact, so it is passed through untouched as a ``metric`` annotation; pixels
with no surface (background, 0, inf or NaN) stay invalid and become NaN after standardization.
Sequences without a depth stream get no depth (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..adapters.base import RawSequence
from ..standardize import DepthAnnotation
from .base import Annotator, read_window_depth


@dataclass
class RenderDepthConfig:
    max_depth: float = 0.0  # metres; > 0 marks farther pixels invalid (e.g. a far plane); 0 keeps all


class RenderDepth(Annotator):
    name = "render"

    def __init__(self, config: RenderDepthConfig | None = None):
        self.config = config or RenderDepthConfig()

    def annotate(self, seq: RawSequence, start: int, length: int) -> DepthAnnotation | None:
        d = read_window_depth(seq, start, length, "rendered depth")
        if d is None:
            return None
        d = np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32, copy=False)
        if self.config.max_depth > 0:
            d[d > self.config.max_depth] = 0.0
        return DepthAnnotation(values=d, kind="metric", source="render")


def make_annotator(max_depth: float = 0.0, **unknown) -> Annotator:
    if unknown:
        raise TypeError(f"render annotator: unknown options {sorted(unknown)} (known: max_depth)")
    return RenderDepth(RenderDepthConfig(max_depth=float(max_depth)))
