"""Multi-node: curation and tokenization on a local Ray cluster of a CPU-less head and two worker nodes.

The job (tests/multinode_job.py) runs in its own process (one Ray cluster per process). The clips
and token rows are written by worker processes on the worker nodes, never by the driver; the driver
receives status rows only, and its share of the CPU work is measured and reported (the 5% target is
checked by benchmarks/bench_driver.py, not here: timings on a shared machine are noise).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import factories
from egom2p.clips import read_clips
from egom2p.tokendb import open_token_db

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_curate_and_tokenize_on_a_two_worker_node_cluster(tmp_path):
    raw = tmp_path / "raw"
    subprocess.run([str(BIN / "egom2p"), "render", "egogen", "--out", str(raw), "--sequences", "2", "--seconds", "4",
                    "--size", "64", "--seed", "0"], check=True, capture_output=True)
    clips = [factories.make_clip(seed=i) for i in range(2)]
    tok = factories.make_tiny_tokenizers(tmp_path / "tok", np.stack([c.cam for c in clips]))
    p = subprocess.run([sys.executable, str(ROOT / "tests" / "multinode_job.py"), str(raw), str(tmp_path / "out"),
                        str(tok)], capture_output=True, text=True, timeout=1500, cwd=ROOT)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("REPORT ")), None)
    assert p.returncode == 0 and line, p.stdout[-2000:] + p.stderr[-4000:]
    rep = json.loads(line[len("REPORT "):])
    cur, tokr = rep["curate"], rep["tokenize"]

    # every clip was written by a worker process on a worker node; the driver wrote none
    assert cur["written"] == 4 and sum(cur["workers"].values()) == 4
    assert {w.split(":")[0] for w in cur["workers"]} <= set(rep["worker_nodes"])
    assert all(int(w.split(":")[1]) != rep["driver_pid"] for w in cur["workers"])
    assert sorted(c.clip_id for c in read_clips(cur["table"], decode_rgb=False)) == [
        f"egogen/s0_000{i}/{f:06d}" for i in (0, 1) for f in (0, 60)]
    # token rows too (written by worker processes; the actors ran on the worker nodes)
    assert tokr["added"] == 4 and sum(tokr["workers"].values()) == 4
    assert all(int(w.split(":")[1]) != rep["driver_pid"] for w in tokr["workers"])
    db = open_token_db(tokr["db"])
    assert db.num_rows == 4 and sum(e["rows"] for e in db.lineage) == 4

    # the driver received status rows, not payloads: far fewer bytes than the clips it did not touch
    assert 0 < cur["bytes_to_driver"] < cur["payload_bytes"] / 10
    share = cur["driver_cpu_s"] / max(cur["worker_cpu_s"], 1e-9)
    print(f"multi-node curate: driver {cur['driver_cpu_s']:.3f} s CPU, workers {cur['worker_cpu_s']:.3f} s CPU "
          f"(driver share {100 * share:.1f}%), {cur['bytes_to_driver']} bytes to the driver for "
          f"{cur['payload_bytes']} bytes of clips; tokenize: driver {tokr['driver_cpu_s']:.3f} s, "
          f"workers {tokr['worker_cpu_s']:.3f} s")
    assert cur["worker_cpu_s"] > 0 and tokr["worker_cpu_s"] > 0
