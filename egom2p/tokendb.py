"""The versioned token database: ``tokens/<name>.lance``, one row per clip, the only input of training.

Schema (:func:`token_schema`, built from a :class:`~egom2p.modalities.Registry`):

* ``clip_id``, ``dataset``, ``sequence``, ``split``: strings (clip ids are unique in a DB; ``clip_id``
  is the table's primary key);
* ``tok_rgb``, ``tok_depth``, ``tok_gaze``, ``tok_cam``: ``fixed_size_list<uint16, num_tokens>``
  with the registry's token counts; **null** when the clip lacks the modality (never zeros);
* ``src_clips``, ``src_clips_version``: the clips table (path or URI) and its Lance version that
  the row was tokenized from: the row's lineage, written in the same commit as the row.

Metadata (schema metadata, JSON): ``egom2p.format`` (the format string), ``egom2p.tokendb``
(``{"format", "registry": <Registry.snapshot()>}``, fixed when the DB is created) and
``egom2p.tokenizers`` (``{modality: {"kind", "sha256", ...}}``: the one tokenizer checkpoint per
modality whose tokens the DB holds; registered before rows of that modality are written, in a
conflict-checked metadata commit, so two writers with different checkpoints cannot both register).

Lineage (:attr:`TokenDB.lineage`) is derived from the rows: one entry per (clips table, clips
version, DB version that added the rows), ``{"clips", "clips_version", "rows", "db_version",
"time"}``, using Lance's per-row creation version (the DB uses stable row ids, so compaction keeps
it). It therefore always describes exactly the rows present, also at an older version (time travel,
tags naming releases), and cannot claim rows that a crash or a concurrent writer lost.

Writes go through :mod:`egom2p.tables`: atomic creation, exactly-once inserts by ``clip_id`` from
the process holding the rows (Ray workers in ``egom2p tokenize``), a BTREE index on ``clip_id``,
compaction at the end of a run. Every commit is a Lance version; paths may be object-store URIs.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import tables
from .errors import EgoM2PError
from .modalities import Registry

TOKENS_FORMAT = "egom2p-tokens/2"
_META_FORMAT = b"egom2p.format"
_META_DB = b"egom2p.tokendb"
_META_TOKENIZERS = "egom2p.tokenizers"
KEY_COLUMNS = ("clip_id", "dataset", "sequence", "split")
SOURCE_COLUMNS = ("src_clips", "src_clips_version")
MAX_VOCAB = 65536  # tokens are stored as uint16


class TokenDBError(EgoM2PError, RuntimeError):
    """A token database cannot be read or written; the message names the path and the problem."""


def token_column(modality: str) -> str:
    return f"tok_{modality}"


def token_schema(registry: Registry, meta: dict | None = None, tokenizers: dict | None = None) -> pa.Schema:
    """The Arrow schema of a token DB for ``registry`` (uint16 fixed-size lists; vocab <= 65536 checked)."""
    fields = [pa.field(k, pa.string(), nullable=False) for k in KEY_COLUMNS]
    for m in registry.names:
        spec = registry[m]
        if spec.vocab_size > MAX_VOCAB:
            raise TokenDBError(f"modality {m}: vocab {spec.vocab_size} does not fit uint16 tokens (max {MAX_VOCAB})")
        fields.append(pa.field(token_column(m), pa.list_(pa.uint16(), spec.num_tokens), nullable=True))
    fields += [pa.field("src_clips", pa.string()), pa.field("src_clips_version", pa.int64())]
    md = {_META_FORMAT: TOKENS_FORMAT.encode()}
    if meta is not None:
        md[_META_DB] = json.dumps({"format": meta["format"], "registry": meta["registry"]}, sort_keys=True).encode()
    if tokenizers is not None:
        md[_META_TOKENIZERS.encode()] = json.dumps(tokenizers, sort_keys=True).encode()
    return tables.keyed_schema(pa.schema(fields, metadata=md))


def new_meta(registry: Registry) -> dict:
    return {"format": TOKENS_FORMAT, "registry": registry.snapshot(), "tokenizers": {}}


# --- rows -> Arrow -----------------------------------------------------------------------------------


def _token_array(values: Sequence, n_tokens: int, vocab: int, name: str) -> pa.FixedSizeListArray:
    """[rows] of (int array [n_tokens] | None) -> fixed_size_list<uint16> with nulls where None."""
    mask = np.array([v is None for v in values], dtype=bool)
    flat = np.zeros((len(values), n_tokens), dtype=np.uint16)
    for i, v in enumerate(values):
        if v is None:
            continue
        a = np.asarray(v).reshape(-1)
        if a.shape[0] != n_tokens:
            raise TokenDBError(f"{name}: row {i} has {a.shape[0]} tokens, the registry says {n_tokens}")
        if a.size and (a.min() < 0 or a.max() >= vocab):
            raise TokenDBError(f"{name}: row {i} has token ids outside [0, {vocab}) ({a.min()}..{a.max()})")
        flat[i] = a
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), pa.uint16()), n_tokens,
                                             mask=pa.array(mask) if mask.any() else None)


def rows_to_table(rows: Sequence[dict], registry: Registry, source: dict | None = None) -> pa.Table:
    """Rows ``{clip_id, dataset, sequence, split, tok_<m>: int array [num_tokens] | None}`` -> Arrow table.

    Token arrays are range-checked against the registry's vocabularies; a missing ``tok_<m>`` key
    means the clip lacks the modality (null). ``source`` (``{"clips", "clips_version"}``) fills the
    lineage columns of rows that do not carry their own ``src_clips``/``src_clips_version``.
    """
    schema = token_schema(registry)
    cols = []
    for k in KEY_COLUMNS:
        vals = [r.get(k) for r in rows]
        if any(v is None for v in vals):
            raise TokenDBError(f"token rows need a {k!r} for every row")
        cols.append(pa.array([str(v) for v in vals], pa.string()))
    for m in registry.names:
        spec = registry[m]
        cols.append(_token_array([r.get(token_column(m)) for r in rows], spec.num_tokens, spec.vocab_size,
                                 token_column(m)))
    src = source or {}
    cols.append(pa.array([r.get("src_clips", src.get("clips")) for r in rows], pa.string()))
    cols.append(pa.array([r.get("src_clips_version", src.get("clips_version")) for r in rows], pa.int64()))
    return pa.Table.from_arrays(cols, schema=schema)


def _conform(table: pa.Table, registry: Registry, source: dict | None, path: str) -> pa.Table:
    """An Arrow table of token rows -> exactly :func:`token_schema` (lineage columns filled from ``source``)."""
    src = source or {}
    for name, value, typ in (("src_clips", src.get("clips"), pa.string()),
                             ("src_clips_version", src.get("clips_version"), pa.int64())):
        if name not in table.column_names:
            table = table.append_column(name, pa.array([value] * table.num_rows, typ))
    schema = token_schema(registry)
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as e:
        raise TokenDBError(f"{path}: rows do not match the token schema of registry {registry.config!r}: {e}") from e


# --- opening ---------------------------------------------------------------------------------------


def read_meta(schema: pa.Schema, path: str = "") -> dict:
    """The metadata of a token DB schema (format, registry, tokenizers); refuses another format version."""
    md = schema.metadata or {}
    fmt = md.get(_META_FORMAT, b"").decode()
    if fmt != TOKENS_FORMAT:
        raise TokenDBError(f"{path}: token DB format {fmt or 'missing'!r}; this code reads {TOKENS_FORMAT!r} "
                           "(re-tokenize the clips with this version, or use the egom2p release that wrote it)")
    try:
        meta = json.loads(md[_META_DB])
        meta["tokenizers"] = json.loads(md.get(_META_TOKENIZERS.encode(), b"{}"))
    except (KeyError, ValueError) as e:
        raise TokenDBError(f"{path}: token DB metadata missing or unreadable ({e})") from e
    return meta


@dataclass
class TokenDB:
    """A token DB opened at one Lance version."""

    path: str
    lance: object  # lance.LanceDataset at that version
    registry: Registry
    meta: dict  # {"format", "registry", "tokenizers"}
    _lineage: list | None = field(default=None, repr=False)

    @property
    def version(self) -> int:
        return int(self.lance.version)

    @property
    def num_rows(self) -> int:
        return int(self.lance.count_rows())

    @property
    def format(self) -> str:
        return self.meta["format"]

    @property
    def tokenizers(self) -> dict:
        return self.meta.get("tokenizers", {})

    @property
    def lineage(self) -> list[dict]:
        """Which clips table (path, Lance version) each group of rows came from, and the DB version that added them."""
        if self._lineage is None:
            t = self.lance.to_table(columns=["src_clips", "src_clips_version", "_row_created_at_version"])
            t = t.filter(pc.is_valid(t.column("src_clips")))
            groups = t.group_by(["src_clips", "src_clips_version", "_row_created_at_version"]).aggregate(
                [("src_clips", "count")]).to_pylist()
            times = {int(v["version"]): v["timestamp"] for v in self.lance.versions()}
            out = []
            for g in sorted(groups, key=lambda g: (g["_row_created_at_version"], g["src_clips"], g["src_clips_version"] or 0)):
                v = int(g["_row_created_at_version"])
                ts = times.get(v)
                entry = {"clips": g["src_clips"], "clips_version": g["src_clips_version"], "rows": int(g["src_clips_count"]),
                         "db_version": v, "time": ts.replace(tzinfo=_dt.timezone.utc).isoformat(timespec="seconds")
                         if ts is not None else None}
                shard = _wds_shard(g["src_clips"])
                if shard is not None:  # rows imported from the release's shards: one entry per import and version
                    entry["clips"] = f"{shard.pop('root')} (official EgoM2P WebDataset shards)"
                    prev = out[-1] if out else None
                    if prev and prev.get("shards") is not None and (prev["clips"], prev["db_version"]) == (entry["clips"], v):
                        prev["shards"].append(shard)
                        prev["rows"] += entry["rows"]
                        continue
                    entry["shards"] = [shard]
                out.append(entry)
            self._lineage = out
        return self._lineage

    def clip_ids(self) -> list[str]:
        try:
            return self.lance.to_table(columns=["clip_id"]).column("clip_id").to_pylist()
        except (OSError, ValueError) as e:  # damaged data files (pyarrow.ArrowInvalid is a ValueError)
            raise TokenDBError(f"{self.path}: reading the clip ids failed, the DB may be truncated or corrupt "
                               f"({type(e).__name__}: {str(e)[:300]})") from e

    def index(self) -> pa.Table:
        """Key columns plus ``has_<m>`` flags of every row (no token lists read)."""
        t = self.lance.to_table(columns=list(KEY_COLUMNS))
        flags = self.lance.to_table(columns={f"has_{m}": f"{token_column(m)} IS NOT NULL" for m in self.registry.names})
        for name in flags.column_names:
            t = t.append_column(name, flags.column(name))
        return t

    def counts(self) -> dict[str, dict[str, int]]:
        """{dataset: {modality: clips having it}} (every modality listed, 0 where absent)."""
        idx = self.index().to_pydict()
        out: dict[str, dict[str, int]] = {}
        for i, ds in enumerate(idx["dataset"]):
            c = out.setdefault(ds, {m: 0 for m in self.registry.names})
            for m in self.registry.names:
                c[m] += bool(idx[f"has_{m}"][i])
        return dict(sorted(out.items()))

    def take(self, indices, columns: Sequence[str] | None = None, batch_size: int = 1024) -> pa.Table:
        """Rows at ``indices`` (any order) as one Arrow table, read with batched Lance takes."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_rows):
            raise IndexError(f"{self.path}: row index out of range [0, {self.num_rows})")
        cols = list(columns) if columns is not None else None
        parts = [self.lance.take(idx[i:i + batch_size].tolist(), columns=cols) for i in range(0, idx.size, batch_size)]
        if not parts:
            return self.lance.schema.empty_table().select(cols) if cols else self.lance.schema.empty_table()
        return pa.concat_tables(parts)

    def tokens(self, indices, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """(int64 [n, num_tokens] with 0 where missing, bool [n] present) for one modality."""
        col = token_column(modality)
        n_tok = self.registry[modality].num_tokens
        arr = self.take(indices, [col]).column(col).combine_chunks()
        present = ~np.asarray(arr.is_null())
        out = np.zeros((len(arr), n_tok), dtype=np.int64)
        if present.any():
            vals = arr.filter(pa.array(present)).flatten().to_numpy(zero_copy_only=False)
            out[present] = vals.reshape(-1, n_tok)
        return out, present

    def versions(self) -> list[dict]:
        return self.lance.versions()

    def tags(self) -> dict[str, int]:
        """{tag: version} of the whole DB (tags are not versioned)."""
        return {name: int(info["version"]) for name, info in sorted(self.lance.tags.list().items())}


def open_token_db(path, version: int | str | None = None, options: dict | None = None) -> TokenDB:
    """Open ``path`` at ``version`` (None = latest, an int, or a tag name); checks format and registry."""
    path = os.fspath(path)
    ds = tables.open_as(TokenDBError, "token DB", path, version, options)
    meta = read_meta(ds.schema, path)
    try:
        registry = Registry.from_snapshot(meta["registry"])
    except Exception as e:
        raise TokenDBError(f"{path}: token DB registry snapshot unreadable ({e})") from e
    missing = [n for n in token_schema(registry).names if n not in ds.schema.names]
    if missing:
        raise TokenDBError(f"{path}: token DB lacks columns {missing}")
    return TokenDB(path=path, lance=ds, registry=registry, meta=meta)


def existing_ids(path, options: dict | None = None) -> set[str]:
    """Clip ids already in the DB at ``path`` (empty if it does not exist yet); read once when planning a run."""
    if not tables.exists(path, options):
        return set()
    open_token_db(path, options=options)
    try:
        return set(tables.read_keys(path, options=options))
    except tables.TableError as e:
        raise TokenDBError(str(e)) from e


# --- writing ---------------------------------------------------------------------------------------


def _merge_tokenizers(path: str, have: dict, new: dict) -> dict:
    out = dict(have)
    for m, ident in (new or {}).items():
        old = have.get(m)
        if old is not None and old.get("sha256") != ident.get("sha256"):
            raise TokenDBError(
                f"{path}: modality {m} was tokenized with {old.get('kind')} sha256 {str(old.get('sha256'))[:12]}..., "
                f"now with {ident.get('kind')} sha256 {str(ident.get('sha256'))[:12]}...; tokens of different tokenizers "
                "cannot share a DB (write a new DB)")
        out[m] = dict(ident)
    return out


def prepare_db(path, registry: Registry, tokenizers: dict | None = None, options: dict | None = None,
               attempts: int = 8) -> TokenDB:
    """Create the DB if needed (atomically) and register ``tokenizers``; the step before rows are inserted.

    A DB of another registry, or a modality already tokenized with another checkpoint, is refused.
    Registering is a metadata commit that Lance refuses when a concurrent writer registered the
    same key first; it is then re-read and re-checked, so exactly one checkpoint per modality wins.
    """
    path = os.fspath(path)
    try:
        tables.create(path, token_schema(registry, new_meta(registry), _merge_tokenizers(path, {}, tokenizers or {})),
                      stable_row_ids=True, options=options)
    except tables.TableError as e:
        raise TokenDBError(str(e)) from e
    for attempt in range(attempts):
        db = open_token_db(path, options=options)
        db.registry.check_compatible(registry, what=f"token DB {path}")
        merged = json.loads(json.dumps(_merge_tokenizers(path, db.tokenizers, tokenizers or {}), sort_keys=True))
        if merged == db.tokenizers:  # (compared as stored: JSON turns tuples into lists)
            return db
        try:
            db.lance.update_schema_metadata({_META_TOKENIZERS: json.dumps(merged, sort_keys=True)})
        except Exception as e:
            if tables.is_conflict(e) and attempt < attempts - 1:
                continue  # another writer registered first: re-read and re-check
            raise TokenDBError(f"{path}: registering the tokenizers failed ({type(e).__name__}: {str(e)[:300]})") from e
    raise TokenDBError(f"{path}: other writers kept changing the tokenizer registry; re-run to retry")


WDS_SOURCE = "egom2p-wds"


def wds_source(root, shard: dict) -> str:
    """The lineage value (``src_clips``) of rows imported from one shard of the official release: JSON
    naming the shard root, dataset, shard and each modality tar's path and sha256."""
    return json.dumps({"source": WDS_SOURCE, "root": os.fspath(root), **shard}, sort_keys=True)


def _wds_shard(src: str | None) -> dict | None:
    if not src or not src.startswith("{"):
        return None
    try:
        d = json.loads(src)
    except ValueError:
        return None
    if d.pop("source", None) != WDS_SOURCE:
        return None
    return d


def insert_tokens(path, table: pa.Table, registry: Registry, source: dict | None = None,
                  options: dict | None = None) -> tables.Inserted:
    """Insert token rows whose clip id the DB lacks (the DB exists: :func:`prepare_db`); exactly once per clip id.

    Runs in the process that holds the rows (a Ray worker in ``egom2p tokenize``).
    """
    path = os.fspath(path)
    try:
        return tables.insert_new(path, _conform(table, registry, source, path), options=options)
    except tables.TableError as e:
        raise TokenDBError(str(e)) from e


def write_tokens(path, rows: Sequence[dict] | pa.Table, *, registry: Registry, tokenizers: dict | None = None,
                 lineage: Iterable[dict] = (), commit_message: str | None = None,
                 options: dict | None = None) -> int | None:
    """Insert token rows as one new Lance version (creating the DB if needed).

    ``rows``: dicts for :func:`rows_to_table` or an Arrow table of :func:`token_schema`.
    ``tokenizers``: {modality: identity} of the tokenizers that made the rows (checked against the DB:
    another checkpoint sha256 for a modality is refused). ``lineage``: at most one entry
    ``{"clips": path, "clips_version": int}``, the clips table the rows came from (written into the
    rows' lineage columns; rows may also carry their own ``src_clips``/``src_clips_version``).
    Rows whose clip id is already in the DB are skipped; concurrent writers never duplicate a row.
    Returns the version holding the new rows, or None when nothing was new. ``commit_message`` is
    accepted for compatibility and not stored (rows are committed by Lance's merge-insert).
    """
    path = os.fspath(path)
    entries = list(lineage)
    if len(entries) > 1:
        raise TokenDBError(f"{path}: one write holds rows of one clips table; got {len(entries)} lineage entries")
    source = None
    if entries:
        v = entries[0].get("clips_version")
        source = {"clips": entries[0]["clips"], "clips_version": None if v is None else int(v)}
    table = rows if isinstance(rows, pa.Table) else rows_to_table(list(rows), registry, source)
    table = _conform(table, registry, source, path)
    idents = _merge_tokenizers(path, {}, tokenizers or {})
    if not tables.exists(path, options):
        try:
            if tables.create(path, token_schema(registry, new_meta(registry), idents), table, stable_row_ids=True,
                             options=options):
                return 1
        except tables.TableError as e:
            raise TokenDBError(str(e)) from e
    prepare_db(path, registry, idents, options)
    res = insert_tokens(path, table, registry, options=options)
    return res.version if res.rows else None


def finalize(path, use_ray: bool = False, options: dict | None = None) -> int:
    """End of a run: compact small fragments, update the ``clip_id`` index. Returns the DB version."""
    try:
        return tables.maintain(path, target_rows_per_fragment=16384, use_ray=use_ray, options=options)
    except tables.TableError as e:
        raise TokenDBError(str(e)) from e


# --- tags ------------------------------------------------------------------------------------------


def tag(path, name: str, version: int | None = None, options: dict | None = None) -> int:
    """Name a release: Lance tag ``name`` -> ``version`` (default latest). Returns the tagged version."""
    db = open_token_db(path, options=options)
    v = db.version if version is None else int(version)
    if v not in {int(x["version"]) for x in db.versions()}:
        raise TokenDBError(f"{db.path}: no version {v} (versions: {[int(x['version']) for x in db.versions()]})")
    tags = db.lance.tags
    if name in tags.list():
        raise TokenDBError(f"{db.path}: tag {name!r} already names version {tags.list()[name]['version']}")
    tags.create(name, v)
    return v
