"""Curation stages as pure functions, the serial and Ray runs and resume (quarantine, torn quarantine lines and
the run lock are in tests/reliability, which reuse this module's fixture tree and adapter).

The raw data is a real fixture tree written by the test: per sequence an H.264 mp4 (PyAV), poses,
gaze and depth as .npy, read back by a small adapter with the real adapter interface.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import factories
from egom2p.adapters.base import Adapter, RawSequence, SequenceRef, SourceError
from egom2p.annotators import get_annotator
from egom2p.annotators.base import Annotator
from egom2p.clips import existing_ids, row_to_clip, rows_to_table, write_rows
from egom2p.curate import CurateConfig, CurateError, CurationRun, QuarantineRecord
from egom2p.curate import stages
from egom2p.curate.ops import AnnotateStage, StandardizeStage, chunks_table
from egom2p.curate.summary import RunSummary
from egom2p.runner import CPU_COLUMN, Runner
from egom2p.video import decode, encode_h264, probe


def send_by_value(*modules) -> None:
    """Let Ray ship these test modules' classes by value (tests/ is not importable in Ray workers)."""
    from ray import cloudpickle

    for m in modules:
        cloudpickle.register_pickle_by_value(m)

N_FRAMES = 150  # 5 s at 30 FPS: 2 back-to-back windows (0, 60) per sequence at stride 60
W, H = 96, 72


class TreeAdapter(Adapter):
    """Reads RAW/<sequence>/{video.mp4, c2w.npy, gaze.npy, depth.npy, intrinsics.json}."""

    name = "synthetic"
    version = "1"
    modalities = ("rgb", "depth", "gaze", "cam")
    default_depth = "render"

    def discover(self, raw_root):
        return [SequenceRef("synthetic", d.name, str(d)) for d in sorted(Path(raw_root).iterdir())
                if (d / "video.mp4").exists()]

    def load(self, ref):
        p = Path(ref.path)
        video = p / "video.mp4"
        info = probe(video)  # a corrupt file fails here with a VideoError naming it
        depth = np.load(p / "depth.npy")
        k = json.loads((p / "intrinsics.json").read_text())
        return RawSequence(ref=ref, num_frames=info.num_frames, width=info.width, height=info.height,
                           intrinsics=np.array(k), read_frames=lambda idx: decode(video, idx),
                           c2w=np.load(p / "c2w.npy"), gaze_px=np.load(p / "gaze.npy"),
                           read_depth=lambda idx: depth[idx], source_files=[str(video)])


def write_tree(root: Path, names=("s0", "s1"), n=N_FRAMES) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        seq, truth = factories.make_raw_sequence(n=n, width=W, height=H, seed=i, dataset="synthetic", sequence=name)
        d = root / name
        d.mkdir(exist_ok=True)
        encode_h264(truth["frames"], path=d / "video.mp4")
        np.save(d / "c2w.npy", truth["c2w"])
        np.save(d / "gaze.npy", truth["gaze_px"])
        np.save(d / "depth.npy", truth["depth"])
        (d / "intrinsics.json").write_text(json.dumps(truth["K"].tolist()))
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_tree(tmp_path_factory.mktemp("raw") / "synthetic")


@pytest.fixture(scope="module")
def ray_local(ray_session):
    """The session's Ray, with this module's helpers shipped to workers by value."""
    send_by_value(sys.modules[__name__], factories)
    return ray_session


def config(tree, out, **kw) -> CurateConfig:
    return CurateConfig(dataset="synthetic", raw=str(tree), out=str(out), size=64, **kw)


def curate_chunk(adapter, annotator, chunk, size=64):
    """annotate -> standardize (+ encode) of one chunk with the local runner: (clip rows, quarantine records)."""
    out = pa.concat_tables(Runner("local").run(chunks_table([chunk]), [AnnotateStage(adapter, annotator=annotator),
                                                                      StandardizeStage(adapter, size)]))
    rows = out.drop_columns([CPU_COLUMN]).to_pylist()
    good = [{k: v for k, v in r.items() if k != "record"} for r in rows if r["record"] is None]
    return good, [QuarantineRecord.from_json(r["record"]) for r in rows if r["record"] is not None]


# ------------------------------------------------------------------------------ pure stages
def test_discover_orders_limits_and_names_a_missing_root(tree, tmp_path):
    refs = stages.discover(TreeAdapter(), tree)
    assert [r.sequence for r in refs] == ["s0", "s1"]
    assert [r.sequence for r in stages.discover(TreeAdapter(), tree, limit=1)] == ["s0"]
    with pytest.raises(SourceError, match="does not exist"):
        stages.discover(TreeAdapter(), tmp_path / "nope")


def test_split_plans_windows_and_skips_finished_ids(tree):
    ref = stages.discover(TreeAdapter(), tree)[0]
    todo, skipped = stages.plan_windows(ref, 150, 30, {"synthetic/s0/000030"})
    assert todo == [0, 60, 90] and skipped == ["synthetic/s0/000030"]
    res = stages.split(TreeAdapter(), ref, stride=30, done={"synthetic/s0/000000"}, windows_per_task=2)
    assert res.num_frames == N_FRAMES and res.windows == 4
    assert res.skipped == ["synthetic/s0/000000"]
    assert [c.starts for c in res.chunks] == [[30, 60], [90]]
    assert res.chunks[0].clip_ids == ["synthetic/s0/000030", "synthetic/s0/000060"]


def test_annotate_gives_metric_render_depth_per_window_and_checks_shapes():
    seq, truth = factories.make_raw_sequence(n=130, width=W, height=H)
    out = stages.annotate(get_annotator("render"), seq, [0, 60])
    assert set(out) == {0, 60}
    assert out[60].kind == "metric" and out[60].source == "render"
    np.testing.assert_array_equal(out[60].values, truth["depth"][60:120])

    class Wrong(Annotator):
        name = "wrong"

        def annotate(self, seq, start, length):
            from egom2p.standardize import DepthAnnotation

            return DepthAnnotation(np.ones((length, 4, 4), np.float32), "metric", "render")

    with pytest.raises(SourceError, match="expected"):
        stages.annotate(Wrong(), seq, [0])


def test_annotate_stage_passes_depth_as_arrow_and_quarantines_a_failing_chunk(tree):
    from egom2p.curate.ops import depth_from_row

    adapter = TreeAdapter()
    ref = stages.discover(adapter, tree)[0]
    stage = AnnotateStage(adapter, "render")
    stage.setup()
    rows = stage.process(chunks_table([stages.WorkChunk(ref, [0, 60])])).to_pylist()
    assert [r["clip_id"] for r in rows] == ["synthetic/s0/000000", "synthetic/s0/000060"]
    truth = np.load(Path(ref.path) / "depth.npy")
    np.testing.assert_array_equal(depth_from_row(rows[1]).values, truth[60:120])  # raw float32 bytes + shape, exact
    assert depth_from_row(rows[1]).kind == "metric" and rows[1]["record"] is None
    none = AnnotateStage(adapter, "none")
    none.setup()
    assert depth_from_row(none.process(chunks_table([stages.WorkChunk(ref, [0])])).to_pylist()[0]) is None
    broken = stages.WorkChunk(SequenceRef("synthetic", "gone", str(tree / "gone")), [0, 60])
    bad = stage.process(chunks_table([broken])).to_pylist()
    assert [r["clip_id"] for r in bad] == ["synthetic/gone/000000", "synthetic/gone/000060"]
    assert all(QuarantineRecord.from_json(r["record"]).stage == "annotate" for r in bad)


def test_standardize_and_encode_make_a_valid_row(tree):
    adapter = TreeAdapter()
    ref = stages.discover(adapter, tree)[1]
    seq = stages.load_sequence(adapter, ref, cache=False)
    depth = stages.annotate(get_annotator("render"), seq, [60])[60]
    clip = stages.standardize_window(seq, 60, depth, size=64)
    assert clip.clip_id == "synthetic/s1/000060" and clip.rgb.shape == (60, 64, 64, 3)
    assert clip.depth_source == "render" and np.isfinite(clip.depth).all()  # the invalid strip is cropped away
    np.testing.assert_allclose(clip.depth_range, [0.5, 0.5])  # a plane at 2 m: inverse depth 0.5 / m
    row = stages.encode(clip)
    assert stages.row_modalities(row) == ("rgb", "depth", "gaze", "cam")
    again = row_to_clip(rows_to_table([row]).to_pylist()[0])
    np.testing.assert_array_equal(again.cam, clip.cam)
    assert factories.psnr(again.rgb, clip.rgb) > 35


def test_write_appends_once(tree, tmp_path):
    adapter = TreeAdapter()
    ref = stages.discover(adapter, tree)[0]
    rows, quarantined = curate_chunk(adapter, get_annotator("none"), stages.WorkChunk(ref, [0, 60]))
    assert not quarantined and len(rows) == 2
    table = tmp_path / "t.lance"
    assert write_rows(table, rows) == 2
    assert write_rows(table, rows) == 0
    assert existing_ids(table) == {"synthetic/s0/000000", "synthetic/s0/000060"}


def test_summary_renders_coverage(tmp_path):
    s = RunSummary(dataset="synthetic", run_id="r", raw="raw", table="t.lance", depth="render", started="now",
                   sequences_seen=3, clips_written=4, table_clips=4, coverage={"rgb": 4, "depth": 4, "gaze": 2, "cam": 4},
                   quarantined=1, quarantined_by_stage={"split": 1})
    md = s.to_markdown()
    assert "| gaze | 2 | 50% |" in md and "split: 1" in md
    s.write_json(tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["coverage_fraction"]["gaze"] == 0.5
    s.plot(tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------------- whole runs
def test_local_run_then_rerun_skips_everything(tree, tmp_path):
    s1 = CurationRun(config(tree, tmp_path), adapter=TreeAdapter(), executor="local").run()
    assert (s1.sequences_seen, s1.windows, s1.clips_written, s1.quarantined) == (2, 4, 4, 0)
    assert s1.coverage == {"rgb": 4, "depth": 4, "gaze": 4, "cam": 4} and s1.depth == "render"
    s2 = CurationRun(config(tree, tmp_path), adapter=TreeAdapter(), executor="local").run()
    assert (s2.clips_planned, s2.clips_written, s2.clips_skipped, s2.table_clips) == (0, 0, 4, 4)
    summary = json.loads((tmp_path / "synthetic.summary.json").read_text())
    assert summary["clips_skipped"] == 4 and summary["run_id"] == s2.run_id


# ------------------------------------------------------------------------------- fail fast
def test_prepare_fails_fast_with_clear_messages(tree, tmp_path, monkeypatch):
    with pytest.raises(CurateError, match="unknown dataset 'nope'"):
        CurationRun(CurateConfig(dataset="nope", raw=str(tree), out=str(tmp_path))).prepare()

    import egom2p.adapters as adapters  # get_adapter's home: it imports the dataset's module by name

    real = adapters.importlib.import_module

    def missing(name, *a):
        if name == "egom2p.adapters.h2o":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name, *a)

    monkeypatch.setattr(adapters.importlib, "import_module", missing)
    with pytest.raises(CurateError, match="no adapter yet.*egom2p/adapters/h2o.py"):
        CurationRun(CurateConfig(dataset="h2o", raw=str(tree), out=str(tmp_path))).prepare()

    class NeedsCheckpoint(Annotator):
        name = "rollingdepth"

        def prepare(self):
            raise FileNotFoundError("/ckpt/rollingdepth: checkpoint folder not found")

    with pytest.raises(CurateError, match="not ready.*checkpoint folder not found"):
        CurationRun(config(tree, tmp_path), adapter=TreeAdapter(), annotator=NeedsCheckpoint()).prepare()

    class NoDepth(TreeAdapter):
        modalities = ("rgb", "cam")

    with pytest.raises(CurateError, match="has none"):
        CurationRun(config(tree, tmp_path, depth="sensor"), adapter=NoDepth()).prepare()


def test_depth_windows_travel_between_stages_in_one_arrow_buffer_without_copies():
    from egom2p.curate.ops import binary_column, binary_values

    rng = np.random.default_rng(0)
    a = rng.random((3, 4, 5)).astype(np.float32)
    b = rng.random((2, 6)).astype(np.float32)
    col = binary_column([a, None, b, None])
    assert col.type == pa.large_binary() and col.null_count == 2
    assert col.to_pylist() == [a.tobytes(), None, b.tobytes(), None]  # what from_pylist of tobytes() made
    got = binary_values(pa.chunked_array([col.slice(0, 1), col.slice(1)]))  # chunked and sliced, as batches arrive
    assert got[1] is None and got[3] is None
    assert np.array_equal(np.frombuffer(got[0], np.float32).reshape(a.shape), a)
    assert np.array_equal(np.frombuffer(got[2], np.float32).reshape(b.shape), b)
    assert not got[2].flags.owndata  # a view of the column's memory, not a copy
    assert binary_values(pa.array([b"xy", None], pa.binary()))[0].tobytes() == b"xy"  # 32-bit offsets too
