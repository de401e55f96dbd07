"""Object stores: curate -> tokenize -> train end to end on ``s3://`` URIs against a real S3-compatible server.

The server (moto's standalone server, tests/conftest.py ``s3_server``) runs on 127.0.0.1; Lance,
the run files (quarantine, summary) and the Ray workers reach it through the storage options that
egom2p takes from the environment (AWS_ENDPOINT, credentials) and ships inside its stages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import factories
from egom2p import storage, tables
from egom2p.clips import read_clips, write_clips
from egom2p.curate import CurateConfig, CurationRun, read_quarantine
from egom2p.tokendb import open_token_db

BIN = Path(sys.executable).parent


@pytest.fixture()
def s3(s3_server, monkeypatch):
    for k, v in s3_server.items():
        monkeypatch.setenv(k, v)
    return s3_server


@pytest.fixture(scope="module")
def egogen_raw(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("egogen") / "raw"
    subprocess.run([str(BIN / "egom2p"), "render", "egogen", "--out", str(out), "--sequences", "2", "--seconds", "4",
                    "--size", "64", "--seed", "0"], check=True, capture_output=True)
    return out


def test_storage_helpers_and_tables_on_s3(s3):
    base = "s3://egom2p/unit"
    assert storage.is_uri(base) and not storage.is_uri("/data/x") and not storage.is_uri("file:///data/x")
    assert storage.storage_options(base)["aws_endpoint"] == s3["AWS_ENDPOINT"]
    assert storage.storage_options(base, {"aws_region": "eu-west-1"})["aws_region"] == "eu-west-1"
    assert storage.storage_options("/local/path") is None
    storage.write_bytes(storage.join(base, "a", "x.json"), b'{"a": 1}')
    assert storage.read_bytes(storage.join(base, "a", "x.json")) == b'{"a": 1}'
    assert storage.list_files(storage.join(base, "a")) == [storage.join(base, "a", "x.json")]
    assert storage.exists(storage.join(base, "a", "x.json")) and not storage.exists(storage.join(base, "nope"))

    clips = [factories.make_clip(sequence=f"s{i}", seed=i, size=32) for i in range(3)]
    path = storage.join(base, "egogen.lance")
    assert not tables.exists(path)
    assert write_clips(path, clips[:2]) == 2 and write_clips(path, clips) == 1  # idempotent on S3 too
    assert sorted(c.clip_id for c in read_clips(path, decode_rgb=False)) == sorted(c.clip_id for c in clips)
    with pytest.raises(tables.TableNotFound, match="not found"):
        tables.open_table(storage.join(base, "missing.lance"))


def test_quarantine_and_summary_files_on_s3(s3, tmp_path, egogen_raw):
    raw = tmp_path / "raw"
    import shutil

    shutil.copytree(egogen_raw, raw)
    bad = raw / "s0_0001" / "rgb.mp4"
    bad.write_bytes(b"\0" * 1000)  # a corrupt video: that sequence is quarantined
    cfg = CurateConfig(dataset="egogen", raw=str(raw), out="s3://egom2p/q", size=64)
    s = CurationRun(cfg, executor="local").run()
    assert (s.sequences_seen, s.sequences_failed, s.clips_written) == (2, 1, 2)
    (rec,) = read_quarantine(cfg.quarantine_path)
    assert rec.sequence == "s0_0001" and rec.run_id == s.run_id and rec.stage == "split"
    summary = json.loads(storage.read_bytes(cfg.summary_path))
    assert summary["clips_written"] == 2 and summary["quarantined"] == 1
    assert storage.read_bytes(cfg.plot_path)[:4] == b"\x89PNG"
    again = CurationRun(cfg, executor="local").run()  # re-run on S3: nothing new, one more quarantine record
    assert (again.clips_written, again.clips_skipped) == (0, 2)
    assert len(read_quarantine(cfg.quarantine_path)) == 2 and len(read_quarantine(cfg.quarantine_path, again.run_id)) == 1


@pytest.mark.slow
def test_curate_tokenize_train_end_to_end_on_s3(s3, egogen_raw, tmp_path, prefect_harness, ray_session):
    from egom2p.flows.curate import curate
    from egom2p.flows.tokenize import tokenize

    out = "s3://egom2p/e2e/clips"
    s = curate(dataset="egogen", raw=str(egogen_raw), out=out, size=64)  # on Ray: the workers write to S3
    assert (s["sequences_seen"], s["clips_written"], s["quarantined"]) == (2, 4, 0)
    table = storage.join(out, "egogen.lance")
    clips = list(read_clips(table))
    assert sorted(c.clip_id for c in clips) == [f"egogen/s0_000{i}/{f:06d}" for i in (0, 1) for f in (0, 60)]
    assert json.loads(storage.read_bytes(storage.join(out, "egogen.summary.json")))["table_clips"] == 4

    tok = factories.make_tiny_tokenizers(tmp_path / "tok", np.stack([c.cam for c in clips]))
    db_uri = "s3://egom2p/e2e/tokens/v1.lance"
    t = tokenize(clips=[table], tokenizers=str(tok), out=db_uri, commit_every=2, batch_size=2)
    assert t["added"] == 4 and t["rows"] == 4
    db = open_token_db(db_uri)
    assert [e["clips"] for e in db.lineage] == [table, table] and sum(e["rows"] for e in db.lineage) == 4
    again = tokenize(clips=[table], tokenizers=str(tok), out=db_uri)
    assert again["added"] == 0 and again["version"] == t["version"]

    run = tmp_path / "run"  # training reads the token DB from S3
    p = subprocess.run([str(BIN / "egom2p-train"), "--db", db_uri, "--out", str(run), "model=tiny", "train.steps=2",
                        "train.batch_size=2", "data.input_budget=32", "data.target_budget=32", "train.num_workers=0",
                        "train.tensorboard=false", "train.device=cpu", "train.log_every=1"],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    state = json.loads(next(run.glob("checkpoints/step_*/state.json")).read_text())
    assert state["db"]["path"] == db_uri and state["db"]["num_rows"] == 4


def test_two_processes_creating_the_same_token_db_on_s3_keep_every_row_once(s3):
    """The creation race of the token DB writer on an object store (conditional PUTs, no rename)."""
    from reliability.test_concurrency import _tokens_writer, race

    for trial in range(3):
        path = f"s3://egom2p/race/t{trial}/v.lance"
        a = [f"a/s/{i:06d}" for i in range(4)] + [f"shared/s/{i:06d}" for i in range(2)]
        b = [f"b/s/{i:06d}" for i in range(3)] + [f"shared/s/{i:06d}" for i in range(2)]
        reports = race(_tokens_writer, (path, a, 1), (path, b, 2))
        assert all(r[0] == "ok" for r in reports), reports
        db = open_token_db(path)
        ids = db.clip_ids()
        assert sorted(ids) == sorted(set(a) | set(b)) and len(ids) == len(set(ids)) == 9
        assert sum(e["rows"] for e in db.lineage) == db.num_rows
