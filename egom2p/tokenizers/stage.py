"""The tokenize stage: standard clips -> token DB rows (a pure function), and its Ray Data actor.

:func:`tokenize_clips` is the pure stage: clips + tokenizers -> rows for
:func:`egom2p.tokendb.rows_to_table`. A clip without a modality (or without any valid gaze frame, or
whose modality has no tokenizer) gets ``None`` for it: a null column in the DB, never zeros.

:class:`TokenizeActor` is the thin Ray wrapper: a callable class for ``Dataset.map_batches`` that
loads the tokenizers once per actor (on the GPU when the actor holds one), reads its batch of clip
ids from the clips table at a fixed Lance version and returns an Arrow table of token rows.

:class:`TokenizeRun` drives one run (used by the Prefect flow ``flows/tokenize.py``): checks the
inputs (fail fast), finds the clips still missing from the DB (resumable), streams token rows from
Ray and commits them to the token DB in chunks, each commit a Lance version with lineage.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..clip import Clip
from ..modalities import MODALITIES, Registry
from . import Tokenizer, TokenizerError, load_tokenizers


def _has(clip: Clip, modality: str) -> bool:
    v = getattr(clip, modality)
    if v is None:
        return False
    if modality == "gaze":
        return bool(np.isfinite(v).all(-1).any())  # no valid frame -> missing, not a made-up trajectory
    return True


def tokenize_clips(clips: Sequence[Clip], tokenizers: dict[str, Tokenizer], batch_size: int = 8) -> list[dict]:
    """Clips -> token rows ``{clip_id, dataset, sequence, split, tok_<m>: int64 [num_tokens] | None}``."""
    rows = [{"clip_id": c.clip_id, "dataset": c.dataset, "sequence": c.sequence, "split": c.split} for c in clips]
    for m, tok in tokenizers.items():
        groups: dict[tuple, list[int]] = defaultdict(list)  # same-shape clips are encoded together
        for i, c in enumerate(clips):
            if _has(c, m):
                groups[getattr(c, m).shape].append(i)
        for idxs in groups.values():
            for j in range(0, len(idxs), batch_size):
                part = idxs[j:j + batch_size]
                toks = tok.encode(np.stack([getattr(clips[i], m) for i in part]))
                for i, t in zip(part, toks):
                    rows[i][f"tok_{m}"] = t
    return rows


class TokenizeActor:
    """Ray Data ``map_batches`` callable: a batch of clip ids -> an Arrow table of token rows."""

    def __init__(self, tokenizers_dir: str, registry: str, clips_path: str, clips_version: int,
                 device: str = "cpu", threads: int = 1, modalities: list[str] | None = None):
        import torch

        if device == "cpu":
            torch.set_num_threads(threads)
        self.tokenizers = load_tokenizers(tokenizers_dir, registry=registry, device=device, modalities=modalities)
        self.registry = next(iter(self.tokenizers.values())).registry
        self.clips_path, self.clips_version = clips_path, clips_version

    def __call__(self, batch: pa.Table) -> pa.Table:
        from ..clips import read_clips
        from ..tokendb import rows_to_table

        ids = batch.column("clip_id").to_pylist()
        clips = list(read_clips(self.clips_path, ids=ids, version=self.clips_version))
        return rows_to_table(tokenize_clips(clips, self.tokenizers), self.registry)


@dataclass
class TokenizeConfig:
    clips: list[str]  # clips tables (DIR/<dataset>.lance)
    tokenizers: str  # directory with rgb/ depth/ gaze/ cam/ checkpoints
    out: str  # tokens/<name>.lance
    modalities: list[str] | None = None  # default: every tokenizer found
    batch_size: int = 8  # clips per actor call
    commit_every: int = 256  # clips per Lance commit (one version each)
    limit: int | None = None  # at most this many new clips per clips table
    device: str = "auto"  # auto: GPU actors when a GPU is present
    actors: int | None = None  # default: CPUs (CPU) or GPUs (GPU)
    num_cpus: int | None = None  # for a local Ray
    use_ray: bool = True


@dataclass
class TableResult:
    clips: str
    clips_version: int
    total: int
    already: int
    added: int = 0
    versions: list[int] = field(default_factory=list)


class TokenizeRun:
    """One tokenize run: prepare (fail fast) -> per clips table: plan missing clips -> tokenize -> commit."""

    def __init__(self, config: TokenizeConfig, log: Callable[[str], None] = print):
        self.config = config
        self.log = log
        self.tokenizers: dict[str, Tokenizer] = {}
        self.registry: Registry | None = None
        self.results: list[TableResult] = []
        self._started_ray = False

    def prepare(self) -> None:
        """Load the tokenizers, check every clips table and the existing DB; raise before any work."""
        from ..clips import ClipsTableError, _open
        from ..integrity import check_tokenizer_identities
        from ..tokendb import open_token_db

        cfg = self.config
        self.tokenizers = load_tokenizers(cfg.tokenizers, device="cpu", modalities=cfg.modalities)
        self.registry = next(iter(self.tokenizers.values())).registry
        self.log(f"tokenizers ({self.registry.config} registry): " +
                 ", ".join(f"{m}={t.identity['kind']}:{t.identity['sha256'][:12]}" for m, t in self.tokenizers.items()))
        missing = [m for m in MODALITIES if m not in self.tokenizers]
        if missing:
            self.log(f"no tokenizer for {missing}: those columns stay null")
        if not cfg.clips:
            raise TokenizerError("no clips table given")
        for p in cfg.clips:
            try:
                _open(p)
            except ClipsTableError as e:
                raise ClipsTableError(f"refusing to tokenize {p}: {e}") from e
        if os.path.exists(cfg.out):
            db = open_token_db(cfg.out)
            db.registry.check_compatible(self.registry, what=f"token DB {cfg.out} (tokenizers in {cfg.tokenizers})")
            # tokens of two tokenizers cannot share a column: no override, a new DB is the way
            check_tokenizer_identities(db.tokenizers, {m: t.identity for m, t in self.tokenizers.items()},
                                       recorded_in=f"token DB {cfg.out}", actual_in=cfg.tokenizers,
                                       override="a new token DB (another --out)")

    def plan(self, clips_path: str) -> tuple[TableResult, list[str]]:
        """(result stub, clip ids of the table still missing from the DB, in table order)."""
        import lance

        from ..clips import clips_index
        from ..tokendb import existing_ids

        version = int(lance.dataset(clips_path).version)
        ids = clips_index(clips_path, version=version).column("clip_id").to_pylist()
        have = existing_ids(self.config.out)
        todo = [i for i in ids if i not in have]
        if self.config.limit is not None:
            todo = todo[: self.config.limit]
        return TableResult(clips_path, version, len(ids), len(ids) - len([i for i in ids if i not in have])), todo

    def _identities(self) -> dict:
        return {m: t.identity for m, t in self.tokenizers.items()}

    def _lineage_path(self, p: str) -> str:
        return p if "://" in p else os.path.abspath(p)

    def _stream(self, res: TableResult, todo: list[str]):
        """Yield Arrow tables of token rows for ``todo`` (Ray Data actors, or in-process)."""
        cfg = self.config
        import torch

        device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        kwargs = dict(tokenizers_dir=os.path.abspath(cfg.tokenizers), registry=self.registry.config,
                      clips_path=res.clips, clips_version=res.clips_version, device=device,
                      modalities=list(self.tokenizers))
        if not cfg.use_ray:
            actor = TokenizeActor(**kwargs)
            for i in range(0, len(todo), cfg.batch_size):
                yield actor(pa.table({"clip_id": todo[i:i + cfg.batch_size]}))
            return
        import ray

        from ..curate.ray_ops import ensure_ray

        self._started_ray = ensure_ray(cfg.num_cpus) or self._started_ray
        ds = ray.data.from_items([{"clip_id": i} for i in todo])
        gpu = device == "cuda"
        n_actors = cfg.actors or (max(1, int(ray.cluster_resources().get("GPU", 1))) if gpu else
                                  max(1, min(int(ray.cluster_resources().get("CPU", 1)), -(-len(todo) // cfg.batch_size))))
        ds = ds.map_batches(TokenizeActor, fn_constructor_kwargs=kwargs, batch_size=cfg.batch_size,
                            batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=n_actors),
                            num_gpus=1 if gpu else 0,
                            num_cpus=0 if gpu else 1)
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield batch

    def tokenize_table(self, clips_path: str, progress: Callable[[int, int], None] | None = None) -> TableResult:
        from tqdm import tqdm

        from ..tokendb import write_tokens

        res, todo = self.plan(clips_path)
        self.results.append(res)
        self.log(f"{clips_path} (Lance version {res.clips_version}): {res.total} clips, {res.already} already in "
                 f"{self.config.out}, {len(todo)} to tokenize")
        if not todo:
            return res
        pending: list[pa.Table] = []
        n_pending = 0
        bar = tqdm(total=len(todo), desc=f"tokenize {os.path.basename(clips_path)}", mininterval=2.0)

        def commit():
            nonlocal pending, n_pending
            if not pending:
                return
            table = pa.concat_tables(pending)
            v = write_tokens(self.config.out, table, registry=self.registry, tokenizers=self._identities(),
                             lineage=[{"clips": self._lineage_path(clips_path), "clips_version": res.clips_version}],
                             commit_message=f"tokenize {clips_path}@{res.clips_version}")
            if v is not None:
                res.versions.append(v)
                res.added += table.num_rows
                self.log(f"committed {table.num_rows} clips of {os.path.basename(clips_path)} as version {v} "
                         f"({res.added}/{len(todo)})")
            pending, n_pending = [], 0

        for t in self._stream(res, todo):
            pending.append(t)
            n_pending += t.num_rows
            bar.update(t.num_rows)
            if progress:
                progress(res.added + n_pending, len(todo))
            if n_pending >= self.config.commit_every:
                commit()
        commit()
        bar.close()
        return res

    def summary(self) -> dict:
        from ..tokendb import open_token_db

        out = {"out": self.config.out, "tables": [r.__dict__ for r in self.results],
               "added": sum(r.added for r in self.results)}
        if os.path.exists(self.config.out):
            db = open_token_db(self.config.out)
            out.update(version=db.version, rows=db.num_rows, counts=db.counts())
        return out

    def close(self) -> None:
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False
