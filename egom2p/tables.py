"""Lance tables keyed by ``clip_id`` (clips tables and token DBs): creation, exactly-once inserts, maintenance.

This is the only way rows enter those tables. The protocol, and why:

* **Creation is atomic.** A new table is committed by a deep clone of an in-memory template
  (Lance's ``Clone`` operation fails when the target has any version), never by checking for the
  table and then writing it. Two processes creating the same table at the same instant: one
  creates it, the other finds it created and inserts into it; neither overwrites the other.
  (``lance.write_dataset(mode="create")`` checks and then commits an ``Overwrite``, which Lance
  rebases over a concurrent creation: measured here, both report success and the first writer's
  rows are gone.)
* **Rows are inserted by the process that holds them** (a Ray worker, or the local process in local
  mode) with ``merge_insert(clip_id).when_not_matched_insert_all()``; ``clip_id`` carries Lance's
  unenforced-primary-key marker, so a commit that races a concurrent insert of the same ids is
  detected by Lance and re-executed: two writers at once both succeed, every clip is stored once,
  nothing is lost. Payloads never travel to a driver: the driver only learns how many rows each
  batch inserted. (The alternative, fragments written in workers and committed by the driver, has
  no exactly-once guarantee in pylance 14: an ``Append`` never conflicts with another ``Append``,
  and a worker's uncommitted ``merge_insert`` transaction loses its key filter on the way to the
  driver; both produced duplicate rows when tried with two concurrent writers.)
* **Idempotent without reading all ids per commit.** The join of ``merge_insert`` and the cheap
  pre-check below use the BTREE index on ``clip_id`` (created with the table) plus a scan of the
  key column of the few fragments not yet indexed; :func:`maintain` (end of a run, and every few
  thousand rows during one) folds new fragments into the index and compacts small fragments, so
  the cost of a commit does not grow with the table. A batch whose ids are all present commits
  nothing (no empty versions).
* **Object stores.** Every function takes a local path or a URI; storage options come from
  :mod:`egom2p.storage`. Lance commits on S3 with conditional PUTs, so the guarantees above hold
  there too (tested against a local S3-compatible server).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from . import storage
from .errors import EgoM2PError

PRIMARY_KEY = {"lance-schema:unenforced-primary-key": "true"}
INDEX_SUFFIX = "_idx"
_CONFLICT_WORDS = ("conflict", "Incompatible transaction", "preempted")


class TableError(EgoM2PError, RuntimeError):
    """A table cannot be opened or written; the message names the table and the problem."""


class TableNotFound(TableError):
    pass


def keyed_schema(schema: pa.Schema, key: str = "clip_id") -> pa.Schema:
    """``schema`` with ``key`` marked as the table's (unenforced) primary key."""
    i = schema.get_field_index(key)
    if i < 0:
        raise ValueError(f"schema has no key column {key!r}")
    f = schema.field(i)
    return schema.set(i, f.with_metadata({**(f.metadata or {}), **{k.encode(): v.encode() for k, v in PRIMARY_KEY.items()}}))


def is_conflict(e: BaseException) -> bool:
    return any(w in str(e) for w in _CONFLICT_WORDS)


def open_table(uri, version: int | str | None = None, options: dict | None = None):
    """The Lance dataset at ``uri`` (a version number or tag, or the latest)."""
    import lance

    uri = storage.local_path(uri) if not storage.is_uri(uri) else os.fspath(uri)
    try:
        return lance.dataset(uri, version=version, storage_options=storage.storage_options(uri, options))
    except ValueError as e:
        if "was not found" in str(e) or "Not found" in str(e):
            if version is not None and exists(uri, options):
                raise TableError(f"{uri}: no version {version!r} ({str(e).splitlines()[0][:200]})") from None
            raise TableNotFound(f"{uri}: not found") from None
        raise TableError(f"{uri}: cannot open the Lance table ({type(e).__name__}: {str(e)[:300]})") from e
    except Exception as e:
        raise TableError(f"{uri}: cannot open the Lance table ({type(e).__name__}: {str(e)[:300]})") from e


def open_as(error: type[Exception], what: str, uri, version: int | str | None = None, options: dict | None = None):
    """:func:`open_table`, its failures raised as ``error`` naming the table as ``what`` (e.g. "token DB")."""
    try:
        return open_table(uri, version, options)
    except TableNotFound:
        raise error(f"{os.fspath(uri)}: {what} not found") from None
    except TableError as e:
        at = f" at version {version!r}" if version is not None else ""
        raise error(f"{os.fspath(uri)}: cannot open the {what}{at} ({e})") from e


def exists(uri, options: dict | None = None) -> bool:
    """True if a Lance table (any version) is at ``uri``."""
    return storage.exists(storage.join(uri, "_versions"), options)


def create(uri, schema: pa.Schema, rows: pa.Table | None = None, *, key: str = "clip_id",
           stable_row_ids: bool = False, options: dict | None = None) -> bool:
    """Create the table at ``uri`` as version 1 (with ``rows`` if given), atomically.

    Returns True if this call created it, False if the table already existed (then nothing is
    written: insert the rows with :func:`insert_new`).
    """
    import lance

    uri = os.fspath(uri)
    if exists(uri, options):
        return False
    schema = keyed_schema(schema, key)
    data = unique_rows(rows, key).cast(schema) if rows is not None else schema.empty_table()
    template = lance.write_dataset(data, f"memory://egom2p-{uuid.uuid4().hex}", schema=schema,
                                   enable_stable_row_ids=stable_row_ids)
    storage.makedirs(os.path.dirname(storage.local_path(uri)) or ".")
    try:
        template.deep_clone(uri if storage.is_uri(uri) else storage.local_path(uri), template.version,
                            storage_options=storage.storage_options(uri, options))
    except Exception as e:
        # losing the race for version 1 ends in "already exists", or (pylance 14, another interleaving)
        # in an internal error of the conflict path; either way the other writer's table is there
        if "already exists" in str(e) or exists(uri, options):
            return False
        raise TableError(f"{uri}: creating the table failed ({type(e).__name__}: {str(e)[:300]})") from e
    return True


def unique_rows(table: pa.Table, key: str = "clip_id") -> pa.Table:
    """``table`` without rows whose key repeats an earlier row's."""
    ids = table.column(key).to_pylist()
    if len(set(ids)) == len(ids):
        return table
    first = sorted({v: i for i, v in reversed(list(enumerate(ids)))}.values())
    return table.take(pa.array(first, pa.int64()))


def _sql_list(values) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


def present_keys(ds, keys, key: str = "clip_id", batch: int = 2048) -> set[str]:
    """Which of ``keys`` the table already holds (an index lookup, plus a scan of unindexed fragments)."""
    keys = list(keys)
    found: set[str] = set()
    for i in range(0, len(keys), batch):
        part = keys[i:i + batch]
        t = ds.to_table(columns=[key], filter=f"{key} IN ({_sql_list(part)})")
        found.update(t.column(key).to_pylist())
    return found


@dataclass
class Inserted:
    rows: int  # rows this call inserted
    present: list[str]  # ids of the batch that the table already held (skipped)
    version: int | None  # the version of this call's commit (None when nothing was new)


def _fit_columns(uri: str, table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` without the columns the target table lacks (optional columns added after the target was
    written); refused when such a column holds values, which the insert would otherwise drop silently."""
    extra = [n for n in table.column_names if n not in schema.names]
    held = [n for n in extra if table.column(n).null_count != table.num_rows]
    if held:
        raise TableError(f"{uri}: this table was written without the {', '.join(held)} column(s) and the new rows "
                         f"have values there; write them into a new table to keep them")
    return table.drop_columns(extra) if extra else table


def insert_new(uri, table: pa.Table, *, key: str = "clip_id", options: dict | None = None,
               attempts: int = 8) -> Inserted:
    """Insert the rows of ``table`` whose ``key`` the table lacks; exactly once even with concurrent writers.

    Runs where the rows are (see the module docstring). Duplicate keys inside ``table`` keep their
    first row. The table must exist (:func:`create`).
    """
    from datetime import timedelta

    uri = os.fspath(uri)
    if table.num_rows == 0:
        return Inserted(0, [], None)
    table = unique_rows(table, key)
    ids = table.column(key).to_pylist()
    for attempt in range(attempts):
        ds = open_table(uri, options=options)
        present = present_keys(ds, ids, key)
        fresh = table.filter(pc.invert(pc.is_in(table.column(key), pa.array(sorted(present), pa.string())))) \
            if present else table
        if fresh.num_rows == 0:
            return Inserted(0, sorted(present), None)
        fresh = _fit_columns(uri, fresh, ds.schema)
        try:
            fresh = fresh.select(ds.schema.names).cast(ds.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as e:
            raise TableError(f"{uri}: rows do not match the table's schema ({e})") from e
        try:
            stats = (ds.merge_insert(key).when_not_matched_insert_all().conflict_retries(20)
                     .retry_timeout(timedelta(seconds=120)).execute(fresh))
        except Exception as e:
            if is_conflict(e) and attempt < attempts - 1:
                time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))  # another writer kept committing: retry
                continue
            if is_conflict(e):
                raise TableError(f"{uri}: another writer kept committing; gave up after {attempts} attempts "
                                 f"(re-run to retry) ({str(e)[:200]})") from e
            raise TableError(f"{uri}: inserting {fresh.num_rows} rows failed ({type(e).__name__}: {str(e)[:300]})") from e
        inserted = int(stats["num_inserted_rows"])
        skipped = sorted(present)
        if inserted < fresh.num_rows:  # a concurrent writer inserted some of them first
            skipped = sorted(set(ids) - _created_by(ds, fresh.column(key).to_pylist(), key, inserted, options))
        return Inserted(inserted, skipped, int(ds.version))
    raise AssertionError("unreachable")


def _created_by(ds, ids, key: str, inserted: int, options: dict | None) -> set[str]:
    """Ids of ``ids`` that the commit at ``ds.version`` added (only needed after a lost race)."""
    if inserted == 0:
        return set()
    prev = present_keys(open_table(ds.uri, version=ds.version - 1, options=options), ids, key)
    return set(ids) - prev


def read_keys(uri, version: int | None = None, key: str = "clip_id", options: dict | None = None) -> list[str]:
    """Every key of the table at ``version`` in table order (read once per run when planning, never per commit)."""
    if not exists(uri, options):
        return []
    ds = open_table(uri, version, options)
    try:
        return ds.to_table(columns=[key]).column(key).to_pylist()
    except (OSError, ValueError) as e:  # damaged data files (pyarrow.ArrowInvalid is a ValueError)
        raise TableError(f"{os.fspath(uri)}: reading the {key} column failed, the table may be truncated or corrupt "
                         f"({type(e).__name__}: {str(e)[:300]})") from e


def ensure_primary_key(uri, key: str = "clip_id", options: dict | None = None) -> None:
    """Mark ``key`` as the primary key of a table written before this protocol (one metadata commit)."""
    ds = open_table(uri, options=options)
    meta = ds.schema.field(key).metadata or {}
    if meta.get(b"lance-schema:unenforced-primary-key") != b"true":
        ds.update_field_metadata({key: PRIMARY_KEY})


def maintain(uri, *, key: str = "clip_id", target_rows_per_fragment: int = 4096, compact: bool = True,
             use_ray: bool = False, options: dict | None = None) -> int:
    """Compact small fragments and fold new ones into the BTREE index on ``key``. Returns the latest version.

    With ``use_ray`` (and Ray running) the compaction tasks run in Ray workers (lance-ray), so the
    calling process handles only fragment metadata; otherwise they run here. A concurrent
    compaction by another writer is not an error (the later one is skipped).
    """
    uri = os.fspath(uri)
    opts = storage.storage_options(uri, options)
    # index first: Lance compacts only fragments of the same index coverage together
    ds = _update_index(uri, open_table(uri, options=options), key, options)
    if compact and len(ds.get_fragments()) > 1:
        try:
            if use_ray and _ray_running():
                import lance_ray
                from lance.optimize import CompactionOptions

                lance_ray.compact_files(uri, compaction_options=CompactionOptions(
                    target_rows_per_fragment=target_rows_per_fragment), num_workers=2, storage_options=opts)
            else:
                ds.optimize.compact_files(target_rows_per_fragment=target_rows_per_fragment)
        except Exception as e:
            if not is_conflict(e):
                raise TableError(f"{uri}: compaction failed ({type(e).__name__}: {str(e)[:300]})") from e
        ds = _update_index(uri, open_table(uri, options=options), key, options)
    return int(ds.version)


def _update_index(uri: str, ds, key: str, options: dict | None):
    """Create the BTREE index on ``key``, or fold fragments it does not cover yet into it; the dataset after."""
    try:
        if not any(i["fields"] == [key] for i in ds.list_indices()):
            ds.create_scalar_index(key, "BTREE", name=key + INDEX_SUFFIX)
        elif ds.index_statistics(key + INDEX_SUFFIX).get("num_unindexed_rows", 0):
            ds.optimize.optimize_indices()
        else:
            return ds
    except Exception as e:
        if not is_conflict(e):
            raise TableError(f"{uri}: updating the {key} index failed ({type(e).__name__}: {str(e)[:300]})") from e
    return open_table(uri, options=options)


def _ray_running() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()
