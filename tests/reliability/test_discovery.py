"""Discovery errors are per sequence: a bad manifest, unreadable metadata or a folder that is not a sequence
is quarantined (stage "discover") and the run goes on; a raw root without any sequence of the dataset is
one error naming the layout the adapter expects (its card datasets/<name>.yaml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from egom2p.adapters import KNOWN_DATASETS, SourceError, get_adapter
from egom2p.clips import existing_ids
from egom2p.curate import CurateConfig, CurationRun, read_quarantine
from egom2p.curate.stages import discover, load_sequence
from egom2p.render import render_dataset

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def egogen_bad(tmp_path_factory) -> Path:
    """Three 2-s renders; s3_0001's manifest.json is empty, and a notes/ folder is not a sequence."""
    raw = tmp_path_factory.mktemp("egogen_bad") / "raw"
    render_dataset(raw, sequences=3, seconds=2.0, seed=3, size=32, progress=False)
    (raw / "s3_0001" / "manifest.json").write_text("")
    (raw / "notes").mkdir()
    (raw / "notes" / "todo.txt").write_text("re-render s3_0001")
    (raw / ".partial-s3_0003").mkdir()  # a render in progress: not a sequence yet, not an error
    return raw


def assert_quarantined_at_discover(out: Path, raw: Path) -> None:
    recs = {r.sequence: r for r in read_quarantine(out / "egogen.quarantine.jsonl")}
    assert set(recs) == {"s3_0001", "notes"}
    assert all(r.stage == "discover" and r.clip_id is None for r in recs.values())
    assert recs["s3_0001"].source == str(raw / "s3_0001" / "manifest.json")
    assert "manifest is not valid JSON" in recs["s3_0001"].reason
    assert recs["notes"].source == str(raw / "notes") and "no manifest.json" in recs["notes"].reason
    assert existing_ids(out / "egogen.lance") == {"egogen/s3_0000/000000", "egogen/s3_0002/000000"}


def test_egogen_bad_sequences_are_quarantined_and_the_run_goes_on(egogen_bad, tmp_path):
    refs = discover(get_adapter("egogen"), egogen_bad)
    assert [(r.sequence, bool(r.problem)) for r in refs] == [("notes", True), ("s3_0000", False),
                                                             ("s3_0001", True), ("s3_0002", False)]
    with pytest.raises(SourceError, match="manifest.json: manifest is not valid JSON"):
        load_sequence(get_adapter("egogen"), refs[2])  # a bad ref is never opened
    out = tmp_path / "out"
    s = CurationRun(CurateConfig(dataset="egogen", raw=str(egogen_bad), out=str(out), size=32), executor="local").run()
    assert (s.sequences_seen, s.sequences_failed, s.clips_written, s.quarantined) == (4, 2, 2, 2)
    assert s.quarantined_by_stage == {"discover": 2}
    assert_quarantined_at_discover(out, egogen_bad)


@pytest.mark.slow
def test_cli_curates_the_good_sequences_of_a_raw_root_with_bad_ones(egogen_bad, tmp_path, prefect_harness,
                                                                     ray_session):
    """Issue 18: an empty manifest.json used to abort `egom2p curate` with a traceback and exit 1."""
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address, PREFECT_API_URL=prefect_harness)
    out = tmp_path / "out"
    p = subprocess.run([str(BIN / "egom2p"), "curate", "egogen", "--raw", str(egogen_bad), "--out", str(out),
                        "--size", "32"], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert_quarantined_at_discover(out, egogen_bad)
    summary = json.loads((out / "egogen.summary.json").read_text())
    assert (summary["sequences_seen"], summary["sequences_failed"], summary["clips_written"]) == (4, 2, 2)


@pytest.mark.parametrize("dataset", KNOWN_DATASETS)
def test_a_root_without_sequences_is_one_error_naming_the_expected_layout(dataset, tmp_path):
    adapter = get_adapter(dataset)
    assert adapter.layout, f"{dataset}: the adapter states the layout it expects"
    (tmp_path / "unrelated").mkdir()
    (tmp_path / "unrelated" / "readme.txt").write_text("not a dataset")
    with pytest.raises(SourceError) as e:
        discover(adapter, tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path}: ") and adapter.layout in msg and f"datasets/{dataset}.yaml" in msg
    assert "\n" not in msg
    assert (Path(__file__).resolve().parents[2] / "datasets" / f"{dataset}.yaml").is_file()


def test_hot3d_unreadable_metadata_is_one_bad_sequence(tmp_path):
    from fixtures.hot3d import make_hot3d_clips_tree

    truths = make_hot3d_clips_tree(tmp_path)
    for name, text in (("P0001_0a1b2c3d", "{not json"), ("P0002_0a1b2c3d", "[1, 2]")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metadata.json").write_text(text)
        (tmp_path / name / "headset_trajectory.csv").write_text("")
    refs = discover(get_adapter("hot3d_aria"), tmp_path)
    good = [r.sequence for r in refs if not r.problem]
    assert good == sorted(n for n in truths if "aria" in n)
    bad = {r.sequence: r for r in refs if r.problem}
    assert set(bad) == {"P0001_0a1b2c3d", "P0002_0a1b2c3d"}
    assert bad["P0001_0a1b2c3d"].path == str(tmp_path / "P0001_0a1b2c3d" / "metadata.json")
    assert all("unreadable metadata" in r.problem for r in bad.values())


def test_adt_and_ase_sequences_missing_a_required_file_are_bad_sequences(tmp_path):
    from fixtures.ase import make_ase_tree

    adt = tmp_path / "adt"
    for seq, files in (("Apartment_release_clean_seq131", ("video.vrs", "aria_trajectory.csv")),
                       ("Apartment_release_clean_seq134", ("video.vrs",))):
        (adt / seq).mkdir(parents=True)
        for f in files:
            (adt / seq / f).write_bytes(b"")
    refs = discover(get_adapter("adt"), adt)
    assert [(r.sequence, r.problem) for r in refs] == [
        ("Apartment_release_clean_seq131", None), ("Apartment_release_clean_seq134", "file missing (no camera poses)")]
    assert refs[1].path.endswith("seq134/aria_trajectory.csv")

    ase = tmp_path / "ase"
    make_ase_tree(ase)
    (ase / "train" / "555").mkdir()
    (ase / "train" / "555" / "trajectory.csv").write_text("")
    refs = {r.sequence: r for r in discover(get_adapter("ase"), ase)}
    assert refs["train/555"].problem == "folder missing (no images)"
    assert [n for n, r in refs.items() if not r.problem] == ["test/20", "train/83788", "train/99"]


def test_egoexo4d_malformed_take_is_one_bad_sequence(tmp_path):
    from fixtures.egoexo4d import make_egoexo4d_tree

    make_egoexo4d_tree(tmp_path)
    A = get_adapter("egoexo4d")
    before = [r.sequence for r in A.discover(tmp_path)]
    takes = json.loads((tmp_path / "takes.json").read_text())
    broken = dict(takes[0], take_name="bad_take_1", timesync_start_idx="soon")
    (tmp_path / "takes.json").write_text(json.dumps([*takes, broken]))
    refs = discover(A, tmp_path)
    assert [r.sequence for r in refs if not r.problem] == before
    (bad,) = [r for r in refs if r.problem]
    assert bad.sequence == "bad_take_1" and bad.path == str(tmp_path / "takes.json") and "soon" in bad.problem


def test_holoassist_unreadable_split_list_is_one_clear_error(tmp_path):
    from fixtures.holoassist import make_holoassist_tree

    make_holoassist_tree(tmp_path, n_frames=40, width=32, height=24)
    split = tmp_path / "data_split" / "train-v1_2.txt"
    split.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(SourceError) as e:
        discover(get_adapter("holoassist"), tmp_path)
    assert f"{split}: unreadable split list" in str(e.value) and "Export_py" in str(e.value)
