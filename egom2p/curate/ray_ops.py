"""Thin Ray Data wrappers around the pure stages of :mod:`egom2p.curate.stages`.

Two Ray Data operators:

* ``split`` (``Dataset.map`` over sequences): opens each sequence and plans the windows still to
  curate; one small row per sequence comes back (the plan is materialised on the driver, so the
  run knows how many clips it will make and can show progress against that number).
* ``annotate+standardize`` (``Dataset.flat_map`` over work chunks): annotate -> standardize ->
  encode for the windows of one chunk, yielding one row per clip (the encoded clips-table row as
  Arrow IPC bytes) or per quarantine record. Annotate and standardize run in the same worker on
  purpose: the annotation is depth at source resolution (60 x H x W float32, up to ~0.5 GB per
  Aria window) and would otherwise be copied through the object store only to be cropped and
  resized; each stage is still its own pure function, tested alone. With ``annotate_actors > 0``
  (model annotators such as RollingDepth) the operator runs on a pool of Ray actors, each of which
  builds and prepares the annotator once (and may hold a GPU).

The driver consumes the stream and appends clips to the Lance table in small batches
(:class:`egom2p.curate.pipeline.CurationRun`), so a killed run keeps every batch already committed.
Ray starts locally by default; ``RAY_ADDRESS`` points it at a cluster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from ..adapters.base import Adapter
from .quarantine import QuarantineRecord
from .stages import (WorkChunk, annotate_chunk, ref_from_json, ref_to_json, row_to_ipc, split,
                     standardize_chunk)

_ANNOTATORS: dict[str, object] = {}


def ensure_ray(num_cpus: int | None = None) -> bool:
    """Start (or connect to, with ``RAY_ADDRESS``) Ray unless it is running. Returns True if this call started it."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        kwargs = {"include_dashboard": False, "log_to_driver": False}
        if num_cpus:
            kwargs["num_cpus"] = num_cpus
        if os.environ.get("EGOM2P_RAY_TMPDIR"):
            kwargs["_temp_dir"] = os.environ["EGOM2P_RAY_TMPDIR"]
        for attempt in range(3):
            try:
                ray.init(**kwargs)
                break
            except Exception as e:  # Ray gives a new node 30 s to register; a loaded machine can miss that
                if "timed out during startup" not in str(e) or attempt == 2:
                    raise
                ray.shutdown()
    return True


def _annotator(spec: dict):
    """The annotator of ``spec`` ({"name", "options"} or {"object"}), built and prepared once per worker process."""
    if "object" in spec:
        return spec["object"]
    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in _ANNOTATORS:
        from ..annotators import get_annotator

        a = get_annotator(spec["name"], **spec["options"])
        a.prepare()
        _ANNOTATORS[key] = a
    return _ANNOTATORS[key]


# ----------------------------------------------------------------------------------- split op
def split_row(row: dict, adapter: Adapter, stride: int, windows_per_task: int, run_id: str) -> dict:
    """Ray ``map`` fn: {"ref", "done"} -> the sequence's plan, or its quarantine record."""
    ref = ref_from_json(row["ref"])
    try:
        res = split(adapter, ref, stride, set(json.loads(row["done"])), windows_per_task)
    except Exception as e:  # noqa: BLE001 - a sequence that cannot be opened is quarantined
        rec = QuarantineRecord.from_exception("split", ref, e, run_id=run_id)
        return {"ref": row["ref"], "num_frames": 0, "windows": 0, "skipped": "[]", "chunks": "[]",
                "error": rec.to_json()}
    return {"ref": row["ref"], "num_frames": res.num_frames, "windows": res.windows,
            "skipped": json.dumps(res.skipped), "chunks": json.dumps([c.starts for c in res.chunks]), "error": ""}


def ray_split(refs, done_by_sequence: dict[str, list[str]], adapter: Adapter, stride: int,
              windows_per_task: int, run_id: str) -> list[dict]:
    """Run the split operator over all sequences; returns one plan row per sequence (in discovery order)."""
    import ray

    items = [{"ref": ref_to_json(r), "done": json.dumps(done_by_sequence.get(r.sequence, []))} for r in refs]
    if not items:
        return []
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), 64))
    ds = ds.map(split_row, fn_kwargs={"adapter": adapter, "stride": stride, "windows_per_task": windows_per_task,
                                      "run_id": run_id})
    rows = ds.take_all()
    order = {it["ref"]: i for i, it in enumerate(items)}
    return sorted(rows, key=lambda r: order[r["ref"]])


# ---------------------------------------------------------------- annotate + standardize op
def curate_chunk_rows(row: dict, adapter: Adapter, annotator_spec: dict, size: int, run_id: str) -> Iterator[dict]:
    """Ray ``flat_map`` fn: a work chunk -> one output row per clip or quarantine record."""
    ref = ref_from_json(row["ref"])
    chunk = WorkChunk(ref, [int(s) for s in row["starts"]])
    try:
        annotator = _annotator(annotator_spec)
    except Exception as e:  # noqa: BLE001
        for cid in chunk.clip_ids:
            yield _qrow(QuarantineRecord.from_exception("annotate", ref, e, clip_id=cid, run_id=run_id))
        return
    depths, q = annotate_chunk(adapter, annotator, chunk)
    for rec in q:
        rec.run_id = run_id
        yield _qrow(rec)
    if q:
        return
    for item in standardize_chunk(adapter, chunk, depths, size):
        if isinstance(item, QuarantineRecord):
            item.run_id = run_id
            yield _qrow(item)
        else:
            yield {"kind": "clip", "clip_id": item["clip_id"], "payload": row_to_ipc(item), "record": ""}


def _qrow(rec: QuarantineRecord) -> dict:
    return {"kind": "quarantine", "clip_id": rec.clip_id or "", "payload": b"", "record": rec.to_json()}


class ChunkCurator:
    """Actor form of :func:`curate_chunk_rows` (model annotators: built and prepared once per actor)."""

    def __init__(self, adapter: Adapter, annotator_spec: dict, size: int, run_id: str):
        self.adapter, self.spec, self.size, self.run_id = adapter, annotator_spec, size, run_id
        _annotator(annotator_spec)

    def __call__(self, row: dict) -> Iterator[dict]:
        yield from curate_chunk_rows(row, self.adapter, self.spec, self.size, self.run_id)


def ray_curate_stream(chunks: list[WorkChunk], adapter: Adapter, annotator_spec: dict, size: int, run_id: str,
                      annotate_actors: int = 0, annotate_gpus: float = 0.0) -> Iterator[dict]:
    """Stream the annotate+standardize operator's output rows to the driver as they are produced."""
    import ray

    if not chunks:
        return iter(())
    items = [{"ref": ref_to_json(c.ref), "starts": list(c.starts)} for c in chunks]
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), 1000))  # one chunk per block
    if annotate_actors > 0:
        ds = ds.flat_map(ChunkCurator, fn_constructor_kwargs={"adapter": adapter, "annotator_spec": annotator_spec,
                                                              "size": size, "run_id": run_id},
                         concurrency=annotate_actors, num_gpus=annotate_gpus or None)
    else:
        ds = ds.flat_map(curate_chunk_rows, fn_kwargs={"adapter": adapter, "annotator_spec": annotator_spec,
                                                       "size": size, "run_id": run_id})
    return ds.iter_rows()

