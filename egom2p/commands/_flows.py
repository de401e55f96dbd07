"""Shared by the commands that run a Prefect flow in-process (``curate``, ``tokenize``)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path


def local_run_env() -> None:
    """Environment defaults for an in-process run: ephemeral Prefect API and a local Ray."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the temporary API server needs longer than Prefect's 20 s default on a busy machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def load_flow(name: str):
    """The flow ``name`` from ``flows/<name>.py`` (the repository root is added to the path if needed)."""
    module = f"flows.{name}"
    try:
        return getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as e:
        if e.name not in ("flows", module):
            raise
    root = Path(__file__).resolve().parents[2]
    if not (root / "flows" / f"{name}.py").exists():
        raise SystemExit(f"egom2p {name}: flows/{name}.py not found; run from a checkout of the egom2p repository")
    sys.path.insert(0, str(root))
    return getattr(importlib.import_module(module), name)
