"""The tokenize flow: clips tables -> token DB on Ray Data actors; versions, lineage, resume, refusals, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lance
import numpy as np
import pytest
import torch
from factories import make_clip, make_tiny_tokenizers

from egom2p.clips import ClipsTableError, clips_index, write_clips
from egom2p.commands.db import db_info
from egom2p.errors import ForeignArtefactError
from egom2p.flows.tokenize import tokenize
from egom2p.modalities import get_registry
from egom2p.tokendb import open_token_db, write_tokens
from egom2p.tokenizers import load_tokenizers
from egom2p.tokenizers.stage import tokenize_clips

torch.set_num_threads(1)
TINY = get_registry("tiny")


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """egogen: 4 clips (one without gaze, one whose gaze is all invalid); adt: 2 clips without gaze."""
    d = tmp_path_factory.mktemp("clips")
    eg = [make_clip(sequence="s0", start=0, seed=0), make_clip(sequence="s0", start=60, seed=1),
          make_clip(sequence="s1", start=0, seed=2, modalities=("rgb", "cam"))]
    blind = make_clip(sequence="s1", start=60, seed=3)
    blind.gaze[:] = np.nan
    blind.gaze_valid = np.zeros(60, bool)
    eg.append(blind)
    write_clips(d / "egogen.lance", eg)
    write_clips(d / "adt.lance", [make_clip(dataset="adt", sequence="a", start=60 * i, seed=10 + i,
                                            modalities=("rgb", "depth", "cam")) for i in range(2)])
    return d, eg


@pytest.fixture(scope="module")
def tokdir(tmp_path_factory, tables):
    """Untrained tiny tokenizers in the checkpoint layout (training is tested elsewhere)."""
    return make_tiny_tokenizers(tmp_path_factory.mktemp("tok"), np.stack([c.cam for c in tables[1]]))


def test_tokenize_clips_pure_stage(tables, tokdir):
    _, clips = tables
    toks = load_tokenizers(tokdir)
    rows = tokenize_clips(clips, toks, batch_size=3)
    assert [r["clip_id"] for r in rows] == [c.clip_id for c in clips]
    assert rows[0]["tok_rgb"].shape == (TINY["rgb"].num_tokens,) and rows[0]["tok_gaze"].shape == (30,)
    assert "tok_gaze" not in rows[2] and "tok_depth" not in rows[2]  # missing -> null, never zeros
    assert "tok_gaze" not in rows[3]  # no valid gaze frame -> missing
    np.testing.assert_array_equal(rows[1]["tok_cam"], toks["cam"].encode(clips[1].cam[None])[0])


def test_flow_versions_lineage_resume_and_time_travel(ray_session, prefect_harness, tables, tokdir, tmp_path):
    d, clips = tables
    out = str(tmp_path / "tokens" / "v1.lance")
    s1 = tokenize(clips=[str(d / "egogen.lance")], tokenizers=str(tokdir), out=out, commit_every=2, batch_size=2)
    assert s1["added"] == 4
    v_commits = s1["tables"][0]["versions"]
    assert len(v_commits) == 2  # 4 clips, 2 per commit (each a version, written by the workers)
    info = db_info(out)
    idx = clips_index(d / "egogen.lance").to_pylist()
    assert info["rows"] == len(idx) == 4
    cov = info["coverage"]["egogen"]
    assert cov["clips"] == 4 and cov["rgb"] == sum(r["has_rgb"] for r in idx) == 4
    assert cov["depth"] == sum(r["has_depth"] for r in idx) == 3
    assert cov["cam"] == 4 and cov["gaze"] == 2  # one clip lacks gaze, one has no valid gaze frame
    assert info["tokens"]["rgb"] == 4 * TINY["rgb"].num_tokens
    toks = load_tokenizers(tokdir)
    assert {m: v["sha256"] for m, v in info["tokenizers"].items()} == {m: t.identity["sha256"] for m, t in toks.items()}

    # the tokens in the DB are those of the tokenizers (Ray actors == in-process)
    db = open_token_db(out)
    ids = db.clip_ids()
    cam, present = db.tokens(range(db.num_rows), "cam")
    ref = toks["cam"].encode(np.stack([c.cam for c in clips]))
    for c, r in zip(clips, ref):
        np.testing.assert_array_equal(cam[ids.index(c.clip_id)], r)
    gz = db.take([ids.index(clips[2].clip_id)], ["tok_gaze", "tok_depth"])
    assert gz.column("tok_gaze")[0].as_py() is None and gz.column("tok_depth")[0].as_py() is None
    lin = db.lineage  # one entry per commit: its clips table and version, its rows
    assert [(Path(e["clips"]).name, e["clips_version"], e["db_version"], e["rows"]) for e in lin] == [
        ("egogen.lance", 1, v_commits[0], 2), ("egogen.lance", 1, v_commits[1], 2)]
    assert len(db.lance.get_fragments()) == 1 and db.lance.list_indices()[0]["fields"] == ["clip_id"]  # compacted, indexed

    # a second table: only its clips are new; lineage grows
    s2 = tokenize(clips=[str(d / "egogen.lance"), str(d / "adt.lance")], tokenizers=str(tokdir), out=out,
                  commit_every=64)
    assert s2["added"] == 2 and s2["version"] > s1["version"]
    (v_adt,) = s2["tables"][1]["versions"]
    db = open_token_db(out)
    assert db.counts()["adt"] == {"rgb": 2, "depth": 2, "gaze": 0, "cam": 2}
    assert [(Path(e["clips"]).name, e["clips_version"], e["db_version"], e["rows"]) for e in db.lineage] == [
        ("egogen.lance", 1, v_commits[0], 2), ("egogen.lance", 1, v_commits[1], 2), ("adt.lance", 1, v_adt, 2)]
    # re-running adds nothing and writes no version
    s3 = tokenize(clips=[str(d / "egogen.lance"), str(d / "adt.lance")], tokenizers=str(tokdir), out=out)
    assert s3["added"] == 0 and s3["version"] == s2["version"]
    # time travel: the version of the second egogen commit has only egogen and only its lineage
    old = open_token_db(out, version=v_commits[1])
    assert old.num_rows == 4 and set(old.counts()) == {"egogen"} and len(old.lineage) == 2


def test_cli_tokenize_and_db_commands(prefect_harness, tables, tokdir, tmp_path, capsys):
    from egom2p.cli import main

    d, _ = tables
    out = str(tmp_path / "t.lance")
    assert main(["tokenize", "--clips", str(d / "adt.lance"), "--tokenizers", str(tokdir), "--out", out,
                 "--no-ray", "--modalities", "rgb", "cam"]) == 0
    first = open_token_db(out).version  # the DB after the first run
    assert main(["tokenize", "--clips", str(d / "egogen.lance"), "--tokenizers", str(tokdir), "--out", out,
                 "--no-ray", "--modalities", "rgb", "cam", "--limit", "1"]) == 0
    latest = open_token_db(out).version
    assert latest > first
    capsys.readouterr()
    assert main(["db", "tag", out, "first", "--version", str(first)]) == 0
    assert main(["db", "info", out]) == 0
    text = capsys.readouterr().out
    assert f"version {latest} (latest {latest}), 3 clips" in text
    assert "tags: first" in text and "lineage:" in text and "adt.lance @ Lance version 1" in text
    adt_line = next(line for line in text.splitlines() if line.strip().startswith("adt "))
    assert adt_line.split() == ["adt", "2", "2", "0", "0", "2"]  # clips rgb depth gaze cam (depth not tokenized)
    assert main(["db", "info", out, "--version", "first", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == first and info["rows"] == 2 and set(info["tokenizers"]) == {"rgb", "cam"}
    assert main(["db", "tag", out, "first"]) == 2
    assert main(["db", "info", str(tmp_path / "missing.lance")]) == 2


def test_refusals(prefect_harness, tables, tokdir, tmp_path):
    d, clips = tables
    # a clips table of another format
    bad = tmp_path / "old.lance"
    shutil.copytree(d / "adt.lance", bad)
    lance.dataset(str(bad)).update_schema_metadata({"egom2p.format": "egom2p-clips/0"})
    with pytest.raises(ClipsTableError, match="refusing to tokenize .*old.lance.*egom2p-clips/0"):
        tokenize(clips=[str(bad)], tokenizers=str(tokdir), out=str(tmp_path / "x.lance"), use_ray=False)
    # a token DB written with another registry
    other = tmp_path / "base.lance"
    write_tokens(other, [{"clip_id": "z/s/000000", "dataset": "z", "sequence": "s", "split": "train"}],
                 registry=get_registry("base"))
    with pytest.raises(ValueError, match="registry mismatch"):
        tokenize(clips=[str(d / "adt.lance")], tokenizers=str(tokdir), out=str(other), use_ray=False)
    # a token DB made with other tokenizer checkpoints
    mine = tmp_path / "mine.lance"
    write_tokens(mine, [{"clip_id": "z/s/000000", "dataset": "z", "sequence": "s", "split": "train"}],
                 registry=TINY, tokenizers={"cam": {"kind": "vqvae", "sha256": "0" * 64}})
    with pytest.raises(ForeignArtefactError, match=f"cam tokenizer in {tokdir} has sha256 .*token DB .*mine.lance "
                                                   f"expects vqvae sha256 {'0' * 64}; use a new token DB"):
        tokenize(clips=[str(d / "adt.lance")], tokenizers=str(tokdir), out=str(mine), use_ray=False)
