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

    started = False
    tmp = f"/tmp/egray{os.getpid()}"  # short: Ray's socket paths must stay under 107 characters
    if not ray.is_initialized():
        for attempt in range(3):  # Ray gives a new node 30 s to register; a loaded machine can miss that
            try:
                ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False)
                break
            except Exception as e:  # noqa: BLE001
                if "timed out during startup" not in str(e) or attempt == 2:
                    raise
                ray.shutdown()
        started = True
    yield ray
    if started:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test harness (temporary API server) for the session; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield PREFECT_API_URL.value()
