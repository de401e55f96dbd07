"""No orphans after kill -9: every process `egom2p curate` / `egom2p tokenize` started (Prefect's temporary
API server, a local Ray's GCS, raylet, dashboard and runtime-env agents, workers) ends once the command is
killed with SIGKILL. The command runs on its own here: its own temporary Prefect server and its own Ray.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a process, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(rest[1]), rest[0], rest[19]


def descendants(root: int) -> dict[int, tuple[str, str]]:
    """{pid: (start time, command line)} of every process below ``root``, walking /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))):
            children.setdefault(st[0], []).append(int(name))
    out, todo = {}, [root]
    while todo:
        for c in children.get(todo.pop(), []):
            try:
                cmd = Path(f"/proc/{c}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            st = _stat(c)
            if st:
                out[c] = (st[2], cmd)
                todo.append(c)
    return out


def alive(procs: dict[int, tuple[str, str]]) -> dict[int, str]:
    """The recorded processes still running (same pid and start time, not a zombie)."""
    return {pid: cmd for pid, (start, cmd) in procs.items()
            if (st := _stat(pid)) and st[2] == start and st[1] != "Z"}


def kill_mid_run_and_check(argv: list[str], log: Path, must_start=("uvicorn", "raylet")) -> dict:
    """Start ``argv`` alone (no RAY_ADDRESS, no PREFECT_API_URL), wait until it has started the processes
    named in ``must_start``, SIGKILL the command only, then wait for everything it started to end."""
    env = dict(os.environ, EGOM2P_RAY_TMPDIR=f"/tmp/egok{os.getpid()}")
    for k in ("RAY_ADDRESS", "PREFECT_API_URL"):
        env.pop(k, None)
    with open(log, "w") as f:
        proc = subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    seen: dict[int, tuple[str, str]] = {}
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            seen.update(descendants(proc.pid))
            if all(any(name in cmd for _, cmd in seen.values()) for name in must_start):
                time.sleep(1.0)  # let the agents Ray starts next to its raylet come up too
                seen.update(descendants(proc.pid))
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the command ended before it could be killed:\n{log.read_text()[-3000:]}"
        assert all(any(n in cmd for _, cmd in seen.values()) for n in must_start), log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # the command only; what it started is left to the watchdog
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 60  # "after a few seconds": the watchdog needs ~0.2 s plus Ray's shutdown
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = alive(seen)
    for pid in left:  # never leave them behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"orphans after kill -9: {left}"
    return seen


COMMAND = """
import os, subprocess, sys, time
from egom2p.commands import _reaper
_reaper.start()
daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
pid = os.fork()
if pid == 0:  # forked without exec: its /proc environment has no token, the watchdog's record finds it
    time.sleep(300)
    os._exit(0)
print(daemon.pid, pid, flush=True)
time.sleep(300)
"""


def test_watchdog_ends_what_a_killed_command_started(tmp_path):
    """Fast form of the two tests below: a command that starts a detached process (own session, like
    Ray's GCS) and a forked child, then is killed with SIGKILL."""
    proc = subprocess.Popen([sys.executable, "-c", COMMAND], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), start_new_session=True)
    try:
        daemon, forked = (int(x) for x in proc.stdout.readline().split())
        time.sleep(1.5)  # the watchdog records the tree every 0.5 s
        seen = descendants(proc.pid)
        assert {daemon, forked} <= set(seen) and any("egom2p.commands._reaper" in c for _, c in seen.values())
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = alive(seen)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"orphans after kill -9: {left}"


@pytest.mark.slow
def test_kill_9_of_curate_leaves_no_process_behind(tmp_path):
    raw = tmp_path / "raw"
    subprocess.run([str(BIN / "egom2p"), "render", "egogen", "--out", str(raw), "--sequences", "2", "--seconds", "4",
                    "--size", "64", "--seed", "0"], check=True, capture_output=True)
    seen = kill_mid_run_and_check([str(BIN / "egom2p"), "curate", "egogen", "--raw", str(raw), "--out",
                                   str(tmp_path / "out"), "--size", "64", "--num-cpus", "2"], tmp_path / "curate.log")
    cmds = " ".join(cmd for _, cmd in seen.values())
    assert "gcs_server" in cmds and "egom2p.commands._reaper" in cmds


@pytest.mark.slow
def test_kill_9_of_tokenize_leaves_no_process_behind(tmp_path):
    from factories import make_clip

    from egom2p.clips import write_clips
    from egom2p.modalities import get_registry
    from egom2p.tokenizers import save_tokenizer
    from egom2p.tokenizers.train import cam_norm_stats
    from egom2p.tokenizers.vqvae import VQVAE_PRESETS, SequenceVQVAE, VQVAEConfig

    clips = [make_clip(sequence=f"s{i}", start=0, seed=i, modalities=("rgb", "cam")) for i in range(16)]
    write_clips(tmp_path / "egogen.lance", clips)
    torch.manual_seed(0)
    model = SequenceVQVAE(VQVAEConfig(in_channels=9, codebook_size=64, **VQVAE_PRESETS["tiny"]))
    save_tokenizer(tmp_path / "tok" / "cam", model, kind="vqvae", modality="cam", registry=get_registry("tiny"),
                   model_config=model.cfg.to_dict(), norm=cam_norm_stats(np.stack([c.cam for c in clips])))
    kill_mid_run_and_check([str(BIN / "egom2p"), "tokenize", "--clips", str(tmp_path / "egogen.lance"),
                            "--tokenizers", str(tmp_path / "tok"), "--out", str(tmp_path / "t.lance"),
                            "--batch-size", "1", "--commit-every", "1", "--num-cpus", "2"], tmp_path / "tokenize.log")
