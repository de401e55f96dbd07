"""The curation stages as pure functions (no Ray, no Prefect): discover -> split -> annotate -> standardize -> encode.

* :func:`discover`: the sequences of a raw root (first ``limit``), via the dataset's adapter.
* :func:`split`: a sequence -> the start frames of its 2-second windows that are not yet in the
  clips table, grouped into :class:`WorkChunk` units (the check for finished clip ids happens here,
  before any decoding or annotation, so a re-run does no expensive work for finished clips).
* :func:`annotate`: a chunk's windows -> :class:`~egom2p.standardize.DepthAnnotation` per window
  (:func:`annotate_chunk`: the same, failures turned into quarantine records).
* :func:`standardize_window`: one window (+ its depth) -> a validated standard :class:`Clip`.
* :func:`encode`: a clip -> a row of the clips table (H.264 RGB, compressed depth)
  (:func:`standardize_chunk`: both for a chunk's windows, failures turned into quarantine records).

Writing is :func:`egom2p.clips.write_table`. The runner stages in :mod:`egom2p.curate.ops` wrap
these functions (Arrow batches in and out) for :class:`egom2p.runner.Runner`, on Ray or locally.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import modality
from ..adapters.base import Adapter, RawSequence, SequenceRef, SourceError
from ..annotators.base import Annotator
from ..clip import Clip, make_clip_id
from ..clips import clip_to_row
from ..modalities import CLIP_FRAMES
from ..standardize import DepthAnnotation, clip_starts, standardize
from .quarantine import QuarantineRecord



# ----------------------------------------------------------------------------------------- refs
def ref_to_json(ref: SequenceRef) -> str:
    return json.dumps(asdict(ref), sort_keys=True)


def ref_from_json(text: str) -> SequenceRef:
    return SequenceRef(**json.loads(text))


@dataclass
class WorkChunk:
    """Windows of one sequence handled together (one Ray task): the unit of annotate + standardize."""

    ref: SequenceRef
    starts: list[int]
    num_frames: int = 0

    @property
    def clip_ids(self) -> list[str]:
        return [make_clip_id(self.ref.dataset, self.ref.sequence, s) for s in self.starts]


@dataclass
class SplitResult:
    """What :func:`split` found for one sequence."""

    ref: SequenceRef
    num_frames: int
    windows: int  # windows of the whole sequence
    skipped: list[str] = field(default_factory=list)  # clip ids already in the table
    chunks: list[WorkChunk] = field(default_factory=list)


# ------------------------------------------------------------------------------------- discover
def discover(adapter: Adapter, raw: str | os.PathLike, limit: int | None = None) -> list[SequenceRef]:
    """The sequences under ``raw`` in the adapter's (deterministic) order, the first ``limit`` of them.

    Sequences the adapter found but cannot use come back with ``ref.problem`` set (the run quarantines
    them and goes on). A root that holds no sequence of the dataset at all raises one SourceError
    naming the root and the layout the adapter expects.
    """
    root = Path(raw)
    if not root.exists():
        raise SourceError(root, f"raw root of dataset {adapter.name!r} does not exist")
    try:
        refs = list(adapter.discover(root))
    except SourceError as e:
        problem = e.problem if e.path == str(root) else str(e)
        raise SourceError(root, f"cannot list {adapter.name} sequences: {problem}; "
                                f"expected {expected_layout(adapter)}") from None
    except Exception as e:  # noqa: BLE001 - an unreadable folder or file while walking the root
        raise SourceError(root, f"cannot list {adapter.name} sequences: {type(e).__name__}: {e}") from e
    if not refs:
        raise SourceError(root, f"no {adapter.name} sequence found; expected {expected_layout(adapter)}")
    names = [r.sequence for r in refs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[:5]
        raise SourceError(root, f"adapter {adapter.name!r} found duplicate sequence names {dup}: clip ids would collide")
    return refs[:limit] if limit is not None else refs


def expected_layout(adapter: Adapter) -> str:
    """The raw layout the adapter expects, for error messages."""
    card = f"the dataset card datasets/{adapter.name}.yaml"
    return f"{adapter.layout} (see {card})" if adapter.layout else f"the layout of {card}"


# ---------------------------------------------------------------------------------------- split
def plan_windows(ref: SequenceRef, num_frames: int, stride: int, done: set[str],
                 length: int = CLIP_FRAMES) -> tuple[list[int], list[str]]:
    """(start frames still to curate, clip ids already done) of one sequence."""
    todo: list[int] = []
    skipped: list[str] = []
    for s in clip_starts(num_frames, length, stride):
        cid = make_clip_id(ref.dataset, ref.sequence, s)
        if cid in done:
            skipped.append(cid)
        else:
            todo.append(s)
    return todo, skipped


def split(adapter: Adapter, ref: SequenceRef, stride: int, done: set[str], windows_per_task: int = 4,
          length: int = CLIP_FRAMES) -> SplitResult:
    """Open a sequence (cheap, lazy) and cut it into the windows still to curate, in chunks."""
    seq = load_sequence(adapter, ref)
    todo, skipped = plan_windows(ref, seq.num_frames, stride, done, length)
    chunks = [WorkChunk(ref, todo[i:i + windows_per_task], seq.num_frames)
              for i in range(0, len(todo), windows_per_task)]
    return SplitResult(ref, seq.num_frames, len(todo) + len(skipped), skipped, chunks)


_SEQ_CACHE: dict[str, RawSequence] = {}


def load_sequence(adapter: Adapter, ref: SequenceRef, cache: bool = True) -> RawSequence:
    """``adapter.load(ref)``, remembering the last two sequences of this process (stages of one chunk reuse it)."""
    key = f"{adapter.name}|{ref_to_json(ref)}"
    if cache and key in _SEQ_CACHE:
        return _SEQ_CACHE[key]
    if ref.problem:
        raise SourceError(ref.path, ref.problem)
    seq = adapter.load(ref)
    if seq.num_frames <= 0:
        raise SourceError(ref.path, "sequence has no frames")
    if cache:
        while len(_SEQ_CACHE) >= 2:
            _SEQ_CACHE.pop(next(iter(_SEQ_CACHE)))
        _SEQ_CACHE[key] = seq
    return seq


# ------------------------------------------------------------------------------------- annotate
def annotate(annotator: Annotator, seq: RawSequence, starts: list[int],
             length: int = CLIP_FRAMES) -> dict[int, DepthAnnotation | None]:
    """Depth for each window start (None where the annotator gives none); shapes checked."""
    out = annotator.annotate_sequence(seq, list(starts), length)
    missing = [s for s in starts if s not in out]
    if missing:
        raise RuntimeError(f"annotator {annotator.name!r} returned no entry for windows {missing[:5]}")
    for s, ann in out.items():
        if ann is None:
            continue
        if not isinstance(ann, DepthAnnotation):
            raise TypeError(f"annotator {annotator.name!r} returned {type(ann).__name__}, not DepthAnnotation")
        if ann.values.shape != (length, seq.height, seq.width):
            raise SourceError(seq.ref.path, f"annotator {annotator.name!r}: depth of window {s} has shape "
                                            f"{ann.values.shape}, expected ({length}, {seq.height}, {seq.width})")
    return out


# ---------------------------------------------------------------------------------- standardize
def standardize_window(seq: RawSequence, start: int, depth: DepthAnnotation | None, size: int,
                       adapter_version: str = "1") -> Clip:
    """One window -> a validated standard clip (DESIGN.md conventions; see :func:`egom2p.standardize.standardize`)."""
    return standardize(seq, start, depth=depth, size=size, length=CLIP_FRAMES, adapter_version=adapter_version)


# --------------------------------------------------------------------------------------- encode
def encode(clip: Clip) -> dict:
    """A clip -> a clips-table row (H.264 RGB at CRF 18, Blosc-zstd float16 depth)."""
    return clip_to_row(clip)


def row_modalities(row: dict) -> tuple[str, ...]:
    """The modalities an encoded clips-table row holds (its registry entries' payload columns not null)."""
    return tuple(i.name for i in modality.MODALITY_INFO.values() if row.get(i.payload_column) is not None)


# ------------------------------------------------------------------------------ one work chunk
def annotate_chunk(adapter: Adapter, annotator: Annotator, chunk: WorkChunk
                   ) -> tuple[dict[int, DepthAnnotation | None], list[QuarantineRecord]]:
    """Annotate stage for one chunk: depth per start, or quarantine records for every window on failure."""
    try:
        seq = load_sequence(adapter, chunk.ref)
        return annotate(annotator, seq, chunk.starts), []
    except Exception as e:  # noqa: BLE001 - any failure of one chunk is quarantined, the run goes on
        return {}, [QuarantineRecord.from_exception("annotate", chunk.ref, e, clip_id=cid) for cid in chunk.clip_ids]


def standardize_chunk(adapter: Adapter, chunk: WorkChunk, depths: dict[int, DepthAnnotation | None], size: int
                      ) -> Iterator[dict | QuarantineRecord]:
    """Standardize + encode stage for one chunk: yields encoded rows or quarantine records, window by window."""
    try:
        seq = load_sequence(adapter, chunk.ref)
    except Exception as e:  # noqa: BLE001
        for cid in chunk.clip_ids:
            yield QuarantineRecord.from_exception("standardize", chunk.ref, e, clip_id=cid)
        return
    for start, cid in zip(chunk.starts, chunk.clip_ids):
        try:
            clip = standardize_window(seq, start, depths.get(start), size, adapter.version)
        except Exception as e:  # noqa: BLE001
            yield QuarantineRecord.from_exception("standardize", chunk.ref, e, clip_id=cid)
            continue
        try:
            yield encode(clip)
        except Exception as e:  # noqa: BLE001
            yield QuarantineRecord.from_exception("encode", chunk.ref, e, clip_id=cid)
