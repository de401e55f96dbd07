"""Shared test setup: keep every tool's files inside the repository's scratch folder.

Session-wide resources (a local Ray, a Prefect test harness) are started once here, lazily, by the
fixtures that need them. Factories for synthetic data live in ``tests/factories.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".scratch" / f"tests-{os.getpid()}"
SCRATCH.mkdir(parents=True, exist_ok=True)
os.environ.setdefault("PREFECT_HOME", str(SCRATCH / "prefect"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_API_ENABLE_HTTP2", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("EGOM2P_SCRATCH", str(SCRATCH))
sys.path.insert(0, str(Path(__file__).parent))

REALDATA = ROOT.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def scratch() -> Path:
    return SCRATCH


@pytest.fixture(scope="session")
def realdata() -> Path:
    """../shared/realdata (real Aria / HOT3D files); tests using it skip only where the folder is absent."""
    if not REALDATA.is_dir():
        pytest.skip("../shared/realdata is not beside this checkout")
    return REALDATA


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (started on first use, ~8 s; reused if already running)."""
    import shutil

    import ray

    from egom2p.runner import start_ray

    tmp = f"/tmp/egray{os.getpid()}"  # short: Ray's socket paths must stay under 107 characters
    started = start_ray(num_cpus=2, temp_dir=tmp, attempts=6)  # retries a start a loaded machine timed out
    yield ray
    if started:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


S3_PACKAGES = Path(os.environ.get("EGOM2P_S3_SERVER_PACKAGES", ROOT / ".venv-s3"))
S3_BUCKET = "egom2p"


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server on 127.0.0.1 for the session: moto's standalone server, run from
    ``.venv-s3`` (installed there by scripts/setup.sh, kept out of the project venv: its antlr runtime
    breaks hydra). Yields the environment that points Lance and egom2p at it; bucket ``egom2p`` exists."""
    import socket
    import subprocess
    import time
    import urllib.request

    if not (S3_PACKAGES / "moto").is_dir():
        pytest.skip(f"the test S3 server is not installed in {S3_PACKAGES} (scripts/setup.sh installs it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(SCRATCH / f"moto-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, "PYTHONPATH": str(S3_PACKAGES)}, stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{S3_BUCKET}", method="PUT"), timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the S3 server did not start: {(SCRATCH / f'moto-{port}.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
               "AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test harness (temporary API server) for the session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()
