"""Killed and resumed: a run killed with SIGKILL and run again ends exactly as if it had never stopped.

Nothing lost (every clip, step, checkpoint of the uninterrupted run is there), nothing duplicated (no
clip twice, no metrics line twice), nothing else affected (a damaged or half-written checkpoint is
skipped, never used, and said so).

* ``egom2p curate`` killed after its first commit, re-run: the same clips table, row for row; a
  quarantine log line torn by a kill is ignored;
* ``egom2p-train`` killed mid-run, ``--resume``: the same loss sequence as an uninterrupted run;
* ``--resume RUN`` whose newest checkpoint is damaged: falls back to the newest intact one and says
  so, then ends with the uninterrupted losses; a half-written checkpoint (``step_*.tmp``, no manifest)
  is ignored; a damaged checkpoint named explicitly is refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from egom2p.adapters.base import SequenceRef, SourceError
from egom2p.clips import decode_depth, existing_ids
from egom2p.curate import QuarantineRecord, read_quarantine

from .artefacts import damage_file

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def egogen_raw(tmp_path_factory) -> Path:
    from test_curate_flow import render

    return render(tmp_path_factory.mktemp("egogen") / "raw", sequences=2, seconds=4)


@pytest.mark.slow
def test_killed_run_resumes_to_exactly_the_uninterrupted_result(egogen_raw, tmp_path, prefect_harness, ray_session):
    from egom2p.flows.curate import curate
    from test_curate_flow import sub_env

    args = dict(dataset="egogen", raw=str(egogen_raw), stride=10, size=128)  # 2 x 7 = 14 clips
    killed = tmp_path / "killed"
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen([str(BIN / "egom2p"), "curate", "egogen", "--raw", str(egogen_raw), "--out", str(killed),
                             "--stride", "10", "--size", "128", "--write-batch", "1"],
                            env=sub_env(ray_session, prefect_harness), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    table = killed / "egogen.lance"
    partial: set[str] = set()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if table.exists():
                partial = existing_ids(table)
                if partial:
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # no clean-up chance: the hardest interruption
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()[-3000:]
    partial = existing_ids(table)
    assert 0 < len(partial) < 14

    # the workers write: a commit in flight when the driver died may still land, never twice
    resumed = curate(out=str(killed), **args)
    assert len(partial) <= resumed["clips_skipped"] < 14
    assert resumed["clips_written"] == 14 - resumed["clips_skipped"]
    reference = curate(out=str(tmp_path / "reference"), **args)
    assert reference["clips_written"] == 14

    def rows(path):
        import lance

        t = lance.dataset(str(path)).to_table(columns=["clip_id", "rgb_mp4", "depth_f16", "gaze", "cam"]).to_pylist()
        return {r["clip_id"]: r for r in t}, len(t)

    got, n_got = rows(table)
    want, n_want = rows(tmp_path / "reference" / "egogen.lance")
    assert n_got == len(got) == 14 and n_want == 14  # no duplicate rows
    assert got.keys() == want.keys()
    for cid in want:  # the same clips: nothing lost or half-written (H.264 at one thread is deterministic)
        g, w = got[cid], want[cid]
        assert g["rgb_mp4"] == w["rgb_mp4"], cid
        for col in ("gaze", "cam"):  # NaN (invalid gaze) counts as equal
            np.testing.assert_array_equal(np.array(g[col], float), np.array(w[col], float), err_msg=cid)
        np.testing.assert_array_equal(decode_depth(g["depth_f16"], 60, 128, 128), decode_depth(w["depth_f16"], 60, 128, 128))


def test_quarantine_records_round_trip_and_a_torn_line_is_ignored(tmp_path):
    ref = SequenceRef("synthetic", "s9", "/data/s9")
    rec = QuarantineRecord.from_exception("split", ref, SourceError("/data/s9/video.mp4", "moov atom not found"), run_id="r1")
    assert rec.source == "/data/s9/video.mp4" and rec.clip_id is None and rec.time
    p = tmp_path / "q.jsonl"
    p.write_text(rec.to_json() + "\n" + '{"dataset": "synth')  # a writer killed mid-line
    (back,) = read_quarantine(p)
    assert back == rec
    with pytest.raises(ValueError, match="unknown stage"):
        QuarantineRecord("d", "s", None, None, "decode", "E", "r")


# --- egom2p-train ------------------------------------------------------------------------------------------------


def losses_of(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(x)["step"] for x in lines]
    assert steps == list(range(1, len(steps) + 1)), f"steps lost or duplicated in {run}/metrics.jsonl: {steps}"
    return [json.loads(x)["loss"] for x in lines]


@pytest.fixture(scope="module")
def reference(artefacts, tmp_path_factory):
    """The uninterrupted run of STEPS steps (checkpoint every step) and its losses."""
    from egom2p.train import compose_config, train

    out = tmp_path_factory.mktemp("reference") / "run"
    res = train(compose_config([*artefacts.train_overrides, f"train.steps={STEPS}", "train.keep_checkpoints=0"]),
                str(artefacts.db), out=str(out))
    return out, res["losses"]


STEPS = 24


@pytest.mark.slow
def test_killed_training_resumes_to_the_uninterrupted_losses(artefacts, reference, tmp_path):
    _, want = reference
    run = tmp_path / "run"
    log = open(tmp_path / "train.log", "w")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(BIN / "egom2p-train"), "--db", str(artefacts.db), "--out", str(run),
                             *artefacts.train_overrides, f"train.steps={STEPS}"], stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    latest = run / "checkpoints" / "latest"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if latest.exists() and latest.read_text().strip() >= "step_0000003":
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "train.log").read_text()[-3000:]
    done = int(latest.read_text().strip().split("_")[1])
    assert 3 <= done < STEPS
    from egom2p.train import main

    assert main(["--db", str(artefacts.db), "--resume", str(run), f"train.steps={STEPS}"]) == 0
    assert losses_of(run) == want  # bit-identical: nothing lost, nothing repeated
    assert (run / "checkpoints" / "latest").read_text().strip() == f"step_{STEPS:07d}"


def test_resume_falls_back_to_the_newest_intact_checkpoint(artefacts, reference, tmp_path, capsys):
    from egom2p.train import main

    ref_run, want = reference
    run = tmp_path / "run"
    import shutil

    shutil.copytree(ref_run, run)
    for s in range(7, STEPS + 1):  # as if the run had stopped after step 6 ...
        shutil.rmtree(run / "checkpoints" / f"step_{s:07d}")
    (run / "checkpoints" / "latest").write_text("step_0000006\n")
    damage_file(run / "checkpoints" / "step_0000006" / "model.safetensors", "zeroed")  # ... with step 6 damaged
    (run / "checkpoints" / "step_0000005" / "optimizer.pt").write_bytes(b"")  # and step 5 too
    half = run / "checkpoints" / "step_0000007.tmp"  # and a save cut short by a kill
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"\0" * 100)
    capsys.readouterr()
    assert main(["--db", str(artefacts.db), "--resume", str(run), f"train.steps={STEPS}"]) == 0
    out = capsys.readouterr().out
    note = [ln for ln in out.splitlines() if ln.startswith("note: resuming from")]
    assert len(note) == 1 and "step_0000004" in note[0] and "skipped 2 damaged" in note[0], out[:3000]
    assert "step_0000006/model.safetensors: damaged" in note[0] and "step_0000005/optimizer.pt" in note[0]
    assert f"resumed from {run / 'checkpoints' / 'step_0000004'} at step 4" in out
    assert losses_of(run) == want
    assert not half.exists()  # the half-written save was replaced by the real step 7


def test_a_damaged_checkpoint_named_explicitly_is_refused(artefacts, tmp_path, capsys):
    import shutil

    from egom2p.train import main

    run = tmp_path / "run"
    shutil.copytree(artefacts.run, run)
    step = run / "checkpoints" / "step_0000002"
    damage_file(step / "rng.pt", "truncated")
    assert main(["--db", str(artefacts.db), "--resume", str(step), "train.steps=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"egom2p-train: error: {step / 'rng.pt'}: damaged, truncated"), err
    assert losses_of(run) == artefacts.losses  # nothing appended
