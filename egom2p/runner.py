"""One stage runner for curation and tokenization (cosmos-curate's stage interface), and the one place Ray starts.

A :class:`Stage` declares its :class:`Resources` (CPUs, GPUs, memory; a pool of actors when it
holds a model, stateless tasks otherwise; rows per call) and its output schema, sets itself up once
per worker (:meth:`Stage.setup`: load a model, build an annotator) and maps an Arrow table to an
Arrow table (:meth:`Stage.process`). :class:`Runner` maps a list of stages over a source:

* ``executor="ray"``: Ray Data, one ``map_batches`` per stage (an actor pool, or tasks, with the
  declared resources); Arrow blocks flow between stages through the object store of the node that
  made them, never through the driver. The driver iterates over the last stage's output, which
  carries ids, counts and records (the writing stages write the rows themselves), not payloads.
* ``executor="local"``: the same stages, in order, in this process (one-core runs, debugging,
  tests and benchmarks); the same code path per batch, not a second copy of the steps.

Sources: an Arrow table (a work list: sequences, chunks), or a :class:`LanceSource` (a Lance table
at a pinned version: Ray Data's Lance reader, or the Lance scanner locally).

Every output batch carries a ``_cpu_s`` column: the CPU seconds that the stages spent on the rows
it came from (measured around each :meth:`Stage.process` call, summed along the pipeline), so a run
knows the workers' share of the work without asking Ray.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

CPU_COLUMN = "_cpu_s"
EXECUTORS = ("ray", "local")


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float = 0.0  # reserved per worker (0: no reservation)
    actors: int = 0  # > 0: a pool of this many long-lived actors (a stage holding a model); 0: stateless tasks
    batch_size: int | None = None  # rows per process() call (None: whatever block arrives)
    max_tasks: int | None = None  # tasks: at most this many at once (None: as many as resources allow)


class Stage:
    """A step of a pipeline: resources, setup once per worker, an Arrow batch in, an Arrow batch out."""

    name: str = "stage"
    resources: Resources = Resources()
    output_schema: pa.Schema | None = None  # checked (cast) after every call when set

    def setup(self) -> None:
        """Build what the stage holds (a model, an annotator); called once per worker before the first batch."""

    def process(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError


@dataclass(frozen=True)
class LanceSource:
    """A Lance table at a pinned version as the rows of a run (only ``fragment_ids`` when given)."""

    uri: str
    version: int
    columns: list[str] | None = None
    fragment_ids: list[int] | None = None
    options: dict | None = None
    batch_rows: int = 64


@dataclass
class RunStats:
    """What the driver saw of one :meth:`Runner.run`: output batches and rows, their bytes, the workers' CPU."""

    batches: int = 0
    rows: int = 0
    bytes_to_driver: int = 0
    worker_cpu_s: float = 0.0
    wall_s: float = 0.0


# ------------------------------------------------------------------------------- one batch
_READY: dict[str, Stage] = {}  # stages already set up in this process (task mode), by run key


def _call(stage: Stage, batch: pa.Table) -> pa.Table:
    """Run ``stage`` on ``batch``, carrying the CPU seconds of the pipeline so far in :data:`CPU_COLUMN`."""
    spent = 0.0
    if CPU_COLUMN in batch.column_names:
        spent = float(pc.sum(batch.column(CPU_COLUMN)).as_py() or 0.0)
        batch = batch.drop_columns([CPU_COLUMN])
    t0 = time.process_time()
    out = stage.process(batch)
    if stage.output_schema is not None:
        try:
            out = out.select(stage.output_schema.names).cast(stage.output_schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as e:
            raise TypeError(f"stage {stage.name!r} returned rows that do not match its output schema: {e}") from e
    spent += time.process_time() - t0
    cpu = [0.0] * out.num_rows
    if cpu:
        cpu[0] = spent
    return out.append_column(CPU_COLUMN, pa.array(cpu, pa.float64()))


def _task(batch: pa.Table, stage: Stage, key: str) -> pa.Table:
    """Ray task body: set the stage up once per worker process, then process the batch."""
    ready = _READY.get(key)
    if ready is None:
        stage.setup()
        ready = _READY[key] = stage
    return _call(ready, batch)


class _Actor:
    """Ray actor body: the stage, set up once."""

    def __init__(self, stage: Stage):
        stage.setup()
        self.stage = stage

    def __call__(self, batch: pa.Table) -> pa.Table:
        return _call(self.stage, batch)


# ------------------------------------------------------------------------------------ Ray
def worker_id() -> str:
    """``<Ray node id>:<pid>`` of the process running this code (``local:<pid>`` outside Ray): who wrote a row."""
    node = "local"
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001
        pass
    return f"{node}:{os.getpid()}"


def start_ray(num_cpus: int | None = None, temp_dir: str | None = None, attempts: int = 3) -> bool:
    """Start a local Ray, or connect to ``RAY_ADDRESS``, unless Ray runs. Returns True if this call started it.

    Ray gives a new node 30 s to register; a loaded machine can miss that, so a start that timed
    out is retried, after ending the processes the failed attempt left behind.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
        return True
    kwargs = {"include_dashboard": False, "log_to_driver": False}
    if num_cpus:
        kwargs["num_cpus"] = num_cpus
    temp_dir = temp_dir or os.environ.get("EGOM2P_RAY_TMPDIR")
    if temp_dir:
        kwargs["_temp_dir"] = temp_dir
    for attempt in range(attempts):
        before = _children()
        try:
            ray.init(**kwargs)
            break
        except Exception as e:
            ray.shutdown()
            _end(_children() - before)
            if "timed out during startup" not in str(e) or attempt == attempts - 1:
                raise
    return True


def _children() -> set[int]:
    import psutil

    return {c.pid for c in psutil.Process().children(recursive=True)}


def _end(pids: set[int]) -> None:
    """Terminate (then kill) processes this process started: what a failed Ray start leaves running."""
    import psutil

    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
            procs[-1].terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def _ray_dataset(source, rows_per_block: int):
    import ray

    if isinstance(source, LanceSource):
        import lance_ray

        # reads take no CPU slot: the stages' actors may hold every CPU, and a read waiting for one would stall them
        return lance_ray.read_lance(source.uri, columns=source.columns, storage_options=source.options,
                                    dataset_options={"version": source.version}, fragment_ids=source.fragment_ids,
                                    scanner_options={"batch_size": source.batch_rows},
                                    ray_remote_args={"num_cpus": 0}, concurrency=2)
    blocks = [source.slice(i, rows_per_block) for i in range(0, source.num_rows, rows_per_block)]
    return ray.data.from_arrow(blocks)


def _local_batches(source, rows_per_block: int) -> Iterator[pa.Table]:
    if isinstance(source, LanceSource):
        from . import tables

        ds = tables.open_table(source.uri, source.version, source.options)
        frags = [ds.get_fragment(i) for i in source.fragment_ids] if source.fragment_ids is not None else None
        for rb in ds.to_batches(columns=source.columns, fragments=frags, batch_size=source.batch_rows):
            yield pa.Table.from_batches([rb])
        return
    for i in range(0, source.num_rows, rows_per_block):
        yield source.slice(i, rows_per_block)


def _rebatch(stream: Iterable[pa.Table], size: int | None) -> Iterator[pa.Table]:
    if size is None:
        yield from (b for b in stream if b.num_rows)
        return
    pending: list[pa.Table] = []
    n = 0
    for b in stream:
        if not b.num_rows:
            continue
        pending.append(b)
        n += b.num_rows
        while n >= size:
            whole = pa.concat_tables(pending, promote_options="default")
            yield whole.slice(0, size)
            rest = whole.slice(size)
            pending, n = ([rest] if rest.num_rows else []), rest.num_rows
    if pending:
        yield pa.concat_tables(pending, promote_options="default")


def _map_local(stage: Stage, stream: Iterable[pa.Table]) -> Iterator[pa.Table]:
    for b in _rebatch(stream, stage.resources.batch_size):
        yield _call(stage, b)


class Runner:
    """Maps stages over a source on Ray Data or in this process; starts (and stops) a local Ray when needed.

    Use as a context manager, or call :meth:`close`. With ``executor="ray"`` it connects to
    ``RAY_ADDRESS`` when set, otherwise starts a local Ray with ``num_cpus`` (or uses a Ray this
    process already runs).
    """

    def __init__(self, executor: str = "ray", num_cpus: int | None = None):
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
        self.executor = executor
        self.num_cpus = num_cpus
        self._started = False
        self.stats = RunStats()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    @property
    def use_ray(self) -> bool:
        return self.executor == "ray"

    def ensure_started(self) -> None:
        if self.use_ray:
            self._started = start_ray(self.num_cpus) or self._started

    def run(self, source: pa.Table | LanceSource, stages: Sequence[Stage], rows_per_block: int = 1) -> Iterator[pa.Table]:
        """Stream the last stage's output batches (each with :data:`CPU_COLUMN`); updates :attr:`stats`."""
        if not isinstance(source, LanceSource) and source.num_rows == 0:
            return
        t0 = time.monotonic()
        stream = self._ray(source, stages, rows_per_block) if self.use_ray else self._local(source, stages, rows_per_block)
        for batch in stream:
            self.stats.batches += 1
            self.stats.rows += batch.num_rows
            self.stats.bytes_to_driver += batch.nbytes
            if CPU_COLUMN in batch.column_names:
                self.stats.worker_cpu_s += float(pc.sum(batch.column(CPU_COLUMN)).as_py() or 0.0)
            yield batch
        self.stats.wall_s += time.monotonic() - t0

    def _local(self, source, stages: Sequence[Stage], rows_per_block: int) -> Iterator[pa.Table]:
        for s in stages:
            s.setup()
        stream: Iterable[pa.Table] = _local_batches(source, rows_per_block)
        for s in stages:
            stream = _map_local(s, stream)
        yield from stream

    def _ray(self, source, stages: Sequence[Stage], rows_per_block: int) -> Iterator[pa.Table]:
        from ray.data import DataContext

        self.ensure_started()
        ctx = DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ds = _ray_dataset(source, rows_per_block)
        for s in stages:
            r = s.resources
            remote = {"num_cpus": r.cpus, "num_gpus": r.gpus or None, "batch_size": r.batch_size,
                      "batch_format": "pyarrow", "zero_copy_batch": True}
            if r.memory_gb:
                remote["memory"] = int(r.memory_gb * 2**30)
            if r.actors > 0:
                ds = ds.map_batches(_Actor, fn_constructor_args=(s,), concurrency=r.actors, **remote)
            else:
                ds = ds.map_batches(_task, fn_kwargs={"stage": s, "key": f"{s.name}-{uuid.uuid4().hex}"},
                                    concurrency=r.max_tasks, **remote)
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")


__all__ = ["CPU_COLUMN", "LanceSource", "Resources", "RunStats", "Runner", "Stage", "start_ray", "worker_id"]
