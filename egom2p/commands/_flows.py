"""Shared by the commands that run a Prefect flow in-process (``curate``, ``tokenize``)."""

from __future__ import annotations

import importlib
import os
import sys


def local_run_env() -> None:
    """Environment of an in-process run (ephemeral Prefect API, local Ray) and its no-orphans watchdog."""
    from . import _reaper

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the temporary API server needs longer than Prefect's 20 s default on a busy machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    _reaper.start()


def load_flow(name: str):
    """The Prefect flow ``name`` (``curate`` or ``tokenize``) from the package (``egom2p/flows/<name>.py``)."""
    return getattr(importlib.import_module(f"egom2p.flows.{name}"), name)


def run_flow(name: str, config) -> dict:
    """Run the flow ``name`` in this process with the parameters of ``config`` (its typed run config)."""
    from ..runconfig import to_parameters

    local_run_env()
    return load_flow(name)(**to_parameters(config))


def error(command: str, exc: BaseException) -> int:
    """Report ``exc`` in one line on stderr; the exit code of bad input (2)."""
    print(f"egom2p {command}: {exc}", file=sys.stderr)
    return 2
