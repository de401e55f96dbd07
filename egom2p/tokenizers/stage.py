"""The tokenize stage: standard clips -> token DB rows (a pure function), its runner stages, and one tokenize run.

:func:`tokenize_clips` is the pure stage: clips + tokenizers -> rows for
:func:`egom2p.tokendb.rows_to_table`. A clip without a modality (or without any valid gaze frame, or
whose modality has no tokenizer) gets ``None`` for it: a null column in the DB, never zeros.

Runner stages (:class:`egom2p.runner.Stage`, on Ray Data or in this process):

* :class:`TokenizeStage` (a pool of actors: each loads the tokenizers once, on a GPU when it holds
  one): clips-table rows (Arrow, read by Ray Data's Lance reader at the pinned version) -> token
  rows carrying their lineage (the clips table and version);
* :class:`WriteTokensStage` (tasks, ``commit_every`` rows per call): inserts the token rows into the
  DB from the worker, exactly once per clip id, one Lance version per call; returns one status row
  per clip.

:class:`TokenizeRun` drives one run (the Prefect flow :mod:`egom2p.flows.tokenize` calls its steps):
checks the inputs (fail fast) and registers the tokenizers in the DB, plans per clips table the
clips still missing from the DB (ids read once; only the fragments holding them are read),
runs the two stages, and at the end compacts the DB and updates its ``clip_id`` index.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .. import modality
from ..clip import Clip
from ..modalities import Registry
from ..runner import CPU_COLUMN, LanceSource, Resources, Runner, Stage
from ..tokenize_config import TokenizeConfig
from . import Tokenizer, TokenizerError, load_tokenizers


def _has(clip: Clip, name: str) -> bool:
    """The clip has the modality by its registry entry's presence rule (gaze: at least one valid frame)."""
    v = clip.get(name)
    return v is not None and modality.info(name).present(v)


def tokenize_clips(clips: Sequence[Clip], tokenizers: dict[str, Tokenizer], batch_size: int = 8) -> list[dict]:
    """Clips -> token rows ``{clip_id, dataset, sequence, split, tok_<m>: int64 [num_tokens] | None}``."""
    rows = [{"clip_id": c.clip_id, "dataset": c.dataset, "sequence": c.sequence, "split": c.split} for c in clips]
    for m, tok in tokenizers.items():
        groups: dict[tuple, list[int]] = defaultdict(list)  # same-shape clips are encoded together
        for i, c in enumerate(clips):
            if _has(c, m):
                groups[c.get(m).shape].append(i)
        for idxs in groups.values():
            for j in range(0, len(idxs), batch_size):
                part = idxs[j:j + batch_size]
                toks = tok.encode(np.stack([clips[i].get(m) for i in part]))
                for i, t in zip(part, toks):
                    rows[i][f"tok_{m}"] = t
    return rows


def clip_columns(modalities: Sequence[str], available: Sequence[str] | None = None) -> list[str]:
    """The clips-table columns that tokenizing ``modalities`` reads (the big payloads only when needed), of those
    ``available`` in the table (a table older than a registered modality lacks its columns)."""
    from ..clips import clips_schema, modality_columns

    drop = set(modality_columns([m for m in modality.names() if m not in modalities]))
    return [n for n in clips_schema().names if n not in drop and (available is None or n in available)]


class TokenizeStage(Stage):
    """Clips-table rows -> token rows (only the clips of ``todo``); tokenizers loaded once per actor."""

    name = "tokenize"

    def __init__(self, tokenizers_dir: str, registry: Registry, modalities: list[str], source: dict,
                 todo: frozenset[str] | None = None, device: str = "cpu", threads: int = 1, batch_size: int = 8,
                 actors: int = 1, gpus: float = 0.0):
        from ..tokendb import token_schema

        self.tokenizers_dir, self.registry, self.modalities = tokenizers_dir, registry, list(modalities)
        self.source, self.todo, self.device, self.threads, self.batch_size = source, todo, device, threads, batch_size
        self.output_schema = token_schema(registry)
        self.resources = Resources(cpus=1, gpus=gpus, actors=actors, batch_size=batch_size)
        self.tokenizers: dict[str, Tokenizer] = {}

    def setup(self) -> None:
        import torch

        if self.device == "cpu":
            torch.set_num_threads(self.threads)
        self.tokenizers = load_tokenizers(self.tokenizers_dir, registry=self.registry.config, device=self.device,
                                          modalities=self.modalities)

    def process(self, batch: pa.Table) -> pa.Table:
        from ..clips import row_to_clip
        from ..tokendb import rows_to_table

        rows = batch.to_pylist()
        if self.todo is not None:
            rows = [r for r in rows if r["clip_id"] in self.todo]
        skip = [m for m in modality.names() if m not in self.tokenizers]
        clips = [row_to_clip(r, skip=skip) for r in rows]
        return rows_to_table(tokenize_clips(clips, self.tokenizers, self.batch_size), self.registry, self.source)


WRITE_STATUS = pa.schema([("clip_id", pa.string()), ("written", pa.bool_()), ("version", pa.int64()),
                          ("worker", pa.string())])


class WriteTokensStage(Stage):
    """Insert token rows into the DB from the worker (one Lance version per call); one status row per clip."""

    name = "write-tokens"
    output_schema = WRITE_STATUS

    def __init__(self, db: str, registry: Registry, commit_every: int, options: dict | None = None):
        self.db, self.registry, self.options = db, registry, options
        # little CPU (the rows are ready); at most two commits at a time, beside actors that may hold every CPU
        self.resources = Resources(cpus=0.0, batch_size=commit_every, max_tasks=2)

    def process(self, batch: pa.Table) -> pa.Table:
        from ..runner import worker_id
        from ..tokendb import insert_tokens

        res = insert_tokens(self.db, batch, self.registry, options=self.options)
        present = set(res.present)
        ids = batch.column("clip_id").to_pylist()
        return pa.table({"clip_id": ids, "written": [i not in present for i in ids], "version": [res.version] * len(ids),
                         "worker": [worker_id()] * len(ids)}, schema=WRITE_STATUS)


@dataclass
class TableResult:
    clips: str
    clips_version: int
    total: int
    already: int
    added: int = 0
    versions: list[int] = field(default_factory=list)
    workers: dict = field(default_factory=dict)  # rows written per worker process ("<Ray node id>:<pid>")


class TokenizeRun:
    """One tokenize run: prepare (fail fast) -> per clips table: plan missing clips -> tokenize + write -> finalize."""

    def __init__(self, config: TokenizeConfig, log: Callable[[str], None] = print):
        self.config = config
        self.log = log
        self.tokenizers: dict[str, Tokenizer] = {}
        self.registry: Registry | None = None
        self.results: list[TableResult] = []
        self.runner = Runner("ray" if config.use_ray else "local", config.num_cpus)

    def load(self) -> None:
        """Load the tokenizers here (identities and registry; the actors load their own copies)."""
        cfg = self.config
        self.tokenizers = load_tokenizers(cfg.tokenizers, device="cpu", modalities=cfg.modalities)
        self.registry = next(iter(self.tokenizers.values())).registry

    def prepare(self) -> None:
        """Load the tokenizers, check every clips table and the existing DB, register the tokenizers; raise before any work."""
        from ..clips import ClipsTableError, open_clips
        from ..tables import exists
        from ..integrity import check_tokenizer_identities
        from ..tokendb import open_token_db, prepare_db

        cfg = self.config
        self.load()
        self.log(f"tokenizers ({self.registry.config} registry): " +
                 ", ".join(f"{m}={t.identity['kind']}:{t.identity['sha256'][:12]}" for m, t in self.tokenizers.items()))
        missing = [m for m in self.registry.names if m not in self.tokenizers]
        if missing:
            self.log(f"no tokenizer for {missing}: those columns stay null")
        if not cfg.clips:
            raise TokenizerError("no clips table given")
        for p in cfg.clips:
            try:
                open_clips(p, options=cfg.options(p))
            except ClipsTableError as e:
                raise ClipsTableError(f"refusing to tokenize {p}: {e}") from e
        if exists(cfg.out, cfg.options(cfg.out)):
            db = open_token_db(cfg.out, options=cfg.options(cfg.out))
            db.registry.check_compatible(self.registry, what=f"token DB {cfg.out} (tokenizers in {cfg.tokenizers})")
            # tokens of two tokenizers cannot share a column: no override, a new DB is the way
            check_tokenizer_identities(db.tokenizers, {m: t.identity for m, t in self.tokenizers.items()},
                                       recorded_in=f"token DB {cfg.out}", actual_in=cfg.tokenizers,
                                       override="a new token DB (another --out)")
        # creates the DB if needed (atomically) and registers the tokenizers (a conflict-checked commit)
        prepare_db(cfg.out, self.registry, self._identities(), cfg.options(cfg.out))

    def plan(self, clips_path: str) -> tuple[TableResult, list[str], list[int]]:
        """(result stub, clip ids of the table still missing from the DB in table order, fragments holding them)."""
        import pyarrow.compute as pc

        from ..clips import ClipsTableError, open_clips
        from ..tokendb import existing_ids

        cfg = self.config
        ds = open_clips(clips_path, options=cfg.options(clips_path))
        version = int(ds.version)
        try:
            t = ds.to_table(columns=["clip_id"], with_row_address=True)
        except (OSError, ValueError) as e:  # damaged data files (pyarrow.ArrowInvalid is a ValueError)
            raise ClipsTableError(f"{clips_path}: reading the clip ids failed, the table may be truncated or "
                                  f"corrupt ({type(e).__name__}: {str(e)[:300]})") from e
        ids = t.column("clip_id").to_pylist()
        have = existing_ids(cfg.out, cfg.options(cfg.out))
        keep = [i for i, c in enumerate(ids) if c not in have]
        if cfg.limit is not None:
            keep = keep[: cfg.limit]
        frags = pc.shift_right(t.column("_rowaddr").take(pa.array(keep, pa.int64())), 32).to_pylist() if keep else []
        todo = [ids[i] for i in keep]
        already = sum(1 for c in ids if c in have)
        return TableResult(clips_path, version, len(ids), already), todo, sorted(set(int(f) for f in frags))

    def _identities(self) -> dict:
        return {m: t.identity for m, t in self.tokenizers.items()}

    def stages(self, res: TableResult, todo: list[str]) -> list[Stage]:
        """The tokenize and write stages of one clips table (GPU actors when the cluster has GPUs)."""
        from .. import storage

        cfg = self.config
        if self.runner.use_ray:
            import ray

            self.runner.ensure_started()
            gpus, cpus = int(ray.cluster_resources().get("GPU", 0)), int(ray.cluster_resources().get("CPU", 1))
        else:
            import torch

            gpus, cpus = torch.cuda.device_count(), 1
        device = ("cuda" if gpus else "cpu") if cfg.device == "auto" else cfg.device
        gpu = device == "cuda"
        n_actors = cfg.actors or (max(1, gpus) if gpu else max(1, min(cpus, -(-len(todo) // cfg.batch_size))))
        source = {"clips": storage.display(res.clips), "clips_version": res.clips_version}
        tokenize = TokenizeStage(os.path.abspath(cfg.tokenizers), self.registry, list(self.tokenizers), source,
                                 frozenset(todo), device, 1, cfg.batch_size, n_actors, 1.0 if gpu else 0.0)
        return [tokenize, WriteTokensStage(cfg.out, self.registry, cfg.commit_every, cfg.options(cfg.out))]

    def tokenize_table(self, clips_path: str, progress: Callable[[int, int], None] | None = None) -> TableResult:
        from tqdm import tqdm

        cfg = self.config
        res, todo, frags = self.plan(clips_path)
        self.results.append(res)
        self.log(f"{clips_path} (Lance version {res.clips_version}): {res.total} clips, {res.already} already in "
                 f"{cfg.out}, {len(todo)} to tokenize")
        if not todo:
            return res
        from ..clips import open_clips

        available = open_clips(clips_path, res.clips_version, cfg.options(clips_path)).schema.names
        source = LanceSource(clips_path, res.clips_version, clip_columns(list(self.tokenizers), available), frags,
                             cfg.options(clips_path), batch_rows=cfg.batch_size)
        bar = tqdm(total=len(todo), desc=f"tokenize {os.path.basename(clips_path.rstrip('/'))}", mininterval=2.0)
        done = 0
        for batch in self.runner.run(source, self.stages(res, todo)):
            status = batch.drop_columns([CPU_COLUMN]).to_pylist()
            written = sum(r["written"] for r in status)
            res.added += written
            for r in status:
                if r["written"]:
                    res.workers[r["worker"]] = res.workers.get(r["worker"], 0) + 1
            for v in sorted({r["version"] for r in status if r["written"] and r["version"] is not None}):
                if v not in res.versions:
                    res.versions = sorted([*res.versions, v])  # commit order (workers' reports arrive in any order)
                    self.log(f"committed clips of {os.path.basename(clips_path.rstrip('/'))} as version {v} "
                             f"({res.added}/{len(todo)})")
            done += len(status)
            bar.update(len(status))
            if progress:
                progress(done, len(todo))
        bar.close()
        return res

    def finalize(self) -> int | None:
        """Compact the DB's small fragments (in Ray workers when Ray runs) and update its clip_id index."""
        from ..tables import exists
        from ..tokendb import finalize

        cfg = self.config
        if not exists(cfg.out, cfg.options(cfg.out)):
            return None
        return finalize(cfg.out, use_ray=self.runner.use_ray, options=cfg.options(cfg.out))

    def summary(self) -> dict:
        from ..tables import exists
        from ..tokendb import open_token_db

        cfg = self.config
        out = {"out": cfg.out, "tables": [r.__dict__ for r in self.results],
               "added": sum(r.added for r in self.results)}
        if exists(cfg.out, cfg.options(cfg.out)):
            db = open_token_db(cfg.out, options=cfg.options(cfg.out))
            out.update(version=db.version, rows=db.num_rows, counts=db.counts())
        return out

    def close(self) -> None:
        self.runner.close()
