"""The versioned token database: ``tokens/<name>.lance``, one row per clip, the only input of training.

Schema (:func:`token_schema`, built from a :class:`~egom2p.modalities.Registry`):

* ``clip_id``, ``dataset``, ``sequence``, ``split``: strings (clip ids are unique in a DB);
* ``tok_rgb``, ``tok_depth``, ``tok_gaze``, ``tok_cam``: ``fixed_size_list<uint16, num_tokens>``
  with the registry's token counts; **null** when the clip lacks the modality (never zeros).

Metadata (JSON under the schema-metadata key ``egom2p.tokendb``; the format string also under
``egom2p.format``)::

    {"format": "egom2p-tokens/1",
     "registry": <Registry.snapshot()>,
     "tokenizers": {modality: {"kind": ..., "sha256": ..., ...}},
     "lineage": [{"clips": <clips table path>, "clips_version": <Lance version>,
                  "rows": <rows added>, "db_version": <token DB version written>, "time": <UTC ISO>}, ...]}

Every write is one Lance commit that appends the new fragments *and* replaces the schema metadata
at once (a Lance ``Merge`` operation), so each Lance version carries its own metadata: opening an
older version (time travel, or a tag naming a release) reports that version's lineage and rows.
Clip ids already present are skipped, so re-running tokenization never duplicates rows.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import EgoM2PError
from .modalities import MODALITIES, Registry

TOKENS_FORMAT = "egom2p-tokens/1"
_META_FORMAT = b"egom2p.format"
_META_DB = b"egom2p.tokendb"
KEY_COLUMNS = ("clip_id", "dataset", "sequence", "split")
MAX_VOCAB = 65536  # tokens are stored as uint16


class TokenDBError(EgoM2PError, RuntimeError):
    """A token database cannot be read or written; the message names the path and the problem."""


def token_column(modality: str) -> str:
    return f"tok_{modality}"


def token_schema(registry: Registry, meta: dict | None = None) -> pa.Schema:
    """The Arrow schema of a token DB for ``registry`` (uint16 fixed-size lists; vocab <= 65536 checked)."""
    fields = [pa.field(k, pa.string(), nullable=False) for k in KEY_COLUMNS]
    for m in MODALITIES:
        spec = registry[m]
        if spec.vocab_size > MAX_VOCAB:
            raise TokenDBError(f"modality {m}: vocab {spec.vocab_size} does not fit uint16 tokens (max {MAX_VOCAB})")
        fields.append(pa.field(token_column(m), pa.list_(pa.uint16(), spec.num_tokens), nullable=True))
    md = {_META_FORMAT: TOKENS_FORMAT.encode()}
    if meta is not None:
        md[_META_DB] = json.dumps(meta, sort_keys=True).encode()
    return pa.schema(fields, metadata=md)


def new_meta(registry: Registry) -> dict:
    return {"format": TOKENS_FORMAT, "registry": registry.snapshot(), "tokenizers": {}, "lineage": []}


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


def rows_to_table(rows: Sequence[dict], registry: Registry) -> pa.Table:
    """Rows ``{clip_id, dataset, sequence, split, tok_<m>: int array [num_tokens] | None}`` -> Arrow table.

    Token arrays are range-checked against the registry's vocabularies; a missing ``tok_<m>`` key
    means the clip lacks the modality (null).
    """
    schema = token_schema(registry)
    cols = []
    for k in KEY_COLUMNS:
        vals = [r.get(k) for r in rows]
        if any(v is None for v in vals):
            raise TokenDBError(f"token rows need a {k!r} for every row")
        cols.append(pa.array([str(v) for v in vals], pa.string()))
    for m in MODALITIES:
        spec = registry[m]
        cols.append(_token_array([r.get(token_column(m)) for r in rows], spec.num_tokens, spec.vocab_size,
                                 token_column(m)))
    return pa.Table.from_arrays(cols, schema=schema)


# --- opening ---------------------------------------------------------------------------------------


def read_meta(schema: pa.Schema, path: str = "") -> dict:
    """The metadata dict of a token DB schema; refuses another format version with a clear message."""
    md = schema.metadata or {}
    fmt = md.get(_META_FORMAT, b"").decode()
    if fmt != TOKENS_FORMAT:
        raise TokenDBError(f"{path}: token DB format {fmt or 'missing'!r}; this code reads {TOKENS_FORMAT!r} "
                           "(re-tokenize the clips with this version, or use the egom2p release that wrote it)")
    try:
        return json.loads(md[_META_DB])
    except (KeyError, ValueError) as e:
        raise TokenDBError(f"{path}: token DB metadata missing or unreadable ({e})") from e


def _lance_open(path, version=None):
    import lance

    path = os.fspath(path)
    if not os.path.exists(path):
        raise TokenDBError(f"{path}: token DB not found")
    try:
        return lance.dataset(path, version=version)
    except Exception as e:
        what = f" at version {version!r}" if version is not None else ""
        raise TokenDBError(f"{path}: cannot open the token DB{what} ({type(e).__name__}: {str(e)[:300]})") from e


@dataclass
class TokenDB:
    """A token DB opened at one Lance version."""

    path: str
    lance: object  # lance.LanceDataset at that version
    registry: Registry
    meta: dict

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
        return self.meta.get("lineage", [])

    def clip_ids(self) -> list[str]:
        try:
            return self.lance.to_table(columns=["clip_id"]).column("clip_id").to_pylist()
        except (OSError, ValueError) as e:  # damaged data files (pyarrow.ArrowInvalid is a ValueError)
            raise TokenDBError(f"{self.path}: reading the clip ids failed, the DB may be truncated or corrupt "
                               f"({type(e).__name__}: {str(e)[:300]})") from e

    def index(self) -> pa.Table:
        """Key columns plus ``has_<m>`` flags of every row (no token lists read)."""
        t = self.lance.to_table(columns=list(KEY_COLUMNS))
        flags = self.lance.to_table(columns={f"has_{m}": f"{token_column(m)} IS NOT NULL" for m in MODALITIES})
        for name in flags.column_names:
            t = t.append_column(name, flags.column(name))
        return t

    def counts(self) -> dict[str, dict[str, int]]:
        """{dataset: {modality: clips having it}} (every modality listed, 0 where absent)."""
        idx = self.index().to_pydict()
        out: dict[str, dict[str, int]] = {}
        for i, ds in enumerate(idx["dataset"]):
            c = out.setdefault(ds, {m: 0 for m in MODALITIES})
            for m in MODALITIES:
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


def open_token_db(path, version: int | str | None = None) -> TokenDB:
    """Open ``path`` at ``version`` (None = latest, an int, or a tag name); checks format and registry."""
    path = os.fspath(path)
    ds = _lance_open(path, version)
    meta = read_meta(ds.schema, path)
    try:
        registry = Registry.from_snapshot(meta["registry"])
    except Exception as e:
        raise TokenDBError(f"{path}: token DB registry snapshot unreadable ({e})") from e
    missing = [n for n in token_schema(registry).names if n not in ds.schema.names]
    if missing:
        raise TokenDBError(f"{path}: token DB lacks columns {missing}")
    return TokenDB(path=path, lance=ds, registry=registry, meta=meta)


def existing_ids(path) -> set[str]:
    """Clip ids already in the DB at ``path`` (empty if it does not exist yet)."""
    if not os.path.exists(os.fspath(path)):
        return set()
    return set(open_token_db(path).clip_ids())


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


def write_tokens(path, rows: Sequence[dict] | pa.Table, *, registry: Registry, tokenizers: dict | None = None,
                 lineage: Iterable[dict] = (), commit_message: str | None = None) -> int | None:
    """Append token rows as one new Lance version (creating the DB if needed).

    ``rows``: dicts for :func:`rows_to_table` or an Arrow table of :func:`token_schema`.
    ``tokenizers``: {modality: identity} of the tokenizers that made the rows (checked against the DB:
    another checkpoint sha256 for a modality is refused). ``lineage``: entries ``{"clips": path,
    "clips_version": int, ...}`` added to the lineage of the new version. Rows whose clip id is
    already in the DB are skipped. Returns the new version, or None when nothing was new.
    """
    import lance

    path = os.fspath(path)
    table = rows if isinstance(rows, pa.Table) else rows_to_table(list(rows), registry)
    try:
        table = table.select(token_schema(registry).names).cast(token_schema(registry))
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as e:
        raise TokenDBError(f"{path}: rows do not match the token schema of registry {registry.config!r}: {e}") from e
    ids = table.column("clip_id").to_pylist()
    if len(set(ids)) != len(ids):
        keep, seen = [], set()
        for i, c in enumerate(ids):
            if c not in seen:
                seen.add(c)
                keep.append(i)
        table = table.take(pa.array(keep, pa.int64()))
    exists = os.path.exists(path)
    if exists:
        db = open_token_db(path)
        db.registry.check_compatible(registry, what=f"token DB {path}")
        have = set(db.clip_ids())
        if have:
            fresh = [i for i, c in enumerate(table.column("clip_id").to_pylist()) if c not in have]
            table = table.take(pa.array(fresh, pa.int64()))
        meta = dict(db.meta)
        read_version = db.version
    else:
        meta = new_meta(registry)
        read_version = 0
    if table.num_rows == 0:
        return None
    meta["tokenizers"] = _merge_tokenizers(path, meta.get("tokenizers", {}), tokenizers or {})
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    new_version = read_version + 1 if exists else 1
    meta["lineage"] = list(meta.get("lineage", [])) + [
        {**dict(e), "rows": int(e.get("rows", table.num_rows)), "db_version": new_version, "time": now} for e in lineage
    ]
    schema = token_schema(registry, meta)
    table = table.cast(schema)
    if not exists:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        ds = lance.write_dataset(table, path, schema=schema, mode="create", commit_message=commit_message)
        return int(ds.version)
    # One commit: new fragments + new schema metadata (Lance Merge keeps existing fragments as they are).
    from lance.fragment import write_fragments

    frags = write_fragments(table, path, schema=schema)
    old = [f.metadata for f in db.lance.get_fragments()]
    next_id = max((f.id for f in old), default=-1) + 1
    for i, f in enumerate(frags):
        f.id = next_id + i
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        op = lance.LanceOperation.Merge(old + list(frags), db.lance.schema.with_metadata(schema.metadata))
    try:
        ds = lance.LanceDataset.commit(path, op, read_version=read_version, commit_message=commit_message)
    except Exception as e:
        raise TokenDBError(f"{path}: committing new token rows failed (another writer may have committed "
                           f"since version {read_version}; re-run to retry) ({type(e).__name__}: {str(e)[:300]})") from e
    return int(ds.version)


# --- tags ------------------------------------------------------------------------------------------


def tag(path, name: str, version: int | None = None) -> int:
    """Name a release: Lance tag ``name`` -> ``version`` (default latest). Returns the tagged version."""
    db = open_token_db(path)
    v = db.version if version is None else int(version)
    if v not in {int(x["version"]) for x in db.versions()}:
        raise TokenDBError(f"{db.path}: no version {v} (versions: {[int(x['version']) for x in db.versions()]})")
    tags = db.lance.tags
    if name in tags.list():
        raise TokenDBError(f"{db.path}: tag {name!r} already names version {tags.list()[name]['version']}")
    tags.create(name, v)
    return v
