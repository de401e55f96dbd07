"""One curation run, step by step: prepare -> discover -> split -> annotate, standardize, encode, write -> finalize -> summarize.

Each step is a function of plain parameters (the run's :class:`CurateConfig`, sequence refs, work
chunks, a run id) that builds what it needs itself, so the Prefect flow (:mod:`egom2p.flows.curate`)
makes each one a task that can be retried and shows real work. :class:`CurationRun` chains the
same functions for tests, benchmarks and scripts. The stages run on :class:`egom2p.runner.Runner`
(Ray Data, or every stage in this process with ``executor="local"``).

Guarantees:

* workers write: the clips are inserted into the clips table by the workers that made them
  (:class:`egom2p.curate.ops.WriteClipsStage`); the driver receives one small status row per clip
  (its id, written / already present / quarantined, modalities, the quarantine record);
* resumable and idempotent: clip ids are deterministic and the finished ids are read from the
  table once, before splitting, so a re-run never re-decodes a finished window; each insert is one
  atomic Lance commit of ``write_batch`` clips, exactly once per clip id (:mod:`egom2p.tables`), so
  a killed run (``kill -9`` at any point) loses only the batches in flight and a re-run makes
  exactly the missing clips; two runs writing the same table at once never duplicate or lose a clip;
* one run per dataset and local output: a lock file ``OUT/.<dataset>.curate.lock`` (``flock``,
  released by the OS when a process dies) refuses a second concurrent run of the same dataset into
  the same local folder, only to save duplicated work; it is local-only and skipped for
  object-store outputs, where correctness rests on the exactly-once inserts alone;
* failures of a sequence or clip go to the quarantine file with their reasons and the run carries on;
* at the end, small fragments are compacted and the ``clip_id`` index updated (compaction in Ray
  workers when Ray runs).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import storage
from ..adapters import get_adapter
from ..adapters.base import Adapter, SequenceRef, SourceError
from ..annotators import get_annotator
from ..annotators.base import Annotator
from ..clips import create_table, existing_ids, finalize as finalize_table
from ..runner import CPU_COLUMN, Runner
from .config import CurateConfig, CurateError, take_lock
from .ops import (PRESENT, QUARANTINED, WRITTEN, AnnotateStage, SplitStage, StandardizeStage, WriteClipsStage,
                  chunks_table, sequences_table)
from .quarantine import QuarantineLog, QuarantineRecord
from .stages import WorkChunk, discover, ref_from_json, ref_to_json
from .summary import RunSummary, table_coverage

log = logging.getLogger("egom2p.curate")

Progress = Callable[[int, int], None]  # (clips done (written + present + quarantined), clips planned)
INDEX_EVERY = 4096  # fold new fragments into the clip_id index after this many clips written


# ---------------------------------------------------------------------------------- prepare
def resolve_adapter(config: CurateConfig) -> Adapter:
    try:
        return get_adapter(config.dataset)
    except Exception as e:
        raise CurateError(f"cannot curate {config.dataset!r}: {e}") from e


def prepare(config: CurateConfig, adapter: Adapter | None = None, annotator: Annotator | None = None) -> CurateConfig:
    """Fail fast (unknown dataset, missing adapter or checkpoint, an annotator the dataset cannot feed,
    a missing raw root) and create the clips table if needed. Returns the config with its depth resolved."""
    adapter = adapter or resolve_adapter(config)
    if annotator is None:
        config.depth = config.resolve_depth(adapter)
    elif config.depth is None:
        config.depth = adapter.default_depth
    if annotator is None:
        try:
            annotator = get_annotator(config.depth, **config.depth_options)
        except Exception as e:
            raise CurateError(f"depth annotator {config.depth!r} for {config.dataset!r}: {e}") from e
    try:
        annotator.prepare()
    except Exception as e:
        raise CurateError(f"depth annotator {config.depth!r} is not ready: {e}") from e
    if not Path(config.raw).exists():
        raise CurateError(f"raw root {config.raw} of {config.dataset!r} does not exist")
    create_table(config.table_path, config.options)
    return config


class RunLock:
    """``OUT/.<dataset>.curate.lock`` (flock; local folders only, see the module docstring)."""

    def __init__(self, config: CurateConfig, run_id: str):
        self.config, self.run_id = config, run_id
        self._file = None

    def acquire(self) -> None:
        cfg = self.config
        if storage.is_uri(cfg.out):
            return
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        f = take_lock(cfg.lock_path)
        if f is None:
            raise cfg.busy()
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "run_id": self.run_id}) + "\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the flock
            self._file = None


# --------------------------------------------------------------------------------- discover
def discover_sequences(config: CurateConfig, quarantine: QuarantineLog, adapter: Adapter | None = None
                       ) -> tuple[list[SequenceRef], int]:
    """(the sequences to split, how many discovery found): those found unusable are quarantined (stage
    "discover") and the run goes on; a raw root without any sequence of the dataset is a CurateError."""
    adapter = adapter or resolve_adapter(config)
    try:
        refs = discover(adapter, config.raw, config.limit)
    except SourceError as e:  # the raw root holds no sequence of the dataset at all
        raise CurateError(str(e)) from None
    for r in refs:
        if r.problem:
            quarantine.add(QuarantineRecord.from_exception("discover", r, SourceError(r.path, r.problem)))
    quarantine.flush()
    return [r for r in refs if not r.problem], len(refs)


# ------------------------------------------------------------------------------------ split
@dataclass
class Plan:
    """What :func:`split_sequences` found: the work chunks still to curate and the counts of the run summary."""

    chunks: list[WorkChunk] = field(default_factory=list)
    windows: int = 0
    skipped: int = 0
    sequences_failed: int = 0

    @property
    def planned(self) -> int:
        return sum(len(c.starts) for c in self.chunks)

    def to_dict(self) -> dict:
        return {"chunks": [{"ref": ref_to_json(c.ref), "starts": list(c.starts)} for c in self.chunks],
                "windows": self.windows, "skipped": self.skipped, "sequences_failed": self.sequences_failed}

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        return cls([WorkChunk(ref_from_json(c["ref"]), list(c["starts"])) for c in d["chunks"]],
                   d["windows"], d["skipped"], d["sequences_failed"])


def split_sequences(config: CurateConfig, refs: list[SequenceRef], runner: Runner, quarantine: QuarantineLog,
                    adapter: Adapter | None = None) -> Plan:
    """Plan the windows still to curate (finished ids, read once from the table, skipped before any decoding)."""
    adapter = adapter or resolve_adapter(config)
    done_by_seq: dict[str, list[str]] = {}
    for cid in existing_ids(config.table_path, options=config.options):
        done_by_seq.setdefault(cid.split("/", 1)[1].rsplit("/", 1)[0], []).append(cid)
    plan = Plan()
    source = sequences_table([ref_to_json(r) for r in refs], done_by_seq, [r.sequence for r in refs])
    rows: dict[str, dict] = {}
    for batch in runner.run(source, [SplitStage(adapter, config.stride, config.windows_per_task)]):
        for r in batch.drop_columns([CPU_COLUMN]).to_pylist():
            rows[r["ref"]] = r
    for ref in refs:  # discovery order
        r = rows[ref_to_json(ref)]
        if r["record"]:
            quarantine.add(QuarantineRecord.from_json(r["record"]))
            plan.sequences_failed += 1
            continue
        plan.windows += r["windows"]
        plan.skipped += len(r["skipped"])
        plan.chunks += [WorkChunk(ref, list(starts), r["num_frames"]) for starts in r["chunks"]]
    quarantine.flush()
    return plan


# ------------------------------------------------------------ annotate, standardize, encode, write
@dataclass
class Written:
    """What :func:`curate_chunks` did: clips written, found present, quarantined; per modality; payload bytes."""

    written: int = 0
    present: int = 0
    quarantined: int = 0
    by_modality: dict = field(default_factory=dict)
    payload_bytes: int = 0
    workers: dict = field(default_factory=dict)  # clips written per worker process ("<Ray node id>:<pid>")

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def curate_stages(config: CurateConfig, adapter: Adapter, annotator: Annotator | None = None) -> list:
    """annotate -> standardize (+ encode) -> write, as runner stages."""
    return [AnnotateStage(adapter, config.depth, config.depth_options, annotator, config.annotate_actors,
                          config.annotate_gpus),
            StandardizeStage(adapter, config.size),
            WriteClipsStage(config.table_path, config.write_batch, config.options)]


def curate_chunks(config: CurateConfig, chunks: list[WorkChunk], runner: Runner, quarantine: QuarantineLog,
                  adapter: Adapter | None = None, annotator: Annotator | None = None,
                  progress: Progress | None = None, logger: logging.Logger | None = None) -> Written:
    """Annotate, standardize, encode and write every planned window (in the workers); tally their status rows."""
    adapter = adapter or resolve_adapter(config)
    logger = logger or log
    out = Written()
    planned = sum(len(c.starts) for c in chunks)
    done = 0
    since_index = 0
    bar = _bar(planned, f"curate {config.dataset}")
    last_log = time.monotonic()
    try:
        for batch in runner.run(chunks_table(chunks), curate_stages(config, adapter, annotator)):
            for r in batch.drop_columns([CPU_COLUMN]).to_pylist():
                if r["status"] == QUARANTINED:
                    quarantine.add(QuarantineRecord.from_json(r["record"]))
                    out.quarantined += 1
                elif r["status"] == PRESENT:
                    out.present += 1
                elif r["status"] == WRITTEN:
                    out.written += 1
                    since_index += 1
                    out.payload_bytes += r["payload_bytes"]
                    out.workers[r["worker"]] = out.workers.get(r["worker"], 0) + 1
                    for m in r["modalities"]:
                        out.by_modality[m] = out.by_modality.get(m, 0) + 1
            quarantine.flush()
            done += batch.num_rows
            bar.update(batch.num_rows)
            if progress is not None:
                progress(done, planned)
            if since_index >= INDEX_EVERY:
                finalize_table(config.table_path, options=config.options, compact=False)
                since_index = 0
            if time.monotonic() - last_log > config.write_interval_s or done == planned:
                last_log = time.monotonic()
                logger.info("curate %s: %d/%d clips done, %d written, %d quarantined", config.dataset, done, planned,
                            out.written, out.quarantined)
    finally:
        bar.close()
    return out


def _bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="clip", mininterval=1.0, disable=None)


# ------------------------------------------------------------------------ finalize, summarize
def finalize(config: CurateConfig, runner: Runner) -> int:
    """Compact the run's small fragments (in Ray workers when Ray runs) and update the clip_id index."""
    return finalize_table(config.table_path, use_ray=runner.use_ray, options=config.options)


def summarize(config: CurateConfig, summary: RunSummary, logger: logging.Logger | None = None) -> RunSummary:
    """Coverage of the table, then the summary JSON and coverage plot beside it."""
    s = summary
    s.table_clips, s.coverage, s.table_version = table_coverage(config.table_path, config.dataset, config.options)
    s.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    s.write_json(config.summary_path, config.options)
    try:
        s.plot(config.plot_path, config.options)
    except Exception as e:  # noqa: BLE001 - a picture must never fail a run
        (logger or log).warning("could not draw the coverage plot: %s", e)
    return s


def new_summary(config: CurateConfig, run_id: str) -> RunSummary:
    return RunSummary(dataset=config.dataset, run_id=run_id, raw=str(config.raw), table=config.table_path,
                      depth=config.depth or "", started=datetime.now(timezone.utc).isoformat(timespec="seconds"))


def add_to_summary(s: RunSummary, sequences_seen: int, plan: Plan, written: Written, quarantined_by_stage: dict,
                   quarantined: int, discover_failed: int = 0) -> RunSummary:
    s.sequences_seen = sequences_seen
    s.sequences_failed = discover_failed + plan.sequences_failed
    s.windows = plan.windows
    s.clips_skipped = plan.skipped + written.present
    s.clips_planned = plan.planned
    s.clips_written = written.written
    s.written_by_modality = dict(written.by_modality)
    s.quarantined = quarantined
    s.quarantined_by_stage = dict(quarantined_by_stage)
    return s


# ------------------------------------------------------------------------------------- run
class CurationRun:
    """The steps of one run chained in this process (tests, benchmarks, scripts); see the module docstring."""

    def __init__(self, config: CurateConfig, adapter: Adapter | None = None, annotator: Annotator | None = None,
                 executor: str | None = None, run_id: str | None = None, logger: logging.Logger | None = None):
        self.config = config
        self.adapter = adapter
        self.annotator = annotator
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.log = logger or log
        self.runner = Runner(executor or config.executor, config.num_cpus)
        self.quarantine = QuarantineLog(config.quarantine_path, self.run_id, config.options)
        self.lock = RunLock(config, self.run_id)
        self.summary = new_summary(config, self.run_id)
        self.plan = Plan()
        self.written = Written()
        self.discover_failed = 0
        self._t0 = time.monotonic()

    def prepare(self) -> None:
        self.adapter = self.adapter or resolve_adapter(self.config)
        self.lock.acquire()
        try:
            prepare(self.config, self.adapter, self.annotator)
        except BaseException:
            self.lock.release()
            raise
        self.summary.depth = self.config.depth
        cfg = self.config
        self.log.info("curate %s: raw %s -> %s (depth %s, stride %d, size %d, %s executor)", cfg.dataset, cfg.raw,
                      cfg.table_path, cfg.depth, cfg.stride, cfg.size, self.runner.executor)

    def discover(self) -> list[SequenceRef]:
        """The sequences to split; those discovery found unusable are quarantined (stage "discover")."""
        refs, seen = discover_sequences(self.config, self.quarantine, self.adapter)
        self.summary.sequences_seen = seen
        self.discover_failed = seen - len(refs)
        self.log.info("discover: %d sequences under %s (%d quarantined)", seen, self.config.raw, self.discover_failed)
        return refs

    def split(self, refs: list[SequenceRef]) -> list[WorkChunk]:
        self.plan = split_sequences(self.config, refs, self.runner, self.quarantine, self.adapter)
        p = self.plan
        self.log.info("split: %d windows in %d sequences (%d failed); %d already done, %d to curate in %d tasks",
                      p.windows, len(refs) - p.sequences_failed, p.sequences_failed, p.skipped, p.planned, len(p.chunks))
        return p.chunks

    def process(self, chunks: list[WorkChunk], progress: Progress | None = None) -> Written:
        self.written = curate_chunks(self.config, chunks, self.runner, self.quarantine, self.adapter, self.annotator,
                                     progress, self.log)
        return self.written

    def summarize(self) -> RunSummary:
        finalize(self.config, self.runner)
        add_to_summary(self.summary, self.summary.sequences_seen, self.plan, self.written, self.quarantine.by_stage,
                       self.quarantine.count, self.discover_failed)
        self.summary.duration_s = round(time.monotonic() - self._t0, 2)
        return summarize(self.config, self.summary, self.log)

    def close(self) -> None:
        self.lock.release()
        self.runner.close()

    def run(self, progress: Progress | None = None) -> RunSummary:
        try:
            self.prepare()
            chunks = self.split(self.discover())
            self.process(chunks, progress)
            return self.summarize()
        finally:
            self.close()


__all__ = ["CurateError", "CurationRun", "Plan", "RunLock", "Written", "curate_chunks", "discover_sequences",
           "finalize", "prepare", "split_sequences", "summarize"]
