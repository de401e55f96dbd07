"""Shared by the commands that run a Prefect flow in-process (``curate``, ``tokenize``)."""

from __future__ import annotations

import importlib
import os


def local_run_env() -> None:
    """Environment defaults for an in-process run: ephemeral Prefect API and a local Ray."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the temporary API server needs longer than Prefect's 20 s default on a busy machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def load_flow(name: str):
    """The Prefect flow ``name`` (``curate`` or ``tokenize``) from the package (``egom2p/flows/<name>.py``)."""
    return getattr(importlib.import_module(f"egom2p.flows.{name}"), name)
