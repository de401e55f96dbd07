"""Clips tables: one Lance table per dataset holding standard clips, one row per clip.

Storage layout of a row (schema :func:`clips_schema`, format :data:`CLIPS_FORMAT`): the clip's scalar
fields, then each registered modality's columns, written and read by its registry entry
(:mod:`egom2p.modality`); for the built-in four:

* scalar fields of :class:`~egom2p.clip.Clip` as columns (clip_id, dataset, sequence, split, ...);
* ``rgb_mp4``: the RGB frames as H.264 mp4 bytes (CRF 18, yuv420p), decoded on read;
* ``depth_f16``: the normalised inverse depth as float16 [60, H, W] compressed with Blosc-zstd
  (numcodecs, the codec library of Zarr); NaN survives. Depth is kept in the row (not in a side
  Zarr store) so a row is written atomically with all its modalities: an interrupted write never
  leaves depth without its clip or the other way round;
* ``gaze`` and ``cam``: float32 fixed-size lists (bit-exact round trip); masks as bool lists;
* ``depth_raw_valid``: the raw-valid mask of cleaned sensor depth (bool [60, H, W], bit-packed and
  Blosc-compressed), null when every valid depth pixel is a measurement. Optional: tables written
  before it existed read as null, and appends to them leave it out;
* ``provenance``: JSON text.

A modality registered later adds its columns; tables written before it read them as null.

Writes go through :mod:`egom2p.tables` (atomic creation; exactly-once inserts by ``clip_id``, the
table's primary key, from whichever process holds the rows; a BTREE index on ``clip_id``), so
re-running curation, or two runs at once, neither duplicates nor loses rows. Paths may be local or
object-store URIs (:mod:`egom2p.storage`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa

from . import modality, tables
from .clip import Clip
from .errors import EgoM2PError
from .modalities import CLIP_FPS, CLIP_FRAMES, GAZE_VALID_RANGE
from .modality.depth import decode_depth  # noqa: F401  (its home is the depth entry)

CLIPS_FORMAT = "egom2p-clips/1"
_META_FORMAT = b"egom2p.format"
_META_CLIP = b"egom2p.clip"
CLIP_CONSTANTS = {"frames": CLIP_FRAMES, "fps": CLIP_FPS, "gaze_valid_range": list(GAZE_VALID_RANGE)}

_CLIP_FIELDS = [
    pa.field("clip_id", pa.string(), nullable=False, metadata=tables.PRIMARY_KEY),
    pa.field("dataset", pa.string(), nullable=False),
    pa.field("sequence", pa.string(), nullable=False),
    pa.field("split", pa.string(), nullable=False),
    pa.field("start_frame", pa.int32(), nullable=False),
    pa.field("fps", pa.int16(), nullable=False),
    pa.field("num_frames", pa.int16(), nullable=False),
    pa.field("width", pa.int32(), nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("intrinsics", pa.list_(pa.float64(), 4), nullable=False),
    pa.field("camera_model", pa.string(), nullable=False),
    pa.field("distortion", pa.list_(pa.float64()), nullable=False),
    pa.field("is_gray", pa.bool_(), nullable=False),
    pa.field("frame_valid", pa.list_(pa.bool_(), CLIP_FRAMES), nullable=False),
]
_PROVENANCE = pa.field("provenance", pa.string(), nullable=False)
_BUILTIN_COLUMNS = {f.name for m in modality.BUILTIN for f in m.INFO.columns}


def clips_schema() -> pa.Schema:
    """The clips-table schema: the clip's scalar fields, then each registered modality's columns, then provenance."""
    fields = _CLIP_FIELDS + [f for info in modality.MODALITY_INFO.values() for f in info.columns] + [_PROVENANCE]
    return pa.schema(fields, metadata={_META_FORMAT: CLIPS_FORMAT.encode(), _META_CLIP: json.dumps(CLIP_CONSTANTS).encode()})


def optional_columns() -> tuple[str, ...]:
    """Columns a table may lack and still read (as null): added after format 1 was first written, and the
    columns of modalities registered beyond the built-in ones (appends to such tables leave them out)."""
    later = [f.name for i in modality.MODALITY_INFO.values() for f in i.columns if f.name not in _BUILTIN_COLUMNS]
    return ("depth_raw_valid", *later)


def modality_columns(modalities) -> list[str]:
    """The clips-table columns of ``modalities``."""
    return [f.name for m in modalities for f in modality.info(m).columns]


def _skipped(skip, rgb: bool, depth: bool) -> set[str]:
    """The modalities not to decode: ``skip``, and rgb / depth when their (older) ``decode_*`` flag is False."""
    return set(skip) | ({"rgb"} if not rgb else set()) | ({"depth"} if not depth else set())


#: The schema of the built-in modalities (:func:`clips_schema` includes modalities registered later).
CLIPS_SCHEMA = clips_schema()
OPTIONAL_COLUMNS = optional_columns()

#: Columns without the large arrays: cheap to scan for indexes, counts and coverage.
INDEX_COLUMNS = [
    "clip_id", "dataset", "sequence", "split", "start_frame", "width", "height", "is_gray", "depth_source",
]


class ClipsTableError(EgoM2PError, RuntimeError):
    """A clips table cannot be read or written; the message names the table and the problem."""


def clip_to_row(clip: Clip) -> dict:
    """Validate a clip and turn it into a row of :func:`clips_schema` (each modality encoded by its registry entry)."""
    clip.validate()
    row = {
        "clip_id": clip.clip_id,
        "dataset": clip.dataset,
        "sequence": clip.sequence,
        "split": clip.split,
        "start_frame": int(clip.start_frame),
        "fps": int(clip.fps),
        "num_frames": int(clip.num_frames),
        "width": int(clip.width),
        "height": int(clip.height),
        "intrinsics": [float(v) for v in clip.intrinsics],
        "camera_model": clip.camera_model,
        "distortion": [float(v) for v in clip.distortion],
        "is_gray": bool(clip.is_gray),
        "frame_valid": [bool(v) for v in clip.frame_valid],
    }
    for info in modality.MODALITY_INFO.values():
        row.update(info.encode(clip))
    row["provenance"] = json.dumps(clip.provenance, sort_keys=True, default=str)
    return row


def row_to_clip(row: dict, decode_rgb: bool = True, decode_depth_: bool = True, skip=()) -> Clip:
    """A clips-table row -> a :class:`Clip`; the modalities in ``skip`` (and rgb / depth when their flag is False)
    are not decoded and read as missing."""
    n, h, w = row["num_frames"], row["height"], row["width"]
    skip = _skipped(skip, decode_rgb, decode_depth_)
    clip = Clip(
        dataset=row["dataset"],
        sequence=row["sequence"],
        start_frame=int(row["start_frame"]),
        split=row["split"],
        width=w,
        height=h,
        intrinsics=np.asarray(row["intrinsics"], dtype=np.float64),
        camera_model=row["camera_model"],
        distortion=np.asarray(row["distortion"], dtype=np.float64),
        frame_valid=np.asarray(row["frame_valid"], dtype=bool),
        is_gray=bool(row["is_gray"]),
        fps=int(row["fps"]),
        num_frames=n,
        provenance=json.loads(row["provenance"]),
    )
    for info in modality.MODALITY_INFO.values():
        if info.name in skip or info.payload_column not in row:
            continue
        try:
            fields = info.decode(row, n, h, w)
        except modality.ModalityError as e:
            raise ClipsTableError(f"clip {row['clip_id']}: {e}") from e
        for name, value in fields.items():
            clip.set(name, value)
    return clip


def open_clips(path, version=None, options: dict | None = None):
    """The clips table at ``path`` as a Lance dataset (at ``version``), its format checked."""
    ds = tables.open_as(ClipsTableError, "clips table", path, version, options)
    check_clips_schema(ds.schema, os.fspath(path))
    return ds


def check_clips_schema(schema: pa.Schema, path: str = "") -> None:
    """Refuse a table whose format version or clip constants differ from this code's."""
    meta = schema.metadata or {}
    fmt = meta.get(_META_FORMAT, b"").decode()
    if fmt != CLIPS_FORMAT:
        raise ClipsTableError(f"{path}: clips table format {fmt or 'missing'!r}, this code reads {CLIPS_FORMAT!r}")
    consts = json.loads(meta.get(_META_CLIP, b"{}"))
    if consts != CLIP_CONSTANTS:
        raise ClipsTableError(f"{path}: clips table was written with clip constants {consts}, this code uses {CLIP_CONSTANTS}")
    optional = optional_columns()
    missing = [f.name for f in clips_schema() if f.name not in schema.names and f.name not in optional]
    if missing:
        raise ClipsTableError(f"{path}: clips table lacks columns {missing}")


def existing_ids(path, version=None, options: dict | None = None) -> set[str]:
    """Clip ids in the table (empty if it does not exist yet); read once when a run plans its work."""
    if not tables.exists(path, options):
        return set()
    open_clips(path, version, options)
    try:
        return set(tables.read_keys(path, version, options=options))
    except Exception as e:
        raise ClipsTableError(f"{os.fspath(path)}: reading the clip ids failed, the table may be truncated or corrupt "
                              f"({type(e).__name__}: {str(e)[:300]})") from e


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Rows (from :func:`clip_to_row`) -> an Arrow table with the clips schema (checked)."""
    try:
        return pa.Table.from_pylist(rows, schema=clips_schema())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ClipsTableError(f"rows do not match the clips schema: {e}") from e


def create_table(path, options: dict | None = None) -> bool:
    """Create an empty clips table at ``path`` unless one exists (atomic; an existing one is checked and
    its ``clip_id`` marked as primary key). True if this call created it."""
    try:
        created = tables.create(path, clips_schema(), options=options)
    except tables.TableError as e:
        raise ClipsTableError(str(e)) from e
    if not created:
        prepare_table(path, options)
    return created


def _conform(path: str, table: pa.Table) -> pa.Table:
    schema = clips_schema()
    try:
        return tables.unique_rows(table.select(schema.names).cast(schema))
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as e:
        raise ClipsTableError(f"{path}: rows do not match the clips schema: {e}") from e


def insert_table(path, table: pa.Table, options: dict | None = None) -> tables.Inserted:
    """Insert the rows of an Arrow table of :func:`clips_schema` whose clip id the (existing) table lacks.

    Exactly once per clip id, also with concurrent writers; runs in the process that holds the rows
    (a Ray worker in a pipeline, after :func:`create_table` on the driver).
    """
    path = os.fspath(path)
    table = _conform(path, table)
    try:
        return tables.insert_new(path, table, options=options)
    except tables.TableError as e:
        raise ClipsTableError(str(e)) from e


def write_table(path, table: pa.Table, options: dict | None = None) -> tables.Inserted:
    """:func:`insert_table`, creating the table (atomically) if needed and checking an existing one's format."""
    path = os.fspath(path)
    table = _conform(path, table)
    try:
        if tables.create(path, clips_schema(), table, options=options):
            return tables.Inserted(table.num_rows, [], 1)
    except tables.TableError as e:
        raise ClipsTableError(str(e)) from e
    prepare_table(path, options)
    return insert_table(path, table, options)


def prepare_table(path, options: dict | None = None) -> None:
    """Check an existing table's format and mark ``clip_id`` as its primary key (tables of older runs)."""
    open_clips(path, options=options)
    try:
        tables.ensure_primary_key(path, options=options)
    except tables.TableError as e:
        raise ClipsTableError(str(e)) from e


def write_rows(path, rows: list[dict], options: dict | None = None) -> int:
    """Insert encoded rows (from :func:`clip_to_row`) whose clip id the table lacks. Returns rows written."""
    if not rows:
        return 0
    return write_table(path, rows_to_table(rows), options).rows


def write_clips(path, clips: Iterable[Clip], options: dict | None = None) -> int:
    """Validate, encode and insert clips into the clips table at ``path`` (idempotent). Returns rows written."""
    return write_rows(path, [clip_to_row(c) for c in clips], options)


def finalize(path, use_ray: bool = False, options: dict | None = None, compact: bool = True) -> int:
    """End of a run: compact small fragments, update the ``clip_id`` index. Returns the table version.

    ``compact=False`` only folds new fragments into the index (cheap; done every few thousand clips during a run).
    """
    try:
        return tables.maintain(path, target_rows_per_fragment=2048, compact=compact, use_ray=use_ray, options=options)
    except tables.TableError as e:
        raise ClipsTableError(str(e)) from e


def _filter(dataset: str | None, ids: Iterable[str] | None) -> str | None:
    parts = []
    if dataset is not None:
        parts.append(f"dataset = '{_sql_str(dataset)}'")
    if ids is not None:
        ids = list(ids)
        if not ids:
            return "false"
        parts.append("clip_id IN (" + ", ".join(f"'{_sql_str(i)}'" for i in ids) + ")")
    return " AND ".join(parts) or None


def _sql_str(s: str) -> str:
    return str(s).replace("'", "''")


def read_clips(path, dataset: str | None = None, ids: Iterable[str] | None = None, *, version=None,
               decode_rgb: bool = True, decode_depth: bool = True, skip=(), batch_size: int = 8,
               options: dict | None = None) -> Iterator[Clip]:
    """Iterate over the clips of a table (optionally one dataset, some ids, an older Lance version).

    The modalities in ``skip`` (and rgb / depth when their flag is False) are neither read nor decoded."""
    ds = open_clips(path, version=version, options=options)
    skip = _skipped(skip, decode_rgb, decode_depth)
    dropped = set(modality_columns(skip))
    columns = [f.name for f in clips_schema() if f.name in ds.schema.names and f.name not in dropped]
    try:
        for batch in ds.to_batches(columns=columns, filter=_filter(dataset, ids), batch_size=batch_size):
            for row in batch.to_pylist():
                yield row_to_clip(row, skip=skip)
    except ClipsTableError:
        raise
    except Exception as e:
        raise ClipsTableError(f"{os.fspath(path)}: reading clips failed, the table may be truncated or corrupt "
                              f"({type(e).__name__}: {str(e)[:300]})") from e


def clips_index(path, version=None, options: dict | None = None) -> pa.Table:
    """The scalar columns of every row plus which modalities each clip has (no arrays decoded)."""
    ds = open_clips(path, version=version, options=options)
    try:
        t = ds.to_table(columns=INDEX_COLUMNS)
        flags = ds.to_table(columns={f"has_{i.name}": f"{i.payload_column} IS NOT NULL"
                                     for i in modality.MODALITY_INFO.values() if i.payload_column in ds.schema.names})
    except Exception as e:
        raise ClipsTableError(f"{os.fspath(path)}: reading the clips index failed ({type(e).__name__}: {str(e)[:300]})") from e
    for name in flags.column_names:
        t = t.append_column(name, flags.column(name))
    return t
