"""The depth annotator interface (one stage of curation: split -> annotate -> standardize)."""

from __future__ import annotations

from ..adapters.base import RawSequence
from ..errors import EgoM2PError
from ..standardize import DepthAnnotation

ANNOTATORS = ("none", "render", "sensor", "rollingdepth")


class AnnotatorUnavailable(EgoM2PError, RuntimeError):
    """The annotator cannot run (unknown name, missing checkpoint, ...); raised at flow start."""


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
