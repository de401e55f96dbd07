"""DDP: 2 CPU processes on gloo (torchrun) compute the same losses as 1 process on the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

from egom2p.train import compose_config, train
from train_factories import make_token_db

ARGS = ["model=tiny", "train.steps=2", "train.batch_size=4", "data.input_budget=32", "data.target_budget=32",
        "train.num_workers=0", "train.tensorboard=false", "train.device=cpu", "train.ckpt_every=1000"]


def _losses(run: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_gloo_processes_match_one(tmp_path):
    db = make_token_db(tmp_path / "tok.lance")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "egom2p.train", "--db", db, "--out", str(tmp_path / "ddp2"), *ARGS]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 process(es)" in r.stdout
    one = train(compose_config(ARGS), db, out=str(tmp_path / "one"))["losses"]  # the same, in this process
    two = _losses(tmp_path / "ddp2")
    print("1 process:", one, "2 processes:", two)
    assert len(one) == len(two) == 2
    assert abs(one[0] - two[0]) < 1e-5 * abs(one[0])  # first step: same global batch, same loss
    assert abs(one[1] - two[1]) < 1e-4 * abs(one[1])  # second step: the gradients were the same too


def test_fsdp2_two_gloo_processes_match_one_and_resume(tmp_path):
    """FSDP2 (train.parallel=fsdp: fully_shard per block and at the root) on 2 CPU processes (gloo):
    the same losses as 1 process; its checkpoint is the ordinary full layout (egom2p.checkpoint), and a
    2-process resume from it continues exactly."""
    import shutil

    from egom2p.checkpoint import load_model

    db = make_token_db(tmp_path / "tok.lance")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [a for a in ARGS if not a.startswith("train.steps")] + ["train.steps=3", "train.ckpt_every=2",
                                                                   "train.keep_checkpoints=0"]
    run = tmp_path / "fsdp2"

    def torchrun(*extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "egom2p.train", "--db", db, *extra]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        return r

    r = torchrun("--out", str(run), *args, "train.parallel=fsdp")
    assert "2 process(es) (FSDP2)" in r.stdout
    one = train(compose_config(args), db, out=str(tmp_path / "one"))["losses"]
    two = _losses(run)
    print("1 process:", one, "FSDP2, 2 processes:", two)
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        assert abs(a - b) < 1e-4 * abs(a)
    model, _, info = load_model(run)  # the gathered checkpoint loads into a plain model
    assert info["step"] == 3 and info["world_size"] == 2
    shutil.rmtree(run / "checkpoints" / "step_0000003")
    (run / "checkpoints" / "latest").write_text("step_0000002\n")
    torchrun("--resume", str(run))
    assert _losses(run) == two  # step 3 again from the gathered weights and optimizer state
