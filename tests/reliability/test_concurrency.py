"""Concurrent runs and writers: nothing lost, nothing duplicated, nothing overwritten.

* two ``curate`` runs of the same dataset into the same folder: the second is refused by the run lock
  (another dataset into the same folder is fine), and the lock is released when the first ends;
* concurrent writers of clips tables and token DBs (issue 13 item 2, issue 18 item 1): two processes
  are released at the same instant (a multiprocessing barrier) and write to the same table, repeated
  several times, because a race only shows in some interleavings. In every trial: every row a writer
  reports written is present exactly once, the union of both writers' rows is there (nothing lost), a
  table created by two writers at once is never overwritten, and lineage counts exactly the rows present.
"""

from __future__ import annotations

import multiprocessing as mp
import sys

import numpy as np
import pyarrow as pa
import pytest

import factories
from egom2p import tables
from egom2p.clips import clip_to_row, rows_to_table, write_table
from egom2p.modalities import get_registry
from egom2p.curate import CurateConfig, CurateError, CurationRun
from egom2p.tokendb import TokenDBError, insert_tokens, open_token_db, prepare_db, rows_to_table as token_rows, write_tokens
from test_curate import TreeAdapter, config, tree  # noqa: F401 (fixture)

REG = get_registry("tiny")
TRIALS = 6
IDENT = {m: {"kind": "test", "sha256": f"{i:064x}"} for i, m in enumerate(("rgb", "depth", "gaze", "cam"))}


def token_table(ids: list[str], seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = [{"clip_id": i, "dataset": i.split("/")[0], "sequence": i.split("/")[1], "split": "train",
             **{f"tok_{m}": rng.integers(0, REG[m].vocab_size, REG[m].num_tokens) for m in ("gaze", "cam")}}
            for i in ids]
    return token_rows(rows, REG, {"clips": f"/clips/{seed}.lance", "clips_version": seed})


# ------------------------------------------------------------------- children (spawned processes)
def _tokens_writer(path: str, ids: list[str], seed: int, barrier, queue) -> None:
    """Create-or-append with the public writer, at the same instant as the other writer."""
    table = token_table(ids, seed)
    barrier.wait()
    try:
        v = write_tokens(path, table, registry=REG, tokenizers=IDENT)
        queue.put(("ok", seed, v))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which fails the test
        queue.put(("error", seed, f"{type(e).__name__}: {e}"))


def _tokens_inserter(path: str, ids: list[str], seed: int, barrier, queue) -> None:
    """The tokenize workers' path: prepare the DB, insert, report exactly which ids this call wrote."""
    table = token_table(ids, seed)
    barrier.wait()
    try:
        prepare_db(path, REG, IDENT)
        res = insert_tokens(path, table, REG)
        queue.put(("ok", seed, sorted(set(ids) - set(res.present))))
    except Exception as e:  # noqa: BLE001
        queue.put(("error", seed, f"{type(e).__name__}: {e}"))


def _registrar(path: str, sha: str, ids: list[str], barrier, queue) -> None:
    """A writer whose gaze tokenizer differs from the other writer's."""
    idents = dict(IDENT, gaze={"kind": "test", "sha256": sha})
    table = token_table(ids, int(sha[-1], 16))
    barrier.wait()
    try:
        prepare_db(path, REG, idents)
        res = insert_tokens(path, table, REG)
        queue.put(("ok", sha, res.rows))
    except TokenDBError as e:
        queue.put(("refused", sha, str(e)))


def _clips_writer(path: str, rows: list[dict], barrier, queue) -> None:
    table = rows_to_table(rows)
    barrier.wait()
    try:
        res = write_table(path, table)
        queue.put(("ok", sorted(set(table.column("clip_id").to_pylist()) - set(res.present))))
    except Exception as e:  # noqa: BLE001
        queue.put(("error", f"{type(e).__name__}: {e}"))


def race(target, args_a: tuple, args_b: tuple) -> list[tuple]:
    """Run ``target`` in two spawned processes released together by a barrier; their reports."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, queue)) for a in (args_a, args_b)]
    for p in procs:
        p.start()
    reports = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    return reports


def test_a_second_run_of_the_same_dataset_and_output_is_refused(tree, tmp_path):
    first = CurationRun(config(tree, tmp_path), adapter=TreeAdapter(), executor="local")
    first.prepare()
    try:
        with pytest.raises(CurateError, match="another curate run"):
            CurationRun(config(tree, tmp_path), adapter=TreeAdapter(), executor="local").prepare()
        other = CurationRun(CurateConfig(dataset="other", raw=str(tree), out=str(tmp_path)), adapter=TreeAdapter(),
                            executor="local")
        other.prepare()  # another dataset into the same folder is fine
        other.close()
    finally:
        first.close()
    again = CurationRun(config(tree, tmp_path), adapter=TreeAdapter(), executor="local")
    again.prepare()
    again.close()


# ------------------------------------------------------------------------------------- tests
def test_two_processes_creating_the_same_token_db_at_once_keep_every_row_once(tmp_path):
    for trial in range(TRIALS):
        path = str(tmp_path / f"t{trial}" / "v.lance")
        a = [f"a/s/{i:06d}" for i in range(5)] + [f"shared/s/{i:06d}" for i in range(3)]
        b = [f"b/s/{i:06d}" for i in range(4)] + [f"shared/s/{i:06d}" for i in range(3)]
        reports = race(_tokens_writer, (path, a, 1), (path, b, 2))
        assert all(r[0] == "ok" for r in reports), reports  # neither writer failed nor was overwritten
        db = open_token_db(path)
        ids = db.clip_ids()
        assert sorted(ids) == sorted(set(a) | set(b)), f"trial {trial}: rows lost or duplicated"
        assert len(ids) == len(set(ids)) == 12
        assert sum(e["rows"] for e in db.lineage) == db.num_rows  # lineage claims exactly the rows present
        assert {r[2] for r in reports} & {1}  # one of them created the DB as version 1 with its rows


def test_every_row_reported_written_by_concurrent_inserters_is_present_exactly_once(tmp_path):
    for trial in range(TRIALS):
        path = str(tmp_path / f"t{trial}" / "v.lance")
        a = [f"d/s/{i:06d}" for i in range(0, 10)]
        b = [f"d/s/{i:06d}" for i in range(5, 14)]
        reports = race(_tokens_inserter, (path, a, 3), (path, b, 4))
        assert all(r[0] == "ok" for r in reports), reports
        written = [i for r in reports for i in r[2]]
        assert len(written) == len(set(written))  # no id reported written by both
        db = open_token_db(path)
        ids = db.clip_ids()
        assert sorted(ids) == sorted(written) == sorted(set(a) | set(b)), f"trial {trial}"
        per_source: dict[str, int] = {}
        for e in db.lineage:  # lineage is written with the rows: it credits each writer with exactly its rows
            per_source[e["clips"]] = per_source.get(e["clips"], 0) + e["rows"]
        assert per_source == {f"/clips/{r[1]}.lance": len(r[2]) for r in reports if r[2]}


def test_two_writers_with_different_tokenizers_one_wins_the_other_is_refused_in_one_line(tmp_path):
    for trial in range(TRIALS):
        path = str(tmp_path / f"t{trial}" / "v.lance")
        ids_a = [f"x/s/{i:06d}" for i in range(3)]
        ids_b = [f"y/s/{i:06d}" for i in range(3)]
        reports = race(_registrar, (path, "a" * 64, ids_a), (path, "b" * 64, ids_b))
        outcome = sorted(r[0] for r in reports)
        assert outcome == ["ok", "refused"], reports
        winner = next(r for r in reports if r[0] == "ok")
        refusal = next(r for r in reports if r[0] == "refused")[2]
        assert "\n" not in refusal and "gaze" in refusal and "cannot share a DB" in refusal
        db = open_token_db(path)
        assert db.tokenizers["gaze"]["sha256"] == winner[1]
        assert sorted(db.clip_ids()) == (ids_a if winner[1] == "a" * 64 else ids_b)


@pytest.fixture(scope="module")
def clip_rows() -> list[dict]:
    return [clip_to_row(factories.make_clip(sequence=f"s{i}", seed=i, size=32)) for i in range(6)]


def test_two_processes_writing_the_same_clips_table_never_duplicate_or_lose_a_clip(tmp_path, clip_rows):
    for trial in range(TRIALS):
        path = str(tmp_path / f"t{trial}" / "egogen.lance")
        reports = race(_clips_writer, (path, clip_rows[:4]), (path, clip_rows[2:]))
        assert all(r[0] == "ok" for r in reports), reports
        written = [i for r in reports for i in r[1]]
        ids = tables.read_keys(path)
        assert sorted(ids) == sorted(written) == sorted(r["clip_id"] for r in clip_rows), f"trial {trial}"
        assert len(ids) == len(set(ids))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


@pytest.mark.slow
def test_egom2p_tokenize_reports_a_lost_race_in_one_line(tmp_path, prefect_harness):
    """Two ``egom2p tokenize`` runs with different gaze tokenizers start together on the same new DB:
    one writes it, the other exits 2 with one line on stderr (no traceback, no raw OSError)."""
    import os
    import subprocess
    from pathlib import Path

    clips = [factories.make_clip(sequence=f"s{i}", seed=i) for i in range(3)]
    from egom2p.clips import write_clips

    write_clips(tmp_path / "egogen.lance", clips)
    cams = np.stack([c.cam for c in clips])
    dirs = [factories.make_tiny_tokenizers(tmp_path / f"tok{k}", cams, seed=k) for k in (1, 2)]
    db = tmp_path / "tokens" / "v.lance"
    env = dict(os.environ, PREFECT_API_URL=prefect_harness)
    egom2p = str(Path(sys.executable).parent / "egom2p")
    procs = [subprocess.Popen([egom2p, "tokenize", "--clips", str(tmp_path / "egogen.lance"), "--tokenizers", str(d),
                               "--out", str(db), "--no-ray", "--modalities", "gaze", "cam"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for d in dirs]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], [o[1][-2000:] for o in outs]
    report = [ln for ln in outs[codes.index(2)][1].splitlines() if ln.startswith("egom2p tokenize: ")]
    assert len(report) == 1 and "gaze" in report[0] and "OSError" not in report[0], outs[codes.index(2)][1][-3000:]
    from egom2p.tokenizers import load_tokenizers

    winner = load_tokenizers(dirs[codes.index(0)])["gaze"].identity["sha256"]
    got = open_token_db(db)
    assert got.tokenizers["gaze"]["sha256"] == winner
    assert sorted(got.clip_ids()) == sorted(c.clip_id for c in clips)  # every clip once, from the winner
