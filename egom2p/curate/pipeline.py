"""One curation run, step by step: prepare -> discover -> split -> annotate+standardize+write -> summarize.

:class:`CurationRun` holds the state of a run (adapter, annotator, quarantine log, the table's
finished clip ids) and exposes one method per step; the Prefect flow (``flows/curate.py``) calls
each step as a task, :meth:`CurationRun.run` calls them all (used by tests and benchmarks).

Guarantees:

* resumable and idempotent: clip ids are deterministic and the finished ids are read from the
  table before splitting, so a re-run never re-decodes a finished window; rows are appended in
  small Lance commits as they stream in (each commit is atomic), so a killed run loses only the
  batch in flight and a re-run makes exactly the missing clips; the writer skips ids already in the
  table, so nothing is ever duplicated;
* one writer per dataset: a lock file ``OUT/.<dataset>.curate.lock`` (``flock``, released by the
  OS when a process dies) refuses a second concurrent run of the same dataset into the same OUT;
  runs of different datasets write different tables and files and never touch each other;
* failures of a sequence or clip go to the quarantine file and the run carries on.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path

from ..adapters import get_adapter
from ..adapters.base import Adapter, SequenceRef
from ..annotators import get_annotator
from ..annotators.base import Annotator
from ..clips import existing_ids
from ..errors import EgoM2PError
from .config import CurateConfig
from .quarantine import QuarantineLog, QuarantineRecord
from .stages import WorkChunk, discover, process_chunk, ref_from_json, rows_from_ipc, split, write
from .summary import RunSummary, table_coverage

log = logging.getLogger("egom2p.curate")

Progress = Callable[[int, int], None]  # (clips done (written + quarantined), clips planned)


class CurateError(EgoM2PError, RuntimeError):
    """A run cannot start (unknown dataset, missing adapter or checkpoint, bad options, busy output)."""


class CurationRun:
    """State and steps of one curation run (see the module docstring)."""

    def __init__(self, config: CurateConfig, adapter: Adapter | None = None, annotator: Annotator | None = None,
                 engine: str = "ray", run_id: str | None = None, logger: logging.Logger | None = None):
        if engine not in ("ray", "serial"):
            raise ValueError(f"engine must be 'ray' or 'serial', got {engine!r}")
        self.config = config
        self.adapter = adapter
        self.annotator = annotator
        self._annotator_given = annotator is not None
        self.engine = engine
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.log = logger or log
        self.quarantine = QuarantineLog(config.quarantine_path, self.run_id)
        self.done: set[str] = set()
        self._lock_file = None
        self._t0 = time.monotonic()
        self._ray_started = False
        self.summary = RunSummary(dataset=config.dataset, run_id=self.run_id, raw=str(config.raw),
                                  table=config.table_path, depth=config.depth or "",
                                  started=datetime.now(timezone.utc).isoformat(timespec="seconds"))

    # ------------------------------------------------------------------------------- prepare
    def prepare(self) -> None:
        """Resolve the adapter and annotator and fail fast: unknown dataset, missing adapter or
        checkpoint, an annotator the dataset cannot feed, a second run on the same output."""
        cfg = self.config
        if self.adapter is None:
            try:
                self.adapter = get_adapter(cfg.dataset)
            except Exception as e:
                raise CurateError(f"cannot curate {cfg.dataset!r}: {e}") from e
        if cfg.depth is None:
            cfg.depth = self.adapter.default_depth
        self.summary.depth = cfg.depth
        if cfg.depth in ("render", "sensor") and self.adapter.modalities and "depth" not in self.adapter.modalities:
            raise CurateError(f"depth annotator {cfg.depth!r} reads the source's depth, but dataset {cfg.dataset!r} "
                              f"has none (modalities: {', '.join(self.adapter.modalities)}); use rollingdepth or none")
        if self.annotator is None:
            try:
                self.annotator = get_annotator(cfg.depth, **cfg.depth_options)
            except Exception as e:
                raise CurateError(f"depth annotator {cfg.depth!r} for {cfg.dataset!r}: {e}") from e
        try:
            self.annotator.prepare()
        except Exception as e:
            raise CurateError(f"depth annotator {cfg.depth!r} is not ready: {e}") from e
        if not Path(cfg.raw).exists():
            raise CurateError(f"raw root {cfg.raw} of {cfg.dataset!r} does not exist")
        self._lock()
        self.done = existing_ids(cfg.table_path)
        self.log.info("curate %s: raw %s -> %s (depth %s, stride %d, size %d); %d clips already in the table",
                      cfg.dataset, cfg.raw, cfg.table_path, cfg.depth, cfg.stride, cfg.size, len(self.done))

    def _lock(self) -> None:
        out = Path(self.config.out)
        out.mkdir(parents=True, exist_ok=True)
        f = open(self.config.lock_path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise CurateError(f"another curate run of {self.config.dataset!r} is writing {out} "
                              f"(lock {self.config.lock_path}); wait for it or use another --out") from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "run_id": self.run_id}) + "\n")
        f.flush()
        self._lock_file = f

    def close(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None
        if self._ray_started:
            import ray

            ray.shutdown()
            self._ray_started = False

    # ------------------------------------------------------------------------------ discover
    def discover(self) -> list[SequenceRef]:
        refs = discover(self.adapter, self.config.raw, self.config.limit)
        self.summary.sequences_seen = len(refs)
        self.log.info("discover: %d sequences under %s", len(refs), self.config.raw)
        return refs

    # --------------------------------------------------------------------------------- split
    def split(self, refs: list[SequenceRef]) -> list[WorkChunk]:
        """Plan the windows still to curate (finished clip ids skipped before any decoding)."""
        cfg = self.config
        chunks: list[WorkChunk] = []
        failed = 0
        if self.engine == "ray":
            self._start_ray()
            from .ray_ops import ray_split

            done_by_seq: dict[str, list[str]] = {}
            for cid in self.done:
                done_by_seq.setdefault(cid.split("/", 1)[1].rsplit("/", 1)[0], []).append(cid)
            for row in ray_split(refs, done_by_seq, self.adapter, cfg.stride, cfg.windows_per_task, self.run_id):
                if row["error"]:
                    self.quarantine.add(QuarantineRecord.from_json(row["error"]))
                    failed += 1
                    continue
                ref = ref_from_json(row["ref"])
                self.summary.windows += row["windows"]
                self.summary.clips_skipped += len(json.loads(row["skipped"]))
                chunks += [WorkChunk(ref, starts, row["num_frames"]) for starts in json.loads(row["chunks"])]
        else:
            for ref in refs:
                try:
                    res = split(self.adapter, ref, cfg.stride, self.done, cfg.windows_per_task)
                except Exception as e:  # noqa: BLE001
                    self.quarantine.add(QuarantineRecord.from_exception("split", ref, e, run_id=self.run_id))
                    failed += 1
                    continue
                self.summary.windows += res.windows
                self.summary.clips_skipped += len(res.skipped)
                chunks += res.chunks
        self.summary.sequences_failed = failed
        self.summary.clips_planned = sum(len(c.starts) for c in chunks)
        self.log.info("split: %d windows in %d sequences (%d failed); %d already done, %d to curate in %d tasks",
                      self.summary.windows, len(refs) - failed, failed, self.summary.clips_skipped,
                      self.summary.clips_planned, len(chunks))
        return chunks

    # ------------------------------------------------------------- annotate, standardize, write
    def process(self, chunks: list[WorkChunk], progress: Progress | None = None) -> None:
        """Annotate, standardize and encode every planned window; append clips to the table in batches."""
        cfg = self.config
        planned = self.summary.clips_planned
        buffer: list[dict] = []
        last_flush = time.monotonic()
        done = 0
        bar = _bar(planned, f"curate {cfg.dataset}")

        def flush():
            nonlocal buffer, last_flush
            if buffer:
                n = write(cfg.table_path, buffer)
                self.summary.clips_written += n
                for r in buffer:
                    for m, col in (("rgb", "rgb_mp4"), ("depth", "depth_f16"), ("gaze", "gaze"), ("cam", "cam")):
                        if r.get(col) is not None:
                            self.summary.written_by_modality[m] = self.summary.written_by_modality.get(m, 0) + 1
                buffer = []
            last_flush = time.monotonic()

        def step():
            nonlocal done
            done += 1
            bar.update(1)
            if progress is not None:
                progress(done, planned)

        try:
            for kind, item in self._stream(chunks):
                if kind == "quarantine":
                    self.quarantine.add(item)
                else:
                    buffer.append(item)
                step()
                if len(buffer) >= cfg.write_batch or (buffer and time.monotonic() - last_flush > cfg.write_interval_s):
                    flush()
                    self.log.info("curate %s: %d/%d clips done, %d written, %d quarantined", cfg.dataset, done,
                                  planned, self.summary.clips_written, self.quarantine.count)
            flush()
        finally:
            bar.close()
        self.summary.quarantined = self.quarantine.count
        self.summary.quarantined_by_stage = dict(self.quarantine.by_stage)

    def _stream(self, chunks: list[WorkChunk]) -> Iterable[tuple[str, object]]:
        cfg = self.config
        if self.engine == "serial":
            for c in chunks:
                out = process_chunk(self.adapter, self.annotator, c, cfg.size)
                for rec in out.quarantined:
                    rec.run_id = self.run_id
                    yield "quarantine", rec
                for row in out.rows:
                    yield "clip", row
            return
        self._start_ray()
        from .ray_ops import ray_curate_stream

        spec = ({"object": self.annotator} if self._annotator_given
                else {"name": cfg.depth, "options": dict(cfg.depth_options)})
        for row in ray_curate_stream(chunks, self.adapter, spec, cfg.size, self.run_id, cfg.annotate_actors,
                                     cfg.annotate_gpus):
            if row["kind"] == "quarantine":
                yield "quarantine", QuarantineRecord.from_json(row["record"])
            else:
                yield "clip", rows_from_ipc([row["payload"]])[0]

    def _start_ray(self) -> None:
        from .ray_ops import ensure_ray

        if ensure_ray(self.config.num_cpus):
            self._ray_started = True

    # ----------------------------------------------------------------------------- summarize
    def summarize(self) -> RunSummary:
        s = self.summary
        s.quarantined = self.quarantine.count
        s.quarantined_by_stage = dict(self.quarantine.by_stage)
        s.table_clips, s.coverage, s.table_version = table_coverage(self.config.table_path, self.config.dataset)
        s.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        s.duration_s = round(time.monotonic() - self._t0, 2)
        s.write_json(self.config.summary_path)
        try:
            s.plot(Path(self.config.out) / f"{self.config.dataset}.summary.png")
        except Exception as e:  # noqa: BLE001 - a picture must never fail a run
            self.log.warning("could not draw the coverage plot: %s", e)
        return s

    # ----------------------------------------------------------------------------------- all
    def run(self, progress: Progress | None = None) -> RunSummary:
        try:
            self.prepare()
            chunks = self.split(self.discover())
            self.process(chunks, progress)
            return self.summarize()
        finally:
            self.close()


def _bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="clip", mininterval=1.0, disable=None)
