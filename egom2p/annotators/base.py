"""The depth annotator interface (one stage of curation: split -> annotate -> standardize)."""

from __future__ import annotations

import numpy as np

from ..adapters.base import RawSequence, SourceError
from ..errors import AnnotatorUnavailable  # defined below the annotators: the RollingDepth model raises it too
from ..standardize import DepthAnnotation

ANNOTATORS = ("none", "render", "sensor", "rollingdepth")

__all__ = ["ANNOTATORS", "Annotator", "AnnotatorUnavailable", "read_window_depth"]


class Annotator:
    """Produces depth for clip windows of a raw sequence.

    ``prepare()`` runs once at flow start (load weights, check files) and must fail fast with a
    clear message. ``annotate(seq, start, length)`` returns the window's depth at source resolution,
    or None when this annotator gives no depth for that sequence. ``annotate_sequence`` may be
    overridden by annotators that work on whole sequences (video depth models with temporal context)
    and returns {start: DepthAnnotation} for the given window starts.
    """

    name: str = ""

    def prepare(self) -> None:
        return None

    def annotate(self, seq: RawSequence, start: int, length: int) -> DepthAnnotation | None:
        raise NotImplementedError

    def annotate_sequence(self, seq: RawSequence, starts: list[int], length: int) -> dict[int, DepthAnnotation | None]:
        return {s: self.annotate(seq, s, length) for s in starts}


def read_window_depth(seq: RawSequence, start: int, length: int, what: str, note: str = "") -> np.ndarray | None:
    """The sequence's own depth of frames ``start .. start+length`` as float32 [length, H, W] metres (None when
    the sequence has none); SourceError naming the sequence when its shape is not the RGB frames' (``what``: the
    depth's name in that message, ``note``: appended to it)."""
    if seq.read_depth is None:
        return None
    d = np.asarray(seq.read_depth(np.arange(start, start + length)), dtype=np.float32)
    if d.shape != (length, seq.height, seq.width):
        raise SourceError(seq.ref.path, f"{what} has shape {d.shape}, expected ({length}, {seq.height}, {seq.width})"
                                        + (f" {note}" if note else ""))
    return d
