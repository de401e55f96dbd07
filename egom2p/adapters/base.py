"""The interface every dataset adapter has: discover sequences, load one as a :class:`RawSequence`.

An adapter turns one dataset's raw layout into a :class:`RawSequence`: a sequence on a 30 FPS
timeline whose poses are OpenCV camera-to-world (absolute, metres), whose gaze is in source-image
pixels and whose frames/depth are read lazily by frame index. Everything dataset-specific (clocks,
units, quaternion orders, axis conventions, upright rotations) is resolved inside the adapter;
:func:`egom2p.standardize.standardize` then makes the standard clip (crop/resize, relative poses,
inverse depth, normalised gaze) the same way for every dataset.

An adapter module ``egom2p/adapters/<name>.py`` defines ``ADAPTER``, an instance of a subclass of
:class:`Adapter`, and has a card ``datasets/<name>.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SourceError  # the adapters' error (defined in egom2p.errors, below safeio)

#: Source datasets with a curation deployment (paper Table 1), then evaluation-only sets.
SOURCE_DATASETS = ("egoexo4d", "holoassist", "hot3d_aria", "hot3d_quest", "arctic", "taco", "h2o", "egogen")
EVAL_DATASETS = ("adt", "hoi4d", "ase")
KNOWN_DATASETS = SOURCE_DATASETS + EVAL_DATASETS


def require_file(path, what: str = "file", *, nonempty: bool = False) -> Path:
    """``path`` as a Path when it is a file (``nonempty``: and has bytes), else SourceError naming it."""
    p = Path(path)
    if not p.is_file():
        raise SourceError(p, f"missing {what}")
    if nonempty and p.stat().st_size == 0:
        raise SourceError(p, f"empty {what}")
    return p


class AdapterNotAvailable(RuntimeError):
    """No adapter module exists for the requested dataset."""


@dataclass
class SequenceRef:
    """One raw sequence of a dataset, as found by :meth:`Adapter.discover` (cheap: no decoding)."""

    dataset: str
    sequence: str  # unique within the dataset; becomes part of clip ids
    path: str  # the sequence's main folder or file
    split: str = "train"
    meta: dict = field(default_factory=dict)  # adapter-specific (JSON-serialisable)
    problem: str | None = None  # set by discovery for a sequence it found but cannot use (quarantined, never loaded)


def bad_sequence(dataset: str, sequence: str, path, problem: str) -> SequenceRef:
    """A sequence that discovery found but cannot curate (bad manifest, unreadable metadata, a folder that
    is not a sequence): curation quarantines it with ``problem`` and goes on with the others."""
    return SequenceRef(dataset, sequence, str(path), problem=problem)


@dataclass
class RawSequence:
    """A raw sequence resampled onto a 30 FPS timeline, in OpenCV conventions, not yet cropped.

    ``num_frames`` counts 30 FPS frames; every per-frame array has that length. Frames missing in
    the source are filled by the nearest frame and flagged False in ``frame_valid``.
    """

    ref: SequenceRef
    num_frames: int
    width: int  # source image size (after any upright rotation)
    height: int
    intrinsics: np.ndarray  # (4,) fx, fy, cx, cy of the source image (or (num_frames, 4))
    read_frames: Callable[[np.ndarray], np.ndarray] | None  # indices -> uint8 [k,H,W,3] (or gray [k,H,W])
    c2w: np.ndarray | None = None  # [N, 4, 4] float64 OpenCV camera-to-world, NaN where unknown
    gaze_px: np.ndarray | None = None  # [N, 2] float64 source pixels, NaN where invalid
    read_depth: Callable[[np.ndarray], np.ndarray] | None = None  # indices -> float32 [k,H,W] metres z, 0/NaN invalid
    camera_model: str = "pinhole"
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(0))
    frame_valid: np.ndarray | None = None  # [N] bool
    is_gray: bool = False
    source_files: list[str] = field(default_factory=list)
    signals: dict[str, np.ndarray] = field(default_factory=dict)  # {modality: [N, ...]} of a registered modality

    def __post_init__(self):
        if self.frame_valid is None:
            self.frame_valid = np.ones(self.num_frames, dtype=bool)
        named = {"c2w": self.c2w, "gaze_px": self.gaze_px, "frame_valid": self.frame_valid}
        for name, arr in {**named, **{f"signals[{k!r}]": v for k, v in self.signals.items()}}.items():
            if arr is not None and len(arr) != self.num_frames:
                raise SourceError(self.ref.path, f"{name} has {len(arr)} entries for {self.num_frames} frames")

    def intrinsics_at(self, frame: int) -> np.ndarray:
        k = np.asarray(self.intrinsics, dtype=np.float64)
        return k[frame] if k.ndim == 2 else k


class Adapter:
    """Base class of dataset adapters. Subclasses set the class attributes and implement the methods."""

    name: str = ""
    version: str = "1"
    modalities: tuple[str, ...] = ()  # what this dataset provides: subset of rgb, depth, gaze, cam
    default_depth: str = "none"  # depth annotator used by default: render | sensor | rollingdepth | none
    layout: str = ""  # the raw layout discovery expects, in one line (the card datasets/<name>.yaml has it in full)

    def discover(self, raw_root: Path) -> list[SequenceRef]:
        """List the sequences under ``raw_root`` (sorted, deterministic). A sequence that is found but
        cannot be used (unreadable metadata, an unexpected folder) is listed as :func:`bad_sequence`;
        raise SourceError only when ``raw_root`` itself is not this dataset's layout."""
        raise NotImplementedError

    def load(self, ref: SequenceRef) -> RawSequence:
        """Open one sequence. Raise SourceError naming the file and problem when it cannot be read."""
        raise NotImplementedError
