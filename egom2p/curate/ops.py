"""The curation stages as runner stages (:class:`egom2p.runner.Stage`): Arrow batches in and out.

Thin wrappers around the pure functions of :mod:`egom2p.curate.stages`, mapped by
:class:`egom2p.runner.Runner` on Ray Data or in this process:

* :class:`SplitStage` (tasks): a sequence ``{ref, done}`` -> its plan (windows, finished ids,
  work chunks) or its quarantine record; one row per sequence.
* :class:`AnnotateStage` (tasks, or a pool of actors holding a model annotator, with GPUs): a
  work chunk ``{ref, starts}`` -> one row per window with its depth at source resolution (raw
  float32 bytes and shape, or null) or a quarantine record.
* :class:`StandardizeStage` (tasks): windows -> clips-table rows (standardize, then encode: H.264
  RGB, compressed depth) or quarantine records; a sequence's windows are read in
  :func:`egom2p.video.reading_windows` blocks that keep the last sequence's reader and frames from
  one chunk to the next (at most one window of frames per worker thread between chunks), so
  overlapping windows decode each frame once. Standardize and encode share a stage because the
  standard clip's raw frames would otherwise be copied between workers only to be compressed.
* :class:`WriteClipsStage` (tasks, ``write_batch`` rows per call): inserts the clips into the
  clips table (created by the driver before the run) from the worker (exactly once per clip id, :mod:`egom2p.tables`) and returns one
  small status row per clip: written / already present / quarantined, its modalities, its payload
  bytes. Those rows are all the driver receives.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa

from ..adapters.base import Adapter
from ..annotators.base import Annotator
from ..clips import clips_schema, insert_table
from ..runner import Resources, Stage, worker_id
from ..standardize import DepthAnnotation
from ..video import reading_windows
from .quarantine import QuarantineRecord
from .stages import WorkChunk, annotate_chunk, ref_from_json, row_modalities, split, standardize_chunk

SEQUENCES_SCHEMA = pa.schema([("ref", pa.string()), ("done", pa.list_(pa.string()))])
PLAN_SCHEMA = pa.schema([("ref", pa.string()), ("num_frames", pa.int64()), ("windows", pa.int64()),
                         ("skipped", pa.list_(pa.string())), ("chunks", pa.list_(pa.list_(pa.int32()))),
                         ("record", pa.string())])
CHUNKS_SCHEMA = pa.schema([("ref", pa.string()), ("starts", pa.list_(pa.int32()))])
WINDOWS_SCHEMA = pa.schema([("ref", pa.string()), ("start", pa.int32()), ("clip_id", pa.string()),
                            ("depth", pa.large_binary()), ("depth_shape", pa.list_(pa.int32())),
                            ("depth_kind", pa.string()), ("depth_source", pa.string()),
                            ("depth_raw_valid", pa.large_binary()), ("record", pa.string())])
STATUS_SCHEMA = pa.schema([("clip_id", pa.string()), ("status", pa.string()), ("record", pa.string()),
                           ("modalities", pa.list_(pa.string())), ("payload_bytes", pa.int64()),
                           ("worker", pa.string())])


def encoded_schema() -> pa.Schema:
    """Encoded clips-table rows (of the modalities registered now) or their quarantine record."""
    return pa.schema([f.with_nullable(True) for f in clips_schema()] + [pa.field("record", pa.string())])


WRITTEN, PRESENT, QUARANTINED = "written", "present", "quarantined"


def _qrow(rec: QuarantineRecord) -> dict:
    return {"clip_id": rec.clip_id, "record": rec.to_json()}


class SplitStage(Stage):
    """Plan the windows still to curate of each sequence (finished ids skipped before any decoding)."""

    name = "split"
    output_schema = PLAN_SCHEMA

    def __init__(self, adapter: Adapter, stride: int, windows_per_task: int):
        self.adapter, self.stride, self.windows_per_task = adapter, stride, windows_per_task

    def process(self, batch: pa.Table) -> pa.Table:
        rows = []
        for item in batch.to_pylist():
            ref = ref_from_json(item["ref"])
            try:
                res = split(self.adapter, ref, self.stride, set(item["done"] or ()), self.windows_per_task)
            except Exception as e:  # noqa: BLE001 - a sequence that cannot be opened is quarantined
                rows.append({"ref": item["ref"], "num_frames": 0, "windows": 0, "skipped": [], "chunks": [],
                             "record": QuarantineRecord.from_exception("split", ref, e).to_json()})
                continue
            rows.append({"ref": item["ref"], "num_frames": res.num_frames, "windows": res.windows,
                         "skipped": res.skipped, "chunks": [c.starts for c in res.chunks], "record": None})
        return pa.Table.from_pylist(rows, schema=PLAN_SCHEMA)


class AnnotateStage(Stage):
    """Depth for each window of a work chunk (the annotator is built and prepared once per worker)."""

    name = "annotate"
    output_schema = WINDOWS_SCHEMA

    def __init__(self, adapter: Adapter, depth: str | None = None, depth_options: dict | None = None,
                 annotator: Annotator | None = None, actors: int = 0, gpus: float = 0.0):
        self.adapter, self.depth, self.depth_options = adapter, depth, dict(depth_options or {})
        self.annotator = annotator
        self.resources = Resources(cpus=1, gpus=gpus, actors=actors, batch_size=1)

    def setup(self) -> None:
        if self.annotator is None:
            from ..annotators import get_annotator

            self.annotator = get_annotator(self.depth, **self.depth_options)
            self.annotator.prepare()

    def process(self, batch: pa.Table) -> pa.Table:
        rows = []
        for item in batch.to_pylist():
            ref = ref_from_json(item["ref"])
            chunk = WorkChunk(ref, [int(s) for s in item["starts"]])
            depths, quarantined = annotate_chunk(self.adapter, self.annotator, chunk)
            rows += [{"ref": item["ref"], "start": None, **_qrow(q)} for q in quarantined]
            if quarantined:
                continue
            for start, cid in zip(chunk.starts, chunk.clip_ids):
                d = depths.get(start)
                rows.append({"ref": item["ref"], "start": start, "clip_id": cid, "record": None, **_depth_fields(d)})
        values = [r.pop("depth", None) for r in rows]  # the large arrays go into the column with one copy
        table = pa.Table.from_pylist(rows, schema=WINDOWS_SCHEMA.remove(WINDOWS_SCHEMA.get_field_index("depth")))
        return table.append_column(WINDOWS_SCHEMA.field("depth"), binary_column(values))


def _depth_fields(d: DepthAnnotation | None) -> dict:
    """The depth columns of a WINDOWS_SCHEMA row, the depth as a C-contiguous float32 array."""
    if d is None:
        return {"depth": None, "depth_shape": None, "depth_kind": None, "depth_source": None, "depth_raw_valid": None}
    return {"depth": np.ascontiguousarray(d.values, np.float32), "depth_shape": list(d.values.shape),
            "depth_kind": d.kind, "depth_source": d.source,
            "depth_raw_valid": None if d.raw_valid is None else
            np.packbits(np.asarray(d.raw_valid, dtype=bool).ravel()).tobytes()}


def depth_to_row(d: DepthAnnotation | None) -> dict:
    """The depth columns of a WINDOWS_SCHEMA row (how an annotation travels from annotate to standardize):
    float32 depth as raw bytes; the raw-valid mask of cleaned depth is bit-packed."""
    row = _depth_fields(d)
    return {**row, "depth": None if d is None else row["depth"].tobytes()}


def binary_column(values: list[np.ndarray | None]) -> pa.Array:
    """A ``large_binary`` column of the arrays' bytes (null for None), copying each array once.

    ``pa.Table.from_pylist`` of ``ndarray.tobytes()`` copies each depth window (60 x H x W float32)
    twice; this builds the column's offsets and data buffers directly.
    """
    sizes = [0 if v is None else v.nbytes for v in values]
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    data = np.empty(int(offsets[-1]), np.uint8)
    for v, o, n in zip(values, offsets, sizes):
        if v is not None:
            data[o:o + n] = np.ascontiguousarray(v).reshape(-1).view(np.uint8)
    nulls = sum(v is None for v in values)
    validity = pa.array([v is not None for v in values]).buffers()[1] if nulls else None
    return pa.Array.from_buffers(pa.large_binary(), len(values), [validity, pa.py_buffer(offsets), pa.py_buffer(data)],
                                 null_count=nulls)


def binary_values(column: pa.ChunkedArray | pa.Array) -> list[np.ndarray | None]:
    """The values of a binary column as read-only uint8 arrays over the column's memory (no copy; None for null)."""
    out: list[np.ndarray | None] = []
    for chunk in (column.chunks if isinstance(column, pa.ChunkedArray) else [column]):
        if not pa.types.is_large_binary(chunk.type):
            chunk = chunk.cast(pa.large_binary())
        validity, offsets, data = chunk.buffers()
        off = np.frombuffer(offsets, np.int64)[chunk.offset:chunk.offset + len(chunk) + 1]
        valid = chunk.is_valid().to_numpy(zero_copy_only=False) if chunk.null_count else None
        for i in range(len(chunk)):
            if valid is not None and not valid[i]:
                out.append(None)
            else:
                out.append(np.frombuffer(data, np.uint8, count=int(off[i + 1] - off[i]), offset=int(off[i])))
    return out


def depth_from_row(row: dict) -> DepthAnnotation | None:
    """The depth annotation of a WINDOWS_SCHEMA row (:func:`depth_to_row` reversed); ``depth`` may be bytes
    or a uint8 array over the batch's memory (:func:`binary_values`), read without a copy."""
    if row["depth"] is None:
        return None
    shape = row["depth_shape"]
    values = np.frombuffer(row["depth"], np.float32).reshape(shape)
    raw_valid = None
    if row.get("depth_raw_valid") is not None:
        bits = np.frombuffer(row["depth_raw_valid"], np.uint8)
        raw_valid = np.unpackbits(bits, count=int(np.prod(shape))).astype(bool).reshape(shape)
    return DepthAnnotation(values=values, kind=row["depth_kind"], source=row["depth_source"], raw_valid=raw_valid)


class StandardizeStage(Stage):
    """Standardize and encode each window into a clips-table row (or its quarantine record)."""

    name = "standardize"

    def __init__(self, adapter: Adapter, size: int):
        self.adapter, self.size = adapter, size
        self.output_schema = encoded_schema()

    def process(self, batch: pa.Table) -> pa.Table:
        rows: list[dict] = []
        by_ref: dict[str, list[dict]] = defaultdict(list)
        depth = binary_values(batch.column("depth"))  # the depth windows without copying them to bytes
        for r, d in zip(batch.drop_columns(["depth"]).to_pylist(), depth):
            r["depth"] = d
            if r["record"] is None:
                by_ref[r["ref"]].append(r)
            else:
                rows.append(r)  # an annotate failure passes through
        for ref_json, windows in by_ref.items():
            chunk = WorkChunk(ref_from_json(ref_json), [int(w["start"]) for w in windows])
            depths = {int(w["start"]): depth_from_row(w) for w in windows}
            with reading_windows(keep=True):  # the windows in order: each source frame decoded once
                for item in standardize_chunk(self.adapter, chunk, depths, self.size):
                    rows.append(_qrow(item) if isinstance(item, QuarantineRecord) else {**item, "record": None})
        schema = self.output_schema
        return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)


class WriteClipsStage(Stage):
    """Insert the encoded clips into the clips table from the worker; return one status row per clip."""

    name = "write"
    output_schema = STATUS_SCHEMA

    def __init__(self, table: str, write_batch: int, options: dict | None = None):
        self.table, self.options = table, options
        self.resources = Resources(batch_size=write_batch)

    def process(self, batch: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        node = worker_id()
        good = batch.filter(pc.is_null(batch.column("record")))
        bad = batch.filter(pc.is_valid(batch.column("record")))
        present: set[str] = set()
        if good.num_rows:
            present = set(insert_table(self.table, good.drop_columns(["record"]), self.options).present)
        rows = []
        for r in good.to_pylist():
            written = r["clip_id"] not in present
            rows.append({"clip_id": r["clip_id"], "status": WRITTEN if written else PRESENT, "record": None,
                         "modalities": list(row_modalities(r)),
                         "payload_bytes": sum(len(v) for v in r.values() if isinstance(v, bytes)) if written else 0,
                         "worker": node})
        for r in bad.select(["clip_id", "record"]).to_pylist():
            rows.append({"clip_id": r["clip_id"], "status": QUARANTINED, "record": r["record"],
                         "modalities": [], "payload_bytes": 0, "worker": node})
        return pa.Table.from_pylist(rows, schema=STATUS_SCHEMA)


def sequences_table(refs_json: list[str], done_by_sequence: dict[str, list[str]], sequences: list[str]) -> pa.Table:
    """The input of :class:`SplitStage`: one row per sequence with its finished clip ids."""
    return pa.table({"ref": refs_json, "done": [done_by_sequence.get(s, []) for s in sequences]},
                    schema=SEQUENCES_SCHEMA)


def chunks_table(chunks: list[WorkChunk]) -> pa.Table:
    """The input of :class:`AnnotateStage`: one row per work chunk."""
    from .stages import ref_to_json

    return pa.table({"ref": [ref_to_json(c.ref) for c in chunks], "starts": [list(c.starts) for c in chunks]},
                    schema=CHUNKS_SCHEMA)


__all__ = ["AnnotateStage", "SplitStage", "StandardizeStage", "WriteClipsStage", "chunks_table", "sequences_table"]
