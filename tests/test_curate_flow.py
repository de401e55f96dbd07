"""The ``curate`` Prefect flow on real egogen renders: in-process under the test harness and through the
real deployment path (local Prefect server, process work pool, worker, ``run_deployment``). Killing a
real ``egom2p curate`` subprocess and resuming it is in tests/reliability/test_kill_resume.py.

One Ray and one Prefect harness (tests/conftest.py) serve the whole session; the subprocess and the
deployment's flow run join that Ray through ``RAY_ADDRESS`` and the harness's API (saving a Ray start per run).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from egom2p.clips import existing_ids, read_clips

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def render(out: Path, sequences: int, seconds: int, size: int = 64) -> Path:
    subprocess.run([str(BIN / "egom2p"), "render", "egogen", "--out", str(out), "--sequences", str(sequences),
                    "--seconds", str(seconds), "--size", str(size), "--seed", "0"], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def egogen_raw(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("egogen") / "raw", sequences=2, seconds=4)


def sub_env(ray_session, api_url: str) -> dict:
    env = dict(os.environ)
    env.update(RAY_ADDRESS=ray_session.get_runtime_context().gcs_address, PREFECT_API_URL=api_url,
               PREFECT_SERVER_ANALYTICS_ENABLED="false")
    return env


def test_flow_curates_an_egogen_render(egogen_raw, tmp_path, prefect_harness, ray_session):
    from egom2p.flows.curate import curate
    from prefect.client.orchestration import get_client

    from egom2p.curate import CurateError

    s = curate(dataset="egogen", raw=str(egogen_raw), out=str(tmp_path), size=64)
    assert (s["sequences_seen"], s["clips_written"], s["quarantined"], s["depth"]) == (2, 4, 0, "render")
    assert s["coverage"] == {"rgb": 4, "depth": 4, "gaze": 4, "cam": 4}
    clips = list(read_clips(tmp_path / "egogen.lance"))
    assert sorted(c.clip_id for c in clips) == [f"egogen/s0_000{i}/{f:06d}" for i in (0, 1) for f in (0, 60)]
    for c in clips:
        c.validate()
        assert c.rgb.shape == (60, 64, 64, 3) and c.depth_source == "render" and c.depth_range is not None
    assert (tmp_path / "egogen.summary.json").exists() and (tmp_path / "egogen.summary.png").exists()
    with get_client(sync_client=True) as client:
        art = client.read_latest_artifacts()
    keys = {a.key for a in art}
    assert {"curate-summary-egogen", "curate-progress-egogen"} <= keys

    again = curate(dataset="egogen", raw=str(egogen_raw), out=str(tmp_path), size=64)
    assert (again["clips_written"], again["clips_skipped"], again["table_clips"]) == (0, 4, 4)
    with pytest.raises(CurateError, match="unknown dataset"):
        curate(dataset="egogne", raw=str(egogen_raw), out=str(tmp_path))


def test_cli_reports_a_missing_raw_root(tmp_path, prefect_harness, ray_session):
    p = subprocess.run([str(BIN / "egom2p"), "curate", "egogen", "--raw", str(tmp_path / "nope"), "--out",
                        str(tmp_path / "out")], env=sub_env(ray_session, prefect_harness), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2 and "raw root" in p.stderr and "does not exist" in p.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_deployment_path_runs_curate_egogen(egogen_raw, tmp_path, ray_session, prefect_harness):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home = tmp_path / "prefect"
    port = free_port()
    env = dict(os.environ, PREFECT_PORT=str(port), RAY_ADDRESS=ray_session.get_runtime_context().gcs_address,
               PYTHON=sys.executable)
    env.pop("PREFECT_API_URL", None)
    script = ROOT / "scripts" / "prefect_local.sh"
    try:
        start = subprocess.run(["bash", str(script), "start", str(home)], env=env, capture_output=True, text=True,
                               timeout=400)
        assert start.returncode == 0, start.stdout + start.stderr
        assert "Deployment 'curate/egogen' successfully created" in start.stdout
        pids = [int((home / "run" / f"{n}.pid").read_text()) for n in ("server", "worker")]
        out = tmp_path / "clips"
        with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
            fr = run_deployment("curate/egogen", parameters={"raw": str(egogen_raw), "out": str(out), "size": 64},
                                timeout=400, poll_interval=0.5)
        assert fr.state.is_completed(), (fr.state, (home / "run" / "worker.log").read_text()[-3000:])
        assert len(existing_ids(out / "egogen.lance")) == 4
        assert (out / "egogen.summary.json").exists()
        # the deployments as shipped: run with their defaults, or fail in their first step naming the parameter
        with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
            from prefect import get_client

            with get_client(sync_client=True) as client:
                dep = client.read_deployment_by_name("curate/holoassist")
            assert dep.job_variables["env"]["EGOM2P_DEPLOY_RAY_ADDRESS"] == env["RAY_ADDRESS"]  # passed to runs
            runs = {name: run_deployment(name, timeout=400, poll_interval=0.5)
                    for name in ("curate/holoassist", "tokenize/default")}
        for name, needles in (("curate/holoassist", ["needs depth_checkpoint (--depth-checkpoint)"]),
                              ("tokenize/default", ["(--clips)", "(--tokenizers)"])):  # run from this checkout
            r = runs[name]
            print(f"{name}: {r.state.type.value} after {(r.end_time - r.start_time).total_seconds():.2f} s "
                  f"of flow run: {r.state.message}")
            named = r.state.is_failed() and any(n in r.state.message for n in needles)
            assert r.state.is_completed() or named, (name, r.state)
        assert runs["curate/holoassist"].state.is_failed()  # data/raw/holoassist needs a RollingDepth checkpoint
    finally:
        stop = subprocess.run(["bash", str(script), "stop", str(home)], env=env, capture_output=True, text=True,
                              timeout=120)
    assert stop.returncode == 0, stop.stderr
    for pid in pids:  # every process the script started is gone
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
