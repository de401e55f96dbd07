import os

import numpy as np
import pytest

from egom2p.clip import Clip, ClipValidationError
from egom2p.clips import ClipsTableError, clips_index, existing_ids, read_clips, write_clips
from factories import make_clip, psnr


def test_clip_round_trip_through_table(tmp_path):
    path = tmp_path / "egogen.lance"
    clips = [make_clip(sequence="s0", start=0, seed=0), make_clip(sequence="s0", start=60, seed=1),
             make_clip(sequence="s1", start=0, seed=2, modalities=("rgb", "cam"))]
    assert write_clips(path, clips) == 3
    back = {c.clip_id: c for c in read_clips(path)}
    assert set(back) == {c.clip_id for c in clips}
    for c in clips:
        b = back[c.clip_id]
        assert b.modalities == c.modalities
        if c.gaze is not None:
            assert np.array_equal(b.gaze, c.gaze, equal_nan=True)  # bit-exact
            assert np.array_equal(b.gaze_valid, c.gaze_valid)
        assert np.array_equal(b.cam, c.cam)  # bit-exact
        assert np.array_equal(b.intrinsics, c.intrinsics)
        assert psnr(b.rgb, c.rgb) > 32  # codec tolerance (H.264 CRF 18, 4:2:0)
        if c.depth is not None:
            assert np.array_equal(np.isnan(b.depth), np.isnan(c.depth))
            assert np.nanmax(np.abs(b.depth - c.depth)) < 1e-3  # float16 storage
            assert np.allclose(b.depth_range, c.depth_range)
        else:
            assert b.depth is None and b.depth_source is None
        b.validate()


def test_rewrite_is_idempotent_and_filters_work(tmp_path):
    path = tmp_path / "t.lance"
    a, b = make_clip(sequence="s0"), make_clip(sequence="s1")
    assert write_clips(path, [a]) == 1
    assert write_clips(path, [a, b, b]) == 1  # a exists, b once
    assert existing_ids(path) == {a.clip_id, b.clip_id}
    assert [c.clip_id for c in read_clips(path, ids=[b.clip_id])] == [b.clip_id]
    assert list(read_clips(path, dataset="other")) == []
    idx = clips_index(path)
    assert idx.num_rows == 2 and all(idx.column("has_gaze").to_pylist())


def test_older_version_time_travel(tmp_path):
    path = tmp_path / "t.lance"
    write_clips(path, [make_clip(sequence="s0")])
    write_clips(path, [make_clip(sequence="s1")])
    assert len(list(read_clips(path, version=1, decode_rgb=False))) == 1
    assert len(list(read_clips(path, decode_rgb=False))) == 2


def test_validate_names_the_problem():
    c = make_clip()
    c.validate()
    bad = make_clip()
    bad.cam[0, 0, 3] = 0.5
    with pytest.raises(ClipValidationError, match=r"clip egogen/seq0/000000: cam\[0\] must be the identity"):
        bad.validate()
    bad = make_clip()
    bad.cam[7, 1, 1] = np.nan
    with pytest.raises(ClipValidationError, match="non-finite poses at frames \\[7\\]"):
        bad.validate()
    bad = make_clip()
    bad.gaze[3] = [1.5, 0.5]
    bad.gaze_valid[3] = True
    with pytest.raises(ClipValidationError, match="gaze outside .* not marked invalid"):
        bad.validate()
    bad = make_clip()
    bad.rgb = bad.rgb[:30]
    with pytest.raises(ClipValidationError, match="rgb must be uint8"):
        bad.validate()
    bad = make_clip()
    bad.depth_range = None
    with pytest.raises(ClipValidationError, match="needs depth_range"):
        bad.validate()
    with pytest.raises(ClipValidationError, match="no modality"):
        Clip("egogen", "s", 0, 64, 64, [50, 50, 32, 32]).validate()


def test_writer_refuses_invalid_clip_and_writes_nothing(tmp_path):
    path = tmp_path / "t.lance"
    bad = make_clip(sequence="bad")
    bad.cam[5] = 0
    with pytest.raises(ClipValidationError):
        write_clips(path, [make_clip(sequence="good"), bad])
    assert not os.path.exists(path)


def test_truncated_table_gives_clear_error(tmp_path):
    path = tmp_path / "t.lance"
    write_clips(path, [make_clip(sequence="s0"), make_clip(sequence="s1")])
    data_files = sorted((path / "data").glob("*.lance"))
    assert data_files
    f = data_files[0]
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(ClipsTableError, match=r"t\.lance"):
        list(read_clips(path))
    with pytest.raises(ClipsTableError, match="not found"):
        list(read_clips(tmp_path / "missing.lance"))


def test_raw_valid_mask_validation_and_tables_written_before_it(tmp_path):
    """depth_raw_valid is optional: tables without the column read (as None) and take appends of clips without it."""
    import lance
    import pyarrow as pa

    from egom2p import clips as C

    c = make_clip(sequence="s0")
    c.depth_raw_valid = np.isfinite(c.depth)
    c.depth_raw_valid[:, 10:20, 10:20] = False
    c.validate()
    bad = make_clip(sequence="s0")
    bad.depth_raw_valid = np.ones(bad.depth.shape, bool)  # claims the NaN corner
    with pytest.raises(ClipValidationError, match="depth_raw_valid marks pixels whose depth is invalid"):
        bad.validate()
    bad.depth_raw_valid = np.ones((60, 4, 4), bool)
    with pytest.raises(ClipValidationError, match="depth_raw_valid must be bool"):
        bad.validate()
    # a table in the layout written before the column existed
    old = tmp_path / "old.lance"
    old_schema = pa.schema([f for f in C.CLIPS_SCHEMA if f.name != "depth_raw_valid"], metadata=C.CLIPS_SCHEMA.metadata)
    row = C.clip_to_row(make_clip(sequence="s1"))
    row.pop("depth_raw_valid")
    lance.write_dataset(pa.Table.from_pylist([row], schema=old_schema), old, schema=old_schema)
    got = next(read_clips(old))
    assert got.depth is not None and got.depth_raw_valid is None
    assert write_clips(old, [make_clip(sequence="s2")]) == 1  # appends without a mask keep the old layout
    assert {x.sequence for x in read_clips(old)} == {"s1", "s2"}
    with pytest.raises(ClipsTableError, match="without the depth_raw_valid column"):
        write_clips(old, [c])
    new = tmp_path / "new.lance"
    write_clips(new, [c])
    assert np.array_equal(next(read_clips(new)).depth_raw_valid, c.depth_raw_valid)
