"""Depth annotators: turn a raw sequence window into a :class:`~egom2p.standardize.DepthAnnotation`.

Each annotator is a module ``egom2p/annotators/<name>.py`` defining ``make_annotator(**options)``
that returns an :class:`Annotator`. Known names: ``none``, ``render`` (synthetic depth from the
source), ``sensor`` (cleaned sensor depth, paper Sec. 3.1), ``rollingdepth`` (video depth
pseudo-labels).
"""

from __future__ import annotations

import importlib

from .base import ANNOTATORS, Annotator, AnnotatorUnavailable


def get_annotator(name: str, **options) -> Annotator:
    """Build the annotator ``name``; a clear error when it is unknown or its module is absent."""
    if name not in ANNOTATORS:
        raise AnnotatorUnavailable(f"unknown depth annotator {name!r}; known: {', '.join(ANNOTATORS)}")
    try:
        module = importlib.import_module(f"egom2p.annotators.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"egom2p.annotators.{name}":
            raise AnnotatorUnavailable(f"depth annotator {name!r} is not available in this build") from e
        raise
    return module.make_annotator(**options)


__all__ = ["ANNOTATORS", "Annotator", "AnnotatorUnavailable", "get_annotator"]
