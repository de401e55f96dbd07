"""Split and standardize: pure functions from a :class:`RawSequence` to standard :class:`Clip` objects.

* :func:`clip_starts` (split): the start frames of 2-second windows of a sequence.
* :func:`standardize` (standardize): one window -> one :class:`Clip` in the DESIGN.md conventions:
  centre crop + resize (intrinsics with it), then each registered modality's own standardize
  (:mod:`egom2p.modality`: rgb cropped and resized, poses relative to the first frame, gaze
  normalised to the standard image with off-image samples invalid, depth as inverse depth min-max
  normalised per clip with the range kept for metric sources, a further modality from the adapter's
  ``signals``).

Depth comes from an annotator as a :class:`DepthAnnotation` for the window (metric z-depth in
metres, or affine-invariant inverse depth), so that the same code serves sensor, rendered and
pseudo-labelled depth.
"""

from __future__ import annotations

import numpy as np

from . import geometry as geo
from . import modality
from .adapters.base import RawSequence, SourceError
from .clip import Clip
from .modalities import CLIP_FRAMES, STANDARD_IMAGE_SIZE
from .modality.depth import DepthAnnotation
from .modality.gaze import standardize_gaze  # noqa: F401  (its home is the gaze entry)


def clip_starts(num_frames: int, length: int = CLIP_FRAMES, stride: int = CLIP_FRAMES) -> list[int]:
    """Start frames of the windows ``[s, s + length)`` that fit in a sequence of ``num_frames`` frames."""
    if length <= 0 or stride <= 0:
        raise ValueError(f"length and stride must be positive, got {length}, {stride}")
    return list(range(0, num_frames - length + 1, stride))


def standardize(seq: RawSequence, start: int, depth: DepthAnnotation | None = None,
                size: int = STANDARD_IMAGE_SIZE, length: int = CLIP_FRAMES, adapter_version: str = "1") -> Clip:
    """One window ``[start, start + length)`` of a raw sequence -> a validated standard :class:`Clip`."""
    ref = seq.ref
    if start < 0 or start + length > seq.num_frames:
        raise SourceError(ref.path, f"window [{start}, {start + length}) outside the sequence's {seq.num_frames} frames")
    idx = np.arange(start, start + length)
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
        frame_valid=np.asarray(seq.frame_valid[idx], dtype=bool),
        is_gray=seq.is_gray,
        provenance={"source": ref.path, "source_files": list(seq.source_files), "adapter": ref.dataset,
                    "adapter_version": adapter_version, "source_size": [seq.width, seq.height]},
    )
    for info in modality.MODALITY_INFO.values():
        try:
            fields = info.standardize(seq, idx, size, depth)
        except modality.ModalityError as e:
            raise SourceError(ref.path, str(e)) from e
        for name, value in fields.items():
            clip.set(name, value)
    return clip.validate()
