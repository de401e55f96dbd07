"""The ``none`` annotator: clips get no depth."""

from __future__ import annotations

from .base import Annotator


class NoDepth(Annotator):
    name = "none"

    def annotate(self, seq, start, length):
        return None


def make_annotator(**options) -> Annotator:
    return NoDepth()
