"""The ``rollingdepth`` annotator: video-depth pseudo-labels from RollingDepth (paper Sec. 3.1).

Used for datasets without usable depth (HoloAssist, HOT3D, ARCTIC, TACO). The model runs on whole
stretches of a sequence, not on single clip windows, so that every window gets temporal context:
the requested windows are grouped into *segments* of at most ``segment_frames`` frames, each
segment is extended by ``context_frames`` on both sides (within the sequence), RollingDepth runs
once per segment (snippets at several dilations -> joint co-alignment -> optional refinement), and
each window's frames are cut out of the segment's result and resized to the source resolution.

Output per window: ``DepthAnnotation(kind="inverse_relative", source="rollingdepth")`` -- affine-
invariant inverse depth (larger = nearer), consistent within the segment; curation min-max
normalises it per clip and stores ``depth_range`` null.

Options (``make_annotator(**options)``; the curation CLI passes ``--depth-checkpoint`` as
``checkpoint``): ``checkpoint`` (required: local directory of prs-eth/rollingdepth-v1-0),
``preset`` (fast | fast1024 | full | paper; default fast), ``device`` (default: cuda if available,
else cpu -- slow), ``dtype`` (fp16 | bf16 | fp32; default from the preset, fp32 on CPU),
``batch_size`` (snippets per UNet call), ``processing_resolution``, ``dilations``,
``snippet_lengths``, ``refine_steps``, ``seed``, ``segment_frames`` (default 150), ``context_frames``
(default 30), ``progress`` (default True).
"""

from __future__ import annotations

import logging
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..adapters.base import RawSequence, SourceError
from ..rollingdepth.pipeline import RollingDepthPipeline, check_checkpoint, load_pipeline
from ..rollingdepth.presets import RollingDepthConfig, preset_config
from ..standardize import DepthAnnotation
from .base import Annotator

log = logging.getLogger(__name__)


def plan_segments(starts: list[int], length: int, num_frames: int, segment_frames: int, context_frames: int
                  ) -> list[tuple[int, int, list[int]]]:
    """Group window starts into segments -> [(seg_start, seg_end, starts)], context included, in bounds.

    Windows are taken in order; a segment's core (its windows' union, before context) spans at most
    ``max(segment_frames, length)`` frames.
    """
    out: list[tuple[int, int, list[int]]] = []
    limit = max(segment_frames, length)
    group: list[int] = []
    for s in sorted(set(int(s) for s in starts)):
        if s < 0 or s + length > num_frames:
            raise ValueError(f"window [{s}, {s + length}) outside the sequence's {num_frames} frames")
        if group and s + length - group[0] > limit:
            out.append(group)  # type: ignore[arg-type]
            group = []
        group.append(s)
    if group:
        out.append(group)  # type: ignore[arg-type]
    segments = []
    for g in out:
        a = max(0, g[0] - context_frames)
        b = min(num_frames, g[-1] + length + context_frames)
        segments.append((a, b, list(g)))
    return segments


class RollingDepthAnnotator(Annotator):
    name = "rollingdepth"

    def __init__(self, checkpoint=None, preset: str = "fast", device=None, dtype: str | None = None,
                 batch_size: int | None = None, processing_resolution: int | None = None, dilations=None,
                 snippet_lengths=None, refine_steps: int | None = None, seed: int | None = None,
                 segment_frames: int = 150, context_frames: int = 30, progress: bool = True):
        self.checkpoint = checkpoint
        self.config: RollingDepthConfig = preset_config(
            preset, dtype=dtype, batch_size=batch_size, processing_resolution=processing_resolution,
            dilations=tuple(dilations) if dilations is not None else None,
            snippet_lengths=tuple(snippet_lengths) if snippet_lengths is not None else None,
            refine_steps=refine_steps, seed=seed)
        self.preset = preset
        self.device = device
        if segment_frames < 1 or context_frames < 0:
            raise ValueError(f"segment_frames must be >= 1 and context_frames >= 0, got {segment_frames}, {context_frames}")
        self.segment_frames = int(segment_frames)
        self.context_frames = int(context_frames)
        self.progress = progress
        self._pipe: RollingDepthPipeline | None = None

    # the loaded network is not shipped to workers; each process loads it on first use
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_pipe"] = None
        return state

    def prepare(self) -> None:
        """Check the checkpoint directory (fails fast, naming directory and expected files) and load it."""
        check_checkpoint(self.checkpoint)
        self.pipeline()

    def pipeline(self) -> RollingDepthPipeline:
        if self._pipe is None:
            self._pipe = load_pipeline(self.checkpoint, device=self.device, dtype=self.config.dtype)
            dev = self._pipe.device
            if dev.type == "cpu":
                log.warning("RollingDepth runs on CPU (no GPU found): expect minutes per clip at the preset resolution")
        return self._pipe

    def annotate(self, seq: RawSequence, start: int, length: int) -> DepthAnnotation | None:
        return self.annotate_sequence(seq, [start], length)[start]

    def annotate_sequence(self, seq: RawSequence, starts: list[int], length: int) -> dict[int, DepthAnnotation | None]:
        if seq.read_frames is None:
            return {s: None for s in starts}
        pipe = self.pipeline()
        out: dict[int, DepthAnnotation | None] = {}
        segments = plan_segments(list(starts), length, seq.num_frames, self.segment_frames, self.context_frames)
        for a, b, group in tqdm(segments, desc=f"rollingdepth {seq.ref.sequence}", leave=False,
                                disable=not self.progress or len(segments) < 2):
            frames = np.asarray(seq.read_frames(np.arange(a, b)))
            if frames.shape[:3] != (b - a, seq.height, seq.width):
                raise SourceError(seq.ref.path, f"frames have shape {frames.shape}, expected ({b - a}, {seq.height}, {seq.width}[, 3])")
            pred = pipe.predict(frames, self.config, progress=self.progress).depth  # [n, h, w]
            pred = self._normalise(pred)
            for s in group:
                window = torch.from_numpy(np.ascontiguousarray(pred[s - a:s - a + length]))[:, None]
                full = F.interpolate(window, size=(seq.height, seq.width), mode="bilinear", align_corners=False)
                out[s] = DepthAnnotation(values=full[:, 0].numpy().astype(np.float32), kind="inverse_relative",
                                         source="rollingdepth")
        return out

    @staticmethod
    def _normalise(depth: np.ndarray) -> np.ndarray:
        """Segment-level min-max to [0, 1] (the result stays affine-invariant; NaN kept)."""
        finite = depth[np.isfinite(depth)]
        if finite.size == 0:
            return depth
        lo, hi = float(finite.min()), float(finite.max())
        return ((depth - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)


def make_annotator(**options) -> Annotator:
    return RollingDepthAnnotator(**options)
